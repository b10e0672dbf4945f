//! The few-shot exemplars are real: their traces are what the tracer renders (regenerated and
//! compared here), their buggy programs fail the traced test first, their fixes pass.
//!
//! To refresh the stored traces after a deliberate tracer change:
//! `NXT_REFRESH_EXEMPLARS=1 cargo test -p nxt-core --test exemplars`.

mod common;

use nxt_core::exemplars::{parse_exemplar, render_exemplar, EXEMPLAR_FILES};
use nxt_core::repair::{find_failing_test, grade_programs, prepare, RepairConfig};
use nxt_core::task::adhoc_task;

#[test]
fn exemplar_traces_are_real_renderings() {
    let Some(pool) = common::pool() else { return };
    let refresh = std::env::var_os("NXT_REFRESH_EXEMPLARS").is_some();
    let mut mismatches = Vec::new();
    for (file, text) in EXEMPLAR_FILES {
        let mut e = parse_exemplar(file, text).unwrap();
        let task = adhoc_task(
            &format!("mbpp/{}", e.task_id),
            &e.spec,
            &e.program,
            e.tests.clone(),
        );
        // The traced test is the first failing one.
        let failing = find_failing_test(&pool, &task).unwrap().map(|(_, t)| t);
        assert_eq!(failing.as_deref(), Some(e.failing_test.as_str()), "{file}");
        // The trace, exactly as the pipeline renders it.
        let prep = prepare(&pool, &task, &RepairConfig::default()).unwrap();
        let trace = prep
            .trace
            .unwrap_or_else(|| panic!("{file}: no trace: {:?}", prep.note));
        let trace = trace.trim_end_matches('\n').to_string();
        if trace != e.trace {
            if refresh {
                e.trace = trace;
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("exemplars")
                    .join(file);
                std::fs::write(&path, render_exemplar(&e)).unwrap();
                eprintln!("refreshed {}", path.display());
            } else {
                mismatches.push(format!(
                    "--- {file} stored:\n{}\n--- tracer:\n{trace}",
                    e.trace
                ));
            }
        }
        // The fix passes every test.
        let mut passed = None;
        grade_programs(&pool, &[(&task, e.fixed.as_str())], &mut |_, r| {
            passed = Some(r.unwrap().passed)
        });
        assert_eq!(passed, Some(true), "{file}: the fixed program must pass");
    }
    assert!(
        mismatches.is_empty(),
        "stored exemplar traces differ from the tracer (NXT_REFRESH_EXEMPLARS=1 to refresh):\n{}",
        mismatches.join("\n")
    );
}
