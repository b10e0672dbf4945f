//! The pool of warm workers: checkout/checkin, retries, and turning a job's attempts into a
//! result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::{fill_random, set_mode, Spawn};
use crate::report::{IsolationLayer, IsolationReport};
use crate::wire::JobHeader;
use crate::worker::{AttemptSpec, Events, Worker};
use crate::{
    find_python, Comparison, DriverJob, DriverResult, Job, JobResult, Limits, SandboxError,
    SetupPlacement, TestOutcome, TestResult, Verdict,
};

/// Configuration of a [`Pool`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Number of warm workers (jobs run in parallel up to this many).
    pub workers: usize,
    /// Interpreter to use; `None` means [`find_python`].
    pub python: Option<PathBuf>,
    /// Run even when some isolation layers are unavailable (they are listed in the report).
    pub allow_weak_isolation: bool,
    /// Worker `i` runs its jobs as uid and gid `uid_base + i` (unprivileged, no passwd entry
    /// needed). Distinct per worker so `RLIMIT_NPROC` counts one job's processes only.
    pub uid_base: u32,
    /// Largest file a job may write (`RLIMIT_FSIZE`).
    pub file_bytes: u64,
    /// Most processes a job may run at once (`RLIMIT_NPROC`).
    pub max_processes: u32,
    /// Size of each worker's private tmpfs holding job directories, in MiB.
    pub tmpfs_mb: u64,
    /// Parent directory of the pool's job directories (default: the system temp dir).
    pub temp_root: Option<PathBuf>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            python: None,
            allow_weak_isolation: false,
            uid_base: 61_000,
            file_bytes: 64 << 20,
            max_processes: 32,
            tmpfs_mb: 512,
            temp_root: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            test_timeout: Duration::from_secs(10),
            job_timeout: Duration::from_secs(60),
            memory_bytes: 1 << 30,
            output_bytes: 64 << 10,
        }
    }
}

struct Shared {
    python: PathBuf,
    config: PoolConfig,
    seccomp: Vec<Vec<u8>>,
    base_dir: PathBuf,
    /// Placeholder tag of the strict rewrite (random per pool).
    tag: String,
}

/// Programs (with setup) larger than this are compiled by the job's child, under its limits.
const COMPILER_MAX_BYTES: usize = 64 << 10;

/// How long a compiler may take for one job before it counts as failed.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(10);

impl Shared {
    fn spawn(&self, index: usize) -> Result<(Worker, IsolationReport), SandboxError> {
        let (mut worker, mut layers, version) = Worker::spawn(&Spawn {
            python: &self.python,
            dir: self.base_dir.join(format!("w{index}")),
            tmpfs_mb: self.config.tmpfs_mb,
            seccomp: &self.seccomp,
            uid: self.config.uid_base + index as u32,
            allow_weak: self.config.allow_weak_isolation,
            tag: &self.tag,
        })?;
        worker.index = index;
        let mut all: Vec<IsolationLayer> = layers
            .drain(..)
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        match worker.probe(&version) {
            Ok(more) => all.extend(more),
            Err(e) => {
                worker.kill();
                return Err(e);
            }
        }
        let report = IsolationReport {
            python: self.python.clone(),
            python_version: version,
            layers: all,
        };
        if !self.config.allow_weak_isolation {
            let missing = report.missing();
            if !missing.is_empty() {
                worker.kill();
                return Err(SandboxError::Isolation { missing });
            }
        }
        Ok((worker, report))
    }
}

/// A pool of warm, sandboxing Python workers. `Send + Sync`: share it between threads by
/// reference; each call takes one idle worker for its duration.
pub struct Pool {
    shared: Shared,
    idle: Mutex<Vec<Worker>>,
    available: Condvar,
    /// Workers in the pool, idle or busy (one that dies and cannot be restarted is lost).
    live: AtomicUsize,
    report: IsolationReport,
}

static POOL_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Pool {
    /// Starts `config.workers` warm workers, each probing its isolation layers once.
    ///
    /// Fails with [`SandboxError::Isolation`] when a required layer is unavailable and
    /// `allow_weak_isolation` is false, and with [`SandboxError::Python`] when no interpreter
    /// works.
    pub fn new(config: PoolConfig) -> Result<Pool, SandboxError> {
        let python = match &config.python {
            Some(p) => p.clone(),
            None => find_python()?,
        };
        if !python.is_absolute() {
            return Err(SandboxError::Python(format!(
                "interpreter path must be absolute: {}",
                python.display()
            )));
        }
        let root = config.temp_root.clone().unwrap_or_else(std::env::temp_dir);
        remove_stale_dirs(&root);
        let base_dir = root.join(format!(
            "nxt-sandbox-{}-{}",
            std::process::id(),
            POOL_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&base_dir)?;
        set_mode(&base_dir, 0o711)?;
        let seccomp = crate::seccomp::build_programs()?;
        let workers = config.workers.max(1);
        let mut tag = [0u8; 8];
        fill_random(&mut tag)?;
        let shared = Shared {
            python,
            config,
            seccomp,
            base_dir,
            tag: tag.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let (first, report) = match shared.spawn(0) {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&shared.base_dir);
                return Err(e);
            }
        };
        let mut pool = Pool {
            shared,
            idle: Mutex::new(vec![first]),
            available: Condvar::new(),
            live: AtomicUsize::new(workers),
            report,
        };
        let rest: Vec<Result<(Worker, IsolationReport), SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..workers)
                .map(|i| {
                    let shared = &pool.shared;
                    s.spawn(move || shared.spawn(i))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(SandboxError::Worker("spawn panicked".into())))
                })
                .collect()
        });
        for r in rest {
            let (w, _) = r?;
            pool.idle_mut().push(w);
        }
        Ok(pool)
    }

    /// The fixed job header for `limits` (kind-specific fields at their defaults).
    fn header(&self, kind: u8, limits: &Limits, max_emit: usize) -> JobHeader {
        JobHeader {
            kind,
            start: 0,
            setup_after: true,
            strict: true,
            memory: limits.memory_bytes,
            job_timeout: limits.job_timeout.as_secs_f64(),
            file_bytes: self.shared.config.file_bytes,
            processes: self.shared.config.max_processes,
            max_emit: max_emit as u64,
        }
    }

    fn idle_mut(&mut self) -> &mut Vec<Worker> {
        match self.idle.get_mut() {
            Ok(v) => v,
            Err(p) => p.into_inner(),
        }
    }

    /// Which isolation layers are active in this pool's workers.
    pub fn isolation_report(&self) -> IsolationReport {
        self.report.clone()
    }

    /// Process ids of the idle workers (diagnostics; a worker busy with a job is not listed).
    pub fn worker_pids(&self) -> Vec<u32> {
        let idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        idle.iter().map(|w| w.pid()).collect()
    }

    /// Process ids of the idle workers' compilers (diagnostics).
    pub fn compiler_pids(&self) -> Vec<u32> {
        let idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        idle.iter().filter_map(|w| w.compiler_pid()).collect()
    }

    /// Directory holding this pool's per-worker job directories (removed when the pool drops).
    pub fn temp_dir(&self) -> &Path {
        &self.shared.base_dir
    }

    /// The interpreter the workers run.
    pub fn python(&self) -> &Path {
        &self.shared.python
    }

    /// Runs one test job. Program failures are normal results; `Err` only when the executor
    /// itself failed (twice: a dead worker is replaced and the job retried once).
    pub fn run(&self, job: &Job) -> Result<JobResult, SandboxError> {
        let started = Instant::now();
        let strict = job.comparison == Comparison::Strict;
        let size = job.program.len() + job.setup.as_ref().map_or(0, |s| s.len());
        self.with_worker(|w| {
            let code = if size <= COMPILER_MAX_BYTES {
                w.compile(
                    &json!({"tests": job.tests, "strict": strict, "program": job.program,
                            "setup": job.setup}),
                    Instant::now() + COMPILE_TIMEOUT,
                )
            } else {
                None
            };
            let header = self.header(JobHeader::TESTS, &job.limits, 0);
            let header = JobHeader {
                setup_after: job.setup_placement == SetupPlacement::AfterProgram,
                strict,
                ..header
            };
            let sources = code
                .is_none()
                .then(|| json!({"program": job.program, "setup": job.setup, "tests": job.tests}));
            run_tests(
                w,
                job,
                header,
                sources,
                code.as_deref().unwrap_or(&[]),
                started,
            )
        })
    }

    /// Runs many jobs on all workers; `on_done(index, result)` is called on the calling thread
    /// as each finishes (in completion order).
    pub fn run_many<F: FnMut(usize, Result<JobResult, SandboxError>)>(
        &self,
        jobs: &[Job],
        mut on_done: F,
    ) {
        if jobs.is_empty() {
            return;
        }
        let threads = self.shared.config.workers.max(1).min(jobs.len());
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            for _ in 0..threads {
                let tx = tx.clone();
                let next = &next;
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() {
                        break;
                    }
                    if tx.send((i, self.run(&jobs[i]))).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            for (i, r) in rx {
                on_done(i, r);
            }
        });
    }

    /// Runs a trusted driver (e.g. the tracer) inside the sandbox with a payload.
    pub fn run_driver(&self, job: &DriverJob) -> Result<DriverResult, SandboxError> {
        let started = Instant::now();
        self.with_worker(|w| {
            let code = w.compile(
                &json!({"driver": job.driver}),
                Instant::now() + COMPILE_TIMEOUT,
            );
            let header = self.header(JobHeader::DRIVER, &job.limits, job.max_emit_bytes);
            let ev = w.attempt(&AttemptSpec {
                header,
                sources: code.is_none().then(|| json!({"driver": job.driver})),
                code: code.as_deref().unwrap_or(&[]),
                payload: &job.payload,
                tests: 1,
                test_timeout: None,
                job_deadline: started + job.limits.job_timeout,
                output_bytes: job.limits.output_bytes,
            })?;
            if let Some(infra) = ev.infra {
                return Err(SandboxError::Worker(infra));
            }
            let outcome = match &ev.results[0] {
                Some((outcome, _)) => outcome.clone(),
                None => ev.died_outcome(),
            };
            let (load, run) = (&ev.captures[0], &ev.captures[1]);
            Ok(DriverResult {
                emitted: ev.emitted,
                outcome,
                stdout: load.0.text() + &run.0.text(),
                stderr: load.1.text() + &run.1.text(),
                duration: started.elapsed(),
                output_truncated: load.0.truncated
                    || load.1.truncated
                    || run.0.truncated
                    || run.1.truncated,
            })
        })
    }

    fn checkout(&self) -> Result<Worker, SandboxError> {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        loop {
            if let Some(w) = idle.pop() {
                return Ok(w);
            }
            if self.live.load(Ordering::SeqCst) == 0 {
                return Err(SandboxError::Worker(
                    "no worker left: every one died and could not be restarted".into(),
                ));
            }
            idle = match self.available.wait(idle) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    fn checkin(&self, w: Worker) {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        idle.push(w);
        drop(idle);
        self.available.notify_one();
    }

    /// Runs `work` on an idle worker. A worker that fails is killed and replaced, and the work
    /// retried once on the replacement.
    fn with_worker<T>(
        &self,
        mut work: impl FnMut(&mut Worker) -> Result<T, SandboxError>,
    ) -> Result<T, SandboxError> {
        let mut last_err = None;
        for _attempt in 0..2 {
            let mut w = self.checkout()?;
            match work(&mut w) {
                Ok(v) => {
                    if w.degraded() {
                        // Its compiler failed: a fresh worker brings a fresh one (if none
                        // starts, this one goes on, its jobs compiling in their own child).
                        match self.shared.spawn(w.index) {
                            Ok((fresh, _)) => {
                                w.kill();
                                self.checkin(fresh);
                            }
                            Err(_) => self.checkin(w),
                        }
                    } else {
                        self.checkin(w);
                    }
                    return Ok(v);
                }
                Err(e) => {
                    let index = w.index;
                    w.kill();
                    last_err = Some(e);
                    match self.shared.spawn(index) {
                        Ok((fresh, _)) => self.checkin(fresh),
                        Err(e2) => {
                            self.lose_worker();
                            return Err(SandboxError::Worker(format!(
                                "worker died and could not be restarted: {e2}"
                            )));
                        }
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| SandboxError::Worker("job failed".into())))
    }

    /// Counts a worker that died for good, and wakes every waiter to see whether any is left.
    fn lose_worker(&self) {
        let idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        self.live.fetch_sub(1, Ordering::SeqCst);
        drop(idle);
        self.available.notify_all();
    }
}

/// Runs a test job on one worker: a child runs the tests from `start`; when it dies during a
/// test (timeout, crash, `os._exit`), that test gets the cause and the rest run in a new child.
fn run_tests(
    w: &mut Worker,
    job: &Job,
    header: JobHeader,
    sources: Option<Value>,
    code: &[u8],
    started: Instant,
) -> Result<JobResult, SandboxError> {
    let n = job.tests.len();
    let deadline = started + job.limits.job_timeout;
    let mut results: Vec<Option<(TestOutcome, Duration)>> = vec![None; n];
    let mut outputs: Vec<(String, String, bool)> = vec![(String::new(), String::new(), false); n];
    let mut load_error = None;
    let mut load_output = (String::new(), String::new());
    let mut start = 0;
    let mut first = true;
    while start < n || first {
        if Instant::now() >= deadline {
            break;
        }
        let ev: Events = w.attempt(&AttemptSpec {
            header: JobHeader {
                start: u32::try_from(start).unwrap_or(u32::MAX),
                ..header
            },
            sources: sources.clone(),
            code,
            payload: &[],
            tests: n,
            test_timeout: Some(job.limits.test_timeout),
            job_deadline: deadline,
            output_bytes: job.limits.output_bytes,
        })?;
        if let Some(infra) = ev.infra {
            return Err(SandboxError::Worker(infra));
        }
        if first {
            load_output = (ev.captures[0].0.text(), ev.captures[0].1.text());
        }
        first = false;
        for (i, r) in ev.results.iter().enumerate().skip(start) {
            if let Some(r) = r {
                results[i] = Some(r.clone());
            }
            let (out, err) = &ev.captures[i + 1];
            if i >= start && (results[i].is_some() || ev.current == Some(i)) {
                outputs[i] = (out.text(), err.text(), out.truncated || err.truncated);
            }
        }
        if ev.load_error.is_some() {
            load_error = ev.load_error;
            break;
        }
        if !ev.loaded {
            load_error = Some(ev.died_outcome());
            break;
        }
        if ev.done && !ev.tampered {
            break;
        }
        // The child died mid-way: the running test gets the cause, the rest run in a new child.
        let cur = match ev.current {
            Some(c) if c < n => c,
            _ => {
                // Died between tests (e.g. a leftover thread called os._exit).
                match (start..n).find(|&i| results[i].is_none()) {
                    Some(c) => c,
                    None => break,
                }
            }
        };
        results[cur] = Some((ev.died_outcome(), ev.current_duration()));
        if ev.tampered {
            break;
        }
        start = cur + 1;
    }
    let tests: Vec<TestResult> = results
        .into_iter()
        .zip(outputs)
        .map(|(r, (stdout, stderr, output_truncated))| {
            let (outcome, duration) = r.unwrap_or((TestOutcome::NotRun, Duration::ZERO));
            TestResult {
                outcome,
                duration,
                stdout,
                stderr,
                output_truncated,
            }
        })
        .collect();
    let verdict = if load_error.is_none() && tests.iter().all(|t| t.outcome == TestOutcome::Passed)
    {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    Ok(JobResult {
        verdict,
        tests,
        load_error,
        duration: started.elapsed(),
        load_stdout: load_output.0,
        load_stderr: load_output.1,
    })
}

impl Drop for Pool {
    fn drop(&mut self) {
        let workers = std::mem::take(self.idle_mut());
        // Closing a worker's input makes it exit; one that does not within two seconds is
        // killed (its jobs die with it: they are in its PID namespace).
        let deadline = Instant::now() + Duration::from_secs(2);
        for w in workers {
            w.shut_down(deadline);
        }
        let _ = std::fs::remove_dir_all(&self.shared.base_dir);
    }
}

/// Removes the directories of pools whose process is gone (killed, or never dropped such as a
/// pool in a `static`): their job files already vanished with the workers' private tmpfs; this
/// removes the empty skeletons (or, without a mount namespace, whatever was left).
fn remove_stale_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("nxt-sandbox-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
