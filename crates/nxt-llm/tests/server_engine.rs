//! The real path: `nxt serve`'s server over the embedded engine (a tiny random model written by
//! `write_tiny_model`), the OpenAI client against it on loopback, results compared with the
//! engine called directly.

use std::sync::Arc;

use nxt_engine::tiny::write_tiny_model;
use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::openai::{ClientConfig, OpenAiClient};
use nxt_llm::server::{ServerConfig, ServerHandle};
use nxt_llm::{ChatMessage, GenerationRequest, Generator, Prompt, SamplingParams};

fn setup(tag: &str) -> (Arc<Engine>, ServerHandle, OpenAiClient, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("nxt-server-engine-{tag}-{}", std::process::id()));
    write_tiny_model(&dir, &Default::default()).unwrap();
    let engine = Arc::new(Engine::load(dir.to_str().unwrap(), EngineOptions::default()).unwrap());
    let server = ServerHandle::start(
        engine.clone(),
        &ServerConfig {
            port: 0,
            parallel: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut cfg = ClientConfig::new([server.base_url()]);
    cfg.api_key = None;
    let client = OpenAiClient::new(cfg).unwrap();
    (engine, server, client, dir)
}

#[test]
fn served_engine_matches_the_engine_called_directly() {
    let (engine, server, client, dir) = setup("match");
    assert_eq!(client.model_name().unwrap(), engine.name());

    // Greedy text completion with log-probabilities.
    let greedy = GenerationRequest {
        prompt: Prompt::Text("def add(a, b):".into()),
        n: 1,
        params: SamplingParams {
            max_tokens: 12,
            logprobs: true,
            ..Default::default()
        },
    };
    let direct = engine.generate(&greedy).unwrap();
    let served = client.generate(&greedy).unwrap();
    assert_eq!(served[0].text, direct[0].text);
    assert_eq!(served[0].finish_reason, direct[0].finish_reason);
    assert_eq!(served[0].prompt_tokens, direct[0].prompt_tokens);
    assert_eq!(served[0].completion_tokens, direct[0].completion_tokens);
    let (a, b) = (
        served[0].logprobs.as_ref().unwrap(),
        direct[0].logprobs.as_ref().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }

    // n samples with a seed: the server passes n and the seed through unchanged.
    let sampled = GenerationRequest {
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "fix the bug".into(),
        }]),
        n: 3,
        params: SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            top_k: Some(50),
            max_tokens: 10,
            seed: Some(42),
            logprobs: true,
            ..Default::default()
        },
    };
    let direct = engine.generate(&sampled).unwrap();
    let served = client.generate(&sampled).unwrap();
    assert_eq!(served.len(), 3);
    for (s, d) in served.iter().zip(&direct) {
        assert_eq!(s.text, d.text);
        assert_eq!(s.completion_tokens, d.completion_tokens);
    }
    let stats = client.stats();
    assert_eq!(stats.requests, 2);
    let want: u64 = direct
        .iter()
        .map(|c| c.completion_tokens as u64)
        .sum::<u64>()
        + served_greedy_tokens(&engine, &greedy);
    assert_eq!(stats.completion_tokens, want);

    // A stop string taken from the greedy output cuts it there.
    let full = engine.generate(&greedy).unwrap()[0].text.clone();
    let chars: Vec<char> = full.chars().collect();
    if chars.len() >= 4 {
        let stop: String = chars[2..4].iter().collect();
        let cut = full.find(&stop).unwrap();
        let mut with_stop = greedy.clone();
        with_stop.params.stop = vec![stop];
        let served = client.generate(&with_stop).unwrap();
        assert_eq!(served[0].text, full[..cut]);
    }
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

fn served_greedy_tokens(engine: &Engine, r: &GenerationRequest) -> u64 {
    engine.generate(r).unwrap()[0].completion_tokens as u64
}

#[test]
fn generate_many_over_the_served_engine() {
    let (_engine, server, client, dir) = setup("many");
    let reqs: Vec<_> = (0..6)
        .map(|i| GenerationRequest {
            prompt: Prompt::Text(format!("x = {i}\n")),
            n: 2,
            params: SamplingParams {
                temperature: 0.7,
                max_tokens: 5,
                seed: Some(i),
                ..Default::default()
            },
        })
        .collect();
    let mut got = 0;
    client.generate_many(&reqs, &mut |_, r| {
        let r = r.unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|c| c.completion_tokens <= 5));
        got += 1;
    });
    assert_eq!(got, 6);
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// POSTs `body` to `path` of the server (HTTP/1.1, connection closed after) and returns the
/// JSON response.
fn post(server: &ServerHandle, path: &str, body: &serde_json::Value) -> serde_json::Value {
    use std::io::{Read, Write};
    let url = server.base_url();
    let hostport = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut s = std::net::TcpStream::connect(&hostport).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, payload) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{payload}");
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}: {payload}"))
}

/// Log-probability entries carry the sampled token's text and bytes, as vLLM and OpenAI
/// give them: chat `content[].token`/`bytes` and completions `tokens`, whose concatenation is
/// the generated text; a newline token's text is "\n".
#[test]
fn logprob_entries_carry_each_tokens_text_and_bytes() {
    let (engine, server, _client, dir) = setup("pieces");
    let newline = engine
        .tokenizer()
        .token_to_id("Ċ")
        .expect("byte-level vocabulary has the newline byte");
    let piece = nxt_engine::pieces::token_piece(engine.tokenizer(), newline);
    assert_eq!(
        (piece.text.as_str(), piece.bytes.as_slice()),
        ("\n", &b"\n"[..])
    );

    let chat = post(
        &server,
        "/v1/chat/completions",
        &serde_json::json!({
            "model": engine.name(),
            "messages": [{"role": "user", "content": "def f(x):\n    return x\n"}],
            "max_tokens": 24, "temperature": 0.0, "logprobs": true,
        }),
    );
    let choice = &chat["choices"][0];
    let content = choice["message"]["content"].as_str().unwrap();
    let entries = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        entries.len() as u64,
        chat["usage"]["completion_tokens"].as_u64().unwrap()
    );
    // The last token of a stopped completion is the end-of-sequence token, not in the text.
    let text_entries = if choice["finish_reason"] == "stop" {
        &entries[..entries.len() - 1]
    } else {
        &entries[..]
    };
    let mut bytes = Vec::new();
    for e in text_entries {
        let b: Vec<u8> = serde_json::from_value(e["bytes"].clone()).unwrap();
        assert!(!b.is_empty(), "{e}");
        let token = e["token"].as_str().unwrap();
        if std::str::from_utf8(&b).is_ok() {
            assert_eq!(token.as_bytes(), b.as_slice(), "{e}");
        }
        bytes.extend(b);
    }
    assert_eq!(String::from_utf8_lossy(&bytes), content);

    let text = post(
        &server,
        "/v1/completions",
        &serde_json::json!({
            "model": engine.name(), "prompt": "x = 1\ny = 2\n",
            "max_tokens": 16, "temperature": 0.0, "logprobs": 1,
        }),
    );
    let choice = &text["choices"][0];
    let tokens: Vec<String> = serde_json::from_value(choice["logprobs"]["tokens"].clone()).unwrap();
    let values = choice["logprobs"]["token_logprobs"].as_array().unwrap();
    assert_eq!(tokens.len(), values.len());
    let n = if choice["finish_reason"] == "stop" {
        tokens.len() - 1
    } else {
        tokens.len()
    };
    assert_eq!(tokens[..n].concat(), choice["text"].as_str().unwrap());
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
