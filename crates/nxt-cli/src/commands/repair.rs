//! `nxt repair`: repair one buggy program with a model that reads its execution trace; prints
//! the trace shown in the prompt, the rationale, the fixed program and its verdict.

use std::path::PathBuf;

use anyhow::{bail, Context};
use nxt_core::repair_task;
use nxt_core::task::{adhoc_task, split_tests};

use crate::args::{BenchmarkDataArgs, ModelArgs};
use nxt_data::TaskRef;

/// Arguments of `nxt repair`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A benchmark task, e.g. `hefix/0` (HeFix+ task 0), `hefix+/3`, `mbpp-r/11/0`.
    #[arg(long, conflicts_with_all = ["program", "tests", "spec"])]
    pub task: Option<String>,
    /// A buggy program file (with --tests and --spec).
    #[arg(long, requires = "tests")]
    pub program: Option<PathBuf>,
    /// A file of tests, one statement (usually an `assert`) per top-level statement.
    #[arg(long, requires = "program")]
    pub tests: Option<PathBuf>,
    /// The problem statement (with --program).
    #[arg(long, default_value = "")]
    pub spec: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Samples (1 = one repair).
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Also print the whole prompt.
    #[arg(long)]
    pub show_prompt: bool,
    #[command(flatten)]
    pub data: BenchmarkDataArgs,
}

/// Run `nxt repair`.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Arguments first: nothing starts for a command that would be refused.
    if args.n == 0 {
        return Err(crate::exit::usage("--n must be at least 1"));
    }
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(crate::exit::usage(format!(
            "--temperature {}: must be a number >= 0",
            args.temperature
        )));
    }
    // A bad --adapter fails before the sandbox starts and the data loads.
    super::adapter::engine_options(&args.model.model, args.model.adapter.as_deref())?;
    let pool = args.model.pool()?;
    let task = match (&args.task, &args.program, &args.tests) {
        (Some(t), _, _) => {
            let task = TaskRef::parse(t)?;
            let dir = args.data.for_benchmark(task.benchmark)?;
            let tasks = nxt_data::load_benchmark_with(task.benchmark.name(), &dir, Some(&pool))
                .with_context(|| format!("cannot load benchmark {}", task.benchmark))?;
            task.find(tasks)?
        }
        (None, Some(p), Some(tp)) => {
            let program = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read program {}", p.display()))?;
            let tests_text = std::fs::read_to_string(tp)
                .with_context(|| format!("cannot read tests {}", tp.display()))?;
            let tests = split_tests(&tests_text);
            if tests.is_empty() {
                bail!("{}: no test statements found", tp.display());
            }
            adhoc_task(&p.display().to_string(), &args.spec, &program, tests)
        }
        _ => bail!("give --task BENCHMARK/ID, or --program FILE --tests FILE [--spec TEXT]"),
    };
    let generator = args.model.open(&args.model.model)?;
    let cfg = args.model.repair_config();
    eprintln!("repairing {} ...", task.id);
    let out = repair_task(
        &pool,
        generator.as_ref(),
        &task,
        &cfg,
        args.n,
        args.temperature,
    )?;
    if args.show_prompt {
        println!(
            "===== prompt\n{}",
            nxt_core::prompt::prompt_text(&out.prompt)
        );
    }
    println!("===== task {}", task.id);
    match (&out.prep.failing_test, &out.prep.trace) {
        (Some(test), Some(trace)) => {
            println!("===== trace of the buggy program on `{test}`\n{trace}")
        }
        (Some(test), None) if cfg.prompt.with_trace => println!("===== no trace for `{test}`"),
        _ => {}
    }
    if let Some(note) = &out.prep.note {
        println!("note: {note}");
    }
    for (i, s) in out.samples.iter().enumerate() {
        println!(
            "===== sample {} ({} prompt tokens, {} generated)",
            i + 1,
            s.completion.prompt_tokens,
            s.completion.completion_tokens
        );
        println!("----- rationale\n{}", s.parsed.rationale);
        match &s.parsed.program {
            Some(p) => println!("----- fixed program\n{}", p.trim_end()),
            None => println!(
                "----- no program could be parsed from the completion:\n{}",
                s.completion.text
            ),
        }
        let verdict = match &s.grade {
            Some(g) if g.passed => format!("PASSED ({}/{} tests)", g.tests_passed, g.tests_total),
            Some(g) => format!(
                "FAILED ({}/{} tests): {}",
                g.tests_passed,
                g.tests_total,
                g.reason()
            ),
            None => "FAILED (unparseable)".to_string(),
        };
        println!("----- verdict: {verdict}");
    }
    Ok(())
}
