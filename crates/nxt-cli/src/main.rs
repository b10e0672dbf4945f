//! `nxt`: the NExT command-line tool.
//!
//! Each subcommand lives in its own module under `commands/`; this file only dispatches.

mod commands;

use clap::Parser;

/// NExT: teach code LLMs to reason about execution.
#[derive(Debug, Parser)]
#[command(name = "nxt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    commands::run(cli.command)
}
