//! Golden tests: each file under tests/golden/ is the exact expected NExT inline rendering of
//! its own source (program, blank line, test). `NXT_BLESS=1` rewrites them (review the diff!).

mod common;

use nxt_trace::{render, trace, DirectRunner, Format};

#[test]
fn golden_renderings() {
    let Some(python) = common::python() else {
        nxt_sandbox::test_support::skip(
            nxt_sandbox::test_support::SANDBOX,
            "no python3 interpreter found",
        );
        return;
    };
    let runner = DirectRunner { python };
    let bless = std::env::var_os("NXT_BLESS").is_some();
    let cases = common::goldens();
    assert!(cases.len() >= 30, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let t = trace(&runner, &case.request).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = render(&t, Format::Inline, &case.render);
        assert_eq!(
            nxt_trace::strip_inline_comments(&got),
            t.source,
            "{}: strip",
            case.name
        );
        if got != case.expected {
            if bless {
                std::fs::write(&case.path, &got).unwrap();
            }
            failures.push(format!(
                "--- {} expected:\n{}\n--- got:\n{}",
                case.name, case.expected, got
            ));
        }
    }
    if !bless {
        assert!(
            failures.is_empty(),
            "{} golden mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
