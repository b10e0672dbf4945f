//! Gradients reach every weight of our modules (unlike candle-transformers' fast paths), and
//! they agree with finite differences.

use candle_core::{DType, Device, Tensor, Var};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_engine::{Arch, ModelConfig, Transformer};

fn loss(model: &Transformer, input: &Tensor, targets: &Tensor) -> Tensor {
    // Cross-entropy of next-token prediction, built from differentiable ops.
    let logits = model.forward(input, None).unwrap().squeeze(0).unwrap();
    let lse = logits.exp().unwrap().sum_keepdim(1).unwrap().log().unwrap();
    let logp = logits.broadcast_sub(&lse).unwrap();
    let picked = logp.gather(&targets.unsqueeze(1).unwrap(), 1).unwrap();
    picked.mean_all().unwrap().neg().unwrap()
}

fn check(arch: Arch) {
    let dir = std::env::temp_dir().join(format!("nxt-engine-grad-{}-{arch:?}", std::process::id()));
    let spec = TinyModelSpec {
        arch,
        hidden_size: 16,
        intermediate_size: 24,
        num_merges: 20,
        tie_word_embeddings: arch == Arch::Qwen2,
        seed: 3,
        ..Default::default()
    };
    write_tiny_model(&dir, &spec).unwrap();
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let (model, varmap) =
        Transformer::load_trainable(&dir, &cfg, DType::F64, &Device::Cpu).unwrap();
    let toks: Vec<u32> = vec![4, 70, 12, 200, 33, 9, 150];
    let input = Tensor::new(&toks[..6], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let targets = Tensor::new(&toks[1..], &Device::Cpu).unwrap();
    let l = loss(&model, &input, &targets);
    let grads = l.backward().unwrap();
    let vars: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap();
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(vars.len(), model.named_parameters().len());
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{arch:?}: no gradient for {name}"));
        let norm: f64 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{arch:?}: zero/NaN gradient for {name}"
        );
    }
    // Central finite differences on a few entries of every kind of parameter.
    let eps = 1e-5;
    let mut checked = 0;
    for (name, var) in &vars {
        if !(name.contains("layers.1")
            || name.starts_with("model.norm")
            || name.contains("embed")
            || name.contains("lm_head"))
        {
            continue;
        }
        let g: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let orig: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        // The entry with the largest gradient, so the check is meaningful.
        let idx = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        let eval = |delta: f64| -> f64 {
            let mut w = orig.clone();
            w[idx] += delta;
            var.set(&Tensor::from_vec(w, var.as_tensor().shape(), &Device::Cpu).unwrap())
                .unwrap();
            loss(&model, &input, &targets).to_scalar::<f64>().unwrap()
        };
        let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
        var.set(&Tensor::from_vec(orig.clone(), var.as_tensor().shape(), &Device::Cpu).unwrap())
            .unwrap();
        let rel = (fd - g[idx]).abs() / g[idx].abs().max(1e-8);
        assert!(
            rel < 1e-4,
            "{arch:?} {name}[{idx}]: analytic {} vs finite difference {fd}",
            g[idx]
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gradients_reach_every_weight_qwen2() {
    check(Arch::Qwen2);
}

#[test]
fn gradients_reach_every_weight_llama() {
    check(Arch::Llama);
}
