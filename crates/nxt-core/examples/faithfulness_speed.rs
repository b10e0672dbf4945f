//! Speed of the rationale faithfulness check next to sampling, on a tiny-model eval run.
//!
//! Writes a tiny random Qwen2-shaped model, evaluates it on the first `TASKS` HeFix+ tasks
//! (`N` samples each, zero-shot, `MAX_TOKENS` tokens) and reports the wall time of each eval
//! stage (the faithfulness stage includes re-tracing each task once), then re-checks every
//! stored rationale in memory to give claims checked per second without tracing.
//!
//! ```sh
//! NXT_DATA_DIR=../shared/data cargo run --release -p nxt-core --example faithfulness_speed
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use nxt_core::eval::{run_eval, EvalConfig, EvalContext};
use nxt_core::store::{PromptKind, RunStore};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_llm::engine::{Engine, EngineOptions};

const TASKS: usize = 10;
const N: usize = 8;
const MAX_TOKENS: usize = 256;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = std::env::var_os("NXT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"));
    let dir = std::env::temp_dir().join(format!("nxt-faithfulness-speed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let model_dir = dir.join("model");
    write_tiny_model(&model_dir, &TinyModelSpec::default())?;
    // Long enough for the HeFix prompts.
    let cfg_path = model_dir.join("config.json");
    let mut mc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)?;
    mc["max_position_embeddings"] = serde_json::json!(32768);
    std::fs::write(&cfg_path, mc.to_string())?;
    let engine = Engine::load(
        model_dir.to_str().ok_or("temp dir is not UTF-8")?,
        EngineOptions::default(),
    )?;
    let pool = nxt_data::default_pool(true)?;
    let mut tasks = nxt_data::load_benchmark_with("hefix+", &data, Some(&pool))?;
    tasks.truncate(TASKS);
    let store = RunStore::open(&dir.join("run.sqlite"))?;
    let mut cfg = EvalConfig {
        benchmark: "hefix+".into(),
        n: N,
        greedy: false,
        ks: vec![1],
        ..EvalConfig::default()
    };
    cfg.repair.sampling.max_tokens = MAX_TOKENS;
    cfg.repair.prompt.few_shot = false;
    let ctx = EvalContext {
        pool: &pool,
        generator: &engine,
        proxy: None,
    };
    // Wall time per stage: from the previous stage's last event to this stage's last event.
    let mut last = Instant::now();
    let mut spent: BTreeMap<&'static str, f64> = BTreeMap::new();
    let report = run_eval(&ctx, &tasks, &cfg, &store, &mut |p| {
        let now = Instant::now();
        *spent.entry(p.stage).or_default() += (now - last).as_secs_f64();
        last = now;
    })?;
    println!(
        "tiny-model eval: {} tasks x {N} samples, {MAX_TOKENS} max tokens",
        report.tasks
    );
    for (stage, s) in &spent {
        println!("  stage {stage:<13} {s:8.2} s");
    }
    let f = &report.faithfulness;
    println!(
        "  rationales checked {}: {} faithful, {} unfaithful, {} no claim; claims {} supported, {} contradicted, {} unverifiable",
        f.all.checked,
        f.all.faithful,
        f.all.unfaithful,
        f.all.no_claim,
        f.claims_supported,
        f.claims_contradicted,
        f.claims_unverifiable
    );
    // The check alone (traces recorded once, every rationale re-checked in memory).
    let mut traces = BTreeMap::new();
    for t in &tasks {
        if let Some(test) = store.prep(&t.id)?.and_then(|p| p.failing_test) {
            let mut req = nxt_trace::TraceRequest::new(t.buggy_program.clone(), test);
            req.setup = t.prompt_tests.setup.clone();
            req.setup_placement = t.prompt_tests.setup_placement;
            req.capture = nxt_faithful::full_capture();
            traces.insert(t.id.clone(), nxt_trace::trace(&pool, &req)?);
        }
    }
    let recs = store.sample_records(PromptKind::Sample)?;
    let start = Instant::now();
    let (mut checked, mut claims) = (0usize, 0usize);
    for _ in 0..20 {
        for r in &recs {
            if let (Some(tr), Some(rat)) = (traces.get(&r.task_id), &r.rationale) {
                claims += nxt_faithful::check_rationale(rat, tr).claims.len();
                checked += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  in memory: {checked} rationale checks ({claims} claims) in {secs:.3} s: {:.0} rationales/s, {:.0} claims/s",
        checked as f64 / secs,
        claims as f64 / secs
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
