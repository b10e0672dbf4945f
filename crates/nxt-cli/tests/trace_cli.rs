//! `nxt trace` as a user meets it, through the built binary: syntax errors shown on their line
//! with a non-zero exit, task ids in the forms other commands use, missing and malformed ids
//! told apart, and the same `--data-dir` default as every other command.

mod common;

use std::path::Path;
use std::process::Output;

use common::{data_dir, nxt, sandbox_ok, text, tmpdir};

fn trace(program: &Path, test: &str, format: &str) -> Output {
    nxt(&[
        "trace",
        "--program",
        &program.to_string_lossy(),
        "--test",
        test,
        "--format",
        format,
        "--workers",
        "1",
        "--allow-weak-isolation",
    ])
}

#[test]
fn a_syntax_error_is_shown_on_its_line_and_exits_1() {
    if !sandbox_ok() {
        return;
    }
    let d = tmpdir("syntax");
    let good = d.join("good.py");
    std::fs::write(&good, "def f(x):\n    return x\n").unwrap();

    // In the test: the document's line 4 (program, blank line, test).
    let out = trace(&good, "assert f(1) == (1", "inline");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let marked = stdout
        .lines()
        .find(|l| l.contains("__exception__ = SyntaxError("))
        .unwrap_or_else(|| panic!("no SyntaxError marker in\n{stdout}"));
    assert!(marked.starts_with("assert f(1) == (1  # "), "{stdout}");
    assert!(
        stderr.contains("the test has a SyntaxError on line 4"),
        "{stderr}"
    );
    let out = trace(&good, "assert f(1) == (1", "json");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"]["status"], "error", "{v}");
    assert_eq!(v["verdict"]["exc_type"], "SyntaxError", "{v}");
    assert_eq!(v["verdict"]["line"], 4, "{v}");
    assert_eq!(v["events"][0]["line"], 4, "{v}");

    // An error at the end of a multi-line test stays on the test's last line.
    let out = trace(&good, "assert f(\n    1", "json");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = v["verdict"]["line"].as_u64().unwrap();
    assert!((4..=5).contains(&line), "{v}");

    // In the program: its own line, exit 1 too.
    let bad = d.join("bad.py");
    std::fs::write(&bad, "def f(x)\n    return x\n").unwrap();
    let out = trace(&bad, "assert f(1) == 1", "inline");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("def f(x)  # (0) __exception__ = SyntaxError("),
        "{stdout}"
    );
    assert!(
        stderr.contains("the program has a SyntaxError on line 1"),
        "{stderr}"
    );

    // A failing test is a trace, not an error: exit 0.
    let out = trace(&good, "assert f(1) == 2", "none");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn task_ids_take_the_repair_form_and_missing_ids_are_not_malformed() {
    let Some(data) = data_dir() else {
        return;
    };
    if !sandbox_ok() {
        return;
    }
    let data = data.to_string_lossy().into_owned();
    let run = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "trace",
            "--task",
            id,
            "--data-dir",
            &data,
            "--workers",
            "1",
            "--allow-weak-isolation",
        ];
        args.extend_from_slice(extra);
        nxt(&args)
    };
    let long = run("humanevalfix/0", &[]);
    assert_eq!(long.status.code(), Some(0), "{}", text(&long.stderr));
    for id in ["hefix/0", "hefix+/0"] {
        let short = run(id, &[]);
        assert_eq!(
            short.status.code(),
            Some(0),
            "{id}: {}",
            text(&short.stderr)
        );
        assert_eq!(text(&short.stdout), text(&long.stdout), "{id}");
    }

    let missing = run("mbpp/99999", &[]);
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("no task `mbpp/99999`") && stderr.contains("ids 1 to 974"),
        "{stderr}"
    );
    assert!(!stderr.contains("expected mbpp/<id>"), "{stderr}");

    let malformed = run("mbpp/eleven", &[]);
    let stderr = text(&malformed.stderr);
    assert_eq!(malformed.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("unknown task `mbpp/eleven`"), "{stderr}");

    let out_of_range = run("humanevalfix/0", &["--test-index", "3"]);
    let stderr = text(&out_of_range.stderr);
    assert_eq!(out_of_range.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("has 1 test;"), "{stderr}");
}

#[test]
fn data_dir_default_is_the_same_as_every_other_command() {
    let help = |args: &[&str]| {
        let out = nxt(args);
        assert!(out.status.success());
        let t = text(&out.stdout);
        // The flag's line and its description, up to the next flag.
        let mut lines = t
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("--data-dir"));
        let first = lines.next().expect("a --data-dir flag").to_string();
        let rest = lines.take_while(|l| !l.trim_start().starts_with('-'));
        std::iter::once(first.as_str())
            .chain(rest)
            .flat_map(str::split_whitespace)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let data = help(&["data", "list", "--help"]);
    assert!(data.contains("XDG_DATA_HOME"), "{data}");
    for cmd in [
        &["trace"][..],
        &["eval"],
        &["repair"],
        &["grade"],
        &["data", "check"],
        &["data", "sample-candidates"],
    ] {
        assert_eq!(help(&[cmd, &["--help"]].concat()), data, "{cmd:?}");
    }
}

#[test]
fn usage_and_input_errors_have_their_own_exit_codes() {
    let d = tmpdir("codes");
    let prog = d.join("p.py");
    std::fs::write(&prog, "x = 1\n").unwrap();
    let prog = prog.to_string_lossy().into_owned();
    let missing = d.join("missing.py").to_string_lossy().into_owned();
    let jobs = d.join("jobs.jsonl");
    std::fs::write(&jobs, "{\"id\": 1, \"program\n").unwrap();
    let jobs = jobs.to_string_lossy().into_owned();
    let out = d.join("out.jsonl").to_string_lossy().into_owned();
    for (args, code) in [
        (vec!["trace"], 64),
        (vec!["trace", "--program", &prog], 64),
        (
            vec![
                "trace",
                "--program",
                &prog,
                "--test",
                "x",
                "--time-budget",
                "0",
            ],
            64,
        ),
        (vec!["trace", "--stats", "--corpora", "nope"], 64),
        (vec!["trace", "--program", &missing, "--test", "x"], 65),
        (vec!["trace", "--batch", &jobs, "--out", &out], 65),
    ] {
        let o = nxt(&args);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}
