//! `nxt data sample-candidates`: sample candidate programs for MBPP problems with a model;
//! `nxt data build-mbpp-r --candidates FILE` keeps the failing ones as MBPP-R repair tasks.

use std::path::PathBuf;

use anyhow::{bail, Context};
use nxt_core::candidates::{sample_candidates, CandidateOptions};
use nxt_data::Split;

use super::eval::{data_dir, Bar, ModelArgs};

/// Arguments of `nxt data sample-candidates`.
#[derive(Debug, clap::Args)]
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
    /// Base seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Download MBPP first if missing.
    #[arg(long)]
    pub fetch: bool,
    /// Requests handed to the generator at once.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

/// Run `nxt data sample-candidates`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let split = Split::parse(&args.split).with_context(|| {
        format!(
            "unknown split `{}` (expected train, validation or test)",
            args.split
        )
    })?;
    if split == Split::FewShot {
        bail!("the few-shot split (MBPP 1-10) is reserved for prompts");
    }
    let dir = data_dir(args.data_dir.as_deref(), "mbpp", args.fetch)?;
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
        seed: args.seed,
        layout: args.model.layout,
        batch: args.batch.max(1),
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
