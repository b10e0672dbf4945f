//! The three prompt exemplars (crates/nxt-core/exemplars) are faithful under the checker.
//!
//! Their traces are stored as recorded traces (tests/fixtures/traces/exemplar-mbpp-N.json,
//! from `nxt check-rationale --program P --test T --trace-out`); rendering each one must give
//! exactly the exemplar's inline trace, which nxt-core's exemplar test regenerates from the
//! tracer, so the trace checked here is the one the prompt shows.

use std::path::Path;

use nxt_faithful::{check_rationale, ClaimVerdict, Verdict};
use nxt_trace::{render, Format, RenderOptions, Trace};

const EXEMPLARS: [(&str, &str); 3] = [
    (
        "mbpp-3",
        include_str!("../../nxt-core/exemplars/mbpp-3.txt"),
    ),
    (
        "mbpp-6",
        include_str!("../../nxt-core/exemplars/mbpp-6.txt"),
    ),
    (
        "mbpp-9",
        include_str!("../../nxt-core/exemplars/mbpp-9.txt"),
    ),
];

/// The body of `=== name` in an exemplar file.
fn section(text: &str, name: &str) -> String {
    let head = format!("=== {name}\n");
    let start = text
        .find(&head)
        .unwrap_or_else(|| panic!("no section {name}"))
        + head.len();
    let end = text[start..]
        .find("\n=== ")
        .map(|e| start + e)
        .unwrap_or(text.len());
    text[start..end].trim_matches('\n').to_string()
}

#[test]
fn the_prompt_exemplars_are_faithful() {
    for (name, text) in EXEMPLARS {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/traces")
            .join(format!("exemplar-{name}.json"));
        let trace: Trace = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let shown = render(&trace, Format::Inline, &RenderOptions::default());
        assert_eq!(
            shown.trim_end_matches('\n'),
            section(text, "trace"),
            "{name}: the stored trace is not the exemplar's"
        );
        let report = check_rationale(&section(text, "rationale"), &trace);
        for c in &report.claims {
            println!("{name}: {} `{}` ({})", c.verdict.as_str(), c.text, c.reason);
        }
        assert_eq!(report.verdict, Verdict::Faithful, "{name}");
        assert_eq!(report.count(ClaimVerdict::Contradicted), 0, "{name}");
        assert!(
            report.count(ClaimVerdict::Supported) >= 4,
            "{name}: only {} supported claims",
            report.count(ClaimVerdict::Supported)
        );
    }
}
