//! `nxt check-rationale`: trace a buggy program on its failing test and check every execution
//! claim of one rationale against the trace (supported / contradicted / unverifiable).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nxt_faithful::{check_rationale, ClaimVerdict, FaithfulnessReport};
use nxt_trace::{Trace, TraceRequest};

use crate::args::{DataDirArgs, SandboxArgs};
use crate::exit;

/// Arguments of `nxt check-rationale`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A benchmark task, e.g. `hefix/0`, `mbpp-r/11/0`: its buggy program is traced on its
    /// first failing shown test.
    #[arg(long, conflicts_with_all = ["program", "test", "trace"])]
    pub task: Option<String>,
    /// A program file (with --test).
    #[arg(long, requires = "test", conflicts_with = "trace")]
    pub program: Option<PathBuf>,
    /// The test the program is traced on, e.g. "assert f(3) == 4".
    #[arg(long, requires = "program")]
    pub test: Option<String>,
    /// A recorded trace (JSON, as written by --trace-out) instead of tracing.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// The rationale (a text file; `-` reads stdin).
    #[arg(long)]
    pub rationale: PathBuf,
    /// Print `{"verdict": .., "claims": [{"text": .., "verdict": .., ..}]}`.
    #[arg(long)]
    pub json: bool,
    /// Also write the trace checked against (JSON) to this file.
    #[arg(long)]
    pub trace_out: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let bytes = if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| exit::input(format!("cannot read the {what} from stdin: {e}")))?;
        b
    } else {
        std::fs::read(path)
            .map_err(|e| exit::input(format!("cannot read {what} {}: {e}", path.display())))?
    };
    String::from_utf8(bytes)
        .map_err(|e| exit::input(format!("{what} {} is not UTF-8 text: {e}", path.display())))
}

/// Load one benchmark task by id (`hefix/0` names HumanEvalFix bug 0, graded as HeFix+).
fn load_task(
    spec: &str,
    data: &DataDirArgs,
    pool: &nxt_sandbox::Pool,
) -> anyhow::Result<nxt_core::task::RepairTask> {
    let task = nxt_data::TaskRef::parse(spec)?;
    let dir = data.for_benchmark(task.benchmark, false)?;
    let tasks = nxt_data::load_benchmark_with(task.benchmark.name(), &dir, Some(pool))
        .with_context(|| format!("cannot load benchmark {}", task.benchmark))?;
    Ok(task.find(tasks)?)
}

/// The trace to check against: recorded, or traced now.
fn get_trace(args: &Args) -> anyhow::Result<Trace> {
    if let Some(p) = &args.trace {
        let text = read_text(p, "trace")?;
        return serde_json::from_str(&text)
            .map_err(|e| exit::input(format!("{}: not a recorded trace: {e}", p.display())));
    }
    let pool = args.sandbox.pool()?;
    let req = match (&args.task, &args.program, &args.test) {
        (Some(t), _, _) => {
            let task = load_task(t, &args.data, &pool)?;
            let (_, test) = nxt_core::repair::find_failing_test(&pool, &task)?
                .or_else(|| task.prompt_tests.tests.first().cloned().map(|t| (0, t)))
                .ok_or_else(|| exit::input(format!("task {t} has no shown tests")))?;
            TraceRequest {
                program: task.buggy_program.clone(),
                test,
                setup: task.prompt_tests.setup.clone(),
                setup_placement: task.prompt_tests.setup_placement,
                capture: nxt_faithful::full_capture(),
                memory_bytes: nxt_data::grading_limits().memory_bytes,
            }
        }
        (None, Some(p), Some(test)) => {
            let program = read_text(p, "program")?;
            let mut r = TraceRequest::new(program, test.clone());
            r.capture = nxt_faithful::full_capture();
            r
        }
        _ => return Err(exit::usage(
            "give --task BENCHMARK/ID, or --program FILE --test \"assert ...\", or --trace FILE",
        )),
    };
    nxt_trace::trace(&pool, &req).context("tracing failed")
}

/// Run `nxt check-rationale`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rationale = read_text(&args.rationale, "rationale")?;
    let trace = get_trace(&args)?;
    if let Some(out) = &args.trace_out {
        let text = serde_json::to_string_pretty(&trace).context("cannot encode the trace")?;
        std::fs::write(out, text + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    let report = check_rationale(&rationale, &trace);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot encode the report")?
        );
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &FaithfulnessReport) {
    for c in &r.claims {
        let mark = match c.verdict {
            ClaimVerdict::Supported => "supported   ",
            ClaimVerdict::Contradicted => "CONTRADICTED",
            ClaimVerdict::Unverifiable => "unverifiable",
        };
        println!("{mark}  {}  -- {}", c.text.replace('\n', " "), c.reason);
        if let (ClaimVerdict::Contradicted, Some(e)) = (c.verdict, &c.evidence) {
            println!("              line {}: {}  # {}", e.line, e.source, e.shows);
        }
    }
    println!(
        "verdict: {} ({} claims: {} supported, {} contradicted, {} unverifiable)",
        r.verdict.as_str(),
        r.claims.len(),
        r.count(ClaimVerdict::Supported),
        r.count(ClaimVerdict::Contradicted),
        r.count(ClaimVerdict::Unverifiable)
    );
}
