//! One warm worker: a CPython fork server (PID 1 of its own namespaces) running the harness,
//! and the channels the pool reads a job's records, stdout and stderr from.
//!
//! The pool itself monitors each job: it polls the result, stdout, stderr and answer pipes,
//! attributes output to the test that was running, enforces the per-test and per-job wall
//! clock (killing the job process, found as the worker's child, through a pidfd), and turns
//! the records into outcomes. The Python side compiles, forks, waits and cleans up.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::compiler::Compiler;
use crate::process::{fill_random, kill_tree, pipe, set_nonblocking, start_confined, Spawn};
use crate::report::IsolationLayer;
use crate::wire::{
    decode_outcome, drain, poll_ready, pollfd, read_answer, read_frame, write_frame, write_job,
    Capture, JobHeader, Record, RecordReader, NONCE_LEN,
};
use crate::{SandboxError, TestOutcome};

/// How long a worker may take to kill a job after being asked before it counts as hung.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often a kill request is repeated until the worker answers.
const KILL_REPEAT: Duration = Duration::from_millis(100);

/// A running worker and the pool's ends of its channels.
pub(crate) struct Worker {
    /// Position in the pool (its uid is `uid_base + index`).
    pub index: usize,
    /// Its directory (mount point of its private tmpfs).
    pub dir: PathBuf,
    /// The spawned process (with a PID namespace: a small waiter whose child is the worker).
    child: Child,
    /// Pid of the fork server itself, as this process sees it (its child is the running job).
    server_pid: libc::pid_t,
    input: ChildStdin,
    answers: ChildStdout,
    results: File,
    stdout: File,
    stderr: File,
    acks: File,
    /// Compiles each job's tests and program before the fork (None once it failed).
    compiler: Option<Compiler>,
}

/// Per-attempt instructions for [`Worker::attempt`].
pub(crate) struct AttemptSpec<'a> {
    /// The fixed header (the secret is added per attempt).
    pub header: JobHeader,
    /// Sources the child compiles itself (JSON: `program`, `setup`, `tests` or `driver`), when
    /// the compiler did not.
    pub sources: Option<Value>,
    /// The compiler's answer for this job (empty: the child compiles).
    pub code: &'a [u8],
    /// Raw payload (driver jobs).
    pub payload: &'a [u8],
    /// Number of tests (phases besides "load").
    pub tests: usize,
    /// Per-test wall-clock limit, if tests are timed individually.
    pub test_timeout: Option<Duration>,
    /// Wall-clock deadline of the whole job.
    pub job_deadline: Instant,
    /// Bytes of stdout and of stderr kept per phase.
    pub output_bytes: usize,
}

/// Why the pool had a job killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillReason {
    Test,
    Job,
    Tamper,
}

/// What one attempt (one child process) did.
#[derive(Debug)]
pub(crate) struct Events {
    /// The program (and setup) loaded.
    pub loaded: bool,
    /// Loading the program failed with this.
    pub load_error: Option<TestOutcome>,
    /// Outcome and wall time of each test that reported one.
    pub results: Vec<Option<(TestOutcome, Duration)>>,
    /// Test started but not finished when the child ended.
    pub current: Option<usize>,
    /// When `current` started.
    current_started: Option<Instant>,
    /// The child finished all its work.
    pub done: bool,
    /// Bytes a driver emitted.
    pub emitted: Option<Vec<u8>>,
    /// Isolation report of a probe.
    pub info: Option<String>,
    /// The child could not set up its isolation.
    pub infra: Option<String>,
    /// Something else wrote on the result channel.
    pub tampered: bool,
    /// Whether and why the pool had the job killed.
    pub killed_for: Option<KillReason>,
    /// Exit code (< 128) or 128 + signal of the child.
    pub status: i32,
    /// stdout and stderr per phase: index 0 is loading, `i + 1` is test `i`.
    pub captures: Vec<(Capture, Capture)>,
    phase: usize,
}

impl Events {
    fn new(tests: usize, cap: usize) -> Events {
        Events {
            loaded: false,
            load_error: None,
            results: vec![None; tests],
            current: None,
            current_started: None,
            done: false,
            emitted: None,
            info: None,
            infra: None,
            tampered: false,
            killed_for: None,
            status: 0,
            captures: vec![(Capture::new(cap), Capture::new(cap)); tests + 1],
            phase: 0,
        }
    }

    /// How long the unfinished test had been running.
    pub fn current_duration(&self) -> Duration {
        self.current_started
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// The outcome of the test that was running when the child ended without reporting it.
    pub fn died_outcome(&self) -> TestOutcome {
        if self.tampered {
            return TestOutcome::Error {
                exc_type: "ResultChannelTampered".into(),
                message: "the program wrote on the harness's result channel".into(),
                line: None,
            };
        }
        if matches!(self.killed_for, Some(KillReason::Test | KillReason::Job)) {
            return TestOutcome::Timeout;
        }
        if self.status >= 128 {
            let signal = self.status - 128;
            if signal == libc::SIGXCPU {
                return TestOutcome::Timeout;
            }
            return TestOutcome::Crashed { signal };
        }
        TestOutcome::Error {
            exc_type: "ProcessExit".into(),
            message: format!(
                "the process exited with status {} before reporting",
                self.status
            ),
            line: None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Hello {
    python: String,
}

impl Worker {
    /// Starts a worker: namespaces, tmpfs, landlock and seccomp are set up between fork and
    /// exec (see `confine.rs`); returns it with the layers that setup reported.
    pub(crate) fn spawn(s: &Spawn<'_>) -> Result<(Worker, Vec<Value>, String), SandboxError> {
        let (results_r, results_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let (acks_r, acks_w) = pipe()?;
        let handed: [RawFd; 4] = [
            results_w.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
            acks_r.as_raw_fd(),
        ];
        let (mut child, status) = start_confined(s, &s.dir, &[], Some(handed))?;
        drop((results_w, stdout_w, stderr_w, acks_r));
        let layers: Vec<Value> = crate::confine::LAYERS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (active, detail) = match status.get(i).copied() {
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
        let pid_namespace = status.get(4).copied() == Some(0);
        let (input, answers) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SandboxError::Worker("worker pipes missing".into()));
            }
        };
        let server_pid = match server_pid(&child, pid_namespace) {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        for f in [&results_r, &stdout_r, &stderr_r, &acks_w] {
            set_nonblocking(f.as_raw_fd())?;
        }
        let mut w = Worker {
            index: 0,
            dir: s.dir.clone(),
            child,
            server_pid,
            input,
            answers,
            results: File::from(results_r),
            stdout: File::from(stdout_r),
            stderr: File::from(stderr_r),
            acks: File::from(acks_w),
            compiler: None,
        };
        let init = json!({
            "uid": s.uid,
            "gid": s.uid,
            "allow_weak": s.allow_weak,
            "dir": w.dir.to_string_lossy(),
            "tag": s.tag,
        });
        let init = serde_json::to_vec(&init)
            .map_err(|e| SandboxError::Worker(format!("encoding init: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let hello = write_frame(&mut w.input, &init, &[])
            .and_then(|_| read_frame(&mut w.answers, deadline))
            .and_then(|(h, _)| {
                serde_json::from_slice::<Hello>(&h)
                    .map_err(|e| SandboxError::Worker(format!("worker init reply unreadable: {e}")))
            });
        match hello {
            Ok(h) => {
                // Without a compiler, jobs compile in their own child (slower, same results).
                w.compiler = Compiler::spawn(s).ok();
                Ok((w, layers, h.python))
            }
            Err(e) => {
                let _ = w.child.kill();
                let status = w.child.wait();
                let _ = std::fs::remove_dir_all(&w.dir);
                Err(SandboxError::Worker(format!(
                    "worker failed to start ({}): {e} (set NXT_SANDBOX_DEBUG=1 to see its stderr)",
                    status.map(|s| s.to_string()).unwrap_or_default()
                )))
            }
        }
    }

    /// Runs the isolation probe: one child that sets up every per-job layer and reports.
    pub(crate) fn probe(&mut self, python: &str) -> Result<Vec<IsolationLayer>, SandboxError> {
        let spec = AttemptSpec {
            header: JobHeader {
                kind: JobHeader::PROBE,
                start: 0,
                setup_after: true,
                strict: true,
                memory: 1 << 30,
                job_timeout: 10.0,
                file_bytes: 1 << 20,
                processes: 32,
                max_emit: 0,
            },
            sources: None,
            code: &[],
            payload: &[],
            tests: 0,
            test_timeout: None,
            job_deadline: Instant::now() + Duration::from_secs(10),
            output_bytes: 4096,
        };
        let ev = self.attempt(&spec)?;
        let mut layers = Vec::new();
        match (&ev.info, &ev.infra) {
            (Some(info), _) => {
                for line in info.lines() {
                    let mut parts = line.splitn(3, '\t');
                    let (Some(name), Some(ok), Some(detail)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    layers.push(IsolationLayer {
                        name: name.to_string(),
                        active: ok == "1",
                        detail: detail.to_string(),
                    });
                }
            }
            (None, infra) => layers.push(IsolationLayer {
                name: "probe".into(),
                active: false,
                detail: infra
                    .clone()
                    .unwrap_or_else(|| format!("probe child of python {python} gave no report")),
            }),
        }
        Ok(layers)
    }

    /// Runs one child for a job and monitors it until the worker reports it gone.
    /// `Err` means the worker itself failed (died, hung, spoke nonsense): kill it.
    pub(crate) fn attempt(&mut self, spec: &AttemptSpec<'_>) -> Result<Events, SandboxError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let header = spec.header.encode(&nonce);
        let sources = match &spec.sources {
            Some(v) => serde_json::to_vec(v)
                .map_err(|e| SandboxError::Worker(format!("encoding job: {e}")))?,
            None => Vec::new(),
        };
        write_job(
            &mut self.input,
            &[&header, spec.code, spec.payload, &sources],
        )?;

        let mut ev = Events::new(spec.tests, spec.output_bytes);
        let mut reader = RecordReader::new(nonce);
        let mut kill: Option<(Instant, Instant)> = None;
        let hard_deadline = spec.job_deadline + KILL_GRACE + Duration::from_secs(10);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            let mut wake = hard_deadline;
            match kill {
                None => {
                    let mut deadline = spec.job_deadline;
                    let mut reason = KillReason::Job;
                    if let (Some(t0), Some(limit)) = (ev.current_started, spec.test_timeout) {
                        if t0 + limit < deadline {
                            deadline = t0 + limit;
                            reason = KillReason::Test;
                        }
                    }
                    if reader.tampered {
                        ev.tampered = true;
                        deadline = now;
                        reason = KillReason::Tamper;
                    }
                    if now >= deadline {
                        self.request_kill();
                        kill = Some((now, now));
                        ev.killed_for = Some(reason);
                        wake = now + KILL_REPEAT;
                    } else {
                        wake = wake.min(deadline);
                    }
                }
                Some((first, last)) => {
                    if now >= first + KILL_GRACE {
                        return Err(SandboxError::Worker(
                            "worker did not stop a job in time (killed and replaced)".into(),
                        ));
                    }
                    if now >= last + KILL_REPEAT {
                        self.request_kill();
                        kill = Some((first, now));
                    }
                    wake = now + KILL_REPEAT;
                }
            }
            if now >= hard_deadline {
                return Err(SandboxError::Worker(
                    "worker did not answer in time (killed and replaced)".into(),
                ));
            }
            let ms = wake
                .saturating_duration_since(now)
                .as_millis()
                .clamp(1, i32::MAX as u128) as i32;
            let mut fds = [
                pollfd(self.results.as_raw_fd()),
                pollfd(self.stdout.as_raw_fd()),
                pollfd(self.stderr.as_raw_fd()),
                pollfd(self.answers.as_raw_fd()),
            ];
            if poll_ready(&mut fds, ms)? == 0 {
                continue;
            }
            // Records first: a test's start decides where the output read next belongs.
            if fds[0].revents != 0 {
                self.read_records(&mut reader, &mut ev, &mut buf)?;
            }
            if fds[1].revents != 0 {
                drain(&mut self.stdout, &mut buf, |b| {
                    ev.captures[ev.phase].0.add(b)
                })?;
            }
            if fds[2].revents != 0 {
                drain(&mut self.stderr, &mut buf, |b| {
                    ev.captures[ev.phase].1.add(b)
                })?;
            }
            if fds[3].revents != 0 {
                let deadline = Instant::now() + KILL_GRACE;
                ev.status = read_answer(&mut self.answers, deadline)?;
                // Every process of the job is gone: what they wrote is all in the pipes.
                self.read_records(&mut reader, &mut ev, &mut buf)?;
                drain(&mut self.stdout, &mut buf, |b| {
                    ev.captures[ev.phase].0.add(b)
                })?;
                drain(&mut self.stderr, &mut buf, |b| {
                    ev.captures[ev.phase].1.add(b)
                })?;
                if reader.tampered {
                    ev.tampered = true;
                    ev.killed_for.get_or_insert(KillReason::Tamper);
                }
                return Ok(ev);
            }
        }
    }

    fn read_records(
        &mut self,
        reader: &mut RecordReader,
        ev: &mut Events,
        buf: &mut [u8],
    ) -> Result<(), SandboxError> {
        let mut records = Vec::new();
        drain(&mut self.results, buf, |b| reader.feed(b, &mut records))?;
        for rec in records {
            self.handle_record(rec, ev, buf)?;
        }
        Ok(())
    }

    fn handle_record(
        &mut self,
        rec: Record,
        ev: &mut Events,
        buf: &mut [u8],
    ) -> Result<(), SandboxError> {
        let idx = rec.idx as usize;
        match rec.kind {
            b'S' => {
                if rec.payload.as_slice() == b"w" {
                    // The child waits: take what it printed before, then let it go on.
                    drain(&mut self.stdout, buf, |b| ev.captures[ev.phase].0.add(b))?;
                    drain(&mut self.stderr, buf, |b| ev.captures[ev.phase].1.add(b))?;
                    let _ = (&self.acks).write(b"k");
                }
                if idx < ev.results.len() {
                    ev.phase = idx + 1;
                }
                ev.current = Some(idx);
                ev.current_started = Some(Instant::now());
            }
            b'R' => {
                let took = ev.current_duration();
                if let Some(slot) = ev.results.get_mut(idx) {
                    *slot = Some((decode_outcome(&rec.payload), took));
                }
                ev.current = None;
                ev.current_started = None;
            }
            b'L' => ev.loaded = true,
            b'l' => ev.load_error = Some(decode_outcome(&rec.payload)),
            b'D' => ev.done = true,
            b'P' => ev.emitted = Some(rec.payload),
            b'I' => ev.info = Some(String::from_utf8_lossy(&rec.payload).into_owned()),
            b'X' => ev.infra = Some(String::from_utf8_lossy(&rec.payload).into_owned()),
            _ => ev.tampered = true,
        }
        Ok(())
    }

    /// Kills the running job process (the worker's child). The worker then kills whatever
    /// else is left in its namespace, and answers.
    fn request_kill(&self) {
        let path = format!("/proc/{p}/task/{p}/children", p = self.server_pid);
        let Ok(children) = std::fs::read_to_string(&path) else {
            return;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|c| c.parse::<libc::pid_t>().ok())
        {
            // A pidfd names this very process even if it ends meanwhile; checking its parent
            // after opening it rules out a pid reused by an unrelated process.
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd < 0 {
                continue;
            }
            // SAFETY: the descriptor was just opened and is owned here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            if parent_of(pid) == Some(self.server_pid) {
                // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
            }
        }
    }

    /// Has the compiler compile a job (`request`: JSON with `tests`, `strict`, `program`,
    /// `setup`, or `driver`). `None` when there is no compiler or it failed (it is then
    /// stopped; the job's child compiles instead).
    pub(crate) fn compile(&mut self, request: &Value, deadline: Instant) -> Option<Vec<u8>> {
        let bytes = serde_json::to_vec(request).ok()?;
        let compiler = self.compiler.as_mut()?;
        match compiler.compile(&bytes, deadline) {
            Ok(code) => Some(code),
            Err(_) => {
                if let Some(c) = self.compiler.take() {
                    c.kill();
                }
                None
            }
        }
    }

    /// Whether the worker lost its compiler (it still works, more slowly: replace it).
    pub(crate) fn degraded(&self) -> bool {
        self.compiler.is_none()
    }

    /// Pid of the compiler process, if it runs (diagnostics).
    pub(crate) fn compiler_pid(&self) -> Option<u32> {
        self.compiler.as_ref().map(|c| c.child.id())
    }

    /// Pid of the spawned process (diagnostics).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the worker's input (it exits after its current job) and waits up to `deadline`
    /// before killing it; removes its directory.
    pub(crate) fn shut_down(self, deadline: Instant) {
        let Worker {
            mut child,
            dir,
            input,
            compiler,
            ..
        } = self;
        if let Some(c) = compiler {
            c.kill();
        }
        drop(input);
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        kill_tree(&mut child);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Kills the worker at once (its jobs die with its PID namespace).
    pub(crate) fn kill(mut self) {
        if let Some(c) = self.compiler.take() {
            c.kill();
        }
        kill_tree(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parent pid of a process, from `/proc/<pid>/stat` (the field after the parenthesized name).
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The fork server's pid: with a PID namespace it is the only child of the spawned waiter.
fn server_pid(child: &Child, pid_namespace: bool) -> Result<libc::pid_t, SandboxError> {
    let pid = child.id();
    if !pid_namespace {
        return libc::pid_t::try_from(pid)
            .map_err(|_| SandboxError::Worker(format!("pid {pid} out of range")));
    }
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .ok_or_else(|| SandboxError::Worker(format!("cannot find the worker's pid in {path}")))
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
