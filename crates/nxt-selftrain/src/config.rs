//! The self-training configuration (`selftrain.toml`): every setting of the loop, with the
//! defaults of ../shared/docs/TRAINING_NOTES.md section 4 (ReST-EM, STaR) where the paper is
//! silent. Unknown keys are refused, and every validation error names its key.

use std::path::{Path, PathBuf};

use nxt_core::prompt::Layout;
use serde::{Deserialize, Serialize};

use crate::error::SelftrainError;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelftrainConfig {
    /// The base model P0 and how it is served.
    pub model: ModelSection,
    /// Training, dev and test data.
    #[serde(default)]
    pub data: DataSection,
    /// The generated toy benchmark and its warm-started tiny model (the CPU demo); when
    /// present, it provides the data and the base model.
    #[serde(default)]
    pub toy: Option<ToySection>,
    /// Prompt and trace settings shared by sampling and evaluation.
    #[serde(default)]
    pub prompt: PromptSection,
    /// Hard-problem selection (once, with the base model).
    #[serde(default)]
    pub hard: HardSection,
    /// Sampling on the hard problems in each iteration.
    #[serde(default)]
    pub sampling: SamplingSection,
    /// Which passing samples are kept for training.
    #[serde(default)]
    pub keep: KeepSection,
    /// Fine-tuning of the base model on each iteration's kept set.
    #[serde(default)]
    pub train: TrainSection,
    /// Dev and test evaluation.
    #[serde(default)]
    pub eval: EvalSection,
    /// Iterations, early stopping, seed.
    #[serde(rename = "loop", default)]
    pub run: LoopSection,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The base model: a model directory or hub id (embedded engine and trainer). With `[toy]`
    /// this is ignored and may be left out (the warm-started toy model is the base).
    #[serde(default)]
    pub base: String,
    /// OpenAI-compatible servers (vLLM, SGLang, `nxt serve`) that host the base model and
    /// load each iteration's adapter through `POST /v1/load_lora_adapter`. Empty: the embedded
    /// engine samples.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Model name of the base on the servers (default: what `GET /v1/models` lists first).
    #[serde(default)]
    pub served_model: Option<String>,
    /// Path of the run directory as the servers see it (adapter paths sent to
    /// `/v1/load_lora_adapter` are rewritten from the local run directory to this prefix; for
    /// clusters whose servers mount the shared file system elsewhere).
    #[serde(default)]
    pub server_run_dir: Option<PathBuf>,
    /// Requests in flight per server.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The proxy (student) model for the rationale score on the test sets (optional).
    #[serde(default)]
    pub proxy: Option<String>,
}

fn default_concurrency() -> usize {
    16
}

/// `[data]`. A data source is `BENCHMARK:SPLIT` (`mbpp-r:train`, `mbpp-r:validation`,
/// `mbpp-r:test`, `hefix+`) or a path to a JSONL file of repair tasks; relative paths are
/// relative to the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// Training tasks (hard problems are chosen among them).
    pub train: String,
    /// Dev tasks (model selection).
    pub dev: String,
    /// Test sets, evaluated once for the base model and the chosen iteration.
    pub test: Vec<String>,
    /// Benchmark data directory (default: `NXT_DATA_DIR`, then the XDG data directory).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Use at most this many training tasks (in file order; for smoke runs).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Use at most this many dev tasks.
    #[serde(default)]
    pub dev_limit: Option<usize>,
    /// Use at most this many tasks of each test set.
    #[serde(default)]
    pub test_limit: Option<usize>,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            train: "mbpp-r:train".into(),
            dev: "mbpp-r:validation".into(),
            test: vec!["mbpp-r:test".into(), "hefix+".into()],
            data_dir: None,
            train_limit: None,
            dev_limit: None,
            test_limit: None,
        }
    }
}

/// `[toy]`: the generated toy benchmark (see `nxt_selftrain::toy`) and the warm start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToySection {
    /// Generator and tiny-model options (the fields of `toy::ToyOptions`; defaults for the
    /// ones left out).
    #[serde(default)]
    pub options: serde_json::Value,
    /// Warm start of the random tiny model on the hand-made repairs (full fine-tuning).
    #[serde(default)]
    pub warm_start: WarmStartSection,
}

/// `[toy.warm_start]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmStartSection {
    /// Epochs over the hand-made repairs.
    #[serde(default = "default_warm_epochs")]
    pub epochs: usize,
    /// Learning rate.
    #[serde(default = "default_warm_lr")]
    pub lr: f64,
    /// Micro-batch size.
    #[serde(default = "default_warm_batch")]
    pub batch_size: usize,
    /// Warmup steps.
    #[serde(default)]
    pub warmup_steps: usize,
}

fn default_warm_epochs() -> usize {
    30
}
fn default_warm_lr() -> f64 {
    3e-3
}
fn default_warm_batch() -> usize {
    4
}

impl Default for WarmStartSection {
    fn default() -> Self {
        Self {
            epochs: default_warm_epochs(),
            lr: default_warm_lr(),
            batch_size: default_warm_batch(),
            warmup_steps: 0,
        }
    }
}

/// `[prompt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSection {
    /// `chat` (instruction-tuned models) or `completion` (base models, the toy).
    #[serde(default = "default_layout")]
    pub layout: Layout,
    /// Few-shot exemplars in the prompt. The paper prompts the base model few-shot and the
    /// fine-tuned one zero-shot; one setting for both keeps training prompts and evaluation
    /// prompts identical.
    #[serde(default)]
    pub few_shot: bool,
    /// Show the trace while sampling training data (NExT: yes).
    #[serde(default = "yes")]
    pub with_trace: bool,
    /// Trace representation: `inline` (NExT), `scratchpad` or `json`.
    #[serde(default)]
    pub trace_format: nxt_trace::Format,
    /// Most characters of the rendered trace (None: the renderer's default budget).
    #[serde(default)]
    pub trace_budget: Option<usize>,
    /// Most new tokens per completion.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

fn default_layout() -> Layout {
    Layout::Chat
}
fn yes() -> bool {
    true
}
fn default_max_tokens() -> usize {
    1024
}

impl Default for PromptSection {
    fn default() -> Self {
        Self {
            layout: default_layout(),
            few_shot: false,
            with_trace: true,
            trace_format: nxt_trace::Format::default(),
            trace_budget: None,
            max_tokens: default_max_tokens(),
        }
    }
}

/// `[hard]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardSection {
    /// Samples per training task from the base model.
    #[serde(default = "default_samples")]
    pub samples_per_task: usize,
    /// Keep tasks whose estimated pass@1 (c / n) is below this.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_samples() -> usize {
    32
}
fn default_threshold() -> f64 {
    0.1
}

impl Default for HardSection {
    fn default() -> Self {
        Self {
            samples_per_task: default_samples(),
            threshold: default_threshold(),
        }
    }
}

/// `[sampling]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSection {
    /// Samples per hard task per iteration.
    #[serde(default = "default_samples")]
    pub samples_per_task: usize,
    /// Temperature (also of the hard-problem stage).
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Top-k (0 disables).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Top-p (1.0 disables).
    #[serde(default = "one")]
    pub top_p: f32,
    /// Iteration 1 samples from the base model, exactly what the hard-problem stage did:
    /// reuse those samples (same model, prompt and temperature) instead of drawing new ones.
    #[serde(default = "yes")]
    pub reuse_hard_samples: bool,
    /// Requests handed to the generator at once.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_temperature() -> f32 {
    0.7
}
fn default_top_k() -> usize {
    40
}
fn one() -> f32 {
    1.0
}
fn default_batch() -> usize {
    16
}

impl Default for SamplingSection {
    fn default() -> Self {
        Self {
            samples_per_task: default_samples(),
            temperature: default_temperature(),
            top_k: default_top_k(),
            top_p: 1.0,
            reuse_hard_samples: true,
            batch: default_batch(),
        }
    }
}

/// Which passing samples are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeepRule {
    /// Every sample whose fix passes the task's tests (NExT).
    #[default]
    Passing,
    /// Passing samples whose rationale does not contradict the trace (`nxt-faithful`): a
    /// rationale with a contradicted claim is dropped, one without checkable claims is kept.
    PassingAndFaithful,
}

/// `[keep]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepSection {
    /// The rule.
    #[serde(default)]
    pub keep: KeepRule,
    /// At most this many kept samples per task (after dedupe).
    #[serde(default = "default_max_per_task")]
    pub max_per_task: usize,
    /// Drop samples whose normalised code and rationale equal an earlier kept one's.
    #[serde(default = "yes")]
    pub dedupe: bool,
}

fn default_max_per_task() -> usize {
    10
}

impl Default for KeepSection {
    fn default() -> Self {
        Self {
            keep: KeepRule::Passing,
            max_per_task: default_max_per_task(),
            dedupe: true,
        }
    }
}

/// Which trainer runs each iteration's fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TrainerKind {
    /// `nxt-train` in-process.
    #[default]
    Embedded,
    /// The TRL hand-off (`trl sft`, or `launcher`).
    Trl,
}

/// `[train]`: the `nxt train` settings of each iteration (always from the base weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// `embedded` or `trl`.
    #[serde(default)]
    pub trainer: TrainerKind,
    /// Launcher command template for `trl` (`{config}` and `{out}` are replaced).
    #[serde(default)]
    pub launcher: Option<String>,
    /// Full fine-tuning instead of LoRA.
    #[serde(default)]
    pub full: bool,
    /// LoRA rank.
    #[serde(default = "default_r")]
    pub lora_r: usize,
    /// LoRA alpha (default 2r).
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    /// rsLoRA scaling.
    #[serde(default)]
    pub rslora: bool,
    /// LoRA dropout.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Target modules (default: all seven projections).
    #[serde(default)]
    pub target_modules: Option<Vec<String>>,
    /// Learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Epochs over the kept set.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Micro-batch size.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[serde(default = "default_grad_accum")]
    pub grad_accum: usize,
    /// Longest example in tokens (prompt + completion).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Warmup steps.
    #[serde(default)]
    pub warmup_steps: usize,
    /// `constant` or `cosine`.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Gradient-norm clip.
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
}

fn default_r() -> usize {
    16
}
fn default_lr() -> f64 {
    1e-4
}
fn default_epochs() -> usize {
    2
}
fn default_batch_size() -> usize {
    4
}
fn default_grad_accum() -> usize {
    4
}
fn default_max_length() -> usize {
    2048
}
fn default_schedule() -> String {
    "cosine".into()
}
fn default_clip() -> f64 {
    1.0
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            trainer: TrainerKind::Embedded,
            launcher: None,
            full: false,
            lora_r: default_r(),
            lora_alpha: None,
            rslora: false,
            lora_dropout: 0.0,
            target_modules: None,
            lr: default_lr(),
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            grad_accum: default_grad_accum(),
            max_length: default_max_length(),
            warmup_steps: 0,
            schedule: default_schedule(),
            weight_decay: 0.0,
            max_grad_norm: default_clip(),
        }
    }
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Samples per dev task (pass@k).
    #[serde(default = "default_samples")]
    pub dev_samples: usize,
    /// Samples per test task.
    #[serde(default = "default_samples")]
    pub test_samples: usize,
    /// Evaluation temperature.
    #[serde(default = "default_eval_temperature")]
    pub temperature: f32,
    /// The k of pass@k (those with k <= n are reported).
    #[serde(default = "default_ks")]
    pub ks: Vec<usize>,
    /// Greedy pass@1 as well.
    #[serde(default = "yes")]
    pub greedy: bool,
    /// The dev metric that picks the best iteration and drives early stopping: `pass@1`
    /// (unbiased, from the samples) or `greedy`.
    #[serde(default = "default_select_by")]
    pub select_by: String,
    /// Test sets also without the trace in the prompt.
    #[serde(default = "yes")]
    pub without_trace: bool,
    /// Dev (the base's and every iteration's) also without the trace in the prompt, as
    /// stages `base/dev-no-trace` and `iter-i/dev-no-trace`; the best iteration is still
    /// chosen on dev with the trace.
    #[serde(default)]
    pub dev_without_trace: bool,
}

fn default_eval_temperature() -> f32 {
    0.8
}
fn default_ks() -> Vec<usize> {
    vec![1, 5, 10, 25]
}
fn default_select_by() -> String {
    "pass@1".into()
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            dev_samples: default_samples(),
            test_samples: default_samples(),
            temperature: default_eval_temperature(),
            ks: default_ks(),
            greedy: true,
            select_by: default_select_by(),
            without_trace: true,
            dev_without_trace: false,
        }
    }
}

/// `[loop]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSection {
    /// Most iterations.
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Stop after this many consecutive iterations whose dev score falls below the best so far.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Base seed of sampling, data order and LoRA init.
    #[serde(default)]
    pub seed: u64,
}

fn default_iterations() -> usize {
    3
}
fn default_patience() -> usize {
    1
}

impl Default for LoopSection {
    fn default() -> Self {
        Self {
            iterations: default_iterations(),
            patience: default_patience(),
            seed: 0,
        }
    }
}

/// The run directory of the configuration file `config` when no `--run-dir` is given:
/// `runs/selftrain-<file stem>` (`examples/toy-selftrain.toml` ->
/// `runs/selftrain-toy-selftrain`), beside the evaluations of [`nxt_core::run_dir`].
pub fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "run".into());
    PathBuf::from(nxt_core::run_dir::RUNS).join(format!("selftrain-{stem}"))
}

impl SelftrainConfig {
    /// Reads and validates a TOML file; relative data paths become relative to its folder.
    pub fn from_file(path: &Path) -> Result<Self, SelftrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| SelftrainError::Config {
            key: String::new(),
            message: format!("{}: cannot read: {e}", path.display()),
        })?;
        let mut cfg = Self::from_toml(&text).map_err(|e| match e {
            SelftrainError::Config { key, message } => SelftrainError::Config {
                key,
                message: format!("{}: {message}", path.display()),
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, SelftrainError> {
        let cfg: SelftrainConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let key = key_of_toml_error(text, &e);
            SelftrainError::Config { key, message }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |s: &mut String| {
            if is_path_source(s) && Path::new(s.as_str()).is_relative() {
                *s = base.join(s.as_str()).display().to_string();
            }
        };
        fix(&mut self.data.train);
        fix(&mut self.data.dev);
        for t in &mut self.data.test {
            fix(t);
        }
        if let Some(d) = &mut self.data.data_dir {
            if d.is_relative() {
                *d = base.join(&*d);
            }
        }
        if !self.model.base.is_empty()
            && !self.model.base.contains("://")
            && (self.model.base.starts_with('.') || self.model.base.starts_with(".."))
        {
            self.model.base = base.join(&self.model.base).display().to_string();
        }
    }

    /// Checks every setting; the error names the key.
    pub fn validate(&self) -> Result<(), SelftrainError> {
        let bad = |key: &str, message: String| {
            Err(SelftrainError::Config {
                key: key.into(),
                message,
            })
        };
        if self.toy.is_none() && self.model.base.trim().is_empty() {
            return bad(
                "model.base",
                "missing: give a model directory or hub id (or a [toy] section)".into(),
            );
        }
        for s in &self.model.servers {
            if !nxt_llm::is_server_spec(s) {
                return bad(
                    "model.servers",
                    format!("`{s}` is not an http(s):// URL of an OpenAI-compatible server"),
                );
            }
        }
        if !self.model.servers.is_empty() && self.toy.is_some() {
            return bad(
                "model.servers",
                "the toy demo samples with the embedded engine; remove [model].servers or [toy]"
                    .into(),
            );
        }
        if self.model.concurrency == 0 {
            return bad("model.concurrency", "must be at least 1".into());
        }
        if self.hard.samples_per_task == 0 {
            return bad("hard.samples_per_task", "must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.hard.threshold) {
            return bad(
                "hard.threshold",
                format!("{} is not a pass rate in [0, 1]", self.hard.threshold),
            );
        }
        if self.sampling.samples_per_task == 0 {
            return bad("sampling.samples_per_task", "must be at least 1".into());
        }
        if !(self.sampling.temperature > 0.0 && self.sampling.temperature <= 2.0) {
            return bad(
                "sampling.temperature",
                format!(
                    "{} is outside (0, 2]: self-training needs diverse samples",
                    self.sampling.temperature
                ),
            );
        }
        if !(self.sampling.top_p > 0.0 && self.sampling.top_p <= 1.0) {
            return bad(
                "sampling.top_p",
                format!("{} is outside (0, 1]", self.sampling.top_p),
            );
        }
        if self.sampling.batch == 0 {
            return bad("sampling.batch", "must be at least 1".into());
        }
        if self.prompt.max_tokens == 0 {
            return bad("prompt.max_tokens", "must be at least 1".into());
        }
        if self.keep.max_per_task == 0 {
            return bad("keep.max_per_task", "must be at least 1".into());
        }
        let t = &self.train;
        if t.trainer == TrainerKind::Trl && !self.model.servers.is_empty() && t.full {
            return bad(
                "train.full",
                "full fine-tuning with servers would need a server restart per iteration; use LoRA"
                    .into(),
            );
        }
        if t.lora_r == 0 {
            return bad("train.lora_r", "must be at least 1".into());
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad(
                "train.lr",
                format!("{} is not a positive learning rate", t.lr),
            );
        }
        if t.epochs == 0 {
            return bad("train.epochs", "must be at least 1".into());
        }
        if t.batch_size == 0 {
            return bad("train.batch_size", "must be at least 1".into());
        }
        if t.grad_accum == 0 {
            return bad("train.grad_accum", "must be at least 1".into());
        }
        if t.max_length < 16 {
            return bad("train.max_length", "must be at least 16 tokens".into());
        }
        if t.schedule != "constant" && t.schedule != "cosine" {
            return bad(
                "train.schedule",
                format!("`{}`: expected `constant` or `cosine`", t.schedule),
            );
        }
        let e = &self.eval;
        if e.dev_samples == 0 {
            return bad("eval.dev_samples", "must be at least 1".into());
        }
        if e.test_samples == 0 {
            return bad("eval.test_samples", "must be at least 1".into());
        }
        if e.ks.is_empty() || e.ks.contains(&0) {
            return bad("eval.ks", "give k values of at least 1".into());
        }
        if e.select_by != "pass@1" && e.select_by != "greedy" {
            return bad(
                "eval.select_by",
                format!("`{}`: expected `pass@1` or `greedy`", e.select_by),
            );
        }
        if e.select_by == "greedy" && !e.greedy {
            return bad("eval.select_by", "`greedy` needs eval.greedy = true".into());
        }
        if self.run.iterations == 0 {
            return bad("loop.iterations", "must be at least 1".into());
        }
        if self.run.patience == 0 {
            return bad("loop.patience", "must be at least 1".into());
        }
        if self.toy.is_none() {
            for (key, src) in [
                ("data.train", &self.data.train),
                ("data.dev", &self.data.dev),
            ] {
                check_source(key, src)?;
            }
            for src in &self.data.test {
                check_source("data.test", src)?;
            }
        }
        Ok(())
    }

    /// The part of the configuration that decides results: a run directory holds one of
    /// these. Settings safe to change on a rerun (iterations upward, patience, batch and
    /// concurrency, limits of the test sets) are left out; [`SelftrainConfig::check_resume`]
    /// handles them.
    pub fn identity(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            if let Some(l) = o.get_mut("loop").and_then(|l| l.as_object_mut()) {
                l.remove("iterations");
                l.remove("patience");
            }
            if let Some(s) = o.get_mut("sampling").and_then(|l| l.as_object_mut()) {
                s.remove("batch");
            }
            if let Some(m) = o.get_mut("model").and_then(|l| l.as_object_mut()) {
                m.remove("concurrency");
                m.remove("servers");
                m.remove("server_run_dir");
                m.remove("proxy");
            }
            if let Some(d) = o.get_mut("data").and_then(|l| l.as_object_mut()) {
                d.remove("test");
                d.remove("test_limit");
                d.remove("data_dir");
            }
            if let Some(e) = o.get_mut("eval").and_then(|l| l.as_object_mut()) {
                e.remove("ks");
                e.remove("test_samples");
                e.remove("without_trace");
                e.remove("dev_without_trace");
            }
        }
        v
    }

    /// Refuses a rerun whose result-deciding settings differ from the stored ones, naming the
    /// first differing key with both values.
    pub fn check_resume(&self, stored: &serde_json::Value) -> Result<(), SelftrainError> {
        if let Some((key, old, new)) = first_difference("", stored, &self.identity()) {
            return Err(SelftrainError::ConfigChanged { key, old, new });
        }
        Ok(())
    }
}

/// Whether a data source names a file rather than `BENCHMARK[:SPLIT]`.
pub fn is_path_source(s: &str) -> bool {
    s.ends_with(".jsonl") || s.contains('/') && !s.contains(':')
}

fn check_source(key: &str, src: &str) -> Result<(), SelftrainError> {
    if is_path_source(src) {
        return Ok(());
    }
    let (bench, split) = src.split_once(':').unwrap_or((src, ""));
    let benchmark = nxt_data::Benchmark::parse(bench)
        .ok()
        .filter(|b| b.is_repair());
    let Some(benchmark) = benchmark else {
        let names: Vec<String> = nxt_data::Benchmark::repair()
            .map(|b| match b {
                nxt_data::Benchmark::MbppR => format!("{}:SPLIT", b.name()),
                _ => b.name().to_string(),
            })
            .collect();
        return Err(SelftrainError::Config {
            key: key.into(),
            message: format!(
                "`{src}`: unknown benchmark `{bench}` (expected {} or a .jsonl file of repair tasks)",
                names.join(", ")
            ),
        });
    };
    if benchmark == nxt_data::Benchmark::MbppR && nxt_data::Split::parse(split).is_none() {
        return Err(SelftrainError::Config {
            key: key.into(),
            message: format!(
                "`{src}`: mbpp-r needs a split: mbpp-r:train, mbpp-r:validation or mbpp-r:test"
            ),
        });
    }
    Ok(())
}

/// The first key (dotted path) where two JSON values differ.
pub fn first_difference(
    prefix: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let null = Value::Null;
                let va = x.get(k).unwrap_or(&null);
                let vb = y.get(k).unwrap_or(&null);
                if let Some(d) = first_difference(&p, va, vb) {
                    return Some(d);
                }
            }
            None
        }
        _ if a == b => None,
        _ => Some((prefix.to_string(), a.to_string(), b.to_string())),
    }
}

/// Best-effort dotted key of a TOML deserialisation error (from its span).
fn key_of_toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return String::new();
    };
    let mut table = String::new();
    let mut key = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if offset > span.start {
            break;
        }
        if trimmed.starts_with('[') {
            table = trimmed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .to_string();
            key.clear();
        } else if let Some((k, _)) = trimmed.split_once('=') {
            key = k.trim().to_string();
        }
        offset += line.len();
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_run_dirs_are_named_after_the_config_file() {
        assert_eq!(
            default_run_dir(Path::new("examples/toy-selftrain.toml")),
            Path::new("runs/selftrain-toy-selftrain")
        );
        assert_eq!(
            default_run_dir(Path::new("/")),
            Path::new("runs/selftrain-run")
        );
    }

    const MIN: &str = "[model]\nbase = \"Qwen/Qwen2.5-Coder-0.5B-Instruct\"\n";

    #[test]
    fn defaults_follow_the_notes() {
        let c = SelftrainConfig::from_toml(MIN).unwrap();
        assert_eq!(c.hard.samples_per_task, 32);
        assert_eq!(c.hard.threshold, 0.1);
        assert_eq!(c.sampling.temperature, 0.7);
        assert_eq!(c.sampling.top_k, 40);
        assert_eq!(c.keep.max_per_task, 10);
        assert_eq!(c.run.iterations, 3);
        assert_eq!(c.data.dev, "mbpp-r:validation");
    }

    #[test]
    fn keep_rule_passing_and_faithful() {
        let c = SelftrainConfig::from_toml(MIN).unwrap();
        assert_eq!(c.keep.keep, KeepRule::Passing);
        let c =
            SelftrainConfig::from_toml(&format!("{MIN}[keep]\nkeep = \"passing-and-faithful\"\n"))
                .unwrap();
        assert_eq!(c.keep.keep, KeepRule::PassingAndFaithful);
        let e = SelftrainConfig::from_toml(&format!("{MIN}[keep]\nkeep = \"faithful\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("keep") && e.contains("passing-and-faithful"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = SelftrainConfig::from_toml(&format!("{MIN}[sampling]\ntemperature = 0.0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sampling.temperature"), "{e}");
        let e = SelftrainConfig::from_toml(&format!("{MIN}[keep]\nmax_per_tsk = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_per_tsk"), "{e}");
        let e = SelftrainConfig::from_toml(&format!(
            "{MIN}[data]\ntrain = \"mbpp-r:bogus\"\ndev = \"hefix+\"\ntest = []\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.train"), "{e}");
        let e = SelftrainConfig::from_toml("[train]\nlr = 1e-4\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model"), "{e}");
    }

    #[test]
    fn resume_check_names_the_changed_key_and_allows_safe_ones() {
        let a = SelftrainConfig::from_toml(MIN).unwrap();
        let mut b = a.clone();
        b.run.iterations = 5;
        b.sampling.batch = 3;
        b.check_resume(&a.identity()).unwrap();
        b.train.lr = 3e-4;
        let e = b.check_resume(&a.identity()).unwrap_err().to_string();
        assert!(
            e.contains("train.lr") && e.contains("0.0001") && e.contains("0.0003"),
            "{e}"
        );
    }
}
