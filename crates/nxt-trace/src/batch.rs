//! Batch tracing: a JSONL file of jobs in, a JSONL file of traces out, resumable.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{
    render, trace_many, CaptureOptions, DriverRunner, Format, RenderOptions, TestOutcome, Trace,
    TraceRequest, Truncation,
};
use nxt_sandbox::SetupPlacement;

/// One line of a jobs file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchJob {
    /// Unique id of the job (used to resume).
    pub id: String,
    /// Program source.
    pub program: String,
    /// Test statement(s).
    pub test: String,
    /// Optional setup code.
    #[serde(default)]
    pub setup: Option<String>,
    /// Run the setup before the program instead of after it.
    #[serde(default)]
    pub setup_before_program: bool,
}

/// One line of the output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOutput {
    /// The job's id.
    pub id: String,
    /// Verdict of the test under tracing (absent when tracing itself failed).
    pub verdict: Option<TestOutcome>,
    /// Set when a budget cut the trace.
    pub truncated: Option<Truncation>,
    /// Number of recorded events.
    pub events: usize,
    /// The rendering in the requested format.
    pub rendered: String,
    /// The full trace, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    /// Tracing error, if tracing failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Errors of batch runs.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// I/O on a file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A malformed job line.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// The output file to resume from is unreadable or malformed.
    #[error(transparent)]
    Output(#[from] nxt_data::DataError),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BatchError + '_ {
    move |source| BatchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read a jobs file (one JSON object per line; blank lines skipped; ids must be unique).
pub fn read_jobs(path: &Path) -> Result<Vec<BatchJob>, BatchError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut jobs = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let job: BatchJob = serde_json::from_str(&line).map_err(|e| BatchError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("not a job object ({{\"id\", \"program\", \"test\"}}): {e}"),
        })?;
        if !seen.insert(job.id.clone()) {
            return Err(BatchError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("duplicate id `{}`", job.id),
            });
        }
        jobs.push(job);
    }
    Ok(jobs)
}

/// Ids already present in an output file (for resuming; [`nxt_data::jsonl::read_resumable`]:
/// a partial last line, an interrupted write, is cut off the file).
pub fn done_ids(out: &Path) -> Result<HashSet<String>, BatchError> {
    let resumed = nxt_data::jsonl::read_resumable(out)?;
    Ok(resumed
        .records
        .into_iter()
        .filter_map(|(_, v)| v.get("id")?.as_str().map(String::from))
        .collect())
}

/// Settings of a batch run.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Capture budgets.
    pub capture: CaptureOptions,
    /// Output format.
    pub format: Format,
    /// Renderer settings.
    pub render: RenderOptions,
    /// Also write the full trace of each job.
    pub include_trace: bool,
    /// Worker threads (at most the pool's workers are busy at once).
    pub threads: usize,
    /// Jobs traced per sandbox job (each in its own forked process inside it).
    pub chunk: usize,
}

/// Trace every job whose id is not yet in `out` and append one line per job to `out` as it
/// finishes. `progress(done, total)` is called after each job. Returns the number traced now.
pub fn run_batch<R: DriverRunner + ?Sized>(
    runner: &R,
    jobs: &[BatchJob],
    out: &Path,
    settings: &BatchSettings,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<usize, BatchError> {
    let done = done_ids(out)?;
    let todo: Vec<&BatchJob> = jobs.iter().filter(|j| !done.contains(&j.id)).collect();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(io_err(out))?;
    let writer = Mutex::new(std::io::BufWriter::new(file));
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let first_error: Mutex<Option<BatchError>> = Mutex::new(None);
    let chunks: Vec<&[&BatchJob]> = todo.chunks(settings.chunk.max(1)).collect();
    std::thread::scope(|s| {
        for _ in 0..settings.threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(i) else { break };
                let lines = trace_chunk(runner, chunk, settings);
                let mut w = match writer.lock() {
                    Ok(w) => w,
                    Err(p) => p.into_inner(),
                };
                let mut res = Ok(());
                for line in &lines {
                    res = res.and_then(|_| {
                        serde_json::to_writer(&mut *w, line)
                            .map_err(std::io::Error::other)
                            .and_then(|_| w.write_all(b"\n"))
                    });
                }
                let res = res.and_then(|_| w.flush());
                drop(w);
                if let Err(e) = res {
                    if let Ok(mut f) = first_error.lock() {
                        f.get_or_insert(BatchError::Io {
                            path: out.to_path_buf(),
                            source: e,
                        });
                    }
                    break;
                }
                let done = finished.fetch_add(lines.len(), Ordering::Relaxed) + lines.len();
                progress(done, todo.len());
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(finished.into_inner())
}

fn trace_chunk<R: DriverRunner + ?Sized>(
    runner: &R,
    jobs: &[&BatchJob],
    s: &BatchSettings,
) -> Vec<BatchOutput> {
    let reqs: Vec<TraceRequest> = jobs
        .iter()
        .map(|job| {
            let mut req = TraceRequest::new(job.program.clone(), job.test.clone());
            req.setup = job.setup.clone();
            req.setup_placement = if job.setup_before_program {
                SetupPlacement::BeforeProgram
            } else {
                SetupPlacement::AfterProgram
            };
            req.capture = s.capture.clone();
            req
        })
        .collect();
    trace_many(runner, &reqs)
        .into_iter()
        .zip(jobs)
        .map(|(result, job)| match result {
            Ok(t) => BatchOutput {
                id: job.id.clone(),
                verdict: Some(t.verdict.clone()),
                truncated: t.truncated.clone(),
                events: t.events.len(),
                rendered: render(&t, s.format, &s.render),
                trace: if s.include_trace { Some(t) } else { None },
                error: None,
            },
            Err(e) => BatchOutput {
                id: job.id.clone(),
                verdict: None,
                truncated: None,
                events: 0,
                rendered: String::new(),
                trace: None,
                error: Some(e.to_string()),
            },
        })
        .collect()
}
