//! `nxt serve` hosting LoRA adapters the way vLLM does: a real server on 127.0.0.1:0 over a
//! tiny engine, real adapters (non-zero B) written by `LoraAdapter::save`, driven over plain
//! HTTP (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`, `/v1/models`, `"model": NAME`)
//! and through the OpenAI client; outputs compared with an engine loaded with the adapter.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nxt_engine::adapter::{LoraAdapter, LoraConfig, TARGET_MODULES};
use nxt_engine::tiny::write_tiny_model;
use nxt_engine::ModelConfig;
use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::openai::{ClientConfig, OpenAiClient};
use nxt_llm::server::{ServedModels, ServerConfig, ServerHandle};
use nxt_llm::{GenerationRequest, Generator, Prompt, SamplingParams};
use serde_json::{json, Value};

/// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // De-chunk.
        let mut body = String::new();
        let mut r = rest;
        loop {
            let (len, tail) = r.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            body.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        body
    } else {
        rest.to_string()
    };
    (status, body)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-server-adapters-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn save_adapter(cfg: &ModelConfig, dir: &Path, seed: u64) {
    let c = LoraConfig::new(
        Some("tiny".into()),
        8,
        16.0,
        false,
        0.0,
        TARGET_MODULES.iter().map(|s| s.to_string()).collect(),
    );
    LoraAdapter::random(cfg, c, seed, 0.4)
        .unwrap()
        .save(dir)
        .unwrap();
}

fn completion(addr: std::net::SocketAddr, model: &str) -> (u16, Value) {
    let (status, body) = http(
        addr,
        "POST",
        "/v1/completions",
        Some(
            &json!({"model": model, "prompt": "def add(a, b):", "max_tokens": 12,
                     "temperature": 0, "logprobs": 1}),
        ),
    );
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn direct(engine: &Engine) -> (String, Vec<f32>) {
    let out = engine
        .generate(&GenerationRequest {
            prompt: Prompt::Text("def add(a, b):".into()),
            n: 1,
            params: SamplingParams {
                max_tokens: 12,
                logprobs: true,
                ..Default::default()
            },
        })
        .unwrap();
    (out[0].text.clone(), out[0].logprobs.clone().unwrap())
}

fn served(v: &Value) -> (String, Vec<f32>) {
    let c = &v["choices"][0];
    let lp = c["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (c["text"].as_str().unwrap().to_string(), lp)
}

fn assert_same(a: &(String, Vec<f32>), b: &(String, Vec<f32>)) {
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.len(), b.1.len());
    for (x, y) in a.1.iter().zip(&b.1) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[test]
fn adapters_load_route_list_and_unload_like_vllm() {
    let d = tmp("routes");
    let model = d.join("model");
    write_tiny_model(&model, &Default::default()).unwrap();
    let cfg = ModelConfig::from_file(&model.join("config.json")).unwrap();
    let (a1, a2) = (d.join("a1"), d.join("a2"));
    save_adapter(&cfg, &a1, 1);
    save_adapter(&cfg, &a2, 2);
    let spec = model.to_str().unwrap();
    let base = Arc::new(Engine::load(spec, EngineOptions::default()).unwrap());
    let with = |a: &Path| {
        Engine::load(
            spec,
            EngineOptions {
                adapter: Some(a.to_path_buf()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let server = ServerHandle::start_models(
        ServedModels::engine(base.clone()).with_adapter("first", &a1),
        &ServerConfig {
            port: 0,
            parallel: 2,
            model_name: Some("base".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let addr = server.addr();

    // /v1/models: the base, and the start-up adapter with parent and root.
    let (status, body) = http(addr, "GET", "/v1/models", None);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{body}");
    assert_eq!(data[0]["id"], "base");
    assert!(data[0]["parent"].is_null());
    assert_eq!(data[1]["id"], "first");
    assert_eq!(data[1]["parent"], "base");
    assert_eq!(data[1]["root"], a1.display().to_string());

    // Routing: the adapter's answers equal an engine loaded with it, and differ from the base.
    let (s, v) = completion(addr, "first");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["model"], "first");
    let first = served(&v);
    assert_same(&first, &direct(&with(&a1)));
    let (s, v) = completion(addr, "base");
    assert_eq!(s, 200, "{v}");
    let base_out = served(&v);
    assert_same(&base_out, &direct(&base));
    assert_ne!(first.1, base_out.1, "the adapter must change the outputs");

    // Run-time loading.
    let load = |name: &str, path: &Path| {
        http(
            addr,
            "POST",
            "/v1/load_lora_adapter",
            Some(&json!({"lora_name": name, "lora_path": path.display().to_string()})),
        )
    };
    let (s, body) = load("second", &a2);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("second"), "{body}");
    let (s, body) = load("second", &a2);
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("already been loaded"), "{body}");
    let (s, body) = load("third", &d.join("missing"));
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("missing"), "{body}");
    let (s, body) = load("base", &a2);
    assert_eq!(s, 400, "{body}");
    let (s, body) = http(
        addr,
        "POST",
        "/v1/load_lora_adapter",
        Some(&json!({"lora_name": "x"})),
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("lora_path"), "{body}");

    let (s, v) = completion(addr, "second");
    assert_eq!(s, 200, "{v}");
    let second = served(&v);
    assert_same(&second, &direct(&with(&a2)));
    let (_, body) = http(addr, "GET", "/v1/models", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["base", "first", "second"]);

    // The OpenAI client (what the self-training loop uses) picks the adapter by name.
    let mut cc = ClientConfig::new([server.base_url()]);
    cc.api_key = None;
    cc.model = Some("second".into());
    let client = OpenAiClient::new(cc).unwrap();
    let out = client
        .generate(&GenerationRequest {
            prompt: Prompt::Text("def add(a, b):".into()),
            n: 1,
            params: SamplingParams {
                max_tokens: 12,
                ..Default::default()
            },
        })
        .unwrap();
    assert_eq!(out[0].text, second.0);

    // Unloading.
    let unload = |name: &str| {
        http(
            addr,
            "POST",
            "/v1/unload_lora_adapter",
            Some(&json!({"lora_name": name})),
        )
    };
    let (s, body) = unload("second");
    assert_eq!(s, 200, "{body}");
    let (s, body) = unload("second");
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("cannot be found"), "{body}");
    let (s, v) = completion(addr, "second");
    assert_eq!(s, 404, "{v}");
    server.shutdown().unwrap();
}

#[test]
fn a_bad_start_up_adapter_fails_the_start_naming_it() {
    let d = tmp("badstart");
    let model = d.join("model");
    write_tiny_model(&model, &Default::default()).unwrap();
    let base = Arc::new(Engine::load(model.to_str().unwrap(), EngineOptions::default()).unwrap());
    let err = ServerHandle::start_models(
        ServedModels::engine(base.clone()).with_adapter("broken", d.join("nowhere")),
        &ServerConfig {
            port: 0,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("broken") && err.contains("nowhere"), "{err}");

    // A server without a loader refuses to load adapters at run time.
    let server = ServerHandle::start(
        base,
        &ServerConfig {
            port: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let (s, body) = http(
        server.addr(),
        "POST",
        "/v1/load_lora_adapter",
        Some(&json!({"lora_name": "a", "lora_path": d.display().to_string()})),
    );
    assert_eq!(s, 400, "{body}");
    server.shutdown().unwrap();
}
