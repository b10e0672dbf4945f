//! Renderers: NExT inline comments, scratchpad, JSON, none; and the inverse of inline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{Event, EventKind, Trace, TruncationReason};

/// Output representation of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// NExT inline format: the source with trailing `# (k) name=value;` comments.
    #[default]
    Inline,
    /// Each event in execution order: the line that ran and the state it left.
    Scratchpad,
    /// The raw event list as JSON (machine readable).
    Json,
    /// No trace (an empty string), for the without-trace ablation.
    None,
}

impl Format {
    /// All formats, for statistics.
    pub const ALL: [Format; 4] = [
        Format::Inline,
        Format::Scratchpad,
        Format::Json,
        Format::None,
    ];

    /// Lower-case name (`inline`, `scratchpad`, `json`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Inline => "inline",
            Format::Scratchpad => "scratchpad",
            Format::Json => "json",
            Format::None => "none",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inline" => Ok(Format::Inline),
            "scratchpad" => Ok(Format::Scratchpad),
            "json" => Ok(Format::Json),
            "none" => Ok(Format::None),
            other => Err(format!(
                "unknown trace format `{other}` (expected inline, scratchpad, json or none)"
            )),
        }
    }
}

/// Settings of the renderers (NEXT_SPEC.md section 2, rules 4 and 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderOptions {
    /// Events shown at the start of a line that ran many times.
    pub head: usize,
    /// Events shown at the end of such a line, after `...;`.
    pub tail: usize,
    /// Character budget of one line's comment: fewer head events are shown while it is exceeded
    /// (never fewer than one).
    pub line_budget: usize,
    /// Longest value shown; longer ones are cut to a head and a tail around `...`.
    pub value_max_chars: usize,
    /// Budget of the whole rendering, measured in characters by [`render`] or by the measure
    /// given to [`render_measured`] (e.g. a tokenizer's token count). `None`: unlimited.
    pub total_budget: Option<usize>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            head: 3,
            tail: 1,
            line_budget: 100,
            value_max_chars: 60,
            total_budget: None,
        }
    }
}

/// Render a trace, measuring [`RenderOptions::total_budget`] in characters.
pub fn render(trace: &Trace, format: Format, opts: &RenderOptions) -> String {
    render_measured(trace, format, opts, &|s: &str| s.chars().count())
}

/// Render a trace, measuring [`RenderOptions::total_budget`] with `measure` (for example a
/// tokenizer's token count). When the budget is exceeded the rendering is compressed step by
/// step (fewer head events, shorter values, smaller line budget); if that is not enough, the
/// last events are dropped and a `[trace truncated: render budget]` marker is written.
pub fn render_measured(
    trace: &Trace,
    format: Format,
    opts: &RenderOptions,
    measure: &dyn Fn(&str) -> usize,
) -> String {
    let all = trace.events.len();
    let first = render_once(trace, format, opts, all, false);
    let Some(budget) = opts.total_budget else {
        return first;
    };
    if format == Format::None || measure(&first) <= budget {
        return first;
    }
    let mut o = opts.clone();
    let mut last = first;
    loop {
        let changed = if o.head > 1 {
            o.head -= 1;
            true
        } else if o.value_max_chars > 16 {
            o.value_max_chars = (o.value_max_chars / 2).max(16);
            true
        } else if o.line_budget > 40 {
            o.line_budget = (o.line_budget / 2).max(40);
            true
        } else {
            false
        };
        if !changed {
            break;
        }
        last = render_once(trace, format, &o, all, false);
        if measure(&last) <= budget {
            return last;
        }
    }
    // Drop events from the end (binary search on the number kept).
    let (mut lo, mut hi) = (0usize, all);
    let mut best = None;
    while lo <= hi {
        let mid = (lo + hi) / 2;
        let text = render_once(trace, format, &o, mid, true);
        if measure(&text) <= budget {
            best = Some(text);
            lo = mid + 1;
        } else if mid == 0 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    best.unwrap_or(last)
}

fn render_once(trace: &Trace, format: Format, o: &RenderOptions, keep: usize, cut: bool) -> String {
    let events = &trace.events[..keep.min(trace.events.len())];
    let marker = if cut && keep < trace.events.len() {
        Some((
            "[trace truncated: render budget]".to_string(),
            events.last().map(|e| e.line),
        ))
    } else {
        trace.truncated.as_ref().map(|t| {
            let why = match t.reason {
                TruncationReason::Steps => "step budget reached",
                TruncationReason::Time => "time budget reached",
                TruncationReason::Killed => "run killed by the sandbox",
            };
            (format!("[trace truncated: {why}]"), t.line)
        })
    };
    match format {
        Format::Inline => inline(trace, events, o, marker),
        Format::Scratchpad => scratchpad(trace, events, o, marker),
        Format::Json => {
            #[derive(Serialize)]
            struct J<'a> {
                events: &'a [Event],
                truncated: Option<&'a str>,
                verdict: &'a crate::TestOutcome,
            }
            serde_json::to_string(&J {
                events,
                truncated: marker.as_ref().map(|m| m.0.as_str()),
                verdict: &trace.verdict,
            })
            .unwrap_or_default()
        }
        Format::None => String::new(),
    }
}

/// Physical lines with their terminators (`\r\n`, `\n` or `\r`), as Python counts them.
pub fn split_lines(text: &str) -> Vec<(&str, &str)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => {
                out.push((&text[start..i], &text[i..i + 1]));
                i += 1;
                start = i;
            }
            b'\r' => {
                let end = if i + 1 < b.len() && b[i + 1] == b'\n' {
                    i + 2
                } else {
                    i + 1
                };
                out.push((&text[start..i], &text[i..end]));
                i = end;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        out.push((&text[start..], ""));
    }
    out
}

/// Cut a value to at most `max` characters: a head, `...`, and a tail.
pub fn clip_value(v: &str, max: usize) -> String {
    let n = v.chars().count();
    if n <= max || max < 5 {
        return v.to_string();
    }
    let head = (max - 3) * 2 / 3;
    let tail = max - 3 - head;
    let h: String = v.chars().take(head).collect();
    let t: String = v.chars().skip(n - tail).collect();
    format!("{h}...{t}")
}

/// Cut a string to at most `max_bytes` bytes on a character boundary.
pub(crate) fn clip(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_string();
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The text of one event, e.g. `(5) i=2; total=7;` or `(9) __exception__ = AssertionError()`.
pub fn event_text(e: &Event, value_max: usize) -> String {
    let mut s = format!("({})", e.step);
    match &e.kind {
        EventKind::Call { vars } | EventKind::Line { vars } => {
            for v in vars {
                let _ = write!(s, " {}={};", v.name, clip_value(&v.value, value_max));
            }
        }
        EventKind::Return { value } => {
            let _ = write!(s, " __return__={};", clip_value(value, value_max));
        }
        EventKind::Yield { value } => {
            let _ = write!(s, " __yield__={};", clip_value(value, value_max));
        }
        EventKind::Exception { exception } => {
            let _ = write!(s, " __exception__ = {}", clip_value(exception, value_max));
        }
    }
    s
}

/// One line's comment body under rule 4 (head, `...;`, tail, per-line budget).
fn line_body(events: &[&Event], o: &RenderOptions) -> String {
    let texts: Vec<String> = events
        .iter()
        .map(|e| event_text(e, o.value_max_chars))
        .collect();
    let n = texts.len();
    let join = |h: usize| -> String {
        if h + o.tail >= n {
            return texts.join(" ");
        }
        let mut parts: Vec<&str> = texts[..h].iter().map(String::as_str).collect();
        parts.push("...;");
        parts.extend(texts[n - o.tail..].iter().map(String::as_str));
        parts.join(" ")
    };
    let mut h = o.head;
    loop {
        let body = join(h);
        if h <= 1 || body.chars().count() <= o.line_budget {
            return body;
        }
        h -= 1;
    }
}

fn inline(
    trace: &Trace,
    events: &[Event],
    o: &RenderOptions,
    marker: Option<(String, Option<u32>)>,
) -> String {
    let lines = split_lines(&trace.source);
    let nlines = lines.len().max(1) as u32;
    let mut by_line: BTreeMap<u32, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_line.entry(e.line.clamp(1, nlines)).or_default().push(e);
    }
    let mut comments: BTreeMap<u32, String> = by_line
        .iter()
        .map(|(l, evs)| (*l, line_body(evs, o)))
        .collect();
    if let Some((text, line)) = marker {
        let line = line
            .or_else(|| events.last().map(|e| e.line))
            .unwrap_or(trace.test_first_line)
            .clamp(1, nlines);
        let c = comments.entry(line).or_default();
        if !c.is_empty() {
            c.push(' ');
        }
        c.push_str(&text);
    }
    let mut out = String::with_capacity(trace.source.len() * 2);
    for (i, (content, term)) in lines.iter().enumerate() {
        out.push_str(content);
        if let Some(c) = comments.get(&(i as u32 + 1)) {
            out.push_str("  # ");
            out.push_str(c);
        }
        out.push_str(term);
    }
    out
}

fn scratchpad(
    trace: &Trace,
    events: &[Event],
    o: &RenderOptions,
    marker: Option<(String, Option<u32>)>,
) -> String {
    let lines = split_lines(&trace.source);
    let mut out = String::new();
    for e in events {
        let code = lines
            .get(e.line as usize - 1)
            .map(|l| l.0.trim())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:>3} | {code}  # {}",
            e.line,
            event_text(e, o.value_max_chars)
        );
    }
    if let Some((text, _)) = marker {
        let _ = writeln!(out, "# {text}");
    }
    out
}

/// Does the rest of a line, right after a `  # `, start one of our comments?
fn is_marker(rest: &str) -> bool {
    if let Some(r) = rest.strip_prefix('(') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        return digits > 0 && r[digits..].starts_with(')');
    }
    rest.starts_with("...;") || rest.starts_with("[trace truncated")
}

/// Position of our comment in one line, if any.
pub fn marker_position(line: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = line[from..].find("  # ") {
        let at = from + p;
        if is_marker(&line[at + 4..]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Remove the inline trace comments from an [`Format::Inline`] rendering, giving back the
/// traced source byte for byte (provided no source line itself contains a `  # (<digits>)`
/// comment; [`source_is_strippable`] checks that).
pub fn strip_inline_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (content, term) in split_lines(text) {
        match marker_position(content) {
            Some(p) => out.push_str(&content[..p]),
            None => out.push_str(content),
        }
        out.push_str(term);
    }
    out
}

/// True when no line of `source` already looks like it carries one of our comments, so that
/// [`strip_inline_comments`] of its inline rendering returns exactly `source`.
pub fn source_is_strippable(source: &str) -> bool {
    split_lines(source)
        .iter()
        .all(|(c, _)| marker_position(c).is_none())
}
