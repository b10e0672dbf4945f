//! `nxt-train`: supervised fine-tuning (LoRA and full) on `nxt-engine`'s differentiable model (no
//! HTTP stack), PEFT adapters out, and a hand-off to TRL for multi-GPU training.
//!
//! One contract for every trainer: `train.jsonl` of `{"prompt", "completion"}` lines in,
//! a PEFT LoRA adapter (or, with `full`, a Hugging Face model directory) out, with
//! `metrics.jsonl` (one line per optimiser step) and `manifest.json` (hashes of the data and
//! base weights, every setting) beside it.
//!
//! ```no_run
//! use nxt_train::{train, TrainConfig};
//! let mut cfg = TrainConfig::new("Qwen/Qwen2.5-Coder-0.5B-Instruct", "train.jsonl", "runs/sft");
//! cfg.lora_r = 16;
//! cfg.epochs = 2;
//! let summary = train(&cfg, &mut |m| eprintln!("step {} loss {:.4}", m.step, m.loss))?;
//! println!("adapter in {:?}", summary.adapter_dir);
//! # Ok::<(), nxt_train::TrainError>(())
//! ```
//!
//! Design:
//! - Data ([`data`]) is tokenised as TRL does for prompt-completion data, so losses and
//!   masks compare between the two trainers.
//! - The embedded trainer ([`embedded`]) builds LoRA branches on a frozen base whose
//!   projections go through the engine's frozen-weight matmul (no gradient is computed or
//!   kept for base weights), or makes every weight a variable for full fine-tuning. The loss
//!   of an optimiser step is the summed completion-token NLL of all its micro-batches divided
//!   by their total completion tokens. AdamW ([`optim`]) keeps F32 moments that are saved.
//! - A run is resumable: checkpoints (weights, moments, dropout state, step) are written
//!   atomically under `out/checkpoint/`; rerunning the same settings continues from the
//!   last one, bit for bit on the CPU; a changed setting is refused, naming it.
//! - `--backend trl` ([`trl`]) writes an equivalent `sft.yaml`, runs a launcher command and
//!   validates the adapter it wrote; step counts, losses and `metrics.jsonl` come from the
//!   `trainer_state.json` transformers leaves. The launcher runs in a process group of its own
//!   that dies with nxt, even on `kill -9` ([`launcher`]).

pub mod config;
pub mod data;
pub mod embedded;
pub mod error;
mod files;
pub mod fused_ce;
mod heap;
pub mod launcher;
pub mod loss;
pub mod manifest;
pub mod optim;
pub mod trl;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use config::{Backend, Schedule, TrainConfig, DEFAULT_TARGET_MODULES, DEFAULT_TRL_LAUNCHER};
pub use error::TrainError;

/// What one optimiser step did (also a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based optimiser step.
    pub step: usize,
    /// Steps the run will make.
    pub total_steps: usize,
    /// Epochs done (fractional).
    pub epoch: f64,
    /// Mean completion-token NLL of the step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Completion tokens the loss was computed on.
    pub completion_tokens: usize,
    /// Sequence tokens (prompt + completion, no padding) processed.
    pub tokens: usize,
    /// Sequence tokens per second of this step.
    pub tokens_per_s: f64,
    /// Training wall time so far, seconds (across resumes).
    pub wall_s: f64,
}

/// The result of a training run (`train_summary.json` in the output directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// The output directory.
    pub out: PathBuf,
    /// The PEFT adapter directory (LoRA).
    pub adapter_dir: Option<PathBuf>,
    /// The model directory (full fine-tuning).
    pub model_dir: Option<PathBuf>,
    /// `embedded` or `trl`.
    pub backend: String,
    /// Optimiser steps made.
    pub steps: usize,
    /// Examples in the data file.
    pub examples: usize,
    /// Examples processed (repeats counted).
    pub examples_seen: u64,
    /// Completion tokens trained on.
    pub completion_tokens: u64,
    /// Sequence tokens processed.
    pub tokens: u64,
    /// Loss of the last step (NaN when the trainer did not report it; `null` in JSON).
    #[serde(deserialize_with = "nan_if_null")]
    pub final_loss: f64,
    /// Mean of the step losses (NaN when unknown).
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_loss: f64,
    /// Examples truncated to `max_length`.
    pub truncated: usize,
    /// Examples whose prompt tokenisation disagrees with the full one at the boundary.
    pub boundary_mismatches: usize,
    /// Training wall time, seconds.
    pub wall_s: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Trains (or resumes, or returns the summary of a finished run in `cfg.out`). `progress` is
/// called after every optimiser step of the embedded trainer.
pub fn train(
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&StepMetrics),
) -> Result<TrainSummary, TrainError> {
    cfg.validate()?;
    match &cfg.backend {
        Backend::Embedded => embedded::run(cfg, progress),
        Backend::Trl { launcher } => trl::run(cfg, launcher),
    }
}
