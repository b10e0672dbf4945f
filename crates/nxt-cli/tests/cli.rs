//! Behaviour of the `nxt` binary itself, independent of any subcommand's logic.

use std::process::{Command, Stdio};

/// `nxt ... | head` closes stdout early: nxt must exit with 141 (128 + SIGPIPE), quietly,
/// instead of panicking with a backtrace on stderr.
#[test]
fn closed_stdout_exits_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nxt"))
        .args(["data", "list", "--data-dir", "/nonexistent-nxt-data-dir"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nxt");
    // Close the read end before nxt writes anything: its first write gets EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for nxt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
