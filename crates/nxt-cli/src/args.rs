//! Argument groups shared by several commands (flattened into their `Args` with
//! `#[command(flatten)]`), and what they resolve to: the data directory ([`DataDirArgs`]), the
//! sandbox ([`SandboxArgs`], [`sandbox_pool`]), both together for the data and grade commands
//! ([`DataOpts`]), the data of a benchmark with `--fetch` ([`BenchmarkDataArgs`]), the seed and
//! batch of sampling ([`BatchSamplingArgs`]), the model and prompt ([`ModelArgs`]) and the
//! progress display ([`Bar`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nxt_core::prompt::{Layout, PromptOptions};
use nxt_core::{Progress, RepairConfig};
use nxt_data::registry::{self, DataDirSource};
use nxt_data::Benchmark;
use nxt_llm::Generator;
use nxt_sandbox::{Pool, PoolConfig};

/// The `--data-dir` option, the same in every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataDirArgs {
    /// Data directory (default: $NXT_DATA_DIR, else $XDG_DATA_HOME/nxt/data or
    /// ~/.local/share/nxt/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The resolved data directory and how it was chosen ([`registry::resolve_data_dir`]).
    pub fn dir(&self) -> (PathBuf, DataDirSource) {
        registry::resolve_data_dir(self.data_dir.as_deref())
    }

    /// The data directory for `benchmark`, fetching its missing datasets first when `fetch`;
    /// says on stderr which directory it is and why.
    pub fn for_benchmark(&self, benchmark: Benchmark, fetch: bool) -> anyhow::Result<PathBuf> {
        data_dir(self.data_dir.as_deref(), benchmark, fetch)
    }
}

/// Resolve the data directory (`flag`, else `$NXT_DATA_DIR`, else the default), fetching the
/// datasets `benchmark` needs ([`Benchmark::fetch_missing`]) when `fetch` and they are missing.
pub fn data_dir(flag: Option<&Path>, benchmark: Benchmark, fetch: bool) -> anyhow::Result<PathBuf> {
    let (dir, source) = registry::resolve_data_dir(flag);
    if fetch {
        benchmark
            .fetch_missing(&dir, &mut |name| {
                eprintln!("fetching {name} into {} ...", dir.display())
            })
            .with_context(|| {
                format!("cannot fetch the datasets of {benchmark} (is the network reachable?)")
            })?;
    }
    eprintln!("data directory: {} ({})", dir.display(), source.describe());
    Ok(dir)
}

/// The data options of commands that load a benchmark: `--data-dir` and `--fetch`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchmarkDataArgs {
    #[command(flatten)]
    pub dir: DataDirArgs,
    /// Download the datasets this command needs first if they are missing (needs network
    /// access).
    #[arg(long)]
    pub fetch: bool,
}

impl BenchmarkDataArgs {
    /// The data directory for `benchmark`, its missing datasets fetched first with `--fetch`
    /// ([`data_dir`]).
    pub fn for_benchmark(&self, benchmark: Benchmark) -> anyhow::Result<PathBuf> {
        self.dir.for_benchmark(benchmark, self.fetch)
    }
}

/// The sampling options of commands that hand batches of prompts to a generator: `--seed`
/// and `--batch`.
#[derive(Debug, Clone, clap::Args)]
pub struct BatchSamplingArgs {
    /// Base seed of sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Requests handed to the generator at once.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

impl BatchSamplingArgs {
    /// Refuses `--batch 0` (a usage error).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.batch == 0 {
            return Err(crate::exit::usage("--batch must be at least 1"));
        }
        Ok(())
    }
}

/// The `--allow-weak-isolation` option of commands that run programs in the sandbox.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SandboxArgs {
    /// Run even if some sandbox isolation layers are unavailable.
    #[arg(long)]
    pub allow_weak_isolation: bool,
}

impl SandboxArgs {
    /// A sandbox pool with the default number of workers ([`sandbox_pool`]).
    pub fn pool(&self) -> anyhow::Result<Pool> {
        sandbox_pool(self.allow_weak_isolation, None)
    }
}

/// The sandbox pool of every command: default settings, `workers` when given (at least 1),
/// weaker isolation accepted when `allow_weak`.
pub fn sandbox_pool(allow_weak: bool, workers: Option<usize>) -> anyhow::Result<Pool> {
    let mut config = PoolConfig {
        allow_weak_isolation: allow_weak,
        ..PoolConfig::default()
    };
    if let Some(w) = workers {
        config.workers = w.max(1);
    }
    Pool::new(config).with_context(|| {
        if allow_weak {
            "cannot start the sandbox".to_string()
        } else {
            "cannot start the sandbox (try --allow-weak-isolation)".to_string()
        }
    })
}

/// The options of the data and grade commands that run programs in the sandbox.
#[derive(Debug, Clone, clap::Args)]
pub struct DataOpts {
    #[command(flatten)]
    pub dir: DataDirArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

impl DataOpts {
    /// The resolved data directory and how it was chosen.
    pub fn dir(&self) -> (PathBuf, DataDirSource) {
        self.dir.dir()
    }

    /// A sandbox pool.
    pub fn pool(&self) -> anyhow::Result<Pool> {
        self.sandbox.pool()
    }
}

/// Model and prompt options shared by `nxt eval` and `nxt repair`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// A model directory, a Hugging Face hub id (downloaded on first use), or
    /// OpenAI-compatible server URLs (`http://host:8000/v1`, comma-separated to share load).
    #[arg(long)]
    pub model: String,
    /// Model name to send to servers (default: asked from GET /v1/models).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Requests in flight at once (servers only).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Prompt layout: `chat` (instruction-tuned models) or `completion` (base models).
    #[arg(long, default_value = "chat", value_parser = parse_layout)]
    pub layout: Layout,
    /// Few-shot prompt with the 3 worked exemplars (the default; for base models).
    #[arg(long, conflicts_with = "zero_shot")]
    pub few_shot: bool,
    /// Zero-shot prompt (for fine-tuned models).
    #[arg(long)]
    pub zero_shot: bool,
    /// Leave the execution trace out of the prompt (the without-trace variant).
    #[arg(long)]
    pub no_trace: bool,
    /// Trace representation: inline (NExT), scratchpad or json.
    #[arg(long, default_value = "inline")]
    pub trace_format: nxt_trace::Format,
    /// Character budget of the rendered trace (long traces are compressed to fit).
    #[arg(long)]
    pub trace_budget: Option<usize>,
    /// Most new tokens per completion.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Accept weaker sandbox isolation when some layers are unavailable.
    #[arg(long)]
    pub allow_weak_isolation: bool,
    /// A PEFT LoRA adapter directory merged into --model's weights at load (embedded engine
    /// only; not applied to --proxy-model). For a server, load the adapter there and pick it
    /// with --served-model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    match s {
        "chat" => Ok(Layout::Chat),
        "completion" | "text" => Ok(Layout::Completion),
        other => Err(format!(
            "unknown layout `{other}` (expected chat or completion)"
        )),
    }
}

impl ModelArgs {
    /// The repair configuration these flags describe.
    pub fn repair_config(&self) -> RepairConfig {
        let mut cfg = RepairConfig {
            prompt: PromptOptions {
                layout: self.layout,
                few_shot: !self.zero_shot,
                with_trace: !self.no_trace,
            },
            trace_format: self.trace_format,
            ..RepairConfig::default()
        };
        cfg.render.total_budget = self.trace_budget;
        cfg.sampling.max_tokens = self.max_tokens;
        cfg.sampling.top_p = self.top_p;
        cfg
    }

    /// Open `spec` with these flags' client settings.
    pub fn open(&self, spec: &str) -> anyhow::Result<Box<dyn Generator>> {
        let engine = crate::commands::adapter::engine_options(spec, self.adapter.as_deref())?;
        self.open_with(spec, self.served_model.clone(), engine)
    }

    /// Open `spec` sending `served_model` as the model name to servers (None: what the
    /// server lists), and check once that it can serve ([`Generator::preflight`]: a server
    /// that cannot be reached or refuses the key fails here, before any work).
    pub fn open_as(
        &self,
        spec: &str,
        served_model: Option<String>,
    ) -> anyhow::Result<Box<dyn Generator>> {
        self.open_with(
            spec,
            served_model,
            nxt_llm::engine::EngineOptions::default(),
        )
    }

    /// [`ModelArgs::open_as`] with the embedded engine's options (its adapter).
    fn open_with(
        &self,
        spec: &str,
        served_model: Option<String>,
        engine: nxt_llm::engine::EngineOptions,
    ) -> anyhow::Result<Box<dyn Generator>> {
        let opts = nxt_llm::OpenOptions {
            served_model,
            concurrency: self.concurrency.max(1),
            request_timeout: Duration::from_secs(1800),
            engine,
            ..Default::default()
        };
        eprintln!("loading model {spec} ...");
        let g = nxt_llm::open_generator(spec, &opts).with_context(|| {
            format!("cannot open model `{spec}` (a model directory, a hub id such as Qwen/Qwen2.5-Coder-0.5B-Instruct, which needs network access the first time, or a server URL)")
        })?;
        g.preflight()
            .with_context(|| format!("model `{spec}` cannot serve"))?;
        Ok(g)
    }

    /// A sandbox pool ([`sandbox_pool`]).
    pub fn pool(&self) -> anyhow::Result<Pool> {
        sandbox_pool(self.allow_weak_isolation, None)
    }
}

/// A progress bar driven by [`Progress`] events (one bar per stage).
pub struct Bar {
    bar: Option<ProgressBar>,
    stage: &'static str,
}

impl Bar {
    /// No bar yet.
    pub fn new() -> Bar {
        Bar {
            bar: None,
            stage: "",
        }
    }

    /// Show one event.
    pub fn update(&mut self, p: &Progress) {
        if self.stage != p.stage || self.bar.is_none() {
            if let Some(b) = self.bar.take() {
                b.finish();
            }
            let b = ProgressBar::new(p.total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(p.stage);
            self.bar = Some(b);
            self.stage = p.stage;
        }
        if let Some(b) = &self.bar {
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
            b.set_message(p.message.clone());
        }
    }

    /// Finish the current bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}
