//! The trace event model shared by the capture side and the renderers.

use serde::{Deserialize, Serialize};

pub use nxt_sandbox::TestOutcome;

/// One variable written by an event: `name=repr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Var {
    /// Variable name.
    pub name: String,
    /// Bounded repr captured when the event happened.
    pub value: String,
}

/// What happened at one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// Function entry: the arguments, written on the `def` line (rule 1).
    Call {
        /// Arguments in declaration order.
        vars: Vec<Var>,
    },
    /// A statement finished: the variables it assigned or changed (rule 2).
    Line {
        /// Assigned or changed variables.
        vars: Vec<Var>,
    },
    /// A function returned (rule 5): `__return__=<repr>`.
    Return {
        /// Bounded repr of the return value.
        value: String,
    },
    /// A generator yielded: `__yield__=<repr>`.
    Yield {
        /// Bounded repr of the yielded value.
        value: String,
    },
    /// An exception was raised on this line (rule 6): `__exception__ = Type(args)`.
    Exception {
        /// `Type(arg reprs)`.
        exception: String,
    },
}

/// One numbered step of the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Global step counter `(k)`, in execution order, from 0.
    pub step: u64,
    /// 1-based line of [`Trace::source`] that carries the event.
    pub line: u32,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Why a recorded trace stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationReason {
    /// The step budget was reached.
    Steps,
    /// The capture time budget (or the run budget) was reached.
    Time,
    /// The sandbox killed the run before the tracer could report (e.g. a long C-level loop).
    Killed,
}

/// Where and why the recording stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// Why.
    pub reason: TruncationReason,
    /// Number of steps recorded before the cut.
    pub at_step: u64,
    /// Line that was running at the cut, if known.
    pub line: Option<u32>,
}

/// A complete trace of one program on one test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The traced document: the program, a blank line, then the test (see [`crate::document`]).
    pub source: String,
    /// 1-based line of `source` where the test starts.
    pub test_first_line: u32,
    /// Events in step order.
    pub events: Vec<Event>,
    /// Set when the recording was cut by a budget.
    pub truncated: Option<Truncation>,
    /// Outcome of the test under tracing.
    pub verdict: TestOutcome,
    /// Set when the program (or setup) failed before the test ran.
    pub load_error: Option<TestOutcome>,
    /// The program's print output (bounded).
    pub stdout: String,
    /// Python version that ran the trace.
    pub python: String,
    /// Unbounded reprs of the return values, `(step, repr)`, when verification was requested
    /// (`None` when the interpreter could not print the value: a huge int on 3.11+, or a value
    /// returned at the recursion limit).
    pub real_returns: Vec<(u64, Option<String>)>,
    /// Internal failures of the tracer itself, caught so the program ran on (first few; a
    /// correct tracer leaves this empty).
    #[serde(default)]
    pub tracer_errors: Vec<String>,
    /// Events lost because the program ran at the interpreter's recursion limit, where the
    /// tracer itself cannot call deeper (the program runs on unchanged).
    #[serde(default)]
    pub lost_events: u64,
}
