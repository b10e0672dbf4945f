//! The README's main job, offline: `nxt eval` on a HeFix+ slice with a tiny model written by
//! the test, through the real embedded engine, tracer, sandbox and grading. The fix rate of a
//! random model is near zero: the test checks that every stage ran and every record was stored.
//! Then the same run is killed with SIGKILL mid-way and resumed: nothing lost, nothing doubled.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nxt_core::store::{PromptKind, RunStore};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};

use common::{data_dir, sandbox_ok};

fn eval_cmd(model: &Path, data: &Path, run_dir: &Path, n: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nxt"));
    c.args([
        "eval",
        "--benchmark",
        "hefix+",
        "--limit",
        "3",
        "--max-tokens",
        "24",
        "--allow-weak-isolation",
    ])
    .arg("--n")
    .arg(n.to_string())
    .arg("--model")
    .arg(model)
    .arg("--data-dir")
    .arg(data)
    .arg("--run-dir")
    .arg(run_dir)
    .args(extra);
    c
}

fn setup(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("nxt-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model = dir.join("model");
    write_tiny_model(&model, &TinyModelSpec::default()).unwrap();
    // The tiny tokenizer needs ~3x more tokens than Qwen's for the 3-shot prompt: widen the
    // context (RoPE has no fixed limit).
    let cfg_path = model.join("config.json");
    let mut mc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    mc["max_position_embeddings"] = serde_json::json!(32768);
    std::fs::write(&cfg_path, mc.to_string()).unwrap();
    (dir, model)
}

#[test]
fn nxt_eval_on_a_hefix_plus_slice_with_a_tiny_model() {
    let Some(data) = data_dir() else { return };
    if !sandbox_ok() {
        return;
    }
    let (dir, model) = setup("main-job");
    let run_dir = dir.join("run");
    let out = eval_cmd(&model, &data, &run_dir, 2, &["--greedy", "--k", "1,2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nxt eval failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("pass@1") && stdout.contains("greedy pass@1"),
        "{stdout}"
    );
    assert!(stdout.contains("unparseable"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(json["tasks"], 3);
    assert_eq!(json["traced_tasks"], 3);
    assert!(std::fs::read_to_string(run_dir.join("report.md"))
        .unwrap()
        .contains("| pass@1 |"));
    let store = RunStore::open(&run_dir.join("run.sqlite")).unwrap();
    let c = store.counts().unwrap();
    assert_eq!((c.tasks, c.prepared), (3, 3));
    assert_eq!(c.samples, 3 * 2 + 3);
    assert_eq!((c.parses, c.verdicts), (c.samples, c.samples));
    for t in store.tasks().unwrap() {
        let prep = store.prep(&t.id).unwrap().unwrap();
        assert!(
            prep.trace.unwrap().contains("__exception__") || prep.note.is_some(),
            "{}",
            t.id
        );
    }
    let u = store.usage(PromptKind::Sample).unwrap();
    assert_eq!(u.failed, 0, "no request was rejected: {u:?}");
    assert!(u.prompt_tokens > 6 * 2000, "3-shot prompts are long: {u:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nxt_eval_killed_with_sigkill_resumes_without_loss_or_duplicates() {
    let Some(data) = data_dir() else { return };
    if !sandbox_ok() {
        return;
    }
    let (dir, model) = setup("resume");
    let run_dir = dir.join("run");
    let n = 4;
    // Zero-shot keeps this one fast; the 3-shot path is the test above.
    let mut child = eval_cmd(&model, &data, &run_dir, n, &["--batch", "1", "--zero-shot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = run_dir.join("run.sqlite");
    // Kill as soon as the first task's samples are stored.
    let mut killed_mid_run = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if let Ok(c) = RunStore::open(&db).and_then(|s| s.counts()) {
            if c.samples >= n as i64 {
                child.kill().unwrap(); // SIGKILL
                killed_mid_run = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
    let before = RunStore::open(&db).unwrap().counts().unwrap();
    eprintln!("killed mid-run: {killed_mid_run}; stored at kill: {before:?}");
    let out = eval_cmd(&model, &data, &run_dir, n, &["--batch", "1", "--zero-shot"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resumed nxt eval failed: {stderr}");
    if killed_mid_run && before.samples > 0 {
        assert!(stderr.contains("resuming run"), "{stderr}");
    }
    let store = RunStore::open(&db).unwrap();
    let c = store.counts().unwrap();
    assert_eq!((c.tasks, c.prepared, c.prompts), (3, 3, 3));
    assert_eq!(c.samples, 3 * n as i64, "nothing lost, nothing duplicated");
    assert_eq!((c.parses, c.verdicts), (c.samples, c.samples));
    assert!(c.samples >= before.samples);
    std::fs::remove_dir_all(&dir).unwrap();
}
