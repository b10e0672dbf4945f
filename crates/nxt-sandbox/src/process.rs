//! Starting confined Python processes: the harness run as a worker (fork server) or as its
//! compiler, with namespaces, tmpfs, landlock and seccomp set up between fork and exec (see
//! `confine.rs`), and the small process and descriptor helpers both use.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::SandboxError;

/// The trusted Python harness every worker runs.
const HARNESS: &str = include_str!("../python/harness.py");
/// The strict comparison functions the harness executes in globals of their own.
const STRICT: &str = include_str!("../python/strict.py");
/// The environment variable that carries [`STRICT`] to the harness (which takes it out).
const STRICT_ENV: &str = "NXT_SANDBOX_STRICT";
/// The environment variable that carries [`HARNESS`] to the interpreter.
const HARNESS_ENV: &str = "NXT_SANDBOX_HARNESS";
/// The `-c` program: runs the harness from [`HARNESS_ENV`] (taken out of the environment
/// first), so that the command line (`ps`, `/proc/PID/cmdline`) stays one short line instead
/// of the harness's 40 KB of source. It binds no name of its own in `__main__`.
const BOOTSTRAP: &str = "exec(compile(__import__('os').environ.pop('NXT_SANDBOX_HARNESS'), '<nxt-sandbox-harness>', 'exec'))";

/// What a worker needs to start.
pub(crate) struct Spawn<'a> {
    pub python: &'a Path,
    pub dir: PathBuf,
    pub tmpfs_mb: u64,
    pub seccomp: &'a [Vec<u8>],
    pub uid: u32,
    pub allow_weak: bool,
    /// Placeholder tag of the strict rewrite, shared by the worker and its compiler.
    pub tag: &'a str,
}

/// Starts the harness (with `args` after it) as a confined process with its directory `dir`:
/// namespaces, tmpfs, landlock and seccomp are set up between fork and exec (see
/// `confine.rs`); `handed` descriptors become its fds 3 to 6. Returns the process and the status
/// byte of each layer.
pub(crate) fn start_confined(
    s: &Spawn<'_>,
    dir: &Path,
    args: &[&str],
    handed: Option<[RawFd; 4]>,
) -> Result<(Child, Vec<u8>), SandboxError> {
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o711)?;
    let (status_r, status_w) = pipe()?;
    let mut cmd = Command::new(s.python);
    cmd.args(["-I", "-S", "-B", "-c", BOOTSTRAP])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("NXT_SANDBOX_DEBUG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        // Resolve every dynamic symbol at start: else each forked job process would resolve
        // (and copy the pages of) the ones the worker never called itself.
        .env("LD_BIND_NOW", "1")
        .env(HARNESS_ENV, HARNESS)
        .env(STRICT_ENV, STRICT);
    let plan = crate::confine::Plan::new(dir, s.tmpfs_mb, s.seccomp, status_w.as_raw_fd())?;
    // SAFETY: Plan::apply and place_fds only make async-signal-safe calls and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            plan.apply()?;
            match &handed {
                Some(fds) => place_fds(fds),
                None => Ok(()),
            }
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| SandboxError::Python(format!("cannot start {}: {e}", s.python.display())))?;
    drop(cmd);
    drop(status_w);
    let mut status = Vec::new();
    let _ = (&File::from(status_r)).read_to_end(&mut status);
    Ok((child, status))
}

pub(crate) fn kill_tree(child: &mut Child) {
    // The spawned process waits for the real worker (PID 1 of its namespace): kill the worker
    // first (which takes its whole PID namespace down), then the spawned process.
    let pid = child.id();
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(c, libc::SIGKILL) };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Moves the four descriptors handed to the worker to 3, 4, 5, 6 (without close-on-exec).
///
/// # Safety
/// Runs between fork and exec: async-signal-safe calls only.
unsafe fn place_fds(handed: &[RawFd; 4]) -> std::io::Result<()> {
    let mut high = [0 as RawFd; 4];
    for (i, fd) in handed.iter().enumerate() {
        high[i] = libc::fcntl(*fd, libc::F_DUPFD, 100);
        if high[i] < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (i, fd) in high.iter().enumerate() {
        if libc::dup2(*fd, 3 + i as RawFd) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(*fd);
    }
    Ok(())
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn set_nonblocking(fd: RawFd) -> Result<(), SandboxError> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

pub(crate) fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), SandboxError> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        filled += n as usize;
    }
    Ok(())
}
