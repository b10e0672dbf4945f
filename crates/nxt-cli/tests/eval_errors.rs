//! `nxt eval` says its failures out loud, through the real binary: arguments are checked
//! before any work (usage errors exit 64), an unreachable server fails at once without a run
//! directory, prompts too long for the embedded engine are all named before sampling (exit
//! 65), and a server's 400s are generation errors: counted, printed in the summary, exit 1,
//! asked again on a rerun.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nxt_core::store::RunStore;
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};

use common::{data_dir, nxt, sandbox_ok, text, tmpdir};

/// A tiny model whose context (256 tokens) is shorter than any repair prompt.
fn short_context_model(dir: &Path) {
    write_tiny_model(
        dir,
        &TinyModelSpec {
            max_position_embeddings: 256,
            ..TinyModelSpec::default()
        },
    )
    .unwrap();
}

#[test]
fn arguments_are_checked_before_any_work() {
    let d = tmpdir("args");
    let missing = d.join("no-data").to_string_lossy().into_owned();
    let base = [
        "eval",
        "--model",
        "/nonexistent/model",
        "--data-dir",
        &missing,
    ];
    let cases: &[(&[&str], &str)] = &[
        (&["--benchmark", "humaneval"], "not a repair benchmark"),
        (&["--n", "2", "--k", "5"], "--k 5"),
        (&["--k", "0"], "--k 0"),
        (&["--n", "0"], "--n must be at least 1"),
        (
            &["--benchmark", "mbpp-r", "--split", "bogus"],
            "--split bogus",
        ),
        (&["--temperature=-1"], "--temperature"),
        (&["--proxy-served-model", "m"], "--proxy-model"),
    ];
    for (extra, needle) in cases {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        let out = nxt(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        // Nothing was started: no model loaded, no data looked at.
        assert!(!stderr.contains("loading"), "{extra:?}: {stderr}");
        assert!(!stderr.contains("backtrace"), "{extra:?}: {stderr}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_unreachable_server_fails_at_once_and_leaves_no_run() {
    let d = tmpdir("dead");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let run_dir = d.join("run");
    let out = nxt(&[
        "eval",
        "--model",
        &dead,
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--data-dir",
        d.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
    assert!(stderr.contains(&dead), "{stderr}");
    assert!(!run_dir.exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn prompts_too_long_for_the_model_are_named_before_sampling() {
    let Some(data) = data_dir() else { return };
    if !sandbox_ok() {
        return;
    }
    let d = tmpdir("toolong");
    let model = d.join("model");
    short_context_model(&model);
    let run_dir = d.join("run");
    let out = nxt(&[
        "eval",
        "--benchmark",
        "hefix",
        "--limit",
        "2",
        "--n",
        "2",
        "--allow-weak-isolation",
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    for needle in [
        "2 of 2 repair prompts",
        "hefix/0",
        "hefix/1",
        "256 tokens",
        "--zero-shot",
        "--trace-budget",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    let store = RunStore::open(&run_dir.join("run.sqlite")).unwrap();
    assert_eq!(store.counts().unwrap().samples, 0);
    std::fs::remove_dir_all(&d).unwrap();
}

/// `nxt serve` on a loopback port; killed on drop.
struct Served(Child, String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(model: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nxt"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--model"])
        .arg(model)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    Served(child, url)
}

#[test]
fn a_servers_400_is_a_generation_error_exit_1_and_retried_on_rerun() {
    let Some(data) = data_dir() else { return };
    if !sandbox_ok() {
        return;
    }
    let d = tmpdir("http400");
    let model = d.join("model");
    short_context_model(&model);
    let server = serve(&model);
    let run_dir = d.join("run");
    let run = || {
        nxt(&[
            "eval",
            "--benchmark",
            "hefix",
            "--limit",
            "2",
            "--n",
            "2",
            "--allow-weak-isolation",
            "--model",
            &server.1,
            "--data-dir",
            data.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
        ])
    };
    let out = run();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("GENERATION ERRORS: 4 samples of 2 tasks"),
        "{stdout}"
    );
    assert!(stdout.contains("context is 256"), "{stdout}");
    // Not "unparseable 4/4": no sample exists, and no pass@k is printed over nothing.
    assert!(stdout.contains("unparseable 0/0"), "{stdout}");
    assert!(!stdout.contains("pass@1 "), "{stdout}");
    assert!(
        stderr.contains("incomplete") && stderr.contains("rerun"),
        "{stderr}"
    );
    let store = RunStore::open(&run_dir.join("run.sqlite")).unwrap();
    assert_eq!(store.counts().unwrap().samples, 0);
    let first = store.errors().unwrap().len();
    assert_eq!(first, 2, "{:?}", store.errors().unwrap());
    drop(store);
    // A rerun asks the server again for every missing sample.
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let store = RunStore::open(&run_dir.join("run.sqlite")).unwrap();
    assert_eq!(store.errors().unwrap().len(), 2 * first);
    drop(server);
    std::fs::remove_dir_all(&d).unwrap();
}
