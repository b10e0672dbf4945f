//! The pool of warm workers and the wire protocol to them.

use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::report::{IsolationLayer, IsolationReport};
use crate::{
    find_python, Comparison, DriverJob, DriverResult, Job, JobResult, Limits, SandboxError,
    SetupPlacement, TestOutcome, TestResult, Verdict,
};

/// The trusted Python harness every worker runs.
const HARNESS: &str = include_str!("harness.py");

/// Extra time the Rust side waits beyond a job's own limit before declaring a worker hung.
const WORKER_GRACE: Duration = Duration::from_secs(15);

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

/// One warm worker process.
struct Worker {
    index: usize,
    dir: PathBuf,
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

struct Shared {
    python: PathBuf,
    config: PoolConfig,
    seccomp: Vec<Vec<u8>>,
    base_dir: PathBuf,
}

/// A pool of warm, sandboxing Python workers. `Send + Sync`: share it between threads by
/// reference; each call takes one idle worker for its duration.
pub struct Pool {
    shared: Shared,
    idle: Mutex<Vec<Worker>>,
    available: Condvar,
    report: IsolationReport,
}

static POOL_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Reply of a worker to a job.
#[derive(Debug, Deserialize)]
struct WireReply {
    #[serde(default)]
    infra_error: Option<String>,
    #[serde(default)]
    tests: Vec<WireTest>,
    #[serde(default)]
    load_error: Option<TestOutcome>,
    #[serde(default)]
    load_stdout: String,
    #[serde(default)]
    load_stderr: String,
    #[serde(default)]
    outcome: Option<TestOutcome>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    output_truncated: bool,
    #[serde(default)]
    emitted: bool,
    #[serde(default)]
    duration: f64,
}

#[derive(Debug, Deserialize)]
struct WireTest {
    outcome: TestOutcome,
    duration: f64,
    stdout: String,
    stderr: String,
    output_truncated: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct WireInit {
    layers: Vec<IsolationLayer>,
    python: String,
}

fn secs(d: f64) -> Duration {
    Duration::try_from_secs_f64(d.max(0.0)).unwrap_or_default()
}

fn limits_json(l: &Limits, c: &PoolConfig) -> Value {
    json!({
        "test_timeout": l.test_timeout.as_secs_f64(),
        "job_timeout": l.job_timeout.as_secs_f64(),
        "memory": l.memory_bytes,
        "output_bytes": l.output_bytes,
        "file_bytes": c.file_bytes,
        "processes": c.max_processes,
    })
}

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
        let shared = Shared {
            python,
            config,
            seccomp,
            base_dir,
        };
        let (first, init) = match spawn_worker(&shared, 0) {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&shared.base_dir);
                return Err(e);
            }
        };
        let report = IsolationReport {
            python: shared.python.clone(),
            python_version: init.python,
            layers: init.layers,
        };
        let mut pool = Pool {
            shared,
            idle: Mutex::new(vec![first]),
            available: Condvar::new(),
            report,
        };
        let missing = pool.report.missing();
        if !missing.is_empty() && !pool.shared.config.allow_weak_isolation {
            return Err(SandboxError::Isolation { missing });
        }
        let rest: Vec<Result<(Worker, WireInit), SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..workers)
                .map(|i| {
                    let shared = &pool.shared;
                    s.spawn(move || spawn_worker(shared, i))
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
        idle.iter().map(|w| w.child.id()).collect()
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
        let header = json!({
            "kind": "tests",
            "program": job.program,
            "setup": job.setup,
            "setup_after": job.setup_placement == SetupPlacement::AfterProgram,
            "tests": job.tests,
            "strict": job.comparison == Comparison::Strict,
            "limits": limits_json(&job.limits, &self.shared.config),
        });
        let (reply, _) = self.exchange(&header, &[], job.limits.job_timeout)?;
        if job.tests.len() != reply.tests.len() {
            return Err(SandboxError::Worker(format!(
                "worker returned {} test results for {} tests",
                reply.tests.len(),
                job.tests.len()
            )));
        }
        let tests: Vec<TestResult> = reply
            .tests
            .into_iter()
            .map(|t| TestResult {
                outcome: t.outcome,
                duration: secs(t.duration),
                stdout: t.stdout,
                stderr: t.stderr,
                output_truncated: t.output_truncated,
            })
            .collect();
        let verdict = if reply.load_error.is_none()
            && tests.iter().all(|t| t.outcome == TestOutcome::Passed)
        {
            Verdict::Passed
        } else {
            Verdict::Failed
        };
        Ok(JobResult {
            verdict,
            tests,
            load_error: reply.load_error,
            duration: secs(reply.duration),
            load_stdout: reply.load_stdout,
            load_stderr: reply.load_stderr,
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
        let header = json!({
            "kind": "driver",
            "driver": job.driver,
            "max_emit_bytes": job.max_emit_bytes,
            "limits": limits_json(&job.limits, &self.shared.config),
        });
        let (reply, blob) = self.exchange(&header, &job.payload, job.limits.job_timeout)?;
        let outcome = reply.outcome.ok_or_else(|| {
            SandboxError::Worker("worker reply to a driver job has no outcome".into())
        })?;
        Ok(DriverResult {
            emitted: if reply.emitted { Some(blob) } else { None },
            outcome,
            stdout: reply.stdout,
            stderr: reply.stderr,
            duration: secs(reply.duration),
            output_truncated: reply.output_truncated,
        })
    }

    fn checkout(&self) -> Worker {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        loop {
            if let Some(w) = idle.pop() {
                return w;
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

    /// Sends one job to a worker and waits for its reply; replaces a dead or hung worker and
    /// retries once.
    fn exchange(
        &self,
        header: &Value,
        blob: &[u8],
        job_timeout: Duration,
    ) -> Result<(WireReply, Vec<u8>), SandboxError> {
        let header = serde_json::to_vec(header)
            .map_err(|e| SandboxError::Worker(format!("encoding job: {e}")))?;
        let mut last_err = None;
        for _attempt in 0..2 {
            let mut w = self.checkout();
            let deadline = Instant::now() + job_timeout + WORKER_GRACE;
            match talk(&mut w, &header, blob, deadline) {
                Ok((reply, out)) => {
                    self.checkin(w);
                    if let Some(e) = reply.infra_error {
                        last_err = Some(SandboxError::Worker(e));
                        continue;
                    }
                    return Ok((reply, out));
                }
                Err(e) => {
                    let index = w.index;
                    kill_worker(w);
                    last_err = Some(e);
                    match spawn_worker(&self.shared, index) {
                        Ok((nw, _)) => self.checkin(nw),
                        Err(e2) => {
                            // Keep the pool usable with one fewer worker; report the failure.
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
}

impl Drop for Pool {
    fn drop(&mut self) {
        let workers = std::mem::take(self.idle_mut());
        // Closing a worker's input makes it exit after cleaning up; one that does not within
        // two seconds is killed (its jobs die with it: they are in its PID namespace).
        let mut closing = Vec::new();
        for w in workers {
            let Worker {
                index,
                dir,
                child,
                stdin,
                stdout,
            } = w;
            drop(stdin);
            closing.push((index, dir, child, stdout));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for (_, dir, mut child, _stdout) in closing {
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
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

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

fn kill_worker(mut w: Worker) {
    // The spawned process waits for the real worker (PID 1 of its namespace); kill the worker
    // first (which takes its whole PID namespace down), then the spawned process.
    let pid = w.child.id();
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(c, libc::SIGKILL) };
        }
    }
    let _ = w.child.kill();
    let _ = w.child.wait();
    // A worker's job directories live on its private tmpfs (gone with it); the mount point
    // (or, without a mount namespace, the directories themselves) is removed here.
    let _ = std::fs::remove_dir_all(&w.dir);
}

fn spawn_worker(shared: &Shared, index: usize) -> Result<(Worker, WireInit), SandboxError> {
    let dir = shared.base_dir.join(format!("w{index}"));
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut cmd = Command::new(&shared.python);
    cmd.args(["-I", "-S", "-B", "-c", HARNESS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("NXT_SANDBOX_DEBUG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8");
    std::fs::create_dir_all(&dir)?;
    set_mode(&dir, 0o711)?;
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: we own both fresh descriptors.
    let (status_r, status_w) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(pipe[0]),
            std::os::fd::OwnedFd::from_raw_fd(pipe[1]),
        )
    };
    let plan = {
        use std::os::fd::AsRawFd;
        crate::confine::Plan::new(
            &dir,
            shared.config.tmpfs_mb,
            &shared.seccomp,
            status_w.as_raw_fd(),
        )?
    };
    // SAFETY: Plan::apply only makes async-signal-safe calls and allocates nothing.
    unsafe {
        cmd.pre_exec(move || plan.apply());
    }
    let mut child = cmd.spawn().map_err(|e| {
        SandboxError::Python(format!("cannot start {}: {e}", shared.python.display()))
    })?;
    drop(cmd);
    drop(status_w);
    let mut status = Vec::new();
    let _ = (&status_r).read_to_end(&mut status);
    let layers: Vec<Value> = crate::confine::LAYERS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let code = status.get(i).copied();
            let (active, detail) = match code {
                Some(0) => (true, layer_detail(name).to_string()),
                Some(e) => (
                    false,
                    format!("{}", std::io::Error::from_raw_os_error(i32::from(e))),
                ),
                None => (false, "the worker did not report its setup".to_string()),
            };
            json!({"name": name, "active": active, "detail": detail})
        })
        .collect();
    let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
        (Some(i), Some(o)) => (i, o),
        _ => return Err(SandboxError::Worker("worker pipes missing".into())),
    };
    let mut w = Worker {
        index,
        dir,
        child,
        stdin,
        stdout,
    };
    let uid = shared.config.uid_base + index as u32;
    let init = json!({
        "uid": uid,
        "gid": uid,
        "allow_weak": shared.config.allow_weak_isolation,
        "dir": w.dir.to_string_lossy(),
        "layers": layers,
    });
    let init = serde_json::to_vec(&init)
        .map_err(|e| SandboxError::Worker(format!("encoding init: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let res =
        write_frame(&mut w.stdin, &init, &[]).and_then(|_| read_frame(&mut w.stdout, deadline));
    match res {
        Ok((header, _)) => {
            let init: WireInit = serde_json::from_slice(&header)
                .map_err(|e| SandboxError::Worker(format!("worker init reply unreadable: {e}")))?;
            if !shared.config.allow_weak_isolation {
                let report = IsolationReport {
                    python: shared.python.clone(),
                    python_version: init.python.clone(),
                    layers: init.layers.clone(),
                };
                let missing = report.missing();
                if !missing.is_empty() {
                    kill_worker(w);
                    return Err(SandboxError::Isolation { missing });
                }
            }
            Ok((w, init))
        }
        Err(e) => {
            let _ = w.child.kill();
            let status = w.child.wait();
            Err(SandboxError::Worker(format!(
                "worker failed to start ({}): {e} (set NXT_SANDBOX_DEBUG=1 to see its stderr)",
                status.map(|s| s.to_string()).unwrap_or_default()
            )))
        }
    }
}

fn layer_detail(name: &str) -> &'static str {
    match name {
        "net_namespace" => "own network namespace: no interfaces but a down loopback",
        "ipc_namespace" => "own IPC namespace",
        "uts_namespace" => "own UTS namespace",
        "mnt_namespace" => "own mount namespace",
        "pid_namespace" => "the worker is PID 1 of its own PID namespace",
        "private_tmpfs" => "job directories live on a tmpfs private to the worker",
        "landlock" => "writes only below the job directory; no reads of /proc, /sys, /dev",
        "seccomp" => "no sockets but AF_UNIX, no connect/bind, ptrace, mount, namespaces, bpf, ...",
        _ => "",
    }
}

fn talk(
    w: &mut Worker,
    header: &[u8],
    blob: &[u8],
    deadline: Instant,
) -> Result<(WireReply, Vec<u8>), SandboxError> {
    write_frame(&mut w.stdin, header, blob)?;
    let (h, b) = read_frame(&mut w.stdout, deadline)?;
    let reply: WireReply = serde_json::from_slice(&h)
        .map_err(|e| SandboxError::Worker(format!("worker reply unreadable: {e}")))?;
    Ok((reply, b))
}

fn write_frame(out: &mut ChildStdin, header: &[u8], blob: &[u8]) -> Result<(), SandboxError> {
    let hl =
        u32::try_from(header.len()).map_err(|_| SandboxError::Worker("job too large".into()))?;
    let bl =
        u32::try_from(blob.len()).map_err(|_| SandboxError::Worker("payload too large".into()))?;
    let mut msg = Vec::with_capacity(8 + header.len() + blob.len());
    msg.extend_from_slice(&hl.to_be_bytes());
    msg.extend_from_slice(header);
    msg.extend_from_slice(&bl.to_be_bytes());
    msg.extend_from_slice(blob);
    out.write_all(&msg)?;
    out.flush()?;
    Ok(())
}

fn read_frame(
    inp: &mut ChildStdout,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), SandboxError> {
    let header = read_part(inp, deadline)?;
    let blob = read_part(inp, deadline)?;
    Ok((header, blob))
}

fn read_part(inp: &mut ChildStdout, deadline: Instant) -> Result<Vec<u8>, SandboxError> {
    let mut len = [0u8; 4];
    read_exact_deadline(inp, &mut len, deadline)?;
    let n = u32::from_be_bytes(len) as usize;
    let mut buf = vec![0u8; n];
    read_exact_deadline(inp, &mut buf, deadline)?;
    Ok(buf)
}

fn read_exact_deadline(
    inp: &mut ChildStdout,
    mut buf: &mut [u8],
    deadline: Instant,
) -> Result<(), SandboxError> {
    let fd = inp.as_raw_fd();
    while !buf.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            return Err(SandboxError::Worker(
                "worker did not answer in time (killed and replaced)".into(),
            ));
        }
        let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if r == 0 {
            continue;
        }
        let n = inp.read(buf)?;
        if n == 0 {
            return Err(SandboxError::Worker("worker exited unexpectedly".into()));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}
