//! Memory profile of one LoRA (or full) training step: resident set (VmRSS) and its peak
//! (VmHWM) after loading, after the forward pass and loss, after the backward pass and after
//! the optimiser update, so the peak of `nxt train` can be attributed to a phase.
//!
//! ```sh
//! cargo run --release -p nxt-train --example train_memory -- MODEL_DIR [TOKENS] [--full]
//! ```

use std::path::PathBuf;

use candle_core::{DType, Device};
use nxt_engine::config::ModelConfig;
use nxt_train::data::Example;
use nxt_train::{embedded, loss, TrainConfig};

/// `VmRSS` and `VmHWM` of this process in GB.
fn rss() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1e6)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report(phase: &str) {
    let (now, peak) = rss();
    println!("{phase:<28} rss {now:6.2} GB   peak {peak:6.2} GB");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().ok_or("usage: MODEL_DIR [TOKENS] [--full]")?);
    let tokens: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let full = args.iter().any(|a| a == "--full");
    report("start");
    let mcfg = ModelConfig::from_file(&dir.join("config.json"))?;
    let mut cfg = TrainConfig::new(dir.display().to_string(), "unused.jsonl", "unused");
    cfg.full = full;
    let mut tr = embedded::build_trainable(&cfg, &dir, &mcfg, DType::F32, &Device::Cpu)?;
    report("model built");
    let ids: Vec<u32> = (0..tokens as u32).map(|i| (i * 7919) % 400).collect();
    let ex = Example {
        id: "probe".into(),
        line: 1,
        ids,
        prompt_len: 16,
        truncated: false,
        boundary_mismatch: false,
    };
    for step in 1..=2 {
        let (nll, n) = loss::batch_nll(&tr.model, &[&ex], 0)?;
        let scaled = (nll / n as f64)?;
        report(&format!("step {step}: forward + loss"));
        let grads = scaled.backward()?;
        report(&format!("step {step}: backward"));
        drop(scaled);
        report(&format!("step {step}: graph dropped"));
        let mut sq = 0f64;
        for p in &mut tr.params {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                sq += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                p.var.set(&(p.var.as_tensor() - (g * 1e-4)?)?)?;
            }
        }
        drop(grads);
        report(&format!("step {step}: update (|g| {:.3e})", sq.sqrt()));
    }
    Ok(())
}
