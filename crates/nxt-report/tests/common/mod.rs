//! Fixture runs for the report tests, written through the real APIs, never as hand-written
//! result files: eval stores through `nxt_core::RunStore`, the real prompt builder and parser
//! and the real eval report (`nxt_core::report::build_report`, which writes an eval run's
//! `results.json`); self-training runs through the loop's own ledger
//! (`nxt_selftrain::ledger::Ledger`), its keep step (`nxt_selftrain::keep::select`), its
//! evaluation summaries and its `results.json` writer (`nxt_selftrain::results`), so the page
//! is tested on exactly the records the loop writes. Faithfulness verdicts are the real
//! checker's (`nxt_faithful::check_rationale`) on the trace the tracer records for the
//! fixture program (its serialized form, since these tests run without the sandbox).

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use nxt_core::eval::EvalConfig;
use nxt_core::parse::parse_completion;
use nxt_core::prompt::{build_prompt, PromptTrace};
use nxt_core::report::build_report;
use nxt_core::store::{PromptKind, RunStore, TaskPrep};
use nxt_core::task::{adhoc_task, RepairTask};
use nxt_core::EvalReport;
use nxt_core::RepairConfig;
use nxt_llm::{Completion, FinishReason};
use nxt_selftrain::keep::select;
use nxt_selftrain::ledger::{Ledger, StageRecords};
use nxt_selftrain::results::{eval_summary, write_results};
use nxt_selftrain::SelftrainConfig;
use serde_json::json;

/// The hostile string a model could write: it must never become markup.
pub const HOSTILE: &str =
    "</pre></details></script><script>alert('pwned')</script><img src=x onerror=alert(1)>";
/// A hostile task id (ids come from data files).
pub const HOSTILE_ID: &str = "<b onmouseover=\"alert(2)\">t&0</b>";

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
    /// Put the hostile string into the problem of the first task, the rationale of the first
    /// failing parseable sample and the rationale of the first passing sample, and give the
    /// first task a hostile id.
    pub hostile: bool,
    /// Every third sample of a task is cut at max_tokens.
    pub truncate_some: bool,
    /// Every fourth sample of a task is unparseable.
    pub unparseable_some: bool,
    /// Check every parsed rationale against the trace and store the verdicts (as `nxt eval`
    /// does); false: a store written before the check existed.
    pub faithfulness: bool,
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
            faithfulness: true,
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

/// The trace of fixture task `i`'s buggy program `add_i` on its failing test, as the tracer
/// records it: the call with `x=1`, the return of `1 - i`, the failing assertion.
pub fn fixture_trace(i: usize) -> nxt_trace::Trace {
    let i = i as i64;
    serde_json::from_value(json!({
        "source": format!("def add_{i}(x):\n    return x - {i}\n\nassert add_{i}(1) == {}\n", 1 + i),
        "test_first_line": 4,
        "events": [
            {"step": 0, "line": 1, "kind": "call", "vars": [{"name": "x", "value": "1"}]},
            {"step": 1, "line": 2, "kind": "return", "value": (1 - i).to_string()},
            {"step": 2, "line": 4, "kind": "exception", "exception": "AssertionError()"},
        ],
        "truncated": null,
        "verdict": {"status": "failed", "message": ""},
        "load_error": null,
        "stdout": "",
        "python": "3.11",
        "real_returns": [],
    }))
    .expect("fixture trace")
}

/// The rationale of sample `s` of fixture task `i`: every third one quotes the trace's
/// return value right, every third one quotes a wrong one, the rest quote no value.
pub fn fixture_rationale(i: usize, s: usize) -> String {
    let i = i as i64;
    match s % 3 {
        0 => format!(
            "On the failing test x=1 the function returns {} but {} is expected: it subtracts {i} instead of adding it. Sample {s}.",
            1 - i,
            1 + i
        ),
        1 => format!(
            "On the failing test the function returns {} but {} is expected: it subtracts {i} instead of adding it. Sample {s}.",
            1 - i + 7,
            1 + i
        ),
        _ => format!("The sign of the operation is wrong: it subtracts instead of adding. Sample {s}."),
    }
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

/// Store one completion of `prompt_id` with its parse and verdict (a greedy or proxy sample).
fn put_graded(
    store: &RunStore,
    task: &RepairTask,
    prompt_id: i64,
    text: &str,
    tokens: usize,
    passed: bool,
) {
    let ids = store
        .put_samples(prompt_id, 0, &[completion(text.to_string(), tokens, false)])
        .expect("sample");
    let parsed = parse_completion(text, Some(&task.entry_point), &task.buggy_program);
    store.put_parse(ids[0], &parsed).expect("parse");
    store
        .put_verdict(ids[0], passed, &json!({"passed": passed}))
        .expect("verdict");
}

/// Write the plan's run store and `results.json` into `dir` (an `nxt eval` run directory);
/// returns the eval report.
pub fn write_eval_run(dir: &Path, plan: &EvalPlan) -> EvalReport {
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
    let mut hostile_fail = plan.hostile;
    let mut hostile_pass = plan.hostile;
    for (i, tp) in plan.tasks.iter().enumerate() {
        let id = if plan.hostile && i == 0 {
            format!("{}/{HOSTILE_ID}", plan.benchmark)
        } else {
            tp.id.clone()
        };
        let task = task_of(&id, i, plan.hostile && i == 0);
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
            let mut rationale = fixture_rationale(i, s);
            if !passes && hostile_fail && !unparseable {
                rationale.push_str(HOSTILE);
                hostile_fail = false;
            }
            if passes && hostile_pass {
                rationale.push_str(HOSTILE);
                hostile_pass = false;
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
            if plan.faithfulness && parsed.is_ok() {
                let report = nxt_faithful::check_rationale(&parsed.rationale, &fixture_trace(i));
                store.put_faithfulness(*id, &report).expect("faithfulness");
            }
        }
        if let Some(g) = tp.greedy {
            let gp = store
                .put_prompt(&task.id, PromptKind::Greedy, 0, &prompt)
                .expect("greedy prompt");
            let op = if g { "+" } else { "*" };
            let text = format!("### Rationale\nGreedy.\n\n### Fixed program\n```python\ndef add_{i}(x):\n    return x {op} {i}\n```\n");
            put_graded(&store, &task, gp, &text, 50, g);
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
                put_graded(&store, &task, xp, &text, 30, passes);
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
    report
}

/// Write `path` (a trainer's `metrics.jsonl`) with `steps` lines of the trainer's own record
/// (`nxt_train::StepMetrics`, a falling loss).
pub fn write_metrics(path: &Path, steps: usize) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    let mut s = String::new();
    for step in 1..=steps {
        let m = nxt_train::StepMetrics {
            step,
            total_steps: steps,
            epoch: step as f64 / steps as f64,
            loss: 2.0 / (1.0 + step as f64 * 0.3),
            lr: 1e-4 * (1.0 - step as f64 / (steps as f64 + 1.0)),
            grad_norm: 1.5 / (step as f64).sqrt(),
            completion_tokens: 512,
            tokens: 1400,
            tokens_per_s: 300.0 + step as f64,
            wall_s: step as f64 * 1.7,
        };
        s.push_str(&serde_json::to_string(&m).expect("metrics line"));
        s.push('\n');
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

/// Dev plans without the trace in the prompt (`[eval] dev_without_trace`): base, iteration 1,
/// iteration 2 (lower than with the trace, and not in the same order per task).
pub fn dev_plans_no_trace() -> [EvalPlan; 3] {
    [
        [0, 0, 0, 2, 0, 5, 0, 1],
        [1, 2, 0, 2, 1, 5, 0, 2],
        [1, 3, 0, 4, 0, 5, 1, 2],
    ]
    .map(|pass| EvalPlan {
        with_trace: false,
        ..EvalPlan::new("mbpp-r", 6, &pass)
    })
}

/// Train-side sampling plans of iterations 1 and 2 (the hard training tasks).
pub fn train_plans(hostile: bool) -> [EvalPlan; 2] {
    let mut a = EvalPlan::new("mbpp-r-train", 6, &[0, 2, 1, 0, 3, 0]);
    let b = EvalPlan::new("mbpp-r-train", 6, &[1, 2, 2, 0, 4, 1]);
    // Task 0 fails in iteration 1; the hostile passing sample must be kept: put it on task 1.
    if hostile {
        a.hostile = true;
        a.tasks.swap(0, 1);
        for (i, t) in a.tasks.iter_mut().enumerate() {
            t.id = format!("mbpp-r-train/{i}");
        }
    }
    [a, b]
}

/// The fixture self-training run's configuration (the loop's own parser).
pub const SELFTRAIN_TOML: &str = r#"
[model]
base = "tiny-model"

[hard]
samples_per_task = 6
threshold = 0.5

[sampling]
samples_per_task = 6
temperature = 0.7

[keep]
max_per_task = 2

[loop]
iterations = 2
seed = 0
"#;

/// Proxy passes (of 6) per task of the chosen iteration's test run with trace.
pub const TEST_PROXY_PASS: [usize; 5] = [0, 2, 1, 0, 5];

/// What a fixture self-training run holds, for the tests to check the page against.
#[derive(Debug, Clone, Default)]
pub struct SelftrainFixture {
    /// Per iteration (1, 2): the kept samples `(task_id, sample index)` as the keep step chose.
    pub kept: Vec<Vec<(String, i64)>>,
    /// Per iteration: the kept samples' rationales, in the same order.
    pub kept_rationales: Vec<Vec<String>>,
    /// The hard tasks (the ones the keep step decides on).
    pub hard_tasks: BTreeSet<String>,
    /// Per iteration: the samples of the hard tasks in its sampling store.
    pub decided_samples: Vec<usize>,
}

fn finish(ledger: &mut Ledger, name: &str, v: serde_json::Value, records: &StageRecords<'_>) {
    ledger
        .finish_stage(name, &v, 2.5, records)
        .unwrap_or_else(|e| panic!("stage {name}: {e}"));
}

/// A self-training run directory, written stage by stage as the loop does: the ledger's
/// stages and keep decisions, the sampling/eval stores, `train.jsonl`, the trainer's metrics,
/// then `results.json` by the loop's own writer. `killed_in_iteration_2`: iteration 2 sampled
/// and kept its samples, then was killed while training (its metrics end in half a line):
/// no train or dev stage, no test stage. `hostile`: iteration 1's train-side samples and
/// tasks carry [`HOSTILE`] and [`HOSTILE_ID`] (and a hostile sample is kept).
pub fn write_selftrain_run(dir: &Path, killed_in_iteration_2: bool) -> SelftrainFixture {
    write_selftrain_run_opts(
        dir,
        &SelftrainOpts {
            killed_in_iteration_2,
            ..SelftrainOpts::default()
        },
    )
}

/// [`write_selftrain_run`], optionally with hostile model output in the kept samples.
pub fn write_selftrain_run_with(
    dir: &Path,
    killed_in_iteration_2: bool,
    hostile: bool,
) -> SelftrainFixture {
    write_selftrain_run_opts(
        dir,
        &SelftrainOpts {
            killed_in_iteration_2,
            hostile,
            ..SelftrainOpts::default()
        },
    )
}

/// What a fixture self-training run varies.
#[derive(Debug, Clone, Default)]
pub struct SelftrainOpts {
    /// See [`write_selftrain_run`].
    pub killed_in_iteration_2: bool,
    /// See [`write_selftrain_run_with`].
    pub hostile: bool,
    /// See [`write_selftrain_run_no_trace`].
    pub dev_no_trace: bool,
    /// See [`write_selftrain_run_no_trace`].
    pub killed_before_iteration_2_no_trace: bool,
    /// `keep = "passing-and-faithful"`: the keep step drops passing samples whose rationale
    /// contradicts the trace.
    pub keep_faithful: bool,
}

/// [`write_selftrain_run`] of a run configured with `[eval] dev_without_trace = true`: the
/// base and every iteration are also evaluated on dev without the trace
/// ([`dev_plans_no_trace`], stages `base/dev-no-trace` and `iter-i/dev-no-trace`).
/// `killed_before_iteration_2_no_trace`: the loop was killed after iteration 2's dev stage
/// with the trace, before the one without it (no test stage, status `running`).
pub fn write_selftrain_run_no_trace(
    dir: &Path,
    killed_before_iteration_2_no_trace: bool,
) -> SelftrainFixture {
    write_selftrain_run_opts(
        dir,
        &SelftrainOpts {
            dev_no_trace: true,
            killed_before_iteration_2_no_trace,
            ..SelftrainOpts::default()
        },
    )
}

/// A fixture self-training run with the settings of `opts`.
pub fn write_selftrain_run_opts(dir: &Path, opts: &SelftrainOpts) -> SelftrainFixture {
    let SelftrainOpts {
        killed_in_iteration_2,
        hostile,
        dev_no_trace,
        killed_before_iteration_2_no_trace,
        keep_faithful,
    } = opts.clone();
    std::fs::create_dir_all(dir).expect("dir");
    let mut toml = SELFTRAIN_TOML.to_string();
    if keep_faithful {
        toml = toml.replace("[keep]\n", "[keep]\nkeep = \"passing-and-faithful\"\n");
    }
    if dev_no_trace {
        toml.push_str("\n[eval]\ndev_without_trace = true\n");
    }
    let cfg = SelftrainConfig::from_toml(&toml).expect("selftrain config");
    assert_eq!(cfg.eval.dev_without_trace, dev_no_trace);
    let mut ledger = Ledger::open(&dir.join("selftrain.sqlite")).expect("ledger");
    ledger
        .set_meta("config", &cfg.identity().to_string())
        .expect("meta");
    let mut fx = SelftrainFixture::default();
    let [base, it1, it2] = dev_plans();
    let [base_nt, it1_nt, it2_nt] = dev_plans_no_trace();
    let train = train_plans(hostile);

    // Hard tasks: the base model's pass@1 on every training task (iteration 1's tasks and
    // four easy ones); iteration 1 reuses these samples, as the loop does by default.
    let mut hard_plan = train[0].clone();
    for (i, p) in [6, 5, 4, 6].into_iter().enumerate() {
        hard_plan.tasks.push(TaskPlan {
            id: format!("mbpp-r-train/{}", 6 + i),
            pass: p,
            greedy: Some(true),
            proxy_pass: None,
        });
    }
    let hr = write_eval_run(&dir.join("hard"), &hard_plan);
    let rows: Vec<(String, usize, usize, bool)> = hr
        .per_task
        .iter()
        .map(|t| {
            let hard = (t.correct as f64 / t.n as f64) < 0.5;
            (t.task_id.clone(), t.n, t.correct, hard)
        })
        .collect();
    let hard: BTreeSet<String> = rows.iter().filter(|r| r.3).map(|r| r.0.clone()).collect();
    fx.hard_tasks = hard.clone();
    finish(
        &mut ledger,
        "hard",
        json!({"tasks": rows.len(), "hard": hard.len(), "threshold": 0.5,
               "samples_per_task": 6, "pass@1": hr.sampled.pass_at_k.get(&1), "run_dir": "hard"}),
        &StageRecords {
            hard: &rows,
            ..StageRecords::default()
        },
    );
    let br = write_eval_run(&dir.join("base/dev"), &base);
    finish(
        &mut ledger,
        "base/dev",
        eval_summary(&br, "base/dev"),
        &StageRecords::default(),
    );
    // The stages the loop runs after each dev evaluation when the config asks for them.
    let no_trace_stage = |ledger: &mut Ledger, name: &str, plan: &EvalPlan| {
        if dev_no_trace {
            let r = write_eval_run(&dir.join(name), plan);
            finish(
                ledger,
                name,
                eval_summary(&r, name),
                &StageRecords::default(),
            );
        }
    };
    no_trace_stage(&mut ledger, "base/dev-no-trace", &base_nt);
    for (i, ((tp, dp), np)) in train
        .iter()
        .zip([&it1, &it2])
        .zip([&it1_nt, &it2_nt])
        .enumerate()
    {
        let i = i + 1;
        let (sdir, sr) = if i == 1 {
            ("hard".to_string(), hr.clone())
        } else {
            let d = format!("iter-{i}/sample");
            let r = write_eval_run(&dir.join(&d), tp);
            (d, r)
        };
        // Train-side pass@1 over the hard tasks.
        let on_hard: Vec<f64> = sr
            .per_task
            .iter()
            .filter(|t| hard.contains(&t.task_id))
            .map(|t| t.correct as f64 / t.n as f64)
            .collect();
        let p1 = on_hard.iter().sum::<f64>() / on_hard.len() as f64;
        finish(
            &mut ledger,
            &format!("iter-{i}/sample"),
            json!({"run_dir": sdir, "pass@1": p1,
                   "sampled_from": if i == 1 { "base".to_string() } else { format!("iter-{}", i - 1) }}),
            &StageRecords::default(),
        );
        // The keep step over the stored samples, as the loop runs it.
        let store = RunStore::open(&dir.join(&sdir).join("run.sqlite")).expect("store");
        let records = store.sample_records(PromptKind::Sample).expect("records");
        fx.decided_samples
            .push(records.iter().filter(|r| hard.contains(&r.task_id)).count());
        let normalised: HashMap<i64, String> = records
            .iter()
            .filter_map(|r| Some((r.sample_id, r.program.clone()?)))
            .collect();
        let sel = select(&records, &hard, &normalised, &cfg.keep);
        let mut lines = String::new();
        for k in &sel.kept {
            lines.push_str(
                &json!({"id": format!("{}#{}", k.task_id, k.sample_idx), "task_id": k.task_id,
                        "prompt": "P", "completion": k.completion})
                .to_string(),
            );
            lines.push('\n');
        }
        let set = format!("iter-{i}/train.jsonl");
        std::fs::create_dir_all(dir.join(format!("iter-{i}"))).expect("iteration dir");
        std::fs::write(dir.join(&set), &lines).expect("train.jsonl");
        let sha = nxt_data::registry::sha256_bytes(lines.as_bytes());
        fx.kept.push(
            sel.kept
                .iter()
                .map(|k| (k.task_id.clone(), k.sample_idx))
                .collect(),
        );
        fx.kept_rationales.push(
            sel.kept
                .iter()
                .map(|k| {
                    records
                        .iter()
                        .find(|r| r.task_id == k.task_id && r.idx == k.sample_idx)
                        .and_then(|r| r.rationale.clone())
                        .unwrap_or_default()
                })
                .collect(),
        );
        finish(
            &mut ledger,
            &format!("iter-{i}/keep"),
            json!({"kept": sel.kept.len(), "funnel": sel.funnel, "kept_per_task": sel.kept_per_task,
                   "train_set": set, "train_set_sha256": sha}),
            &StageRecords {
                decisions: Some((i, &sel.decisions)),
                training_set: Some((i, &set, &sha, sel.kept.len())),
                ..StageRecords::default()
            },
        );
        let metrics = dir.join(format!("iter-{i}/train/metrics.jsonl"));
        if killed_in_iteration_2 && i == 2 {
            write_metrics(&metrics, 5);
            let mut s = std::fs::read_to_string(&metrics).expect("metrics");
            s.push_str("{\"step\": 6, \"loss\": 0.");
            std::fs::write(&metrics, s).expect("metrics");
            break;
        }
        write_metrics(&metrics, 12);
        finish(
            &mut ledger,
            &format!("iter-{i}/train"),
            json!({"final_loss": 0.3, "mean_loss": 0.6, "steps": 12,
                   "metrics": format!("iter-{i}/train/metrics.jsonl"), "train_set_sha256": sha,
                   "base_weights_sha256": "00ff", "adapter": format!("iter-{i}/train/adapter")}),
            &StageRecords::default(),
        );
        let ddir = format!("iter-{i}/dev");
        let dr = write_eval_run(&dir.join(&ddir), dp);
        finish(
            &mut ledger,
            &ddir,
            eval_summary(&dr, &ddir),
            &StageRecords::default(),
        );
        if killed_before_iteration_2_no_trace && i == 2 {
            break;
        }
        no_trace_stage(&mut ledger, &format!("iter-{i}/dev-no-trace"), np);
    }
    let status = if killed_in_iteration_2 || killed_before_iteration_2_no_trace {
        "running"
    } else {
        ledger.set_meta("best_iteration", "2").expect("meta");
        let tb = EvalPlan::new("hefix+", 6, &[0, 1, 2, 0, 6]);
        let tbn = EvalPlan {
            with_trace: false,
            ..EvalPlan::new("hefix+", 6, &[0, 0, 2, 0, 5])
        };
        // The chosen iteration's test run with trace has a proxy rationale evaluation.
        let mut tt = EvalPlan::new("hefix+", 6, &[1, 3, 2, 1, 6]);
        tt.proxy_model = Some("proxy-tiny".into());
        for (t, p) in tt.tasks.iter_mut().zip(TEST_PROXY_PASS) {
            t.proxy_pass = Some(p);
        }
        let ttn = EvalPlan {
            with_trace: false,
            ..EvalPlan::new("hefix+", 6, &[1, 2, 2, 0, 6])
        };
        for (p, d) in [
            (&tb, "test/base/hefix+/trace"),
            (&tbn, "test/base/hefix+/no-trace"),
            (&tt, "test/iter-2/hefix+/trace"),
            (&ttn, "test/iter-2/hefix+/no-trace"),
        ] {
            let r = write_eval_run(&dir.join(d), p);
            finish(
                &mut ledger,
                d,
                eval_summary(&r, d),
                &StageRecords::default(),
            );
        }
        "done"
    };
    write_results(dir, &ledger, &cfg, status).expect("results.json");
    fx
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
