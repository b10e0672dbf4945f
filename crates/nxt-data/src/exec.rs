//! What this crate needs from an executor, implemented by [`nxt_sandbox::Pool`].

use nxt_sandbox::{DriverJob, DriverResult, Job, JobResult, Limits, SandboxError};

use crate::error::Result as DataResult;

/// The executor interface used for grading and building benchmarks.
///
/// [`nxt_sandbox::Pool`] implements it; the trait exists so that this crate's logic is written
/// against exactly the operations it uses.
pub trait Executor: Sync {
    /// Run one test job.
    fn run_job(&self, job: &Job) -> Result<JobResult, SandboxError>;
    /// Run many jobs, calling `on_done(index, result)` as each finishes (any order).
    fn run_jobs(
        &self,
        jobs: &[Job],
        on_done: &mut dyn FnMut(usize, Result<JobResult, SandboxError>),
    );
    /// Run a trusted driver.
    fn run_driver_job(&self, job: &DriverJob) -> Result<DriverResult, SandboxError>;
}

/// Default limits for grading: 10 s per test, 60 s per job, 1 GiB, 64 KiB of output.
pub fn grading_limits() -> Limits {
    Limits {
        test_timeout: std::time::Duration::from_secs(10),
        job_timeout: std::time::Duration::from_secs(60),
        memory_bytes: 1 << 30,
        output_bytes: 64 * 1024,
    }
}

impl Executor for nxt_sandbox::Pool {
    fn run_job(&self, job: &Job) -> Result<JobResult, SandboxError> {
        self.run(job)
    }

    fn run_jobs(
        &self,
        jobs: &[Job],
        on_done: &mut dyn FnMut(usize, Result<JobResult, SandboxError>),
    ) {
        self.run_many(jobs, on_done)
    }

    fn run_driver_job(&self, job: &DriverJob) -> Result<DriverResult, SandboxError> {
        self.run_driver(job)
    }
}

/// A sandbox pool with default settings, accepting weaker isolation when `allow_weak` (the
/// layers missing are then listed by `Pool::isolation_report`).
pub fn default_pool(allow_weak: bool) -> Result<nxt_sandbox::Pool, SandboxError> {
    nxt_sandbox::Pool::new(nxt_sandbox::PoolConfig {
        allow_weak_isolation: allow_weak,
        ..nxt_sandbox::PoolConfig::default()
    })
}

/// Run `f` with the given executor, or with a default sandbox pool created on demand.
pub(crate) fn with_executor<T>(
    exec: Option<&dyn Executor>,
    f: impl FnOnce(&dyn Executor) -> DataResult<T>,
) -> DataResult<T> {
    match exec {
        Some(e) => f(e),
        None => {
            let pool = default_pool(false)?;
            f(&pool)
        }
    }
}
