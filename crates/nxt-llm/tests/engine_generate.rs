//! The embedded engine end to end on tiny random models written by
//! `nxt_engine::tiny::write_tiny_model`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_engine::{Arch, ModelConfig, Transformer};
use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::{ChatMessage, FinishReason, GenerationRequest, Generator, Prompt, SamplingParams};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-engine-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn model_dir(arch: Arch) -> &'static Path {
    static Q: OnceLock<PathBuf> = OnceLock::new();
    static L: OnceLock<PathBuf> = OnceLock::new();
    let (cell, name) = match arch {
        Arch::Qwen2 => (&Q, "qwen"),
        Arch::Llama => (&L, "llama"),
    };
    cell.get_or_init(|| {
        let d = tmp(name);
        let spec = TinyModelSpec {
            arch,
            tie_word_embeddings: arch == Arch::Qwen2,
            seed: 11,
            ..Default::default()
        };
        write_tiny_model(&d, &spec).unwrap();
        d
    })
}

fn engine(arch: Arch) -> &'static Engine {
    static Q: OnceLock<Engine> = OnceLock::new();
    static L: OnceLock<Engine> = OnceLock::new();
    let cell = match arch {
        Arch::Qwen2 => &Q,
        Arch::Llama => &L,
    };
    cell.get_or_init(|| {
        Engine::load(model_dir(arch).to_str().unwrap(), EngineOptions::default()).unwrap()
    })
}

fn req(prompt: &str, n: usize, params: SamplingParams) -> GenerationRequest {
    GenerationRequest {
        prompt: Prompt::Text(prompt.into()),
        n,
        params,
    }
}

fn sampled(max_tokens: usize, seed: Option<u64>) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        top_k: Some(50),
        max_tokens,
        seed,
        ..Default::default()
    }
}

#[test]
fn tokenizer_round_trip() {
    let e = engine(Arch::Qwen2);
    for text in [
        "def add(a, b):\n    return a + b\n",
        "  tabs\tand unicode: café – ✓ 𝛑\n",
        "<|im_start|>user\nhi<|im_end|>",
    ] {
        let ids = e.encode(text, false).unwrap();
        assert!(!ids.is_empty());
        let back = e.tokenizer().decode(&ids, false).unwrap();
        assert_eq!(back, text);
    }
    // Merges compress common code, special tokens are single ids.
    let ids = e.encode("    return total\n", false).unwrap();
    assert!(ids.len() < "    return total\n".len(), "{ids:?}");
    let ids = e.encode("<|im_end|>", false).unwrap();
    assert_eq!(ids.len(), 1);
    assert!(e.eos_token_ids().contains(&ids[0]));
}

#[test]
fn chat_templates_render() {
    let msgs = vec![
        ChatMessage {
            role: "system".into(),
            content: "Be brief.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Fix it.".into(),
        },
    ];
    let q = engine(Arch::Qwen2)
        .render_prompt(&Prompt::Chat(msgs.clone()))
        .unwrap();
    assert_eq!(
        q,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nFix it.<|im_end|>\n<|im_start|>assistant\n"
    );
    let only_user = &msgs[1..];
    let q = engine(Arch::Qwen2)
        .render_prompt(&Prompt::Chat(only_user.to_vec()))
        .unwrap();
    assert!(q.starts_with("<|im_start|>system\nYou are Qwen"), "{q}");
    let l = engine(Arch::Llama)
        .render_prompt(&Prompt::Chat(msgs.clone()))
        .unwrap();
    assert!(
        l.starts_with(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nToday Date: "
        ),
        "{l}"
    );
    assert!(l.ends_with("Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nFix it.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), "{l}");
    // The chat prompt is tokenized without extra special tokens: the template's own are there.
    let ids = engine(Arch::Qwen2)
        .encode_prompt(&Prompt::Chat(only_user.to_vec()))
        .unwrap();
    let im_start = engine(Arch::Qwen2)
        .tokenizer()
        .token_to_id("<|im_start|>")
        .unwrap();
    assert_eq!(ids[0], im_start);
}

#[test]
fn kv_cache_greedy_matches_full_forward() {
    for arch in [Arch::Qwen2, Arch::Llama] {
        let e = engine(arch);
        let params = SamplingParams {
            max_tokens: 12,
            logprobs: true,
            ..Default::default()
        };
        let out = e.generate(&req("def add(a, b):", 1, params)).unwrap();
        let prompt = e.encode("def add(a, b):", true).unwrap();
        // Recompute greedily without a cache, one full forward per token.
        let mut seq = prompt.clone();
        let mut lps = Vec::new();
        for _ in 0..out[0].completion_tokens {
            let logits = e.forward_logits(&seq).unwrap();
            let last = logits.last().unwrap();
            let tok = nxt_engine::sampling::argmax(last);
            lps.push(nxt_engine::sampling::log_prob(last, tok));
            seq.push(tok as u32);
            if e.eos_token_ids().contains(&(tok as u32)) {
                break;
            }
        }
        let text = e.decode(&seq[prompt.len()..]).unwrap();
        assert_eq!(out[0].text, text);
        let got = out[0].logprobs.as_ref().unwrap();
        assert_eq!(got.len(), lps.len());
        for (a, b) in got.iter().zip(&lps) {
            assert!((a - b).abs() < 1e-4 && *a <= 0.0, "{a} vs {b}");
        }
    }
}

#[test]
fn greedy_n3_equals_n1() {
    let e = engine(Arch::Qwen2);
    let params = SamplingParams {
        max_tokens: 16,
        ..Default::default()
    };
    let one = e
        .generate(&req("for i in range(", 1, params.clone()))
        .unwrap();
    let three = e.generate(&req("for i in range(", 3, params)).unwrap();
    assert_eq!(three.len(), 3);
    for c in &three {
        assert_eq!(c.text, one[0].text);
        assert_eq!(c.completion_tokens, one[0].completion_tokens);
        assert_eq!(c.prompt_tokens, one[0].prompt_tokens);
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let e = engine(Arch::Qwen2);
    let a = e
        .generate(&req("class Solution:", 4, sampled(20, Some(7))))
        .unwrap();
    let b = e
        .generate(&req("class Solution:", 4, sampled(20, Some(7))))
        .unwrap();
    let c = e
        .generate(&req("class Solution:", 4, sampled(20, Some(8))))
        .unwrap();
    let texts = |v: &[nxt_llm::Completion]| v.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&a), texts(&b));
    assert_ne!(texts(&a), texts(&c));
    // The n samples differ from each other.
    let mut t = texts(&a);
    t.dedup();
    assert!(t.len() > 1, "{t:?}");
    // Sample i of a batch equals sample i decoded alone with the same seed: batching and
    // the shared prefix do not change the distribution.
    let solo = e
        .generate(&req("class Solution:", 1, sampled(20, Some(7))))
        .unwrap();
    assert_eq!(solo[0].text, a[0].text);
}

#[test]
fn stop_strings_excluded_even_across_tokens() {
    let e = engine(Arch::Qwen2);
    let params = SamplingParams {
        max_tokens: 24,
        ..Default::default()
    };
    let full = e
        .generate(&req("total = 0", 1, params.clone()))
        .unwrap()
        .remove(0);
    let toks = e.encode(&full.text, false).unwrap();
    assert!(toks.len() >= 6, "{full:?}");
    // A stop string spanning the boundary of two generated tokens.
    let first3 = e.decode(&toks[..3]).unwrap();
    let first4 = e.decode(&toks[..4]).unwrap();
    let start = first3.char_indices().last().unwrap().0;
    let stop = format!("{}{}", &first3[start..], &first4[first3.len()..]);
    let expected_cut = full.text.find(&stop).unwrap();
    let out = e
        .generate(&req(
            "total = 0",
            1,
            SamplingParams {
                stop: vec!["\u{0}never".into(), stop.clone()],
                ..params
            },
        ))
        .unwrap()
        .remove(0);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, full.text[..expected_cut]);
    assert!(!out.text.contains(&stop));
}

#[test]
fn max_tokens_and_finish_reasons() {
    let e = engine(Arch::Llama);
    let out = e
        .generate(&req(
            "x",
            2,
            SamplingParams {
                max_tokens: 5,
                ..sampled(5, Some(1))
            },
        ))
        .unwrap();
    for c in &out {
        assert!(c.completion_tokens <= 5);
        if c.finish_reason == FinishReason::Length {
            assert_eq!(c.completion_tokens, 5);
        }
        assert!(c.logprobs.is_none());
    }
    let zero = e
        .generate(&req(
            "x",
            1,
            SamplingParams {
                max_tokens: 0,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(zero[0].completion_tokens, 0);
    assert_eq!(zero[0].finish_reason, FinishReason::Length);
    let bad = e
        .generate(&req("x", 0, SamplingParams::default()))
        .unwrap_err();
    assert!(bad.to_string().contains("n must be"), "{bad}");
    let bad = e
        .generate(&req(
            "x",
            1,
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
        ))
        .unwrap_err();
    assert!(bad.to_string().contains("top_p"), "{bad}");
}

#[test]
fn chat_generation_works() {
    let e = engine(Arch::Llama);
    let msgs = vec![ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    }];
    let out = e
        .generate(&GenerationRequest {
            prompt: Prompt::Chat(msgs),
            n: 2,
            params: sampled(8, Some(3)),
        })
        .unwrap();
    assert_eq!(out.len(), 2);
    assert!(out[0].prompt_tokens > 10);
}

#[test]
fn bf16_sharded_and_new_layout_load_the_same_model() {
    let base = TinyModelSpec {
        seed: 5,
        ..Default::default()
    };
    let d1 = tmp("f32");
    write_tiny_model(&d1, &base).unwrap();
    let d2 = tmp("bf16-sharded");
    write_tiny_model(
        &d2,
        &TinyModelSpec {
            dtype: DType::BF16,
            shards: 3,
            new_config_layout: true,
            ..base.clone()
        },
    )
    .unwrap();
    assert!(d2.join("model.safetensors.index.json").exists());
    let e1 = Engine::load(d1.to_str().unwrap(), EngineOptions::default()).unwrap();
    let e2 = Engine::load(d2.to_str().unwrap(), EngineOptions::default()).unwrap();
    assert_eq!(e1.model().cfg, e2.model().cfg);
    let toks = [1u32, 2, 3, 40, 50];
    let a = e1.forward_logits(&toks).unwrap();
    let b = e2.forward_logits(&toks).unwrap();
    let diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    // bf16 rounding of the weights only.
    assert!(diff > 0.0 && diff < 0.5, "{diff}");
    std::fs::remove_dir_all(&d1).unwrap();
    std::fs::remove_dir_all(&d2).unwrap();
}

#[test]
fn missing_weights_and_bad_dirs_are_clear_errors() {
    let d = tmp("broken");
    write_tiny_model(&d, &TinyModelSpec::default()).unwrap();
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = Engine::load(d.to_str().unwrap(), EngineOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("safetensors"), "{e}");
    std::fs::write(d.join("config.json"), "{not json").unwrap();
    let e = Engine::load(d.to_str().unwrap(), EngineOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );
    let e = Engine::load("/definitely/not/here", EngineOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither a model directory nor a hub id"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn hub_id_offline_names_the_options() {
    // An empty cache and no network access (HF_ENDPOINT points at a closed local port so
    // the test never depends on the real network).
    let cache = tmp("hub-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hub_child_process",
            "--nocapture",
            "--include-ignored",
        ])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("NXT_HUB_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("HUB-ERROR:"), "{text}");
    for needle in [
        "Org/Tiny-Model",
        "local model directory",
        "HF_HUB_CACHE",
        "OpenAI-compatible server",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    std::fs::remove_dir_all(&cache).unwrap();
}

/// Runs inside the child process started by `hub_id_offline_names_the_options` (environment
/// variables are process-wide, so they are set on a child, not in this test process).
#[test]
#[ignore = "helper for hub_id_offline_names_the_options"]
fn hub_child_process() {
    if std::env::var("NXT_HUB_CHILD").is_err() {
        return;
    }
    let e = Engine::load("Org/Tiny-Model", EngineOptions::default()).unwrap_err();
    println!("HUB-ERROR: {e}");
}

#[test]
fn trainable_model_matches_and_has_parameters() {
    let dir = model_dir(Arch::Qwen2);
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let (model, varmap) = Transformer::load_trainable(dir, &cfg, DType::F32, &Device::Cpu).unwrap();
    let toks = [3u32, 9, 27, 81];
    let input = Tensor::new(&toks, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let a: Vec<Vec<f32>> = model
        .forward(&input, None)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap();
    let b = engine(Arch::Qwen2).forward_logits(&toks).unwrap();
    let diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{diff}");
    assert_eq!(model.named_parameters().len(), varmap.all_vars().len());
    let n: usize = model
        .named_parameters()
        .iter()
        .map(|(_, t)| t.elem_count())
        .sum();
    assert_eq!(n, cfg.num_parameters());
}
