//! A worker's compiler: a confined Python process (the harness run with `compile`) that never
//! forks, so none of its work pays copy-on-write faults. Per job it answers the tests, program
//! and setup compiled and marshalled; the job's child only loads them.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::{kill_tree, start_confined, Spawn};
use crate::wire::{read_frame, write_frame};
use crate::SandboxError;

/// A worker's compiler: a confined Python process that never forks, so none of its work pays
/// copy-on-write faults. It answers a job's tests, program and setup compiled and marshalled.
pub(crate) struct Compiler {
    pub(crate) child: Child,
    dir: PathBuf,
    input: ChildStdin,
    answers: ChildStdout,
}

impl Compiler {
    pub(crate) fn spawn(s: &Spawn<'_>) -> Result<Compiler, SandboxError> {
        let dir = PathBuf::from(format!("{}-compiler", s.dir.display()));
        let (mut child, _status) = start_confined(s, &dir, &["compile"], None)?;
        let (Some(input), Some(answers)) = (child.stdin.take(), child.stdout.take()) else {
            kill_tree(&mut child);
            return Err(SandboxError::Worker("compiler pipes missing".into()));
        };
        let mut c = Compiler {
            child,
            dir,
            input,
            answers,
        };
        let init = serde_json::to_vec(&json!({"tag": s.tag}))
            .map_err(|e| SandboxError::Worker(format!("encoding init: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let hello = write_frame(&mut c.input, &init, &[])
            .and_then(|_| read_frame(&mut c.answers, deadline));
        match hello {
            Ok(_) => Ok(c),
            Err(e) => {
                c.kill();
                Err(SandboxError::Worker(format!(
                    "compiler failed to start: {e}"
                )))
            }
        }
    }

    pub(crate) fn compile(
        &mut self,
        request: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, SandboxError> {
        write_frame(&mut self.input, request, &[])?;
        let (header, blob) = read_frame(&mut self.answers, deadline)?;
        let answer: Value = serde_json::from_slice(&header)
            .map_err(|e| SandboxError::Worker(format!("compiler answer unreadable: {e}")))?;
        if answer.get("ok") == Some(&Value::Bool(true)) {
            Ok(blob)
        } else {
            Err(SandboxError::Worker(format!("compiler failed: {answer}")))
        }
    }

    pub(crate) fn kill(mut self) {
        kill_tree(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
