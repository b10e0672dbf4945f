//! `nxt data ...`: list, fetch and check datasets; build MBPP-R.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use nxt_data::registry::{self, FileStatus, DATASETS};
use nxt_data::{mbppr, Benchmark, Executor, GradeResult, RepairTask};

use crate::args::{DataDirArgs as DirOpts, DataOpts};

/// Arguments of `nxt data`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DataCommand {
    /// Show which datasets are present in the data directory (and where it looked).
    List {
        #[command(flatten)]
        opts: DirOpts,
    },
    /// Download a dataset (or `all`) from its pinned upstream URL, checking its sha256.
    Fetch {
        /// Dataset name (see `nxt data list`), or `all`.
        name: String,
        /// Download from this URL instead of the pinned upstream (the sha256 pin still applies).
        #[arg(long)]
        url: Option<String>,
        /// Download again even if a verified copy is present.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: DirOpts,
    },
    /// Run every reference solution of a benchmark against its grading tests (and, for repair
    /// benchmarks, every buggy program) and print pass/fail counts.
    Check {
        /// Benchmark: hefix+, hefix, mbpp-r, humaneval, humaneval+, mbpp, mbpp-sanitized.
        name: String,
        /// Check only the first N tasks.
        #[arg(long)]
        limit: Option<usize>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: DataOpts,
    },
    /// Build MBPP-R from a JSONL file of candidate programs (`{"task_id", "program"}` per line).
    BuildMbppR {
        /// Candidates file (JSONL, .gz accepted), e.g. <DATA_DIR>/mbpp-r-seed/candidates.jsonl.gz.
        #[arg(long)]
        candidates: PathBuf,
        /// Output directory (one <split>.jsonl per split, summary.json, disagreements.jsonl).
        #[arg(long)]
        out: PathBuf,
        /// Also drop failures that a standard-library import header fixes (seed files only).
        #[arg(long)]
        drop_import_artefacts: bool,
        #[command(flatten)]
        opts: DataOpts,
    },
    /// Sample candidate programs for MBPP problems from a model (the input of `build-mbpp-r`).
    SampleCandidates(super::sample_candidates::Args),
}

/// Run `nxt data ...`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DataCommand::List { opts } => list(&opts),
        DataCommand::Fetch {
            name,
            url,
            force,
            opts,
        } => fetch(&opts, &name, url.as_deref(), force),
        DataCommand::Check {
            name,
            limit,
            json,
            opts,
        } => check(&opts, &name, limit, json),
        DataCommand::BuildMbppR {
            candidates,
            out,
            drop_import_artefacts,
            opts,
        } => build(&opts, &candidates, &out, drop_import_artefacts),
        DataCommand::SampleCandidates(args) => super::sample_candidates::run(args),
    }
}

fn list(opts: &DirOpts) -> anyhow::Result<()> {
    let (dir, source) = opts.dir();
    println!("data directory: {} ({})", dir.display(), source.describe());
    println!(
        "  looked at, in order: --data-dir, $NXT_DATA_DIR, {}",
        registry::default_data_dir().display()
    );
    if !dir.is_dir() {
        println!("  (does not exist: `nxt data fetch all` creates it, or pass --data-dir / set NXT_DATA_DIR)");
    }
    println!();
    println!(
        "{:<16} {:<9} {:>7}  {:<11} file",
        "dataset", "status", "records", "license"
    );
    for f in DATASETS {
        let status = match registry::file_status(&dir, f)? {
            FileStatus::Ok => "ok".to_string(),
            FileStatus::Missing => "missing".to_string(),
            FileStatus::Mismatch(_) => "sha256!".to_string(),
        };
        println!(
            "{:<16} {:<9} {:>7}  {:<11} {}",
            f.name, status, f.records, f.license, f.rel_path
        );
    }
    let seed = dir.join(registry::MBPP_R_SEED);
    println!(
        "{:<16} {:<9} {:>7}  {:<11} {}",
        "mbpp-r-seed",
        if seed.is_file() { "ok" } else { "missing" },
        15656,
        "various",
        registry::MBPP_R_SEED
    );
    println!();
    println!("benchmarks (`nxt grade --dataset NAME`, `nxt data check NAME`):");
    for bench in Benchmark::ALL {
        println!(
            "  {:<15} {:<10} {}",
            bench.name(),
            if bench.available(&dir) {
                "available"
            } else {
                "missing"
            },
            bench.description()
        );
    }
    println!();
    println!(
        "cache (EvalPlus expected outputs, MBPP-R built from the seed): {}",
        nxt_data::evalplus::cache_dir().display()
    );
    Ok(())
}

fn fetch(opts: &DirOpts, name: &str, url: Option<&str>, force: bool) -> anyhow::Result<()> {
    let (dir, source) = opts.dir();
    let files: Vec<_> = if name == "all" {
        if url.is_some() {
            bail!("--url needs a single dataset name");
        }
        DATASETS.iter().collect()
    } else {
        vec![registry::dataset_file(name)?]
    };
    eprintln!("data directory: {} ({})", dir.display(), source.describe());
    for f in files {
        if !force && registry::file_status(&dir, f)? == FileStatus::Ok {
            println!(
                "{}: already present and verified ({})",
                f.name,
                dir.join(f.rel_path).display()
            );
            continue;
        }
        eprintln!("{}: downloading {}", f.name, url.unwrap_or(f.url));
        let path = registry::fetch(&dir, f, url)?;
        println!("{}: ok, sha256 verified -> {}", f.name, path.display());
    }
    Ok(())
}

/// Summary of `nxt data check`.
#[derive(Debug, serde::Serialize)]
struct CheckSummary {
    benchmark: String,
    tasks: usize,
    references_passed: usize,
    references_failed: Vec<String>,
    buggy_checked: usize,
    buggy_failed: usize,
    buggy_passed: Vec<String>,
    seconds: f64,
}

fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn run_all(
    pool: &dyn Executor,
    items: &[(&RepairTask, &str)],
    what: &str,
) -> anyhow::Result<Vec<GradeResult>> {
    let bar = progress_bar(items.len(), what);
    let mut out: Vec<Option<GradeResult>> = vec![None; items.len()];
    let mut err = None;
    nxt_data::grade_many(pool, items, &mut |i, r| {
        bar.inc(1);
        match r {
            Ok(g) => out[i] = Some(g),
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    });
    bar.finish_and_clear();
    if let Some(e) = err {
        return Err(e.into());
    }
    Ok(out.into_iter().flatten().collect())
}

fn check(opts: &DataOpts, name: &str, limit: Option<usize>, json: bool) -> anyhow::Result<()> {
    let (dir, _) = opts.dir();
    let pool = opts.pool()?;
    let t0 = std::time::Instant::now();
    let bench = Benchmark::parse(name)?;
    let mut tasks = nxt_data::load_benchmark_with(bench.name(), &dir, Some(&pool))?;
    if let Some(n) = limit {
        tasks.truncate(n);
    }
    let refs: Vec<(&RepairTask, &str)> = tasks
        .iter()
        .filter_map(|t| t.reference.as_deref().map(|r| (t, r)))
        .collect();
    let ref_res = run_all(&pool, &refs, "references")?;
    let references_failed: Vec<String> = refs
        .iter()
        .zip(&ref_res)
        .filter(|(_, g)| !g.passed)
        .map(|((t, _), g)| format!("{}: {}", t.id, g.reason()))
        .collect();
    let bugs: Vec<(&RepairTask, &str)> = tasks
        .iter()
        .filter(|t| !t.buggy_program.is_empty())
        .map(|t| (t, t.buggy_program.as_str()))
        .collect();
    let bug_res = run_all(&pool, &bugs, "buggy programs")?;
    let buggy_passed: Vec<String> = bugs
        .iter()
        .zip(&bug_res)
        .filter(|(_, g)| g.passed)
        .map(|((t, _), _)| t.id.clone())
        .collect();
    let s = CheckSummary {
        benchmark: bench.to_string(),
        tasks: tasks.len(),
        references_passed: ref_res.iter().filter(|g| g.passed).count(),
        references_failed,
        buggy_checked: bugs.len(),
        buggy_failed: bug_res.iter().filter(|g| !g.passed).count(),
        buggy_passed,
        seconds: t0.elapsed().as_secs_f64(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("{}: {} tasks ({:.1} s)", s.benchmark, s.tasks, s.seconds);
        println!(
            "  references: {} passed, {} failed",
            s.references_passed,
            s.references_failed.len()
        );
        for f in &s.references_failed {
            println!("    FAIL {f}");
        }
        if s.buggy_checked > 0 {
            println!(
                "  buggy programs: {} fail (as they should), {} pass",
                s.buggy_failed,
                s.buggy_passed.len()
            );
            for p in &s.buggy_passed {
                println!("    PASSES {p}");
            }
        }
    }
    Ok(())
}

fn build(
    opts: &DataOpts,
    candidates: &Path,
    out: &Path,
    drop_import_artefacts: bool,
) -> anyhow::Result<()> {
    let (dir, _) = opts.dir();
    let mbpp = nxt_data::loaders::load_mbpp(&registry::locate(&dir, "mbpp")?)?;
    let cands = mbppr::read_candidates(candidates)?;
    eprintln!("{} candidates from {}", cands.len(), candidates.display());
    let pool = opts.pool()?;
    let t0 = std::time::Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let build = mbppr::build_mbpp_r(
        &pool,
        &mbpp,
        &cands,
        &mbppr::BuildOptions {
            drop_import_artefacts,
        },
        &mut |done, total| {
            let b = bar.get_or_insert_with(|| progress_bar(total, "executing"));
            b.set_position(done as u64);
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    mbppr::write_build(&build, out)?;
    let dpath = out.join("disagreements.jsonl");
    let mut text = String::new();
    for d in &build.summary.disagreements {
        text.push_str(&serde_json::to_string(d)?);
        text.push('\n');
    }
    std::fs::write(&dpath, text).with_context(|| format!("writing {}", dpath.display()))?;
    let s = &build.summary;
    println!(
        "MBPP-R built in {:.1} s -> {}",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    println!(
        "  candidates {}: dropped {} syntax errors, {} empty, {} duplicates, {} passing, {} unknown task ids, {} import artefacts",
        s.candidates, s.syntax_errors, s.empty, s.duplicates, s.passing, s.unknown_task, s.import_artefacts_dropped
    );
    for split in nxt_data::Split::ALL {
        let n = s.tasks_per_split.get(split.name()).copied().unwrap_or(0);
        let p = s.problems_per_split.get(split.name()).copied().unwrap_or(0);
        println!(
            "  {:<10} {:>5} repair tasks on {:>3} problems",
            split.name(),
            n,
            p
        );
    }
    if s.import_artefacts_kept > 0 {
        println!(
            "  ({} kept tasks only fail for a missing import; --drop-import-artefacts drops them)",
            s.import_artefacts_kept
        );
    }
    if s.compared > 0 {
        println!(
            "  verdicts vs the file's `passed`: {} / {} agree; {} disagreements in {}",
            s.agreed,
            s.compared,
            s.disagreements.len(),
            dpath.display()
        );
    }
    Ok(())
}
