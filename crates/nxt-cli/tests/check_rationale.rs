//! `nxt check-rationale`: against a recorded trace, and tracing a program in the sandbox.

use std::path::Path;
use std::process::Command;

use nxt_sandbox::test_support::{skip, SANDBOX};

const NXT: &str = env!("CARGO_BIN_EXE_nxt");

fn fixture_trace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../nxt-faithful/tests/fixtures/traces/hefix-3.json")
}

#[test]
fn json_report_against_a_recorded_trace() {
    let dir = std::env::temp_dir().join(format!("nxt-check-rationale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = dir.join("r.txt");
    std::fs::write(
        &r,
        "The trace shows balance=-1 at step (7), and the function returns True.",
    )
    .unwrap();
    let out = Command::new(NXT)
        .args(["check-rationale", "--json", "--trace"])
        .arg(fixture_trace())
        .arg("--rationale")
        .arg(&r)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "unfaithful");
    let claims = v["claims"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> = claims
        .iter()
        .map(|c| (c["text"].as_str().unwrap(), c["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("balance=-1", "supported"),
            ("function returns True", "contradicted")
        ]
    );
    // Bad input: a missing rationale file and a trace that is not one exit 65, naming the file.
    let out = Command::new(NXT)
        .args(["check-rationale", "--trace"])
        .arg(fixture_trace())
        .args(["--rationale", "/nonexistent/r.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/r.txt"));
    let out = Command::new(NXT)
        .args(["check-rationale", "--trace"])
        .arg(&r)
        .arg("--rationale")
        .arg(&r)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a recorded trace"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn traces_a_program_and_prints_the_claims() {
    if nxt_sandbox::Pool::new(nxt_sandbox::PoolConfig::default()).is_err() {
        skip(SANDBOX, "the sandbox cannot start here");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nxt-check-rationale-p-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("bug.py");
    std::fs::write(
        &prog,
        "def f(xs):\n    total = 0\n    for x in xs:\n        total += x * x\n    return total\n",
    )
    .unwrap();
    let r = dir.join("r.txt");
    std::fs::write(&r, "With xs=[1, 2] the loop runs twice, total becomes 5 on line 4 and f returns 5.0. The fixed version returns 3.").unwrap();
    let out = Command::new(NXT)
        .args(["check-rationale", "--program"])
        .arg(&prog)
        .args(["--test", "assert f([1, 2]) == 3", "--rationale"])
        .arg(&r)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("verdict: faithful (5 claims: 4 supported, 0 contradicted, 1 unverifiable)"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
