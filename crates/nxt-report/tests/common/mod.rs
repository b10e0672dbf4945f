//! Fixture runs for the report tests, written through the real run-store API
//! (`nxt_core::RunStore`), the real prompt builder and parser, and the real eval report
//! (`nxt_core::report::build_report`, which writes an eval run's `results.json`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nxt_core::eval::EvalConfig;
use nxt_core::parse::parse_completion;
use nxt_core::prompt::{build_prompt, PromptTrace};
use nxt_core::report::build_report;
use nxt_core::store::{PromptKind, RunStore, TaskPrep};
use nxt_core::task::{adhoc_task, RepairTask};
use nxt_core::RepairConfig;
use nxt_llm::{Completion, FinishReason};
use serde_json::json;

/// The hostile string a model could write: it must never become markup.
pub const HOSTILE: &str = "</pre><script>alert('pwned')</script><img src=x onerror=alert(1)>";

/// One fixture task: how many of its `n` samples pass, whether the greedy one passes.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// Task id.
    pub id: String,
    /// Passing samples.
    pub pass: usize,
    /// Greedy verdict.
    pub greedy: Option<bool>,
    /// Proxy passes (of `n` proxy fixes), when the run has a proxy.
    pub proxy_pass: Option<usize>,
}

/// A fixture eval run.
#[derive(Debug, Clone)]
pub struct EvalPlan {
    /// Benchmark name.
    pub benchmark: String,
    /// Model name.
    pub model: String,
    /// Samples per task.
    pub n: usize,
    /// Trace in the prompt.
    pub with_trace: bool,
    /// Tasks.
    pub tasks: Vec<TaskPlan>,
    /// Proxy model (proxy samples are written when set).
    pub proxy_model: Option<String>,
    /// Put the hostile string into the first failing sample's completion and the problem.
    pub hostile: bool,
    /// Every third sample of a task is cut at max_tokens.
    pub truncate_some: bool,
    /// Every fourth sample of a task is unparseable.
    pub unparseable_some: bool,
}

impl EvalPlan {
    /// `tasks` tasks `bench/i` with `pass[i]` passes of `n`.
    pub fn new(benchmark: &str, n: usize, pass: &[usize]) -> EvalPlan {
        EvalPlan {
            benchmark: benchmark.into(),
            model: "tiny-model".into(),
            n,
            with_trace: true,
            tasks: pass
                .iter()
                .enumerate()
                .map(|(i, p)| TaskPlan {
                    id: format!("{benchmark}/{i}"),
                    pass: *p,
                    greedy: Some(*p * 2 > n),
                    proxy_pass: None,
                })
                .collect(),
            proxy_model: None,
            hostile: false,
            truncate_some: true,
            unparseable_some: true,
        }
    }
}

fn task_of(id: &str, i: usize, hostile: bool) -> RepairTask {
    let problem = if hostile {
        format!("Return x plus {i}. {HOSTILE}")
    } else {
        format!("Return x plus {i}.")
    };
    adhoc_task(
        id,
        &problem,
        &format!("def add_{i}(x):\n    return x - {i}\n"),
        vec![format!("assert add_{i}(1) == {}", 1 + i)],
    )
}

fn completion(text: String, tokens: usize, truncated: bool) -> Completion {
    Completion {
        text,
        prompt_tokens: 900 + tokens / 3,
        completion_tokens: tokens,
        finish_reason: if truncated {
            FinishReason::Length
        } else {
            FinishReason::Stop
        },
        logprobs: None,
    }
}

/// Write the plan's run store and `results.json` into `dir` (an `nxt eval` run directory).
pub fn write_eval_run(dir: &Path, plan: &EvalPlan) {
    std::fs::create_dir_all(dir).expect("run dir");
    let store = RunStore::open(&dir.join("run.sqlite")).expect("store");
    let mut repair = RepairConfig::default();
    repair.prompt.with_trace = plan.with_trace;
    let cfg = EvalConfig {
        benchmark: plan.benchmark.clone(),
        repair: repair.clone(),
        n: plan.n,
        temperature: 0.8,
        greedy: plan.tasks.iter().any(|t| t.greedy.is_some()),
        ks: vec![1, 5, 10, 25],
        seed: 0,
        batch: 4,
    };
    // The same record `nxt_core::eval::config_record` stores.
    store
        .check_config(
            &json!({
                "benchmark": cfg.benchmark, "model": plan.model, "proxy_model": plan.proxy_model,
                "n": cfg.n, "temperature": cfg.temperature, "greedy": cfg.greedy, "seed": cfg.seed,
                "repair": cfg.repair, "ks": cfg.ks,
            }),
            nxt_core::eval::VOLATILE_CONFIG_KEYS,
        )
        .expect("config");
    let mut tasks = Vec::new();
    let mut hostile_left = plan.hostile;
    for (i, tp) in plan.tasks.iter().enumerate() {
        let task = task_of(&tp.id, i, plan.hostile && i == 0);
        store.put_task(i, &task).expect("task");
        let trace_text = format!(
            "def add_{i}(x):  # (0) x=1;\n    return x - {i}  # (1) __return__={};\n\nassert add_{i}(1) == {}  # (2) __exception__ = AssertionError()",
            1 - i as i64,
            1 + i
        );
        let prep = TaskPrep {
            failing_test: Some(task.prompt_tests.tests[0].clone()),
            trace: Some(trace_text.clone()),
            note: None,
        };
        store.put_prep(&task.id, &prep).expect("prep");
        let prompt = build_prompt(
            &task,
            Some(&PromptTrace {
                test: task.prompt_tests.tests[0].clone(),
                text: trace_text,
            }),
            &repair.prompt,
        );
        let pid = store
            .put_prompt(&task.id, PromptKind::Sample, 0, &prompt)
            .expect("prompt");
        let mut comps = Vec::new();
        let mut verdicts = Vec::new();
        for s in 0..plan.n {
            let passes = s < tp.pass;
            let unparseable = plan.unparseable_some && !passes && s % 4 == 3;
            let op = if passes { "+" } else { "*" };
            let mut rationale = format!(
                "On the failing test x=1 the program returns {} but {} is expected: it subtracts {i} instead of adding it. Sample {s}.",
                1 - i as i64,
                1 + i
            );
            if !passes && hostile_left && !unparseable {
                rationale.push_str(HOSTILE);
                hostile_left = false;
            }
            let text = if unparseable {
                format!("I think the bug is the sign. {rationale}")
            } else {
                format!(
                    "### Rationale\n{rationale}\n\n### Fixed program\n```python\ndef add_{i}(x):\n    return x {op} {i}\n```\n"
                )
            };
            let tokens = 60 + 7 * s + 11 * i + if passes { 0 } else { 40 };
            comps.push(completion(
                text,
                tokens,
                plan.truncate_some && s % 3 == 2 && !passes,
            ));
            verdicts.push(passes);
        }
        let ids = store.put_samples(pid, 0, &comps).expect("samples");
        for ((id, c), passed) in ids.iter().zip(&comps).zip(&verdicts) {
            let parsed = parse_completion(&c.text, Some(&task.entry_point), &task.buggy_program);
            store.put_parse(*id, &parsed).expect("parse");
            let detail = if parsed.program.is_none() {
                json!({"unparseable": true})
            } else {
                json!({"passed": passed, "tests_passed": if *passed { 3 } else { 1 }, "tests_total": 3,
                       "first_failure": if *passed { serde_json::Value::Null } else { json!({"test": task.prompt_tests.tests[0], "outcome": "failed"}) },
                       "load_error": null})
            };
            store
                .put_verdict(*id, *passed && parsed.program.is_some(), &detail)
                .expect("verdict");
        }
        if let Some(g) = tp.greedy {
            let gp = store
                .put_prompt(&task.id, PromptKind::Greedy, 0, &prompt)
                .expect("greedy prompt");
            let op = if g { "+" } else { "*" };
            let text = format!("### Rationale\nGreedy.\n\n### Fixed program\n```python\ndef add_{i}(x):\n    return x {op} {i}\n```\n");
            let ids = store
                .put_samples(gp, 0, &[completion(text.clone(), 50, false)])
                .expect("greedy sample");
            let parsed = parse_completion(&text, Some(&task.entry_point), &task.buggy_program);
            store.put_parse(ids[0], &parsed).expect("parse");
            store
                .put_verdict(ids[0], g, &json!({"passed": g}))
                .expect("verdict");
        }
        if let (Some(pp), Some(_)) = (tp.proxy_pass, &plan.proxy_model) {
            for (s, sid) in ids.iter().enumerate() {
                let prompt =
                    nxt_core::prompt::build_proxy_prompt(&task, "rationale", &repair.prompt);
                let xp = store
                    .put_prompt(&task.id, PromptKind::Proxy, *sid, &prompt)
                    .expect("proxy prompt");
                let passes = s < pp;
                let op = if passes { "+" } else { "*" };
                let text = format!(
                    "### Fixed program\n```python\ndef add_{i}(x):\n    return x {op} {i}\n```\n"
                );
                let pids = store
                    .put_samples(xp, 0, &[completion(text.clone(), 30, false)])
                    .expect("proxy sample");
                let parsed = parse_completion(&text, Some(&task.entry_point), &task.buggy_program);
                store.put_parse(pids[0], &parsed).expect("parse");
                store
                    .put_verdict(pids[0], passes, &json!({"passed": passes}))
                    .expect("verdict");
            }
        }
        tasks.push(task);
    }
    let report = build_report(
        &store,
        &cfg,
        plan.model.clone(),
        plan.proxy_model.clone(),
        &tasks,
    )
    .expect("report");
    report.write(dir).expect("results.json");
}

/// The `EVAL` record of a self-training `results.json`, from the plan.
pub fn eval_record(plan: &EvalPlan, run_dir: &str) -> serde_json::Value {
    let per: serde_json::Map<String, serde_json::Value> = plan
        .tasks
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                json!({"n": plan.n, "c": t.pass, "greedy": t.greedy}),
            )
        })
        .collect();
    let counts: Vec<(usize, usize)> = plan.tasks.iter().map(|t| (plan.n, t.pass)).collect();
    let mut v = json!({
        "n": plan.n, "tasks": plan.tasks.len(), "unparseable": 0.1, "truncated": 0.05,
        "per_task": per, "run_dir": run_dir,
    });
    for k in [1, 5, 10, 25] {
        if let Some(p) = nxt_data::mean_pass_at_k(&counts, k) {
            v[format!("pass@{k}")] = json!(p);
        }
    }
    let g: Vec<bool> = plan.tasks.iter().filter_map(|t| t.greedy).collect();
    if !g.is_empty() {
        v["greedy"] = json!(g.iter().filter(|x| **x).count() as f64 / g.len() as f64);
    }
    v
}

/// Write `iter-N/train/metrics.jsonl` with `steps` lines (a falling loss).
pub fn write_metrics(path: &Path, steps: usize) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    let mut s = String::new();
    for step in 1..=steps {
        let loss = 2.0 / (1.0 + step as f64 * 0.3);
        let lr = 1e-4 * (1.0 - step as f64 / (steps as f64 + 1.0));
        s.push_str(&format!(
            "{{\"step\": {step}, \"epoch\": {}, \"loss\": {loss}, \"lr\": {lr}, \"grad_norm\": {}, \"completion_tokens\": 512, \"tokens_per_s\": {}, \"wall_s\": {}}}\n",
            step as f64 / steps as f64,
            1.5 / (step as f64).sqrt(),
            300.0 + step as f64,
            step as f64 * 1.7
        ));
    }
    std::fs::write(path, s).expect("metrics");
}

/// Dev plans of the fixture self-training run: base, iteration 1, iteration 2.
pub fn dev_plans() -> [EvalPlan; 3] {
    [
        EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3, 0, 6, 0, 2]),
        EvalPlan::new("mbpp-r", 6, &[1, 3, 0, 4, 0, 6, 2, 2]),
        EvalPlan::new("mbpp-r", 6, &[2, 3, 1, 5, 0, 5, 2, 3]),
    ]
}

/// A self-training run directory. `killed_in_iteration_2`: iteration 2 has sampled and
/// started training (a metrics file cut mid-line) but has no dev evaluation, and there is
/// no test stage.
pub fn write_selftrain_run(dir: &Path, killed_in_iteration_2: bool) {
    std::fs::create_dir_all(dir).expect("dir");
    let [base, it1, it2] = dev_plans();
    write_eval_run(&dir.join("base/dev"), &base);
    write_eval_run(&dir.join("iter-1/dev"), &it1);
    let train1 = EvalPlan::new("mbpp-r-train", 6, &[0, 2, 1, 0, 3, 0]);
    write_eval_run(&dir.join("iter-1/sample"), &train1);
    write_metrics(&dir.join("iter-1/train/metrics.jsonl"), 12);
    let train2 = EvalPlan::new("mbpp-r-train", 6, &[1, 2, 2, 0, 4, 1]);
    write_eval_run(&dir.join("iter-2/sample"), &train2);
    let iter = |n: usize, dev: Option<serde_json::Value>| {
        let mut v = json!({
            "iteration": n, "sampled_from": if n == 1 { "base".to_string() } else { format!("iter-{}", n - 1) },
            "train_side": {"pass@1": 0.1 * n as f64, "run_dir": format!("iter-{n}/sample")},
            "funnel": {"tasks_attempted": 6, "tasks_with_pass": 3 + n, "passing_samples": 6 + 4 * n, "after_dedupe": 5 + 3 * n,
                       "after_cap": 5 + 2 * n, "after_faithful": 4 + 2 * n, "training_tokens": 4000 * n},
            "kept": 4 + 2 * n, "kept_per_task": {"mbpp-r-train/1": 2, "mbpp-r-train/2": 1, "mbpp-r-train/4": 1 + n},
            "train": {"final_loss": 0.3, "mean_loss": 0.6, "steps": 12, "metrics": format!("iter-{n}/train/metrics.jsonl"),
                      "adapter": format!("iter-{n}/train"), "train_set_sha256": "ab12"},
            "train_loss": 0.3,
            "wall_s": {"sample": 10.0 * n as f64, "train": 20.0, "dev": 5.0},
        });
        if let Some(d) = dev {
            v["dev"] = d;
        }
        v
    };
    let mut results = json!({
        "kind": "selftrain", "nxt_version": "0.1.0",
        "status": if killed_in_iteration_2 { "running" } else { "done" },
        "config": {"iterations": 2, "samples_per_task": 6, "temperature": 0.7, "lora": {"r": 16}},
        "provenance": {"base_model": "tiny-model", "base_weights_sha256": "00ff", "seed": 0,
                       "data": {"train": {"path": "train.jsonl", "sha256": "aa", "tasks": 6}, "dev": {"path": "dev.jsonl", "sha256": "bb", "tasks": 8}}},
        "hard": {"tasks": 10, "hard": 6, "threshold": 0.1, "samples_per_task": 6, "pass@1": 0.05, "run_dir": "hard"},
        "base": {"dev": eval_record(&base, "base/dev")},
        "wall_s": {"total": 120.0},
    });
    if killed_in_iteration_2 {
        // Iteration 2 was training when it was killed: its metrics end in half a line.
        let p = dir.join("iter-2/train/metrics.jsonl");
        write_metrics(&p, 5);
        let mut s = std::fs::read_to_string(&p).expect("metrics");
        s.push_str("{\"step\": 6, \"loss\": 0.");
        std::fs::write(&p, s).expect("metrics");
        let mut i2 = iter(2, None);
        i2.as_object_mut().expect("object").remove("kept_per_task");
        results["iterations"] = json!([iter(1, Some(eval_record(&it1, "iter-1/dev"))), i2]);
    } else {
        write_eval_run(&dir.join("iter-2/dev"), &it2);
        write_metrics(&dir.join("iter-2/train/metrics.jsonl"), 12);
        results["iterations"] = json!([
            iter(1, Some(eval_record(&it1, "iter-1/dev"))),
            iter(2, Some(eval_record(&it2, "iter-2/dev"))),
        ]);
        results["best_iteration"] = json!(2);
        let tb = EvalPlan::new("hefix+", 6, &[0, 1, 2, 0, 6]);
        let tbn = EvalPlan {
            with_trace: false,
            ..EvalPlan::new("hefix+", 6, &[0, 0, 2, 0, 5])
        };
        let tt = EvalPlan::new("hefix+", 6, &[1, 3, 2, 1, 6]);
        let ttn = EvalPlan {
            with_trace: false,
            ..EvalPlan::new("hefix+", 6, &[1, 2, 2, 0, 6])
        };
        for (p, d) in [
            (&tb, "test/base/trace"),
            (&tbn, "test/base/no-trace"),
            (&tt, "test/best/trace"),
            (&ttn, "test/best/no-trace"),
        ] {
            write_eval_run(&dir.join(d), p);
        }
        results["test"] = json!({
            "base": {"hefix+": {"trace": eval_record(&tb, "test/base/trace"), "no_trace": eval_record(&tbn, "test/base/no-trace")}},
            "best": {"hefix+": {"trace": eval_record(&tt, "test/best/trace"), "no_trace": eval_record(&ttn, "test/best/no-trace")}},
        });
    }
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results).expect("json"),
    )
    .expect("results.json");
}

/// A temporary directory that lives as long as the value.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// `dir/name` as a path.
pub fn at(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The page's structure: one line per section with its title and how many plots, tables and
/// collapsible examples it holds.
pub fn outline(html: &str) -> Vec<String> {
    html.split("<section id=\"")
        .skip(1)
        .map(|s| {
            let id = &s[..s.find('"').expect("id end")];
            let body = &s[..s.find("</section>").expect("section end")];
            let title = body
                .split("<h2>")
                .nth(1)
                .and_then(|t| t.split("</h2>").next())
                .unwrap_or("");
            format!(
                "{id}: {title} | plots {} | tables {} | examples {} | missing {}",
                body.matches("<svg").count(),
                body.matches("<table").count(),
                body.matches("<details>").count(),
                body.matches("class=\"missing\"").count()
            )
        })
        .collect()
}
