//! `nxt-sandbox`: run untrusted, model-written Python against tests.
//!
//! PUBLIC API (agreed between crates; `nxt-trace`, `nxt-data`, `nxt-core` code against it):
//!
//! ```text
//! pub struct PoolConfig { pub workers, pub python: Option<PathBuf>, pub allow_weak_isolation,
//!                         pub uid_base, pub file_bytes, pub max_processes, pub tmpfs_mb,
//!                         pub temp_root }                           // + Default
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
//!
//! # How a job runs
//!
//! The pool starts `workers` CPython processes (`-I -S -B`, the trusted harness
//! `python/harness.py` shipped in the binary). Each worker is PID 1 of its own PID namespace and
//! has its own network, IPC, UTS and mount namespaces (job directories live on a tmpfs private
//! to it), with `no_new_privs`, landlock (write only below its own directory; no reads of
//! `/proc`, `/sys`, `/dev`) and the seccomp filters of [`seccomp_programs`] set up in Rust
//! between fork and exec. A worker is a fork server with a companion *compiler* process (same
//! confinement) that never forks: per job the compiler compiles tests and program (tests
//! cached, as the same tests come back for every sample of a task) and the pool hands the
//! marshalled code to the fork server with the job, which makes the job directory and forks one
//! child, which becomes a session leader, switches to the worker's unprivileged uid, sets
//! rlimits, installs an audit hook, and runs program, setup and tests. The child reports on a
//! dedicated pipe with records authenticated by a 16-byte per-job secret; stdout and stderr go
//! to their own pipes. The pool (this crate, in the calling thread) reads all three directly:
//! it attributes output to the running test, enforces per-test and per-job wall time (it kills
//! the job process through a pidfd; the remaining tests then run in a fresh child) and builds
//! the result. Programs over 64 KiB, and every job of a worker whose compiler failed, are
//! compiled by the job's child instead (under its limits). After each job the worker kills every process left in its
//! namespace and removes the job directory. A missing "done" record (e.g. `os._exit` during a
//! test) gives the running test an error and reruns the rest.
//!
//! # Strict comparison ([`Comparison::Strict`], the default)
//!
//! Every `assert` in the tests is rewritten so that `==`, `!=`, `<`, ..., `in` and bare truth
//! tests are judged by trusted functions bound into the compiled code as constants (no name a
//! program could rebind). Values stored in builtin types (also in subclasses such as
//! `Counter` or named tuples) are compared through the builtin types' own C methods, so an
//! overridden `__eq__`, `__iter__` or `__len__` has no say; numbers compare by value (`True ==
//! 1 == 1.0`, as Python and EvalPlus do); `list` never equals `tuple`; objects of other types
//! must have the same type and their `__eq__` must return a real `True`. Ordering and
//! membership need operands of builtin or C-implemented types; a bare `assert x` needs such an
//! `x`. Known limit: two instances of the *same* program-defined class are compared by that
//! class's own `__eq__`.
//!
//! # Residual risks (documented, not defended in-process)
//!
//! The harness shares its process with the program, so the audit hook is what keeps the
//! program from reaching harness objects. CPython audit hooks are not a security boundary
//! against a C-level exploit of the interpreter; such an exploit would still be confined by
//! the kernel layers (namespaces, uid, landlock, seccomp, rlimits), but could forge a result.

//!
//! # Layout
//!
//! `pool.rs` (the public pool and its job loop), `worker.rs` (one fork server and the channels
//! of a job), `compiler.rs` (its compiler process), `process.rs` (starting either one as a
//! confined process, and the descriptor helpers both use), `confine.rs` and `seccomp.rs` (the
//! kernel layers), `wire.rs` (frames and records), `python.rs` ([`find_python`]). The Python
//! side lives in `python/` and is embedded with `include_str!`: `harness.py` (the worker) and
//! `strict.py` (the strict comparison functions, handed to the harness in its environment).

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod compiler;
mod confine;
mod pool;
mod process;
mod python;
mod report;
mod seccomp;
pub mod test_support;
mod wire;
mod worker;

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
