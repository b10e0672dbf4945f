//! Loading a run directory: an `nxt eval` run (its run store, `run.sqlite`, and its
//! `results.json`) or an `nxt selftrain` run (its `results.json`, the eval stores its
//! evaluations point to, and its training metrics). Whatever is missing is recorded as a
//! note instead of failing, so a run killed early still gets a page.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nxt_data::pass_at_k;
use serde_json::Value;

use crate::model::{EvalSummary, Iteration, MetricLine, SelftrainResults, TaskStat};
use crate::stats::{bootstrap_mean, paired_delta, Interval, RESAMPLES, SEED};
use crate::store::StoreData;
use crate::ReportError;

/// A metric of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// pass@k at the sampling temperature (unbiased estimator).
    PassAt(usize),
    /// Greedy pass@1.
    Greedy,
    /// The proxy model's pass@k given the sampled rationales.
    ProxyPassAt(usize),
}

impl Metric {
    /// The metric's name as the page shows it.
    pub fn name(self) -> String {
        match self {
            Metric::PassAt(k) => format!("pass@{k}"),
            Metric::Greedy => "greedy pass@1".into(),
            Metric::ProxyPassAt(k) => format!("proxy pass@{k}"),
        }
    }
}

/// A metric value: from the per-task counts with its bootstrap interval, or only the recorded
/// number when the per-task counts are missing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value95 {
    /// The value (a fraction).
    pub value: f64,
    /// 95% bootstrap interval (None without per-task counts).
    pub ci: Option<(f64, f64)>,
    /// Tasks it is over (0 when unknown).
    pub tasks: usize,
}

impl From<Interval> for Value95 {
    fn from(i: Interval) -> Self {
        Value95 {
            value: i.estimate,
            ci: Some((i.lo, i.hi)),
            tasks: i.tasks,
        }
    }
}

/// The k of pass@k a report shows (those with k <= n).
pub const KS: [usize; 4] = [1, 5, 10, 25];

/// One evaluation: per-task counts, recorded metrics and, when its store is there, the store.
#[derive(Debug)]
pub struct EvalView {
    /// Label on the page (`base dev`, `iter 2 dev`, the run directory's name).
    pub label: String,
    /// Its run directory, when known.
    pub dir: Option<PathBuf>,
    /// Benchmark.
    pub benchmark: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Trace shown in the prompt.
    pub with_trace: Option<bool>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Per-task sample counts.
    pub per_task: BTreeMap<String, TaskStat>,
    /// Recorded pass@k (results.json).
    pub recorded_pass: BTreeMap<usize, f64>,
    /// Recorded greedy pass@1.
    pub recorded_greedy: Option<f64>,
    /// Proxy model.
    pub proxy_model: Option<String>,
    /// Proxy per-task counts (None: no proxy evaluation).
    pub proxy_per_task: Option<BTreeMap<String, TaskStat>>,
    /// Recorded unparseable fraction.
    pub unparseable: Option<f64>,
    /// Recorded truncated fraction.
    pub truncated: Option<f64>,
    /// The run store.
    pub store: Option<StoreData>,
    /// What is missing.
    pub notes: Vec<String>,
}

fn read_json(path: &Path) -> Result<Option<Value>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| ReportError::Json {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn open_store(dir: &Path, notes: &mut Vec<String>, label: &str) -> Option<StoreData> {
    let p = dir.join("run.sqlite");
    if !p.exists() {
        notes.push(format!(
            "{label}: no run store at {} (no examples, lengths or truncation from it)",
            p.display()
        ));
        return None;
    }
    match StoreData::open(&p) {
        Ok(s) => Some(s),
        Err(e) => {
            notes.push(format!("{label}: the run store could not be read: {e}"));
            None
        }
    }
}

impl EvalView {
    /// An `nxt eval` run directory: `run.sqlite` (the source of truth) and `results.json`.
    pub fn from_eval_dir(dir: &Path, label: &str) -> Result<EvalView, ReportError> {
        let results = read_json(&dir.join("results.json"))?;
        let store_path = dir.join("run.sqlite");
        if results.is_none() && !store_path.exists() {
            return Err(ReportError::NotARun {
                path: dir.to_path_buf(),
            });
        }
        let mut notes = Vec::new();
        let store = if store_path.exists() {
            Some(StoreData::open(&store_path)?)
        } else {
            notes.push(format!(
                "{label}: no run store (run.sqlite) beside results.json: no examples, lengths or truncation"
            ));
            None
        };
        let r = results.unwrap_or(Value::Null);
        // Tasks of the report: those results.json lists (a rerun with --limit), else all stored.
        let listed: Option<Vec<String>> = r.get("per_task").and_then(|p| p.as_array()).map(|a| {
            a.iter()
                .filter_map(|t| t.get("task_id")?.as_str().map(str::to_string))
                .collect()
        });
        let (per_task, proxy_per_task) = match &store {
            Some(s) => {
                let mut per = s.per_task("sample");
                let mut proxy = s.has_kind("proxy").then(|| s.per_task("proxy"));
                for t in &s.tasks {
                    per.entry(t.id.clone()).or_default();
                }
                if let Some(ids) = &listed {
                    per.retain(|k, _| ids.contains(k));
                    if let Some(p) = &mut proxy {
                        p.retain(|k, _| ids.contains(k));
                    }
                }
                // Tasks without any sample yet (an interrupted run) are not part of pass@k.
                per.retain(|_, v| v.n > 0 || v.greedy.is_some());
                (per, proxy)
            }
            None => {
                let mut per = BTreeMap::new();
                let mut proxy = BTreeMap::new();
                for t in r
                    .get("per_task")
                    .and_then(|p| p.as_array())
                    .into_iter()
                    .flatten()
                {
                    let Some(id) = t.get("task_id").and_then(|v| v.as_str()) else {
                        continue;
                    };
                    let num = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
                    per.insert(
                        id.to_string(),
                        TaskStat {
                            n: num("n"),
                            c: num("correct"),
                            greedy: t.get("greedy_passed").and_then(|v| v.as_bool()),
                            ..TaskStat::default()
                        },
                    );
                    if num("proxy_n") > 0 {
                        proxy.insert(
                            id.to_string(),
                            TaskStat {
                                n: num("proxy_n"),
                                c: num("proxy_correct"),
                                ..TaskStat::default()
                            },
                        );
                    }
                }
                (per, (!proxy.is_empty()).then_some(proxy))
            }
        };
        let cfg_str = |k: &str| -> Option<String> {
            store
                .as_ref()
                .and_then(|s| s.config_str(k))
                .or_else(|| r.get(k).and_then(|v| v.as_str()).map(str::to_string))
        };
        let recorded_pass = r
            .pointer("/sampled/pass_at_k")
            .and_then(|v| v.as_object())
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let with_trace = store
            .as_ref()
            .and_then(|s| s.with_trace())
            .or_else(|| r.get("with_trace").and_then(|v| v.as_bool()));
        let temperature = store
            .as_ref()
            .and_then(|s| s.config.as_ref()?.get("temperature")?.as_f64())
            .or_else(|| r.get("temperature").and_then(|v| v.as_f64()));
        let proxy_model = cfg_str("proxy_model");
        let mut view = EvalView {
            label: label.to_string(),
            dir: Some(dir.to_path_buf()),
            benchmark: cfg_str("benchmark"),
            model: cfg_str("model"),
            with_trace,
            temperature,
            per_task,
            recorded_pass,
            recorded_greedy: r.get("greedy_pass_at_1").and_then(|v| v.as_f64()),
            proxy_model,
            proxy_per_task,
            unparseable: r
                .pointer("/sampled/unparseable_rate")
                .and_then(|v| v.as_f64()),
            truncated: None,
            store,
            notes,
        };
        view.check_parts();
        Ok(view)
    }

    /// An evaluation recorded in a self-training run's `results.json`; its store is
    /// `root/run_dir/run.sqlite` when present.
    pub fn from_summary(label: &str, s: &EvalSummary, root: &Path) -> EvalView {
        let mut notes = Vec::new();
        let dir = s.run_dir.as_ref().map(|d| root.join(d));
        let store = match &dir {
            Some(d) => open_store(d, &mut notes, label),
            None => {
                notes.push(format!(
                    "{label}: no run_dir recorded (no examples or lengths)"
                ));
                None
            }
        };
        let mut per_task = s.per_task.clone();
        // The proxy's counts: per task beside the model's own (`proxy_n`, `proxy_c`, as the
        // loop records them), or under the proxy record.
        let mut proxy_per_task = s.proxy.as_ref().map(|p| {
            let beside: BTreeMap<String, TaskStat> = per_task
                .iter()
                .filter_map(|(id, t)| {
                    Some((
                        id.clone(),
                        TaskStat {
                            n: t.proxy_n.filter(|n| *n > 0)?,
                            c: t.proxy_c.unwrap_or(0),
                            ..TaskStat::default()
                        },
                    ))
                })
                .collect();
            if beside.is_empty() {
                p.per_task.clone()
            } else {
                beside
            }
        });
        if proxy_per_task.as_ref().is_some_and(|p| p.is_empty()) {
            proxy_per_task = None;
        }
        if let Some(st) = &store {
            if per_task.is_empty() {
                per_task = st.per_task("sample");
                per_task.retain(|_, v| v.n > 0 || v.greedy.is_some());
            }
            if proxy_per_task.is_none() && st.has_kind("proxy") {
                proxy_per_task = Some(st.per_task("proxy"));
            }
        }
        let cfg = |k: &str| store.as_ref().and_then(|st| st.config_str(k));
        let mut view = EvalView {
            label: label.to_string(),
            benchmark: cfg("benchmark"),
            model: cfg("model"),
            with_trace: store.as_ref().and_then(|st| st.with_trace()),
            temperature: store
                .as_ref()
                .and_then(|st| st.config.as_ref()?.get("temperature")?.as_f64()),
            proxy_model: cfg("proxy_model"),
            dir,
            per_task,
            recorded_pass: s.pass_at_k(),
            recorded_greedy: s.greedy,
            proxy_per_task,
            unparseable: s.unparseable,
            truncated: s.truncated,
            store,
            notes,
        };
        view.check_parts();
        view
    }

    fn check_parts(&mut self) {
        if self.per_task.is_empty() {
            self.notes.push(format!(
                "{}: no per-task counts (no bootstrap intervals, no coverage)",
                self.label
            ));
        }
        if self.values(Metric::Greedy).is_none() && self.recorded_greedy.is_none() {
            self.notes.push(format!(
                "{}: no greedy repair (run with --greedy)",
                self.label
            ));
        }
    }

    /// The k of pass@k every task allows.
    pub fn ks(&self) -> Vec<usize> {
        if self.per_task.is_empty() {
            return self.recorded_pass.keys().copied().collect();
        }
        let min_n = self.per_task.values().map(|t| t.n).min().unwrap_or(0);
        KS.into_iter().filter(|&k| k <= min_n).collect()
    }

    /// The per-task values of a metric (None when it cannot be computed).
    pub fn values(&self, m: Metric) -> Option<BTreeMap<String, f64>> {
        let from = |per: &BTreeMap<String, TaskStat>, k: usize| {
            (!per.is_empty() && per.values().all(|t| t.n >= k)).then(|| {
                per.iter()
                    .map(|(id, t)| (id.clone(), pass_at_k(t.n, t.c, k)))
                    .collect()
            })
        };
        match m {
            Metric::PassAt(k) => from(&self.per_task, k),
            Metric::ProxyPassAt(k) => from(self.proxy_per_task.as_ref()?, k),
            Metric::Greedy => {
                let v: BTreeMap<String, f64> = self
                    .per_task
                    .iter()
                    .filter_map(|(id, t)| Some((id.clone(), t.greedy? as u8 as f64)))
                    .collect();
                (!v.is_empty()).then_some(v)
            }
        }
    }

    /// A metric with its interval (from the per-task counts), else the recorded value.
    pub fn metric(&self, m: Metric) -> Option<Value95> {
        if let Some(v) = self.values(m) {
            let vals: Vec<f64> = v.values().copied().collect();
            return bootstrap_mean(&vals, RESAMPLES, SEED).map(Value95::from);
        }
        let recorded = match m {
            Metric::PassAt(k) => self.recorded_pass.get(&k).copied(),
            Metric::Greedy => self.recorded_greedy,
            Metric::ProxyPassAt(_) => None,
        }?;
        Some(Value95 {
            value: recorded,
            ci: None,
            tasks: 0,
        })
    }

    /// Paired-bootstrap delta `other - self` over shared tasks.
    pub fn delta(&self, other: &EvalView, m: Metric) -> Option<Value95> {
        let a = self.values(m)?;
        let b = other.values(m)?;
        paired_delta(&a, &b, RESAMPLES, SEED).map(Value95::from)
    }

    /// Tasks solved (at least one passing sample).
    pub fn solved(&self) -> BTreeMap<&str, bool> {
        self.per_task
            .iter()
            .map(|(id, t)| (id.as_str(), t.c > 0))
            .collect()
    }

    /// Truncated (cut at `max_tokens`) and unparseable fractions of the sampled repairs:
    /// from the store when present, else as recorded.
    pub fn rates(&self) -> (Option<f64>, Option<f64>) {
        if let Some(s) = &self.store {
            let samples: Vec<_> = s
                .samples
                .iter()
                .filter(|r| r.kind == "sample" && self.per_task.contains_key(&r.task_id))
                .collect();
            if !samples.is_empty() {
                let n = samples.len() as f64;
                let trunc = samples
                    .iter()
                    .filter(|r| r.finish_reason == "length")
                    .count();
                let unp = samples.iter().filter(|r| r.parsed == Some(false)).count();
                return (Some(trunc as f64 / n), Some(unp as f64 / n));
            }
        }
        (self.truncated, self.unparseable)
    }

    /// A short description: benchmark, trace, model.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.benchmark {
            parts.push(b.clone());
        }
        match self.with_trace {
            Some(true) => parts.push("with trace".into()),
            Some(false) => parts.push("without trace".into()),
            None => {}
        }
        if let Some(m) = &self.model {
            parts.push(m.clone());
        }
        parts.join(", ")
    }
}

/// One self-training iteration with what it points to.
#[derive(Debug)]
pub struct IterView {
    /// The record.
    pub it: Iteration,
    /// Its number.
    pub number: usize,
    /// Dev evaluation.
    pub dev: Option<EvalView>,
    /// Dev evaluation without the trace in the prompt (when the run evaluated it).
    pub dev_no_trace: Option<EvalView>,
    /// The train-side sampling store.
    pub sample_store: Option<StoreData>,
    /// Training metrics (`metrics.jsonl`).
    pub metrics: Vec<MetricLine>,
    /// The samples kept for training as `(task_id, sample index)` (None: not recorded).
    pub kept: Option<BTreeSet<(String, i64)>>,
    /// The tasks the keep step decided on (the hard tasks sampled), from the loop's ledger;
    /// None without a ledger. The sampling store may hold more (iteration 1 reuses the store
    /// of the hard-task filter, which sampled every training task).
    pub decided_tasks: Option<BTreeSet<String>>,
}

impl IterView {
    /// Whether a train-side sample belongs to this iteration's keep step.
    pub fn in_keep_step(&self, task_id: &str) -> bool {
        self.decided_tasks
            .as_ref()
            .is_none_or(|t| t.contains(task_id))
    }
}

/// The tasks of each iteration's keep decisions in the loop's ledger (`selftrain.sqlite`),
/// read-only; None when there is no ledger or it cannot be read (noted).
fn ledger_tasks(dir: &Path, notes: &mut Vec<String>) -> Option<BTreeMap<usize, BTreeSet<String>>> {
    let path = dir.join("selftrain.sqlite");
    if !path.is_file() {
        notes.push(format!(
            "no ledger ({}): kept vs dropped lengths are over every sample of a sampling store",
            path.display()
        ));
        return None;
    }
    let read = || -> Result<BTreeMap<usize, BTreeSet<String>>, rusqlite::Error> {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut st = conn.prepare("SELECT DISTINCT iteration, task_id FROM decisions")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            let (i, t) = row?;
            out.entry(i.max(0) as usize).or_default().insert(t);
        }
        Ok(out)
    };
    match read() {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!(
                "the ledger {} could not be read: {e}",
                path.display()
            ));
            None
        }
    }
}

/// A kept-sample id `task_id#sample_idx` as `(task_id, sample_idx)` (task ids may hold `#`:
/// the index is after the last one).
pub fn parse_sample_id(id: &str) -> Option<(String, i64)> {
    let (task, idx) = id.rsplit_once('#')?;
    let idx: i64 = idx.parse().ok()?;
    (!task.is_empty() && idx >= 0).then(|| (task.to_string(), idx))
}

/// A self-training run.
#[derive(Debug)]
pub struct SelftrainView {
    /// `results.json`.
    pub results: SelftrainResults,
    /// Base model on dev.
    pub base_dev: Option<EvalView>,
    /// Base model on dev without the trace in the prompt (when the run evaluated it).
    pub base_dev_no_trace: Option<EvalView>,
    /// Iterations.
    pub iterations: Vec<IterView>,
    /// Test evaluations of the base model: benchmark -> (trace, no trace).
    pub test_base: BTreeMap<String, (Option<EvalView>, Option<EvalView>)>,
    /// Test evaluations of the chosen iteration.
    pub test_best: BTreeMap<String, (Option<EvalView>, Option<EvalView>)>,
    /// What is missing.
    pub notes: Vec<String>,
}

impl SelftrainView {
    /// The chosen iteration's number (0 = base), as recorded, else by dev pass@1.
    pub fn best(&self) -> Option<usize> {
        if let Some(b) = self.results.best_iteration {
            return Some(b);
        }
        let mut best: Option<(usize, f64)> = self
            .base_dev
            .as_ref()
            .and_then(|d| d.metric(Metric::PassAt(1)))
            .map(|v| (0, v.value));
        for it in &self.iterations {
            if let Some(v) = it.dev.as_ref().and_then(|d| d.metric(Metric::PassAt(1))) {
                if best.is_none_or(|(_, b)| v.value > b) {
                    best = Some((it.number, v.value));
                }
            }
        }
        best.map(|b| b.0)
    }

    /// Whether the run evaluated dev without the trace too (the base or any iteration).
    pub fn has_dev_no_trace(&self) -> bool {
        self.base_dev_no_trace.is_some() || self.iterations.iter().any(|i| i.dev_no_trace.is_some())
    }

    /// Every dev evaluation, with and without the trace: the base's, then each iteration's.
    pub fn dev_evals(&self) -> impl Iterator<Item = &EvalView> {
        self.base_dev
            .iter()
            .chain(self.base_dev_no_trace.iter())
            .chain(
                self.iterations
                    .iter()
                    .flat_map(|i| i.dev.iter().chain(i.dev_no_trace.iter())),
            )
    }

    /// The dev evaluation of iteration `n` (0 = base).
    pub fn dev_of(&self, n: usize) -> Option<&EvalView> {
        if n == 0 {
            self.base_dev.as_ref()
        } else {
            self.iterations
                .iter()
                .find(|i| i.number == n)
                .and_then(|i| i.dev.as_ref())
        }
    }
}

/// A loaded run.
#[derive(Debug)]
pub enum Run {
    /// `nxt eval`.
    Eval(Box<EvalView>),
    /// `nxt selftrain`.
    Selftrain(Box<SelftrainView>),
}

/// A run with its directory.
#[derive(Debug)]
pub struct LoadedRun {
    /// The run directory.
    pub dir: PathBuf,
    /// The run.
    pub run: Run,
}

impl LoadedRun {
    /// The evaluation that stands for the run in a comparison: an eval run itself, a
    /// self-training run's chosen iteration on dev (else the base on dev).
    pub fn primary(&self) -> Option<&EvalView> {
        match &self.run {
            Run::Eval(e) => Some(e),
            Run::Selftrain(s) => s.best().and_then(|b| s.dev_of(b)).or(s.base_dev.as_ref()),
        }
    }

    /// `eval` or `selftrain`.
    pub fn kind(&self) -> &'static str {
        match self.run {
            Run::Eval(_) => "eval",
            Run::Selftrain(_) => "selftrain",
        }
    }

    /// Everything missing, over the run and its evaluations.
    pub fn notes(&self) -> Vec<String> {
        match &self.run {
            Run::Eval(e) => e.notes.clone(),
            Run::Selftrain(s) => {
                let mut v = s.notes.clone();
                let evals = s.dev_evals().chain(
                    s.test_base
                        .values()
                        .chain(s.test_best.values())
                        .flat_map(|(a, b)| a.iter().chain(b.iter())),
                );
                for e in evals {
                    v.extend(e.notes.iter().cloned());
                }
                v
            }
        }
    }
}

fn read_metrics(path: &Path, notes: &mut Vec<String>, label: &str) -> Vec<MetricLine> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!(
                "{label}: training metrics {} unreadable ({e})",
                path.display()
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricLine>(line) {
            Ok(m) => out.push(m),
            // A last line cut short by a kill is expected; anything else is reported.
            Err(e) if i + 1 == lines.len() && !text.ends_with('\n') => {
                notes.push(format!(
                    "{label}: {}:{}: last line cut short, ignored ({e})",
                    path.display(),
                    i + 1
                ));
            }
            Err(e) => notes.push(format!(
                "{label}: {}:{}: bad metrics line ignored ({e})",
                path.display(),
                i + 1
            )),
        }
    }
    out
}

/// Short names for runs shown side by side: each directory's name, or as many of its last
/// path components as it takes to tell the runs apart (`base/dev` and `iter-1/dev`).
pub fn run_names(dirs: &[&Path]) -> Vec<String> {
    let tail = |d: &Path, n: usize| -> String {
        let comps: Vec<String> = d
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|c| c != "/")
            .collect();
        let start = comps.len().saturating_sub(n);
        comps[start..].join("/")
    };
    let max = dirs
        .iter()
        .map(|d| d.components().count())
        .max()
        .unwrap_or(1);
    let mut depth = vec![1usize; dirs.len()];
    loop {
        let names: Vec<String> = dirs.iter().zip(&depth).map(|(d, n)| tail(d, *n)).collect();
        let mut changed = false;
        for i in 0..dirs.len() {
            let clash = (0..dirs.len()).any(|j| j != i && names[j] == names[i]);
            if clash && depth[i] < max {
                depth[i] += 1;
                changed = true;
            }
        }
        if !changed {
            return names;
        }
    }
}

/// Load a run directory of either kind.
pub fn load_run(dir: &Path) -> Result<LoadedRun, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NotARun {
            path: dir.to_path_buf(),
        });
    }
    let results_path = dir.join("results.json");
    let results = read_json(&results_path)?;
    let is_selftrain = results
        .as_ref()
        .and_then(|r| r.get("kind"))
        .and_then(|k| k.as_str())
        == Some("selftrain");
    let label = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    if !is_selftrain {
        return Ok(LoadedRun {
            dir: dir.to_path_buf(),
            run: Run::Eval(Box::new(EvalView::from_eval_dir(dir, &label)?)),
        });
    }
    let value = results.unwrap_or(Value::Null);
    let results: SelftrainResults =
        serde_json::from_value(value).map_err(|e| ReportError::Json {
            path: results_path.clone(),
            message: e.to_string(),
        })?;
    let mut notes = Vec::new();
    let base_dev = results
        .base
        .as_ref()
        .and_then(|b| b.dev.as_ref())
        .map(|d| EvalView::from_summary("base dev", d, dir));
    if base_dev.is_none() {
        notes.push("the base model's dev evaluation is missing".into());
    }
    let base_dev_no_trace = results
        .base
        .as_ref()
        .and_then(|b| b.dev_no_trace.as_ref())
        .map(|d| EvalView::from_summary("base dev no trace", d, dir));
    // Without-trace dev runs only when the config asks for it: its absence is a gap only in
    // a run that evaluated it elsewhere.
    let evaluates_no_trace =
        base_dev_no_trace.is_some() || results.iterations.iter().any(|i| i.dev_no_trace.is_some());
    let mut iterations = Vec::new();
    let decided = if results.iterations.is_empty() {
        None
    } else {
        ledger_tasks(dir, &mut notes)
    };
    for (pos, it) in results.iterations.iter().enumerate() {
        let number = it.number(pos);
        let label = format!("iter {number}");
        let dev = it
            .dev
            .as_ref()
            .map(|d| EvalView::from_summary(&format!("{label} dev"), d, dir));
        if dev.is_none() {
            notes.push(format!(
                "{label}: no dev evaluation (the run stopped before it)"
            ));
        }
        let dev_no_trace = it
            .dev_no_trace
            .as_ref()
            .map(|d| EvalView::from_summary(&format!("{label} dev no trace"), d, dir));
        if dev_no_trace.is_none() && dev.is_some() && evaluates_no_trace {
            notes.push(format!(
                "{label}: no dev evaluation without the trace (the run stopped before it)"
            ));
        }
        let sample_store = match it.train_side.as_ref().and_then(|t| t.run_dir.as_ref()) {
            Some(d) => open_store(
                &dir.join(d),
                &mut notes,
                &format!("{label} train-side sampling"),
            ),
            None => {
                notes.push(format!("{label}: no train-side sampling store recorded"));
                None
            }
        };
        let metrics = match it.train.as_ref().and_then(|t| t.metrics.as_ref()) {
            Some(m) => read_metrics(&dir.join(m), &mut notes, &label),
            None => {
                // Training that did not finish leaves its metrics where the loop puts them.
                let partial = dir.join(format!("iter-{number}/train/metrics.jsonl"));
                if partial.is_file() {
                    let m = read_metrics(&partial, &mut notes, &label);
                    notes.push(format!(
                        "{label}: training did not finish ({} steps of metrics so far, from {})",
                        m.len(),
                        partial.display()
                    ));
                    m
                } else {
                    notes.push(format!("{label}: no training metrics recorded"));
                    Vec::new()
                }
            }
        };
        if it.funnel.is_none() {
            notes.push(format!("{label}: no data funnel recorded"));
        }
        let kept = it.kept_sample_ids.as_ref().map(|ids| {
            let mut set = BTreeSet::new();
            let mut bad = Vec::new();
            for id in ids {
                match parse_sample_id(id) {
                    Some(k) => {
                        set.insert(k);
                    }
                    None => bad.push(id.as_str()),
                }
            }
            if !bad.is_empty() {
                notes.push(format!(
                    "{label}: {} kept_sample_ids are not task_id#sample_idx and are ignored (first: {:?})",
                    bad.len(),
                    bad[0]
                ));
            }
            set
        });
        if kept.is_none() && it.kept.is_some() {
            notes.push(format!(
                "{label}: which samples were kept is not recorded (kept_sample_ids)"
            ));
        }
        iterations.push(IterView {
            it: it.clone(),
            number,
            dev,
            dev_no_trace,
            sample_store,
            metrics,
            kept,
            decided_tasks: decided.as_ref().and_then(|d| d.get(&number).cloned()),
        });
    }
    if results.iterations.is_empty() {
        notes.push("no iteration finished or started".into());
    }
    let mut test_base = BTreeMap::new();
    let mut test_best = BTreeMap::new();
    match results
        .test
        .as_ref()
        .filter(|t| !t.base.is_empty() || !t.best.is_empty())
    {
        Some(t) => {
            for (which, src, dst) in [
                ("base", &t.base, &mut test_base),
                ("best", &t.best, &mut test_best),
            ] {
                for (bench, split) in src {
                    let mk = |s: &Option<EvalSummary>, tr: &str| {
                        s.as_ref().map(|s| {
                            EvalView::from_summary(&format!("{which} test {bench} {tr}"), s, dir)
                        })
                    };
                    dst.insert(
                        bench.clone(),
                        (mk(&split.trace, "trace"), mk(&split.no_trace, "no trace")),
                    );
                }
            }
        }
        None => notes.push(
            "no test evaluation (it runs after the last iteration; the run stopped before it)"
                .into(),
        ),
    }
    if results.provenance.is_none() {
        notes.push("no provenance recorded".into());
    }
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        run: Run::Selftrain(Box::new(SelftrainView {
            results,
            base_dev,
            base_dev_no_trace,
            iterations,
            test_base,
            test_best,
            notes,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_short_and_distinct() {
        let p = |s: &str| PathBuf::from(s);
        let (a, b, c) = (p("/r/base/dev"), p("/r/iter-1/dev"), p("/r/other"));
        assert_eq!(
            run_names(&[&a, &b, &c]),
            ["base/dev", "iter-1/dev", "other"]
        );
        assert_eq!(run_names(&[&a, &c]), ["dev", "other"]);
        let (x, y) = (p("/a/s/dev"), p("/b/s/dev"));
        assert_eq!(run_names(&[&x, &y]), ["a/s/dev", "b/s/dev"]);
        assert_eq!(run_names(&[&a, &a]), ["r/base/dev", "r/base/dev"]);
        assert_eq!(parse_sample_id("t/1#x#3"), Some(("t/1#x".into(), 3)));
        assert_eq!(parse_sample_id("t/1"), None);
        assert_eq!(parse_sample_id("#3"), None);
    }
}
