//! `nxt report`: one self-contained HTML page (inline SVG plots, no JavaScript) of an `nxt eval`
//! or `nxt selftrain` run directory, optionally side by side with other runs, and TensorBoard
//! event files of its scalars.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `nxt report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory (of `nxt eval` or `nxt selftrain`).
    pub run_dir: PathBuf,
    /// Output file (default: RUN_DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Other run directories shown side by side.
    #[arg(long, num_args = 1..)]
    pub compare: Vec<PathBuf>,
    /// Also write TensorBoard event files of the training and evaluation scalars here.
    #[arg(long)]
    pub tensorboard: Option<PathBuf>,
}

/// Runs `nxt report`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("report.html"));
    let summary = nxt_report::write_report(&args.run_dir, &args.compare, &out)
        .with_context(|| format!("cannot write the report of {}", args.run_dir.display()))?;
    println!("{}", summary.summary);
    for m in &summary.missing {
        eprintln!("missing: {m}");
    }
    eprintln!(
        "wrote {} ({} run, {} plots)",
        summary.out.display(),
        summary.kind,
        summary.plots
    );
    if let Some(dir) = &args.tensorboard {
        let run = nxt_report::load_run(&args.run_dir)?;
        let (files, scalars) = nxt_report::tensorboard::write_tensorboard(&run, dir)?;
        eprintln!(
            "wrote {scalars} scalars to {} event files under {}",
            files.len(),
            dir.display()
        );
    }
    Ok(())
}
