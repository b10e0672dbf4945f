//! The fused, chunked lm_head + cross-entropy against the composed ops it replaced: loss and
//! gradients (h, and the weight and bias when trainable) on small random inputs.

use candle_core::{DType, Device, Module, Tensor, Var, D};
use nxt_engine::model::{const_add, Linear, LoraBranch};
use nxt_train::fused_ce::{lm_head_nll, DEFAULT_CHUNK_ROWS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The composed loss `batch_nll` computed before the fused op (the reference): the whole
/// logits matrix, then log-sum-exp and gather.
fn composed_nll(h: &Tensor, lm_head: &Linear, targets: &[u32]) -> Tensor {
    let logits = lm_head.forward(h).unwrap();
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.to_dtype(DType::F32).unwrap(),
        _ => logits,
    };
    let max = logits.max_keepdim(D::Minus1).unwrap().neg().unwrap();
    let z = const_add(&logits, &max).unwrap();
    let lse = z
        .exp()
        .unwrap()
        .sum_keepdim(D::Minus1)
        .unwrap()
        .log()
        .unwrap();
    let tgt = Tensor::from_vec(targets.to_vec(), (targets.len(), 1), h.device()).unwrap();
    let picked = z.gather(&tgt, 1).unwrap();
    (lse.sum_all().unwrap() - picked.sum_all().unwrap()).unwrap()
}

fn random(rng: &mut ChaCha8Rng, shape: (usize, usize), scale: f64, dtype: DType) -> Tensor {
    let v: Vec<f64> = (0..shape.0 * shape.1)
        .map(|_| rng.random_range(-scale..scale))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// A random problem: `h` and the lm_head's weight (and bias) as variables.
struct Problem {
    h: Var,
    w: Var,
    b: Option<Var>,
    targets: Vec<u32>,
}

impl Problem {
    fn new(seed: u64, rows: usize, vocab: usize, hidden: usize, bias: bool, dtype: DType) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = Var::from_tensor(&random(&mut rng, (rows, hidden), 1.0, dtype)).unwrap();
        let w = Var::from_tensor(&random(&mut rng, (vocab, hidden), 2.0, dtype)).unwrap();
        let b = bias.then(|| {
            let t = random(&mut rng, (1, vocab), 1.0, dtype).squeeze(0).unwrap();
            Var::from_tensor(&t).unwrap()
        });
        // Both vocabulary edges, then random targets.
        let targets = (0..rows)
            .map(|i| match i {
                0 => 0,
                1 => vocab as u32 - 1,
                _ => rng.random_range(0..vocab as u32),
            })
            .collect();
        Self { h, w, b, targets }
    }

    fn lm_head(&self, frozen: bool) -> Linear {
        let mut l = Linear::new(
            self.w.as_tensor().clone(),
            self.b.as_ref().map(|b| b.as_tensor().clone()),
        );
        l.frozen = frozen;
        l
    }
}

/// Loss and the gradients of h, W and b (None where none reached them).
type Result4 = (f64, Tensor, Option<Tensor>, Option<Tensor>);

fn run(p: &Problem, frozen: bool, fused: Option<usize>) -> Result4 {
    let lm_head = p.lm_head(frozen);
    let h = p.h.as_tensor();
    let loss = match fused {
        Some(chunk) => lm_head_nll(h, &lm_head, &p.targets, chunk)
            .unwrap()
            .sum_all()
            .unwrap(),
        None => composed_nll(h, &lm_head, &p.targets),
    };
    let grads = loss.backward().unwrap();
    let value = loss
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let dh = grads.get(h).expect("a gradient for h").clone();
    let dw = grads.get(p.w.as_tensor()).cloned();
    let db = p.b.as_ref().and_then(|b| grads.get(b.as_tensor()).cloned());
    (value, dh, dw, db)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    assert_eq!(a.dtype(), b.dtype());
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn norm(a: &Tensor) -> f64 {
    a.to_dtype(DType::F64)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .sqrt()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Compares the fused op at `chunk` rows with the composed ops, to `tol` (relative to the
/// loss, absolute on gradients of entries of order one).
fn check(p: &Problem, frozen: bool, chunk: usize, tol: f64) {
    let (l0, dh0, dw0, db0) = run(p, frozen, None);
    let (l1, dh1, dw1, db1) = run(p, frozen, Some(chunk));
    assert!(
        (l0 - l1).abs() <= tol * l0.abs().max(1.0),
        "loss {l1} vs composed {l0} (chunk {chunk})"
    );
    assert!(norm(&dh0) > 0.0);
    let d = max_abs_diff(&dh0, &dh1);
    assert!(d <= tol, "dh differs by {d} (chunk {chunk})");
    if frozen {
        assert!(dw1.is_none(), "a frozen weight got a gradient");
        assert!(db1.is_none(), "a frozen bias got a gradient");
    } else {
        let (dw0, dw1) = (dw0.expect("composed dW"), dw1.expect("fused dW"));
        assert!(norm(&dw0) > 0.0);
        let d = max_abs_diff(&dw0, &dw1);
        assert!(d <= tol, "dW differs by {d} (chunk {chunk})");
        match (db0, db1) {
            (Some(db0), Some(db1)) => {
                let d = max_abs_diff(&db0, &db1);
                assert!(d <= tol, "db differs by {d} (chunk {chunk})");
            }
            (None, None) => assert!(p.b.is_none()),
            (a, b) => panic!(
                "bias gradient: composed {:?}, fused {:?}",
                a.is_some(),
                b.is_some()
            ),
        }
    }
}

/// Row counts that are and are not multiples of the chunk, a chunk of one row, a chunk
/// larger than the rows; vocabulary blocks whose edges fall on targets.
const CASES: [(usize, usize); 6] = [(7, 3), (7, 1), (1, 1), (6, 2), (5, 64), (9, 4)];

#[test]
fn frozen_lm_head_matches_the_composed_loss_f64() {
    for (i, &(rows, chunk)) in CASES.iter().enumerate() {
        for bias in [false, true] {
            let p = Problem::new(i as u64, rows, 13, 5, bias, DType::F64);
            check(&p, true, chunk, 1e-12);
        }
    }
}

#[test]
fn trainable_lm_head_matches_the_composed_loss_f64() {
    for (i, &(rows, chunk)) in CASES.iter().enumerate() {
        for bias in [false, true] {
            let p = Problem::new(100 + i as u64, rows, 13, 5, bias, DType::F64);
            check(&p, false, chunk, 1e-12);
        }
    }
}

#[test]
fn lm_head_matches_the_composed_loss_f32() {
    for (i, &(rows, chunk)) in CASES.iter().enumerate() {
        for frozen in [true, false] {
            let p = Problem::new(200 + i as u64, rows, 37, 8, i % 2 == 0, DType::F32);
            check(&p, frozen, chunk, 2e-5);
        }
    }
}

#[test]
fn bf16_lm_head_matches_the_composed_loss() {
    // The matmul runs in BF16 in both; the softmax in F32.
    let p = Problem::new(300, 11, 50, 16, false, DType::BF16);
    for frozen in [true, false] {
        let (l0, dh0, dw0, _) = run(&p, frozen, None);
        let (l1, dh1, dw1, _) = run(&p, frozen, Some(4));
        assert!((l0 - l1).abs() <= 1e-4 * l0.abs(), "loss {l1} vs {l0}");
        assert_eq!(dh1.dtype(), DType::BF16);
        assert!(max_abs_diff(&dh0, &dh1) <= 2e-2 * norm(&dh0));
        if let (Some(a), Some(b)) = (dw0, dw1) {
            assert!(max_abs_diff(&a, &b) <= 2e-2 * norm(&a));
        }
    }
}

#[test]
fn tied_weight_gets_both_gradients() {
    // h is built from the weight itself (an embedding lookup, as with tied embeddings): the
    // weight's gradient sums the embedding's and the lm_head's.
    let p = Problem::new(400, 6, 13, 5, false, DType::F64);
    let ids = Tensor::new(&[3u32, 0, 12, 7, 7, 1], &Device::Cpu).unwrap();
    let grads_of = |fused: bool| {
        let lm_head = p.lm_head(false);
        let h =
            p.w.as_tensor()
                .index_select(&ids, 0)
                .unwrap()
                .tanh()
                .unwrap();
        let loss = if fused {
            lm_head_nll(&h, &lm_head, &p.targets, 2)
                .unwrap()
                .sum_all()
                .unwrap()
        } else {
            composed_nll(&h, &lm_head, &p.targets)
        };
        let g = loss.backward().unwrap();
        g.get(p.w.as_tensor()).expect("dW").clone()
    };
    let (a, b) = (grads_of(false), grads_of(true));
    assert!(norm(&a) > 0.0);
    assert!(max_abs_diff(&a, &b) <= 1e-12);
}

#[test]
fn fused_loss_is_deterministic() {
    let p = Problem::new(500, 23, 41, 12, true, DType::F32);
    for frozen in [true, false] {
        let (l0, dh0, dw0, db0) = run(&p, frozen, Some(DEFAULT_CHUNK_ROWS.min(5)));
        let (l1, dh1, dw1, db1) = run(&p, frozen, Some(DEFAULT_CHUNK_ROWS.min(5)));
        assert_eq!(l0.to_bits(), l1.to_bits());
        assert_eq!(max_abs_diff(&dh0, &dh1), 0.0);
        for (a, b) in [(dw0, dw1), (db0, db1)] {
            if let (Some(a), Some(b)) = (a, b) {
                assert_eq!(max_abs_diff(&a, &b), 0.0);
            }
        }
    }
}

#[test]
fn per_row_values_are_the_row_nlls() {
    // Row i of the output is -log softmax(logits_i)[t_i], independently of the chunking.
    let p = Problem::new(600, 5, 13, 5, true, DType::F64);
    let lm_head = p.lm_head(true);
    let h = p.h.as_tensor();
    let per_row = lm_head_nll(h, &lm_head, &p.targets, 2).unwrap();
    assert_eq!(per_row.dims(), [5]);
    let per_row = per_row.to_vec1::<f64>().unwrap();
    for (i, &t) in p.targets.iter().enumerate() {
        let one = composed_nll(&h.narrow(0, i, 1).unwrap(), &lm_head, &[t]);
        let one = one.to_scalar::<f64>().unwrap();
        assert!(
            (per_row[i] - one).abs() <= 1e-12,
            "row {i}: {} vs {one}",
            per_row[i]
        );
    }
}

#[test]
fn untracked_input_gives_the_same_values() {
    let p = Problem::new(700, 7, 13, 5, false, DType::F64);
    let lm_head = p.lm_head(true);
    let tracked = lm_head_nll(p.h.as_tensor(), &lm_head, &p.targets, 3).unwrap();
    let h = p.h.as_tensor().detach();
    let plain = lm_head_nll(&h, &lm_head, &p.targets, 3).unwrap();
    assert_eq!(max_abs_diff(&tracked, &plain), 0.0);
}

#[test]
fn no_rows_gives_zero_loss_and_an_empty_gradient() {
    let p = Problem::new(800, 0, 13, 5, false, DType::F64);
    for frozen in [true, false] {
        let (l, dh, dw, _) = run(&p, frozen, Some(4));
        assert_eq!(l, 0.0);
        assert_eq!(dh.dims(), [0, 5]);
        if !frozen {
            assert_eq!(norm(&dw.expect("dW")), 0.0);
        }
    }
}

#[test]
fn bad_inputs_are_refused() {
    let p = Problem::new(900, 4, 13, 5, false, DType::F64);
    let lm_head = p.lm_head(true);
    let h = p.h.as_tensor();
    let err = lm_head_nll(h, &lm_head, &[0, 1, 13, 2], 2).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    assert!(lm_head_nll(h, &lm_head, &[0, 1], 2).is_err());
    assert!(lm_head_nll(h, &lm_head, &p.targets, 0).is_err());
    let mut with_lora = p.lm_head(true);
    let a = Tensor::zeros((2, 5), DType::F64, &Device::Cpu).unwrap();
    let b = Tensor::zeros((13, 2), DType::F64, &Device::Cpu).unwrap();
    with_lora.lora = Some(LoraBranch::new(a, b, 1.0, 0.0));
    let err = lm_head_nll(h, &with_lora, &p.targets, 2).unwrap_err();
    assert!(err.to_string().contains("LoRA"), "{err}");
}
