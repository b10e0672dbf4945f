//! The main job end to end through the library, offline: a tiny random model written by the
//! test, the real embedded engine, the real tracer and sandbox, real HeFix+ tasks and real
//! grading. The fix rate of a random model is near zero: this checks that every stage ran and
//! every record was stored, not the rate.

mod common;

use nxt_core::eval::{run_eval, EvalConfig, EvalContext};
use nxt_core::store::{PromptKind, RunStore};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_llm::engine::{Engine, EngineOptions};

/// A tiny random model. Its tokenizer needs ~3x more tokens than Qwen's for the same text:
/// widen the context (RoPE has no fixed limit) so that prompts fit.
fn tiny_model(dir: &std::path::Path) {
    write_tiny_model(dir, &TinyModelSpec::default()).unwrap();
    let cfg_path = dir.join("config.json");
    let mut mc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    mc["max_position_embeddings"] = serde_json::json!(32768);
    std::fs::write(&cfg_path, mc.to_string()).unwrap();
}

#[test]
fn tiny_model_on_a_hefix_plus_slice() {
    let Some(data) = common::data_dir() else {
        return;
    };
    let Some(pool) = common::pool() else { return };
    let dir = std::env::temp_dir().join(format!("nxt-core-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model_dir = dir.join("model");
    tiny_model(&model_dir);
    let engine = Engine::load(model_dir.to_str().unwrap(), EngineOptions::default()).unwrap();
    let mut tasks = nxt_data::load_benchmark_with("hefix+", &data, Some(&pool)).unwrap();
    tasks.truncate(3);
    let store = RunStore::open(&dir.join("run.sqlite")).unwrap();
    let mut cfg = EvalConfig {
        benchmark: "hefix+".into(),
        n: 2,
        greedy: true,
        ks: vec![1, 2],
        ..EvalConfig::default()
    };
    cfg.repair.sampling.max_tokens = 24;
    // Zero-shot keeps the prompts short (the few-shot layout is covered by tests/pipeline.rs).
    cfg.repair.prompt.few_shot = false;
    let ctx = EvalContext {
        pool: &pool,
        generator: &engine,
        proxy: Some(&engine),
    };
    let mut stages = std::collections::BTreeSet::new();
    let report = run_eval(&ctx, &tasks, &cfg, &store, &mut |p| {
        stages.insert(p.stage);
    })
    .unwrap();
    for s in ["prepare", "sample", "greedy", "proxy"] {
        assert!(stages.contains(s), "{s} missing from {stages:?}");
    }
    let c = store.counts().unwrap();
    assert_eq!((c.tasks, c.prepared), (3, 3));
    // 3 tasks x (2 sampled + 1 greedy + 2 proxy).
    assert_eq!(c.samples, 15);
    assert_eq!(c.parses, 15);
    assert_eq!(c.verdicts, 15);
    assert_eq!(
        report.traced_tasks, 3,
        "every HeFix bug fails a shown test and is traced"
    );
    for t in &tasks {
        let prep = store.prep(&t.id).unwrap().unwrap();
        assert!(prep.failing_test.is_some());
        assert!(prep.trace.as_deref().unwrap().contains("# (0)"), "{}", t.id);
    }
    let u = store.usage(PromptKind::Sample).unwrap();
    assert_eq!(u.completions, 6);
    assert!(
        u.prompt_tokens > 6 * 100,
        "prompts hold the program, tests and trace: {u:?}"
    );
    assert!(u.completion_tokens > 0 && u.completion_tokens <= 6 * 24);
    assert_eq!(report.sampled.samples, 6);
    assert!(report.sampled.pass_at_k.contains_key(&1) && report.sampled.pass_at_k.contains_key(&2));
    assert!(report.greedy_pass_at_1.is_some());
    report.write(&dir).unwrap();
    assert!(dir.join("results.json").is_file() && dir.join("report.md").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same through the OpenAI-compatible client against `nxt serve`'s server on loopback
/// (the path a vLLM server takes), with the greedy samples compared to the engine called
/// directly.
#[test]
fn tiny_model_served_over_http_on_a_hefix_plus_slice() {
    use std::sync::Arc;

    use nxt_llm::openai::{ClientConfig, OpenAiClient};
    use nxt_llm::server::{ServerConfig, ServerHandle};

    let Some(data) = common::data_dir() else {
        return;
    };
    let Some(pool) = common::pool() else { return };
    let dir = std::env::temp_dir().join(format!("nxt-core-e2e-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model_dir = dir.join("model");
    tiny_model(&model_dir);
    let engine =
        Arc::new(Engine::load(model_dir.to_str().unwrap(), EngineOptions::default()).unwrap());
    let server = ServerHandle::start(
        engine.clone(),
        &ServerConfig {
            port: 0,
            parallel: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut ccfg = ClientConfig::new([server.base_url()]);
    ccfg.api_key = None;
    let client = OpenAiClient::new(ccfg).unwrap();
    let mut tasks = nxt_data::load_benchmark_with("hefix+", &data, Some(&pool)).unwrap();
    tasks.truncate(2);
    let mut cfg = EvalConfig {
        benchmark: "hefix+".into(),
        n: 2,
        greedy: true,
        ks: vec![1],
        ..EvalConfig::default()
    };
    cfg.repair.sampling.max_tokens = 16;
    cfg.repair.prompt.few_shot = false;
    let run = |gen: &dyn nxt_llm::Generator, name: &str| {
        let store = RunStore::open(&dir.join(format!("{name}.sqlite"))).unwrap();
        let ctx = EvalContext {
            pool: &pool,
            generator: gen,
            proxy: None,
        };
        let report = run_eval(&ctx, &tasks, &cfg, &store, &mut |_| {}).unwrap();
        (store, report)
    };
    let (served_store, served) = run(&client, "served");
    let c = served_store.counts().unwrap();
    assert_eq!(
        (c.tasks, c.prepared, c.samples, c.parses, c.verdicts),
        (2, 2, 6, 6, 6)
    );
    assert_eq!(
        served.sampled.usage.failed,
        0,
        "{:?}",
        served_store.errors().unwrap()
    );
    assert!(served.sampled.usage.prompt_tokens > 0);
    // Greedy completions are the same through HTTP as from the engine directly.
    let (direct_store, _) = run(engine.as_ref(), "direct");
    for t in &tasks {
        let text = |s: &RunStore| {
            let (pid, _) = s.prompt(&t.id, PromptKind::Greedy, 0).unwrap().unwrap();
            s.samples(pid).unwrap()[0].text.clone()
        };
        assert_eq!(text(&served_store), text(&direct_store), "{}", t.id);
    }
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
