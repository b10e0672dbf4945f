//! Writes the random model of the training benchmark (`scripts/train_bench.py`): a Qwen2
//! directory shaped like Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads of 64, 2 KV heads,
//! intermediate 4864, vocabulary 151,936 rows, tied embeddings; F32, about 2 GB) with a small
//! BPE tokenizer, or with `--shape tiny` a small one for trying the script out.
//!
//! ```sh
//! cargo run --release -p nxt-train --example bench_model -- /tmp/bench-0.5b
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, shape) = match args.as_slice() {
        [dir] => (dir, "0.5b"),
        [dir, flag, shape] if flag == "--shape" => (dir, shape.as_str()),
        _ => {
            eprintln!("usage: bench_model DIR [--shape 0.5b|tiny]");
            return ExitCode::from(64);
        }
    };
    let spec = match shape {
        "0.5b" => TinyModelSpec {
            hidden_size: 896,
            intermediate_size: 4864,
            num_layers: 24,
            num_heads: 14,
            num_kv_heads: 2,
            num_merges: 200,
            seed: 1,
            init_std: 0.02,
            tie_word_embeddings: true,
            vocab_size: Some(151_936),
            max_position_embeddings: 32_768,
            ..Default::default()
        },
        "tiny" => TinyModelSpec {
            hidden_size: 64,
            intermediate_size: 128,
            num_merges: 200,
            seed: 1,
            ..Default::default()
        },
        other => {
            eprintln!("unknown --shape {other:?} (expected 0.5b or tiny)");
            return ExitCode::from(64);
        }
    };
    let dir = PathBuf::from(dir);
    match write_tiny_model(&dir, &spec) {
        Ok(()) => {
            eprintln!("{shape} model written to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            ExitCode::from(2)
        }
    }
}
