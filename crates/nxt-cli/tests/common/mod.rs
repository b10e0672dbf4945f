//! Helpers shared by the nxt-cli integration tests (each test file is its own crate and uses
//! a part of them): the built binary, temporary directories, and the resources a test needs,
//! which are skips outside CI and failures where `.ci/run` requires them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nxt_sandbox::test_support::{skip, SANDBOX};

/// Runs the built `nxt` with `args`, with `RUST_BACKTRACE=1` set (so a test also checks that
/// user errors print no backtrace).
pub fn nxt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nxt"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("nxt runs")
}

/// Bytes of a command's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh, empty directory for one test: named by the test file, `name` and the process.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "nxt-cli-{}-{name}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Writes `body` to `dir/name` and returns the path as a string (for an argument list).
pub fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write test file");
    p.to_string_lossy().into_owned()
}

/// Whether the sandbox starts here (a skip otherwise, a failure where it is required).
pub fn sandbox_ok() -> bool {
    match nxt_sandbox::Pool::new(nxt_sandbox::PoolConfig {
        workers: 1,
        allow_weak_isolation: true,
        ..Default::default()
    }) {
        Ok(_) => true,
        Err(e) => {
            skip(SANDBOX, &format!("sandbox unavailable: {e}"));
            false
        }
    }
}

/// The benchmark data (see `nxt_sandbox::test_support::data_dir`).
pub fn data_dir() -> Option<std::path::PathBuf> {
    nxt_sandbox::test_support::data_dir(env!("CARGO_MANIFEST_DIR"), &["humanevalfix", "mbpp"])
}
