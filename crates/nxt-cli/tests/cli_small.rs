//! The smaller points of the command line as a new user meets it, through the built binary:
//! arguments refused before any work, flags offered only where they do something, empty
//! inputs said as such, tests numbered one way, syntax errors with their line, and the
//! server refusing a chat message without content.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};

use common::{nxt, sandbox_ok, text, tmpdir, write};

#[test]
fn repair_n_0_is_refused_before_any_work() {
    let d = tmpdir("repair");
    let prog = write(&d, "p.py", "def f():\n    return 1\n");
    let tests = write(&d, "t.py", "assert f() == 2\n");
    // A model that does not exist: refusing --n 0 must come first (it used to draw 1 sample).
    let missing = d.join("no-model").to_string_lossy().into_owned();
    for (flag, value) in [("--n", "0"), ("--temperature", "-1")] {
        let arg = format!("{flag}={value}");
        let out = nxt(&[
            "repair",
            "--program",
            &prog,
            "--tests",
            &tests,
            "--model",
            &missing,
            "--allow-weak-isolation",
            &arg,
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(!stderr.contains("loading model"), "{stderr}");
    }
    let out = nxt(&["repair", "--task", "hefix0", "--model", &missing]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn commands_offer_only_flags_that_do_something() {
    // `data list` and `data fetch` run nothing in the sandbox.
    for cmd in [&["data", "list"][..], &["data", "fetch", "mbpp"][..]] {
        let help = nxt(&[cmd, &["--help"]].concat());
        assert!(
            !text(&help.stdout).contains("--allow-weak-isolation"),
            "{cmd:?}"
        );
        let out = nxt(&[cmd, &["--allow-weak-isolation"]].concat());
        assert_eq!(
            out.status.code(),
            Some(64),
            "{cmd:?}: {}",
            text(&out.stderr)
        );
    }
    // `data check` does.
    let help = text(&nxt(&["data", "check", "--help"]).stdout);
    assert!(help.contains("--allow-weak-isolation"), "{help}");

    // `sample-candidates` writes MBPP's own prompt: no trace or few-shot options.
    let help = text(&nxt(&["data", "sample-candidates", "--help"]).stdout);
    for flag in [
        "--no-trace",
        "--trace-format",
        "--trace-budget",
        "--few-shot",
        "--zero-shot",
        "--allow-weak-isolation",
    ] {
        assert!(!help.contains(flag), "{flag} in\n{help}");
    }
    assert!(help.contains("--top-p"), "{help}");
    let out = nxt(&[
        "data",
        "sample-candidates",
        "--model",
        "/nonexistent",
        "--trace-budget",
        "100",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--trace-budget: not used"), "{stderr}");
}

#[test]
fn an_empty_prompts_file_is_an_input_error() {
    let d = tmpdir("generate");
    let prompts = write(&d, "prompts.jsonl", "\n\n");
    let out_path = d.join("out.jsonl");
    let out = nxt(&[
        "generate",
        "--model",
        "/nonexistent",
        "--prompts",
        &prompts,
        "--out",
        &out_path.to_string_lossy(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("no prompts"), "{stderr}");
    assert!(!stderr.contains("already in"), "{stderr}");
    assert!(!out_path.exists());
    // Bad arguments are usage errors.
    let out = nxt(&[
        "generate",
        "--model",
        "/nonexistent",
        "--prompts",
        &prompts,
        "--n",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn exec_numbers_tests_one_way_and_gives_syntax_errors_their_line() {
    if !sandbox_ok() {
        return;
    }
    let d = tmpdir("exec");
    let prog = write(&d, "p.py", "def add(a, b):\n    return a + b\n");
    // The second test leaves a bracket open: it is a test with a syntax error (it used to
    // vanish, and the file passed with one test).
    let tests = write(
        &d,
        "t.py",
        "assert add(1, 2) == 3\nassert add(1, 2) == (\nassert add\n",
    );
    let run = |prog: &str, extra: &[&str]| {
        nxt(&[
            &[
                "exec",
                "--program",
                prog,
                "--tests",
                &tests,
                "--allow-weak-isolation",
            ],
            extra,
        ]
        .concat())
    };
    let out = run(&prog, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("test 1: passed"), "{stdout}");
    let second = stdout
        .lines()
        .find(|l| l.starts_with("test 2:"))
        .unwrap_or_else(|| panic!("no test 2 in\n{stdout}"));
    assert!(second.contains("SyntaxError"), "{second}");
    assert!(second.contains("<test 2>"), "{second}");
    assert!(!stdout.contains("<test 1>"), "{stdout}");
    assert!(stdout.contains("(1/2 tests passed"), "{stdout}");

    // A program that does not compile: the record carries its line.
    let bad = write(
        &d,
        "bad.py",
        "import math\ndef add(a, b)\n    return a + b\n",
    );
    let out = run(&bad, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["load_error"]["exc_type"], "SyntaxError", "{v}");
    assert_eq!(v["load_error"]["line"], 2, "{v}");
    std::fs::remove_dir_all(&d).unwrap();
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POST `body` to `url` + `path` over plain HTTP/1.1; the status code and body.
fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn serve_refuses_a_chat_message_without_content() {
    let d = tmpdir("serve");
    let model = d.join("model");
    write_tiny_model(&model, &TinyModelSpec::default()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nxt"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--model"])
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _served = Served(child);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    for message in [
        r#"{"role": "user"}"#,
        r#"{"role": "user", "content": null}"#,
    ] {
        let (status, body) = post(
            &addr,
            "/v1/chat/completions",
            &format!(r#"{{"messages": [{message}], "max_tokens": 2}}"#),
        );
        assert_eq!(status, 400, "{message}: {body}");
        assert!(
            body.contains("messages[0]: `content` is required"),
            "{body}"
        );
    }
    let (status, body) = post(
        &addr,
        "/v1/chat/completions",
        r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}"#,
    );
    assert_eq!(status, 200, "{body}");
    drop(_served);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn missing_inputs_are_input_errors_in_every_command() {
    let d = tmpdir("inputs");
    let nowhere = d.join("nowhere").to_string_lossy().into_owned();
    for args in [
        vec!["data", "check", "mbpp", "--data-dir", &nowhere],
        vec![
            "grade",
            "--dataset",
            "mbpp",
            "--samples",
            &nowhere,
            "--data-dir",
            &nowhere,
        ],
        vec!["report", &nowhere],
        vec!["selftrain", "--config", &nowhere],
    ] {
        let out = nxt(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}
