//! `nxt generate` and `nxt serve` as a user runs them (the real binary).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nxt_llm::server::{ServerConfig, ServerHandle};
use nxt_llm::{Completion, FinishReason, GenerationRequest, Generator, LlmError, Prompt};
use serde_json::Value;

const NXT: &str = env!("CARGO_BIN_EXE_nxt");

/// TEST DOUBLE generator: sample `i` is `"<prompt> #<i> seed=<seed + i>"`.
struct Echo {
    calls: AtomicUsize,
}

impl Generator for Echo {
    fn name(&self) -> String {
        "echo-test-double".into()
    }
    fn generate(&self, r: &GenerationRequest) -> Result<Vec<Completion>, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let p = match &r.prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Chat(m) => m
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("|"),
        };
        Ok((0..r.n)
            .map(|i| Completion {
                text: format!("{p} #{i} seed={}", r.params.seed.unwrap_or(0) + i as u64),
                prompt_tokens: 4,
                completion_tokens: 3,
                finish_reason: FinishReason::Stop,
                logprobs: None,
            })
            .collect())
    }
}

fn read_lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const PROMPTS: &str = r#"{"id": "a", "prompt": "alpha"}
{"id": 2, "messages": [{"role": "user", "content": "beta"}]}

{"id": "c", "prompt": "gamma"}
{"id": "d", "prompt": "delta"}
{"id": "e", "prompt": "epsilon"}
"#;

#[test]
fn generate_against_a_server_then_resume_after_a_kill() {
    let echo = Arc::new(Echo {
        calls: AtomicUsize::new(0),
    });
    let server = ServerHandle::start(
        echo.clone(),
        &ServerConfig {
            port: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let dir = tempdir();
    let prompts = dir.join("prompts.jsonl");
    let out = dir.join("out/completions.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let run = || {
        Command::new(NXT)
            .args(["generate", "--model", &server.base_url(), "--prompts"])
            .arg(&prompts)
            .arg("--out")
            .arg(&out)
            .args([
                "--n",
                "2",
                "--seed",
                "10",
                "--temperature",
                "0.5",
                "--concurrency",
                "3",
            ])
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 5);
    let by_id = |id: &Value| lines.iter().find(|l| &l["id"] == id).unwrap().clone();
    let b = by_id(&serde_json::json!(2));
    assert_eq!(b["completions"][0]["text"], "beta #0 seed=10");
    assert_eq!(b["completions"][1]["text"], "beta #1 seed=11");
    assert_eq!(b["completions"][1]["finish_reason"], "stop");
    assert_eq!(b["usage"]["completion_tokens"], 6);
    assert_eq!(
        b["model"],
        "echo-test-double @ ".to_string() + &server.base_url()
    );
    assert_eq!(echo.calls.load(Ordering::SeqCst), 5);

    // As if killed -9 while writing line 3: two whole lines and half of the third.
    let text = std::fs::read_to_string(&out).unwrap();
    let keep: Vec<&str> = text.lines().collect();
    let cut = format!(
        "{}\n{}\n{}",
        keep[0],
        keep[1],
        &keep[2][..keep[2].len() / 2]
    );
    std::fs::write(&out, cut).unwrap();
    let o = run();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("unfinished last line"), "{stderr}");
    assert!(stderr.contains("2 prompts already in"), "{stderr}");
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 5);
    let mut ids: Vec<String> = lines.iter().map(|l| l["id"].to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["\"a\"", "\"c\"", "\"d\"", "\"e\"", "2"]);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 8);

    // Nothing left: a third run does no work.
    let o = run();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in"));
    assert_eq!(echo.calls.load(Ordering::SeqCst), 8);
}

#[test]
fn bad_prompt_files_name_the_line() {
    let dir = tempdir();
    let out = dir.join("out.jsonl");
    let cases = [
        (
            "{\"id\": 1, \"prompt\": \"x\"}\n{\"prompt\": \"y\"}\n",
            ":2: missing \"id\"",
        ),
        (
            "{\"id\": 1, \"prompt\": \"x\"}\n{\"id\": 1, \"prompt\": \"y\"}\n",
            ":2: id 1 already used on line 1",
        ),
        ("{\"id\": 1}\n", ":1: missing \"prompt\""),
        (
            "{\"id\": 1, \"prompt\": \"x\", \"messages\": []}\n",
            ":1: give \"prompt\" or \"messages\"",
        ),
        ("not json\n", ":1: not valid JSON"),
    ];
    for (content, want) in cases {
        let prompts = dir.join("p.jsonl");
        std::fs::write(&prompts, content).unwrap();
        let o = Command::new(NXT)
            .args(["generate", "--model", "http://127.0.0.1:9/v1", "--prompts"])
            .arg(&prompts)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            stderr.contains(&format!("p.jsonl{want}")),
            "want {want:?} in {stderr}"
        );
    }
}

#[test]
fn an_unreachable_server_fails_with_a_clear_error() {
    let dir = tempdir();
    let prompts = dir.join("p.jsonl");
    std::fs::write(&prompts, "{\"id\": 1, \"prompt\": \"x\"}\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = Command::new(NXT)
        .args([
            "generate",
            "--model",
            &format!("http://127.0.0.1:{port}/v1"),
            "--prompts",
        ])
        .arg(&prompts)
        .arg("--out")
        .arg(dir.join("o.jsonl"))
        .args(["--max-retries", "1", "--served-model", "m"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("1 of 1 prompts failed"), "{stderr}");
    assert!(stderr.contains("gave up after 2 attempts"), "{stderr}");
    assert!(stderr.contains("rerun the same command"), "{stderr}");
}

/// The real path: a tiny random model on the embedded engine, directly and behind `nxt serve`.
#[test]
fn engine_directly_and_behind_nxt_serve_agree() {
    let dir = tempdir();
    let model = dir.join("tiny");
    nxt_engine::tiny::write_tiny_model(&model, &Default::default()).unwrap();
    let prompts = dir.join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": 1, \"prompt\": \"def f(x):\"}\n{\"id\": 2, \"messages\": [{\"role\": \"user\", \"content\": \"fix it\"}]}\n",
    )
    .unwrap();
    let generate = |spec: &str, out: &Path| {
        let o = Command::new(NXT)
            .args(["generate", "--model", spec, "--prompts"])
            .arg(&prompts)
            .arg("--out")
            .arg(out)
            .args(["--max-tokens", "6", "--temperature", "0"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut lines = read_lines(out);
        lines.sort_by_key(|l| l["id"].as_u64());
        lines
    };
    let direct = generate(model.to_str().unwrap(), &dir.join("direct.jsonl"));

    let mut serve = Command::new(NXT)
        .args(["serve", "--model"])
        .arg(&model)
        .args(["--port", "0", "--served-model-name", "tiny"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let served = generate(&url, &dir.join("served.jsonl"));
    let _ = serve.kill();
    let _ = serve.wait();

    assert_eq!(direct.len(), 2);
    for (d, s) in direct.iter().zip(&served) {
        assert_eq!(d["id"], s["id"]);
        assert_eq!(d["completions"][0]["text"], s["completions"][0]["text"]);
        assert_eq!(
            d["completions"][0]["finish_reason"],
            s["completions"][0]["finish_reason"]
        );
        assert_eq!(d["usage"], s["usage"]);
        assert!(d["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    }
}

fn tempdir() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "nxt-generate-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
