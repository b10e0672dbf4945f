//! Trace whole corpora through the sandbox and check every trace (the corpus test and
//! `nxt trace --stats` share this).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nxt_sandbox::{Comparison, Job, Limits, Pool, TestOutcome};

use crate::corpus::{self, CorpusError, CorpusItem};
use crate::{check::check_trace, trace_many, CaptureOptions, Trace, TraceRequest};

/// Which tests of a corpus item are traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestChoice {
    /// Each of its tests (one trace per test).
    All,
    /// The first test that fails without tracing (found with [`Pool::run`]).
    FirstFailing,
}

/// One program to trace on one or more of its tests.
#[derive(Debug, Clone)]
pub struct SurveyCase {
    /// Corpus name: `mbpp`, `humaneval`, `humanevalfix` or `mbpp-r`.
    pub corpus: &'static str,
    /// The program and its tests.
    pub item: CorpusItem,
    /// Which tests.
    pub tests: TestChoice,
}

/// The corpora known to the survey, in order.
pub const CORPORA: [&str; 4] = ["mbpp", "humaneval", "humanevalfix", "mbpp-r"];

/// Cases of the named corpora: MBPP references on each of their tests, HumanEval canonical
/// solutions, HumanEvalFix buggy programs, mbpp-r-seed failing programs on their first failing
/// test. `every`: keep every n-th program of each corpus (1 keeps all), a deterministic subset.
pub fn cases(
    data_dir: &Path,
    corpora: &[&str],
    every: usize,
) -> Result<Vec<SurveyCase>, CorpusError> {
    let every = every.max(1);
    let mut out = Vec::new();
    for &name in CORPORA.iter().filter(|c| corpora.contains(c)) {
        let (items, tests) = match name {
            "mbpp" => (corpus::mbpp(data_dir)?, TestChoice::All),
            "humaneval" => (corpus::humaneval(data_dir)?, TestChoice::All),
            "humanevalfix" => (corpus::humanevalfix(data_dir)?, TestChoice::All),
            _ => (corpus::mbpp_r_failing(data_dir)?, TestChoice::FirstFailing),
        };
        out.extend(items.into_iter().step_by(every).map(|item| SurveyCase {
            corpus: name,
            item,
            tests,
        }));
    }
    Ok(out)
}

/// The result of one traced test.
#[derive(Debug, Clone)]
pub struct SurveyResult {
    /// Corpus name.
    pub corpus: &'static str,
    /// Case id (`mbpp/11#0`: task and test index).
    pub id: String,
    /// The trace, when tracing worked.
    pub trace: Option<Trace>,
    /// Tracing error (a tracer crash), if any.
    pub error: Option<String>,
    /// The test's verdict without tracing, when compared.
    pub untraced: Option<TestOutcome>,
    /// Problems found by [`check_trace`] and the verdict comparison.
    pub problems: Vec<String>,
    /// Wall time of the traced run (sandbox round trip included; shared evenly by the traces
    /// of one batch).
    pub duration: Duration,
}

/// Verdict category used for comparisons: status, plus the exception type for errors.
pub fn verdict_class(o: &TestOutcome) -> String {
    match o {
        TestOutcome::Passed => "passed".into(),
        TestOutcome::Failed { .. } => "failed".into(),
        TestOutcome::Error { exc_type, .. } => format!("error:{exc_type}"),
        TestOutcome::Timeout => "timeout".into(),
        TestOutcome::MemoryExceeded => "memory_exceeded".into(),
        TestOutcome::Crashed { .. } => "crashed".into(),
        TestOutcome::NotRun => "not_run".into(),
    }
}

fn untraced_job(item: &CorpusItem, tests: Vec<String>, timeout: Duration) -> Job {
    Job {
        program: item.program.clone(),
        setup: item.setup.clone(),
        setup_placement: item.setup_placement,
        tests,
        limits: Limits {
            test_timeout: timeout,
            job_timeout: timeout * 4,
            memory_bytes: 1 << 30,
            output_bytes: 64 << 10,
        },
        comparison: Comparison::Plain,
    }
}

fn outcome_of(r: &nxt_sandbox::JobResult, i: usize) -> Option<TestOutcome> {
    if let Some(l) = &r.load_error {
        return Some(l.clone());
    }
    r.tests.get(i).map(|t| t.outcome.clone())
}

/// Trace one case (and, with `compare`, run its tests untraced to compare verdicts).
pub fn run_case(
    pool: &Pool,
    case: &SurveyCase,
    capture: &CaptureOptions,
    compare: bool,
) -> Vec<SurveyResult> {
    run_cases(pool, std::slice::from_ref(case), capture, compare)
}

/// Trace several cases with one sandbox job for all their traces (each trace still runs in its
/// own forked process inside it); with `compare`, also run each case's tests untraced.
pub fn run_cases(
    pool: &Pool,
    cases: &[SurveyCase],
    capture: &CaptureOptions,
    compare: bool,
) -> Vec<SurveyResult> {
    let untraced_timeout = capture.run_budget.min(Duration::from_secs(5));
    struct Prep {
        problems: Vec<String>,
        untraced: Vec<Option<TestOutcome>>,
    }
    let mut preps = Vec::with_capacity(cases.len());
    let mut wanted: Vec<(usize, usize)> = Vec::new(); // (case, test index)
    for (c, case) in cases.iter().enumerate() {
        let item = &case.item;
        let mut problems = Vec::new();
        let mut untraced: Vec<Option<TestOutcome>> = vec![None; item.tests.len()];
        if compare || case.tests == TestChoice::FirstFailing {
            match pool.run(&untraced_job(item, item.tests.clone(), untraced_timeout)) {
                Ok(r) => {
                    for (i, u) in untraced.iter_mut().enumerate() {
                        *u = outcome_of(&r, i);
                    }
                }
                Err(e) => problems.push(format!("sandbox: {e}")),
            }
        }
        match case.tests {
            TestChoice::All => wanted.extend((0..item.tests.len()).map(|i| (c, i))),
            TestChoice::FirstFailing => {
                let i = untraced
                    .iter()
                    .position(|u| u.as_ref().is_some_and(|u| *u != TestOutcome::Passed))
                    .unwrap_or(0);
                if i < item.tests.len() {
                    wanted.push((c, i));
                }
            }
        }
        preps.push(Prep { problems, untraced });
    }
    let reqs: Vec<TraceRequest> = wanted
        .iter()
        .map(|&(c, i)| {
            let item = &cases[c].item;
            let mut req = TraceRequest::new(item.program.clone(), item.tests[i].clone());
            req.setup = item.setup.clone();
            req.setup_placement = item.setup_placement;
            req.capture = capture.clone();
            req
        })
        .collect();
    let start = Instant::now();
    let traces = trace_many(pool, &reqs);
    let duration = start.elapsed() / reqs.len().max(1) as u32;
    let mut out = Vec::new();
    for ((&(c, i), result), req) in wanted.iter().zip(traces).zip(&reqs) {
        let case = &cases[c];
        let item = &case.item;
        let mut problems = preps[c].problems.clone();
        let id = format!("{}#{i}", item.id);
        let u = preps[c].untraced[i].clone();
        match result {
            Ok(t) => {
                problems.extend(check_trace(&t));
                if compare {
                    if let Some(u) = &u {
                        let (a, b) = (verdict_class(u), verdict_class(&t.verdict));
                        if a != b {
                            // Confirm on a job holding only this test before reporting.
                            let job = untraced_job(item, vec![req.test.clone()], untraced_timeout);
                            let again = pool.run(&job).ok().and_then(|r| outcome_of(&r, 0));
                            if again.as_ref().map(verdict_class).as_deref() != Some(b.as_str()) {
                                problems.push(format!("verdict untraced {a}, traced {b}"));
                            }
                        }
                    }
                }
                out.push(SurveyResult {
                    corpus: case.corpus,
                    id,
                    trace: Some(t),
                    error: None,
                    untraced: u,
                    problems,
                    duration,
                });
            }
            Err(e) => out.push(SurveyResult {
                corpus: case.corpus,
                id,
                trace: None,
                error: Some(e.to_string()),
                untraced: u,
                problems,
                duration,
            }),
        }
    }
    out
}

/// Cases grouped into one sandbox job by [`run_survey`].
pub const CASES_PER_JOB: usize = 4;

/// Run all cases on `threads` threads, [`CASES_PER_JOB`] cases per sandbox job;
/// `on_done(result)` is called for each traced test.
pub fn run_survey(
    pool: &Pool,
    cases: &[SurveyCase],
    capture: &CaptureOptions,
    compare: bool,
    threads: usize,
    on_done: &(dyn Fn(SurveyResult) + Sync),
) {
    let next = AtomicUsize::new(0);
    let groups: Vec<&[SurveyCase]> = cases.chunks(CASES_PER_JOB).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(group) = groups.get(i) else { break };
                for r in run_cases(pool, group, capture, compare) {
                    on_done(r);
                }
            });
        }
    });
}

/// Summary of a distribution of lengths.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Distribution {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: usize,
    /// 90th percentile.
    pub p90: usize,
    /// 99th percentile.
    pub p99: usize,
    /// Maximum.
    pub max: usize,
}

/// Distribution of `values` (sorted in place).
pub fn distribution(values: &mut [usize]) -> Distribution {
    if values.is_empty() {
        return Distribution::default();
    }
    values.sort_unstable();
    let n = values.len();
    let at = |q: f64| values[((n as f64 - 1.0) * q).round() as usize];
    Distribution {
        n,
        mean: values.iter().sum::<usize>() as f64 / n as f64,
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: values[n - 1],
    }
}

/// Per-corpus statistics of a survey.
#[derive(Debug, Clone)]
pub struct CorpusStats {
    /// Corpus name.
    pub corpus: &'static str,
    /// Traces made.
    pub traces: usize,
    /// Traces cut by the step or time budget.
    pub truncated: usize,
    /// Tracer errors (crashes).
    pub errors: usize,
    /// Cases with at least one consistency problem.
    pub with_problems: usize,
    /// Recorded events per trace.
    pub events: Distribution,
    /// Length of the program + test source.
    pub source: Distribution,
    /// Length of each format's rendering, in [`crate::Format::ALL`] order, plus the inline
    /// comments alone (inline minus source) last.
    pub formats: Vec<(String, Distribution)>,
    /// Mean wall time of one traced run through the sandbox, in milliseconds.
    pub mean_ms: f64,
}

/// Summarize results per corpus, measuring renderings with `measure` (characters when `None`).
pub fn summarize(
    results: &[SurveyResult],
    opts: &crate::RenderOptions,
    measure: Option<&dyn Fn(&str) -> usize>,
) -> Vec<CorpusStats> {
    let chars = |s: &str| s.chars().count();
    let measure: &dyn Fn(&str) -> usize = match measure {
        Some(m) => m,
        None => &chars,
    };
    let mut out = Vec::new();
    for corpus in CORPORA {
        let mine: Vec<&SurveyResult> = results.iter().filter(|r| r.corpus == corpus).collect();
        if mine.is_empty() {
            continue;
        }
        let traces: Vec<&Trace> = mine.iter().filter_map(|r| r.trace.as_ref()).collect();
        let mut events: Vec<usize> = traces.iter().map(|t| t.events.len()).collect();
        let mut source: Vec<usize> = traces.iter().map(|t| measure(&t.source)).collect();
        let mut formats = Vec::new();
        let mut inline = Vec::new();
        for f in crate::Format::ALL {
            let mut v: Vec<usize> = traces
                .iter()
                .map(|t| measure(&crate::render(t, f, opts)))
                .collect();
            if f == crate::Format::Inline {
                inline = v.clone();
            }
            formats.push((f.name().to_string(), distribution(&mut v)));
        }
        let mut comments: Vec<usize> = inline
            .iter()
            .zip(&source)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        formats.push(("inline comments only".into(), distribution(&mut comments)));
        out.push(CorpusStats {
            corpus,
            traces: traces.len(),
            truncated: traces.iter().filter(|t| t.truncated.is_some()).count(),
            errors: mine.iter().filter(|r| r.error.is_some()).count(),
            with_problems: mine.iter().filter(|r| !r.problems.is_empty()).count(),
            events: distribution(&mut events),
            source: distribution(&mut source),
            formats,
            mean_ms: mine
                .iter()
                .map(|r| r.duration.as_secs_f64() * 1e3)
                .sum::<f64>()
                / mine.len() as f64,
        });
    }
    out
}

/// The statistics as Markdown tables.
pub fn markdown(stats: &[CorpusStats], unit: &str) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "| corpus | traces | hit a budget | tracer errors | with problems | events p50 / p90 / max | ms per trace (mean) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for c in stats {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({:.2}%) | {} | {} | {} / {} / {} | {:.1} |",
            c.corpus,
            c.traces,
            c.truncated,
            100.0 * c.truncated as f64 / c.traces.max(1) as f64,
            c.errors,
            c.with_problems,
            c.events.p50,
            c.events.p90,
            c.events.max,
            c.mean_ms
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Length of each rendering in {unit} (mean / p50 / p90 / p99 / max):"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| corpus | format | mean | p50 | p90 | p99 | max |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for c in stats {
        let rows = std::iter::once(("source (program + test)".to_string(), c.source))
            .chain(c.formats.iter().cloned());
        for (name, d) in rows {
            if name == "none" {
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {} | {} |",
                c.corpus, name, d.mean, d.p50, d.p90, d.p99, d.max
            );
        }
    }
    s
}
