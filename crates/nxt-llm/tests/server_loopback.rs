//! `nxt serve`'s server and the OpenAI client together on loopback.
//!
//! The server runs over `Scripted`, a deterministic TEST DOUBLE of a generator (its output is
//! a function of the prompt, sample index and seed), so that the HTTP pipeline can be checked
//! exactly: n, stop strings, seeds, max tokens, logprobs, usage, errors, the bounded queue.
//! `server_engine.rs` runs the same path over the real embedded engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nxt_llm::openai::{ClientConfig, OpenAiClient};
use nxt_llm::server::{ServerConfig, ServerHandle};
use nxt_llm::{
    ChatMessage, Completion, FinishReason, GenerationRequest, Generator, LlmError, Prompt,
    SamplingParams,
};

/// Test double: sample `i` of prompt `p` with seed `s` is the words
/// `out <p-words...> seed=<s+i> END tail`, cut at stop strings and `max_tokens` words.
struct Scripted {
    calls: AtomicUsize,
    /// When set, calls block until the receiver gets a message (one per call).
    gate: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
    entered: Option<Mutex<std::sync::mpsc::Sender<()>>>,
}

impl Scripted {
    fn new() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            gate: None,
            entered: None,
        }
    }
}

fn prompt_words(p: &Prompt) -> Vec<String> {
    match p {
        Prompt::Text(t) => t.split_whitespace().map(str::to_string).collect(),
        Prompt::Chat(m) => m
            .iter()
            .flat_map(|m| {
                std::iter::once(format!("{}:", m.role))
                    .chain(m.content.split_whitespace().map(str::to_string))
            })
            .collect(),
    }
}

impl Generator for Scripted {
    fn name(&self) -> String {
        "scripted-test-double".into()
    }

    fn generate(&self, r: &GenerationRequest) -> Result<Vec<Completion>, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = &self.entered {
            let _ = e.lock().unwrap().send(());
        }
        if let Some(g) = &self.gate {
            let _ = g.lock().unwrap().recv();
        }
        let words = prompt_words(&r.prompt);
        if words.iter().any(|w| w == "FAIL") {
            return Err(LlmError::Model("scripted failure".into()));
        }
        let seed = r.params.seed.unwrap_or(0);
        Ok((0..r.n)
            .map(|i| {
                let mut text = format!(
                    "out {} seed={} t={} END tail",
                    words.join(" "),
                    seed + i as u64,
                    r.params.temperature
                );
                let mut finish = FinishReason::Stop;
                if let Some(cut) = r
                    .params
                    .stop
                    .iter()
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    text.truncate(cut);
                }
                let mut toks: Vec<&str> = text.split(' ').collect();
                if toks.len() > r.params.max_tokens {
                    toks.truncate(r.params.max_tokens);
                    finish = FinishReason::Length;
                }
                let text = toks.join(" ");
                let n_toks = toks.len();
                Completion {
                    text,
                    prompt_tokens: words.len(),
                    completion_tokens: n_toks,
                    finish_reason: finish,
                    logprobs: r.params.logprobs.then(|| vec![-0.25; n_toks]),
                }
            })
            .collect())
    }
}

fn start(generator: Arc<dyn Generator>, cfg: ServerConfig) -> ServerHandle {
    ServerHandle::start(generator, &ServerConfig { port: 0, ..cfg }).unwrap()
}

fn client_for(urls: &[String]) -> OpenAiClient {
    let mut c = ClientConfig::new(urls.iter().cloned());
    c.api_key = None;
    c.backoff_base = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(50);
    c.max_retries = 3;
    OpenAiClient::new(c).unwrap()
}

fn text_req(p: &str, n: usize, params: SamplingParams) -> GenerationRequest {
    GenerationRequest {
        prompt: Prompt::Text(p.into()),
        n,
        params,
    }
}

#[test]
fn completions_round_trip_with_n_seed_and_usage() {
    let server = start(Arc::new(Scripted::new()), ServerConfig::default());
    let client = client_for(&[server.base_url()]);
    assert_eq!(client.model_name().unwrap(), "scripted-test-double");
    let params = SamplingParams {
        temperature: 0.7,
        seed: Some(10),
        max_tokens: 100,
        ..Default::default()
    };
    let out = client
        .generate(&text_req("fix the bug", 3, params))
        .unwrap();
    assert_eq!(out.len(), 3);
    for (i, c) in out.iter().enumerate() {
        assert_eq!(
            c.text,
            format!("out fix the bug seed={} t=0.7 END tail", 10 + i)
        );
        assert_eq!(c.prompt_tokens, 3);
        assert_eq!(c.finish_reason, FinishReason::Stop);
    }
    let total: usize = out.iter().map(|c| c.completion_tokens).sum();
    assert_eq!(total, 3 * 8);
    let stats = client.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.prompt_tokens, 3);
    assert_eq!(stats.completion_tokens, 24);
    assert_eq!(client.usage().unwrap().completion_tokens, 24);
    server.shutdown().unwrap();
}

#[test]
fn chat_stop_strings_max_tokens_and_logprobs() {
    let server = start(Arc::new(Scripted::new()), ServerConfig::default());
    let client = client_for(&[server.base_url()]);
    let req = GenerationRequest {
        prompt: Prompt::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "hello".into(),
            },
        ]),
        n: 2,
        params: SamplingParams {
            stop: vec![" END".into(), "never".into()],
            seed: Some(1),
            logprobs: true,
            ..Default::default()
        },
    };
    let out = client.generate(&req).unwrap();
    assert_eq!(out[0].text, "out system: be brief user: hello seed=1 t=0");
    assert_eq!(out[1].text, "out system: be brief user: hello seed=2 t=0");
    // Log-probabilities give exact per-sample token counts.
    assert_eq!(out[0].logprobs.as_ref().unwrap().len(), 8);
    assert_eq!(out[0].completion_tokens, 8);

    let short = GenerationRequest {
        params: SamplingParams {
            max_tokens: 2,
            ..Default::default()
        },
        ..req
    };
    let out = client.generate(&short).unwrap();
    assert_eq!(out[0].text, "out system:");
    assert_eq!(out[0].finish_reason, FinishReason::Length);
    assert!(out[0].logprobs.is_none());
}

#[test]
fn generate_many_overlaps_and_reports_every_index() {
    let server = start(
        Arc::new(Scripted::new()),
        ServerConfig {
            parallel: 4,
            ..Default::default()
        },
    );
    let client = client_for(&[server.base_url()]);
    let reqs: Vec<_> = (0..40)
        .map(|i| text_req(&format!("p{i}"), 2, SamplingParams::default()))
        .collect();
    let mut seen = vec![None; reqs.len()];
    client.generate_many(&reqs, &mut |i, r| seen[i] = Some(r.unwrap()));
    for (i, s) in seen.iter().enumerate() {
        let s = s.as_ref().unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[0].text.starts_with(&format!("out p{i} ")));
    }
    assert_eq!(client.stats().requests, 40);
}

fn raw_post(url: &str, body: &str) -> (u16, serde_json::Value, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        (status, v, retry)
    })
}

#[test]
fn bad_requests_get_openai_shaped_400s() {
    let server = start(Arc::new(Scripted::new()), ServerConfig::default());
    let base = server.base_url();
    let cases = [
        ("completions", "{not json", None),
        ("completions", r#"{"max_tokens": 3}"#, Some("prompt")),
        ("completions", r#"{"prompt": "x", "n": 0}"#, Some("n")),
        ("completions", r#"{"prompt": "x", "n": 100000}"#, Some("n")),
        (
            "completions",
            r#"{"prompt": "x", "top_p": 0}"#,
            Some("top_p"),
        ),
        (
            "completions",
            r#"{"prompt": "x", "top_k": -5}"#,
            Some("top_k"),
        ),
        (
            "completions",
            r#"{"prompt": "x", "temperature": -1}"#,
            Some("temperature"),
        ),
        (
            "completions",
            r#"{"prompt": "x", "stream": true}"#,
            Some("stream"),
        ),
        ("completions", r#"{"prompt": ["a", "b"]}"#, Some("prompt")),
        ("chat/completions", r#"{"messages": []}"#, Some("messages")),
        (
            "chat/completions",
            r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
            Some("messages"),
        ),
        ("chat/completions", r#"{"prompt": "x"}"#, Some("prompt")),
    ];
    for (path, body, param) in cases {
        let (status, v, _) = raw_post(&format!("{base}/{path}"), body);
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{body}: {v}");
        }
    }
    let (status, v, _) = raw_post(
        &format!("{base}/completions"),
        r#"{"model": "other", "prompt": "x"}"#,
    );
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    // Parts content and top_k -1 are accepted.
    let (status, v, _) = raw_post(
        &format!("{base}/chat/completions"),
        r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "top_k": -1, "max_tokens": 50}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "out user: hi seed=0 t=1 END tail"
    );
    assert_eq!(v["usage"]["total_tokens"], 2 + 7);

    // The client surfaces a 400 as a request error at once (no retries).
    let client = client_for(std::slice::from_ref(&base));
    let err = client
        .generate(&text_req(
            "x",
            1,
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
        ))
        .unwrap_err();
    assert!(matches!(err, LlmError::Request(_)), "{err}");
    assert!(err.to_string().contains("top_p"), "{err}");
    assert_eq!(client.stats().retries, 0);
    // A generator failure is a 500 with the generator's message (retried, then given up).
    let err = client
        .generate(&text_req("FAIL", 1, SamplingParams::default()))
        .unwrap_err();
    assert!(err.to_string().contains("scripted failure"), "{err}");
    assert!(
        err.to_string().contains("gave up after 4 attempts"),
        "{err}"
    );
}

#[test]
fn health_models_and_unknown_routes() {
    let server = start(
        Arc::new(Scripted::new()),
        ServerConfig {
            model_name: Some("my-model".into()),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://{}", server.addr());
    rt.block_on(async {
        let c = reqwest::Client::new();
        let h = c.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(h.status(), 200);
        let m: serde_json::Value = serde_json::from_slice(
            &c.get(format!("{base}/v1/models"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m["data"][0]["id"], "my-model");
        let nf = c.get(format!("{base}/v2/nothing")).send().await.unwrap();
        assert_eq!(nf.status(), 404);
    });
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let (gate_tx, gate_rx) = std::sync::mpsc::channel();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let g = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        gate: Some(Mutex::new(gate_rx)),
        entered: Some(Mutex::new(entered_tx)),
    });
    let server = start(
        g.clone(),
        ServerConfig {
            parallel: 1,
            queue: 0,
            ..Default::default()
        },
    );
    let url = format!("{}/completions", server.base_url());
    let u2 = url.clone();
    let first = std::thread::spawn(move || raw_post(&u2, r#"{"prompt": "a"}"#));
    entered_rx.recv().unwrap(); // the first request is generating
    let (status, v, retry) = raw_post(&url, r#"{"prompt": "b"}"#);
    assert_eq!(status, 429, "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(v["error"]["type"], "rate_limit_error");
    gate_tx.send(()).unwrap();
    let (status, _, _) = first.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(g.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_server_that_dies_mid_run_fails_the_rest_clearly() {
    let (gate_tx, gate_rx) = std::sync::mpsc::channel();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let g = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        gate: Some(Mutex::new(gate_rx)),
        entered: Some(Mutex::new(entered_tx)),
    });
    let server = start(g.clone(), ServerConfig::default());
    let mut cfg = ClientConfig::new([server.base_url()]);
    cfg.concurrency = 1;
    cfg.max_retries = 2;
    cfg.backoff_base = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(20);
    let client = OpenAiClient::new(cfg).unwrap();
    // Two calls pass the gate; the third hangs inside the generator until the server is gone.
    gate_tx.send(()).unwrap();
    gate_tx.send(()).unwrap();
    let runner = std::thread::spawn(move || {
        let reqs: Vec<_> = (0..5)
            .map(|i| text_req(&format!("p{i}"), 1, SamplingParams::default()))
            .collect();
        let mut results: Vec<Option<Result<Vec<Completion>, LlmError>>> =
            (0..5).map(|_| None).collect();
        client.generate_many(&reqs, &mut |i, r| results[i] = Some(r));
        (results, client.stats())
    });
    for _ in 0..3 {
        entered_rx.recv().unwrap();
    }
    server.kill();
    let (results, stats) = runner.join().unwrap();
    gate_tx.send(()).unwrap(); // let the orphaned generator call finish
    let ok = results.iter().filter(|r| matches!(r, Some(Ok(_)))).count();
    assert_eq!(ok, 2, "{results:?}");
    for r in results.iter().filter(|r| !matches!(r, Some(Ok(_)))) {
        let msg = r.as_ref().unwrap().as_ref().unwrap_err().to_string();
        assert!(msg.contains("gave up after 3 attempts"), "{msg}");
        assert!(msg.contains("/v1/completions"), "{msg}");
    }
    assert_eq!(stats.failures, 3);
}
