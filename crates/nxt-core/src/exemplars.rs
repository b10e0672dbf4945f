//! The three worked exemplars of the few-shot prompt.
//!
//! Written for this project on MBPP's few-shot problems (task ids 1-10, never evaluated), in
//! the style of the paper's rationales: restate the specification, walk through the program,
//! quote the concrete values of the trace where it goes wrong, name the cause, then give the
//! complete fixed program. The buggy programs are our own variants of MBPP's reference
//! solutions. The traces are real renderings of the tracer (a test regenerates them and checks
//! they are identical to the stored text).
//!
//! File format (`exemplars/mbpp-<id>.txt`): sections introduced by `=== <name>` lines:
//! `task_id`, `spec`, `program`, `tests` (one per line), `failing_test`, `trace`, `rationale`,
//! `fixed`.

use std::sync::OnceLock;

/// One worked example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemplar {
    /// MBPP task id (1-10).
    pub task_id: u32,
    /// Problem statement (MBPP `text`).
    pub spec: String,
    /// The buggy program.
    pub program: String,
    /// The three MBPP tests.
    pub tests: Vec<String>,
    /// The first failing test, the one traced.
    pub failing_test: String,
    /// The inline trace of `program` on `failing_test`.
    pub trace: String,
    /// The rationale.
    pub rationale: String,
    /// The complete fixed program.
    pub fixed: String,
}

/// The stored exemplar files: (file name, contents).
pub const EXEMPLAR_FILES: [(&str, &str); 3] = [
    ("mbpp-3.txt", include_str!("../exemplars/mbpp-3.txt")),
    ("mbpp-6.txt", include_str!("../exemplars/mbpp-6.txt")),
    ("mbpp-9.txt", include_str!("../exemplars/mbpp-9.txt")),
];

/// Errors in an exemplar file.
#[derive(Debug, thiserror::Error)]
#[error("exemplar {file}: {message}")]
pub struct ExemplarError {
    /// File name.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// Parse one exemplar file.
pub fn parse_exemplar(file: &str, text: &str) -> Result<Exemplar, ExemplarError> {
    let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
    for (no, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix("=== ") {
            sections.push((name.trim().to_string(), Vec::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push(line);
        } else if !line.trim().is_empty() {
            return Err(ExemplarError {
                file: file.into(),
                message: format!("line {}: text before the first `=== section`", no + 1),
            });
        }
    }
    let get = |name: &str| -> Result<String, ExemplarError> {
        sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.join("\n").trim_matches('\n').to_string())
            .ok_or_else(|| ExemplarError {
                file: file.into(),
                message: format!("missing section `=== {name}`"),
            })
    };
    let task_id = get("task_id")?
        .trim()
        .parse::<u32>()
        .map_err(|e| ExemplarError {
            file: file.into(),
            message: format!("task_id: {e}"),
        })?;
    Ok(Exemplar {
        task_id,
        spec: get("spec")?,
        program: get("program")? + "\n",
        tests: get("tests")?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        failing_test: get("failing_test")?,
        trace: get("trace")?,
        rationale: get("rationale")?,
        fixed: get("fixed")? + "\n",
    })
}

/// Render an exemplar back to the file format (used to refresh the stored traces).
pub fn render_exemplar(e: &Exemplar) -> String {
    format!(
        "=== task_id\n{}\n=== spec\n{}\n=== program\n{}\n=== tests\n{}\n=== failing_test\n{}\n=== trace\n{}\n=== rationale\n{}\n=== fixed\n{}\n",
        e.task_id,
        e.spec,
        e.program.trim_end_matches('\n'),
        e.tests.join("\n"),
        e.failing_test,
        e.trace,
        e.rationale,
        e.fixed.trim_end_matches('\n')
    )
}

/// The three built-in exemplars.
pub fn exemplars() -> &'static [Exemplar] {
    static CELL: OnceLock<Vec<Exemplar>> = OnceLock::new();
    CELL.get_or_init(|| {
        EXEMPLAR_FILES
            .iter()
            // The files are compiled in and checked by tests; a broken one is skipped.
            .filter_map(|(f, t)| parse_exemplar(f, t).ok())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_parse_and_are_few_shot_problems() {
        for (f, t) in EXEMPLAR_FILES {
            let e = parse_exemplar(f, t).unwrap();
            assert!((1..=10).contains(&e.task_id), "{f}");
            assert_eq!(e.tests.len(), 3);
            assert!(e.tests.contains(&e.failing_test));
            assert!(e.trace.contains("__exception__ = AssertionError()"));
            assert_ne!(e.program, e.fixed);
            assert_eq!(render_exemplar(&e), t, "{f} does not round-trip");
        }
        assert_eq!(exemplars().len(), 3);
    }

    #[test]
    fn rationales_quote_trace_values() {
        for e in exemplars() {
            let quoted = e
                .trace
                .split(['(', ')', ';', ' '])
                .filter(|s| s.contains('=') && s.len() > 2 && !s.contains("=="))
                .filter(|s| e.rationale.contains(*s))
                .count();
            assert!(
                quoted >= 2,
                "exemplar {} quotes {quoted} trace values",
                e.task_id
            );
        }
    }

    #[test]
    fn bad_file_is_a_clear_error() {
        let err = parse_exemplar("x.txt", "junk\n=== spec\nabc\n").unwrap_err();
        assert!(err.to_string().contains("x.txt") && err.to_string().contains("line 1"));
        let err = parse_exemplar("y.txt", "=== task_id\n3\n").unwrap_err();
        assert!(err.to_string().contains("missing section `=== spec`"));
    }
}
