//! Our Qwen2/Llama modules against logits computed by HF transformers (fixtures made once by
//! tests/fixtures/make_fixtures.py; CI never runs it).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use nxt_engine::{ModelConfig, Transformer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check(name: &str) {
    let dir = fixture(name);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let tokens: Vec<u32> = serde_json::from_value(expected["tokens"].clone()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let mut model = Transformer::load_dir(&dir, &cfg, DType::F32, &Device::Cpu).unwrap();
    let input = Tensor::new(tokens.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    for fast in [false, true] {
        if fast {
            model.prepare_for_inference().unwrap();
        }
        let got: Vec<Vec<f32>> = model
            .forward(&input, None)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(got.len(), want.len());
        let mut max_diff = 0f32;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len());
            for (a, b) in g.iter().zip(w) {
                max_diff = max_diff.max((a - b).abs());
            }
        }
        assert!(
            max_diff < 1e-4,
            "{name} (fast kernels {fast}): max |diff| {max_diff}"
        );
        // The logits are not trivially flat.
        let spread = want[0].iter().cloned().fold(f32::MIN, f32::max)
            - want[0].iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 0.5, "{spread}");
    }
}

#[test]
fn qwen2_logits_match_transformers() {
    check("qwen2-tiny");
}

#[test]
fn llama_logits_match_transformers() {
    check("llama-tiny");
}
