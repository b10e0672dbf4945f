//! `nxt`: the NExT command-line tool.
//!
//! Each subcommand lives in its own module under `commands/`; the argument groups several
//! commands share (data directory, sandbox, model and prompt, progress bar) and the one sandbox
//! pool constructor are in [`args`]; this file only dispatches and turns errors into one line
//! and an exit status ([`exit`]).

mod args;
mod commands;
mod exit;

use clap::Parser;

/// NExT: teach code LLMs to reason about execution.
#[derive(Debug, Parser)]
#[command(name = "nxt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() {
    exit_quietly_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` print to stdout and succeed; every other parse
            // error is a usage error.
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(e) = commands::run(cli.command) {
        // One line with the causes, no backtrace even with RUST_BACKTRACE set: a user error
        // is not a bug.
        eprintln!("error: {}", exit::describe(&e));
        std::process::exit(exit::code_of(&e));
    }
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
