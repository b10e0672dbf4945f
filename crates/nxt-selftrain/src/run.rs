//! The loop itself (NExT Algorithm 1), as resumable stages.
//!
//! Stages, in order, each skipped when the ledger says it is finished:
//! `toy` and `warm-start` (the CPU demo only), `hard` (32 samples per training task from the
//! base; keep tasks with pass@1 below the threshold), `base/dev`, then per iteration `i`:
//! `iter-i/sample` (samples from P_{i-1} on the hard tasks; iteration 1 reuses the hard
//! stage's), `iter-i/keep`, `iter-i/train` (the BASE model fine-tuned on this iteration's
//! kept set only), `iter-i/dev`; early stop; then `test/<model>/<set>/<trace|no-trace>` for the
//! base and the best iteration. Sampling stages are `nxt eval` runs with their own stores, so
//! a kill inside one loses at most the requests in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nxt_core::eval::{run_eval, EvalConfig, EvalContext};
use nxt_core::prompt::PromptOptions;
use nxt_core::repair::RepairConfig;
use nxt_core::store::PromptKind;
use nxt_core::{EvalReport, Progress, RunStore};
use nxt_data::RepairTask;
use nxt_llm::{Generator, Prompt};
use nxt_sandbox::Pool;
use serde_json::{json, Value};

use crate::config::SelftrainConfig;
use crate::data::{check_no_leak, load_source};
use crate::error::SelftrainError;
use crate::keep::{select, Selection};
use crate::ledger::{Ledger, StageRecords};
use crate::models::{ModelSpec, Models};
use crate::results::{eval_summary, write_results};
use crate::trainer::{run_training, TrainJob};

/// One `--shard i/N`: this process samples and grades every N-th task of the next sampling
/// stage, into a store of its own, and stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard (0-based).
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = SelftrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SelftrainError::Shard(format!("`{s}`: expected i/N with 0 <= i < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The store directory name of this shard.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

/// How far a run goes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Sample only this shard of the next sampling stage, then stop.
    pub shard: Option<Shard>,
    /// Stop when the next stage is a sampling stage (hard or an iteration's) whose samples are
    /// not all stored: the coordinator of a sharded run, between shard arrays.
    pub stop_before_sampling: bool,
}

/// Something the loop reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A stage starts (or resumes).
    Stage {
        /// Stage name.
        name: String,
        /// What it does.
        detail: String,
    },
    /// Progress inside a stage.
    Progress(Progress),
    /// A stage finished, with a one-line summary.
    Done {
        /// Stage name.
        name: String,
        /// Summary.
        summary: String,
    },
    /// A remark (skipped stage, early stop).
    Note(String),
    /// `results.json` and `report.md` were rewritten (at each iteration's end and at the end
    /// of the run): a caller drawing its own report from them can redraw it now.
    ResultsWritten,
}

/// How a call to [`run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Every stage is finished; `results.json` is final.
    Finished(Value),
    /// Stopped before a sampling stage (`--stop-before-sampling`) or after a shard.
    Paused(String),
}

/// The data sources of a run (from `[data]`, or the toy's files).
struct Sources {
    train: String,
    dev: String,
    test: Vec<String>,
}

/// The run directory's layout and the loop's state.
struct Loop<'a> {
    cfg: &'a SelftrainConfig,
    run_dir: PathBuf,
    pool: &'a Pool,
    ledger: Ledger,
    events: &'a mut dyn FnMut(&Event),
    opts: RunOptions,
    started: Instant,
}

/// Runs (or resumes) a self-training run in `run_dir`.
pub fn run(
    cfg: &SelftrainConfig,
    run_dir: &Path,
    pool: &Pool,
    opts: &RunOptions,
    events: &mut dyn FnMut(&Event),
) -> Result<RunEnd, SelftrainError> {
    std::fs::create_dir_all(run_dir).map_err(|e| SelftrainError::io(run_dir, e))?;
    let run_dir = run_dir
        .canonicalize()
        .map_err(|e| SelftrainError::io(run_dir, e))?;
    let ledger = Ledger::open(&run_dir.join("selftrain.sqlite"))?;
    match ledger.meta("config")? {
        Some(stored) => {
            let stored: Value =
                serde_json::from_str(&stored).map_err(|e| SelftrainError::Ledger {
                    path: ledger.path().to_string(),
                    message: format!("stored config: {e}"),
                })?;
            cfg.check_resume(&stored)?;
        }
        None => {
            if opts.shard.is_some() {
                return Err(SelftrainError::Shard(format!(
                    "{} holds no run yet: start it with `nxt selftrain --stop-before-sampling` (no --shard) first",
                    run_dir.display()
                )));
            }
            ledger.set_meta("config", &cfg.identity().to_string())?;
            ledger.set_meta("nxt_version", env!("CARGO_PKG_VERSION"))?;
        }
    }
    let toml = toml::to_string(cfg).unwrap_or_default();
    if opts.shard.is_none() {
        let p = run_dir.join("config.toml");
        std::fs::write(&p, toml).map_err(|e| SelftrainError::io(&p, e))?;
    }
    let mut lp = Loop {
        cfg,
        run_dir,
        pool,
        ledger,
        events,
        opts: opts.clone(),
        started: Instant::now(),
    };
    lp.run()
}

/// Per-request seeds of a sampling stage: distinct per stage, fixed per run.
fn stage_seed(base: u64, stage: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ base;
    for b in stage.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The repair settings every sampling and evaluation stage of a run uses (also what training
/// prompts must be built with, e.g. a warm start's).
pub fn repair_config(cfg: &SelftrainConfig, with_trace: bool) -> RepairConfig {
    let p = &cfg.prompt;
    let mut rc = RepairConfig {
        prompt: PromptOptions {
            layout: p.layout,
            few_shot: p.few_shot,
            with_trace,
        },
        ..RepairConfig::default()
    };
    rc.render.total_budget = p.trace_budget;
    rc.trace_format = p.trace_format;
    rc.sampling.max_tokens = p.max_tokens;
    rc.sampling.top_k = (cfg.sampling.top_k > 0).then_some(cfg.sampling.top_k);
    rc.sampling.top_p = cfg.sampling.top_p;
    rc
}

impl Loop<'_> {
    fn emit(&mut self, e: Event) {
        (self.events)(&e);
    }

    fn repair_config(&self, with_trace: bool) -> RepairConfig {
        repair_config(self.cfg, with_trace)
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.run_dir)
            .unwrap_or(p)
            .display()
            .to_string()
    }

    fn finish(
        &mut self,
        name: &str,
        result: &Value,
        t0: Instant,
        records: &StageRecords<'_>,
        summary: String,
    ) -> Result<(), SelftrainError> {
        self.ledger
            .finish_stage(name, result, t0.elapsed().as_secs_f64(), records)?;
        self.emit(Event::Done {
            name: name.into(),
            summary,
        });
        Ok(())
    }

    fn run(&mut self) -> Result<RunEnd, SelftrainError> {
        let data_dir = nxt_data::registry::resolve_data_dir(self.cfg.data.data_dir.as_deref()).0;
        // 0. The toy benchmark and its warm start (CPU demo).
        let (base, sources) = match &self.cfg.toy {
            Some(_) => self.toy_stages()?,
            None => (
                self.cfg.model.base.clone(),
                Sources {
                    train: self.cfg.data.train.clone(),
                    dev: self.cfg.data.dev.clone(),
                    test: self.cfg.data.test.clone(),
                },
            ),
        };
        let d = &self.cfg.data;
        let train = load_source(&sources.train, &data_dir, self.pool, d.train_limit)?;
        let dev = load_source(&sources.dev, &data_dir, self.pool, d.dev_limit)?;
        let mut tests: Vec<(String, Vec<RepairTask>)> = Vec::new();
        for s in &sources.test {
            tests.push((
                s.clone(),
                load_source(s, &data_dir, self.pool, d.test_limit)?,
            ));
        }
        let mut held: Vec<(&str, &[RepairTask])> = vec![("dev", &dev)];
        for (n, t) in &tests {
            held.push((n.as_str(), t.as_slice()));
        }
        check_no_leak(&train, &held)?;
        let models = Models::new(self.cfg, &base, &self.run_dir);

        // 1. Hard problems, once, with the base model.
        let hard = self.hard_stage(&models, &train)?;
        let Some(hard) = hard else {
            return Ok(RunEnd::Paused("waiting for the hard stage's shards".into()));
        };
        let hard_tasks: Vec<RepairTask> = train
            .iter()
            .filter(|t| hard.contains(&t.id))
            .cloned()
            .collect();
        if self.opts.shard.is_none() {
            self.eval_stage("base/dev", &models, &ModelSpec::Base, &dev, true, false)?;
            if self.cfg.eval.dev_without_trace {
                let stage = "base/dev-no-trace";
                self.eval_stage(stage, &models, &ModelSpec::Base, &dev, false, false)?;
            }
        }

        // 2. Iterations.
        let mut best: (usize, f64) = (0, self.dev_score("base/dev")?);
        let mut falls = 0;
        let mut stopped_early = false;
        let mut iterations_run = 0;
        for i in 1..=self.cfg.run.iterations {
            if hard_tasks.is_empty() {
                self.emit(Event::Note(
                    "no hard training task: nothing to self-train on".into(),
                ));
                break;
            }
            let sampled_from = if i == 1 {
                ModelSpec::Base
            } else {
                self.model_of(i - 1)?
            };
            let Some(sample_dir) = self.sample_stage(i, &models, &sampled_from, &hard_tasks)?
            else {
                return Ok(RunEnd::Paused(format!(
                    "waiting for iteration {i}'s sampling shards"
                )));
            };
            // A shard goes past an iteration only when the coordinator has finished it (the
            // stages below are then all skipped).
            if self.opts.shard.is_some() && self.ledger.stage(&format!("iter-{i}/dev"))?.is_none() {
                return Ok(RunEnd::Paused(format!(
                    "iteration {i}: sampled; the coordinator trains and evaluates next"
                )));
            }
            let kept = self.keep_stage(i, &sample_dir, &hard_tasks)?;
            if kept == 0 {
                self.emit(Event::Note(format!(
                    "iteration {i}: no passing sample to train on; stopping"
                )));
                break;
            }
            self.train_stage(i, &models)?;
            let spec = self.model_of(i)?;
            self.eval_stage(&format!("iter-{i}/dev"), &models, &spec, &dev, true, false)?;
            if self.cfg.eval.dev_without_trace {
                let stage = format!("iter-{i}/dev-no-trace");
                self.eval_stage(&stage, &models, &spec, &dev, false, false)?;
            }
            iterations_run = i;
            let score = self.dev_score(&format!("iter-{i}/dev"))?;
            write_results(&self.run_dir, &self.ledger, self.cfg, "running")?;
            self.emit(Event::ResultsWritten);
            if score > best.1 {
                best = (i, score);
                falls = 0;
            } else {
                falls += 1;
                if falls >= self.cfg.run.patience && i < self.cfg.run.iterations {
                    self.emit(Event::Note(format!(
                        "dev {} did not improve on iteration {} for {falls} iteration(s): stopping early",
                        self.cfg.eval.select_by, best.0
                    )));
                    stopped_early = true;
                    break;
                }
            }
        }
        if self.opts.shard.is_some() {
            return Ok(RunEnd::Paused("no sampling stage left to shard".into()));
        }
        self.ledger
            .set_meta("best_iteration", &best.0.to_string())?;
        self.ledger
            .set_meta("iterations_run", &iterations_run.to_string())?;

        // 3. Test sets: the base and the chosen iteration, with and without trace.
        let mut chosen = vec![(String::from("base"), ModelSpec::Base)];
        if best.0 > 0 {
            chosen.push((format!("iter-{}", best.0), self.model_of(best.0)?));
        }
        for (name, tasks) in &tests {
            for (label, spec) in &chosen {
                let mut variants = vec![true];
                if self.cfg.eval.without_trace {
                    variants.push(false);
                }
                for trace in variants {
                    let stage = format!(
                        "test/{label}/{}/{}",
                        set_dir_name(name),
                        if trace { "trace" } else { "no-trace" }
                    );
                    self.eval_stage(&stage, &models, spec, tasks, trace, true)?;
                }
            }
        }
        let status = if stopped_early {
            "stopped_early"
        } else {
            "done"
        };
        self.ledger.set_meta("status", status)?;
        self.ledger.set_meta(
            "wall_s_last_session",
            &format!("{:.1}", self.started.elapsed().as_secs_f64()),
        )?;
        let results = write_results(&self.run_dir, &self.ledger, self.cfg, status)?;
        self.emit(Event::ResultsWritten);
        Ok(RunEnd::Finished(results))
    }

    /// The toy benchmark and the warm start; returns the base model and the data sources.
    fn toy_stages(&mut self) -> Result<(String, Sources), SelftrainError> {
        let toy = self
            .cfg
            .toy
            .clone()
            .ok_or_else(|| SelftrainError::Toy("no [toy]".into()))?;
        let dir = self.run_dir.join("toy");
        let name = "toy";
        let arts = match self.ledger.stage(name)? {
            Some((v, _)) => v,
            None => {
                if self.opts.shard.is_some() {
                    return Err(SelftrainError::Shard(
                        "the toy benchmark is not prepared yet: run without --shard first".into(),
                    ));
                }
                self.emit(Event::Stage {
                    name: name.into(),
                    detail: "generating the toy repair benchmark and the tiny model".into(),
                });
                let t0 = Instant::now();
                let v = crate::toy_stage::prepare(&dir, &toy.options, self.pool)?;
                let summary = format!(
                    "{} train / {} dev / {} test tasks, {} warm-start repairs",
                    v["counts"]["train"],
                    v["counts"]["dev"],
                    v["counts"]["test"],
                    v["counts"]["warm_start"]
                );
                self.finish(name, &v, t0, &StageRecords::default(), summary)?;
                v
            }
        };
        let s = |k: &str| -> Result<String, SelftrainError> {
            arts[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| SelftrainError::Toy(format!("toy stage result lacks `{k}`")))
        };
        let (model, train, dev, test, warm) = (
            s("model")?,
            s("train")?,
            s("dev")?,
            s("test")?,
            s("warm_start")?,
        );
        let name = "warm-start";
        let warm_dir = self.run_dir.join("warm-start");
        let base = match self.ledger.stage(name)? {
            Some((v, _)) => v["model"].as_str().unwrap_or_default().to_string(),
            None => {
                if self.opts.shard.is_some() {
                    return Err(SelftrainError::Shard(
                        "the warm start has not run yet: run without --shard first".into(),
                    ));
                }
                self.emit(Event::Stage {
                    name: name.into(),
                    detail: "full fine-tuning of the random tiny model on the hand-made repairs"
                        .into(),
                });
                let t0 = Instant::now();
                let ws = &toy.warm_start;
                let job = TrainJob {
                    base: model.clone(),
                    data: PathBuf::from(&warm),
                    out: warm_dir.clone(),
                    full: true,
                    epochs: ws.epochs,
                    lr: ws.lr,
                    batch_size: ws.batch_size,
                    grad_accum: 1,
                    warmup_steps: ws.warmup_steps,
                    schedule: "constant".into(),
                    seed: self.cfg.run.seed,
                };
                let events = &mut *self.events;
                let r = run_training(&self.cfg.train, &job, "warm start", &mut |p| {
                    events(&Event::Progress(p.clone()))
                })?;
                let model_dir = r.model_dir.clone().ok_or_else(|| {
                    SelftrainError::Toy("the warm start wrote no model directory".into())
                })?;
                let v = json!({
                    "model": model_dir.display().to_string(),
                    "train": r.summary,
                });
                let summary = format!("final loss {:.4} after {} steps", r.final_loss, r.steps);
                self.finish(
                    name,
                    &v,
                    t0,
                    &StageRecords {
                        metrics: Some((0, &r.metrics)),
                        ..StageRecords::default()
                    },
                    summary,
                )?;
                model_dir.display().to_string()
            }
        };
        Ok((
            base,
            Sources {
                train,
                dev,
                test: vec![test],
            },
        ))
    }

    /// Which model iteration `i` produced.
    fn model_of(&self, i: usize) -> Result<ModelSpec, SelftrainError> {
        let (v, _) = self
            .ledger
            .stage(&format!("iter-{i}/train"))?
            .ok_or_else(|| SelftrainError::Ledger {
                path: self.ledger.path().into(),
                message: format!("iteration {i} has no trained model"),
            })?;
        let name = format!("iter-{i}");
        if let Some(a) = v["adapter"].as_str() {
            return Ok(ModelSpec::Adapter {
                name,
                dir: self.run_dir.join(a),
            });
        }
        if let Some(m) = v["model"].as_str() {
            return Ok(ModelSpec::Full {
                name,
                dir: self.run_dir.join(m),
            });
        }
        Err(SelftrainError::Ledger {
            path: self.ledger.path().into(),
            message: format!("iteration {i}'s training result names no adapter or model"),
        })
    }

    fn dev_score(&self, stage: &str) -> Result<f64, SelftrainError> {
        let v = self
            .ledger
            .stage(stage)?
            .map(|(v, _)| v)
            .unwrap_or(Value::Null);
        let key = if self.cfg.eval.select_by == "greedy" {
            "greedy"
        } else {
            "pass@1"
        };
        Ok(v[key].as_f64().unwrap_or(0.0))
    }

    /// Runs one `nxt eval` over `tasks` into `<run>/<stage>/run.sqlite`.
    #[allow(clippy::too_many_arguments)]
    fn sample_into(
        &mut self,
        stage: &str,
        store_dir: &Path,
        generator: &dyn Generator,
        tasks: &[RepairTask],
        n: usize,
        temperature: f32,
        greedy: bool,
        with_trace: bool,
        ks: Vec<usize>,
        proxy: Option<&dyn Generator>,
    ) -> Result<EvalReport, SelftrainError> {
        std::fs::create_dir_all(store_dir).map_err(|e| SelftrainError::io(store_dir, e))?;
        let store = RunStore::open(&store_dir.join("run.sqlite"))?;
        // Shards of a stage share its configuration (their stores are merged into one).
        let stage = stage.split("/shard-").next().unwrap_or(stage);
        let cfg = EvalConfig {
            benchmark: stage.to_string(),
            repair: self.repair_config(with_trace),
            n,
            temperature,
            greedy,
            ks,
            // The stage name salts the seed, so the shards of a stage draw what one
            // process would, and stages differ from each other.
            seed: stage_seed(
                self.cfg.run.seed,
                stage.split("/shard-").next().unwrap_or(stage),
            ),
            batch: self.cfg.sampling.batch,
        };
        let ctx = EvalContext {
            pool: self.pool,
            generator,
            proxy,
        };
        let events = &mut *self.events;
        Ok(run_eval(&ctx, tasks, &cfg, &store, &mut |p| {
            events(&Event::Progress(p.clone()))
        })?)
    }

    /// The tasks of this process: all, or the shard's share.
    fn shard_tasks(&self, tasks: &[RepairTask]) -> Vec<RepairTask> {
        match self.opts.shard {
            None => tasks.to_vec(),
            Some(s) => tasks
                .iter()
                .enumerate()
                .filter(|(i, _)| i % s.count == s.index)
                .map(|(_, t)| t.clone())
                .collect(),
        }
    }

    /// A sampling stage's store is complete when every task has its `n` graded samples.
    fn store_complete(dir: &Path, tasks: &[RepairTask], n: usize) -> Result<bool, SelftrainError> {
        let p = dir.join("run.sqlite");
        if !p.exists() {
            return Ok(false);
        }
        let store = RunStore::open(&p)?;
        let mut per: HashMap<String, (usize, bool)> = HashMap::new();
        for o in store.outcomes(PromptKind::Sample)? {
            let e = per.entry(o.task_id).or_insert((0, true));
            e.0 += 1;
            e.1 &= o.passed.is_some();
        }
        Ok(tasks
            .iter()
            .all(|t| per.get(&t.id).is_some_and(|&(c, graded)| c >= n && graded)))
    }

    /// Shared logic of the two sampling stages. Returns the store directory, or None when
    /// this process must stop (a shard finished its share, or the coordinator waits).
    fn sampling(
        &mut self,
        stage: &str,
        models: &Models,
        spec: &ModelSpec,
        tasks: &[RepairTask],
        n: usize,
    ) -> Result<Option<PathBuf>, SelftrainError> {
        let dir = self.run_dir.join(stage);
        if let Some(s) = self.opts.shard {
            let my = self.shard_tasks(tasks);
            let sdir = dir.join(s.dir_name());
            self.emit(Event::Stage {
                name: format!("{stage} ({})", s.dir_name()),
                detail: format!("{} of {} tasks x {n} samples", my.len(), tasks.len()),
            });
            let generator = models.open(spec)?;
            let r = self.sample_into(
                &format!("{stage}/{}", s.dir_name()),
                &sdir,
                generator.as_ref(),
                &my,
                n,
                self.cfg.sampling.temperature,
                false,
                self.cfg.prompt.with_trace,
                vec![1],
                None,
            )?;
            let summary = format!(
                "pass@1 {:.3} on {} tasks",
                r.sampled.pass_at_k.get(&1).copied().unwrap_or(0.0),
                my.len()
            );
            self.emit(Event::Done {
                name: format!("{stage} ({})", s.dir_name()),
                summary,
            });
            return Ok(None);
        }
        if self.opts.stop_before_sampling && !Self::store_complete(&dir, tasks, n)? {
            self.emit(Event::Note(format!(
                "{stage}: samples missing; run the shards (`--shard i/N`), then `nxt selftrain merge`"
            )));
            return Ok(None);
        }
        Ok(Some(dir))
    }

    /// Stage `hard`: returns the hard task ids, or None when paused.
    fn hard_stage(
        &mut self,
        models: &Models,
        train: &[RepairTask],
    ) -> Result<Option<BTreeSet<String>>, SelftrainError> {
        let name = "hard";
        if self.ledger.stage(name)?.is_some() {
            let rows = self.ledger.hard_tasks()?;
            return Ok(Some(
                rows.into_iter().filter(|r| r.3).map(|r| r.0).collect(),
            ));
        }
        let n = self.cfg.hard.samples_per_task;
        let Some(dir) = self.sampling(name, models, &ModelSpec::Base, train, n)? else {
            return Ok(None);
        };
        self.emit(Event::Stage {
            name: name.into(),
            detail: format!(
                "{} training tasks x {n} samples from the base model; hard = pass@1 < {}",
                train.len(),
                self.cfg.hard.threshold
            ),
        });
        let t0 = Instant::now();
        let generator = models.open(&ModelSpec::Base)?;
        let report = self.sample_into(
            name,
            &dir,
            generator.as_ref(),
            train,
            n,
            self.cfg.sampling.temperature,
            false,
            self.cfg.prompt.with_trace,
            vec![1],
            None,
        )?;
        let mut rows = Vec::new();
        for t in &report.per_task {
            let rate = if t.n == 0 {
                0.0
            } else {
                t.correct as f64 / t.n as f64
            };
            rows.push((
                t.task_id.clone(),
                t.n,
                t.correct,
                rate < self.cfg.hard.threshold,
            ));
        }
        let hard: BTreeSet<String> = rows.iter().filter(|r| r.3).map(|r| r.0.clone()).collect();
        let p1 = report.sampled.pass_at_k.get(&1).copied().unwrap_or(0.0);
        let v = json!({
            "tasks": train.len(),
            "hard": hard.len(),
            "threshold": self.cfg.hard.threshold,
            "samples_per_task": n,
            "pass@1": p1,
            "run_dir": name,
        });
        let summary = format!(
            "{} of {} training tasks are hard (base pass@1 {:.3})",
            hard.len(),
            train.len(),
            p1
        );
        self.finish(
            name,
            &v,
            t0,
            &StageRecords {
                hard: &rows,
                ..StageRecords::default()
            },
            summary,
        )?;
        Ok(Some(hard))
    }

    /// Stage `iter-i/sample`; returns the store directory, or None when paused.
    fn sample_stage(
        &mut self,
        i: usize,
        models: &Models,
        spec: &ModelSpec,
        hard: &[RepairTask],
    ) -> Result<Option<PathBuf>, SelftrainError> {
        let name = format!("iter-{i}/sample");
        if let Some((v, _)) = self.ledger.stage(&name)? {
            let dir = v["run_dir"].as_str().unwrap_or(&name).to_string();
            return Ok(Some(self.run_dir.join(dir)));
        }
        let reuse = i == 1
            && self.cfg.sampling.reuse_hard_samples
            && self.cfg.sampling.samples_per_task == self.cfg.hard.samples_per_task;
        let t0 = Instant::now();
        let (dir, p1) = if reuse {
            if self.opts.shard.is_some() {
                return Ok(Some(self.run_dir.join("hard")));
            }
            self.emit(Event::Stage {
                name: name.clone(),
                detail: "iteration 1 samples from the base model: the hard stage's samples".into(),
            });
            let store = RunStore::open(&self.run_dir.join("hard").join("run.sqlite"))?;
            let recs = store.sample_records(PromptKind::Sample)?;
            let ids: BTreeSet<&str> = hard.iter().map(|t| t.id.as_str()).collect();
            let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for r in recs.iter().filter(|r| ids.contains(r.task_id.as_str())) {
                let e = per.entry(r.task_id.as_str()).or_default();
                e.0 += 1;
                e.1 += (r.passed == Some(true)) as usize;
            }
            let counts: Vec<(usize, usize)> = per.values().copied().collect();
            (
                self.run_dir.join("hard"),
                nxt_data::mean_pass_at_k(&counts, 1).unwrap_or(0.0),
            )
        } else {
            let n = self.cfg.sampling.samples_per_task;
            let Some(dir) = self.sampling(&name, models, spec, hard, n)? else {
                return Ok(None);
            };
            self.emit(Event::Stage {
                name: name.clone(),
                detail: format!("{} hard tasks x {n} samples from P{}", hard.len(), i - 1),
            });
            let generator = models.open(spec)?;
            let r = self.sample_into(
                &name,
                &dir,
                generator.as_ref(),
                hard,
                n,
                self.cfg.sampling.temperature,
                false,
                self.cfg.prompt.with_trace,
                vec![1],
                None,
            )?;
            (dir, r.sampled.pass_at_k.get(&1).copied().unwrap_or(0.0))
        };
        let v = json!({
            "run_dir": self.rel(&dir),
            "pass@1": p1,
            "sampled_from": if i == 1 { "base".to_string() } else { format!("iter-{}", i - 1) },
        });
        let summary = format!("train-side pass@1 {p1:.3} on {} hard tasks", hard.len());
        self.finish(&name, &v, t0, &StageRecords::default(), summary)?;
        Ok(Some(dir))
    }

    /// Stage `iter-i/keep`: writes `iter-i/train.jsonl`; returns the number kept.
    fn keep_stage(
        &mut self,
        i: usize,
        sample_dir: &Path,
        hard: &[RepairTask],
    ) -> Result<usize, SelftrainError> {
        let name = format!("iter-{i}/keep");
        if let Some((v, _)) = self.ledger.stage(&name)? {
            return Ok(v["kept"].as_u64().unwrap_or(0) as usize);
        }
        self.emit(Event::Stage {
            name: name.clone(),
            detail: format!(
                "passing samples, deduplicated, at most {} per task",
                self.cfg.keep.max_per_task
            ),
        });
        let t0 = Instant::now();
        let store = RunStore::open(&sample_dir.join("run.sqlite"))?;
        let records = store.sample_records(PromptKind::Sample)?;
        let ids: BTreeSet<String> = hard.iter().map(|t| t.id.clone()).collect();
        // Normal forms of the passing programs (parsed in the sandbox, never run).
        let passing: Vec<&nxt_core::store::SampleRecord> = records
            .iter()
            .filter(|r| ids.contains(&r.task_id) && r.passed == Some(true) && r.program.is_some())
            .collect();
        let programs: Vec<&str> = passing
            .iter()
            .map(|r| r.program.as_deref().unwrap_or_default())
            .collect();
        let norms = nxt_data::mbppr::normalise_all(self.pool, &programs)?;
        let normalised: HashMap<i64, String> = passing
            .iter()
            .zip(norms)
            .map(|(r, (ok, _, norm))| {
                (
                    r.sample_id,
                    if ok {
                        norm
                    } else {
                        r.program.clone().unwrap_or_default()
                    },
                )
            })
            .collect();
        let sel: Selection = select(&records, &ids, &normalised, &self.cfg.keep);
        // Training examples: the exact prompt text the model saw, and its own completion.
        let by_id: BTreeMap<&str, &RepairTask> = hard.iter().map(|t| (t.id.as_str(), t)).collect();
        let mut prompts: HashMap<String, String> = HashMap::new();
        let mut lines = String::new();
        for k in &sel.kept {
            if !prompts.contains_key(&k.task_id) {
                let (_, prompt) = store
                    .prompt(&k.task_id, PromptKind::Sample, 0)?
                    .ok_or_else(|| SelftrainError::Ledger {
                        path: store.path().to_string(),
                        message: format!("no prompt stored for {}", k.task_id),
                    })?;
                prompts.insert(k.task_id.clone(), self.training_prompt(&prompt)?);
            }
            let line = json!({
                "id": format!("{}#{}", k.task_id, k.sample_idx),
                "task_id": k.task_id,
                "prompt": prompts[&k.task_id],
                "completion": k.completion,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
            let _ = by_id.get(k.task_id.as_str());
        }
        let dir = self.run_dir.join(format!("iter-{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| SelftrainError::io(&dir, e))?;
        let path = dir.join("train.jsonl");
        let tmp = dir.join("train.jsonl.tmp");
        std::fs::write(&tmp, &lines).map_err(|e| SelftrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| SelftrainError::io(&path, e))?;
        let sha = nxt_data::registry::sha256_bytes(lines.as_bytes());
        let rel = self.rel(&path);
        let v = json!({
            "kept": sel.kept.len(),
            "funnel": sel.funnel,
            "kept_per_task": sel.kept_per_task,
            "train_set": rel,
            "train_set_sha256": sha,
        });
        let summary = format!(
            "kept {} samples of {} passing on {} of {} tasks",
            sel.kept.len(),
            sel.funnel.passing_samples,
            sel.funnel.tasks_with_pass,
            sel.funnel.tasks_attempted
        );
        self.finish(
            &name,
            &v,
            t0,
            &StageRecords {
                decisions: Some((i, &sel.decisions)),
                training_set: Some((i, &rel, &sha, sel.kept.len())),
                ..StageRecords::default()
            },
            summary,
        )?;
        Ok(sel.kept.len())
    }

    /// The prompt as training text: completion prompts as they are; chat prompts rendered
    /// with the base model's chat template (what the engine fed the model).
    fn training_prompt(&self, prompt: &Prompt) -> Result<String, SelftrainError> {
        match prompt {
            Prompt::Text(t) => Ok(t.clone()),
            Prompt::Chat(_) => crate::trainer::render_chat(self.base_dir()?.as_path(), prompt),
        }
    }

    fn base_dir(&self) -> Result<PathBuf, SelftrainError> {
        let base = match self.ledger.stage("warm-start")? {
            Some((v, _)) => v["model"].as_str().unwrap_or_default().to_string(),
            None => self.cfg.model.base.clone(),
        };
        Ok(nxt_engine::resolve_model(&base, "main")?)
    }

    /// Stage `iter-i/train`: the base model fine-tuned on this iteration's kept set.
    fn train_stage(&mut self, i: usize, models: &Models) -> Result<(), SelftrainError> {
        let name = format!("iter-{i}/train");
        if self.ledger.stage(&name)?.is_some() {
            return Ok(());
        }
        let (path, sha, examples) =
            self.ledger
                .training_set(i)?
                .ok_or_else(|| SelftrainError::Ledger {
                    path: self.ledger.path().into(),
                    message: format!("iteration {i} has no training set"),
                })?;
        self.emit(Event::Stage {
            name: name.clone(),
            detail: format!(
                "fine-tuning the base model ({}) on {examples} kept samples",
                if self.cfg.train.full {
                    "full"
                } else {
                    "fresh LoRA"
                }
            ),
        });
        let t0 = Instant::now();
        let t = &self.cfg.train;
        let out = self.run_dir.join(format!("iter-{i}")).join("train");
        let job = TrainJob {
            base: models.base().to_string(),
            data: self.run_dir.join(&path),
            out: out.clone(),
            full: t.full,
            epochs: t.epochs,
            lr: t.lr,
            batch_size: t.batch_size,
            grad_accum: t.grad_accum,
            warmup_steps: t.warmup_steps,
            schedule: t.schedule.clone(),
            seed: self.cfg.run.seed.wrapping_add(i as u64),
        };
        let events = &mut *self.events;
        let r = run_training(&self.cfg.train, &job, &format!("iteration {i}"), &mut |p| {
            events(&Event::Progress(p.clone()))
        })?;
        let mut v = json!({
            "final_loss": r.final_loss,
            "mean_loss": r.mean_loss,
            "steps": r.steps,
            "metrics": self.rel(&out.join("metrics.jsonl")),
            "train_set_sha256": sha,
            "base_weights_sha256": r.base_weights_sha256,
            "summary": r.summary,
        });
        if let Some(a) = &r.adapter_dir {
            v["adapter"] = json!(self.rel(a));
        }
        if let Some(m) = &r.model_dir {
            v["model"] = json!(self.rel(m));
        }
        let summary = format!("final loss {:.4} after {} steps", r.final_loss, r.steps);
        self.finish(
            &name,
            &v,
            t0,
            &StageRecords {
                metrics: Some((i, &r.metrics)),
                ..StageRecords::default()
            },
            summary,
        )
    }

    /// An evaluation stage (dev or test): `n` samples per task, greedy, pass@k.
    fn eval_stage(
        &mut self,
        stage: &str,
        models: &Models,
        spec: &ModelSpec,
        tasks: &[RepairTask],
        with_trace: bool,
        test: bool,
    ) -> Result<(), SelftrainError> {
        if self.ledger.stage(stage)?.is_some() {
            return Ok(());
        }
        let e = &self.cfg.eval;
        let n = if test { e.test_samples } else { e.dev_samples };
        self.emit(Event::Stage {
            name: stage.into(),
            detail: format!(
                "{} tasks x {n} samples{}{}",
                tasks.len(),
                if e.greedy { " + greedy" } else { "" },
                if with_trace { "" } else { ", no trace" }
            ),
        });
        let t0 = Instant::now();
        let generator = models.open(spec)?;
        let proxy = match (&self.cfg.model.proxy, test) {
            (Some(p), true) => Some(nxt_llm::open_generator(
                p,
                &nxt_llm::OpenOptions::default(),
            )?),
            _ => None,
        };
        let dir = self.run_dir.join(stage);
        let (temperature, greedy, ks) = (e.temperature, e.greedy, e.ks.clone());
        let report = self.sample_into(
            stage,
            &dir,
            generator.as_ref(),
            tasks,
            n,
            temperature,
            greedy,
            with_trace,
            ks,
            proxy.as_deref(),
        )?;
        report.write(&dir)?;
        let v = eval_summary(&report, &self.rel(&dir));
        let summary = format!(
            "pass@1 {:.3}{}",
            v["pass@1"].as_f64().unwrap_or(0.0),
            v["greedy"]
                .as_f64()
                .map(|g| format!(", greedy {g:.3}"))
                .unwrap_or_default()
        );
        self.finish(stage, &v, t0, &StageRecords::default(), summary)
    }
}

/// A test set's directory name (`mbpp-r:test` -> `mbpp-r-test`, a file -> its stem).
pub fn set_dir_name(source: &str) -> String {
    let p = Path::new(source);
    if crate::config::is_path_source(source) {
        return p
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "test".into());
    }
    source.replace(':', "-").replace('+', "plus")
}
