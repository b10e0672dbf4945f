//! The `results.json` of a self-training run, read leniently: every part may be missing (a run
//! killed early), so every field is optional or defaulted, and unknown fields are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Per-task sample counts of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TaskStat {
    /// Samples.
    pub n: usize,
    /// Passing samples.
    pub c: usize,
    /// Greedy verdict (None: no greedy sample).
    pub greedy: Option<bool>,
    /// Proxy fixes of the task (one per sampled rationale), when a proxy ran.
    pub proxy_n: Option<usize>,
    /// Passing proxy fixes.
    pub proxy_c: Option<usize>,
}

/// One evaluation's metrics as a self-training run records them (`EVAL`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EvalSummary {
    /// Greedy pass@1.
    pub greedy: Option<f64>,
    /// Samples per task.
    pub n: Option<usize>,
    /// Tasks.
    pub tasks: Option<usize>,
    /// Unparseable fraction of the samples.
    pub unparseable: Option<f64>,
    /// Fraction of the samples cut at `max_tokens`.
    pub truncated: Option<f64>,
    /// Per task counts.
    pub per_task: BTreeMap<String, TaskStat>,
    /// The evaluation's run store, relative to the run directory.
    pub run_dir: Option<String>,
    /// The proxy rationale evaluation, if one ran.
    pub proxy: Option<Box<EvalSummary>>,
    /// Everything else, among it the `pass@k` keys.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl EvalSummary {
    /// The recorded `pass@k` values by k.
    pub fn pass_at_k(&self) -> BTreeMap<usize, f64> {
        self.other
            .iter()
            .filter_map(|(key, v)| {
                let k = key.strip_prefix("pass@")?.parse().ok()?;
                Some((k, v.as_f64()?))
            })
            .collect()
    }
}

/// One data file of the provenance record.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DataRef {
    /// Path.
    pub path: Option<String>,
    /// sha256 of the file.
    pub sha256: Option<String>,
    /// Tasks in it.
    pub tasks: Option<usize>,
}

/// Where a run's inputs came from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// Base model (hub id, directory or URL).
    pub base_model: Option<String>,
    /// sha256 of the base weights.
    pub base_weights_sha256: Option<String>,
    /// Seed.
    pub seed: Option<u64>,
    /// Data files by split.
    pub data: BTreeMap<String, DataRef>,
    /// Anything else recorded.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The hard-problem filter (`D_H`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Hard {
    /// Training tasks considered.
    pub tasks: Option<usize>,
    /// Tasks kept as hard.
    pub hard: Option<usize>,
    /// pass@1 threshold below which a task is hard.
    pub threshold: Option<f64>,
    /// Samples per task used to estimate it.
    pub samples_per_task: Option<usize>,
    /// Base pass@1 on the training tasks.
    #[serde(rename = "pass@1")]
    pub pass_at_1: Option<f64>,
    /// Its run store.
    pub run_dir: Option<String>,
}

/// Train-side sampling of one iteration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TrainSide {
    /// pass@1 at the sampling temperature on the training tasks.
    #[serde(rename = "pass@1")]
    pub pass_at_1: Option<f64>,
    /// Its run store.
    pub run_dir: Option<String>,
}

/// The data funnel of one iteration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Funnel {
    /// Tasks sampled.
    pub tasks_attempted: Option<u64>,
    /// Tasks with at least one passing sample.
    pub tasks_with_pass: Option<u64>,
    /// Passing samples.
    pub passing_samples: Option<u64>,
    /// After deduplication.
    pub after_dedupe: Option<u64>,
    /// After the per-task cap.
    pub after_cap: Option<u64>,
    /// Passing samples whose rationale contradicts the trace (counted under either keep
    /// rule).
    pub unfaithful: Option<u64>,
    /// Passing samples left after the faithfulness filter (before dedupe).
    pub after_faithful: Option<u64>,
    /// Tokens in the training set.
    pub training_tokens: Option<u64>,
}

impl Funnel {
    /// The sample/task stages in the order the keep step applies them, with their labels;
    /// `faithful_filter` (`keep = "passing-and-faithful"`) adds the faithfulness filter
    /// between the passing samples and dedupe.
    pub fn stages(&self, faithful_filter: bool) -> Vec<(&'static str, Option<u64>)> {
        let mut v = vec![
            ("tasks attempted", self.tasks_attempted),
            ("tasks with a pass", self.tasks_with_pass),
            ("passing samples", self.passing_samples),
        ];
        if faithful_filter {
            v.push(("after faithfulness filter", self.after_faithful));
        }
        v.push(("after dedupe", self.after_dedupe));
        v.push(("after per-task cap", self.after_cap));
        v
    }
}

/// The fine-tuning of one iteration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TrainInfo {
    /// Loss at the last step.
    pub final_loss: Option<f64>,
    /// Mean loss.
    pub mean_loss: Option<f64>,
    /// Optimizer steps.
    pub steps: Option<u64>,
    /// `metrics.jsonl`, relative to the run directory.
    pub metrics: Option<String>,
    /// The adapter directory.
    pub adapter: Option<String>,
    /// sha256 of the training set.
    pub train_set_sha256: Option<String>,
}

/// One self-training iteration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Iteration {
    /// 1-based number.
    pub iteration: Option<usize>,
    /// Which model sampled the training data (`base`, `iter-1`, ...).
    pub sampled_from: Option<String>,
    /// Train-side sampling.
    pub train_side: Option<TrainSide>,
    /// The data funnel.
    pub funnel: Option<Funnel>,
    /// Samples kept for training.
    pub kept: Option<u64>,
    /// Samples kept per task.
    pub kept_per_task: BTreeMap<String, u64>,
    /// The samples kept for training, when recorded: `task_id#sample_idx`, the sample's index
    /// among its task's samples in the train-side run store (the ids of `train.jsonl`).
    pub kept_sample_ids: Option<Vec<String>>,
    /// The training set (`iter-N/train.jsonl`), relative to the run directory.
    pub train_set: Option<String>,
    /// sha256 of the training set.
    pub train_set_sha256: Option<String>,
    /// The fine-tuning.
    pub train: Option<TrainInfo>,
    /// Final training loss.
    pub train_loss: Option<f64>,
    /// Dev evaluation.
    pub dev: Option<EvalSummary>,
    /// Dev evaluation without the trace in the prompt (`[eval] dev_without_trace`; stage
    /// `iter-N/dev-no-trace`).
    pub dev_no_trace: Option<EvalSummary>,
    /// Wall time per stage, seconds.
    pub wall_s: BTreeMap<String, f64>,
}

impl Iteration {
    /// The iteration's number (its position + 1 when not recorded).
    pub fn number(&self, position: usize) -> usize {
        self.iteration.unwrap_or(position + 1)
    }
}

/// With- and without-trace evaluations of one benchmark.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TraceSplit {
    /// Trace in the prompt.
    pub trace: Option<EvalSummary>,
    /// No trace in the prompt.
    pub no_trace: Option<EvalSummary>,
}

/// Test evaluations of the base model and of the chosen iteration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TestEvals {
    /// The base model, by benchmark.
    pub base: BTreeMap<String, TraceSplit>,
    /// The chosen iteration, by benchmark.
    pub best: BTreeMap<String, TraceSplit>,
}

/// Base-model evaluations.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BaseEvals {
    /// On the dev split.
    pub dev: Option<EvalSummary>,
    /// On the dev split without the trace in the prompt (`[eval] dev_without_trace`; stage
    /// `base/dev-no-trace`).
    pub dev_no_trace: Option<EvalSummary>,
}

/// A self-training run's `results.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SelftrainResults {
    /// `selftrain`.
    pub kind: Option<String>,
    /// nxt version that wrote it.
    pub nxt_version: Option<String>,
    /// `running`, `done` or `stopped_early`.
    pub status: Option<String>,
    /// The run's settings.
    pub config: Option<Value>,
    /// Provenance.
    pub provenance: Option<Provenance>,
    /// The hard-problem filter.
    pub hard: Option<Hard>,
    /// Base-model evaluations.
    pub base: Option<BaseEvals>,
    /// Iterations, in order.
    pub iterations: Vec<Iteration>,
    /// The iteration chosen by dev pass@1 (0 = the base model).
    pub best_iteration: Option<usize>,
    /// Test evaluations.
    pub test: Option<TestEvals>,
    /// Wall time, seconds.
    pub wall_s: BTreeMap<String, f64>,
}

/// One line of a training run's `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MetricLine {
    /// Optimizer step.
    pub step: Option<f64>,
    /// Epoch (fractional).
    pub epoch: Option<f64>,
    /// Training loss.
    pub loss: Option<f64>,
    /// Learning rate.
    pub lr: Option<f64>,
    /// Gradient norm before clipping.
    pub grad_norm: Option<f64>,
    /// Completion tokens in the step.
    pub completion_tokens: Option<f64>,
    /// Throughput.
    pub tokens_per_s: Option<f64>,
    /// Wall time since the start of training, seconds.
    pub wall_s: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_and_a_full_record_both_parse() {
        let r: SelftrainResults = serde_json::from_str("{}").expect("empty");
        assert!(r.iterations.is_empty() && r.test.is_none());
        let e: EvalSummary = serde_json::from_str(
            r#"{"pass@1": 0.25, "pass@5": 0.5, "greedy": 0.3, "n": 8, "per_task": {"t/1": {"n": 8, "c": 2, "greedy": true}}, "run_dir": "dev"}"#,
        )
        .expect("eval");
        assert_eq!(e.pass_at_k(), BTreeMap::from([(1, 0.25), (5, 0.5)]));
        assert_eq!(e.per_task["t/1"].c, 2);
        assert_eq!(e.run_dir.as_deref(), Some("dev"));
    }
}
