//! Helpers shared by the trainer's tests: a tiny model and a small data file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_engine::Arch;

/// A fresh temporary directory for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a tiny Qwen2-style model (hidden size 32) into `dir`.
pub fn tiny_model(dir: &Path, seed: u64) {
    tiny_model_sized(dir, seed, 32);
}

/// Writes a tiny Qwen2-style model with hidden size `hidden` into `dir`. (With a frozen tied
/// head, logits are bounded by about `0.2 * hidden`: LoRA memorisation needs 64.)
pub fn tiny_model_sized(dir: &Path, seed: u64, hidden: usize) {
    write_tiny_model(
        dir,
        &TinyModelSpec {
            arch: Arch::Qwen2,
            hidden_size: hidden,
            intermediate_size: 2 * hidden,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            num_merges: 120,
            seed,
            ..Default::default()
        },
    )
    .unwrap();
}

/// Eight prompt/completion pairs.
pub const PAIRS: [(&str, &str); 8] = [
    ("def add(a, b):\n", "    return a + b\n"),
    ("def is_even(n):\n", "    return n % 2 == 0\n"),
    ("Q: 1 + 2 =", " 3"),
    ("Q: 2 + 2 =", " 4"),
    ("for i in range(10):\n", "    print(i)\n"),
    ("The bug is in", " the loop."),
    ("# Fixed code\n", "assert add(1, 2) == 3\n"),
    ("class Solution:\n", "    def solve(self, nums):\n"),
];

/// Writes `pairs` as `train.jsonl` lines (with an `id` and an extra field) into `path`.
pub fn write_data(path: &Path, pairs: &[(&str, &str)]) {
    let mut s = String::new();
    for (i, (p, c)) in pairs.iter().enumerate() {
        s.push_str(
            &serde_json::json!({"id": format!("ex{i}"), "prompt": p, "completion": c, "task": i})
                .to_string(),
        );
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}
