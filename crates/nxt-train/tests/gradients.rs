//! LoRA and full fine-tuning gradients agree with finite differences (f64, tiny model);
//! step 0 with LoRA equals the base model's logits; one micro-batch of 4 equals 4
//! accumulated micro-batches of 1.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use nxt_engine::model::LoraBranch;
use nxt_engine::{ModelConfig, Transformer};
use nxt_train::data::{load_dataset, Example};
use nxt_train::embedded::build_trainable;
use nxt_train::loss::batch_nll;
use nxt_train::TrainConfig;
use tokenizers::Tokenizer;

fn examples(dir: &std::path::Path) -> Vec<Example> {
    let data = dir.join("train.jsonl");
    common::write_data(&data, &common::PAIRS[..4]);
    let tok = Tokenizer::from_file(dir.join("model/tokenizer.json")).unwrap();
    load_dataset(&data, &tok, "<|im_end|>", 64)
        .unwrap()
        .examples
}

/// Mean NLL over the completion tokens of `ex` (one padded batch).
fn loss(model: &Transformer, ex: &[Example]) -> Tensor {
    let refs: Vec<&Example> = ex.iter().collect();
    let (nll, n) = batch_nll(model, &refs, 0).unwrap();
    (nll / n as f64).unwrap()
}

fn check_fd(model: &Transformer, ex: &[Example], vars: &[(String, Var)], min_checked: usize) {
    let l = loss(model, ex);
    let grads = l.backward().unwrap();
    let eps = 1e-6;
    let mut checked = 0;
    for (name, var) in vars {
        let g: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let orig: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let idx = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        assert!(g[idx].abs() > 1e-9, "{name}: zero gradient");
        let eval = |delta: f64| -> f64 {
            let mut w = orig.clone();
            w[idx] += delta;
            var.set(&Tensor::from_vec(w, var.as_tensor().shape(), &Device::Cpu).unwrap())
                .unwrap();
            loss(model, ex).to_scalar::<f64>().unwrap()
        };
        let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
        var.set(&Tensor::from_vec(orig.clone(), var.as_tensor().shape(), &Device::Cpu).unwrap())
            .unwrap();
        let rel = (fd - g[idx]).abs() / g[idx].abs().max(1e-8);
        assert!(
            rel < 1e-5,
            "{name}[{idx}]: analytic {} vs finite difference {fd}",
            g[idx]
        );
        checked += 1;
    }
    assert!(checked >= min_checked, "{checked}");
}

#[test]
fn lora_gradients_match_finite_differences() {
    let dir = common::tmp("grad-lora");
    common::tiny_model(&dir.join("model"), 3);
    let ex = examples(&dir);
    let mcfg = ModelConfig::from_file(&dir.join("model/config.json")).unwrap();
    let mut model =
        Transformer::load_dir(&dir.join("model"), &mcfg, DType::F64, &Device::Cpu).unwrap();
    model.set_frozen(true);
    let mut vars = Vec::new();
    let r = 3;
    let mut k = 0u64;
    for layer in 0..model.layers.len() {
        for m in nxt_train::DEFAULT_TARGET_MODULES {
            let lin = model.linear_mut(layer, m).unwrap();
            let (i, o) = (lin.in_dim(), lin.out_dim());
            k += 1;
            // B non-zero so that A gets a gradient too.
            let a = Var::randn(0f64, 0.3, (r, i), &Device::Cpu).unwrap();
            let b = Var::randn(0f64, 0.3, (o, r), &Device::Cpu).unwrap();
            lin.lora = Some(LoraBranch::new(
                a.as_tensor().clone(),
                b.as_tensor().clone(),
                1.5,
                0.0,
            ));
            vars.push((format!("{layer}.{m}.A"), a));
            vars.push((format!("{layer}.{m}.B"), b));
        }
    }
    assert_eq!(k, 14);
    check_fd(&model, &ex, &vars, 28);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn full_gradients_match_finite_differences() {
    let dir = common::tmp("grad-full");
    common::tiny_model(&dir.join("model"), 4);
    let ex = examples(&dir);
    let mcfg = ModelConfig::from_file(&dir.join("model/config.json")).unwrap();
    let (model, varmap) =
        Transformer::load_trainable(&dir.join("model"), &mcfg, DType::F64, &Device::Cpu).unwrap();
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let n = vars.len();
    check_fd(&model, &ex, &vars, n);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lora_step_zero_equals_the_base_model() {
    let dir = common::tmp("grad-step0");
    common::tiny_model(&dir.join("model"), 5);
    let mcfg = ModelConfig::from_file(&dir.join("model/config.json")).unwrap();
    let base = Transformer::load_dir(&dir.join("model"), &mcfg, DType::F32, &Device::Cpu).unwrap();
    let cfg = TrainConfig::new("m", "d", "o");
    let tr = build_trainable(&cfg, &dir.join("model"), &mcfg, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(tr.params.len(), 2 * 7 * mcfg.num_hidden_layers);
    let x = Tensor::new(&[[5u32, 70, 12, 200, 33, 9]], &Device::Cpu).unwrap();
    let a: Vec<f32> = base
        .forward(&x, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = tr
        .model
        .forward(&x, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);
    // A is initialised (Kaiming-uniform, within 1/sqrt(in)), B is zero.
    let a0: Vec<f32> = tr.params[0]
        .var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let bound = 1.0 / (mcfg.hidden_size as f32).sqrt();
    assert!(a0.iter().all(|v| v.abs() <= bound) && a0.iter().any(|v| *v != 0.0));
    let b0: Vec<f32> = tr.params[1]
        .var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(b0.iter().all(|v| *v == 0.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_batch_of_four_equals_four_accumulated_micro_batches() {
    let dir = common::tmp("grad-accum");
    common::tiny_model(&dir.join("model"), 6);
    let ex = examples(&dir);
    assert_eq!(ex.len(), 4);
    let mcfg = ModelConfig::from_file(&dir.join("model/config.json")).unwrap();
    let mut cfg = TrainConfig::new("m", "d", "o");
    cfg.lora_r = 4;
    let tr = build_trainable(&cfg, &dir.join("model"), &mcfg, DType::F32, &Device::Cpu).unwrap();
    // Make B non-zero so every factor has a gradient.
    for p in &tr.params {
        if p.name.contains("lora_B") {
            p.var
                .set(&Tensor::randn(0f32, 0.1, p.var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let total: usize = ex.iter().map(|e| e.loss_tokens()).sum();
    let refs: Vec<&Example> = ex.iter().collect();
    let (nll, n) = batch_nll(&tr.model, &refs, 0).unwrap();
    assert_eq!(n, total);
    let g4 = (nll / total as f64).unwrap().backward().unwrap();
    let mut acc: Vec<Option<Tensor>> = vec![None; tr.params.len()];
    for e in &ex {
        let (nll, _) = batch_nll(&tr.model, &[e], 0).unwrap();
        let g = (nll / total as f64).unwrap().backward().unwrap();
        for (k, p) in tr.params.iter().enumerate() {
            let gi = g.get(p.var.as_tensor()).unwrap().clone();
            acc[k] = Some(match acc[k].take() {
                Some(a) => (a + gi).unwrap(),
                None => gi,
            });
        }
    }
    let mut worst = 0f32;
    for (k, p) in tr.params.iter().enumerate() {
        let a: Vec<f32> = g4
            .get(p.var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = acc[k]
            .as_ref()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst < 1e-5, "max difference {worst}");
    assert!(worst >= 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
