//! The nxt side of `scripts/peft_fixture.py` (PEFT/transformers interoperability):
//!
//! - `peft_interop model DIR`: writes the tiny Qwen2 model directory the script and the
//!   fixture test use (config.json, tokenizer files, model.safetensors).
//! - `peft_interop adapter MODEL OUT SEED`: writes a random (non-zero) rank-8 PEFT adapter for
//!   MODEL with nxt's writer.
//! - `peft_interop logits MODEL OUT.json [ADAPTER]`: the engine's logits for the fixed token
//!   sequence [`TOKENS`], with ADAPTER merged at load, as `{"tokens", "logits"}`.
//! - `peft_interop check MODEL ADAPTER`: `check_adapter` against MODEL's config; prints each
//!   problem and exits 1 if there is any.
//!
//! ```sh
//! cargo run --release -p nxt-train --example peft_interop -- model /tmp/peft/model
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nxt_engine::adapter::{check_adapter, LoraAdapter, LoraConfig};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_engine::ModelConfig;
use nxt_llm::engine::{Engine, EngineOptions};

/// The token sequence every logits comparison uses.
pub const TOKENS: [u32; 16] = [
    3, 17, 42, 5, 88, 100, 63, 12, 95, 7, 21, 50, 200, 150, 31, 9,
];

/// The tiny model of the fixtures.
fn spec() -> TinyModelSpec {
    TinyModelSpec {
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        num_merges: 120,
        seed: 7,
        ..Default::default()
    }
}

fn usage() -> String {
    "usage: peft_interop model DIR | adapter MODEL OUT SEED | logits MODEL OUT.json [ADAPTER] | check MODEL ADAPTER".into()
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let arg = |i: usize| args.get(i).cloned().ok_or_else(usage);
    match arg(0)?.as_str() {
        "model" => {
            let dir = PathBuf::from(arg(1)?);
            write_tiny_model(&dir, &spec()).map_err(|e| e.to_string())?;
            eprintln!("tiny model written to {}", dir.display());
        }
        "adapter" => {
            let model = PathBuf::from(arg(1)?);
            let out = PathBuf::from(arg(2)?);
            let seed: u64 = arg(3)?
                .parse()
                .map_err(|e| format!("SEED {:?}: {e}", arg(3).unwrap_or_default()))?;
            let cfg =
                ModelConfig::from_file(&model.join("config.json")).map_err(|e| e.to_string())?;
            let lcfg = LoraConfig::new(
                Some(model.display().to_string()),
                8,
                16.0,
                false,
                0.0,
                Vec::new(),
            );
            LoraAdapter::random(&cfg, lcfg, seed, 0.2)
                .and_then(|a| a.save(&out))
                .map_err(|e| e.to_string())?;
            eprintln!("adapter written to {}", out.display());
        }
        "logits" => {
            let model = arg(1)?;
            let out = PathBuf::from(arg(2)?);
            let opts = EngineOptions {
                adapter: args.get(3).map(PathBuf::from),
                ..Default::default()
            };
            let engine = Engine::load(&model, opts).map_err(|e| e.to_string())?;
            let logits = engine.forward_logits(&TOKENS).map_err(|e| e.to_string())?;
            let v = serde_json::json!({"tokens": TOKENS, "logits": logits});
            std::fs::write(&out, v.to_string()).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        "check" => {
            let model = PathBuf::from(arg(1)?);
            let adapter = PathBuf::from(arg(2)?);
            let cfg =
                ModelConfig::from_file(&model.join("config.json")).map_err(|e| e.to_string())?;
            let problems = check_adapter(Path::new(&adapter), Some(&cfg), 16);
            for p in &problems {
                println!("problem: {p}");
            }
            if !problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            println!("ok: {}", adapter.display());
        }
        _ => return Err(usage()),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
