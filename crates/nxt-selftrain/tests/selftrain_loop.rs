//! The self-training loop end to end on the toy benchmark with a tiny model, through the real
//! engine, sandbox and trainer: every stage's records, no held-out task trained on, kept
//! samples pass, dedupe and the per-task cap hold, each iteration trains from the base
//! weights, the best iteration is the argmax of dev, and a sharded run merges to exactly the
//! unsharded one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nxt_core::store::PromptKind;
use nxt_core::RunStore;
use nxt_sandbox::{Pool, PoolConfig};
use nxt_selftrain::ledger::Ledger;
use nxt_selftrain::results::fingerprint;
use nxt_selftrain::{run, RunEnd, RunOptions, SelftrainConfig, Shard};
use serde_json::Value;

/// The smallest whole run: about 34 training tasks, 4 samples each, 2 iterations (the file
/// is also the README's smoke run; nxt-cli's kill -9 test runs it too).
pub const CONFIG: &str = include_str!("../../../examples/toy-selftrain-smoke.toml");

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(PoolConfig::default()).expect("sandbox with full isolation"))
}

fn config() -> SelftrainConfig {
    SelftrainConfig::from_toml(CONFIG).expect("test config")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-selftrain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The uninterrupted, unsharded reference run (shared by the tests of this file).
fn reference() -> &'static (PathBuf, Value) {
    static RUN: OnceLock<(PathBuf, Value)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tmp("reference");
        let end = run(&config(), &dir, pool(), &RunOptions::default(), &mut |_| {})
            .expect("reference run");
        match end {
            RunEnd::Finished(v) => (dir.canonicalize().expect("run dir"), v),
            RunEnd::Paused(w) => panic!("reference run paused: {w}"),
        }
    })
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl line"))
        .collect()
}

#[test]
fn every_stage_is_recorded_and_the_loop_keeps_its_invariants() {
    let (dir, results) = reference();
    let cfg = config();
    let ledger = Ledger::open(&dir.join("selftrain.sqlite")).expect("ledger");
    let stages = ledger.stages().expect("stages");
    for s in [
        "toy",
        "warm-start",
        "hard",
        "base/dev",
        "iter-1/sample",
        "iter-1/keep",
    ] {
        assert!(
            stages.iter().any(|x| x == s),
            "stage {s} missing: {stages:?}"
        );
    }
    let iterations = results["iterations"].as_array().expect("iterations");
    assert!(!iterations.is_empty());
    let kept1 = iterations[0]["kept"].as_u64().expect("kept");
    assert!(
        kept1 > 0,
        "the warm-started model produced no passing repair: nothing here was tested"
    );
    assert!(dir.join("results.json").exists() && dir.join("report.md").exists());

    // No dev or test task (or template) in any training set.
    let toy_dir = dir.join("toy");
    let mut held_ids = BTreeSet::new();
    let mut held_templates = BTreeSet::new();
    for f in ["dev.jsonl", "test.jsonl"] {
        for t in nxt_selftrain::toy::load_tasks(&toy_dir.join(f)).expect("tasks") {
            held_templates.insert(
                nxt_selftrain::toy::template_of(&t)
                    .expect("toy task")
                    .to_string(),
            );
            held_ids.insert(t.id);
        }
    }
    let train_tasks: BTreeMap<String, nxt_data::RepairTask> =
        nxt_selftrain::toy::load_tasks(&toy_dir.join("train.jsonl"))
            .expect("train")
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
    let hard_ids: BTreeSet<String> = ledger
        .hard_tasks()
        .expect("hard")
        .into_iter()
        .filter(|r| r.3)
        .map(|r| r.0)
        .collect();
    let mut base_hashes = BTreeSet::new();
    for it in iterations {
        let i = it["iteration"].as_u64().expect("iteration") as usize;
        let Some(set) = it["train_set"].as_str() else {
            continue;
        };
        let lines = jsonl(&dir.join(set));
        assert_eq!(lines.len() as u64, it["kept"].as_u64().unwrap_or(0));
        let mut per_task: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for l in &lines {
            let id = l["task_id"].as_str().expect("task_id").to_string();
            assert!(!held_ids.contains(&id), "held-out task {id} trained on");
            let task = train_tasks.get(&id).expect("a training task");
            let tpl = nxt_selftrain::toy::template_of(task).expect("template");
            assert!(!held_templates.contains(tpl), "held-out template {tpl}");
            assert!(hard_ids.contains(&id), "{id} is not a hard task");
            let completion = l["completion"].as_str().expect("completion").to_string();
            assert!(
                per_task.entry(id.clone()).or_default().insert(completion),
                "duplicate kept sample for {id}"
            );
        }
        for (id, s) in &per_task {
            assert!(s.len() <= cfg.keep.max_per_task, "{id}: {} kept", s.len());
        }
        // Every kept sample passed, every passing one has a decision.
        let sample_dir = dir.join(it["train_side"]["run_dir"].as_str().expect("run_dir"));
        let store = RunStore::open(&sample_dir.join("run.sqlite")).expect("store");
        let records = store.sample_records(PromptKind::Sample).expect("records");
        let passed: BTreeMap<(String, i64), bool> = records
            .iter()
            .map(|r| ((r.task_id.clone(), r.idx), r.passed == Some(true)))
            .collect();
        let decisions = ledger.decisions(i).expect("decisions");
        assert_eq!(
            decisions.len(),
            records
                .iter()
                .filter(|r| hard_ids.contains(&r.task_id))
                .count()
        );
        for d in &decisions {
            let ok = passed[&(d.task_id.clone(), d.sample_idx)];
            match d.decision.as_str() {
                "kept" | "duplicate" | "over_cap" => assert!(ok, "{d:?} did not pass"),
                "failed" | "unparseable" => assert!(!ok, "{d:?} passed"),
                other => panic!("unknown decision {other}"),
            }
        }
        // Training started from the base weights (the warm-started model), not P_{i-1}.
        if let Some(train) = it["train"].as_object() {
            let manifest: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("iter-{i}/train/manifest.json")))
                    .expect("manifest"),
            )
            .expect("manifest json");
            base_hashes.insert(manifest["base_weights_sha256"].to_string());
            assert!(train.contains_key("adapter"), "{train:?}");
        }
    }
    let warm = dir.join("warm-start");
    let warm_model = results["provenance"]["base_model"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or(warm);
    let expected = nxt_train::manifest::weights_sha256(&warm_model).expect("base hash");
    assert_eq!(
        base_hashes.len(),
        1,
        "iterations trained from different weights"
    );
    assert_eq!(
        base_hashes.iter().next().cloned(),
        Some(serde_json::to_value(&expected).expect("json").to_string())
    );

    // The best iteration is the argmax of dev pass@1 (ties: the earliest; 0 = base).
    let mut best = (
        0u64,
        results["base"]["dev"]["pass@1"].as_f64().expect("base dev"),
    );
    for it in iterations {
        if let Some(p) = it["dev"]["pass@1"].as_f64() {
            if p > best.1 {
                best = (it["iteration"].as_u64().expect("i"), p);
            }
        }
    }
    assert_eq!(results["best_iteration"].as_u64(), Some(best.0));
    assert!(results["test"]["base"].is_object(), "{}", results["test"]);
}

#[test]
fn sharded_sampling_merges_into_the_unsharded_run() {
    let dir = tmp("sharded");
    let cfg = config();
    let coordinator = RunOptions {
        stop_before_sampling: true,
        ..RunOptions::default()
    };
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 10, "the sharded run does not finish");
        match run(&cfg, &dir, pool(), &coordinator, &mut |_| {}).expect("coordinator") {
            RunEnd::Finished(_) => break,
            RunEnd::Paused(_) => {}
        }
        for index in 0..2 {
            let shard = RunOptions {
                shard: Some(Shard { index, count: 2 }),
                ..RunOptions::default()
            };
            let end = run(&cfg, &dir, pool(), &shard, &mut |_| {}).expect("shard");
            assert!(
                matches!(end, RunEnd::Paused(_)),
                "a shard ran past sampling"
            );
        }
        let merged = nxt_selftrain::merge::merge_shards(&dir).expect("merge");
        assert!(!merged.is_empty(), "nothing to merge in round {rounds}");
    }
    assert!(
        rounds >= 3,
        "hard and iteration 2 sampling are both sharded"
    );
    let (reference_dir, _) = reference();
    let a = fingerprint(reference_dir).expect("fingerprint");
    let b = fingerprint(&dir).expect("fingerprint");
    assert_eq!(a["decisions"], b["decisions"]);
    assert_eq!(a["stores"], b["stores"]);
    assert_eq!(a, b);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_changed_setting_is_refused_naming_it_and_a_safe_one_is_not() {
    let (dir, _) = reference();
    let mut cfg = config();
    cfg.train.lr = 5e-3;
    let e = run(&cfg, dir, pool(), &RunOptions::default(), &mut |_| {})
        .expect_err("a changed learning rate must be refused")
        .to_string();
    assert!(e.contains("train.lr"), "{e}");
    let mut cfg = config();
    cfg.sampling.batch = 3;
    match run(&cfg, dir, pool(), &RunOptions::default(), &mut |_| {}).expect("batch may change") {
        RunEnd::Finished(_) => {}
        RunEnd::Paused(w) => panic!("paused: {w}"),
    }
}

/// The reference run's settings without `[toy]`: the warm-started model as the base, the toy's
/// files as data, `model_extra` added to `[model]` and `replace` applied to the rest.
fn config_on_files(reference_dir: &Path, model_extra: &str, replace: &[(&str, &str)]) -> String {
    let base = reference_dir.join("warm-start");
    let toy = reference_dir.join("toy");
    let mut toml = format!(
        "[model]\nbase = {:?}\n{model_extra}\n\
         [data]\ntrain = {:?}\ndev = {:?}\ntest = [{:?}]\ndev_limit = 3\ntest_limit = 2\n",
        base.display().to_string(),
        toy.join("train.jsonl").display().to_string(),
        toy.join("dev.jsonl").display().to_string(),
        toy.join("test.jsonl").display().to_string(),
    );
    let mut keep_section = false;
    let mut rest = String::new();
    for line in CONFIG.lines() {
        if let Some(name) = line.strip_prefix('[') {
            let name = name.trim_end_matches(']');
            keep_section = !(name == "model" || name == "data" || name.starts_with("toy"));
        }
        if keep_section {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    for (from, to) in replace {
        assert!(rest.contains(from), "{from} not in the test config");
        rest = rest.replace(from, to);
    }
    toml.push_str(&rest);
    toml
}

/// A trainer that fails stops the run with the trainer's own message; every record written
/// before it stays, and a rerun (trainer still failing) says the same without losing them.
#[test]
fn a_failing_trainer_stops_the_run_with_its_message_and_the_records_intact() {
    let (reference_dir, _) = reference();
    let toml = config_on_files(
        reference_dir,
        "",
        &[(
            "[train]\n",
            "[train]\ntrainer = \"trl\"\nlauncher = \"echo trainer exploded: CUDA out of memory >&2; exit 3; {config}\"\n",
        )],
    );
    let cfg = SelftrainConfig::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let dir = tmp("failing-trainer");
    for attempt in 0..2 {
        let e = run(&cfg, &dir, pool(), &RunOptions::default(), &mut |_| {})
            .expect_err("the trainer failed, so must the run")
            .to_string();
        assert!(
            e.contains("trainer exploded: CUDA out of memory"),
            "attempt {attempt}: the trainer's message is not in the error: {e}"
        );
        let ledger = Ledger::open(&dir.join("selftrain.sqlite")).expect("ledger");
        let stages = ledger.stages().expect("stages");
        for s in ["hard", "base/dev", "iter-1/sample", "iter-1/keep"] {
            assert!(stages.iter().any(|x| x == s), "{s} lost: {stages:?}");
        }
        assert!(!stages.iter().any(|x| x == "iter-1/train"), "{stages:?}");
        let store = RunStore::open(&dir.join("hard/run.sqlite")).expect("hard store");
        assert!(!store
            .sample_records(PromptKind::Sample)
            .expect("records")
            .is_empty());
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The GPU-cluster path on loopback: `nxt serve`'s server (the same adapter routes as vLLM)
/// hosts the warm-started base, the loop samples through the OpenAI client, trains each
/// iteration's LoRA with the embedded trainer and loads it on the server under a new name
/// (`POST /v1/load_lora_adapter`), and samples the next iteration from that name. Started
/// while no server listens, the run fails naming the server and resumes once one is up.
#[test]
fn a_server_samples_and_hosts_each_iterations_adapter() {
    use nxt_llm::engine::{Engine, EngineOptions};
    use nxt_llm::server::{ServedModels, ServerConfig, ServerHandle};
    use std::sync::Arc;

    let (reference_dir, _) = reference();
    let base = reference_dir.join("warm-start");
    let engine = Engine::load(base.to_str().expect("utf-8 path"), EngineOptions::default())
        .expect("warm-started toy model");
    let engine = Arc::new(engine);
    let start = |port: u16| {
        ServerHandle::start_models(
            ServedModels::engine(engine.clone()),
            &ServerConfig {
                port,
                parallel: 2,
                model_name: Some("toy-base".into()),
                ..Default::default()
            },
        )
        .expect("server on 127.0.0.1")
    };
    // A port with no server behind it: the run fails saying so, and resumes once one is up.
    let first = start(0);
    let addr = first.addr();
    first.shutdown().expect("shutdown");
    let url = format!("http://{addr}/v1");

    let toml = config_on_files(
        reference_dir,
        &format!("servers = [{url:?}]\nserved_model = \"toy-base\"\n"),
        &[],
    );
    let cfg = SelftrainConfig::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let dir = tmp("server");
    let e = run(&cfg, &dir, pool(), &RunOptions::default(), &mut |_| {})
        .expect_err("no server is listening")
        .to_string();
    assert!(
        e.contains(&addr.to_string()),
        "the error does not name the server: {e}"
    );
    let server = start(addr.port());
    let end = run(&cfg, &dir, pool(), &RunOptions::default(), &mut |_| {}).expect("server run");
    let RunEnd::Finished(results) = end else {
        panic!("the server run paused");
    };
    let iterations = results["iterations"].as_array().expect("iterations");
    assert!(
        iterations.len() >= 2 && iterations[0]["kept"].as_u64().unwrap_or(0) > 0,
        "the server run did not reach iteration 2 with kept samples: {results}"
    );
    assert_eq!(iterations[1]["sampled_from"], "iter-1", "{}", iterations[1]);

    // The server now lists each iteration's adapter with the base as its parent.
    let body = reqwest::blocking::get(format!("{url}/models"))
        .expect("GET /v1/models")
        .text()
        .expect("models body");
    let models: Value = serde_json::from_str(&body).expect("models json");
    let listed: Vec<(String, String)> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_string(),
                m["parent"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for name in ["iter-1", "iter-2"] {
        assert!(
            listed
                .iter()
                .any(|(id, parent)| id.ends_with(name) && parent == "toy-base"),
            "{name} not loaded on the server: {listed:?}"
        );
    }
    // Iteration 2's samples came from the server: the store records them.
    let store = RunStore::open(&dir.join("iter-2/sample/run.sqlite")).expect("iter-2 store");
    assert!(!store
        .sample_records(PromptKind::Sample)
        .expect("records")
        .is_empty());
    server.shutdown().expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}
