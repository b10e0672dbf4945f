//! `nxt eval`: trace-augmented repair on a benchmark: `n` samples per task, pass@k, greedy
//! pass@1, proxy rationale evaluation, unparseable rate and token usage; every record stored
//! in `<run-dir>/run.sqlite` as it exists, so an interrupted run resumes where it stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::exit;
use indicatif::{ProgressBar, ProgressStyle};
use nxt_core::prompt::{Layout, PromptOptions};
use nxt_core::{run_eval, EvalConfig, EvalContext, Progress, RepairConfig, RunStore};
use nxt_llm::Generator;

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
        let engine = super::adapter::engine_options(spec, self.adapter.as_deref())?;
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

    /// A sandbox pool.
    pub fn pool(&self) -> anyhow::Result<nxt_sandbox::Pool> {
        nxt_data::default_pool(self.allow_weak_isolation).context("cannot start the sandbox")
    }
}

/// Arguments of `nxt eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Benchmark: `hefix+` (HumanEvalFix graded on HumanEval+ tests), `mbpp-r`, `hefix`
    /// (HumanEvalFix's own tests).
    #[arg(long, default_value = "hefix+")]
    pub benchmark: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Samples per task.
    #[arg(long, default_value_t = 32)]
    pub n: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// The k of pass@k, comma-separated, each between 1 and n (default: those of 1,5,10,25
    /// that n allows).
    #[arg(long, value_delimiter = ',')]
    pub k: Option<Vec<usize>>,
    /// Also sample one greedy repair per task (greedy pass@1).
    #[arg(long)]
    pub greedy: bool,
    /// Only tasks of this MBPP split (`test`, `validation`, `train`); tasks of MBPP's few-shot
    /// problems (1-10, the prompt exemplars' source) are always left out.
    #[arg(long)]
    pub split: Option<String>,
    /// Evaluate only the first N tasks.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Run directory (run.sqlite, results.json, report.md, report.html); rerunning with the same directory
    /// resumes. Default: runs/<benchmark>-<model>-<trace|no-trace>.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Proxy (student) model: gets the problem, the buggy program and each rationale (no
    /// trace) and must fix it; its pass@k measures rationale quality. Its fixes are stored per
    /// proxy model: a rerun with another proxy adds a column, side by side.
    #[arg(long)]
    pub proxy_model: Option<String>,
    /// Model name to send to the proxy's server (default: what that server lists;
    /// `--served-model` applies to `--model` only).
    #[arg(long, requires = "proxy_model")]
    pub proxy_served_model: Option<String>,
    /// Base seed of sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data directory (default: $NXT_DATA_DIR, else $XDG_DATA_HOME/nxt/data or
    /// ~/.local/share/nxt/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Download the benchmark's datasets first if they are missing (needs network access).
    #[arg(long)]
    pub fetch: bool,
    /// Requests handed to the generator at once.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

/// The datasets a benchmark reads.
fn needed_datasets(benchmark: &str) -> &'static [&'static str] {
    match benchmark {
        "hefix+" => &["humanevalfix", "humaneval+"],
        "hefix" => &["humanevalfix"],
        "mbpp-r" | "mbpp" => &["mbpp"],
        "humaneval" => &["humaneval"],
        "humaneval+" => &["humaneval+"],
        _ => &[],
    }
}

/// Resolve the data directory, fetching missing files when asked.
pub fn data_dir(flag: Option<&Path>, benchmark: &str, fetch: bool) -> anyhow::Result<PathBuf> {
    let (dir, source) = nxt_data::registry::resolve_data_dir(flag);
    if fetch {
        for name in needed_datasets(benchmark) {
            if nxt_data::registry::locate(&dir, name).is_err() {
                let file = nxt_data::registry::dataset_file(name)?;
                eprintln!("fetching {name} into {} ...", dir.display());
                nxt_data::registry::fetch(&dir, file, None).with_context(|| {
                    format!("cannot fetch dataset {name} (is the network reachable?)")
                })?;
            }
        }
    }
    eprintln!("data directory: {} ({})", dir.display(), source.describe());
    Ok(dir)
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

fn slug(s: &str) -> String {
    let s = s.trim_end_matches('/');
    let last = if s.contains("://") {
        s.split("://").nth(1).unwrap_or(s)
    } else {
        s.rsplit('/').next().unwrap_or(s)
    };
    last.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The benchmarks `nxt eval` repairs (the others are datasets without buggy programs).
pub const REPAIR_BENCHMARKS: &[&str] = &["hefix+", "mbpp-r", "hefix"];

/// Checks every argument of `nxt eval` before any work: the benchmark, the split, `n`, the
/// `k` of pass@k. Returns the canonical benchmark name, the split and the ks.
fn check_args(args: &Args) -> anyhow::Result<(String, Option<nxt_data::Split>, Vec<usize>)> {
    let benchmark = nxt_data::benchmarks::canonical_benchmark(&args.benchmark)
        .ok()
        .filter(|b| REPAIR_BENCHMARKS.contains(b))
        .ok_or_else(|| {
            exit::usage(format!(
                "--benchmark {}: not a repair benchmark (expected one of {})",
                args.benchmark,
                REPAIR_BENCHMARKS.join(", ")
            ))
        })?
        .to_string();
    if args.n == 0 {
        return Err(exit::usage("--n must be at least 1"));
    }
    let split = match &args.split {
        Some(s) => Some(
            nxt_data::Split::parse(s)
                .filter(|s| *s != nxt_data::Split::FewShot)
                .ok_or_else(|| {
                    exit::usage(format!(
                        "--split {s}: unknown split (expected test, validation or train)"
                    ))
                })?,
        ),
        None => None,
    };
    if split.is_some() && benchmark != "mbpp-r" {
        return Err(exit::usage(format!(
            "--split applies to mbpp-r only ({benchmark} has one split)"
        )));
    }
    let ks = match &args.k {
        Some(ks) => {
            if let Some(k) = ks.iter().find(|&&k| k == 0 || k > args.n) {
                return Err(exit::usage(format!(
                    "--k {k}: pass@k needs 1 <= k <= --n (n = {}); give more samples or a smaller k",
                    args.n
                )));
            }
            ks.clone()
        }
        None => [1, 5, 10, 25]
            .into_iter()
            .filter(|&k| k <= args.n)
            .collect(),
    };
    if args.limit == Some(0) {
        return Err(exit::usage("--limit must be at least 1"));
    }
    if args.batch == 0 {
        return Err(exit::usage("--batch must be at least 1"));
    }
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(exit::usage(format!(
            "--temperature {}: must be a number >= 0",
            args.temperature
        )));
    }
    if !(args.model.top_p > 0.0 && args.model.top_p <= 1.0) {
        return Err(exit::usage(format!(
            "--top-p {}: must be in (0, 1]",
            args.model.top_p
        )));
    }
    if args.model.max_tokens == 0 {
        return Err(exit::usage("--max-tokens must be at least 1"));
    }
    Ok((benchmark, split, ks))
}

/// Run `nxt eval`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (benchmark, split, ks) = check_args(&args)?;
    // Models first: an unreachable server or a refused key fails before the data is loaded.
    let generator = args.model.open(&args.model.model)?;
    let proxy = match &args.proxy_model {
        Some(p) => Some(args.model.open_as(p, args.proxy_served_model.clone())?),
        None => None,
    };
    let dir = data_dir(args.data_dir.as_deref(), &benchmark, args.fetch)?;
    let pool = args.model.pool()?;
    eprintln!("loading benchmark {benchmark} ...");
    let mut tasks =
        nxt_data::load_benchmark_with(&benchmark, &dir, Some(&pool)).with_context(|| {
            format!("cannot load benchmark {benchmark} (pass --fetch to download its data)")
        })?;
    let before = tasks.len();
    tasks.retain(|t| {
        t.meta.split != nxt_data::Split::FewShot && split.is_none_or(|s| t.meta.split == s)
    });
    if tasks.len() < before {
        eprintln!(
            "{} of {before} tasks kept (few-shot problems excluded{})",
            tasks.len(),
            split
                .map(|s| format!(", split {}", s.name()))
                .unwrap_or_default()
        );
    }
    if let Some(l) = args.limit {
        tasks.truncate(l);
    }
    if tasks.is_empty() {
        bail!("benchmark {benchmark} has no tasks to evaluate");
    }
    let run_dir = args.run_dir.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{}-{}-{}",
            benchmark.replace('+', "plus"),
            match &args.model.adapter {
                Some(a) => format!(
                    "{}+{}",
                    slug(&args.model.model),
                    slug(&a.display().to_string())
                ),
                None => slug(&args.model.model),
            },
            if args.model.no_trace {
                "no-trace"
            } else {
                "trace"
            }
        ))
    });
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
    let store = RunStore::open(&run_dir.join("run.sqlite"))?;
    let cfg = EvalConfig {
        benchmark: benchmark.clone(),
        repair: args.model.repair_config(),
        n: args.n,
        temperature: args.temperature,
        greedy: args.greedy,
        ks,
        seed: args.seed,
        batch: args.batch.max(1),
    };
    let ctx = EvalContext {
        pool: &pool,
        generator: generator.as_ref(),
        proxy: proxy.as_deref(),
    };
    // A run directory holding another configuration is refused before anything is said
    // about resuming it; the error names each differing setting.
    store.check_config(
        &nxt_core::eval::config_record(&cfg, &ctx),
        nxt_core::eval::VOLATILE_CONFIG_KEYS,
    )?;
    let before = store.counts()?;
    if before.samples > 0 {
        eprintln!(
            "resuming run in {}: {} samples, {} verdicts already stored",
            run_dir.display(),
            before.samples,
            before.verdicts
        );
    } else {
        eprintln!("run directory: {}", run_dir.display());
    }
    let mut bar = Bar::new();
    let report = run_eval(&ctx, &tasks, &cfg, &store, &mut |p| bar.update(p));
    bar.finish();
    let report = report?;
    report.write(&run_dir)?;
    println!("{}", report.text());
    println!(
        "results: {}  report: {}",
        run_dir.join("results.json").display(),
        run_dir.join("report.md").display()
    );
    // The HTML page is derived from the run store and results.json: failing to draw it loses
    // nothing, so it is a warning, never the command's failure.
    let page = run_dir.join("report.html");
    match nxt_report::write_report(&run_dir, &[], &page) {
        Ok(_) => println!("page: {}", page.display()),
        Err(e) => eprintln!("warning: report.html not written: {e}"),
    }
    if !report.complete() {
        return Err(exit::failed(format!(
            "the run is incomplete: {} samples could not be generated (see above); rerun the same command to retry them",
            report.generation_errors.missing
        )));
    }
    Ok(())
}
