//! Generation errors are said out loud: a prompt that cannot fit stops the run before any
//! sampling (all such tasks named at once), a request the backend refuses as invalid is
//! counted as a generation error (no sample is stored, so a rerun asks again), a refusal no
//! retry can fix stops the run with the backend's message, and samples an earlier version
//! stored as failed generations are retried.

mod common;

use std::sync::atomic::Ordering;

use common::{pool, tasks, Canned};
use nxt_core::eval::{run_eval, EvalConfig, EvalContext};
use nxt_core::store::{PromptKind, RunStore};
use nxt_core::CoreError;
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_llm::engine::{Engine, EngineOptions};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-core-generr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config() -> EvalConfig {
    EvalConfig {
        benchmark: "test".into(),
        n: 4,
        ks: vec![1, 2],
        greedy: false,
        ..EvalConfig::default()
    }
}

#[test]
fn prompts_that_do_not_fit_stop_the_run_before_sampling() {
    let Some(pool) = pool() else { return };
    let dir = tmp("fit");
    let model = dir.join("model");
    write_tiny_model(
        &model,
        &TinyModelSpec {
            max_position_embeddings: 256,
            ..TinyModelSpec::default()
        },
    )
    .unwrap();
    let engine = Engine::load(model.to_str().unwrap(), EngineOptions::default()).unwrap();
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let ctx = EvalContext {
        pool: &pool,
        generator: &engine,
        proxy: None,
    };
    let err = run_eval(&ctx, &tasks(), &config(), &store, &mut |_| {}).unwrap_err();
    assert!(matches!(err, CoreError::PromptsTooLong(_)), "{err:?}");
    let msg = err.to_string();
    // Every task is named at once, with the context and what to change.
    for id in ["t/dbl", "t/vowels", "t/scale"] {
        assert!(msg.contains(id), "{msg}");
    }
    assert!(msg.contains("3 of 3 repair prompts"), "{msg}");
    assert!(msg.contains("256 tokens"), "{msg}");
    for hint in ["--zero-shot", "--trace-budget", "longer context"] {
        assert!(msg.contains(hint), "{msg}");
    }
    assert_eq!(store.counts().unwrap().samples, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_invalid_request_is_a_generation_error_and_a_rerun_retries_it() {
    let Some(pool) = pool() else { return };
    let dir = tmp("invalid");
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let mut gen = Canned::new();
    gen.reject_task = Some("t/vowels");
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    let report = run_eval(&ctx, &tasks(), &config(), &store, &mut |_| {}).unwrap();
    // The other tasks went on.
    let d = report
        .per_task
        .iter()
        .find(|t| t.task_id == "t/dbl")
        .unwrap();
    assert_eq!((d.n, d.correct), (4, 2));
    // The rejected task has no samples: not "unparseable", not failed; missing.
    let v = report
        .per_task
        .iter()
        .find(|t| t.task_id == "t/vowels")
        .unwrap();
    assert_eq!((v.n, v.correct, v.unparseable), (0, 0, 0));
    assert_eq!(report.sampled.unparseable, 2);
    assert!(!report.complete());
    let g = &report.generation_errors;
    assert_eq!(g.missing, 4);
    assert_eq!(g.tasks.len(), 1);
    assert_eq!(
        (g.tasks[0].task_id.as_str(), g.tasks[0].stage.as_str()),
        ("t/vowels", "sample")
    );
    assert!(g.tasks[0].message.contains("context is 2048"), "{g:?}");
    // pass@k is not computed over tasks with fewer than k samples: no silent 0%.
    assert!(
        report.sampled.pass_at_k.is_empty(),
        "{:?}",
        report.sampled.pass_at_k
    );
    let text = report.text();
    assert!(
        text.contains("GENERATION ERRORS: 4 samples of 1 tasks"),
        "{text}"
    );
    assert!(
        text.contains("t/vowels (sample, 4 missing): generation failed"),
        "{text}"
    );
    let md = report.markdown();
    assert!(md.contains("## Generation errors"), "{md}");

    // A rerun asks again for exactly the missing samples, and the run is then complete.
    let gen2 = Canned::new();
    let ctx2 = EvalContext {
        pool: &pool,
        generator: &gen2,
        proxy: None,
    };
    let again = run_eval(&ctx2, &tasks(), &config(), &store, &mut |_| {}).unwrap();
    assert_eq!(gen2.samples.load(Ordering::SeqCst), 4);
    assert!(again.complete(), "{:?}", again.generation_errors);
    let v = again
        .per_task
        .iter()
        .find(|t| t.task_id == "t/vowels")
        .unwrap();
    assert_eq!((v.n, v.correct), (4, 2));
    assert!((again.sampled.pass_at_k[&1] - 0.5).abs() < 1e-12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refusal_stops_the_run_with_the_servers_message() {
    let Some(pool) = pool() else { return };
    let dir = tmp("refused");
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let mut gen = Canned::new();
    gen.refuse = true;
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    let err = run_eval(&ctx, &tasks(), &config(), &store, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("Incorrect API key"), "{err}");
    // Nothing was recorded as a failed sample.
    let c = store.counts().unwrap();
    assert_eq!((c.samples, c.verdicts), (0, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn samples_stored_as_failed_generations_are_retried() {
    let Some(pool) = pool() else { return };
    let dir = tmp("oldfailed");
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let tasks = tasks();
    let gen = Canned::new();
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    let cfg = config();
    // What earlier versions stored for an invalid request: empty samples, finish reason
    // `error`, parsed as unparseable, graded as failed.
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
    for id in store.put_failed_samples(pid, 0, 4).unwrap() {
        store
            .put_parse(id, &nxt_core::repair::parse_for(&tasks[0], ""))
            .unwrap();
        store
            .put_verdict(
                id,
                false,
                &serde_json::json!({"generation_error": "too long"}),
            )
            .unwrap();
    }
    let report = run_eval(&ctx, &tasks[..1], &cfg, &store, &mut |_| {}).unwrap();
    assert_eq!(gen.samples.load(Ordering::SeqCst), 4);
    assert_eq!((report.per_task[0].n, report.per_task[0].correct), (4, 2));
    assert_eq!(report.sampled.usage.failed, 0);
    assert!(report.complete());
    std::fs::remove_dir_all(&dir).unwrap();
}
