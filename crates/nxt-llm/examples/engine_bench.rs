//! Decode-speed benchmark of the embedded engine (driven by benches/engine/run.sh).
//!
//! `engine_bench DIR [--decode N] [--prompt-tokens P] [--write-only]`
//!
//! Writes a random-weight Qwen2.5-0.5B-shaped model to DIR (once), measures this machine's
//! memory bandwidth, then times batch 1 and 8 samples of one P-token prompt. Decode speed is
//! `samples * N / (t(N+1 tokens) - t(1 token))`, so the shared prefill is excluded. Prints one
//! JSON object; also writes DIR/prompt.json (the prompt ids) for the transformers side.

use std::path::PathBuf;
use std::time::Instant;

use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_engine::Arch;
use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::SamplingParams;

/// Read bandwidth in bytes per second: `threads` threads each summing their part of a
/// 1 GiB buffer (what streaming the weights once per decode step needs), best of 3.
fn read_bandwidth(threads: usize) -> f64 {
    let total = 1usize << 28; // f32 values = 1 GiB
    let per = total / threads;
    let bufs: Vec<Vec<f32>> = (0..threads).map(|i| vec![i as f32 + 1.0; per]).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let sums: Vec<f32> = std::thread::scope(|s| {
            let hs: Vec<_> = bufs
                .iter()
                .map(|b| {
                    s.spawn(move || {
                        let mut acc = [0f32; 16];
                        for c in b.chunks_exact(16) {
                            for (a, x) in acc.iter_mut().zip(c) {
                                *a += x;
                            }
                        }
                        acc.iter().sum::<f32>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0.0)).collect()
        });
        std::hint::black_box(sums);
        best = best.max((total * 4) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .ok_or("usage: engine_bench DIR [--decode N] [--prompt-tokens P] [--write-only]")?,
    );
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let decode = flag("--decode", 32);
    let prompt_tokens = flag("--prompt-tokens", 256);
    if !dir.join("config.json").exists() {
        let spec = TinyModelSpec {
            arch: Arch::Qwen2,
            hidden_size: 896,
            intermediate_size: 4864,
            num_layers: 24,
            num_heads: 14,
            num_kv_heads: 2,
            vocab_size: Some(151_936),
            init_std: 0.02,
            tie_word_embeddings: true,
            seed: 0,
            ..Default::default()
        };
        let t = Instant::now();
        write_tiny_model(&dir, &spec)?;
        eprintln!(
            "wrote {} in {:.1}s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    if args.iter().any(|a| a == "--write-only") {
        return Ok(());
    }
    let bw1 = read_bandwidth(1);
    let bw2 = read_bandwidth(2);
    let t = Instant::now();
    let engine = Engine::load(
        dir.to_str().ok_or("non-UTF-8 path")?,
        EngineOptions::default(),
    )?;
    let load_s = t.elapsed().as_secs_f64();
    // A fixed prompt: code text, tokenized and cut (or repeated) to exactly prompt_tokens ids.
    let text = "def solve(nums):\n    total = 0\n    for x in nums:\n        total += x\n    return total\n";
    let base = engine.encode(text, false)?;
    let prompt: Vec<u32> = base.iter().copied().cycle().take(prompt_tokens).collect();
    std::fs::write(dir.join("prompt.json"), serde_json::to_string(&prompt)?)?;
    let weight_bytes: usize = engine
        .model()
        .named_parameters()
        .iter()
        .map(|(_, t)| t.elem_count() * 4)
        .sum();
    let params = |max_tokens: usize| SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        max_tokens,
        seed: Some(1),
        ..Default::default()
    };
    // Warm-up (page in the weights).
    engine.generate_from_ids(&prompt, 1, &params(2))?;
    let mut results = Vec::new();
    for n in [1usize, 8] {
        let t = Instant::now();
        engine.generate_from_ids(&prompt, n, &params(1))?;
        let t1 = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = engine.generate_from_ids(&prompt, n, &params(decode + 1))?;
        let tn = t.elapsed().as_secs_f64();
        let generated: usize = out
            .iter()
            .map(|c| c.completion_tokens.saturating_sub(1))
            .sum();
        let tps = generated as f64 / (tn - t1);
        let bound = n as f64 * bw2 / weight_bytes as f64;
        eprintln!(
            "nxt engine  batch {n}: prefill+1 {t1:.2}s, +{decode} tokens {:.2}s -> {tps:.2} tok/s (bandwidth bound {bound:.1} tok/s, {:.0}%)",
            tn - t1,
            100.0 * tps / bound
        );
        results.push(
            serde_json::json!({"batch": n, "prefill_s": t1, "decode_tokens": generated,
            "decode_s": tn - t1, "tokens_per_s": tps, "bandwidth_bound_tokens_per_s": bound}),
        );
    }
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{}",
        serde_json::json!({"engine": "nxt", "threads": threads, "load_s": load_s,
            "weight_bytes_f32": weight_bytes, "read_bandwidth_1thread_bytes_per_s": bw1,
            "read_bandwidth_2threads_bytes_per_s": bw2, "results": results})
    );
    Ok(())
}
