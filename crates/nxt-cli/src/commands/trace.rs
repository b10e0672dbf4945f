//! `nxt trace`: trace a program on a test and print the NExT inline trace (or another format);
//! batch mode over a JSONL file; `--stats` over the benchmark corpora.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::args::{sandbox_pool, DataDirArgs, SandboxArgs};
use nxt_trace::batch::{read_jobs, run_batch, BatchSettings};
use nxt_trace::corpus::{task, CorpusError};
use nxt_trace::survey::{cases, markdown, run_survey, summarize, CORPORA};
use nxt_trace::{
    render, trace, CaptureOptions, Format, Pool, PoolConfig, RenderOptions, TraceRequest,
};

/// Arguments of `nxt trace`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Python program to trace (a file).
    #[arg(long)]
    pub program: Option<PathBuf>,
    /// Test statement(s) appended after the program, e.g. "assert f(1) == 2".
    #[arg(long)]
    pub test: Option<String>,
    /// Take program and test from a dataset: mbpp/<task_id>, humaneval/<n>, humanevalfix/<n>
    /// or hefix/<n> (reference solution; the buggy one for humanevalfix; `--program`
    /// overrides it).
    #[arg(long)]
    pub task: Option<String>,
    /// Which of the task's tests to trace.
    #[arg(long, default_value_t = 0)]
    pub test_index: usize,
    /// Output format: inline, scratchpad, json or none.
    #[arg(long, default_value = "inline")]
    pub format: Format,
    /// Batch mode: a JSONL file of {"id", "program", "test", "setup"?} jobs.
    #[arg(long, requires = "out")]
    pub batch: Option<PathBuf>,
    /// Batch output (JSONL, appended; jobs already in it are skipped: resume).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// In batch mode, also write each full trace (event list) to the output.
    #[arg(long)]
    pub include_trace: bool,
    /// Trace the benchmark corpora and print budget shares and rendering lengths (Markdown).
    #[arg(long)]
    pub stats: bool,
    /// Corpora for --stats (comma separated): mbpp, humaneval, humanevalfix, mbpp-r.
    #[arg(long, value_delimiter = ',', default_values_t = CORPORA.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    pub corpora: Vec<String>,
    /// For --stats: keep every n-th case of each corpus.
    #[arg(long, default_value_t = 1)]
    pub every: usize,
    /// For --stats: also run each test untraced and compare verdicts.
    #[arg(long)]
    pub compare: bool,
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Events shown at the start of a line that ran many times.
    #[arg(long, default_value_t = 3)]
    pub head: usize,
    /// Events shown at the end of such a line.
    #[arg(long, default_value_t = 1)]
    pub tail: usize,
    /// Character budget of one line's comment.
    #[arg(long, default_value_t = 100)]
    pub line_budget: usize,
    /// Longest value shown (longer ones keep a head and a tail around `...`).
    #[arg(long, default_value_t = 60)]
    pub value_max_chars: usize,
    /// Budget of the whole rendering in characters (compressed, then cut, to fit).
    #[arg(long)]
    pub budget: Option<usize>,
    /// Most recorded steps.
    #[arg(long, default_value_t = 10_000)]
    pub max_events: u64,
    /// Seconds of recording before the trace is marked truncated.
    #[arg(long, default_value_t = 5.0)]
    pub time_budget: f64,
    /// Seconds the traced run may take in all.
    #[arg(long, default_value_t = 10.0)]
    pub run_budget: f64,
    /// Sandbox workers (default: number of CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

fn pool(args: &Args) -> anyhow::Result<Pool> {
    sandbox_pool(args.sandbox.allow_weak_isolation, args.workers)
}

fn capture(args: &Args) -> anyhow::Result<CaptureOptions> {
    let secs = |v: f64, name: &str| -> anyhow::Result<Duration> {
        if !(v.is_finite() && v > 0.0) {
            return Err(crate::exit::usage(format!(
                "--{name} must be a positive number of seconds, got {v}"
            )));
        }
        Ok(Duration::from_secs_f64(v))
    };
    Ok(CaptureOptions {
        max_events: args.max_events,
        time_budget: secs(args.time_budget, "time-budget")?,
        run_budget: secs(args.run_budget, "run-budget")?,
        ..CaptureOptions::default()
    })
}

fn render_options(args: &Args) -> RenderOptions {
    RenderOptions {
        head: args.head,
        tail: args.tail,
        line_budget: args.line_budget,
        value_max_chars: args.value_max_chars,
        total_budget: args.budget,
    }
}

/// Run `nxt trace`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (data_dir, _) = args.data.dir();
    let opts = render_options(&args);
    let cap = capture(&args)?;
    if args.stats {
        return stats(&args, &data_dir, &cap, &opts);
    }
    if let Some(batch) = &args.batch {
        let out = args.out.clone().context("--batch needs --out")?;
        let jobs = read_jobs(batch).map_err(|e| crate::exit::input(e.to_string()))?;
        let pool = pool(&args)?;
        let settings = BatchSettings {
            capture: cap,
            format: args.format,
            render: opts,
            include_trace: args.include_trace,
            chunk: 8,
            threads: args
                .workers
                .unwrap_or_else(|| PoolConfig::default().workers),
        };
        let start = Instant::now();
        let last = Mutex::new(Instant::now());
        let n = run_batch(&pool, &jobs, &out, &settings, &|done, total| {
            let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
            if done == total || l.elapsed() > Duration::from_secs(2) {
                *l = Instant::now();
                eprintln!("[{done}/{total}] {:.0}s", start.elapsed().as_secs_f64());
            }
        })?;
        eprintln!(
            "traced {n} jobs ({} already in {}) in {:.1}s",
            jobs.len() - n,
            out.display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let (program, test, setup, placement) = match &args.task {
        Some(id) => {
            let item = task(&data_dir, id).map_err(|e| match e {
                CorpusError::UnknownTask(_) => crate::exit::usage(format!("--task: {e}")),
                CorpusError::NoSuchTask { .. } => crate::exit::input(e.to_string()),
                other => anyhow::Error::new(other).context(format!("reading task {id}")),
            })?;
            let test = match &args.test {
                Some(t) => t.clone(),
                None => item.tests.get(args.test_index).cloned().ok_or_else(|| {
                    let n = item.tests.len();
                    crate::exit::usage(format!(
                        "{id} has {n} test{}; --test-index {} is out of range (0 to {})",
                        if n == 1 { "" } else { "s" },
                        args.test_index,
                        n.saturating_sub(1)
                    ))
                })?,
            };
            let program = match &args.program {
                Some(p) => read_program(p)?,
                None => item.program.clone(),
            };
            (program, test, item.setup.clone(), item.setup_placement)
        }
        None => {
            let Some(p) = &args.program else {
                return Err(crate::exit::usage("give --program FILE --test \"assert ...\", or --task ID, or --batch FILE --out FILE, or --stats"));
            };
            let program = read_program(p)?;
            let test = args
                .test
                .clone()
                .ok_or_else(|| crate::exit::usage("--program needs --test \"assert ...\""))?;
            (program, test, None, nxt_trace::SetupPlacement::AfterProgram)
        }
    };
    let mut req = TraceRequest::new(program, test);
    req.setup = setup;
    req.setup_placement = placement;
    req.capture = cap;
    let pool = pool(&args)?;
    let t = trace(&pool, &req)?;
    let mut text = render(&t, args.format, &opts);
    if args.format == Format::Json {
        text.push('\n');
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    match syntax_error(&t) {
        Some(what) => Err(crate::exit::failed(what)),
        None => Ok(()),
    }
}

/// A program file; one that cannot be read or is not UTF-8 text is an input error.
fn read_program(p: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p)
        .map_err(|e| crate::exit::input(format!("cannot read program {}: {e}", p.display())))
}

/// The syntax error that kept the traced document from running (in the program, the test or
/// the setup), said with its line: nothing ran, so there is no trace to read.
fn syntax_error(t: &nxt_trace::Trace) -> Option<String> {
    let nxt_sandbox::TestOutcome::Error {
        exc_type,
        message,
        line,
    } = t.load_error.as_ref()?
    else {
        return None;
    };
    if !["SyntaxError", "IndentationError", "TabError"].contains(&exc_type.as_str()) {
        return None;
    }
    // Python's own location (`(<nxt-test>, line 1)`) counts in the part's lines; the
    // document's line is given instead.
    let message = match message.rfind(" (<nxt-") {
        Some(i) if message.ends_with(')') => &message[..i],
        _ => message.as_str(),
    };
    Some(match line {
        Some(l) if *l >= t.test_first_line => {
            format!("the test has a {exc_type} on line {l}: {message}")
        }
        Some(l) => format!("the program has a {exc_type} on line {l}: {message}"),
        None => format!("the setup code has a {exc_type}: {message}"),
    })
}

fn stats(
    args: &Args,
    data_dir: &std::path::Path,
    cap: &CaptureOptions,
    opts: &RenderOptions,
) -> anyhow::Result<()> {
    let names: Vec<&str> = args.corpora.iter().map(String::as_str).collect();
    for n in &names {
        if !CORPORA.contains(n) {
            return Err(crate::exit::usage(format!(
                "--corpora: unknown corpus `{n}` (expected one of {})",
                CORPORA.join(", ")
            )));
        }
    }
    let all = cases(data_dir, &names, args.every)?;
    let pool = pool(args)?;
    let threads = args
        .workers
        .unwrap_or_else(|| PoolConfig::default().workers);
    let mut capture = cap.clone();
    capture.verify = args.compare;
    let expected: usize = all
        .iter()
        .map(|c| match c.tests {
            nxt_trace::survey::TestChoice::All => c.item.tests.len(),
            nxt_trace::survey::TestChoice::FirstFailing => 1,
        })
        .sum();
    let results = Mutex::new(Vec::with_capacity(expected));
    let start = Instant::now();
    let last = Mutex::new(Instant::now());
    run_survey(&pool, &all, &capture, args.compare, threads, &|r| {
        let mut v = results.lock().unwrap_or_else(|p| p.into_inner());
        v.push(r);
        let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
        if l.elapsed() > Duration::from_secs(5) {
            *l = Instant::now();
            eprintln!(
                "[{}/{}] {:.0}s",
                v.len(),
                expected,
                start.elapsed().as_secs_f64()
            );
        }
    });
    let traced = start.elapsed();
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let render_start = Instant::now();
    let stats = summarize(&results, opts, None);
    let render_time = render_start.elapsed();
    println!("{}", markdown(&stats, "characters"));
    println!(
        "{} traces in {:.1}s ({} workers){}; rendering all formats of all traces: {:.2}s",
        results.len(),
        traced.as_secs_f64(),
        threads,
        if args.compare {
            ", each also run untraced to compare verdicts"
        } else {
            ""
        },
        render_time.as_secs_f64()
    );
    let mut slow: Vec<(f64, &str)> = results
        .iter()
        .map(|r| (r.duration.as_secs_f64(), r.id.as_str()))
        .collect();
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slow: Vec<String> = slow
        .iter()
        .take(8)
        .map(|(d, id)| format!("{id} {d:.2}s"))
        .collect();
    println!("slowest traced runs: {}", slow.join(", "));
    let problems: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.error
                .iter()
                .map(move |e| format!("{}: tracer error: {e}", r.id))
                .chain(r.problems.iter().map(move |p| format!("{}: {p}", r.id)))
        })
        .collect();
    for p in problems.iter().take(40) {
        eprintln!("{p}");
    }
    if !problems.is_empty() {
        eprintln!("{} problems", problems.len());
    }
    Ok(())
}
