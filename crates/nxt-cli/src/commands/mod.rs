//! Subcommands of `nxt`. One module per command family; each exposes an `Args` struct and a
//! `run(args) -> anyhow::Result<()>`.

use clap::Subcommand;

pub(crate) mod adapter;
mod check_rationale;
mod data;
mod eval;
mod exec;
mod generate;
mod grade;
mod repair;
mod report;
mod sample_candidates;
mod selftrain;
mod serve;
mod trace;
mod train;

/// All subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the version and exit.
    Version,
    /// Datasets: list, fetch (pinned sha256), check references, sample candidates, build MBPP-R.
    Data(data::Args),
    /// Grade a samples file on a benchmark: pass@k, resumable through SQLite.
    Grade(grade::Args),
    /// Run untrusted Python programs against tests in the sandbox.
    Exec(exec::Args),
    /// Trace a program on a test and print the NExT inline trace (or another format).
    Trace(trace::Args),
    /// Repair one buggy program with a model that reads its execution trace.
    Repair(repair::Args),
    /// Evaluate trace-augmented repair on a benchmark: pass@k, greedy, proxy; resumable.
    Eval(eval::Args),
    /// Sample completions for a JSONL file of prompts (engine or OpenAI-compatible servers).
    Generate(generate::Args),
    /// Serve a model over an OpenAI-compatible HTTP API.
    Serve(serve::Args),
    /// Fine-tune a model (LoRA or full) on prompt/completion data; merge and check adapters.
    Train(train::Args),
    /// Self-training (NExT Algorithm 1): sample, keep passing fixes, fine-tune, pick by dev.
    Selftrain(selftrain::Args),
    /// Write a self-contained HTML report of an evaluation or self-training run.
    Report(report::Args),
    /// Check the execution claims of a rationale against the program's trace.
    CheckRationale(check_rationale::Args),
}

/// Dispatch one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Exec(args) => exec::run(args),
        Command::Data(args) => data::run(args),
        Command::Grade(args) => grade::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Repair(args) => repair::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Train(args) => train::run(args),
        Command::Selftrain(args) => selftrain::run(args),
        Command::Report(args) => report::run(args),
        Command::CheckRationale(args) => check_rationale::run(args),
        Command::Version => {
            println!("nxt {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
