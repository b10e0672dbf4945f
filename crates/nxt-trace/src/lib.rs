//! `nxt-trace`: execution traces of Python programs, rendered as NExT inline comments.
//!
//! Capture runs a Python driver ([`TRACER_PY`], shipped inside the binary) through the
//! sandbox ([`nxt_sandbox::Pool::run_driver`]): it executes the program and then one test under
//! `sys.settrace`, recording per executed statement the variables it assigned or changed, call
//! arguments, return values and exceptions, with one global step counter (NEXT_SPEC.md section
//! 2). Rendering happens here in Rust: [`render`] with a [`Format`] and [`RenderOptions`].
//!
//! ```no_run
//! # fn demo(pool: &nxt_sandbox::Pool) -> Result<(), nxt_trace::TraceError> {
//! use nxt_trace::{render, trace, Format, RenderOptions, TraceRequest};
//! let req = TraceRequest::new("def f(x):\n    return x + 1\n", "assert f(1) == 3");
//! let t = trace(pool, &req)?;
//! println!("{}", render(&t, Format::Inline, &RenderOptions::default()));
//! # Ok(()) }
//! ```
//!
//! Layout: [`model`] (the trace), [`render`], [`runner`] (driver runners), [`check`] (trace
//! consistency), [`batch`] (resumable JSONL batches, resuming through
//! `nxt_data::jsonl::read_resumable`), [`corpus`] (benchmark programs read with `nxt-data`'s
//! loaders from the data directory `nxt_data::registry::resolve_data_dir` names) and [`survey`]
//! (whole corpora traced and checked). The Python side lives in `python/` and is embedded with
//! `include_str!`.

pub mod batch;
pub mod check;
pub mod corpus;
pub mod model;
pub mod render;
pub mod runner;
pub mod survey;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use model::{Event, EventKind, TestOutcome, Trace, Truncation, TruncationReason, Var};
pub use nxt_sandbox::{Limits, Pool, PoolConfig, SetupPlacement};
pub use render::{
    render, render_measured, source_is_strippable, split_lines, strip_inline_comments, Format,
    RenderOptions,
};
pub use runner::{DirectRunner, DriverRunner};

/// The Python tracer driver (runs as `__main__` inside the sandbox).
pub const TRACER_PY: &str = include_str!("../python/tracer.py");

/// Errors of tracing (never of the traced program: its failures are part of the [`Trace`]).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The sandbox could not run the driver.
    #[error("sandbox: {0}")]
    Sandbox(#[from] nxt_sandbox::SandboxError),
    /// The driver ended without reporting (a tracer bug, or the program killed its process).
    #[error("tracer driver ended without a result ({outcome:?}); stderr: {stderr}")]
    Driver {
        /// How the driver run ended.
        outcome: TestOutcome,
        /// Its stderr (bounded).
        stderr: String,
    },
    /// The driver's answer could not be decoded.
    #[error("tracer answer is not valid: {0}")]
    Decode(String),
}

/// Capture settings (the Python side's budgets and repr bounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureOptions {
    /// Most numbered steps recorded; then the trace is marked truncated (the run goes on,
    /// untraced, so the verdict stays right).
    pub max_events: u64,
    /// Wall time spent recording before the trace is marked truncated.
    pub time_budget: Duration,
    /// Wall time of the whole run (program + test); past it the run stops with a `Timeout`
    /// verdict and the trace recorded so far.
    pub run_budget: Duration,
    /// Longest repr kept at capture time (longer ones keep a head and a tail around `...`).
    pub repr_max_len: usize,
    /// Most items shown of a list, tuple, set or dict.
    pub repr_max_items: usize,
    /// Deepest nesting shown of containers.
    pub repr_max_depth: usize,
    /// Also record the unbounded repr of every return value ([`Trace::real_returns`]).
    pub verify: bool,
    /// Bytes of print output kept.
    pub stdout_max: usize,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            max_events: 10_000,
            time_budget: Duration::from_secs(5),
            run_budget: Duration::from_secs(10),
            repr_max_len: 1000,
            repr_max_items: 50,
            repr_max_depth: 6,
            verify: false,
            stdout_max: 64 * 1024,
        }
    }
}

/// One program traced on one test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRequest {
    /// Program source.
    pub program: String,
    /// The test statement(s), appended after the program and traced in the same run.
    pub test: String,
    /// Setup code run (untraced) in the same namespace.
    pub setup: Option<String>,
    /// Where the setup code runs.
    pub setup_placement: SetupPlacement,
    /// Capture budgets and bounds.
    pub capture: CaptureOptions,
    /// Sandbox memory limit in bytes.
    pub memory_bytes: u64,
}

impl TraceRequest {
    /// A request with default settings.
    pub fn new(program: impl Into<String>, test: impl Into<String>) -> Self {
        TraceRequest {
            program: program.into(),
            test: test.into(),
            setup: None,
            setup_placement: SetupPlacement::AfterProgram,
            capture: CaptureOptions::default(),
            memory_bytes: 1 << 30,
        }
    }

    /// The driver's payload for this request (JSON).
    pub fn payload(&self) -> serde_json::Value {
        let (_, test_first_line) = document(&self.program, &self.test);
        let c = &self.capture;
        serde_json::json!({
            "program": self.program,
            "test": self.test,
            "setup": self.setup,
            "setup_after": self.setup_placement == SetupPlacement::AfterProgram,
            "test_offset": test_first_line - 1,
            "max_events": c.max_events,
            "time_budget_s": c.time_budget.as_secs_f64(),
            "run_budget_s": c.run_budget.as_secs_f64(),
            "repr_max_len": c.repr_max_len,
            "repr_max_items": c.repr_max_items,
            "repr_max_depth": c.repr_max_depth,
            "verify": c.verify,
            "stdout_max": c.stdout_max,
        })
    }

    /// The sandbox job that runs this request.
    pub fn driver_job(&self) -> DriverJob {
        DriverJob {
            driver: TRACER_PY.to_string(),
            payload: self.payload().to_string().into_bytes(),
            limits: self.limits(self.capture.run_budget + Duration::from_secs(5)),
            max_emit_bytes: MAX_EMIT,
        }
    }

    fn limits(&self, job_timeout: Duration) -> Limits {
        Limits {
            test_timeout: job_timeout,
            job_timeout,
            memory_bytes: self.memory_bytes,
            output_bytes: 64 * 1024,
        }
    }
}

const MAX_EMIT: usize = 256 * 1024 * 1024;

/// One sandbox job tracing several requests, each in its own forked process inside the
/// sandbox (the tracer is compiled once per job instead of once per trace).
pub fn batch_driver_job(reqs: &[TraceRequest]) -> DriverJob {
    let payload = serde_json::json!({
        "batch": reqs.iter().map(TraceRequest::payload).collect::<Vec<_>>(),
    });
    let total: Duration = reqs
        .iter()
        .map(|r| r.capture.run_budget + Duration::from_secs(3))
        .sum();
    let memory = reqs.iter().map(|r| r.memory_bytes).max().unwrap_or(1 << 30);
    DriverJob {
        driver: TRACER_PY.to_string(),
        payload: payload.to_string().into_bytes(),
        limits: Limits {
            test_timeout: total + Duration::from_secs(5),
            job_timeout: total + Duration::from_secs(5),
            memory_bytes: memory,
            output_bytes: 64 * 1024,
        },
        max_emit_bytes: MAX_EMIT,
    }
}

pub use nxt_sandbox::DriverJob;

/// The traced document: the program, a blank line, then the test, each ending with a newline
/// (one is added when missing; `\r\n` when the program uses it). Returns the text and the 1-based line where the test starts.
pub fn document(program: &str, test: &str) -> (String, u32) {
    let eol = if program.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut doc = String::with_capacity(program.len() + test.len() + 6);
    doc.push_str(program);
    if !program.is_empty() && !program.ends_with('\n') && !program.ends_with('\r') {
        doc.push_str(eol);
    }
    let program_lines = split_lines(&doc).len() as u32;
    doc.push_str(eol);
    doc.push_str(test);
    if !test.ends_with('\n') && !test.ends_with('\r') {
        doc.push_str(eol);
    }
    (doc, program_lines + 2)
}

/// Trace `req.program` on `req.test` through the sandbox `runner` (normally a
/// [`nxt_sandbox::Pool`]).
pub fn trace<R: DriverRunner + ?Sized>(
    runner: &R,
    req: &TraceRequest,
) -> Result<Trace, TraceError> {
    let job = req.driver_job();
    let res = runner.run_driver(&job)?;
    let (source, test_first_line) = document(&req.program, &req.test);
    match res.emitted {
        Some(bytes) => decode(&bytes, source, test_first_line),
        None => match res.outcome {
            TestOutcome::Timeout | TestOutcome::MemoryExceeded | TestOutcome::Crashed { .. } => {
                Ok(killed_trace(source, test_first_line, res.outcome))
            }
            outcome => Err(TraceError::Driver {
                outcome,
                stderr: render::clip(&res.stderr, 4000),
            }),
        },
    }
}

/// Trace several requests in one sandbox job (each in a fresh forked process inside it);
/// results in the same order. If the job as a whole fails, each request is traced on its own.
pub fn trace_many<R: DriverRunner + ?Sized>(
    runner: &R,
    reqs: &[TraceRequest],
) -> Vec<Result<Trace, TraceError>> {
    if reqs.len() <= 1 {
        return reqs.iter().map(|r| trace(runner, r)).collect();
    }
    let batch = runner
        .run_driver(&batch_driver_job(reqs))
        .ok()
        .and_then(|res| res.emitted)
        .and_then(|bytes| serde_json::from_slice::<Vec<serde_json::Value>>(&bytes).ok())
        .filter(|v| v.len() == reqs.len());
    let Some(values) = batch else {
        return reqs.iter().map(|r| trace(runner, r)).collect();
    };
    values
        .into_iter()
        .zip(reqs)
        .map(|(v, req)| {
            let (source, line) = document(&req.program, &req.test);
            match v.get("killed").and_then(|k| k.as_str()) {
                Some("timeout") => Ok(killed_trace(source, line, TestOutcome::Timeout)),
                Some(_) => {
                    let signal = v.get("signal").and_then(|s| s.as_i64()).unwrap_or(0) as i32;
                    Ok(killed_trace(source, line, TestOutcome::Crashed { signal }))
                }
                None => serde_json::from_value::<Raw>(v)
                    .map_err(|e| TraceError::Decode(e.to_string()))
                    .and_then(|raw| from_raw(raw, source, line)),
            }
        })
        .collect()
}

fn killed_trace(source: String, test_first_line: u32, verdict: TestOutcome) -> Trace {
    Trace {
        source,
        test_first_line,
        events: Vec::new(),
        truncated: Some(Truncation {
            reason: TruncationReason::Killed,
            at_step: 0,
            line: None,
        }),
        verdict,
        load_error: None,
        stdout: String::new(),
        python: String::new(),
        real_returns: Vec::new(),
        tracer_errors: Vec::new(),
        lost_events: 0,
    }
}

#[derive(Deserialize)]
struct Raw {
    python: String,
    load_error: Option<TestOutcome>,
    /// Flat: per event its line, its kind, then for `call` / `line` the number of variables
    /// and that many name, repr pairs, for the other kinds one string (tracer.py,
    /// `Tracer.events`). The i-th event is step i.
    events: Vec<serde_json::Value>,
    truncated: Option<RawTrunc>,
    verdict: TestOutcome,
    stdout: String,
    returns: Vec<(u64, Option<String>)>,
    #[serde(default)]
    tracer_errors: Vec<String>,
    #[serde(default)]
    lost_events: u64,
}

#[derive(Deserialize)]
struct RawTrunc {
    reason: TruncationReason,
    at_step: u64,
    line: Option<u32>,
}

/// Decode the driver's JSON answer into a [`Trace`] of the given document.
pub fn decode(bytes: &[u8], source: String, test_first_line: u32) -> Result<Trace, TraceError> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| TraceError::Decode(e.to_string()))?;
    from_raw(raw, source, test_first_line)
}

/// Decode the tracer's flat event list (layout: the `events` field of `Raw`).
fn decode_events(flat: Vec<serde_json::Value>) -> Result<Vec<Event>, TraceError> {
    use serde_json::Value;
    let mut events = Vec::new();
    let mut it = flat.into_iter();
    let mut step: u64 = 0;
    let bad = |step: u64, what: &str, got: Option<Value>| {
        TraceError::Decode(match got {
            Some(v) => format!("step {step}: expected {what}, got {v}"),
            None => format!("step {step}: expected {what}, got the end of the event list"),
        })
    };
    let text = |step: u64, v: Option<Value>| match v {
        Some(Value::String(s)) => Ok(s),
        other => Err(bad(step, "a string", other)),
    };
    while let Some(line) = it.next() {
        let line = match line.as_u64().and_then(|l| u32::try_from(l).ok()) {
            Some(l) => l,
            None => return Err(bad(step, "a line number", Some(line))),
        };
        let kind = text(step, it.next())?;
        let kind = match kind.as_str() {
            "call" | "line" => {
                let n = match it.next() {
                    Some(v) => match v.as_u64() {
                        Some(n) => n,
                        None => return Err(bad(step, "a variable count", Some(v))),
                    },
                    None => return Err(bad(step, "a variable count", None)),
                };
                let mut vars = Vec::new();
                for _ in 0..n {
                    let name = text(step, it.next())?;
                    let value = text(step, it.next())?;
                    vars.push(Var { name, value });
                }
                if kind == "call" {
                    EventKind::Call { vars }
                } else {
                    EventKind::Line { vars }
                }
            }
            "return" => EventKind::Return {
                value: text(step, it.next())?,
            },
            "yield" => EventKind::Yield {
                value: text(step, it.next())?,
            },
            "exception" => EventKind::Exception {
                exception: text(step, it.next())?,
            },
            other => {
                return Err(TraceError::Decode(format!(
                    "step {step}: unknown event kind `{other}`"
                )))
            }
        };
        events.push(Event { step, line, kind });
        step += 1;
    }
    Ok(events)
}

fn from_raw(raw: Raw, source: String, test_first_line: u32) -> Result<Trace, TraceError> {
    let events = decode_events(raw.events)?;
    Ok(Trace {
        source,
        test_first_line,
        events,
        truncated: raw.truncated.map(|t| Truncation {
            reason: t.reason,
            at_step: t.at_step,
            line: t.line,
        }),
        verdict: raw.verdict,
        load_error: raw.load_error,
        stdout: raw.stdout,
        python: raw.python,
        real_returns: raw.returns,
        tracer_errors: raw.tracer_errors,
        lost_events: raw.lost_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(events: &str) -> Vec<u8> {
        format!(
            r#"{{"python": "3.11.2", "load_error": null, "events": {events}, "truncated": null,
               "verdict": {{"status": "passed"}}, "stdout": "", "returns": [], "steps": 0,
               "tracer_errors": [], "lost_events": 0}}"#
        )
        .into_bytes()
    }

    #[test]
    fn decodes_the_flat_event_list() {
        let ev = r#"[1, "call", 1, "x", "3", 2, "line", 2, "y", "4", "z", "'\u00e9'",
                     3, "return", "7", 5, "exception", "ValueError('x')", 4, "yield", "1",
                     2, "line", 0]"#;
        let t = decode(&answer(ev), String::new(), 3).unwrap();
        let steps: Vec<(u64, u32)> = t.events.iter().map(|e| (e.step, e.line)).collect();
        assert_eq!(steps, vec![(0, 1), (1, 2), (2, 3), (3, 5), (4, 4), (5, 2)]);
        let var = |name: &str, value: &str| Var {
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            t.events[0].kind,
            EventKind::Call {
                vars: vec![var("x", "3")]
            }
        );
        assert_eq!(
            t.events[1].kind,
            EventKind::Line {
                vars: vec![var("y", "4"), var("z", "'é'")]
            }
        );
        assert_eq!(t.events[2].kind, EventKind::Return { value: "7".into() });
        assert_eq!(
            t.events[3].kind,
            EventKind::Exception {
                exception: "ValueError('x')".into()
            }
        );
        assert_eq!(t.events[4].kind, EventKind::Yield { value: "1".into() });
        assert_eq!(t.events[5].kind, EventKind::Line { vars: vec![] });
    }

    #[test]
    fn rejects_a_malformed_event_list() {
        for (ev, what) in [
            (
                r#"[1, "line", 2, "y", "4"]"#,
                "step 0: expected a string, got the end",
            ),
            (r#"[1, "line", "2"]"#, "step 0: expected a variable count"),
            (
                r#"[1, "return", "2", "x"]"#,
                "step 1: expected a line number",
            ),
            (r#"[1, "jump", "2"]"#, "step 0: unknown event kind `jump`"),
            (r#"[1, "return", 2]"#, "step 0: expected a string, got 2"),
        ] {
            let err = decode(&answer(ev), String::new(), 3)
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{ev}: {err}");
        }
    }
}
