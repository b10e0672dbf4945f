//! The M-step: one fine-tuning job through `nxt-train` (embedded, or the TRL hand-off), always
//! from the base weights, resumable in its output directory.

use std::path::{Path, PathBuf};

use nxt_core::Progress;
use nxt_engine::{ChatTemplate, TokenizerConfig};
use nxt_llm::Prompt;

use crate::config::{TrainSection, TrainerKind};
use crate::error::SelftrainError;

/// One training job.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The model trained from (always the base: a fresh adapter each iteration).
    pub base: String,
    /// `train.jsonl` of prompt/completion pairs.
    pub data: PathBuf,
    /// Output directory (adapter or model, metrics, manifest, checkpoints).
    pub out: PathBuf,
    /// Full fine-tuning instead of LoRA.
    pub full: bool,
    /// Epochs.
    pub epochs: usize,
    /// Learning rate.
    pub lr: f64,
    /// Micro-batch size.
    pub batch_size: usize,
    /// Micro-batches per step.
    pub grad_accum: usize,
    /// Warmup steps.
    pub warmup_steps: usize,
    /// `constant` or `cosine`.
    pub schedule: String,
    /// Seed of data order and LoRA init.
    pub seed: u64,
}

/// What a training job produced.
#[derive(Debug, Clone)]
pub struct TrainResult {
    /// The LoRA adapter directory (LoRA runs).
    pub adapter_dir: Option<PathBuf>,
    /// The model directory (full fine-tuning).
    pub model_dir: Option<PathBuf>,
    /// Optimiser steps.
    pub steps: usize,
    /// Mean loss of the last step.
    pub final_loss: f64,
    /// Mean loss over all steps.
    pub mean_loss: f64,
    /// sha256 of the base weights the trainer started from.
    pub base_weights_sha256: Option<String>,
    /// The trainer's summary as JSON.
    pub summary: serde_json::Value,
    /// The lines of `metrics.jsonl`.
    pub metrics: Vec<serde_json::Value>,
}

/// Runs (or resumes) one training job with the settings of `[train]`.
pub fn run_training(
    section: &TrainSection,
    job: &TrainJob,
    stage: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainResult, SelftrainError> {
    let backend = match section.trainer {
        TrainerKind::Embedded => nxt_train::Backend::Embedded,
        TrainerKind::Trl => nxt_train::Backend::Trl {
            launcher: section
                .launcher
                .clone()
                .unwrap_or_else(|| nxt_train::DEFAULT_TRL_LAUNCHER.to_string()),
        },
    };
    let mut cfg = nxt_train::TrainConfig::new(job.base.clone(), job.data.clone(), job.out.clone());
    cfg.full = job.full;
    cfg.lora_r = section.lora_r;
    cfg.lora_alpha = section.lora_alpha.unwrap_or(2.0 * section.lora_r as f64);
    cfg.rslora = section.rslora;
    cfg.lora_dropout = section.lora_dropout;
    if let Some(t) = &section.target_modules {
        cfg.target_modules = t.clone();
    }
    cfg.lr = job.lr;
    cfg.epochs = job.epochs;
    cfg.batch_size = job.batch_size;
    cfg.grad_accum = job.grad_accum;
    cfg.max_length = section.max_length;
    cfg.warmup_steps = job.warmup_steps;
    cfg.schedule = job
        .schedule
        .parse()
        .map_err(|m: String| SelftrainError::Config {
            key: "train.schedule".into(),
            message: m,
        })?;
    cfg.weight_decay = section.weight_decay;
    cfg.max_grad_norm = section.max_grad_norm;
    cfg.save_every = 20;
    cfg.seed = job.seed;
    cfg.backend = backend;
    let summary = nxt_train::train(&cfg, &mut |m: &nxt_train::StepMetrics| {
        progress(&Progress {
            stage: "train",
            done: m.step,
            total: m.total_steps,
            message: format!("loss {:.4}", m.loss),
        })
    })
    .map_err(|source| SelftrainError::Train {
        stage: stage.to_string(),
        source,
    })?;
    let metrics = read_metrics(&job.out.join("metrics.jsonl"))?;
    Ok(TrainResult {
        adapter_dir: summary.adapter_dir.clone(),
        model_dir: summary.model_dir.clone(),
        steps: summary.steps,
        final_loss: summary.final_loss,
        mean_loss: summary.mean_loss,
        base_weights_sha256: base_weights_sha256(&job.out),
        summary: serde_json::to_value(&summary).unwrap_or(serde_json::Value::Null),
        metrics,
    })
}

/// One digest of the base weights the trainer recorded in its manifest (over the sorted
/// per-file sha256s), so iterations can be checked to start from the same weights.
fn base_weights_sha256(out: &Path) -> Option<String> {
    let text = std::fs::read_to_string(out.join(nxt_train::manifest::MANIFEST_FILE)).ok()?;
    let m: nxt_train::manifest::Manifest = serde_json::from_str(&text).ok()?;
    let joined: String = m
        .base_weights_sha256
        .iter()
        .map(|(f, h)| format!("{f}={h}\n"))
        .collect();
    Some(nxt_data::registry::sha256_bytes(joined.as_bytes()))
}

fn read_metrics(path: &Path) -> Result<Vec<serde_json::Value>, SelftrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| SelftrainError::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Renders a chat prompt with the model directory's chat template, as the engine does before
/// tokenising: the training prompt is the exact text the sampler fed the model.
pub fn render_chat(model_dir: &Path, prompt: &Prompt) -> Result<String, SelftrainError> {
    let Prompt::Chat(msgs) = prompt else {
        if let Prompt::Text(t) = prompt {
            return Ok(t.clone());
        }
        return Ok(String::new());
    };
    let tcfg = TokenizerConfig::from_dir(model_dir)?;
    let origin = model_dir
        .join("tokenizer_config.json")
        .display()
        .to_string();
    let src = tcfg
        .chat_template
        .clone()
        .ok_or_else(|| SelftrainError::Config {
            key: "prompt.layout".into(),
            message: format!(
                "{}: the base model has no chat template; use layout = \"completion\"",
                model_dir.display()
            ),
        })?;
    let t = ChatTemplate::new(
        &src,
        tcfg.bos_token.clone().unwrap_or_default(),
        tcfg.eos_token.clone().unwrap_or_default(),
        &origin,
    )?;
    Ok(t.render(msgs, true)?)
}
