//! Running an external trainer (the TRL hand-off's launcher) so that it never outlives nxt.
//!
//! The launcher (`sh -c COMMAND`, which may start `accelerate`/`torchrun` and their workers)
//! runs in a process group of its own, under a small `sh` supervisor:
//! - the supervisor gets `SIGTERM` when nxt dies, even by `SIGKILL` (`PR_SET_PDEATHSIG`), and
//!   then sends `SIGTERM` to the whole group;
//! - `SIGINT`/`SIGTERM`/`SIGHUP` sent to nxt while the launcher runs are forwarded to the
//!   group; once the launcher has exited nxt takes the signal's own action;
//! - the group's id and a token (an environment variable every member inherits) are recorded
//!   in the output directory ([`LAUNCHER_FILE`]) while it runs, and a rerun in the same
//!   directory stops a recorded group that is still alive before launching again (saying so).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::files::{read_json, write_json_atomic};
use crate::TrainError;

/// The record of a running launcher's process group, in the output directory.
pub const LAUNCHER_FILE: &str = "launcher.json";
/// The environment variable that marks every process of a launcher's group.
pub const TOKEN_ENV: &str = "NXT_LAUNCHER_TOKEN";
/// How long a stale group gets to exit after `SIGTERM` before it is sent `SIGKILL`.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The supervisor: runs `$1` in the background, turns a signal into `SIGTERM` for the whole
/// group, and exits with the command's status otherwise.
const SUPERVISOR: &str =
    "trap 'trap \"\" INT TERM HUP; kill -TERM 0 2>/dev/null; exit 143' INT TERM HUP\n\
sh -c \"$1\" &\n\
wait $!\n";

/// What [`LAUNCHER_FILE`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LauncherRecord {
    /// The process group id (the supervisor's pid).
    pub pgid: i32,
    /// The value of [`TOKEN_ENV`] in the group's environment.
    pub token: String,
    /// The command line run.
    pub command: String,
}

/// A process seen in `/proc`.
fn proc_pgrp_state(pid: &str) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pgrp, state))
}

fn has_token(pid: &str, token: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{TOKEN_ENV}={token}");
    env.split(|b| *b == 0).any(|e| e == want.as_bytes())
}

/// The live (not zombie) processes of group `pgid`; with `token`, only when at least one of
/// them carries it (otherwise the id belongs to someone else now and nothing is returned).
pub fn group_members(pgid: i32, token: Option<&str>) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members = Vec::new();
    let mut marked = token.is_none();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match proc_pgrp_state(pid) {
            Some((g, state)) if g == pgid && state != 'Z' && state != 'X' => {
                if let Some(t) = token {
                    marked |= has_token(pid, t);
                }
                if let Ok(p) = pid.parse() {
                    members.push(p);
                }
            }
            _ => {}
        }
    }
    if marked {
        members
    } else {
        Vec::new()
    }
}

/// Sends `SIGTERM` to group `pgid`, waits up to `grace` for it to empty, then `SIGKILL`s
/// what is left. Returns whether the group is gone.
pub fn stop_group(pgid: i32, grace: Duration) -> bool {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if group_members(pgid, None).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        if group_members(pgid, None).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Stops the launcher group recorded in `out` by an earlier run if it is still alive (a
/// previous nxt was killed while it ran), saying so on stderr, and removes the record.
pub fn stop_stale(out: &Path) -> Result<(), TrainError> {
    let path = out.join(LAUNCHER_FILE);
    if !path.exists() {
        return Ok(());
    }
    match read_json::<LauncherRecord>(&path) {
        Ok(rec) => {
            let members = group_members(rec.pgid, Some(&rec.token));
            if !members.is_empty() {
                eprintln!(
                    "{}: the launcher of an earlier run is still running (process group {}, {} \
                     process(es): `{}`); stopping it before launching again",
                    out.display(),
                    rec.pgid,
                    members.len(),
                    rec.command
                );
                if !stop_group(rec.pgid, STOP_GRACE) {
                    return Err(TrainError::Launcher {
                        command: rec.command,
                        status: format!(
                            "process group {} of an earlier run survives SIGKILL",
                            rec.pgid
                        ),
                        tail: String::new(),
                    });
                }
            }
        }
        Err(e) => eprintln!("{e}; ignoring it"),
    }
    std::fs::remove_file(&path).map_err(|e| TrainError::io(&path, e))
}

/// Groups that signals to nxt are forwarded to (0: free slot).
static FORWARD: [AtomicI32; 8] = [const { AtomicI32::new(0) }; 8];
/// The last signal received while a launcher ran (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Launchers running in this process, and the signal actions they replaced.
static INSTALLED: Mutex<(usize, Vec<(libc::c_int, libc::sigaction)>)> = Mutex::new((0, Vec::new()));
const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn forward(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
    for slot in &FORWARD {
        let g = slot.load(Ordering::SeqCst);
        if g > 0 {
            // SAFETY: kill(2) is async-signal-safe.
            unsafe { libc::kill(-g, sig) };
        }
    }
}

/// Forwards `SIGINT`/`SIGTERM`/`SIGHUP` to `pgid` while alive; dropping it restores the
/// previous actions once no launcher of this process runs, and then re-raises a signal
/// received meanwhile (nxt takes its own action only after the launcher has stopped).
struct Forwarding {
    slot: Option<usize>,
}

impl Forwarding {
    fn new(pgid: i32) -> Forwarding {
        let slot = FORWARD.iter().position(|s| {
            s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        if installed.0 == 0 {
            RECEIVED.store(0, Ordering::SeqCst);
            for sig in FORWARDED {
                // SAFETY: a zeroed sigaction is a valid value; the handler only does
                // async-signal-safe work (atomics and kill).
                unsafe {
                    let mut act: libc::sigaction = std::mem::zeroed();
                    act.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
                    act.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut act.sa_mask);
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, &act, &mut old) == 0 {
                        installed.1.push((sig, old));
                    }
                }
            }
        }
        installed.0 += 1;
        Forwarding { slot }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            FORWARD[i].store(0, Ordering::SeqCst);
        }
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        installed.0 = installed.0.saturating_sub(1);
        if installed.0 == 0 {
            for (sig, old) in installed.1.drain(..) {
                // SAFETY: restores the action saved by `new`.
                unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
            }
            let sig = RECEIVED.swap(0, Ordering::SeqCst);
            if sig != 0 {
                // SAFETY: raise(3) delivers the signal to this process under its previous
                // action (by default: terminate, as if the signal had come now).
                unsafe { libc::raise(sig) };
            }
        }
    }
}

fn token() -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `command` with `sh -c` in `cwd` as described in the module documentation, streaming
/// its output to stderr; a failure is an error with the exit status and the last lines.
pub fn run_streamed(command: &str, cwd: &Path) -> Result<(), TrainError> {
    let launch_err = |status: String| TrainError::Launcher {
        command: command.into(),
        status,
        tail: String::new(),
    };
    stop_stale(cwd)?;
    let token = token();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(SUPERVISOR)
        .arg("nxt-launcher")
        .arg(command)
        .current_dir(cwd)
        .env(TOKEN_ENV, &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe prctl(2) and getppid(2).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "nxt exited before the launcher started",
                ));
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| launch_err(format!("could not start sh: {e}")))?;
    let pgid = child.id() as i32;
    let forwarding_guard = Forwarding::new(pgid);
    let record_path = cwd.join(LAUNCHER_FILE);
    write_json_atomic(
        &record_path,
        &LauncherRecord {
            pgid,
            token: token.clone(),
            command: command.into(),
        },
    )?;
    let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));
    let mut threads = Vec::new();
    let readers: Vec<Box<dyn std::io::Read + Send>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for r in readers {
        let tail = tail.clone();
        threads.push(std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.push_back(line);
                if t.len() > 20 {
                    t.pop_front();
                }
            }
        }));
    }
    let status = child
        .wait()
        .map_err(|e| launch_err(format!("wait failed: {e}")))?;
    // Whatever the launcher left behind in its group (a worker that outlived it) is stopped
    // too, so the record can go.
    if !group_members(pgid, Some(&token)).is_empty() {
        eprintln!("the launcher exited leaving processes in its group {pgid}; stopping them");
        stop_group(pgid, STOP_GRACE);
    }
    for t in threads {
        let _ = t.join();
    }
    std::fs::remove_file(&record_path).map_err(|e| TrainError::io(&record_path, e))?;
    drop(forwarding_guard);
    if !status.success() {
        let t = tail.lock().unwrap_or_else(|p| p.into_inner());
        return Err(TrainError::Launcher {
            command: command.into(),
            status: status.to_string(),
            tail: t.iter().cloned().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}
