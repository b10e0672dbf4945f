//! Python source split into top-level statements by a tokenizer, not by counting characters.
//!
//! [`logical_lines`] follows the rules of CPython's tokenizer that decide where a logical line
//! ends: string literals (every prefix: `r`, `b`, `u`, `f`, `rb`, `fr`, ... in any case; single
//! and triple quotes; a backslash always escapes the next character, also in raw strings),
//! f-strings with nested replacement fields whose expressions hold strings of their own (also
//! with the same quote, as Python 3.12 allows), comments, brackets and backslash
//! continuations. A newline ends a logical line only outside brackets and strings and when not
//! escaped. [`top_level_statements`] groups logical lines into top-level statements: a
//! statement starts at a logical line without indentation; `else`/`elif`/`except`/`finally`
//! clauses and indented lines continue it, and decorators attach to the definition below them.
//! Comment-only and blank lines between statements belong to none.
//!
//! Both the tests file splitter ([`crate::task::split_tests`], used by `nxt repair --tests`
//! and `nxt exec --tests`) and the completion parser ([`crate::parse`]) use this. Source that
//! Python itself would reject (an unterminated string) is still split, by ending the string
//! at the end of its line (single quotes) or of the text (triple quotes).

/// One logical line: physical lines `first..=last` (0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// First physical line.
    pub first: usize,
    /// Last physical line.
    pub last: usize,
    /// Whether the first physical line starts with whitespace.
    pub indented: bool,
    /// Whether the line holds only a comment or nothing (Python's `NL`, not `NEWLINE`).
    pub blank: bool,
}

/// One top-level statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// First physical line (0-based).
    pub first: usize,
    /// Last physical line (0-based).
    pub last: usize,
    /// Its source: the physical lines joined with `\n`, no trailing newline.
    pub text: String,
}

/// Lexer state across physical lines.
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// Open brackets of the code outside strings.
    depth: usize,
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    /// If a string literal (with its prefix) starts at `i`, its prefix length, quote byte and
    /// whether it is triple-quoted and an f-string.
    fn string_start(&self) -> Option<(usize, u8, bool, bool)> {
        let mut k = 0;
        let mut fmt = false;
        while k < 3 {
            match self.peek(k) {
                Some(c @ (b'r' | b'R' | b'b' | b'B' | b'u' | b'U' | b'f' | b'F' | b't' | b'T')) => {
                    fmt |= matches!(c, b'f' | b'F' | b't' | b'T');
                    k += 1;
                }
                _ => break,
            }
        }
        let q = self.peek(k)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        // Prefix letters directly before the quote, only when not the end of a longer name.
        if k > 0 && self.i > 0 {
            let prev = self.s[self.i - 1];
            if prev.is_ascii_alphanumeric() || prev == b'_' || prev >= 0x80 {
                return None;
            }
        }
        let triple = self.peek(k + 1) == Some(q) && self.peek(k + 2) == Some(q);
        Some((k, q, triple, fmt))
    }

    /// Skips a string literal starting at `i` (prefix included).
    fn skip_string(&mut self, prefix: usize, q: u8, triple: bool, fmt: bool) {
        self.i += prefix + if triple { 3 } else { 1 };
        loop {
            let Some(c) = self.peek(0) else { return };
            match c {
                b'\\' => self.i += 2,
                b'\n' if !triple => return, // unterminated: Python would refuse it
                c if c == q => {
                    if !triple {
                        self.i += 1;
                        return;
                    }
                    if self.peek(1) == Some(q) && self.peek(2) == Some(q) {
                        self.i += 3;
                        return;
                    }
                    self.i += 1;
                }
                b'{' if fmt => {
                    if self.peek(1) == Some(b'{') {
                        self.i += 2;
                    } else {
                        self.i += 1;
                        self.skip_field(q, triple);
                    }
                }
                _ => self.i += 1,
            }
        }
    }

    /// Skips an f-string replacement field after its `{`, up to and including the matching
    /// `}`: an expression (brackets and strings of any quote), then optionally `!conv` and a
    /// `:format spec` that may hold nested fields.
    fn skip_field(&mut self, q: u8, triple: bool) {
        let mut depth = 0usize;
        loop {
            let Some(c) = self.peek(0) else { return };
            if let Some((p, q2, t2, f2)) = self.string_start() {
                self.skip_string(p, q2, t2, f2);
                continue;
            }
            match c {
                b'\n' if !triple && depth == 0 => return,
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    self.i += 1;
                }
                b')' | b']' => {
                    depth = depth.saturating_sub(1);
                    self.i += 1;
                }
                b'}' if depth > 0 => {
                    depth -= 1;
                    self.i += 1;
                }
                b'}' => {
                    self.i += 1;
                    return;
                }
                b':' if depth == 0 => {
                    self.i += 1;
                    self.skip_format_spec(q, triple);
                    return;
                }
                c if c == q && !triple => return, // the f-string ends: malformed field
                _ => self.i += 1,
            }
        }
    }

    /// Skips a format spec up to and including the `}` closing its field.
    fn skip_format_spec(&mut self, q: u8, triple: bool) {
        loop {
            let Some(c) = self.peek(0) else { return };
            match c {
                b'{' => {
                    self.i += 1;
                    self.skip_field(q, triple);
                }
                b'}' => {
                    self.i += 1;
                    return;
                }
                b'\n' if !triple => return,
                c if c == q && !triple => return,
                _ => self.i += 1,
            }
        }
    }
}

/// The logical lines of `src` (see the module documentation).
pub fn logical_lines(src: &str) -> Vec<LogicalLine> {
    let mut lx = Lexer {
        s: src.as_bytes(),
        i: 0,
        depth: 0,
    };
    let mut out = Vec::new();
    let mut line = 0usize; // physical line of `lx.i`
    let mut first = 0usize;
    let mut at_start = true; // nothing but whitespace seen on this logical line yet
    let mut indented = false;
    let mut blank = true;
    // Counts the newlines in s[a..b].
    let newlines =
        |s: &[u8], a: usize, b: usize| s[a..b.min(s.len())].iter().filter(|&&c| c == b'\n').count();
    while lx.i < lx.s.len() {
        let c = lx.s[lx.i];
        if at_start {
            if c == b' ' || c == b'\t' || c == b'\x0c' {
                indented = true;
                lx.i += 1;
                continue;
            }
            at_start = false;
        }
        if let Some((p, q, triple, fmt)) = lx.string_start() {
            let start = lx.i;
            lx.skip_string(p, q, triple, fmt);
            line += newlines(lx.s, start, lx.i);
            blank = false;
            continue;
        }
        match c {
            b'#' => {
                while lx.i < lx.s.len() && lx.s[lx.i] != b'\n' {
                    lx.i += 1;
                }
            }
            b'\\' if lx.peek(1) == Some(b'\n') => {
                lx.i += 2;
                line += 1;
                blank = false;
            }
            b'\\' if lx.peek(1) == Some(b'\r') && lx.peek(2) == Some(b'\n') => {
                lx.i += 3;
                line += 1;
                blank = false;
            }
            b'\n' => {
                lx.i += 1;
                if lx.depth == 0 {
                    out.push(LogicalLine {
                        first,
                        last: line,
                        indented,
                        blank,
                    });
                    first = line + 1;
                    at_start = true;
                    indented = false;
                    blank = true;
                }
                line += 1;
            }
            b'(' | b'[' | b'{' => {
                lx.depth += 1;
                lx.i += 1;
                blank = false;
            }
            b')' | b']' | b'}' => {
                lx.depth = lx.depth.saturating_sub(1);
                lx.i += 1;
                blank = false;
            }
            b'\r' => lx.i += 1,
            _ => {
                lx.i += 1;
                blank = false;
            }
        }
    }
    // The last logical line: one without a final newline, or one that a bracket left open
    // (a syntax error, which must stay a statement rather than vanish).
    let open_at_end = !blank && src.ends_with('\n');
    if open_at_end || (!src.is_empty() && !src.ends_with('\n')) {
        let last = if src.ends_with('\n') {
            line.saturating_sub(1)
        } else {
            line
        };
        out.push(LogicalLine {
            first,
            last: last.max(first),
            indented,
            blank,
        });
    }
    out
}

/// Whether a logical line continues the statement above it: a clause of a compound statement.
fn is_clause(first_line: &str) -> bool {
    let t = first_line.trim_start();
    ["else", "elif", "except", "finally"].iter().any(|k| {
        t.strip_prefix(k).is_some_and(|rest| {
            !rest
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

/// The top-level statements of `src` (see the module documentation).
pub fn top_level_statements(src: &str) -> Vec<Statement> {
    let lines: Vec<&str> = src
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut out: Vec<(usize, usize, bool)> = Vec::new(); // (first, last, decorators only)
    for ll in logical_lines(src) {
        if ll.blank {
            continue;
        }
        let head = lines.get(ll.first).copied().unwrap_or("");
        let decorator = head.trim_start().starts_with('@');
        let continues = match out.last() {
            Some(&(_, _, only_decorators)) => ll.indented || is_clause(head) || only_decorators,
            None => false,
        };
        match out.last_mut() {
            Some(cur) if continues => {
                cur.1 = ll.last;
                cur.2 = cur.2 && decorator && !ll.indented;
            }
            _ => out.push((ll.first, ll.last, decorator)),
        }
    }
    out.into_iter()
        .map(|(first, last, _)| Statement {
            first,
            last,
            text: lines[first..=last.min(lines.len().saturating_sub(1))]
                .join("\n")
                .trim_end()
                .to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bracket_left_open_keeps_the_rest_as_one_statement() {
        // It used to vanish: the tests file below gave one test, which passed.
        let src = "assert f(1) == 3\nassert f(1) == (\nassert g\n";
        assert_eq!(
            texts(src),
            vec!["assert f(1) == 3", "assert f(1) == (\nassert g"]
        );
        assert_eq!(texts("x = [1,\n"), vec!["x = [1,"]);
        assert_eq!(texts("a = 1\n\n"), vec!["a = 1"]);
    }

    fn texts(src: &str) -> Vec<String> {
        top_level_statements(src)
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    #[test]
    fn brackets_and_hashes_inside_strings_do_not_count() {
        let src = "assert f(')') == 1\nassert f('(') == 2\nassert g(\"#\") == 3\nx = '[' ; y = '{'\nassert h(x) == ']'\n";
        assert_eq!(
            texts(src),
            vec![
                "assert f(')') == 1",
                "assert f('(') == 2",
                "assert g(\"#\") == 3",
                "x = '[' ; y = '{'",
                "assert h(x) == ']'"
            ]
        );
    }

    #[test]
    fn triple_quotes_span_lines() {
        let src = "s = '''a\n)\nb'''\nt = \"\"\"\n# not a comment\n(\"\"\"\nassert s\n";
        assert_eq!(
            texts(src),
            vec![
                "s = '''a\n)\nb'''",
                "t = \"\"\"\n# not a comment\n(\"\"\"",
                "assert s"
            ]
        );
    }

    #[test]
    fn f_strings_with_nested_fields_and_quotes() {
        let src = concat!(
            "assert f\"{x['(']}\" == '1'\n",
            "assert f'{d[\"a\"]:>{w}}' == ' 1'\n",
            "assert f\"{x[\"(\"]}\" == '1'\n",
            "assert f'{{(' == '{('\n",
            "assert rb'\\'(' == b\"'(\"\n",
            "assert F'''{\n  1 + (2)\n}''' == '3'\n",
            "done = 1\n"
        );
        let t = texts(src);
        assert_eq!(t.len(), 7, "{t:#?}");
        assert_eq!(t[5], "assert F'''{\n  1 + (2)\n}''' == '3'");
        assert_eq!(t[6], "done = 1");
    }

    #[test]
    fn comments_with_brackets_and_continuations() {
        let src = "x = (1,  # a ) in a comment\n     2)\ny = 1 + \\\n    2\n# (\nz = 3\n";
        assert_eq!(
            texts(src),
            vec![
                "x = (1,  # a ) in a comment\n     2)",
                "y = 1 + \\\n    2",
                "z = 3"
            ]
        );
    }

    #[test]
    fn compound_statements_clauses_and_decorators() {
        let src = "if x:\n    pass\n# c\nelse:\n    pass\n@dec(')')\n@other\ndef g():\n\n    return '('\ntry:\n    pass\nexcept E:\n    pass\nfinally:\n    pass\nelse_ = 1\n";
        assert_eq!(
            texts(src),
            vec![
                "if x:\n    pass\n# c\nelse:\n    pass",
                "@dec(')')\n@other\ndef g():\n\n    return '('",
                "try:\n    pass\nexcept E:\n    pass\nfinally:\n    pass",
                "else_ = 1"
            ]
        );
    }

    #[test]
    fn names_ending_in_prefix_letters_are_not_prefixes() {
        // `f(` after a name: `buf'...` cannot occur, but `if'x'` is `if 'x'`.
        let src = "assert buf == 'a(b'\nif'(':\n    pass\nz = 1\n";
        assert_eq!(texts(src).len(), 3);
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        assert_eq!(
            texts("a = (1,\r\n 2)\r\nb = 2"),
            vec!["a = (1,\n 2)", "b = 2"]
        );
        assert!(texts("").is_empty());
        assert!(texts("\n\n# only a comment\n").is_empty());
    }

    #[test]
    fn unterminated_strings_still_split() {
        assert_eq!(texts("x = 'abc\ny = 2\n"), vec!["x = 'abc", "y = 2"]);
    }
}
