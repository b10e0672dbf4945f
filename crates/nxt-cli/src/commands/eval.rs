//! `nxt eval`: trace-augmented repair on a benchmark: `n` samples per task, pass@k, greedy
//! pass@1, proxy rationale evaluation, unparseable rate and token usage; every record stored
//! in `<run-dir>/run.sqlite` as it exists, so an interrupted run resumes where it stopped.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::args::{Bar, BatchSamplingArgs, BenchmarkDataArgs, ModelArgs};
use crate::exit;
use nxt_core::{run_dir, run_eval, EvalConfig, EvalContext, RunStore};
use nxt_data::Benchmark;

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
    #[command(flatten)]
    pub sampling: BatchSamplingArgs,
    #[command(flatten)]
    pub data: BenchmarkDataArgs,
}

/// Checks every argument of `nxt eval` before any work: the benchmark, the split, `n`, the
/// `k` of pass@k. Returns the canonical benchmark name, the split and the ks.
fn check_args(args: &Args) -> anyhow::Result<(Benchmark, Option<nxt_data::Split>, Vec<usize>)> {
    let benchmark = Benchmark::parse(&args.benchmark)
        .ok()
        .filter(|b| b.is_repair())
        .ok_or_else(|| {
            exit::usage(format!(
                "--benchmark {}: not a repair benchmark (expected one of {})",
                args.benchmark,
                Benchmark::repair()
                    .map(Benchmark::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
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
    if split.is_some() && benchmark != Benchmark::MbppR {
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
    args.sampling.check()?;
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
    let dir = args.data.for_benchmark(benchmark)?;
    let pool = args.model.pool()?;
    eprintln!("loading benchmark {benchmark} ...");
    let mut tasks = nxt_data::load_benchmark_with(benchmark.name(), &dir, Some(&pool))
        .with_context(|| {
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
        run_dir::eval_run_dir(
            benchmark,
            &args.model.model,
            args.model.adapter.as_deref(),
            !args.model.no_trace,
        )
    });
    run_dir::create(&run_dir)
        .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
    let store = RunStore::open(&run_dir.join("run.sqlite"))?;
    let cfg = EvalConfig {
        benchmark: benchmark.name().to_string(),
        repair: args.model.repair_config(),
        n: args.n,
        temperature: args.temperature,
        greedy: args.greedy,
        ks,
        seed: args.sampling.seed,
        batch: args.sampling.batch,
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
