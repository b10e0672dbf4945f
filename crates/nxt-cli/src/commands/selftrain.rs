//! `nxt selftrain`: the NExT self-training loop (Algorithm 1) from a TOML configuration,
//! resumable in its run directory; `nxt selftrain merge` joins the stores of `--shard i/N`
//! processes before training.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nxt_selftrain::{Event, RunEnd, RunOptions, SelftrainConfig, Shard};

/// Arguments of `nxt selftrain`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// `merge`: join shard stores.
    #[command(subcommand)]
    pub action: Option<Action>,
    /// The configuration file (see examples/toy-selftrain.toml and examples/paper-selftrain.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory (default: runs/selftrain-<config file stem>). Rerun the same command to
    /// resume after an interruption.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Sample and grade only shard i of N of the next sampling stage (a Slurm array task or a
    /// Kubernetes indexed job), into a store of its own, then stop.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Stop at a sampling stage whose samples are not all stored (the coordinator of a sharded
    /// run: start the shards, `nxt selftrain merge`, then rerun).
    #[arg(long)]
    pub stop_before_sampling: bool,
    /// Accept weaker sandbox isolation when some layers are unavailable.
    #[arg(long)]
    pub allow_weak_isolation: bool,
}

/// Subcommands of `nxt selftrain`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Join the shard stores of every unfinished sampling stage of a run directory.
    Merge {
        /// The run directory.
        #[arg(long)]
        run_dir: PathBuf,
    },
}

/// Prints the loop's events: a progress bar per stage on a terminal, plain lines otherwise;
/// redraws `report.html` whenever the loop rewrites its results.
struct Reporter {
    tty: bool,
    bar: Option<ProgressBar>,
    last_plain: std::time::Instant,
    run_dir: PathBuf,
}

impl Reporter {
    fn new(run_dir: &Path) -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            bar: None,
            last_plain: std::time::Instant::now(),
            run_dir: run_dir.to_path_buf(),
        }
    }

    fn finish_bar(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    fn event(&mut self, e: &Event) {
        match e {
            Event::Stage { name, detail } => {
                self.finish_bar();
                eprintln!("== {name}: {detail}");
            }
            Event::Progress(p) => {
                if self.tty {
                    let bar = self.bar.get_or_insert_with(|| {
                        let b = ProgressBar::new(p.total as u64);
                        b.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>8} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        b.enable_steady_tick(Duration::from_millis(200));
                        b
                    });
                    bar.set_prefix(p.stage);
                    bar.set_length(p.total as u64);
                    bar.set_position(p.done as u64);
                    bar.set_message(p.message.clone());
                } else if self.last_plain.elapsed() > Duration::from_secs(10) || p.done == p.total {
                    self.last_plain = std::time::Instant::now();
                    eprintln!("   {} {}/{} {}", p.stage, p.done, p.total, p.message);
                }
            }
            Event::Done { name, summary } => {
                self.finish_bar();
                eprintln!("   {name}: {summary}");
            }
            Event::Note(n) => {
                self.finish_bar();
                eprintln!("   note: {n}");
            }
            Event::ResultsWritten => {
                // The HTML page is derived from the store; a failure to draw it loses nothing.
                let out = self.run_dir.join("report.html");
                if let Err(e) = nxt_report::write_report(&self.run_dir, &[], &out) {
                    self.finish_bar();
                    eprintln!("   warning: report.html not redrawn: {e}");
                }
            }
        }
    }
}

/// Runs `nxt selftrain`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Action::Merge { run_dir }) = &args.action {
        let merged = nxt_selftrain::merge::merge_shards(run_dir)?;
        if merged.is_empty() {
            eprintln!(
                "{}: no unfinished stage has shard stores",
                run_dir.display()
            );
        }
        for m in merged {
            eprintln!(
                "{}: merged {} shards ({} samples)",
                m.stage, m.shards, m.samples
            );
        }
        return Ok(());
    }
    let config = args
        .config
        .clone()
        .context("give --config FILE (see examples/toy-selftrain.toml)")?;
    let cfg = SelftrainConfig::from_file(&config)?;
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| nxt_selftrain::default_run_dir(&config));
    let pool = crate::args::sandbox_pool(args.allow_weak_isolation, None)?;
    eprintln!("self-training run in {}", run_dir.display());
    let opts = RunOptions {
        shard: args.shard,
        stop_before_sampling: args.stop_before_sampling,
    };
    let mut rep = Reporter::new(&run_dir);
    let end = nxt_selftrain::run(&cfg, &run_dir, &pool, &opts, &mut |e| rep.event(e));
    rep.finish_bar();
    match end? {
        RunEnd::Finished(_) => {
            // The page's headline table (the same numbers report.html shows).
            match nxt_report::load_run(&run_dir) {
                Ok(run) => println!("{}", nxt_report::summary_table(&run, &[])),
                Err(e) => eprintln!("warning: no summary table: {e}"),
            }
            println!(
                "results: {}/results.json, {}/report.md",
                run_dir.display(),
                run_dir.display()
            );
        }
        RunEnd::Paused(why) => eprintln!("paused: {why}"),
    }
    let page = run_dir.join("report.html");
    if page.exists() {
        eprintln!("report: {}", page.display());
    }
    Ok(())
}
