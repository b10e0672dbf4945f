//! `nxt train`: fine-tune a model (LoRA or full) on prompt/completion data with the embedded
//! trainer, or hand the same settings to TRL (`--backend trl`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nxt_train::{Backend, Schedule, StepMetrics, TrainConfig, DEFAULT_TRL_LAUNCHER};

/// Arguments of `nxt train`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// Base model: a model directory or a hub id.
    #[arg(long, required = true)]
    model: Option<String>,
    /// Training data: JSONL, one {"prompt": str, "completion": str} per line (other fields,
    /// such as "id", are kept in manifest.json).
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// Output directory (adapter or model, metrics.jsonl, manifest.json, checkpoint/).
    /// Rerunning the same command with the same --out resumes.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    lora_r: usize,
    /// LoRA alpha (scaling alpha/r, or alpha/sqrt(r) with --rslora).
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    /// rsLoRA scaling.
    #[arg(long)]
    rslora: bool,
    /// Dropout on the LoRA input during training.
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// Projections that get LoRA branches (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    target_modules: Vec<String>,
    /// Full fine-tuning: every weight is trained and a model directory is written.
    #[arg(long)]
    full: bool,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Passes over the data (ignored with --max-steps).
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Optimiser steps (overrides --epochs; the data is cycled as needed).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Tokens per example (longer ones are cut, keeping the start, and counted).
    #[arg(long, default_value_t = 1024)]
    max_length: usize,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    warmup_steps: usize,
    /// Learning-rate schedule after the warm-up: constant or cosine.
    #[arg(long, default_value = "constant")]
    schedule: Schedule,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Gradient-norm clipping threshold (0: off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Checkpoint every N optimiser steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    save_every: usize,
    /// Seed of the data order, LoRA initialisation and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device for the embedded trainer: cpu, cuda or cuda:N (CUDA needs a build with
    /// `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// embedded (this binary trains) or trl (writes sft.yaml and runs --launcher).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "trl"])]
    backend: String,
    /// Command run for --backend trl (through sh -c); {config} is replaced by the sft.yaml
    /// path and {out} by the output directory. E.g. `accelerate launch --config_file
    /// zero2.yaml -m trl.scripts.sft --config {config}` or `sbatch --wait train.sh {config}`.
    #[arg(long, default_value = DEFAULT_TRL_LAUNCHER)]
    launcher: String,
}

impl Args {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let (Some(model), Some(data), Some(out)) = (&self.model, &self.data, &self.out) else {
            anyhow::bail!("--model, --data and --out are required");
        };
        let mut c = TrainConfig::new(model.clone(), data.clone(), out.clone());
        c.lora_r = self.lora_r;
        c.lora_alpha = self.lora_alpha;
        c.rslora = self.rslora;
        c.lora_dropout = self.lora_dropout;
        c.target_modules = self.target_modules.clone();
        c.full = self.full;
        c.lr = self.lr;
        c.epochs = self.epochs;
        c.max_steps = self.max_steps;
        c.batch_size = self.batch_size;
        c.grad_accum = self.grad_accum;
        c.max_length = self.max_length;
        c.warmup_steps = self.warmup_steps;
        c.schedule = self.schedule;
        c.weight_decay = self.weight_decay;
        c.max_grad_norm = self.max_grad_norm;
        c.save_every = self.save_every;
        c.seed = self.seed;
        c.device = self.device.clone();
        c.backend = match self.backend.as_str() {
            "trl" => Backend::Trl {
                launcher: self.launcher.clone(),
            },
            _ => Backend::Embedded,
        };
        Ok(c)
    }
}

/// Progress on a terminal (a bar with loss and tokens/s) or plain lines (at most one a
/// second, and the last step).
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            bar: None,
            last_line: None,
        }
    }

    fn step(&mut self, m: &StepMetrics) {
        if std::io::stderr().is_terminal() {
            let bar = self.bar.get_or_insert_with(|| {
                let b = ProgressBar::new(m.total_steps as u64);
                b.set_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:30}] {pos}/{len} steps (eta {eta}) {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_position(m.step.saturating_sub(1) as u64);
                b
            });
            bar.set_position(m.step as u64);
            bar.set_message(format!(
                "loss {:.4}  lr {:.2e}  |g| {:.3}  {:.0} tok/s",
                m.loss, m.lr, m.grad_norm, m.tokens_per_s
            ));
            return;
        }
        let due = self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due || m.step == m.total_steps {
            self.last_line = Some(Instant::now());
            eprintln!(
                "step {}/{}  epoch {:.2}  loss {:.4}  lr {:.3e}  grad_norm {:.4}  {:.1} tok/s  {:.1}s",
                m.step, m.total_steps, m.epoch, m.loss, m.lr, m.grad_norm, m.tokens_per_s, m.wall_s
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

/// Runs `nxt train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let mut progress = Progress::new();
    let result = nxt_train::train(&cfg, &mut |m| progress.step(m));
    progress.finish();
    let s = result.with_context(|| format!("training into {} failed", cfg.out.display()))?;
    println!("backend:            {}", s.backend);
    if let Some(a) = &s.adapter_dir {
        println!("adapter:            {}", a.display());
    }
    if let Some(m) = &s.model_dir {
        println!("model:              {}", m.display());
    }
    println!("steps:              {}", s.steps);
    println!(
        "examples:           {} ({} seen)",
        s.examples, s.examples_seen
    );
    println!("completion tokens:  {}", s.completion_tokens);
    println!("final loss:         {:.4}", s.final_loss);
    println!("mean loss:          {:.4}", s.mean_loss);
    println!("truncated:          {}", s.truncated);
    println!("boundary mismatches: {}", s.boundary_mismatches);
    println!("wall time:          {:.1}s", s.wall_s);
    Ok(())
}
