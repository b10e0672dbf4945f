//! Turning a model completion into a rationale and a fixed program.
//!
//! Models answer in many shapes: a rationale followed by one fenced block (the format the
//! prompts ask for), several blocks (the buggy code quoted, then the fix), no fences at all,
//! prose after the code, or only the repaired function of a program that also had imports,
//! constants and helpers. [`parse_completion`] handles all of these; a completion from which no
//! program can be recovered is [`ParseStatus::Unparseable`], which the evaluation records and
//! counts as a failure (it is never dropped).

use serde::{Deserialize, Serialize};

/// Whether a program could be recovered from a completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ParseStatus {
    /// A program was found.
    Ok,
    /// No program could be found; `reason` says why.
    Unparseable {
        /// Human-readable reason.
        reason: String,
    },
}

/// A parsed completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedCompletion {
    /// Parse outcome.
    pub status: ParseStatus,
    /// The natural-language rationale (text before the chosen code; may be empty).
    pub rationale: String,
    /// The complete fixed program, when found (after completing a bare function with the
    /// buggy program's imports, constants and helpers).
    pub program: Option<String>,
    /// True when definitions from the buggy program were added to complete the fix.
    pub completed_from_original: bool,
}

impl ParsedCompletion {
    /// True when a program was recovered.
    pub fn is_ok(&self) -> bool {
        self.status == ParseStatus::Ok
    }
}

/// One code region found in a completion: byte offsets of the region (including fences) and
/// its code text.
#[derive(Debug, Clone)]
struct Block {
    start: usize,
    code: String,
}

/// Parse a completion into (rationale, fixed program).
///
/// * `entry_point`: name of the function the tests call, when known; a block that defines it
///   is preferred over other blocks.
/// * `original`: the buggy program; top-level imports, constants, classes and helper
///   functions that the fix lacks are taken from it (a model often answers with the repaired
///   function alone).
pub fn parse_completion(text: &str, entry_point: Option<&str>, original: &str) -> ParsedCompletion {
    let text = text.replace("\r\n", "\n");
    let mut blocks = fenced_blocks(&text);
    if blocks.is_empty() {
        if let Some(b) = unfenced_code(&text, entry_point) {
            blocks.push(b);
        }
    }
    blocks.retain(|b| looks_like_python(&b.code));
    if blocks.is_empty() {
        return ParsedCompletion {
            status: ParseStatus::Unparseable {
                reason: if text.trim().is_empty() {
                    "empty completion".to_string()
                } else {
                    "no Python code found in the completion".to_string()
                },
            },
            rationale: text.trim().to_string(),
            program: None,
            completed_from_original: false,
        };
    }
    let chosen = entry_point
        .and_then(|ep| blocks.iter().rev().find(|b| defines(&b.code, ep)))
        .or_else(|| blocks.last())
        .cloned()
        .unwrap_or_else(|| Block {
            start: 0,
            code: String::new(),
        });
    let rationale = strip_rationale(&text[..chosen.start]);
    let code = dedent(chosen.code.trim_matches('\n'));
    let (program, completed) = complete_program(&code, original);
    ParsedCompletion {
        status: ParseStatus::Ok,
        rationale,
        program: Some(program),
        completed_from_original: completed,
    }
}

/// Remove trailing headings such as `### Fixed program` and fence remnants from a rationale.
fn strip_rationale(s: &str) -> String {
    let mut lines: Vec<&str> = s.trim_end().lines().collect();
    while let Some(last) = lines.last() {
        let t = last.trim();
        let lower = t.to_ascii_lowercase();
        let is_heading = t.starts_with('#') && !t.starts_with("#!") && t.len() < 80;
        // A short line ending with `:` right before the code introduces it ("Fixed code:").
        let is_intro = t.ends_with(':') && t.len() < 80 && !lower.starts_with("def ");
        if t.is_empty() || is_heading || (is_intro && lines.len() > 1) {
            lines.pop();
        } else {
            break;
        }
    }
    // A leading `### Rationale` / `Explanation:` heading is layout, not rationale.
    while let Some(first) = lines.first() {
        let t = first
            .trim()
            .trim_start_matches('#')
            .trim()
            .trim_end_matches(':')
            .to_ascii_lowercase();
        if lines.len() > 1 && (t == "rationale" || t == "explanation" || t.is_empty()) {
            lines.remove(0);
        } else {
            break;
        }
    }
    lines.join("\n").trim().to_string()
}

/// All fenced code blocks (```` ``` ```` or `~~~`, any info string); an unclosed last fence
/// runs to the end of the text (a completion cut by `max_tokens`).
fn fenced_blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    let mut open: Option<(usize, usize, &str)> = None; // (block start, code start, fence)
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        match open {
            None => {
                for fence in ["```", "~~~"] {
                    if let Some(info) = trimmed.strip_prefix(fence) {
                        let info = info.trim();
                        // An info string is a language name; prose after a fence is not.
                        if info
                            .chars()
                            .all(|c| c.is_alphanumeric() || "+-_.".contains(c))
                        {
                            open = Some((offset, offset + line.len(), fence));
                            break;
                        }
                    }
                }
            }
            Some((start, code_start, fence)) => {
                if trimmed.trim_end() == fence {
                    out.push(Block {
                        start,
                        code: text[code_start..offset].to_string(),
                    });
                    open = None;
                }
            }
        }
        offset += line.len();
    }
    if let Some((start, code_start, _)) = open {
        out.push(Block {
            start,
            code: text[code_start..].to_string(),
        });
    }
    out
}

/// The marker that stands for a code block removed from a rationale by [`prose_only`].
pub const CODE_OMITTED: &str = "[code omitted]";

/// The prose of a rationale, for a reader that must not see code (the proxy model).
///
/// Every fenced block (```` ``` ```` or `~~~`, closed or cut off by the end of the text), every
/// unfenced code region (a column-0 `def`/`class`/`import`/decorator line and the code lines
/// after it) and every indented block that reads as Python is replaced by one
/// [`CODE_OMITTED`] line; inline code spans (`` `x == 3` ``) are kept.
pub fn prose_only(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<&str> = Vec::new();
    let omit = |out: &mut Vec<&str>| {
        if out.last() != Some(&CODE_OMITTED) {
            out.push(CODE_OMITTED);
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(fence) = fence_opening(line.trim_start()) {
            // Up to and including the closing fence (or to the end of the text).
            i += 1;
            while i < lines.len() && lines[i].trim() != fence {
                i += 1;
            }
            i += 1;
            omit(&mut out);
            continue;
        }
        if starts_code_region(line) {
            i += 1;
            while i < lines.len()
                && is_code_line(lines[i])
                && fence_opening(lines[i].trim_start()).is_none()
            {
                i += 1;
            }
            // Blank lines that ended the region belong to the prose after it.
            while lines[i - 1].trim().is_empty() {
                i -= 1;
            }
            omit(&mut out);
            continue;
        }
        let after_blank = out.last().is_none_or(|l| l.trim().is_empty());
        if after_blank && is_indented(line) && !line.trim().is_empty() {
            let mut j = i;
            while j < lines.len() && (lines[j].trim().is_empty() || is_indented(lines[j])) {
                j += 1;
            }
            while lines[j - 1].trim().is_empty() {
                j -= 1;
            }
            if looks_like_python(&dedent(&lines[i..j].join("\n"))) {
                omit(&mut out);
                i = j;
                continue;
            }
        }
        out.push(line);
        i += 1;
    }
    out.join("\n").trim().to_string()
}

/// The fence (```` ``` ```` or `~~~`) that a line opens, when it opens a code block (the fence
/// followed by nothing or by a language name).
fn fence_opening(trimmed: &str) -> Option<&'static str> {
    ["```", "~~~"].into_iter().find(|fence| {
        trimmed.strip_prefix(fence).is_some_and(|info| {
            info.trim()
                .chars()
                .all(|c| c.is_alphanumeric() || "+-_.".contains(c))
        })
    })
}

/// Whether a column-0 line starts a region of unfenced code: a definition header, an import
/// or a decorator (not a prose sentence that happens to start with `from` or `class`).
fn starts_code_region(line: &str) -> bool {
    let t = line.trim_end();
    let ident = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    };
    if let Some(rest) = t
        .strip_prefix("def ")
        .or_else(|| t.strip_prefix("async def "))
        .or_else(|| t.strip_prefix("class "))
    {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = rest[name.len()..].trim_start();
        return !name.is_empty() && (after.starts_with('(') || after.starts_with(':'));
    }
    if let Some(rest) = t.strip_prefix("import ") {
        return rest
            .split(',')
            .all(|p| p.split(" as ").all(|q| ident(q.trim())));
    }
    if let Some(rest) = t.strip_prefix("from ") {
        return rest.split_once(" import ").is_some_and(|(m, _)| {
            ident(m.trim().trim_start_matches('.')) || m.trim().chars().all(|c| c == '.')
        });
    }
    t.strip_prefix('@')
        .is_some_and(|r| ident(r.split('(').next().unwrap_or("").trim()))
}

/// Whether a line is indented by at least four columns (a Markdown indented code line).
fn is_indented(line: &str) -> bool {
    line.starts_with('\t') || line.starts_with("    ")
}

/// Python keywords that may start a top-level statement of a program.
const TOP_LEVEL_STARTS: &[&str] = &[
    "def ",
    "async def ",
    "class ",
    "import ",
    "from ",
    "@",
    "if ",
    "for ",
    "while ",
    "try:",
    "with ",
    "return",
    "assert ",
    "raise ",
    "global ",
    "print(",
    "#",
    "elif ",
    "else:",
    "except",
    "finally:",
    "pass",
    "del ",
    "lambda",
];

/// Whether a column-0 line reads as Python rather than prose.
fn is_code_line(line: &str) -> bool {
    let t = line.trim_end();
    if t.is_empty() || line.starts_with([' ', '\t']) {
        return true;
    }
    if TOP_LEVEL_STARTS.iter().any(|k| t.starts_with(k)) {
        return true;
    }
    // `NAME = expr`, `NAME += expr`, `a, b = ...`, `NAME[...] = ...`, `f(x)`.
    let ident_end = t
        .find(|c: char| {
            !(c.is_alphanumeric()
                || c == '_'
                || c == '.'
                || c == ','
                || c == ' '
                || c == '['
                || c == ']')
        })
        .unwrap_or(t.len());
    let rest = t[ident_end..].trim_start();
    let head = t[..ident_end].trim();
    let head_is_ident = !head.is_empty()
        && head.split([',', '.', '[', ']']).all(|p| {
            let p = p.trim();
            p.is_empty() || p.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
        && !head.contains("  ")
        && head.split_whitespace().count() <= 3;
    let h = head.trim();
    if head_is_ident && !h.contains(' ') {
        if rest.starts_with('=') && !rest.starts_with("==") {
            return true;
        }
        if ["+=", "-=", "*=", "/=", "%=", "|=", "&=", "//=", "**="]
            .iter()
            .any(|op| rest.starts_with(op))
        {
            return true;
        }
        if rest.starts_with('(') && t.ends_with(')') {
            return true;
        }
        if rest.starts_with(':') && !rest.starts_with(": ") {
            return false;
        }
    }
    if head_is_ident && head.contains(',') && rest.starts_with('=') && !rest.starts_with("==") {
        return true;
    }
    false
}

/// Code without fences: from the first line that starts a definition (the entry point's
/// `def` if present, else the first `def`/`import`/`class`) to the first prose line after it.
fn unfenced_code(text: &str, entry_point: Option<&str>) -> Option<Block> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let starts_def =
        |l: &str| l.starts_with("def ") || l.starts_with("async def ") || l.starts_with("class ");
    let starts_code = |l: &str| {
        starts_def(l) || l.starts_with("import ") || l.starts_with("from ") || l.starts_with('@')
    };
    // Prefer the last region that defines the entry point.
    let mut regions: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if starts_code(lines[i]) {
            let mut j = i + 1;
            while j < lines.len() && is_code_line(lines[j]) {
                j += 1;
            }
            // Trailing blank lines belong to no one.
            let mut end = j;
            while end > i + 1 && lines[end - 1].trim().is_empty() {
                end -= 1;
            }
            regions.push((i, end));
            i = j;
        } else {
            i += 1;
        }
    }
    // Merge regions separated only by blank lines (imports, blank, def).
    let region_text = |(a, b): (usize, usize)| lines[a..b].concat();
    let chosen = entry_point
        .and_then(|ep| {
            regions
                .iter()
                .rev()
                .find(|r| defines(&region_text(**r), ep))
        })
        .or_else(|| {
            regions
                .iter()
                .rev()
                .find(|r| region_text(**r).lines().any(starts_def))
        })
        .copied()?;
    // Extend backwards over imports / constants directly above (separated by blank lines).
    let mut start = chosen.0;
    for r in regions.iter().rev() {
        if r.1 <= start && lines[r.1..start].iter().all(|l| l.trim().is_empty()) {
            start = r.0;
        }
    }
    let byte_start: usize = lines[..start].iter().map(|l| l.len()).sum();
    Some(Block {
        start: byte_start,
        code: lines[start..chosen.1].concat(),
    })
}

/// Whether `code` has a top-level `def name(`.
fn defines(code: &str, name: &str) -> bool {
    code.lines().any(|l| {
        let l = l.trim_start();
        let rest = l
            .strip_prefix("def ")
            .or_else(|| l.strip_prefix("async def "));
        rest.map(|r| {
            r.trim_start()
                .strip_prefix(name)
                .is_some_and(|x| x.trim_start().starts_with('('))
        })
        .unwrap_or(false)
    })
}

/// A block is kept as code when it has at least one statement-like line (not a block of
/// console output or prose).
fn looks_like_python(code: &str) -> bool {
    let mut any = false;
    for l in code.lines() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with(">>>") {
            return false;
        }
        if t.starts_with("def ")
            || t.starts_with("async def ")
            || t.starts_with("class ")
            || t.starts_with("return")
            || t.starts_with("import ")
            || t.starts_with("from ")
            || is_code_line(t)
        {
            any = true;
        }
    }
    any
}

/// Remove the common leading indentation of all non-blank lines.
pub fn dedent(code: &str) -> String {
    let indent = code
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    if indent == 0 {
        return code.to_string();
    }
    code.lines()
        .map(|l| {
            if l.trim().is_empty() {
                ""
            } else {
                &l[indent.min(l.len())..]
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A top-level statement of a program: its first line and full text.
#[derive(Debug)]
struct TopLevel {
    kind: TopKind,
    text: String,
}

#[derive(Debug, PartialEq)]
enum TopKind {
    Import,
    /// `def`/`class` with the defined name.
    Def(String),
    /// Module-level assignment to these names.
    Assign(Vec<String>),
    Other,
}

/// Split a program into top-level statements with the tokenizer of [`crate::pysource`]
/// (brackets, `#` and quotes inside string literals are not code; decorators stick to the
/// definition below them).
fn top_level(program: &str) -> Vec<TopLevel> {
    crate::pysource::top_level_statements(program)
        .into_iter()
        .map(|s| classify(s.text + "\n"))
        .collect()
}

fn classify(text: String) -> TopLevel {
    let first = text
        .lines()
        .find(|l| !l.trim_start().starts_with('@'))
        .unwrap_or("")
        .trim_end()
        .to_string();
    let kind = if first.starts_with("import ") || first.starts_with("from ") {
        TopKind::Import
    } else if let Some(rest) = first
        .strip_prefix("def ")
        .or_else(|| first.strip_prefix("async def "))
        .or_else(|| first.strip_prefix("class "))
    {
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        TopKind::Def(name)
    } else if let Some(eq) = assignment_eq(&first) {
        let names = first[..eq]
            .split(',')
            .map(|n| n.trim().trim_matches(|c| c == '(' || c == ')').to_string())
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .collect::<Vec<_>>();
        if names.is_empty() {
            TopKind::Other
        } else {
            TopKind::Assign(names)
        }
    } else {
        TopKind::Other
    };
    TopLevel { kind, text }
}

/// Byte index of the `=` of a simple assignment `a = ...` / `a, b = ...` / `a: T = ...`.
fn assignment_eq(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'=' => {
                let next = bytes.get(i + 1).copied();
                let prev = if i > 0 { bytes[i - 1] } else { b' ' };
                if next != Some(b'=') && !b"!<>=+-*/%&|^".contains(&prev) {
                    return Some(i);
                }
                return None;
            }
            b'(' | b'[' | b'{' | b'\'' | b'"' => return None,
            _ => {}
        }
    }
    None
}

/// Complete a fix that lacks parts of the original program: the original's imports that the
/// fix does not repeat go first, then original constants, classes and helper functions that
/// the fix neither defines nor assigns, then the fix. Returns the program and whether anything
/// was added.
pub fn complete_program(fix: &str, original: &str) -> (String, bool) {
    let fix_items = top_level(fix);
    let fix_defs: Vec<&str> = fix_items
        .iter()
        .filter_map(|t| match &t.kind {
            TopKind::Def(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let fix_assigns: Vec<&str> = fix_items
        .iter()
        .flat_map(|t| match &t.kind {
            TopKind::Assign(ns) => ns.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    let fix_imports: Vec<String> = fix_items
        .iter()
        .filter(|t| t.kind == TopKind::Import)
        .map(|t| t.text.trim().to_string())
        .collect();
    let mut prefix = String::new();
    let mut added = false;
    for item in top_level(original) {
        let keep = match &item.kind {
            TopKind::Import => !fix_imports.contains(&item.text.trim().to_string()),
            TopKind::Def(n) => {
                !fix_defs.contains(&n.as_str()) && !fix_assigns.contains(&n.as_str())
            }
            TopKind::Assign(ns) => ns
                .iter()
                .all(|n| !fix_assigns.contains(&n.as_str()) && !fix_defs.contains(&n.as_str())),
            TopKind::Other => false,
        };
        if keep {
            added = true;
            prefix.push_str(item.text.trim_end());
            prefix.push('\n');
            if matches!(item.kind, TopKind::Def(_)) {
                prefix.push('\n');
            }
        }
    }
    let fix = fix.trim_end();
    if added {
        (format!("{}\n{fix}\n", prefix.trim_end()), true)
    } else {
        (format!("{fix}\n"), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIG: &str = "import math\nR = 3\n\ndef helper(x):\n    return x + 1\n\ndef f(n):\n    return helper(n) * R\n";

    fn ok(p: &ParsedCompletion) -> &str {
        assert!(p.is_ok(), "{p:?}");
        p.program.as_deref().unwrap()
    }

    #[test]
    fn rationale_then_one_fenced_block() {
        let t = "The program adds one.\nIt should add two.\n\n```python\ndef g(x):\n    return x + 2\n```\n";
        let p = parse_completion(t, Some("g"), "def g(x):\n    return x + 1\n");
        assert_eq!(ok(&p), "def g(x):\n    return x + 2\n");
        assert_eq!(p.rationale, "The program adds one.\nIt should add two.");
        assert!(!p.completed_from_original);
    }

    #[test]
    fn several_blocks_prefers_last_defining_entry_point() {
        let t = "The buggy code:\n```python\ndef g(x):\n    return x + 1\n```\nthe trace shows\n```\ng(1) -> 2\n```\nFix:\n```python\ndef g(x):\n    return x + 2\n```\nDone.";
        let p = parse_completion(t, Some("g"), "def g(x):\n    return x + 1\n");
        assert_eq!(ok(&p), "def g(x):\n    return x + 2\n");
        assert!(p.rationale.contains("the trace shows"));
        assert!(!p.rationale.ends_with("Fix:"));
    }

    #[test]
    fn several_blocks_without_entry_point_takes_the_last() {
        let t = "```python\nx = 1\n```\n```python\ny = 2\n```";
        let p = parse_completion(t, Some("absent"), "");
        assert_eq!(ok(&p), "y = 2\n");
        let p = parse_completion(t, None, "");
        assert_eq!(ok(&p), "y = 2\n");
    }

    #[test]
    fn entry_point_block_beats_later_usage_block() {
        let t =
            "```python\ndef g(x):\n    return 2 * x\n```\nExample:\n```python\nprint(g(3))\n```";
        let p = parse_completion(t, Some("g"), "");
        assert_eq!(ok(&p), "def g(x):\n    return 2 * x\n");
    }

    #[test]
    fn missing_fences_code_then_prose() {
        let t = "The loop stops one early. Here is the fix.\n\ndef g(xs):\n    total = 0\n    for x in xs:\n        total += x\n\n    return total\n\nThis now sums every element.\nMore prose.";
        let p = parse_completion(t, Some("g"), "");
        assert_eq!(
            ok(&p),
            "def g(xs):\n    total = 0\n    for x in xs:\n        total += x\n\n    return total\n"
        );
        assert_eq!(p.rationale, "The loop stops one early. Here is the fix.");
    }

    #[test]
    fn missing_fences_keeps_imports_above() {
        let t = "Explanation.\nimport re\n\ndef g(s):\n    return re.findall('a', s)\nThat is all.";
        let p = parse_completion(t, Some("g"), "");
        assert_eq!(
            ok(&p),
            "import re\n\ndef g(s):\n    return re.findall('a', s)\n"
        );
    }

    #[test]
    fn unclosed_fence_runs_to_end() {
        let t = "Reason.\n```python\ndef g(x):\n    return x";
        let p = parse_completion(t, Some("g"), "");
        assert_eq!(ok(&p), "def g(x):\n    return x\n");
    }

    #[test]
    fn prose_after_code_block_is_ignored() {
        let t = "Why.\n```python\ndef g():\n    return 1\n```\nThis returns 1 now, which matches `g() == 1`.";
        let p = parse_completion(t, Some("g"), "");
        assert_eq!(ok(&p), "def g():\n    return 1\n");
    }

    #[test]
    fn only_the_function_is_completed_from_original() {
        let t = "Fix:\n```python\ndef f(n):\n    return helper(n) * R + math.floor(0.5)\n```";
        let p = parse_completion(t, Some("f"), ORIG);
        let prog = ok(&p);
        assert!(p.completed_from_original);
        assert!(prog.starts_with("import math\nR = 3\n"), "{prog}");
        assert!(prog.contains("def helper(x):\n    return x + 1\n"));
        assert!(prog
            .trim_end()
            .ends_with("return helper(n) * R + math.floor(0.5)"));
        assert_eq!(prog.matches("def f(").count(), 1);
    }

    #[test]
    fn complete_fix_is_not_duplicated() {
        let t = "```python\nimport math\nR = 4\n\ndef helper(x):\n    return x\n\ndef f(n):\n    return helper(n) * R\n```";
        let p = parse_completion(t, Some("f"), ORIG);
        assert!(!p.completed_from_original, "{:?}", p.program);
        assert_eq!(ok(&p).matches("R =").count(), 1);
    }

    #[test]
    fn empty_and_prose_only_are_unparseable() {
        let p = parse_completion("", Some("g"), "");
        assert!(matches!(p.status, ParseStatus::Unparseable { .. }));
        assert!(p.program.is_none());
        let p = parse_completion(
            "I am not sure how to fix this program, sorry.",
            Some("g"),
            "",
        );
        assert!(!p.is_ok());
        assert_eq!(p.rationale, "I am not sure how to fix this program, sorry.");
    }

    #[test]
    fn console_output_block_is_not_code() {
        let t = "```\n>>> g(1)\n2\n```\nno fix";
        let p = parse_completion(t, Some("g"), "");
        assert!(!p.is_ok());
    }

    #[test]
    fn indented_block_is_dedented_and_crlf_handled() {
        let t = "Reason\r\n```py\r\n    def g():\r\n        return 3\r\n```\r\n";
        let p = parse_completion(t, Some("g"), "");
        assert_eq!(ok(&p), "def g():\n    return 3\n");
    }

    #[test]
    fn heading_before_code_is_stripped_from_rationale() {
        let t = "### Rationale\nThe value is wrong.\n\n### Fixed program\n```python\ndef g():\n    return 3\n```";
        let p = parse_completion(t, Some("g"), "");
        assert_eq!(p.rationale, "The value is wrong.");
    }

    #[test]
    fn tilde_fences() {
        let t = "r\n~~~python\ndef g():\n    return 5\n~~~\n";
        assert_eq!(
            ok(&parse_completion(t, Some("g"), "")),
            "def g():\n    return 5\n"
        );
    }

    #[test]
    fn code_lines_vs_prose() {
        assert!(is_code_line("x = 1\n"));
        assert!(is_code_line("a, b = 1, 2"));
        assert!(is_code_line("    anything"));
        assert!(is_code_line("print(f(3))"));
        assert!(is_code_line("total += 1"));
        assert!(!is_code_line("This is the fix."));
        assert!(!is_code_line("Note: x == 1 here"));
        assert!(!is_code_line("The value of x = 3 is wrong"));
    }

    #[test]
    fn top_level_split_handles_decorators_and_multiline() {
        let p =
            "import os\nX = [\n1,\n2]\n@dec\ndef a():\n    pass\nclass B:\n    y = 1\nprint(a())\n";
        let items = top_level(p);
        let kinds: Vec<_> = items.iter().map(|t| &t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                &TopKind::Import,
                &TopKind::Assign(vec!["X".into()]),
                &TopKind::Def("a".into()),
                &TopKind::Def("B".into()),
                &TopKind::Other
            ]
        );
        assert!(items[2].text.starts_with("@dec\n"));
    }

    #[test]
    fn top_level_split_ignores_brackets_and_hashes_in_strings() {
        // A `(` in a string used to open a bracket that never closed, swallowing the helper
        // and the constant into the import's statement.
        let p = "import re\nPAT = re.compile('(')\nSEP = \"#)\"\n\ndef helper(s):\n    return f\"{s[\"(\"]}\"\n\ndef f(s):\n    return helper(s)\n";
        let kinds: Vec<_> = top_level(p).into_iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TopKind::Import,
                TopKind::Assign(vec!["PAT".into()]),
                TopKind::Assign(vec!["SEP".into()]),
                TopKind::Def("helper".into()),
                TopKind::Def("f".into())
            ]
        );
        let (prog, added) = complete_program("def f(s):\n    return helper(s) + SEP\n", p);
        assert!(added);
        assert!(
            prog.contains("PAT = re.compile('(')\nSEP = \"#)\"\n"),
            "{prog}"
        );
        assert!(prog.contains("def helper(s):"), "{prog}");
        assert_eq!(prog.matches("def f(").count(), 1, "{prog}");
    }

    #[test]
    fn defines_matches_exact_name() {
        assert!(defines("def foo(x):\n", "foo"));
        assert!(defines("def foo (x):\n", "foo"));
        assert!(!defines("def foobar(x):\n", "foo"));
        assert!(defines("class A:\n    def foo(self):\n", "foo"));
    }

    #[test]
    fn prose_only_removes_every_kind_of_code_block_and_keeps_inline_spans() {
        let r = "The loop stops early: `range(n - 1)` misses the last index.\n\
                 A draft:\n```python\ndef g(xs):\n    return sum(xs[:])\n```\n\
                 Unfenced:\ndef g(xs):\n    total = sum(xs)\n    return total\n\n\
                 So the sum is short by one element.\n\n    total = 0\n    for x in xs:\n        total += x\n\n\
                 from the trace, (3) shows `i=2`.\n~~~\nprint(g([1]))\n";
        let p = prose_only(r);
        assert_eq!(
            p,
            "The loop stops early: `range(n - 1)` misses the last index.\nA draft:\n[code omitted]\n\
             Unfenced:\n[code omitted]\n\nSo the sum is short by one element.\n\n[code omitted]\n\n\
             from the trace, (3) shows `i=2`.\n[code omitted]"
        );
        // Prose that starts like code, and an indented list, stay.
        let keep = "class imbalance is not the issue.\nimport errors neither.\n\n    - step one\n    - step two";
        assert_eq!(prose_only(keep), keep);
    }

    #[test]
    fn dedent_keeps_relative_indentation() {
        assert_eq!(dedent("  a\n    b\n\n  c"), "a\n  b\n\nc");
    }
}
