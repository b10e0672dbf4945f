//! PEFT interoperability against fixtures made once by `scripts/peft_fixture.py` with PEFT,
//! transformers and TRL (CI has no torch): a tiny model, an adapter PEFT wrote
//! (`save_pretrained`, A and B random), an adapter TRL trained through `nxt train --backend
//! trl`, and PEFT's logits for each. nxt must accept both adapters (`check_adapter`), give the
//! same logits with them (1e-4), and `merge_model_dir` must give the same logits too.
//! (The other direction, PEFT loading an nxt-written adapter, is checked by the script;
//! figures in docs/INTEROP.md.)

use std::path::{Path, PathBuf};

use nxt_engine::adapter::{check_adapter, merge_model_dir, LoraAdapter};
use nxt_engine::ModelConfig;
use nxt_llm::engine::{Engine, EngineOptions};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft")
}

fn expected() -> Value {
    let p = fixtures().join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn tokens(e: &Value) -> Vec<u32> {
    serde_json::from_value(e["tokens"].clone()).unwrap()
}

fn logits(e: &Value, key: &str) -> Vec<Vec<f32>> {
    serde_json::from_value(e[key].clone()).unwrap_or_else(|err| panic!("{key}: {err}"))
}

fn engine_logits(model: &Path, adapter: Option<&Path>, tokens: &[u32]) -> Vec<Vec<f32>> {
    let opts = EngineOptions {
        adapter: adapter.map(Path::to_path_buf),
        ..Default::default()
    };
    Engine::load(model.to_str().unwrap(), opts)
        .unwrap()
        .forward_logits(tokens)
        .unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0f32, f32::max)
}

#[test]
fn the_base_model_matches_transformers() {
    let e = expected();
    let got = engine_logits(&fixtures().join("model"), None, &tokens(&e));
    let d = max_diff(&got, &logits(&e, "base"));
    assert!(d <= TOL, "base logits differ by {d}");
}

#[test]
fn adapters_written_by_peft_and_trained_by_trl_load_with_equal_logits() {
    let e = expected();
    let model = fixtures().join("model");
    let cfg = ModelConfig::from_file(&model.join("config.json")).unwrap();
    let base = logits(&e, "base");
    for name in ["peft-adapter", "trl-adapter"] {
        let dir = fixtures().join(name);
        let problems = check_adapter(&dir, Some(&cfg), 16);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        let a = LoraAdapter::load(&dir, &candle_core::Device::Cpu).unwrap();
        assert_eq!(a.config.r, 8, "{name}");
        assert_eq!(a.config.lora_alpha, 16.0, "{name}");
        assert_eq!(a.config.target_modules.len(), 7, "{name}");
        assert_eq!(a.modules().unwrap().len(), 14, "{name}");
        let want = logits(&e, name);
        let got = engine_logits(&model, Some(&dir), &tokens(&e));
        let d = max_diff(&got, &want);
        assert!(d <= TOL, "{name}: logits differ from PEFT's by {d}");
        // The adapter matters: PEFT's logits with it are far from the base's.
        assert!(
            max_diff(&want, &base) > 0.1,
            "{name} barely changes the model"
        );
    }
}

#[test]
fn merging_the_peft_adapter_gives_peft_logits() {
    let e = expected();
    let out = std::env::temp_dir().join(format!("nxt-peft-merge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let s = merge_model_dir(
        &fixtures().join("model"),
        &fixtures().join("peft-adapter"),
        &out,
    )
    .unwrap();
    assert_eq!(s.modules, 14);
    let got = engine_logits(&out, None, &tokens(&e));
    let d = max_diff(&got, &logits(&e, "peft-adapter"));
    assert!(d <= TOL, "merged logits differ from PEFT's by {d}");
    std::fs::remove_dir_all(&out).unwrap();
}
