//! Integration tests of `nxt exec`, running the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nxt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nxt"))
        .arg("exec")
        .args(args)
        .output()
        .expect("nxt runs")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-exec-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn single_job_passes() {
    let d = tmpdir("single");
    let prog = write(&d, "p.py", "def add(a, b):\n    return a + b\n");
    let tests = write(
        &d,
        "t.py",
        "assert add(1, 2) == 3\nassert add(\n    2, 2) == 4\n",
    );
    let out = nxt(&["--program", &prog, "--tests", &tests]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verdict: PASSED (2/2"), "{stdout}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn single_job_fails_with_json_and_setup_after() {
    let d = tmpdir("json");
    let prog = write(&d, "p.py", "class A:\n    pass\ndef f():\n    return '1'\n");
    let setup = write(&d, "s.py", "a = A()\n");
    let tests = write(&d, "t.py", "assert isinstance(a, A)\nassert f() == 1\n");
    let out = nxt(&[
        "--program",
        &prog,
        "--tests",
        &tests,
        "--setup",
        &setup,
        "--setup-after",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "failed");
    assert_eq!(v["tests"][0]["outcome"]["status"], "passed");
    assert_eq!(v["tests"][1]["outcome"]["status"], "failed");
    // With plain ==, '1' == 1 is still False in Python: same verdict.
    let out = nxt(&["--program", &prog, "--tests", &tests, "--setup", &setup]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("program failed to load"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn batch_runs_and_resumes_after_a_truncated_line() {
    let d = tmpdir("batch");
    let mut lines = Vec::new();
    for i in 0..6 {
        let expect = if i % 2 == 0 { i * 2 } else { i * 3 };
        lines.push(
            serde_json::json!({
                "id": format!("job-{i}"),
                "program": "def f(x):\n    return x * 2\n",
                "tests": [format!("assert f({i}) == {expect}")],
            })
            .to_string(),
        );
    }
    let jobs = write(&d, "jobs.jsonl", &(lines.join("\n") + "\n"));
    let out_path = d.join("out.jsonl");
    // A previous run finished job-0 and was killed while writing job-1.
    std::fs::write(
        &out_path,
        "{\"id\":\"job-0\",\"verdict\":\"passed\",\"tests\":[],\"load_error\":null,\"duration\":{\"secs\":0,\"nanos\":1}}\n{\"id\":\"job-1\",\"verd",
    )
    .unwrap();
    let out_s = out_path.to_string_lossy().into_owned();
    let out = nxt(&["--batch", &jobs, "--out", &out_s, "--jobs", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("5 jobs run"), "{stderr}");
    assert!(stderr.contains("1 already in"), "{stderr}");
    let text = std::fs::read_to_string(&out_path).unwrap();
    let results: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 6);
    for r in &results {
        let id = r["id"].as_str().unwrap();
        let i: usize = id.trim_start_matches("job-").parse().unwrap();
        let want = if i % 2 == 0 { "passed" } else { "failed" };
        assert_eq!(r["verdict"], want, "{r}");
    }
    // Rerun: nothing left to do.
    let out = nxt(&["--batch", &jobs, "--out", &out_s]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 jobs run"));
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), text);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn batch_reports_bad_lines_with_their_position() {
    let d = tmpdir("bad");
    let jobs = write(
        &d,
        "jobs.jsonl",
        "{\"id\": 1, \"program\": \"x = 1\", \"tests\": [\"assert x == 1\"]}\n{\"id\": 2, \"program\": 5}\n",
    );
    let out_s = d.join("o.jsonl").to_string_lossy().into_owned();
    let out = nxt(&["--batch", &jobs, "--out", &out_s]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("jobs.jsonl:2"), "{stderr}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn isolation_report_lists_layers() {
    let out = nxt(&["--isolation-report"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for layer in [
        "pid_namespace",
        "net_namespace",
        "seccomp",
        "landlock",
        "rlimits",
        "unprivileged_uid",
    ] {
        assert!(stdout.contains(layer), "{layer} missing from:\n{stdout}");
    }
    assert!(out.status.success(), "{stdout}");
}

#[test]
fn usage_and_input_errors_have_their_own_exit_codes_and_no_backtrace() {
    let d = tmpdir("codes");
    let prog = write(&d, "p.py", "def f():\n    return 1\n");
    let tests = write(&d, "t.py", "assert f() == 1\n");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nxt"))
            .arg("exec")
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("nxt runs")
    };
    // Argument parsing and argument checks: 64.
    let out = run(&["--bogus-flag"]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(&["--program", &prog]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(&["--program", &prog, "--tests", &tests, "--timeout", "0"]);
    assert_eq!(out.status.code(), Some(64));
    // A missing file, a binary file, a tests file without statements: 65, one line.
    let missing = d.join("nope.py").to_string_lossy().into_owned();
    let out = run(&["--program", &missing, "--tests", &tests]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("nope.py"), "{stderr}");
    assert!(
        !stderr.contains("Stack backtrace") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let bin = d.join("bin.py");
    std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x81]).unwrap();
    let out = run(&["--program", &prog, "--tests", bin.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
    let empty = write(&d, "empty.py", "# nothing\n\n");
    let out = run(&["--program", &prog, "--tests", &empty]);
    assert_eq!(out.status.code(), Some(65));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn brackets_and_hashes_inside_test_strings_keep_tests_apart() {
    let d = tmpdir("strings");
    let prog = write(&d, "p.py", "def f(s):\n    return len(s)\n");
    // The old splitter counted the `(` inside the f-string and merged the next two tests
    // into one.
    let tests = write(
        &d,
        "t.py",
        "assert f(f\"{'('}\") == 1\nassert f('#)') == 2\nassert f('''\n(''') == 2\nassert f('x') == 1\n",
    );
    let out = nxt(&["--program", &prog, "--tests", &tests, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tests"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(v["verdict"], "passed", "{v}");
    assert_eq!(out.status.code(), Some(0));
    std::fs::remove_dir_all(&d).unwrap();
}
