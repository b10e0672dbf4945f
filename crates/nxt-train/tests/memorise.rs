//! A tiny model memorises eight prompt/completion pairs with LoRA and with full fine-tuning;
//! greedy generation through the saved adapter (or model) reproduces every completion.

mod common;

use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::SamplingParams;
use nxt_train::{train, TrainConfig};

fn greedy_all(engine: &Engine) -> Vec<String> {
    common::PAIRS
        .iter()
        .map(|(p, _)| {
            let ids = engine.encode(p, true).unwrap();
            let params = SamplingParams {
                temperature: 0.0,
                max_tokens: 24,
                ..Default::default()
            };
            engine.generate_from_ids(&ids, 1, &params).unwrap()[0]
                .text
                .clone()
        })
        .collect()
}

fn memorise(full: bool) {
    let name = if full {
        "memorise-full"
    } else {
        "memorise-lora"
    };
    let dir = common::tmp(name);
    let model = dir.join("model");
    common::tiny_model_sized(&model, 7, 64);
    let data = dir.join("train.jsonl");
    common::write_data(&data, &common::PAIRS);
    let mut cfg = TrainConfig::new(model.display().to_string(), &data, dir.join("out"));
    cfg.full = full;
    cfg.lora_r = 8;
    cfg.lora_alpha = 16.0;
    cfg.lr = if full { 3e-3 } else { 5e-3 };
    cfg.batch_size = 4;
    cfg.grad_accum = 2;
    cfg.epochs = 150;
    cfg.max_grad_norm = 1.0;
    let mut losses = Vec::new();
    let summary = train(&cfg, &mut |m| losses.push(m.loss)).unwrap();
    assert_eq!(summary.steps, cfg.epochs);
    assert_eq!(summary.examples, 8);
    assert!(
        summary.final_loss < 0.05,
        "final loss {} (first {:?})",
        summary.final_loss,
        &losses[..3]
    );
    assert!(
        losses[0] > 1.0,
        "the base model already knew the data: {}",
        losses[0]
    );
    let engine = if full {
        let d = summary.model_dir.clone().expect("model dir");
        Engine::load(&d.display().to_string(), EngineOptions::default()).unwrap()
    } else {
        let a = summary.adapter_dir.clone().expect("adapter dir");
        assert!(a.join("adapter_config.json").exists());
        assert!(a.join("adapter_model.safetensors").exists());
        let opts = EngineOptions {
            adapter: Some(a),
            ..Default::default()
        };
        Engine::load(&model.display().to_string(), opts).unwrap()
    };
    let got = greedy_all(&engine);
    for ((p, c), g) in common::PAIRS.iter().zip(&got) {
        assert_eq!(g, c, "prompt {p:?}");
    }
    // The base model does not produce them.
    let base = Engine::load(&model.display().to_string(), EngineOptions::default()).unwrap();
    let base_out = greedy_all(&base);
    assert!(base_out
        .iter()
        .zip(common::PAIRS.iter())
        .any(|(g, (_, c))| g != c));
    // metrics.jsonl has one line per step, manifest.json the settings and example ids.
    let metrics = std::fs::read_to_string(dir.join("out/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), cfg.epochs);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["settings"]["full"], serde_json::json!(full));
    assert_eq!(manifest["example_ids"][3], "ex3");
    assert_eq!(manifest["example_fields"]["ex3"]["task"], 3);
    assert_eq!(manifest["data_sha256"].as_str().unwrap().len(), 64);
    // A rerun of the finished run returns its summary at once.
    let again = train(&cfg, &mut |_| panic!("no step expected")).unwrap();
    assert_eq!(again.steps, summary.steps);
    assert!((again.final_loss - summary.final_loss).abs() < 1e-12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lora_memorises_and_the_adapter_reproduces_the_completions() {
    memorise(false);
}

#[test]
fn full_fine_tuning_memorises_and_the_model_reproduces_the_completions() {
    memorise(true);
}
