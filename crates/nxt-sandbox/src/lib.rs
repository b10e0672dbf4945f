//! `nxt-sandbox`: run untrusted, model-written Python against tests.
//!
//! PUBLIC API CONTRACT (agreed between crates; the implementation lives behind it).
//! Other crates (`nxt-trace`, `nxt-data`, `nxt-core`) code against exactly these names:
//!
//! * [`Pool::new`] / [`Pool::run`] / [`Pool::run_many`]: test jobs (program + setup + asserts).
//! * [`Pool::run_driver`]: run a *trusted* Python driver (e.g. the tracer) inside the same
//!   sandbox, handing it a payload and getting back the bytes it emitted on the result channel.
//!
//! Still to be written by the sandbox implementation (signatures fixed):
//!
//! ```text
//! pub struct PoolConfig { pub workers: usize, pub python: Option<PathBuf>,
//!                         pub allow_weak_isolation: bool, .. }   // + Default
//! impl Default for Limits                                          // 10 s/test, 60 s/job, 1 GiB, 64 KiB
//! pub struct Pool;                                                 // Send + Sync
//! impl Pool {
//!     pub fn new(config: PoolConfig) -> Result<Pool, SandboxError>;
//!     pub fn run(&self, job: &Job) -> Result<JobResult, SandboxError>;
//!     pub fn run_many<F: FnMut(usize, Result<JobResult, SandboxError>)>(&self, jobs: &[Job], on_done: F);
//!     pub fn run_driver(&self, job: &DriverJob) -> Result<DriverResult, SandboxError>;
//!     pub fn isolation_report(&self) -> IsolationReport;
//! }
//! pub fn find_python() -> Result<PathBuf, SandboxError>;           // NXT_PYTHON, else resolves shims
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod pool;
mod python;
mod report;
mod seccomp;

pub use pool::{Pool, PoolConfig};
pub use python::find_python;
pub use report::{IsolationLayer, IsolationReport, OPTIONAL_LAYERS};
pub use seccomp::build_programs as seccomp_programs;

/// Resource limits of one job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Wall-clock limit of one test.
    pub test_timeout: Duration,
    /// Wall-clock limit of the whole job (program load + setup + all tests).
    pub job_timeout: Duration,
    /// Address-space limit in bytes.
    pub memory_bytes: u64,
    /// Bytes of stdout and of stderr kept per test (the rest is dropped, and flagged).
    pub output_bytes: usize,
}

/// Where setup code runs relative to the program (MBPP tasks 367 and 927 need `AfterProgram`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SetupPlacement {
    /// Setup code runs before the program source.
    BeforeProgram,
    /// Setup code runs after the program source (before the tests).
    #[default]
    AfterProgram,
}

/// How `==` inside `assert` tests is judged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `a == b` also requires compatible types, recursively (as EvalPlus does); default for grading.
    #[default]
    Strict,
    /// Plain Python `==`.
    Plain,
}

/// One unit of work: a program, optional setup code and a list of test statements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// Program source text.
    pub program: String,
    /// Optional setup code (imports, helper classes).
    pub setup: Option<String>,
    /// Where `setup` runs.
    pub setup_placement: SetupPlacement,
    /// Test statements, usually `assert` lines; each may span several lines.
    pub tests: Vec<String>,
    /// Resource limits.
    pub limits: Limits,
    /// Comparison mode.
    pub comparison: Comparison,
}

/// Outcome of one test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TestOutcome {
    /// The statement ran without raising.
    Passed,
    /// An `AssertionError` was raised.
    Failed {
        /// The assertion message, if any.
        message: String,
    },
    /// Any other exception (also used when the program itself fails to load).
    Error {
        /// Exception type name, e.g. `TypeError`.
        exc_type: String,
        /// `str(exception)`, bounded.
        message: String,
        /// Line of the raising statement (in the program when it raised there), if known.
        line: Option<u32>,
    },
    /// Wall-clock or CPU limit hit.
    Timeout,
    /// Address-space limit hit (MemoryError or allocation failure).
    MemoryExceeded,
    /// The process died from a signal (segfault, abort, ...).
    Crashed {
        /// Signal number.
        signal: i32,
    },
    /// Never reached (an earlier test or the program killed the job).
    NotRun,
}

/// Result of one test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestResult {
    /// The outcome.
    pub outcome: TestOutcome,
    /// Wall time spent on this test.
    pub duration: Duration,
    /// Captured stdout (bounded by [`Limits::output_bytes`]).
    pub stdout: String,
    /// Captured stderr (bounded).
    pub stderr: String,
    /// True when stdout or stderr went over [`Limits::output_bytes`] and was cut.
    #[serde(default)]
    pub output_truncated: bool,
}

/// Overall verdict of a job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every test passed.
    Passed,
    /// At least one test did not pass.
    Failed,
}

/// Result of one job. A program failure (syntax error, exception at import, crash) is a
/// normal result here; only executor failures are [`SandboxError`]s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobResult {
    /// Overall verdict.
    pub verdict: Verdict,
    /// Per-test results, same order and length as [`Job::tests`].
    pub tests: Vec<TestResult>,
    /// Set when the program or the setup failed before any test ran.
    pub load_error: Option<TestOutcome>,
    /// Wall time of the whole job.
    pub duration: Duration,
    /// Output printed while the program (and setup) loaded, before the first test (bounded).
    #[serde(default)]
    pub load_stdout: String,
    /// Errors printed while the program loaded (bounded).
    #[serde(default)]
    pub load_stderr: String,
}

/// A trusted Python driver run inside the sandbox (used by the tracer).
///
/// The driver source is executed as `__main__` in the sandboxed child. It reads its payload
/// with `nxt_payload()` (bytes) and writes its answer with `nxt_emit(bytes)` (called once);
/// both are injected by the harness before the driver runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DriverJob {
    /// Python source of the driver.
    pub driver: String,
    /// Bytes handed to the driver.
    pub payload: Vec<u8>,
    /// Limits (`test_timeout` is ignored; `job_timeout` bounds the whole run).
    pub limits: Limits,
    /// Most bytes the driver may emit.
    pub max_emit_bytes: usize,
}

/// How a driver run ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DriverResult {
    /// The bytes the driver emitted (None if it never called `nxt_emit`).
    pub emitted: Option<Vec<u8>>,
    /// Termination: Passed means clean exit; Timeout/MemoryExceeded/Crashed/Error otherwise.
    pub outcome: TestOutcome,
    /// Captured stdout (bounded).
    pub stdout: String,
    /// Captured stderr (bounded).
    pub stderr: String,
    /// Wall time.
    pub duration: Duration,
    /// True when stdout or stderr was cut at the limit.
    #[serde(default)]
    pub output_truncated: bool,
}

/// Failures of the executor itself (never of the program under test).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No usable Python interpreter.
    #[error("python interpreter not usable: {0}")]
    Python(String),
    /// An isolation layer could not be set up and weaker isolation was not accepted.
    #[error(
        "isolation layers unavailable: {missing:?} (pass --allow-weak-isolation to run anyway)"
    )]
    Isolation {
        /// Names of the missing layers.
        missing: Vec<String>,
    },
    /// A worker process died or spoke nonsense.
    #[error("worker failure: {0}")]
    Worker(String),
    /// I/O error talking to workers.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
