//! The claim extractor: finds the execution claims a rationale makes.
//!
//! Recognised forms (case-insensitive, optional backticks around names and values):
//!
//! * variable values: `total=7`, `total = 7`, "`total` is 7", "x becomes [1, 2]", "x was set to
//!   3", "the value of x is 3", "x equals 'a'", "x takes the values 2, 3 and 4";
//! * return values: `__return__=5`, "returns 5", "the function returns False for [1, 2]",
//!   "`f(3)` returns 9", "the return value is None";
//! * exceptions: `__exception__ = IndexError(...)`, "raises an IndexError", "a ZeroDivisionError is
//!   raised";
//! * loops: "the loop runs 4 times", "the loop body executes twice", "the loop never runs";
//! * branches and statements: "the if branch is never taken", "`result = True` never runs";
//!
//! each with the line or step it cites in the same sentence ("on line 4", "(line 4)", "at step
//! 7", "(7) i=3"). A claim inside a clause that speaks about the fix or an expectation ("should
//! return", "the expected answer is", "to fix it", "with that slice, ... returns 1") is marked
//! hypothetical: it is not about the traced run. Text inside backtick spans that holds code
//! (`result = True`, a call) and fenced code blocks are not read as claims. Negated forms
//! ("x is not 3", "never returns True") are not claims.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::value::PyValue;

/// The place a claim cites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cite {
    /// A 1-based source line ("on line 4").
    Line(u32),
    /// A trace step ("at step 7", "(7)").
    Step(u64),
}

/// What a claim says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClaimKind {
    /// A variable held a value.
    Value {
        /// Variable name.
        name: String,
        /// The value as written.
        value: String,
    },
    /// A function returned a value.
    Return {
        /// The function named, if any.
        function: Option<String>,
        /// The arguments named (as written, e.g. `[1, 2]` or `3, 4`), if any.
        args: Option<String>,
        /// The value as written.
        value: String,
    },
    /// An exception of this type was raised.
    Exception {
        /// Exception type name.
        name: String,
    },
    /// A loop ran this many times.
    LoopCount {
        /// Iterations claimed.
        times: u64,
    },
    /// An if branch was never taken.
    BranchNeverTaken,
    /// A statement never ran.
    NeverRuns {
        /// The statement as quoted.
        code: String,
    },
}

/// One extracted claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The claim's text in the rationale.
    pub text: String,
    /// Byte offset of the claim's start in the rationale.
    pub start: usize,
    /// Byte offset of its end.
    pub end: usize,
    /// What it says.
    pub kind: ClaimKind,
    /// The place it cites, if it cites one.
    pub cite: Option<Cite>,
    /// Said about the fix or an expectation, not about the traced run.
    pub hypothetical: bool,
}

/// Identifier pattern.
const IDENT: &str = r"[A-Za-z_][A-Za-z0-9_]*";

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| match Regex::new(pattern) {
        Ok(r) => r,
        // The patterns are constants of this file, covered by its tests.
        Err(e) => panic!("bad built-in pattern {pattern}: {e}"),
    })
}

fn assign_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(&C, &format!(r"({IDENT})( ?= ?)"))
}

fn copula_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        &format!(
            r"(?i)(?:\bthe value of\s+|\bvariable\s+)?`?({IDENT})`?(?:'s value)?\s+(?:is now|is still|stays at|remains at|stays|remains|starts at|starts as|is initially|was initially|is initialised to|is initialized to|was initialised to|was initialized to|grows to|drops to|increases to|decreases to|ends at|ends as|reaches|is set to|was set to|gets set to|is assigned|was assigned|is updated to|was updated to|ends up as|ends up being|has the value|had the value|holds the value|changes to|evaluates to|goes to|becomes|became|equals|is|was|holds|held)\s+"
        ),
    )
}

fn takes_values_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        &format!(
            r"(?i)`?({IDENT})`?\s+(?:takes|took|goes through|runs through|takes on)\s+(?:the\s+|only\s+the\s+|only\s+)?values?\s+"
        ),
    )
}

fn return_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        &format!(
            r"(?i)(?:`?({IDENT})(?:\(([^()`]*)\))?`?\s+)?(?:\b(?:returns|returned|returning)\s+(?:the value\s+|the result\s+)?|\bthe return value (?:is|was)\s+|\breturn value of\s+`?({IDENT})`?(?:\(([^()`]*)\))?`?\s+(?:is|was)\s+)"
        ),
    )
}

fn exception_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        r"(?i)(?:\b(?:raises|raised|throws|threw|fails with|crashes with|shows|hits|triggers|ends with|stops with)\s+(?:an?\s+|the\s+)?`?([A-Z][A-Za-z]*(?:Error|Exception))\b|\b(?:an?\s+|the\s+)`?([A-Z][A-Za-z]*(?:Error|Exception))`?\s+(?:is|was)\s+raised)",
    )
}

fn loop_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        r"(?i)\b(?:the\s+)?(?:for\s+|while\s+|`for`\s+|`while`\s+)?loop(?:\s+body)?(?:\s+(?:on|at|in)\s+line\s+\d+)?\s+(?:only\s+)?(?:runs|ran|executes|executed|iterates|iterated|is executed|was executed|repeats|goes round|goes around)\s+(?:only\s+|exactly\s+)?(\d+|once|twice|one|two|three|four|five|six|seven|eight|nine|ten)(?:\s+times?)?\b",
    )
}

fn loop_never_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        r"(?i)\b(?:the\s+)?(?:for\s+|while\s+)?loop(?:\s+body)?\s+(?:never runs|never executes|is never executed|never starts|does not run|doesn't run|runs zero times)",
    )
}

fn branch_never_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        r"(?i)\b(?:the\s+)?(?:`if`|if)(?:\s+branch|\s+body|\s+block|\s+statement)?\s+(?:is never taken|is never entered|never runs|is never executed|never executes|is never true|is skipped every time)|\bthe\s+(?:if\s+)?condition\s+is\s+never\s+(?:true|met|satisfied)|\bnever enters the\s+(?:`if`|if)",
    )
}

fn never_runs_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        r"(?i)`([^`\n]+)`\s+(?:never runs|never executes|is never executed|is never reached|never happens|is never run|is skipped|does not run|doesn't run)",
    )
}

fn line_cite_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(&C, r"(?i)\bline\s+(\d{1,6})\b")
}

fn step_cite_re() -> &'static Regex {
    static C: OnceLock<Regex> = OnceLock::new();
    re(
        &C,
        r"(?i)\bstep\s+\(?(\d{1,9})\)?|\((\d{1,9})\)\s*`?[A-Za-z_]",
    )
}

/// Words that mark a clause as about the fix or an expectation.
const HYPOTHETICAL: &[&str] = &[
    "should",
    "would",
    "could",
    "expected",
    "expects",
    "expect",
    "expecting",
    "fix",
    "fixed",
    "fixing",
    "corrected",
    "correct version",
    "must",
    "needs to",
    "need to",
    "ought",
    "supposed",
    "with that",
    "with this",
    "with the fix",
    "after the change",
    "after the fix",
    "if we",
    "will",
    "want",
    "wants",
    "desired",
    "intended",
    "correct answer",
    "correct result",
    "right answer",
];

/// Words that, right after a literal, make it part of something longer than a value claim
/// ("n is 4 characters long", "x is 3 or 4", "i is 2 times larger").
const NOT_FOLLOWERS: &[&str] = &[
    "times",
    "more",
    "less",
    "fewer",
    "greater",
    "smaller",
    "larger",
    "bigger",
    "characters",
    "character",
    "chars",
    "elements",
    "element",
    "items",
    "item",
    "digits",
    "digit",
    "letters",
    "letter",
    "bits",
    "bit",
    "words",
    "word",
    "or",
    "percent",
    "plus",
    "minus",
    "divided",
    "multiplied",
    "mod",
    "modulo",
    "to",
    "th",
    "st",
    "nd",
    "rd",
    "positions",
    "steps",
    "iterations",
    "values",
    "numbers",
    "entries",
    "rows",
    "columns",
    "away",
    "apart",
];

/// A span of the rationale not read for claims (a fenced code block or a code-like backtick
/// span), and backtick spans that may hold a name or a value.
fn code_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"```") {
            let end = text[i + 3..]
                .find("```")
                .map(|e| i + 3 + e + 3)
                .unwrap_or(b.len());
            out.push((i, end));
            i = end;
            continue;
        }
        if b[i] == b'`' {
            if let Some(e) = text[i + 1..].find(['`', '\n']) {
                let end = i + 1 + e;
                if b[end] == b'`' {
                    let inner = &text[i + 1..end];
                    if is_code(inner) {
                        out.push((i, end + 1));
                    }
                    i = end + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// Does a backtick span hold code rather than a name, a value or a trace quote like `x=3`?
fn is_code(inner: &str) -> bool {
    let t = inner.trim();
    if PyValue::parse(t).is_some() {
        return false;
    }
    // `x = 3` with spaces is a statement; `x=3` quotes the trace.
    let spaced_assign = t.contains(" = ") || t.contains(" += ") || t.contains(" -= ");
    let keyword = ["return ", "if ", "for ", "while ", "def ", "elif ", "else"]
        .iter()
        .any(|k| t.starts_with(k));
    spaced_assign || keyword
}

fn in_spans(spans: &[(usize, usize)], at: usize) -> bool {
    spans.iter().any(|(s, e)| *s <= at && at < *e)
}

/// Sentence boundaries: byte ranges.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_tick = false;
    while i < b.len() {
        let c = b[i];
        if c == b'`' {
            in_tick = !in_tick;
        }
        let end_here = if c == b'\n' {
            // A line break ends a sentence when a blank line or a list item follows.
            true
        } else if !in_tick && matches!(c, b'.' | b'!' | b'?') {
            let next = b.get(i + 1).copied();
            next.is_none() || matches!(next, Some(b' ' | b'\n' | b'\t'))
        } else {
            false
        };
        if end_here {
            out.push((start, i + 1));
            start = i + 1;
            in_tick = false;
        }
        i += 1;
    }
    if start < b.len() {
        out.push((start, b.len()));
    }
    out
}

/// The byte range of the sentence `s..e` that speaks about the fix or an expectation, if
/// any: from the clause holding the first hypothetical word to the next contrasting clause
/// ("x should be 3; the trace shows x=4", "as expected, but then it returns 5").
fn hypothetical_range(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let lower = text[s..e].to_ascii_lowercase();
    let trimmed = lower.trim_start();
    let lead = lower.len() - trimmed.len();
    // A sentence that opens with the fix ("To fix it, ...", "With that slice, ...") is about
    // the fix as a whole.
    if FIX_OPENERS.iter().any(|o| trimmed.starts_with(o)) {
        return Some((s + lead, e));
    }
    let mut first: Option<usize> = None;
    for w in HYPOTHETICAL {
        let mut from = 0;
        while let Some(p) = lower[from..].find(w) {
            let at = from + p;
            let before_ok = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
            let after = at + w.len();
            let after_ok = after >= lower.len() || !lower.as_bytes()[after].is_ascii_alphanumeric();
            if before_ok && after_ok {
                first = Some(first.map_or(at, |f| f.min(at)));
                break;
            }
            from = at + 1;
        }
    }
    // The hypothetical part starts at the clause holding the word (after the last `,`, `;`,
    // `:` or joining word before it), so "x=3, so the function should return 4" and "it
    // returns 2 while the test expects 3" keep their first claim.
    let at = first?;
    let mut start = lower[..at]
        .rfind([',', ';', ':'])
        .map(|p| p + 1)
        .unwrap_or(0);
    for conj in [
        " and ",
        " while ",
        " but ",
        " so ",
        " because ",
        " whereas ",
        " although ",
        " yet ",
    ] {
        if let Some(p) = lower[..at].rfind(conj) {
            start = start.max(p + 1);
        }
    }
    let mut end = lower.len();
    for stop in [
        "; ",
        " but ",
        " while ",
        " whereas ",
        " although ",
        " yet ",
        " however",
    ] {
        if let Some(p) = lower[at..].find(stop) {
            end = end.min(at + p);
        }
    }
    Some((s + start, s + end))
}

/// Sentence openings that make the whole sentence about the fix.
const FIX_OPENERS: &[&str] = &[
    "to fix",
    "with that",
    "with this",
    "with the fix",
    "with the corrected",
    "after the fix",
    "after fixing",
    "once fixed",
    "if we",
    "the fix",
    "fixed",
    "fix:",
    "the corrected",
    "the correct",
];

/// A char boundary at most `n` bytes before `at` (for looking back a few words).
fn window_start(text: &str, at: usize, n: usize) -> usize {
    let mut w = at.saturating_sub(n);
    while !text.is_char_boundary(w) {
        w -= 1;
    }
    w
}

/// Is the word before `at` a negation ("not", "never", "n't")?
fn negated(text: &str, at: usize) -> bool {
    let before = text[window_start(text, at, 40)..at]
        .trim_end_matches(|c: char| c.is_whitespace() || c == '`')
        .to_ascii_lowercase();
    let last = before
        .rsplit(|c: char| !c.is_alphanumeric() && c != '\'')
        .next()
        .unwrap_or("");
    matches!(last, "not" | "never" | "no" | "none" | "neither" | "nor") || last.ends_with("n't")
}

/// Parse a literal value at `at` (optional backtick around it). Returns the value text and the
/// end offset, when a literal is there and prose or punctuation follows it.
fn literal_at(text: &str, at: usize) -> Option<(String, usize)> {
    let mut i = at;
    let ticked = text[i..].starts_with('`');
    if ticked {
        i += 1;
    }
    let (_, used) = PyValue::parse_prefix(&text[i..])?;
    let lead = text[i..].len() - text[i..].trim_start().len();
    let vstart = i + lead;
    let mut end = i + used;
    let value = text[vstart..end].to_string();
    if ticked {
        if !text[end..].starts_with('`') {
            return None;
        }
        end += 1;
    }
    if !follows_ok(&text[end..]) {
        return None;
    }
    Some((value, end))
}

/// Is what follows a literal the end of the claim (punctuation, the end, or a word that
/// does not continue the value)?
fn follows_ok(rest: &str) -> bool {
    let r = rest.trim_start();
    if r.is_empty() {
        return true;
    }
    let c = r.as_bytes()[0];
    if matches!(
        c,
        b'.' | b',' | b';' | b':' | b')' | b'!' | b'?' | b'`' | b'(' | b'\'' | b'"'
    ) {
        // `5.5` would have been parsed whole; `5.x` is an attribute access, not the end.
        return !(c == b'.'
            && r.as_bytes()
                .get(1)
                .is_some_and(|n| n.is_ascii_alphanumeric()));
    }
    if !rest.starts_with([' ', '\t', '\n']) {
        return false;
    }
    // An operator after the value makes it part of an expression.
    if matches!(
        c,
        b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'&' | b'|' | b'^' | b'['
    ) {
        return false;
    }
    let word: String = r
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_lowercase();
    !NOT_FOLLOWERS.contains(&word.as_str())
}

/// Values in a list "2, 3 and 4" / "2, 3, then 4" starting at `at`.
fn literal_list(text: &str, mut at: usize) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    loop {
        let mut i = at;
        if text[i..].starts_with('`') {
            i += 1;
        }
        let Some((_, used)) = PyValue::parse_prefix(&text[i..]) else {
            break;
        };
        let lead = text[i..].len() - text[i..].trim_start().len();
        let vstart = i + lead;
        let mut end = i + used;
        let value = text[vstart..end].to_string();
        if text[end..].starts_with('`') {
            end += 1;
        }
        out.push((value, vstart, end));
        let rest = &text[end..];
        let sep = [
            ", and then ",
            ", and ",
            ", then ",
            " and then ",
            " and ",
            ", ",
            " then ",
        ]
        .iter()
        .find(|s| rest.starts_with(**s));
        match sep {
            Some(s) => at = end + s.len(),
            None => break,
        }
    }
    out
}

/// Is the char before `at` one that makes the name part of an expression (`a.b`, `n % i`)?
fn expression_before(text: &str, at: usize) -> bool {
    let before = text[..at].trim_end_matches('`');
    let trimmed = before.trim_end();
    let Some(c) = before.chars().last() else {
        return false;
    };
    if c.is_alphanumeric() || c == '_' || c == '.' || c == '[' {
        return true;
    }
    // `n % i is 0`, `a & b is 9`: an operator right before (past spaces) the name.
    matches!(
        trimmed.chars().last(),
        Some('%' | '&' | '|' | '^' | '*' | '/' | '+' | '-' | '<' | '>' | '=' | '~')
    )
}

fn parse_count(w: &str) -> Option<u64> {
    match w.to_ascii_lowercase().as_str() {
        "once" | "one" => Some(1),
        "twice" | "two" => Some(2),
        "three" => Some(3),
        "four" => Some(4),
        "five" => Some(5),
        "six" => Some(6),
        "seven" => Some(7),
        "eight" => Some(8),
        "nine" => Some(9),
        "ten" => Some(10),
        d => d.parse().ok(),
    }
}

/// Extract the claims of a rationale, in text order. Never fails: text it cannot read gives no
/// claim.
pub fn extract_claims(text: &str) -> Vec<Claim> {
    let code = code_spans(text);
    let mut raw: Vec<Claim> = Vec::new();
    let mut push = |start: usize, end: usize, kind: ClaimKind| {
        if in_spans(&code, start) {
            return;
        }
        raw.push(Claim {
            text: text[start..end].to_string(),
            start,
            end,
            kind,
            cite: None,
            hypothetical: false,
        });
    };

    // Return claims first: they take precedence over overlapping value claims.
    for m in return_re().captures_iter(text) {
        let Some(all) = m.get(0) else { continue };
        let verb_at = m
            .get(1)
            .map(|g| g.end())
            .unwrap_or_else(|| all.start())
            .max(all.start());
        if negated(text, all.start()) || negated(text, verb_at) {
            continue;
        }
        let function = m.get(1).or(m.get(3)).map(|g| g.as_str().to_string());
        // "it returns", "function returns": no function named.
        let function = function.filter(|f| {
            !matches!(
                f.to_ascii_lowercase().as_str(),
                "it" | "function"
                    | "program"
                    | "code"
                    | "call"
                    | "helper"
                    | "then"
                    | "and"
                    | "so"
                    | "which"
                    | "still"
                    | "now"
                    | "also"
                    | "this"
                    | "that"
                    | "loop"
                    | "test"
                    | "finally"
                    | "only"
                    | "just"
                    | "instead"
                    | "always"
                    | "actually"
                    | "therefore"
                    | "thus"
            )
        });
        let mut args = m.get(2).or(m.get(4)).map(|g| g.as_str().trim().to_string());
        let end = all.end();
        let rest = &text[end..];
        // `returns __return__=False`: the value is the trace quote.
        let (vat, quoted) = if let Some(r) = rest.strip_prefix("__return__=") {
            (end + rest.len() - r.len(), true)
        } else {
            (end, false)
        };
        let Some((value, mut vend)) = literal_at(text, vat) else {
            continue;
        };
        let _ = quoted;
        // "... returns False for [1, 2]" / "on 35" / "when called with 3".
        let tail = &text[vend..];
        for kw in [" for ", " on ", " when called with ", " given ", " with "] {
            if let Some(after) = tail.strip_prefix(kw) {
                let at = vend + kw.len();
                let after_trim = after.trim_start_matches(['`', ' ']);
                if after_trim.starts_with(|c: char| c.is_ascii_alphabetic())
                    && PyValue::parse_prefix(after_trim).is_none()
                {
                    break;
                }
                if let Some((a, aend)) = literal_at(text, at) {
                    args = Some(a);
                    vend = aend;
                }
                break;
            }
        }
        let start = m.get(1).map(|g| g.start()).unwrap_or(all.start());
        push(
            start,
            vend,
            ClaimKind::Return {
                function,
                args,
                value,
            },
        );
    }

    // `name=value` quotes, `__return__=v`, `__exception__ = E(...)`.
    for m in assign_re().captures_iter(text) {
        let (Some(name), Some(eq)) = (m.get(1), m.get(2)) else {
            continue;
        };
        let start = name.start();
        let after = eq.end();
        if text[after..].starts_with('=') || expression_before(text, start) {
            continue;
        }
        // Keyword arguments inside a call (`f(a=1)`) are not claims.
        let near = window_start(text, start, 200);
        let open = text[near..start].rfind('(').map(|p| near + p);
        let close = text[near..start].rfind(')').map(|p| near + p);
        if let Some(o) = open {
            if close.is_none_or(|c| c < o)
                && o > 0
                && text[..o]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
        }
        let spaced = eq.as_str().contains(' ');
        let n = name.as_str();
        if n == "__exception__" {
            let rest = &text[after..];
            let ename: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ename.is_empty() {
                // The claim runs to the end of the exception repr's parentheses.
                let mut end = after + ename.len();
                if text[end..].starts_with('(') {
                    if let Some(c) = text[end..].find(')') {
                        end += c + 1;
                    }
                }
                push(start, end, ClaimKind::Exception { name: ename });
            }
            continue;
        }
        let (value, end) = match literal_at(text, after) {
            Some(v) => v,
            None => {
                if spaced {
                    // `a = b + 1`: code, not a quote of the trace.
                    continue;
                }
                // `x=<not a literal>`: kept as written (it will be unverifiable).
                let tok: String = text[after..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !matches!(c, ';' | ','))
                    .collect::<String>()
                    .trim_end_matches(['.', ')', '`'])
                    .to_string();
                if tok.is_empty() {
                    continue;
                }
                (tok.clone(), after + tok.len())
            }
        };
        let kind = if n == "__return__" {
            ClaimKind::Return {
                function: None,
                args: None,
                value,
            }
        } else {
            ClaimKind::Value {
                name: n.to_string(),
                value,
            }
        };
        push(start, end, kind);
    }

    // "x is 3", "x becomes [1, 2]".
    for m in copula_re().captures_iter(text) {
        let (Some(all), Some(name)) = (m.get(0), m.get(1)) else {
            continue;
        };
        let n = name.as_str();
        if expression_before(text, name.start()) || is_stopword(n) || negated(text, all.start()) {
            continue;
        }
        if text[all.end()..].to_ascii_lowercase().starts_with("not ") {
            continue;
        }
        let Some((value, end)) = literal_at(text, all.end()) else {
            continue;
        };
        push(
            all.start(),
            end,
            ClaimKind::Value {
                name: n.to_string(),
                value,
            },
        );
    }

    // "x takes the values 2, 3 and 4".
    for m in takes_values_re().captures_iter(text) {
        let (Some(all), Some(name)) = (m.get(0), m.get(1)) else {
            continue;
        };
        if expression_before(text, name.start()) || is_stopword(name.as_str()) {
            continue;
        }
        for (value, vstart, end) in literal_list(text, all.end()) {
            push(
                vstart,
                end,
                ClaimKind::Value {
                    name: name.as_str().to_string(),
                    value,
                },
            );
        }
    }

    for m in exception_re().captures_iter(text) {
        let Some(all) = m.get(0) else { continue };
        if negated(text, all.start()) {
            continue;
        }
        if let Some(e) = m.get(1).or(m.get(2)) {
            push(
                all.start(),
                all.end(),
                ClaimKind::Exception {
                    name: e.as_str().to_string(),
                },
            );
        }
    }

    for m in loop_re().captures_iter(text) {
        let (Some(all), Some(n)) = (m.get(0), m.get(1)) else {
            continue;
        };
        if let Some(times) = parse_count(n.as_str()) {
            push(all.start(), all.end(), ClaimKind::LoopCount { times });
        }
    }
    for m in loop_never_re().find_iter(text) {
        push(m.start(), m.end(), ClaimKind::LoopCount { times: 0 });
    }
    for m in branch_never_re().find_iter(text) {
        push(m.start(), m.end(), ClaimKind::BranchNeverTaken);
    }
    for m in never_runs_re().captures_iter(text) {
        let (Some(all), Some(c)) = (m.get(0), m.get(1)) else {
            continue;
        };
        // Pushed directly: the span starts in a code backtick span on purpose.
        raw.push(Claim {
            text: text[all.start()..all.end()].to_string(),
            start: all.start(),
            end: all.end(),
            kind: ClaimKind::NeverRuns {
                code: c.as_str().trim().to_string(),
            },
            cite: None,
            hypothetical: false,
        });
    }

    // Overlaps: the earlier-found claim wins (returns before values before copulas). Kept
    // spans never overlap, so the kept span starting last before a new one's end decides.
    let mut spans: std::collections::BTreeMap<usize, usize> = std::collections::BTreeMap::new();
    let mut kept: Vec<Claim> = Vec::new();
    for c in raw {
        let clash = spans
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, e)| *e > c.start);
        if !clash {
            spans.insert(c.start, c.end);
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| (c.start, c.end));

    // Hypothetical clauses and cited places, per sentence.
    let sents = sentences(text);
    let cites: Vec<(usize, usize, Cite)> = line_cite_re()
        .captures_iter(text)
        .filter_map(|m| {
            let all = m.get(0)?;
            let n: u32 = m.get(1)?.as_str().parse().ok()?;
            Some((all.start(), all.end(), Cite::Line(n)))
        })
        .chain(step_cite_re().captures_iter(text).filter_map(|m| {
            let all = m.get(0)?;
            // `f(5) returns` is a call, not a step.
            if all.as_str().starts_with('(')
                && text[..all.start()]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                return None;
            }
            let g = m.get(1).or(m.get(2))?;
            let n: u64 = g.as_str().parse().ok()?;
            Some((all.start(), g.end() + 1, Cite::Step(n)))
        }))
        .collect();
    let starts: Vec<(usize, usize)> = kept.iter().map(|c| (c.start, c.end)).collect();
    for c in kept.iter_mut() {
        let i = sents.partition_point(|(_, e)| *e <= c.start);
        let Some(&(s, e)) = sents.get(i).filter(|(s, _)| *s <= c.start) else {
            continue;
        };
        if let Some((hs, he)) = hypothetical_range(text, s, e) {
            if c.start >= hs && c.start < he {
                c.hypothetical = true;
            }
        }
        // The nearest cite in the sentence with no other claim between it and this one.
        let mut best: Option<(usize, Cite)> = None;
        for (cs, ce, cite) in &cites {
            if *cs < s || *ce > e {
                continue;
            }
            let (lo, hi, gap) = if *ce <= c.start {
                (*ce, c.start, c.start - ce)
            } else if *cs >= c.end {
                (c.end, *cs, cs - c.end)
            } else {
                // Inside the claim's own text ("(5) i=2" style is before it).
                (c.start, c.start, 0)
            };
            let between = starts
                .iter()
                .any(|(a, b)| (*a, *b) != (c.start, c.end) && *a >= lo && *b <= hi);
            // A cite belongs to its own clause, except one that opens the sentence ("On line
            // 4, x is 3").
            let opens_sentence = *ce <= c.start && text[s..*cs].split_whitespace().count() <= 1;
            let gap_text = &text[lo..hi];
            let crosses_clause = !opens_sentence
                && (gap_text.contains([',', ';', ':'])
                    || (*ce <= c.start
                        && [" and ", " so ", " then ", " but ", " while "]
                            .iter()
                            .any(|w| gap_text.contains(w))));
            if between || crosses_clause {
                continue;
            }
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, *cite));
            }
        }
        c.cite = best.map(|b| b.1);
    }
    kept
}

/// Subjects of "X is V" that are English words, not variable names.
fn is_stopword(n: &str) -> bool {
    matches!(
        n.to_ascii_lowercase().as_str(),
        "it" | "this"
            | "that"
            | "which"
            | "there"
            | "what"
            | "answer"
            | "here"
            | "so"
            | "and"
            | "then"
            | "one"
            | "case"
            | "output"
            | "input"
            | "number"
            | "count"
            | "also"
            | "still"
            | "now"
            | "just"
            | "only"
            | "test"
            | "assertion"
            | "expected"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(t: &str) -> Vec<(ClaimKind, Option<Cite>, bool)> {
        extract_claims(t)
            .into_iter()
            .map(|c| (c.kind, c.cite, c.hypothetical))
            .collect()
    }

    fn value(n: &str, v: &str) -> ClaimKind {
        ClaimKind::Value {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn value_forms() {
        assert_eq!(
            kinds("`total` is 7."),
            vec![(value("total", "7"), None, false)]
        );
        assert_eq!(
            kinds("Then x becomes [1, 2] after the loop"),
            vec![(value("x", "[1, 2]"), None, false)]
        );
        assert_eq!(
            kinds("the trace shows i=3; j = 'a'"),
            vec![
                (value("i", "3"), None, false),
                (value("j", "'a'"), None, false)
            ]
        );
        assert_eq!(
            kinds("i takes the values 2, 3 and 4."),
            vec![
                (value("i", "2"), None, false),
                (value("i", "3"), None, false),
                (value("i", "4"), None, false)
            ]
        );
        assert!(kinds("x is not 3, and n % i is 0, and a == 3").is_empty());
        assert!(kinds("int(math.sqrt(35)) is 5 and it is 4").is_empty());
        assert!(kinds("`result = True` never executes").len() == 1);
    }

    #[test]
    fn returns_exceptions_loops() {
        assert_eq!(
            kinds("the function returns False for [1, 2]."),
            vec![(
                ClaimKind::Return {
                    function: None,
                    args: Some("[1, 2]".into()),
                    value: "False".into()
                },
                None,
                false
            )]
        );
        assert_eq!(
            kinds("so `f(3)` returns 9"),
            vec![(
                ClaimKind::Return {
                    function: Some("f".into()),
                    args: Some("3".into()),
                    value: "9".into()
                },
                None,
                false
            )]
        );
        assert_eq!(
            kinds("and returns __return__=False, while"),
            vec![(
                ClaimKind::Return {
                    function: None,
                    args: None,
                    value: "False".into()
                },
                None,
                false
            )]
        );
        assert_eq!(
            kinds("the loop runs 4 times"),
            vec![(ClaimKind::LoopCount { times: 4 }, None, false)]
        );
        assert_eq!(
            kinds("Then an IndexError is raised."),
            vec![(
                ClaimKind::Exception {
                    name: "IndexError".into()
                },
                None,
                false
            )]
        );
        assert_eq!(
            kinds("the if branch is never taken"),
            vec![(ClaimKind::BranchNeverTaken, None, false)]
        );
    }

    #[test]
    fn cites_and_hypotheticals() {
        assert_eq!(
            kinds("On line 4, x is 3. At step 7 i=2."),
            vec![
                (value("x", "3"), Some(Cite::Line(4)), false),
                (value("i", "2"), Some(Cite::Step(7)), false)
            ]
        );
        assert_eq!(
            kinds("x=3, so the function should return 4."),
            vec![(value("x", "3"), None, false)]
        );
        let k = kinds("With that slice, i=1 already gives 'aaaa' and the function returns 1.");
        assert!(k.iter().all(|(_, _, h)| *h), "{k:?}");
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn bad_input_gives_no_crash() {
        for t in [
            "",
            "変数 x は 3 です。ループは4回実行されます。",
            "```python\ndef f(x):\n    x = 3\n    return x\n```",
            &format!("x is {}", "9".repeat(100_000)),
            "x = <object at 0x1>; y=foo(bar",
            "`",
            "x=",
            "returns",
            &"[".repeat(5000),
        ] {
            let _ = extract_claims(t);
        }
        assert!(extract_claims("```python\nx = 3\nreturn 4\n```").is_empty());
        assert_eq!(
            kinds("x=<object at 0x1>"),
            vec![(value("x", "<object"), None, false)]
        );
    }
}
