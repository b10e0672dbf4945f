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
    exit_quietly_on_closed_stdout();
    let cli = Cli::parse();
    commands::run(cli.command)
}

/// `nxt data list | head` closes stdout early; `println!` then panics with "Broken pipe".
/// SIGPIPE stays ignored (the sandbox must see EPIPE from a dead worker, not die of it), so
/// this hook turns that one panic into the quiet exit status a shell expects (128 + SIGPIPE).
fn exit_quietly_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}
