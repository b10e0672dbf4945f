//! Training settings ([`TrainConfig`]): one struct for the library, the command line and the
//! manifest of a run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The seven projections of a Qwen2/Llama decoder layer (the default LoRA targets).
pub const DEFAULT_TARGET_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Learning-rate schedule after the linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Constant learning rate.
    #[default]
    Constant,
    /// Cosine decay to zero at the last step.
    Cosine,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            _ => Err(format!("unknown schedule `{s}` (constant or cosine)")),
        }
    }
}

/// Which trainer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Backend {
    /// The embedded candle trainer of this crate.
    #[default]
    Embedded,
    /// Hand-off to TRL (or anything that reads the same `sft.yaml`): `launcher` is a command
    /// template run through `sh -c`, with `{config}` (the `sft.yaml` path) and `{out}` (the
    /// output directory) replaced by shell-quoted paths.
    Trl {
        /// The command template, e.g. `trl sft --config {config}`.
        launcher: String,
    },
}

/// The launcher used by `--backend trl` when none is given.
pub const DEFAULT_TRL_LAUNCHER: &str = "trl sft --config {config}";

/// Every setting of a training run. Serialised into `manifest.json`; a rerun in the same
/// output directory must have the same values (it resumes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Base model: a model directory or a hub id.
    pub model: String,
    /// `train.jsonl`: one `{"prompt": str, "completion": str}` per line.
    pub data: PathBuf,
    /// Output directory (adapter or model, metrics, manifest, checkpoints).
    pub out: PathBuf,
    /// LoRA rank.
    pub lora_r: usize,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// rsLoRA scaling (`alpha / sqrt(r)` instead of `alpha / r`).
    pub rslora: bool,
    /// Dropout on the LoRA branch's input during training.
    pub lora_dropout: f64,
    /// Projections that get a LoRA branch.
    pub target_modules: Vec<String>,
    /// Full fine-tuning (every weight trained, a model directory out) instead of LoRA.
    pub full: bool,
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the data (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Optimiser steps to run (overrides `epochs`; the data is cycled as needed).
    pub max_steps: Option<usize>,
    /// Examples per micro-batch (padded to the longest, masked).
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Tokens per example (prompt + completion + EOS); longer ones are cut, keeping the start.
    pub max_length: usize,
    /// Linear warm-up from 0 over this many optimiser steps.
    pub warmup_steps: usize,
    /// Schedule after the warm-up.
    pub schedule: Schedule,
    /// Decoupled (AdamW) weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clipping threshold (0: no clipping).
    pub max_grad_norm: f64,
    /// Write a checkpoint every this many optimiser steps (0: only at the end).
    pub save_every: usize,
    /// Seed of the data order, the LoRA initialisation and dropout.
    pub seed: u64,
    /// Device: `cpu` or `cuda:N` (CUDA needs the `cuda` feature).
    pub device: String,
    /// Which trainer runs.
    pub backend: Backend,
}

impl TrainConfig {
    /// The defaults of `nxt train` for a model, data file and output directory.
    pub fn new(
        model: impl Into<String>,
        data: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
    ) -> Self {
        TrainConfig {
            model: model.into(),
            data: data.into(),
            out: out.into(),
            lora_r: 16,
            lora_alpha: 32.0,
            rslora: false,
            lora_dropout: 0.0,
            target_modules: DEFAULT_TARGET_MODULES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            full: false,
            lr: 1e-4,
            epochs: 1,
            max_steps: None,
            batch_size: 1,
            grad_accum: 1,
            max_length: 1024,
            warmup_steps: 0,
            schedule: Schedule::Constant,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            save_every: 0,
            seed: 0,
            device: "cpu".into(),
            backend: Backend::Embedded,
        }
    }

    /// Checks every setting; the error names the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.model.trim().is_empty() {
            return bad("model: empty".into());
        }
        if !self.full {
            if self.lora_r == 0 {
                return bad("lora_r: must be at least 1".into());
            }
            if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
                return bad(format!("lora_alpha: must be > 0, got {}", self.lora_alpha));
            }
            if !(0.0..1.0).contains(&self.lora_dropout) {
                return bad(format!(
                    "lora_dropout: must be in [0, 1), got {}",
                    self.lora_dropout
                ));
            }
            if self.target_modules.is_empty() {
                return bad("target_modules: empty".into());
            }
            for m in &self.target_modules {
                if !DEFAULT_TARGET_MODULES.contains(&m.as_str()) {
                    return bad(format!(
                        "target_modules: unknown module `{m}` (supported: {})",
                        DEFAULT_TARGET_MODULES.join(", ")
                    ));
                }
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr: must be > 0, got {}", self.lr));
        }
        if self.max_steps.is_none() && self.epochs == 0 {
            return bad("epochs: must be at least 1 (or set max_steps)".into());
        }
        if self.max_steps == Some(0) {
            return bad("max_steps: must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size: must be at least 1".into());
        }
        if self.grad_accum == 0 {
            return bad("grad_accum: must be at least 1".into());
        }
        if self.max_length < 2 {
            return bad(format!(
                "max_length: must be at least 2, got {}",
                self.max_length
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay: must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad(format!(
                "max_grad_norm: must be >= 0, got {}",
                self.max_grad_norm
            ));
        }
        self.device_spec()?;
        if let Backend::Trl { launcher } = &self.backend {
            if launcher.trim().is_empty() {
                return bad("launcher: empty command".into());
            }
        }
        Ok(())
    }

    /// The device: `None` for the CPU, `Some(ordinal)` for a CUDA GPU.
    pub fn device_spec(&self) -> Result<Option<usize>, TrainError> {
        let d = self.device.trim();
        if d == "cpu" {
            return Ok(None);
        }
        if d == "cuda" {
            return Ok(Some(0));
        }
        if let Some(n) = d.strip_prefix("cuda:") {
            return n.parse().map(Some).map_err(|_| {
                TrainError::Config(format!("device: `{d}` is not cpu, cuda or cuda:N"))
            });
        }
        Err(TrainError::Config(format!(
            "device: `{d}` is not cpu, cuda or cuda:N"
        )))
    }

    /// LoRA scaling: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn lora_scaling(&self) -> f64 {
        if self.rslora {
            self.lora_alpha / (self.lora_r as f64).sqrt()
        } else {
            self.lora_alpha / self.lora_r as f64
        }
    }
}
