//! `nxt train`: fine-tune a model (LoRA or full) on prompt/completion data with the embedded
//! trainer, or hand the same settings to TRL (`--backend trl`); `nxt train merge` and
//! `nxt train check-adapter` for the adapters it writes.

use std::io::IsTerminal;

use crate::exit;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nxt_engine::adapter::{check_adapter, LoraAdapter, TARGET_MODULES};
use nxt_engine::config::ModelConfig;
use nxt_train::{Backend, Schedule, StepMetrics, TrainConfig, DEFAULT_TRL_LAUNCHER};

/// Arguments of `nxt train`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// Adapter tools: merge an adapter into its base, check an adapter.
    #[command(subcommand)]
    action: Option<Action>,
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

/// `nxt train merge` and `nxt train check-adapter`.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Merge a LoRA adapter into its base model and write a Hugging Face model directory
    /// (config, tokenizer files, merged safetensors) that the engine and transformers load.
    Merge(MergeArgs),
    /// Check a LoRA adapter for what vLLM would reject or mis-scale and (with --model) for
    /// shapes that do not fit the base; exits 1 if anything is wrong.
    CheckAdapter(CheckArgs),
}

/// Arguments of `nxt train merge`.
#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Base model: a model directory or a hub id.
    #[arg(long)]
    model: String,
    /// The PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: PathBuf,
    /// Output model directory (created; must differ from the base and the adapter).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `nxt train check-adapter`.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The adapter directory (or give --adapter).
    #[arg(
        value_name = "DIR",
        required_unless_present = "adapter",
        conflicts_with = "adapter"
    )]
    dir: Option<PathBuf>,
    /// The adapter directory.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Base model (directory or hub id) whose shapes the adapter must fit.
    #[arg(long)]
    model: Option<String>,
    /// vLLM's --max-lora-rank the adapter must fit under.
    #[arg(long, default_value_t = 16)]
    max_lora_rank: usize,
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

/// Runs `nxt train`, `nxt train merge` or `nxt train check-adapter`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Some(Action::Merge(m)) => return merge(m),
        Some(Action::CheckAdapter(c)) => return check(c),
        None => {}
    }
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

/// The local directory of a model given as a directory or hub id.
fn model_dir(model: &str) -> anyhow::Result<PathBuf> {
    nxt_engine::resolve_model(model, "main").map_err(|e| {
        if Path::new(model).exists() {
            exit::input(e.to_string())
        } else {
            anyhow::Error::new(e).context(format!("cannot find the model {model}"))
        }
    })
}

/// `nxt train merge`.
fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let base = model_dir(&args.model)?;
    let base_str = base.display().to_string();
    super::adapter::check_for_engine(
        &base_str,
        &args.adapter,
        &format!("--adapter {}", args.adapter.display()),
    )?;
    let s = nxt_engine::adapter::merge_model_dir(&base, &args.adapter, &args.out).with_context(
        || {
            format!(
                "cannot merge {} into {} (output {})",
                args.adapter.display(),
                base.display(),
                args.out.display()
            )
        },
    )?;
    println!("merged model:  {}", args.out.display());
    println!("base:          {}", base.display());
    println!("adapter:       {}", args.adapter.display());
    println!("projections:   {} merged", s.modules);
    for f in &s.weight_files {
        println!("weights:       {}", f.display());
    }
    let names: Vec<String> = s
        .copied
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    println!("copied:        {}", names.join(", "));
    Ok(())
}

/// `nxt train check-adapter`: a summary of the adapter, every problem on its own line, exit 1
/// when there is any.
fn check(args: CheckArgs) -> anyhow::Result<()> {
    let Some(dir) = args.dir.as_ref().or(args.adapter.as_ref()) else {
        return Err(exit::usage(
            "give the adapter directory (DIR or --adapter DIR)",
        ));
    };
    if !dir.is_dir() {
        return Err(exit::input(format!(
            "{}: not a directory (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors)",
            dir.display()
        )));
    }
    let base = match &args.model {
        Some(m) => {
            let d = model_dir(m)?;
            let p = d.join("config.json");
            Some((
                d.clone(),
                ModelConfig::from_file(&p)
                    .map_err(|e| exit::input(format!("{}: {e}", p.display())))?,
            ))
        }
        None => None,
    };
    println!("adapter:        {}", dir.display());
    // The summary comes from the adapter itself when it loads; the problems below say why
    // when it does not.
    if let Ok(a) = LoraAdapter::load(dir, &candle_core::Device::Cpu) {
        let c = &a.config;
        let modules = a.modules().unwrap_or_default();
        let layers: std::collections::BTreeSet<usize> = modules.iter().map(|m| m.layer).collect();
        println!("rank:           {}", c.r);
        println!(
            "alpha:          {} (scaling {:.4}{})",
            c.lora_alpha,
            c.scaling(),
            if c.use_rslora { ", rsLoRA" } else { "" }
        );
        println!("dropout:        {}", c.lora_dropout);
        let mut targets = c.target_modules.clone();
        targets.sort_by_key(|t| TARGET_MODULES.iter().position(|m| m == t).unwrap_or(99));
        println!("targets:        {}", targets.join(", "));
        println!(
            "modules:        {} in {} layer{}",
            modules.len(),
            layers.len(),
            if layers.len() == 1 { "" } else { "s" }
        );
        if let Some(b) = &c.base_model_name_or_path {
            println!("trained on:     {b}");
        }
    }
    let problems = check_adapter(dir, base.as_ref().map(|(_, c)| c), args.max_lora_rank);
    let shape_problems = problems
        .iter()
        .filter(|p| p.kind == nxt_engine::adapter::ProblemKind::ShapeMismatch)
        .count();
    match &base {
        Some((d, _)) if shape_problems == 0 => {
            println!("shapes:         fit {}", d.display())
        }
        Some((d, _)) => println!(
            "shapes:         {shape_problems} tensor{} do not fit {}",
            if shape_problems == 1 { "" } else { "s" },
            d.display()
        ),
        None => println!("shapes:         not checked (give --model BASE)"),
    }
    println!("max lora rank:  {}", args.max_lora_rank);
    if problems.is_empty() {
        println!("ok: vLLM can serve this adapter");
        return Ok(());
    }
    for p in &problems {
        println!("problem:        {p}");
    }
    Err(exit::failed(format!(
        "{}: {} problem{} (listed above); the first: {}",
        dir.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems[0]
    )))
}
