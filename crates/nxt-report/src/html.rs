//! HTML building blocks: escaping (everything from data goes through [`esc`]: model output is
//! untrusted), tables, figures, collapsible blocks and the page's stylesheet.

use std::fmt::Write as _;

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab/newline would make the document invalid.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text cut to `max` characters, with a note of how much was left out.
pub fn clip(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}\n[... {} more characters not shown]", n - max)
    }
}

/// A `<pre>` block of escaped text.
pub fn pre(s: &str, class: &str) -> String {
    format!("<pre class=\"{}\">{}</pre>", esc(class), esc(s))
}

/// A table from a header and rows of already-escaped HTML cells.
pub fn table(header: &[String], rows: &[Vec<String>], class: &str) -> String {
    let mut s = format!("<table class=\"{}\"><thead><tr>", esc(class));
    for h in header {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// A figure around an SVG plot, with its caption (escaped).
pub fn figure(svg: &str, caption: &str) -> String {
    format!(
        "<figure class=\"plot\">{svg}<figcaption>{}</figcaption></figure>",
        esc(caption)
    )
}

/// A note saying what is missing (escaped).
pub fn missing(text: &str) -> String {
    format!("<p class=\"missing\">Missing: {}</p>", esc(text))
}

/// The page's stylesheet.
pub const CSS: &str = r#"
:root { --fg: #1a1a1a; --muted: #5a5a5a; --line: #d8d8d8; --bg-alt: #f6f6f4; --accent: #0072B2; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1180px; padding: 24px 28px 80px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 40px 0 10px; padding-top: 8px; border-top: 2px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 8px; }
.sub { color: var(--muted); margin: 0 0 16px; }
nav.toc { background: var(--bg-alt); padding: 10px 16px; border-radius: 6px; margin: 16px 0; }
nav.toc a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
nav.toc a:hover { text-decoration: underline; }
div.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: var(--bg-alt); font-weight: 600; }
table.num td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.num td:first-child { text-align: left; }
table.headline th.group { text-align: center; }
td.delta { background: #f3f8fc; }
td.pos { color: #005a8c; } td.neg { color: #a33b00; }
td.na { color: #aaa; }
span.ci { color: var(--muted); font-size: 12px; display: block; }
figure.plot { display: inline-block; margin: 6px 10px 14px 0; vertical-align: top; }
figure.plot svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figure.plot figcaption { color: var(--muted); font-size: 13px; max-width: 720px; }
.grid2 { display: flex; flex-wrap: wrap; gap: 4px 12px; }
.grid2 figure.plot { flex: 0 1 560px; }
p.missing { background: #fff6e5; border-left: 4px solid #E69F00; padding: 6px 12px; margin: 6px 0; }
div.missing-box { background: #fff6e5; border: 1px solid #f0d29a; border-radius: 6px; padding: 8px 16px; margin: 12px 0; }
div.missing-box ul { margin: 4px 0; padding-left: 20px; }
p.note { color: var(--muted); font-size: 13px; margin: 4px 0; }
details { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; padding: 4px 12px; background: #fff; }
details[open] { background: #fcfcfb; }
summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
summary .pass { color: #00795a; } summary .fail { color: #b34700; }
pre { background: var(--bg-alt); padding: 8px 10px; overflow-x: auto; font-size: 12.5px; line-height: 1.35;
      border-radius: 4px; white-space: pre-wrap; word-break: break-word; max-height: 460px; overflow-y: auto; }
pre.json { max-height: 320px; }
.label { font-size: 13px; font-weight: 600; margin: 8px 0 2px; color: var(--muted); }
code { background: var(--bg-alt); padding: 0 3px; border-radius: 3px; }
footer { margin-top: 48px; color: var(--muted); font-size: 13px; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("</pre><script>alert('x')</script> & \"q\""),
            "&lt;/pre&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{0}b"), "a\\u{0}b");
    }

    #[test]
    fn clip_says_what_it_left_out() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 2), "ab\n[... 4 more characters not shown]");
    }
}
