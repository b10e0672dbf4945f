//! `results.json` and `report.md` of a run, assembled from the ledger (the source of truth),
//! rewritten at each iteration's end and at the end of the run; and the terminal summary.

use std::fmt::Write as _;
use std::path::Path;

use nxt_core::EvalReport;
use serde_json::{json, Map, Value};

use crate::config::SelftrainConfig;
use crate::error::SelftrainError;
use crate::ledger::Ledger;

/// The summary of one evaluation, as `results.json` holds it: pass@k, greedy pass@1, sizes,
/// rates and per-task counts (for bootstrap intervals and coverage).
pub fn eval_summary(r: &EvalReport, run_dir: &str) -> Value {
    let mut v = Map::new();
    for (k, p) in &r.sampled.pass_at_k {
        v.insert(format!("pass@{k}"), json!(p));
    }
    if let Some(g) = r.greedy_pass_at_1 {
        v.insert("greedy".into(), json!(g));
    }
    v.insert("n".into(), json!(r.n));
    v.insert("tasks".into(), json!(r.tasks));
    v.insert("with_trace".into(), json!(r.with_trace));
    v.insert("unparseable".into(), json!(r.sampled.unparseable_rate));
    let u = &r.sampled.usage;
    let truncated = if u.completions > 0 {
        u.truncated as f64 / u.completions as f64
    } else {
        0.0
    };
    v.insert("truncated".into(), json!(truncated));
    v.insert(
        "mean_completion_tokens".into(),
        json!(if u.completions > 0 {
            u.completion_tokens as f64 / u.completions as f64
        } else {
            0.0
        }),
    );
    if let Some(p) = &r.proxy {
        let mut pm = Map::new();
        for (k, x) in &p.pass_at_k {
            pm.insert(format!("pass@{k}"), json!(x));
        }
        pm.insert("model".into(), json!(r.proxy_model));
        v.insert("proxy".into(), Value::Object(pm));
    }
    let mut per = Map::new();
    for t in &r.per_task {
        let mut e = json!({"n": t.n, "c": t.correct});
        if let Some(g) = t.greedy_passed {
            e["greedy"] = json!(g);
        }
        if t.proxy_n > 0 {
            e["proxy_n"] = json!(t.proxy_n);
            e["proxy_c"] = json!(t.proxy_correct);
        }
        per.insert(t.task_id.clone(), e);
    }
    v.insert("per_task".into(), Value::Object(per));
    v.insert("run_dir".into(), json!(run_dir));
    Value::Object(v)
}

fn stage(l: &Ledger, name: &str) -> Result<Option<(Value, f64)>, SelftrainError> {
    l.stage(name)
}

/// The samples iteration `iteration` kept for training, from the ledger's keep decisions:
/// `task_id#sample_idx` (the sample's index among its task's samples in the iteration's
/// sampling store), the same ids the lines of `iter-N/train.jsonl` carry, in that file's
/// order (by task id, then sample index).
pub fn kept_sample_ids(ledger: &Ledger, iteration: usize) -> Result<Vec<String>, SelftrainError> {
    Ok(ledger
        .decisions(iteration)?
        .into_iter()
        .filter(|d| d.decision == "kept")
        .map(|d| format!("{}#{}", d.task_id, d.sample_idx))
        .collect())
}

/// The data files of a run by split: `path`, `sha256` (of the file as it is now; absent for a
/// registry source, which `nxt data` checks against its pinned sha256) and, for the toy, the
/// number of tasks.
fn data_provenance(toy: Option<&Value>, cfg: &SelftrainConfig) -> Value {
    let file = |path: &str| {
        let mut e = json!({"path": path});
        if let Ok(sha) = nxt_data::registry::sha256_file(Path::new(path)) {
            e["sha256"] = json!(sha);
        }
        e
    };
    let mut out = Map::new();
    match toy {
        Some(t) => {
            for split in ["train", "dev", "test", "warm_start"] {
                if let Some(p) = t[split].as_str() {
                    let mut e = file(p);
                    if let Some(n) = t["counts"][split].as_u64() {
                        e["tasks"] = json!(n);
                    }
                    out.insert(split.into(), e);
                }
            }
        }
        None => {
            let d = &cfg.data;
            let mut sources = vec![("train".to_string(), &d.train), ("dev".into(), &d.dev)];
            for (i, t) in d.test.iter().enumerate() {
                sources.push((format!("test {}", i + 1), t));
            }
            for (split, src) in sources {
                let e = if crate::config::is_path_source(src) {
                    file(src)
                } else {
                    json!({"path": src})
                };
                out.insert(split, e);
            }
        }
    }
    Value::Object(out)
}

/// Builds `results.json` from the ledger.
pub fn build_results(
    ledger: &Ledger,
    cfg: &SelftrainConfig,
    status: &str,
) -> Result<Value, SelftrainError> {
    let mut out = Map::new();
    out.insert("kind".into(), json!("selftrain"));
    out.insert("nxt_version".into(), json!(env!("CARGO_PKG_VERSION")));
    out.insert("status".into(), json!(status));
    out.insert(
        "config".into(),
        serde_json::to_value(cfg).unwrap_or(Value::Null),
    );
    let mut prov = Map::new();
    let base = match stage(ledger, "warm-start")? {
        Some((v, _)) => v["model"].clone(),
        None => json!(cfg.model.base),
    };
    prov.insert("base_model".into(), base);
    prov.insert("seed".into(), json!(cfg.run.seed));
    let toy = stage(ledger, "toy")?.map(|(v, _)| v);
    prov.insert("data".into(), data_provenance(toy.as_ref(), cfg));
    // Every iteration fine-tunes the same base weights; the trainer hashes them.
    if let Some(sha) = ledger
        .stages()?
        .iter()
        .filter(|n| n.starts_with("iter-") && n.ends_with("/train"))
        .find_map(|n| {
            let (v, _) = stage(ledger, n).ok()??;
            v["base_weights_sha256"].as_str().map(str::to_string)
        })
    {
        prov.insert("base_weights_sha256".into(), json!(sha));
    }
    if let Some(v) = toy {
        prov.insert("toy".into(), v);
    }
    if let Some((v, w)) = stage(ledger, "warm-start")? {
        let mut ws = v;
        ws["wall_s"] = json!(w);
        out.insert("warm_start".into(), ws);
    }
    out.insert("provenance".into(), Value::Object(prov));
    let mut wall = Map::new();
    if let Some((mut v, w)) = stage(ledger, "hard")? {
        v["wall_s"] = json!(w);
        wall.insert("hard".into(), json!(w));
        out.insert("hard".into(), v);
    }
    let mut base_m = Map::new();
    if let Some((v, w)) = stage(ledger, "base/dev")? {
        base_m.insert("dev".into(), v);
        wall.insert("base_dev".into(), json!(w));
    }
    if let Some((v, w)) = stage(ledger, "base/dev-no-trace")? {
        base_m.insert("dev_no_trace".into(), v);
        wall.insert("base_dev_no_trace".into(), json!(w));
    }
    out.insert("base".into(), Value::Object(base_m));
    let mut iters = Vec::new();
    for i in 1.. {
        let sample = stage(ledger, &format!("iter-{i}/sample"))?;
        let keep = stage(ledger, &format!("iter-{i}/keep"))?;
        let train = stage(ledger, &format!("iter-{i}/train"))?;
        let dev = stage(ledger, &format!("iter-{i}/dev"))?;
        if sample.is_none() && keep.is_none() && train.is_none() && dev.is_none() {
            break;
        }
        let mut it = Map::new();
        let mut w = Map::new();
        it.insert("iteration".into(), json!(i));
        if let Some((v, s)) = sample {
            it.insert("sampled_from".into(), v["sampled_from"].clone());
            it.insert(
                "train_side".into(),
                json!({"pass@1": v["pass@1"], "run_dir": v["run_dir"]}),
            );
            w.insert("sample".into(), json!(s));
        }
        if let Some((v, s)) = keep {
            it.insert("kept".into(), v["kept"].clone());
            it.insert("funnel".into(), v["funnel"].clone());
            it.insert("kept_per_task".into(), v["kept_per_task"].clone());
            it.insert("kept_sample_ids".into(), json!(kept_sample_ids(ledger, i)?));
            it.insert("train_set".into(), v["train_set"].clone());
            it.insert("train_set_sha256".into(), v["train_set_sha256"].clone());
            w.insert("keep".into(), json!(s));
        }
        if let Some((v, s)) = train {
            it.insert("train_loss".into(), v["final_loss"].clone());
            it.insert("train".into(), v);
            w.insert("train".into(), json!(s));
        }
        if let Some((v, s)) = dev {
            it.insert("dev".into(), v);
            w.insert("dev".into(), json!(s));
        }
        if let Some((v, s)) = stage(ledger, &format!("iter-{i}/dev-no-trace"))? {
            it.insert("dev_no_trace".into(), v);
            w.insert("dev_no_trace".into(), json!(s));
        }
        it.insert("wall_s".into(), Value::Object(w));
        iters.push(Value::Object(it));
    }
    out.insert("iterations".into(), Value::Array(iters));
    if let Some(b) = ledger.meta("best_iteration")? {
        out.insert(
            "best_iteration".into(),
            json!(b.parse::<usize>().unwrap_or(0)),
        );
    }
    // Test evaluations: test/<model>/<set>/<trace|no-trace>.
    let mut test = Map::new();
    for name in ledger.stages()? {
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() != 4 || parts[0] != "test" {
            continue;
        }
        if let Some((v, w)) = stage(ledger, &name)? {
            let model = if parts[1] == "base" { "base" } else { "best" };
            let entry = test.entry(model.to_string()).or_insert_with(|| json!({}));
            let key = if parts[3] == "trace" {
                "trace"
            } else {
                "no_trace"
            };
            entry[parts[2]][key] = v;
            wall.insert(name.replace('/', "_"), json!(w));
        }
    }
    out.insert("test".into(), Value::Object(test));
    out.insert("wall_s".into(), Value::Object(wall));
    Ok(Value::Object(out))
}

/// Writes `results.json` and `report.md` into the run directory (atomically) and returns the
/// results.
pub fn write_results(
    run_dir: &Path,
    ledger: &Ledger,
    cfg: &SelftrainConfig,
    status: &str,
) -> Result<Value, SelftrainError> {
    let v = build_results(ledger, cfg, status)?;
    let write = |name: &str, text: &str| -> Result<(), SelftrainError> {
        let p = run_dir.join(name);
        let tmp = run_dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| SelftrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| SelftrainError::io(&p, e))
    };
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    write("results.json", &text)?;
    write("report.md", &markdown(&v))?;
    Ok(v)
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{:.1}", 100.0 * x))
        .unwrap_or_else(|| "-".into())
}

/// The per-iteration table of `report.md`: dev pass@1 / greedy (and dev pass@1 without the
/// trace, when the run evaluated it), train-side pass@1, kept, loss. The terminal summary of
/// `nxt selftrain` is the report page's headline table (`nxt_report::summary_table`).
fn iterations_table(v: &Value) -> String {
    let mut s = String::new();
    let no_trace = v["base"]["dev_no_trace"].is_object();
    let row = |s: &mut String, cells: [String; 7]| {
        let [model, p1, greedy, nt, train, kept, loss] = cells;
        let nt = if no_trace {
            format!(" {nt:>12}")
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{model:<10} {p1:>12} {greedy:>12}{nt} {train:>12} {kept:>7} {loss:>10}"
        );
    };
    row(
        &mut s,
        [
            "model",
            "dev pass@1",
            "dev greedy",
            "no-trace p@1",
            "train pass@1",
            "kept",
            "train loss",
        ]
        .map(String::from),
    );
    let base = &v["base"];
    row(
        &mut s,
        [
            "base".into(),
            pct(&base["dev"]["pass@1"]),
            pct(&base["dev"]["greedy"]),
            pct(&base["dev_no_trace"]["pass@1"]),
            pct(&v["hard"]["pass@1"]),
            "-".into(),
            "-".into(),
        ],
    );
    let best = v["best_iteration"].as_u64();
    for it in v["iterations"].as_array().into_iter().flatten() {
        let i = it["iteration"].as_u64().unwrap_or(0);
        let label = if best == Some(i) {
            format!("iter {i} *")
        } else {
            format!("iter {i}")
        };
        row(
            &mut s,
            [
                label,
                pct(&it["dev"]["pass@1"]),
                pct(&it["dev"]["greedy"]),
                pct(&it["dev_no_trace"]["pass@1"]),
                pct(&it["train_side"]["pass@1"]),
                it["kept"]
                    .as_u64()
                    .map(|k| k.to_string())
                    .unwrap_or("-".into()),
                it["train_loss"]
                    .as_f64()
                    .map(|l| format!("{l:.4}"))
                    .unwrap_or("-".into()),
            ],
        );
    }
    if let Some(t) = v["test"].as_object() {
        if !t.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<10} {:<22} {:>12} {:>12} {:>12} {:>12}",
                "test", "set", "pass@1", "greedy", "no-trace p@1", "no-tr greedy"
            );
            for (who, sets) in t {
                let model = who.as_str();
                for (set, r) in sets.as_object().into_iter().flatten() {
                    let _ = writeln!(
                        s,
                        "{:<10} {:<22} {:>12} {:>12} {:>12} {:>12}",
                        model,
                        set,
                        pct(&r["trace"]["pass@1"]),
                        pct(&r["trace"]["greedy"]),
                        pct(&r["no_trace"]["pass@1"]),
                        pct(&r["no_trace"]["greedy"])
                    );
                }
            }
        }
    }
    s
}

/// `report.md`: the summary table, the funnel per iteration and provenance.
pub fn markdown(v: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Self-training run ({})\n",
        v["status"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        s,
        "Base model: `{}`; nxt {}; seed {}.\n",
        v["provenance"]["base_model"].as_str().unwrap_or("?"),
        v["nxt_version"].as_str().unwrap_or("?"),
        v["provenance"]["seed"]
    );
    let _ = writeln!(s, "```\n{}```\n", iterations_table(v));
    let _ = writeln!(
        s,
        "| iteration | tasks | with a pass | passing | after dedupe | after cap | training tokens |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for it in v["iterations"].as_array().into_iter().flatten() {
        let f = &it["funnel"];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            it["iteration"],
            f["tasks_attempted"],
            f["tasks_with_pass"],
            f["passing_samples"],
            f["after_dedupe"],
            f["after_cap"],
            f["training_tokens"]
        );
    }
    if let Some(b) = v["best_iteration"].as_u64() {
        let _ = writeln!(
            s,
            "\nBest iteration on dev: {} ({}).",
            b,
            if b == 0 {
                "the base model"
            } else {
                "a fine-tuned model"
            }
        );
    }
    s
}

/// The reproducible content of a run directory: every sampling store's samples with their
/// verdicts, every keep decision, the training sets' sha256, the trained weights' sha256 and
/// every evaluation's figures; no wall times and no absolute paths. Two runs of one
/// configuration and seed have equal fingerprints (on the CPU), however often they were
/// interrupted and resumed, and whether their sampling was sharded or not.
pub fn fingerprint(run_dir: &Path) -> Result<Value, SelftrainError> {
    use nxt_core::store::PromptKind;
    let ledger = Ledger::open(&run_dir.join("selftrain.sqlite"))?;
    let mut out = Map::new();
    let mut stages = Map::new();
    for name in ledger.stages()? {
        let Some((mut v, _)) = ledger.stage(&name)? else {
            continue;
        };
        // Trainer summaries carry wall times and absolute paths.
        if let Some(o) = v.as_object_mut() {
            o.remove("summary");
            o.remove("train");
            o.remove("dir");
            for k in ["model", "train", "dev", "test", "warm_start"] {
                if let Some(Value::String(p)) = o.get(k) {
                    let rel = Path::new(p)
                        .strip_prefix(run_dir)
                        .map(|r| r.display().to_string())
                        .unwrap_or_else(|_| p.clone());
                    o.insert(k.into(), json!(rel));
                }
            }
        }
        stages.insert(name, v);
    }
    out.insert("stages".into(), Value::Object(stages));
    let mut stores = Map::new();
    let mut dirs = vec![run_dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
                {
                    dirs.push(p);
                }
            } else if p.file_name().is_some_and(|n| n == "run.sqlite") {
                let store = nxt_core::RunStore::open(&p)?;
                let mut rows = Vec::new();
                for kind in [PromptKind::Sample, PromptKind::Greedy] {
                    for r in store.sample_records(kind)? {
                        rows.push(json!([kind.as_str(), r.task_id, r.idx, r.text, r.passed]));
                    }
                }
                let rel = p.strip_prefix(run_dir).unwrap_or(&p).display().to_string();
                stores.insert(rel, Value::Array(rows));
            } else if p.extension().is_some_and(|x| x == "safetensors")
                && !p.components().any(|c| c.as_os_str() == "checkpoint")
            {
                let rel = p.strip_prefix(run_dir).unwrap_or(&p).display().to_string();
                let sha = nxt_data::registry::sha256_file(&p)?;
                out.insert(format!("weights:{rel}"), json!(sha));
            }
        }
    }
    out.insert("stores".into(), Value::Object(stores));
    let mut decisions = Vec::new();
    for i in 1..1000 {
        let d = ledger.decisions(i)?;
        if d.is_empty() && ledger.training_set(i)?.is_none() {
            break;
        }
        for x in d {
            decisions.push(json!([i, x.task_id, x.sample_idx, x.decision]));
        }
    }
    out.insert("decisions".into(), Value::Array(decisions));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Decision, StageRecords};

    fn decision(task: &str, idx: i64, d: &str) -> Decision {
        Decision {
            task_id: task.into(),
            sample_idx: idx,
            decision: d.into(),
            completion_tokens: 10,
        }
    }

    #[test]
    fn results_list_the_kept_samples_and_the_data_provenance_from_the_ledger() {
        let dir = std::env::temp_dir().join(format!("nxt-results-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut ledger = Ledger::open(&dir.join("selftrain.sqlite")).expect("ledger");
        let cfg = SelftrainConfig::from_toml("[model]\nbase = \"m\"\n").expect("config");
        let keep = |kept: usize| json!({"kept": kept, "funnel": {}, "kept_per_task": {}});
        let it1 = [
            decision("t/2", 0, "failed"),
            decision("t/2", 1, "kept"),
            decision("t/10", 3, "kept"),
            decision("t/10", 1, "kept"),
            decision("t/10", 2, "duplicate"),
            decision("t/7", 0, "over_cap"),
        ];
        ledger
            .finish_stage(
                "iter-1/keep",
                &keep(3),
                1.0,
                &StageRecords {
                    decisions: Some((1, &it1)),
                    ..StageRecords::default()
                },
            )
            .expect("keep 1");
        let it2 = [decision("t/2", 0, "unparseable")];
        ledger
            .finish_stage(
                "iter-2/keep",
                &keep(0),
                1.0,
                &StageRecords {
                    decisions: Some((2, &it2)),
                    ..StageRecords::default()
                },
            )
            .expect("keep 2");
        // Iteration 3 sampled but was stopped before its keep stage.
        ledger
            .finish_stage(
                "iter-3/sample",
                &json!({"pass@1": 0.5, "run_dir": "iter-3/sample"}),
                1.0,
                &StageRecords::default(),
            )
            .expect("sample 3");
        ledger
            .finish_stage(
                "iter-1/train",
                &json!({"final_loss": 0.5, "base_weights_sha256": "beef"}),
                1.0,
                &StageRecords::default(),
            )
            .expect("train 1");
        let mut cfg = cfg;
        let train = dir.join("train.jsonl");
        std::fs::write(&train, "{}\n").expect("train file");
        cfg.data.train = train.display().to_string();
        let v = build_results(&ledger, &cfg, "running").expect("results");
        let prov = &v["provenance"];
        assert_eq!(prov["base_weights_sha256"], json!("beef"));
        assert_eq!(
            prov["data"]["train"]["sha256"],
            json!(nxt_data::registry::sha256_bytes(b"{}\n"))
        );
        assert_eq!(prov["data"]["dev"], json!({"path": cfg.data.dev}));
        let its = v["iterations"].as_array().expect("iterations");
        assert_eq!(its.len(), 3);
        // By task id, then sample index: the order of train.jsonl.
        assert_eq!(
            its[0]["kept_sample_ids"],
            json!(["t/10#1", "t/10#3", "t/2#1"])
        );
        assert_eq!(its[1]["kept_sample_ids"], json!([]));
        assert!(its[2].get("kept_sample_ids").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
