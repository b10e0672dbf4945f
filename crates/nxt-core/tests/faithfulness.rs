//! The faithfulness stage of `nxt eval`: every parsed rationale is checked against the trace
//! (real sandbox and tracer), stored per sample, and the report gives the rates beside pass@k,
//! split by fix passed / failed. The canned-text generator (test double) writes, per task, the
//! rationales of `common::correct_answer` and `common::wrong_answer`; the one for `t/dbl`
//! misreads the trace (it says `__return__=4`, the trace shows 3).

mod common;

use common::{pool, tasks, Canned};
use nxt_core::eval::{run_eval, EvalConfig, EvalContext};
use nxt_core::store::{PromptKind, RunStore};
use nxt_faithful::ClaimVerdict;

#[test]
fn rationales_are_checked_stored_and_reported() {
    let Some(pool) = pool() else { return };
    let dir = std::env::temp_dir().join(format!("nxt-core-faithful-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let gen = Canned::new();
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    let cfg = EvalConfig {
        benchmark: "test".into(),
        n: 4,
        ks: vec![1, 2],
        greedy: true,
        ..EvalConfig::default()
    };
    let tasks = tasks();
    let mut stages = std::collections::BTreeSet::new();
    let report = run_eval(&ctx, &tasks, &cfg, &store, &mut |p| {
        stages.insert(p.stage);
    })
    .unwrap();
    assert!(stages.contains("faithfulness"), "{stages:?}");

    // Every sampled and greedy sample was checked.
    for kind in [PromptKind::Sample, PromptKind::Greedy] {
        assert!(store.faithfulness_pending(kind).unwrap().is_empty());
    }
    let outcomes = store.faithfulness_outcomes(PromptKind::Sample).unwrap();
    assert_eq!(outcomes.len(), 12);
    for o in &outcomes {
        let want = match (o.task_id.as_str(), o.passed) {
            ("t/dbl", Some(true)) => "unfaithful",
            ("t/vowels", Some(true)) => "faithful",
            _ => "no_claim",
        };
        assert_eq!(o.verdict.as_deref(), Some(want), "{o:?}");
        let r = store.faithfulness_of(o.sample_id).unwrap().unwrap();
        assert_eq!(r.verdict.as_str(), want);
        if want == "unfaithful" {
            let c = r
                .claims
                .iter()
                .find(|c| c.verdict == ClaimVerdict::Contradicted)
                .unwrap();
            assert_eq!(c.text, "__return__=4");
            let e = c.evidence.as_ref().unwrap();
            assert_eq!((e.line, e.shows.as_str()), (2, "__return__=3"));
            assert!(r
                .claims
                .iter()
                .any(|c| c.text == "x=1" && c.verdict == ClaimVerdict::Supported));
        }
    }
    // The sample records carry the verdict for the keep step.
    let recs = store.sample_records(PromptKind::Sample).unwrap();
    assert!(recs.iter().all(|r| r.faithfulness.is_some()));

    // Rates beside pass@k: 6 passing fixes (2 per task: dbl unfaithful, vowels faithful, scale
    // no claim), 6 failing ones (wrong or unparseable, no claim).
    let f = &report.faithfulness;
    assert_eq!(
        (
            f.passed.checked,
            f.passed.faithful,
            f.passed.unfaithful,
            f.passed.no_claim
        ),
        (6, 2, 2, 2)
    );
    assert_eq!((f.failed.checked, f.failed.no_claim), (6, 6));
    assert_eq!((f.all.checked, f.unchecked), (12, 0));
    assert!((f.all.unfaithful_rate - 2.0 / 12.0).abs() < 1e-12);
    assert_eq!(f.claims_contradicted, 2);
    assert!(report
        .text()
        .contains("rationales: 16.7% faithful, 16.7% unfaithful"));
    assert!(report.markdown().contains("## Rationale faithfulness"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["faithfulness"]["passed"]["unfaithful"], 2);

    // A rerun checks nothing again and reports the same.
    let again = run_eval(&ctx, &tasks, &cfg, &store, &mut |_| {}).unwrap();
    assert_eq!(again.faithfulness, report.faithfulness);
    let _ = std::fs::remove_dir_all(&dir);
}
