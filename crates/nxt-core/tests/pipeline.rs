//! The evaluation pipeline with the real sandbox and tracer and a canned-text generator (test
//! double): every stage runs, every record is stored, and the counts are exactly right.

mod common;

use common::{pool, tasks, Canned};
use nxt_core::eval::{run_eval, EvalConfig, EvalContext};
use nxt_core::prompt::{prompt_text, Layout, PromptOptions};
use nxt_core::store::{PromptKind, RunStore};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-core-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config() -> EvalConfig {
    EvalConfig {
        benchmark: "test".into(),
        n: 4,
        ks: vec![1, 2, 5],
        greedy: true,
        ..EvalConfig::default()
    }
}

#[test]
fn every_stage_runs_and_every_record_is_stored() {
    let Some(pool) = pool() else { return };
    let dir = tmp("pipeline");
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let gen = Canned::new();
    let proxy = Canned::new();
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: Some(&proxy),
    };
    let tasks = tasks();
    let mut stages = std::collections::BTreeSet::new();
    let report = run_eval(&ctx, &tasks, &config(), &store, &mut |p| {
        stages.insert(p.stage);
    })
    .unwrap();

    // Stages.
    for s in ["prepare", "sample", "greedy", "proxy"] {
        assert!(stages.contains(s), "stage {s} did not run: {stages:?}");
    }
    // Records: 3 tasks; prompts: 3 sample + 3 greedy + 12 proxy; samples 12 + 3 + 12.
    let c = store.counts().unwrap();
    assert_eq!((c.tasks, c.prepared), (3, 3));
    assert_eq!(c.prompts, 3 + 3 + 12);
    assert_eq!(c.samples, 12 + 3 + 12);
    assert_eq!(c.parses, c.samples);
    assert_eq!(c.verdicts, c.samples);

    // Every task was traced on its first failing test and the trace is in the prompt.
    for t in &tasks {
        let prep = store.prep(&t.id).unwrap().unwrap();
        let trace = prep
            .trace
            .unwrap_or_else(|| panic!("{}: no trace ({:?})", t.id, prep.note));
        assert!(trace.contains("__exception__"), "{}: {trace}", t.id);
        let (_, prompt) = store.prompt(&t.id, PromptKind::Sample, 0).unwrap().unwrap();
        assert!(prompt_text(&prompt).contains(&trace));
    }
    let dbl = store.prep("t/dbl").unwrap().unwrap();
    assert_eq!(dbl.failing_test.as_deref(), Some("assert dbl(1) == 2"));
    assert!(dbl.trace.unwrap().contains("x=1"));

    // Canned answers per task: correct, wrong, unparseable, correct -> c = 2 of n = 4.
    for t in &report.per_task {
        assert_eq!((t.n, t.correct, t.unparseable), (4, 2, 1), "{t:?}");
        assert_eq!(t.greedy_passed, Some(true));
        // Proxy: correct when the rationale was the correct one (2 of 4).
        assert_eq!((t.proxy_n, t.proxy_correct), (4, 2));
        assert!(t.traced);
    }
    let p = &report.sampled.pass_at_k;
    assert!((p[&1] - 0.5).abs() < 1e-12);
    assert!((p[&2] - (1.0 - 1.0 / 6.0)).abs() < 1e-12);
    assert!(!p.contains_key(&5), "k > n must not be reported");
    assert_eq!(report.greedy_pass_at_1, Some(1.0));
    assert!((report.proxy.as_ref().unwrap().pass_at_k[&1] - 0.5).abs() < 1e-12);
    assert_eq!(report.sampled.unparseable, 3);
    assert!((report.sampled.unparseable_rate - 0.25).abs() < 1e-12);
    assert_eq!(report.sampled.usage.completions, 12);
    assert_eq!(report.sampled.usage.prompt_tokens, 1200);

    // The proxy saw rationales and no trace.
    for pr in proxy.prompts.lock().unwrap().iter() {
        let t = prompt_text(pr);
        let last = t.rsplit("### Problem").next().unwrap();
        assert!(last.contains("### Explanation of the bug"));
        assert!(!last.contains("__exception__"));
    }

    // Reports.
    report.write(&dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["sampled"]["pass_at_k"]["1"], 0.5);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("| pass@1 | 50.0 |") && md.contains("| greedy pass@1 | 100.0 |"),
        "{md}"
    );
    assert!(report.text().contains("pass@1"));

    // Running again does nothing new.
    let gen2 = Canned::new();
    let proxy2 = Canned::new();
    let ctx2 = EvalContext {
        pool: &pool,
        generator: &gen2,
        proxy: Some(&proxy2),
    };
    let again = run_eval(&ctx2, &tasks, &config(), &store, &mut |_| {}).unwrap();
    assert_eq!(gen2.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(proxy2.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(store.counts().unwrap(), c);
    assert_eq!(again.sampled.pass_at_k, report.sampled.pass_at_k);

    // Another configuration in the same directory is refused.
    let mut other = config();
    other.n = 8;
    let err = run_eval(&ctx2, &tasks, &other, &store, &mut |_| {}).unwrap_err();
    // The refusal names the setting with its stored and requested value.
    assert!(err.to_string().contains("another configuration"), "{err}");
    assert!(
        err.to_string().contains("n: stored 4, requested 8"),
        "{err}"
    );
    assert!(!err.to_string().contains("temperature"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_trace_and_completion_layout() {
    let Some(pool) = pool() else { return };
    let dir = tmp("notrace");
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let gen = Canned::new();
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    let mut cfg = config();
    cfg.greedy = false;
    cfg.repair.prompt = PromptOptions {
        layout: Layout::Completion,
        few_shot: false,
        with_trace: false,
    };
    let report = run_eval(&ctx, &tasks()[..1], &cfg, &store, &mut |_| {}).unwrap();
    assert_eq!(report.traced_tasks, 0);
    assert!(report.greedy.is_none() && report.proxy.is_none());
    let prompts = gen.prompts.lock().unwrap();
    let t = prompt_text(&prompts[0]);
    assert!(!t.contains("__exception__") && !t.contains("Execution trace"));
    assert!(t.ends_with("### Rationale\n"));
    assert_eq!(store.counts().unwrap().verdicts, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn samples_left_ungraded_by_a_kill_are_graded_on_resume() {
    let Some(pool) = pool() else { return };
    let dir = tmp("sweep");
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let tasks = tasks();
    let cfg = EvalConfig {
        greedy: false,
        ..config()
    };
    let gen = Canned::new();
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    // Simulate a kill right after samples were stored: store them by hand, no parse/verdict.
    store
        .check_config(
            &nxt_core::eval::config_record(&cfg, &ctx),
            nxt_core::eval::VOLATILE_CONFIG_KEYS,
        )
        .unwrap();
    store.put_task(0, &tasks[0]).unwrap();
    let prep = nxt_core::repair::prepare(&pool, &tasks[0], &cfg.repair).unwrap();
    store.put_prep(&tasks[0].id, &prep).unwrap();
    let prompt = nxt_core::repair::prompt_for(&tasks[0], &prep, &cfg.repair);
    let pid = store
        .put_prompt(&tasks[0].id, PromptKind::Sample, 0, &prompt)
        .unwrap();
    let done = gen
        .generate(&nxt_llm::GenerationRequest {
            prompt,
            n: 2,
            params: cfg.repair.sampling_for(0.8, None),
        })
        .unwrap();
    use nxt_llm::Generator;
    store.put_samples(pid, 0, &done).unwrap();
    assert_eq!(store.counts().unwrap().verdicts, 0);
    let report = run_eval(&ctx, &tasks[..1], &cfg, &store, &mut |_| {}).unwrap();
    let c = store.counts().unwrap();
    assert_eq!((c.samples, c.parses, c.verdicts), (4, 4, 4));
    // Only the 2 missing samples were asked for (2 by hand + 2 by the run).
    assert_eq!(gen.samples.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(report.per_task[0].n, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
