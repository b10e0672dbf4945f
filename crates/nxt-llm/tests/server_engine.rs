//! The real path: `nxt serve`'s server over the embedded engine (a tiny random model written by
//! `write_tiny_model`), the OpenAI client against it on loopback, results compared with the
//! engine called directly.

use std::sync::Arc;

use nxt_llm::engine::testing::write_tiny_model;
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
