//! AdamW with moments that can be saved and restored (PyTorch's update rule and defaults),
//! the learning-rate schedules, and global gradient-norm clipping.

use candle_core::{DType, Result, Tensor, Var};

use crate::config::Schedule;

/// One trainable parameter with its AdamW state.
#[derive(Debug)]
pub struct Param {
    /// Name (PEFT key for LoRA, Hugging Face name for full fine-tuning).
    pub name: String,
    /// The variable.
    pub var: Var,
    /// Whether weight decay applies (not to biases and norm weights, as in transformers).
    pub decay: bool,
    /// First moment (F32).
    pub exp_avg: Tensor,
    /// Second moment (F32).
    pub exp_avg_sq: Tensor,
}

impl Param {
    /// A parameter with zero moments.
    pub fn new(name: String, var: Var, decay: bool) -> Result<Self> {
        let exp_avg = Tensor::zeros(var.shape(), DType::F32, var.device())?;
        let exp_avg_sq = exp_avg.clone();
        Ok(Param {
            name,
            var,
            decay,
            exp_avg,
            exp_avg_sq,
        })
    }
}

/// AdamW hyper-parameters (PyTorch defaults: betas 0.9/0.999, eps 1e-8).
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl AdamW {
    /// PyTorch's defaults with the given weight decay.
    pub fn new(weight_decay: f64) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// Update number `t` (1-based) of `p` with gradient `g` at learning rate `lr`.
    pub fn update(&self, p: &mut Param, g: &Tensor, t: usize, lr: f64) -> Result<()> {
        let g = g.to_dtype(DType::F32)?;
        p.exp_avg = ((&p.exp_avg * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
        p.exp_avg_sq = ((&p.exp_avg_sq * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let bc1 = 1.0 - self.beta1.powi(t as i32);
        let bc2 = 1.0 - self.beta2.powi(t as i32);
        let denom = ((&p.exp_avg_sq / bc2)?.sqrt()? + self.eps)?;
        let step = ((&p.exp_avg / bc1)?.div(&denom)? * lr)?;
        let w = p.var.as_tensor().to_dtype(DType::F32)?;
        let w = if p.decay && self.weight_decay > 0.0 {
            (w * (1.0 - lr * self.weight_decay))?
        } else {
            w
        };
        let w = (w - step)?.to_dtype(p.var.dtype())?;
        p.var.set(&w)
    }
}

/// The learning rate of optimiser step `step` (0-based) of `total`, as transformers computes
/// it: linear warm-up from 0 over `warmup` steps, then constant or cosine decay to 0.
pub fn learning_rate(
    peak: f64,
    schedule: Schedule,
    warmup: usize,
    step: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    match schedule {
        Schedule::Constant => peak,
        Schedule::Cosine => {
            let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
            peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()).max(0.0)
        }
    }
}

/// The global L2 norm of `grads`.
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads {
        let s: f32 = g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar()?;
        sq += s as f64;
    }
    Ok(sq.sqrt())
}

/// The factor PyTorch's `clip_grad_norm_` scales gradients by for a norm `norm` and
/// threshold `max_norm` (1 when no clipping is needed or `max_norm` is 0).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}
