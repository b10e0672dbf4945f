//! `nxt data sample-candidates`: sample candidate programs for MBPP problems with a model;
//! `nxt data build-mbpp-r --candidates FILE` keeps the failing ones as MBPP-R repair tasks.

use std::path::PathBuf;

use nxt_core::candidates::{sample_candidates, CandidateOptions};
use nxt_data::Split;

use crate::args::{Bar, BatchSamplingArgs, BenchmarkDataArgs, ModelArgs};
use nxt_data::Benchmark;

/// The flags of [`ModelArgs`] that candidate sampling has no use for (it builds its own
/// MBPP prompt, traces nothing and runs nothing in the sandbox): hidden from `--help` and
/// refused when given.
const UNUSED_MODEL_FLAGS: &[(&str, &str)] = &[
    ("few_shot", "--few-shot"),
    ("zero_shot", "--zero-shot"),
    ("no_trace", "--no-trace"),
    ("trace_format", "--trace-format"),
    ("trace_budget", "--trace-budget"),
    ("allow_weak_isolation", "--allow-weak-isolation"),
];

/// Arguments of `nxt data sample-candidates`.
#[derive(Debug, clap::Args)]
#[command(
    mut_arg("few_shot", |a| a.hide(true)),
    mut_arg("zero_shot", |a| a.hide(true)),
    mut_arg("no_trace", |a| a.hide(true)),
    mut_arg("trace_format", |a| a.hide(true)),
    mut_arg("trace_budget", |a| a.hide(true)),
    mut_arg("allow_weak_isolation", |a| a.hide(true)),
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// MBPP split: train (601-974), validation (511-600), test (11-510).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Programs per problem.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Only the first N problems of the split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output JSONL (appended; rerunning samples only what is missing).
    #[arg(long, default_value = "candidates.jsonl")]
    pub out: PathBuf,
    #[command(flatten)]
    pub sampling: BatchSamplingArgs,
    #[command(flatten)]
    pub data: BenchmarkDataArgs,
}

/// The flags of [`UNUSED_MODEL_FLAGS`] that were given.
fn unused_flags_given(m: &ModelArgs) -> Vec<&'static str> {
    let given = |id: &str| match id {
        "few_shot" => m.few_shot,
        "zero_shot" => m.zero_shot,
        "no_trace" => m.no_trace,
        "trace_format" => m.trace_format != nxt_trace::Format::Inline,
        "trace_budget" => m.trace_budget.is_some(),
        "allow_weak_isolation" => m.allow_weak_isolation,
        _ => false,
    };
    UNUSED_MODEL_FLAGS
        .iter()
        .filter(|(id, _)| given(id))
        .map(|(_, flag)| *flag)
        .collect()
}

/// Run `nxt data sample-candidates`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let unused = unused_flags_given(&args.model);
    if !unused.is_empty() {
        return Err(crate::exit::usage(format!(
            "{}: not used by sample-candidates (it writes MBPP's own prompt, traces nothing and runs nothing)",
            unused.join(", ")
        )));
    }
    let split = Split::parse(&args.split).ok_or_else(|| {
        crate::exit::usage(format!(
            "--split {}: unknown split (expected train, validation or test)",
            args.split
        ))
    })?;
    if split == Split::FewShot {
        return Err(crate::exit::usage(
            "--split: the few-shot split (MBPP 1-10) is reserved for prompts",
        ));
    }
    if args.n == 0 {
        return Err(crate::exit::usage("--n must be at least 1"));
    }
    if args.limit == Some(0) {
        return Err(crate::exit::usage("--limit must be at least 1"));
    }
    args.sampling.check()?;
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(crate::exit::usage(format!(
            "--temperature {}: must be a number >= 0",
            args.temperature
        )));
    }
    if !(args.model.top_p > 0.0 && args.model.top_p <= 1.0) {
        return Err(crate::exit::usage(format!(
            "--top-p {}: must be in (0, 1]",
            args.model.top_p
        )));
    }
    let dir = args.data.for_benchmark(Benchmark::Mbpp)?;
    let path = nxt_data::registry::locate(&dir, "mbpp")?;
    let all = nxt_data::loaders::load_mbpp(&path)?;
    let mut problems: Vec<_> = all
        .iter()
        .filter(|r| Split::of_mbpp_task(r.task_id) == Some(split))
        .cloned()
        .collect();
    if let Some(l) = args.limit {
        problems.truncate(l);
    }
    let generator = args.model.open(&args.model.model)?;
    let opts = CandidateOptions {
        n: args.n,
        temperature: args.temperature,
        max_tokens: args.model.max_tokens,
        top_p: args.model.top_p,
        seed: args.sampling.seed,
        layout: args.model.layout,
        batch: args.sampling.batch,
    };
    let mut bar = Bar::new();
    let summary = sample_candidates(
        generator.as_ref(),
        &problems,
        &all,
        &opts,
        &args.out,
        &mut |p| bar.update(p),
    );
    bar.finish();
    let s = summary?;
    println!(
        "{} problems ({} split): {} programs already in {}, {} written now ({} with no extractable program)",
        s.problems,
        split.name(),
        s.existing,
        args.out.display(),
        s.written,
        s.empty
    );
    println!(
        "next: nxt data build-mbpp-r --candidates {}",
        args.out.display()
    );
    Ok(())
}
