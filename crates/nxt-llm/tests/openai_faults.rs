//! The OpenAI client against small fault-injecting servers written here with axum: errors then
//! success (500, 429 with Retry-After, 503), a server refusing `n > 1` like llama.cpp, one
//! ignoring `n` like Ollama, one rejecting `top_k` like OpenAI, timeouts, several endpoints
//! (one of them dead), model discovery and the API key header.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use nxt_llm::openai::{ClientConfig, OpenAiClient};
use nxt_llm::{ChatMessage, GenerationRequest, Generator, LlmError, Prompt, SamplingParams};
use serde_json::{json, Value};

type Script = dyn Fn(usize, &Value) -> (u16, Vec<(&'static str, String)>, Value) + Send + Sync;

/// What a fault server saw.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<Value>>,
    auth: Mutex<Vec<Option<String>>>,
    count: AtomicUsize,
}

struct FaultServer {
    url: String,
    seen: Arc<Seen>,
    _rt: tokio::runtime::Runtime,
}

struct AppState {
    script: Box<Script>,
    seen: Arc<Seen>,
    delay_first: Option<Duration>,
}

async fn on_post(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap();
    let k = st.seen.count.fetch_add(1, Ordering::SeqCst);
    st.seen.bodies.lock().unwrap().push(v.clone());
    st.seen.auth.lock().unwrap().push(
        headers
            .get("authorization")
            .map(|h| h.to_str().unwrap().to_string()),
    );
    if k == 0 {
        if let Some(d) = st.delay_first {
            tokio::time::sleep(d).await;
        }
    }
    let (status, hdrs, body) = (st.script)(k, &v);
    let mut resp = (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (h, val) in hdrs {
        resp.headers_mut().insert(h, val.parse().unwrap());
    }
    resp
}

async fn on_models() -> Response {
    json!({"object": "list", "data": [{"id": "fault-model", "object": "model"}]})
        .to_string()
        .into_response()
}

fn fault_server(
    delay_first: Option<Duration>,
    script: impl Fn(usize, &Value) -> (u16, Vec<(&'static str, String)>, Value) + Send + Sync + 'static,
) -> FaultServer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let state = Arc::new(AppState {
        script: Box::new(script),
        seen: seen.clone(),
        delay_first,
    });
    let app = Router::new()
        .route("/v1/completions", post(on_post))
        .route("/v1/chat/completions", post(on_post))
        .route("/v1/models", get(on_models))
        .with_state(state);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    FaultServer { url, seen, _rt: rt }
}

/// A completion response with one choice per text.
fn ok_body(texts: &[String]) -> Value {
    let choices: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"index": i, "text": t, "finish_reason": "stop", "logprobs": null}))
        .collect();
    json!({"id": "x", "object": "text_completion", "choices": choices,
           "usage": {"prompt_tokens": 5, "completion_tokens": 2 * texts.len(), "total_tokens": 5 + 2 * texts.len()}})
}

/// Echoes `n` choices naming the seed.
fn echo(v: &Value) -> Value {
    let n = v.get("n").and_then(Value::as_u64).unwrap_or(1) as usize;
    let seed = v.get("seed").and_then(Value::as_u64).unwrap_or(0);
    ok_body(
        &(0..n)
            .map(|i| format!("seed {} #{i}", seed))
            .collect::<Vec<_>>(),
    )
}

fn client(urls: &[&str], max_retries: u32) -> OpenAiClient {
    let mut c = ClientConfig::new(urls.iter().map(|u| u.to_string()));
    c.api_key = None;
    c.max_retries = max_retries;
    c.backoff_base = Duration::from_millis(2);
    c.backoff_max = Duration::from_millis(20);
    OpenAiClient::new(c).unwrap()
}

fn req(n: usize, seed: Option<u64>) -> GenerationRequest {
    GenerationRequest {
        prompt: Prompt::Text("def f():".into()),
        n,
        params: SamplingParams {
            seed,
            ..Default::default()
        },
    }
}

#[test]
fn errors_then_success_are_retried() {
    let s = fault_server(None, |k, v| match k {
        0 => (
            500,
            vec![],
            json!({"error": {"message": "boom", "type": "server_error"}}),
        ),
        1 => (
            429,
            vec![("retry-after", "0".to_string())],
            json!({"error": {"message": "slow down"}}),
        ),
        2 => (503, vec![], json!({"detail": "loading"})),
        _ => (200, vec![], echo(v)),
    });
    let c = client(&[&s.url], 5);
    let out = c.generate(&req(2, Some(7))).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].text, "seed 7 #0");
    let st = c.stats();
    assert_eq!(st.retries, 3);
    assert_eq!(st.requests, 1);
    assert_eq!(st.completion_tokens, 4);
    assert_eq!(s.seen.count.load(Ordering::SeqCst), 4);
    // The model came from GET /v1/models.
    assert_eq!(s.seen.bodies.lock().unwrap()[0]["model"], "fault-model");
}

#[test]
fn retries_are_capped_with_a_clear_error() {
    let s = fault_server(None, |_, _| {
        (502, vec![], json!({"error": {"message": "upstream down"}}))
    });
    let c = client(&[&s.url], 3);
    let err = c.generate(&req(1, None)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LlmError::Server(_)), "{msg}");
    assert!(msg.contains("gave up after 4 attempts"), "{msg}");
    assert!(
        msg.contains("502") && msg.contains("upstream down"),
        "{msg}"
    );
    assert_eq!(s.seen.count.load(Ordering::SeqCst), 4);
    assert_eq!(c.stats().failures, 1);
}

#[test]
fn a_4xx_is_not_retried() {
    let s = fault_server(None, |_, _| {
        (
            401,
            vec![],
            json!({"error": {"message": "Incorrect API key provided"}}),
        )
    });
    let c = client(&[&s.url], 5);
    let err = c.generate(&req(1, None)).unwrap_err();
    // Authentication failures stop a run: no retry, no other prompt can succeed either.
    assert!(matches!(err, LlmError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("Incorrect API key"), "{err}");
    assert!(err.to_string().contains("NXT_API_KEY"), "{err}");
    assert_eq!(s.seen.count.load(Ordering::SeqCst), 1);

    let s = fault_server(None, |_, _| {
        (
            404,
            vec![],
            json!({"error": {"message": "The model `x` does not exist."}}),
        )
    });
    let err = client(&[&s.url], 5).generate(&req(1, None)).unwrap_err();
    assert!(matches!(err, LlmError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");

    // A bad request belongs to that request (a prompt too long for the server's model).
    let s = fault_server(None, |_, _| {
        (
            400,
            vec![],
            json!({"error": {"message": "This model's maximum context length is 2048 tokens"}}),
        )
    });
    let err = client(&[&s.url], 5).generate(&req(1, None)).unwrap_err();
    assert!(matches!(err, LlmError::Request(_)), "{err:?}");
    assert!(err.to_string().contains("maximum context length"), "{err}");
    assert_eq!(s.seen.count.load(Ordering::SeqCst), 1);
}

#[test]
fn preflight_fails_fast_on_a_dead_server_and_a_missing_model() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let mut cfg = ClientConfig::new([dead.clone()]);
    cfg.max_retries = 8;
    cfg.backoff_base = Duration::from_secs(5);
    let c = OpenAiClient::new(cfg).unwrap();
    let err = c.preflight().unwrap_err();
    assert!(matches!(err, LlmError::Server(_)), "{err:?}");
    assert!(err.to_string().contains("cannot reach the server"), "{err}");
    assert!(err.to_string().contains(&dead), "{err}");

    let s = fault_server(None, |_, v| (200, vec![], echo(v)));
    // The model name comes from the server's list ...
    let c = client(&[&s.url], 0);
    c.preflight().unwrap();
    assert!(c.name().starts_with("fault-model @ "), "{}", c.name());
    // ... and a configured one it does not list is refused with the list.
    let mut cfg = ClientConfig::new([s.url.clone()]);
    cfg.model = Some("other-model".into());
    let err = OpenAiClient::new(cfg).unwrap().preflight().unwrap_err();
    assert!(matches!(err, LlmError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("\"fault-model\""), "{err}");
    // One dead endpoint among live ones is left to the load sharing.
    let mut cfg = ClientConfig::new([s.url.clone(), dead]);
    cfg.model = Some("fault-model".into());
    OpenAiClient::new(cfg).unwrap().preflight().unwrap();
    assert_eq!(s.seen.count.load(Ordering::SeqCst), 0);
}

#[test]
fn llama_cpp_style_n_refusal_falls_back_to_parallel_requests() {
    let s = fault_server(None, |_, v| {
        if v.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
            // llama.cpp's exact answer (500, not 400).
            (
                500,
                vec![],
                json!({"error": {"code": 500, "message": "Only one completion choice is allowed", "type": "server_error"}}),
            )
        } else {
            (200, vec![], echo(v))
        }
    });
    let c = client(&[&s.url], 2);
    let out = c.generate(&req(4, Some(100))).unwrap();
    let texts: Vec<_> = out.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        ["seed 100 #0", "seed 101 #0", "seed 102 #0", "seed 103 #0"]
    );
    assert_eq!(s.seen.count.load(Ordering::SeqCst), 5); // 1 refused + 4 singles
                                                        // Remembered: the next request goes straight to single requests.
    let out = c.generate(&req(3, None)).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(s.seen.count.load(Ordering::SeqCst), 8);
    let bodies = s.seen.bodies.lock().unwrap();
    assert!(bodies[5..].iter().all(|b| b.get("n").is_none()));
    assert!(bodies[5..].iter().all(|b| b.get("seed").is_none()));
    assert_eq!(c.stats().retries, 0);
}

#[test]
fn ollama_style_ignored_n_is_topped_up() {
    let s = fault_server(None, |_, v| {
        let seed = v.get("seed").and_then(Value::as_u64).unwrap_or(0);
        (200, vec![], ok_body(&[format!("seed {seed}")]))
    });
    let c = client(&[&s.url], 2);
    let out = c.generate(&req(3, Some(5))).unwrap();
    let texts: Vec<_> = out.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["seed 5", "seed 6", "seed 7"]);
    assert_eq!(c.stats().n_fallbacks, 1);
}

#[test]
fn top_k_rejected_by_the_server_is_dropped_once_and_for_all() {
    let s = fault_server(None, |_, v| {
        if v.get("top_k").is_some() {
            (
                400,
                vec![],
                json!({"error": {"message": "Unrecognized request argument supplied: top_k", "type": "invalid_request_error"}}),
            )
        } else {
            (200, vec![], echo(v))
        }
    });
    let c = client(&[&s.url], 0);
    let mut r = req(1, None);
    r.params.top_k = Some(20);
    c.generate(&r).unwrap();
    c.generate(&r).unwrap();
    let bodies = s.seen.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[0]["top_k"], 20);
    assert!(bodies[1].get("top_k").is_none() && bodies[2].get("top_k").is_none());
}

#[test]
fn top_k_and_sampling_fields_reach_servers_that_accept_them() {
    let s = fault_server(None, |_, v| (200, vec![], echo(v)));
    let mut cfg = ClientConfig::new([s.url.clone()]);
    cfg.api_key = Some("sk-test".into());
    cfg.model = Some("given-model".into());
    let c = OpenAiClient::new(cfg).unwrap();
    let r = GenerationRequest {
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }]),
        n: 1,
        params: SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            top_k: Some(40),
            max_tokens: 64,
            stop: vec!["\n\n".into()],
            seed: Some(3),
            logprobs: true,
        },
    };
    c.generate(&r).unwrap();
    let b = s.seen.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        b,
        json!({"model": "given-model", "messages": [{"role": "user", "content": "hi"}],
               "max_tokens": 64, "temperature": 0.8, "top_p": 0.95,
               "top_k": 40, "stop": ["\n\n"], "seed": 3, "logprobs": true})
    );
    assert_eq!(
        s.seen.auth.lock().unwrap()[0].as_deref(),
        Some("Bearer sk-test")
    );
}

#[test]
fn stop_strings_are_applied_even_if_the_server_ignores_them() {
    let s = fault_server(None, |_, _| {
        (200, vec![], ok_body(&["a = 1\nEND\nmore".to_string()]))
    });
    let c = client(&[&s.url], 0);
    let mut r = req(1, None);
    r.params.stop = vec!["END".into()];
    let out = c.generate(&r).unwrap();
    assert_eq!(out[0].text, "a = 1\n");
}

#[test]
fn a_timeout_is_retried() {
    let s = fault_server(Some(Duration::from_secs(3)), |_, v| (200, vec![], echo(v)));
    let mut cfg = ClientConfig::new([s.url.clone()]);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.backoff_base = Duration::from_millis(2);
    cfg.model = Some("m".into());
    let c = OpenAiClient::new(cfg).unwrap();
    let out = c.generate(&req(1, Some(1))).unwrap();
    assert_eq!(out[0].text, "seed 1 #0");
    // At least the first attempt timed out (a loaded machine may time out more).
    assert!(c.stats().retries >= 1);
    assert!(s.seen.count.load(Ordering::SeqCst) >= 2);
}

#[test]
fn several_endpoints_share_the_load_and_survive_a_dead_one() {
    let a = fault_server(None, |_, v| (200, vec![], echo(v)));
    let b = fault_server(None, |_, v| (200, vec![], echo(v)));
    // A port that nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let mut cfg = ClientConfig::new([a.url.clone(), b.url.clone(), dead]);
    cfg.model = Some("m".into());
    cfg.concurrency = 4;
    cfg.backoff_base = Duration::from_millis(2);
    cfg.backoff_max = Duration::from_millis(20);
    let c = OpenAiClient::new(cfg).unwrap();
    let reqs: Vec<_> = (0..60).map(|i| req(1, Some(i))).collect();
    let mut ok = 0;
    c.generate_many(&reqs, &mut |i, r| {
        assert_eq!(r.unwrap()[0].text, format!("seed {i} #0"));
        ok += 1;
    });
    assert_eq!(ok, 60);
    let (na, nb) = (
        a.seen.count.load(Ordering::SeqCst),
        b.seen.count.load(Ordering::SeqCst),
    );
    assert_eq!(na + nb, 60);
    assert!(na > 0 && nb > 0, "{na} / {nb}");
    assert!(c.stats().retries >= 1);
}

#[test]
fn no_endpoint_or_a_bad_one_is_a_clear_error() {
    let e = OpenAiClient::new(ClientConfig::new(Vec::<String>::new())).unwrap_err();
    assert!(e.to_string().contains("no endpoint"));
    let e = OpenAiClient::new(ClientConfig::new(["localhost:8000"])).unwrap_err();
    assert!(e.to_string().contains("localhost:8000"), "{e}");
}
