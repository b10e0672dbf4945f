//! Where the tracer driver runs: the sandbox [`nxt_sandbox::Pool`] (what [`crate::trace`] uses),
//! or, for tests of the Python script itself, a plain unsandboxed subprocess.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nxt_sandbox::{DriverJob, DriverResult, SandboxError, TestOutcome};

/// Something that can run a trusted Python driver (see [`nxt_sandbox::DriverJob`]).
pub trait DriverRunner: Sync {
    /// Run the driver and return what it emitted.
    fn run_driver(&self, job: &DriverJob) -> Result<DriverResult, SandboxError>;
}

/// Runs the driver in a fresh, UNSANDBOXED `python` subprocess.
///
/// Only for testing the tracer script itself on several interpreter versions (the pool runs
/// one interpreter); never use it on untrusted code: it has no isolation and no memory limit.
#[derive(Debug, Clone)]
pub struct DirectRunner {
    /// Interpreter to run.
    pub python: PathBuf,
}

const HARNESS: &str = r#"
import sys
_p = open(sys.argv[1], 'rb').read()
_out = sys.argv[2]
def nxt_payload():
    return _p
def nxt_emit(b):
    with open(_out, 'wb') as f:
        f.write(b)
_src = open(sys.argv[3], 'r', encoding='utf-8').read()
_g = {'__name__': '__main__', 'nxt_payload': nxt_payload, 'nxt_emit': nxt_emit}
exec(compile(_src, '<nxt-driver>', 'exec'), _g)
"#;

impl DriverRunner for nxt_sandbox::Pool {
    fn run_driver(&self, job: &DriverJob) -> Result<DriverResult, SandboxError> {
        nxt_sandbox::Pool::run_driver(self, job)
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl DriverRunner for DirectRunner {
    fn run_driver(&self, job: &DriverJob) -> Result<DriverResult, SandboxError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nxt-trace-direct-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let payload = dir.join("payload");
        let out = dir.join("emitted");
        let driver = dir.join("driver.py");
        std::fs::write(&payload, &job.payload)?;
        std::fs::write(&driver, &job.driver)?;
        let start = Instant::now();
        let mut child = Command::new(&self.python)
            .arg("-I")
            .arg("-c")
            .arg(HARNESS)
            .arg(&payload)
            .arg(&out)
            .arg(&driver)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SandboxError::Python(format!("{}: {e}", self.python.display())))?;
        let deadline = start + job.limits.job_timeout;
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                timed_out = true;
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let output = child.wait_with_output()?;
        let emitted = std::fs::read(&out).ok();
        let _ = std::fs::remove_dir_all(&dir);
        let outcome = if timed_out {
            TestOutcome::Timeout
        } else if status.success() {
            TestOutcome::Passed
        } else {
            TestOutcome::Error {
                exc_type: "DriverExit".into(),
                message: format!("driver exited with {status}"),
                line: None,
            }
        };
        let stderr = crate::render::clip(
            &String::from_utf8_lossy(&output.stderr),
            job.limits.output_bytes,
        );
        Ok(DriverResult {
            emitted: emitted.filter(|e| e.len() <= job.max_emit_bytes),
            outcome,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr,
            duration: start.elapsed(),
            output_truncated: false,
        })
    }
}
