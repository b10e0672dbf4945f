//! `nxt exec`: run untrusted Python programs against tests in the sandbox.
//!
//! * one job: `nxt exec --program p.py --tests t.py [--setup s.py] [--setup-after] [--json]`
//! * many: `nxt exec --batch jobs.jsonl --out results.jsonl [--jobs N]` (resumable)
//! * `nxt exec --isolation-report`
//!
//! Exit status of a single job: 0 passed, 1 failed, 2 executor error, 64 usage error, 65 input
//! error (a file that cannot be read or is not UTF-8 text, a tests file without statements).
//! A batch exits 0 once every job has a result (failing programs are normal results), 2 on
//! executor errors. Tests are split with the tokenizer of `nxt_core::pysource`.

use crate::args::{sandbox_pool, SandboxArgs};
use crate::exit;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use nxt_core::task::split_tests;
use nxt_sandbox::{
    Comparison, Job, JobResult, Limits, Pool, PoolConfig, SetupPlacement, TestOutcome, Verdict,
};
use serde_json::{json, Value};

/// Arguments of `nxt exec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Python program to test.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["batch", "isolation_report"])]
    pub program: Option<PathBuf>,
    /// Test file: every top-level statement (usually an `assert`) is one test.
    #[arg(long, value_name = "FILE", requires = "program")]
    pub tests: Option<PathBuf>,
    /// Setup code (imports, helpers); runs before the program unless --setup-after.
    #[arg(long, value_name = "FILE", requires = "program")]
    pub setup: Option<PathBuf>,
    /// Run the setup code after the program (MBPP tasks 367 and 927 need it).
    #[arg(long)]
    pub setup_after: bool,
    /// Wall-clock limit per test, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub timeout: f64,
    /// Wall-clock limit per job (program + all tests), in seconds.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub job_timeout: f64,
    /// Address-space limit per job, in MiB.
    #[arg(long, value_name = "MB", default_value_t = 1024)]
    pub memory: u64,
    /// Bytes of stdout and of stderr kept per test.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub output_bytes: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Judge `==` in asserts with Python's plain `==` instead of the strict, type-checking one.
    #[arg(long)]
    pub plain_eq: bool,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// JSON-lines file of jobs: {"id", "program", "tests": [...], "setup"?, "setup_after"?}.
    #[arg(
        long,
        value_name = "FILE",
        requires = "out",
        conflicts_with = "isolation_report"
    )]
    pub batch: Option<PathBuf>,
    /// Where batch results go (one JSON object per line); ids already there are skipped.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Parallel workers (default: number of CPUs).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print which isolation layers are active and exit (status 1 if any is missing).
    #[arg(long)]
    pub isolation_report: bool,
}

/// Runs `nxt exec`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.isolation_report {
        return isolation_report(&args);
    }
    if let Some(batch) = &args.batch {
        let out = args
            .out
            .clone()
            .ok_or_else(|| exit::usage("--batch needs --out"))?;
        return run_batch(&args, batch, &out);
    }
    let (Some(program), Some(tests)) = (&args.program, &args.tests) else {
        return Err(exit::usage(
            "give --program and --tests, or --batch and --out, or --isolation-report",
        ));
    };
    run_single(&args, program, tests)
}

fn pool(args: &Args, workers: usize) -> anyhow::Result<Pool> {
    let pool = sandbox_pool(args.sandbox.allow_weak_isolation, Some(workers))?;
    let report = pool.isolation_report();
    if !report.complete() {
        eprintln!(
            "warning: running with weak isolation; missing layers: {}",
            report.missing().join(", ")
        );
    }
    Ok(pool)
}

fn limits(args: &Args) -> anyhow::Result<Limits> {
    let secs = |v: f64, what: &str| -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                exit::usage(format!(
                    "{what} must be a positive number of seconds, got {v}"
                ))
            })
    };
    if args.memory == 0 {
        return Err(exit::usage("--memory must be positive"));
    }
    Ok(Limits {
        test_timeout: secs(args.timeout, "--timeout")?,
        job_timeout: secs(args.job_timeout, "--job-timeout")?,
        memory_bytes: args.memory.saturating_mul(1 << 20),
        output_bytes: args.output_bytes,
    })
}

fn comparison(args: &Args) -> Comparison {
    if args.plain_eq {
        Comparison::Plain
    } else {
        Comparison::Strict
    }
}

/// A text input file; unreadable or not UTF-8 is an input error (exit 65).
fn read_text(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).map_err(|e| {
        exit::input(match e.kind() {
            std::io::ErrorKind::InvalidData => {
                format!("{}: not UTF-8 text (a binary file?)", p.display())
            }
            _ => format!("cannot read {}: {e}", p.display()),
        })
    })
}

fn isolation_report(args: &Args) -> anyhow::Result<()> {
    let pool = sandbox_pool(true, Some(1))?;
    let report = pool.isolation_report();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    drop(pool);
    if !report.complete() {
        std::process::exit(1);
    }
    Ok(())
}

fn run_single(args: &Args, program: &Path, tests_path: &Path) -> anyhow::Result<()> {
    let tests_src = read_text(tests_path)?;
    let tests = split_tests(&tests_src);
    if tests.is_empty() {
        return Err(exit::input(format!(
            "{}: no test statements found",
            tests_path.display()
        )));
    }
    let job = Job {
        program: read_text(program)?,
        setup: args.setup.as_deref().map(read_text).transpose()?,
        setup_placement: if args.setup_after {
            SetupPlacement::AfterProgram
        } else {
            SetupPlacement::BeforeProgram
        },
        tests,
        limits: limits(args)?,
        comparison: comparison(args),
    };
    let pool = pool(args, 1)?;
    let result = match pool.run(&job) {
        Ok(r) => r,
        Err(e) => {
            drop(pool);
            eprintln!("error: the executor failed (not the program): {e}");
            std::process::exit(2);
        }
    };
    drop(pool);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_human(&job, &result);
    }
    if result.verdict != Verdict::Passed {
        std::process::exit(1);
    }
    Ok(())
}

fn describe(o: &TestOutcome) -> String {
    match o {
        TestOutcome::Passed => "passed".into(),
        TestOutcome::Failed { message } if message.is_empty() => "FAILED".into(),
        TestOutcome::Failed { message } => format!("FAILED: {message}"),
        TestOutcome::Error {
            exc_type,
            message,
            line,
        } => match line {
            Some(l) => format!("ERROR {exc_type}: {message} (program line {l})"),
            None => format!("ERROR {exc_type}: {message}"),
        },
        TestOutcome::Timeout => "TIMEOUT".into(),
        TestOutcome::MemoryExceeded => "MEMORY EXCEEDED".into(),
        TestOutcome::Crashed { signal } => format!("CRASHED (signal {signal})"),
        TestOutcome::NotRun => "not run".into(),
    }
}

fn print_human(job: &Job, r: &JobResult) {
    if let Some(e) = &r.load_error {
        println!("program failed to load: {}", describe(e));
        if !r.load_stderr.is_empty() {
            println!("  stderr: {}", r.load_stderr.trim_end());
        }
    }
    for (i, (t, src)) in r.tests.iter().zip(&job.tests).enumerate() {
        let first = src.lines().next().unwrap_or("");
        println!(
            "test {}: {} ({:.1} ms)  {}",
            i + 1,
            describe(&t.outcome),
            t.duration.as_secs_f64() * 1e3,
            first
        );
        for (name, text) in [("stdout", &t.stdout), ("stderr", &t.stderr)] {
            if !text.is_empty() && t.outcome != TestOutcome::Passed {
                println!(
                    "  {name}: {}",
                    text.trim_end().replace('\n', "\n          ")
                );
            }
        }
        if t.output_truncated {
            println!("  (output truncated)");
        }
    }
    let passed = r
        .tests
        .iter()
        .filter(|t| t.outcome == TestOutcome::Passed)
        .count();
    println!(
        "verdict: {} ({passed}/{} tests passed, {:.1} ms)",
        match r.verdict {
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
        },
        r.tests.len(),
        r.duration.as_secs_f64() * 1e3
    );
}

/// One line of a batch file.
#[derive(Debug, serde::Deserialize)]
struct BatchJob {
    id: Value,
    program: String,
    tests: Vec<String>,
    #[serde(default)]
    setup: Option<String>,
    #[serde(default)]
    setup_after: bool,
}

fn id_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads the ids already completed in `out`; cuts off a truncated last line (a run killed
/// mid-write) so appending continues cleanly. Lines recording an executor error are redone.
fn completed_ids(out: &Path) -> anyhow::Result<HashSet<String>> {
    let resumed = nxt_data::jsonl::read_resumable(out)?;
    if resumed.dropped_bytes > 0 {
        eprintln!(
            "note: {} ends with an incomplete line (interrupted run); it is dropped",
            out.display()
        );
    }
    let mut done = HashSet::new();
    for (line, v) in &resumed.records {
        let id = v
            .get("id")
            .with_context(|| format!("{}:{line}: result has no id", out.display()))?;
        if v.get("error").is_none() {
            done.insert(id_key(id));
        }
    }
    Ok(done)
}

fn run_batch(args: &Args, batch: &Path, out: &Path) -> anyhow::Result<()> {
    let limits = limits(args)?;
    let comparison = comparison(args);
    let reader = BufReader::new(
        File::open(batch)
            .map_err(|e| exit::input(format!("cannot open {}: {e}", batch.display())))?,
    );
    let mut ids = Vec::new();
    let mut jobs = Vec::new();
    let mut seen = HashSet::new();
    let done = completed_ids(out)?;
    let mut skipped = 0usize;
    for (n, line) in reader.lines().enumerate() {
        let line = line
            .map_err(|e| exit::input(format!("{}:{}: unreadable: {e}", batch.display(), n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let j: BatchJob = serde_json::from_str(&line).map_err(|e| {
            exit::input(format!(
                "{}:{}: expected {{\"id\", \"program\", \"tests\": [...], \"setup\"?}}: {e}",
                batch.display(),
                n + 1
            ))
        })?;
        let key = id_key(&j.id);
        if !seen.insert(key.clone()) {
            return Err(exit::input(format!(
                "{}:{}: duplicate id {}",
                batch.display(),
                n + 1,
                j.id
            )));
        }
        if done.contains(&key) {
            skipped += 1;
            continue;
        }
        ids.push(j.id);
        jobs.push(Job {
            program: j.program,
            setup: j.setup,
            setup_placement: if j.setup_after {
                SetupPlacement::AfterProgram
            } else {
                SetupPlacement::BeforeProgram
            },
            tests: j.tests,
            limits: limits.clone(),
            comparison,
        });
    }
    let mut sink = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let workers = args
        .jobs
        .unwrap_or_else(|| PoolConfig::default().workers)
        .max(1);
    let (mut passed, mut failed, mut errors) = (0usize, 0usize, 0usize);
    if !jobs.is_empty() {
        let pool = pool(args, workers.min(jobs.len()))?;
        let bar = indicatif::ProgressBar::new(jobs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let mut write_err = None;
        pool.run_many(&jobs, |i, r| {
            let line = match r {
                Ok(r) => {
                    if r.verdict == Verdict::Passed {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                    let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert("id".into(), ids[i].clone());
                    }
                    v
                }
                Err(e) => {
                    errors += 1;
                    json!({"id": ids[i], "error": e.to_string()})
                }
            };
            let mut s = line.to_string();
            s.push('\n');
            if write_err.is_none() {
                if let Err(e) = sink.write_all(s.as_bytes()) {
                    write_err = Some(e);
                }
            }
            bar.set_message(format!("{passed} passed, {failed} failed, {errors} errors"));
            bar.inc(1);
        });
        bar.finish();
        if let Some(e) = write_err {
            return Err(e).with_context(|| format!("writing {}", out.display()));
        }
    }
    sink.flush()?;
    eprintln!(
        "{} jobs run: {passed} passed, {failed} failed, {errors} executor errors; {skipped} already in {}",
        jobs.len(),
        out.display()
    );
    if errors > 0 {
        std::process::exit(2);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_tests;

    #[test]
    fn splits_top_level_statements() {
        let src = "assert f(1) == 2\n\n# comment\nassert f(\n    2) == 3\ndef check(c):\n    assert c(1) == 2\n\n    assert c(2) == 3\ncheck(f)\ns = '''a\nb'''\nif x:\n    pass\nelse:\n    pass\n@dec\ndef g():\n    pass\n";
        let t = split_tests(src);
        assert_eq!(t.len(), 7, "{t:#?}");
        assert_eq!(t[1], "assert f(\n    2) == 3");
        assert!(t[2].starts_with("def check") && t[2].ends_with("c(2) == 3"));
        assert_eq!(t[4], "s = '''a\nb'''");
        assert!(t[5].contains("else:"));
        assert!(t[6].starts_with("@dec\ndef g"));
    }
}
