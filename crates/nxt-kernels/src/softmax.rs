//! The attention softmax of the differentiable (training) path as one fused op:
//! `softmax(x * scale + mask)` over the last dimension, with a backward pass of its own.
//!
//! Built from separate tensor ops (scale, mask add, max, exp, sum, divide), every step of the
//! softmax allocates an attention-sized tensor in the forward pass and several more in the
//! backward pass (candle accumulates each gradient into a fresh zero tensor). For the
//! `(batch, heads, t, t)` attention scores of long prompts that traffic dominated a training
//! step. Fused, the forward writes one tensor and the backward one more:
//! `dx = scale · y ⊙ (dy − Σ_j dy_j y_j)`, where `y` is the op's own output.
//!
//! The kernels run on CPU for `f32` and `f64` ([`fused`] says whether a tensor qualifies);
//! callers compose the same function from tensor ops elsewhere.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};

/// The additive mask's values, `(t, l)` row-major: row `r` of the scores uses mask row
/// `r % t`, which is how a `(t, l)` mask broadcasts over `(..., rep * t, l)` scores.
#[derive(Debug, Clone)]
struct MaskRows {
    values: Vec<f64>,
    t: usize,
}

/// Whether [`masked_softmax`] has a kernel for `x`: on CPU, in `f32` or `f64`.
pub fn fused(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `softmax(x * scale + mask)` over the last dimension, differentiable with respect to `x`
/// (the mask is a constant). `mask`, when given, is `(t, l)` and broadcasts over the leading
/// dimensions of `x`, whose last dimension is `l` and whose second-to-last is a multiple of `t`.
/// Fails for a tensor without a kernel (see [`fused`]) and for a mask that does not fit.
pub fn masked_softmax(x: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    if !fused(x) {
        candle_core::bail!(
            "masked_softmax: no kernel for {:?} on {:?}",
            x.dtype(),
            x.device()
        );
    }
    let mask = match mask {
        Some(m) => {
            let (t, l) = m.dims2()?;
            let dims = x.dims();
            if dims.len() < 2 || dims[dims.len() - 1] != l || dims[dims.len() - 2] % t != 0 {
                candle_core::bail!(
                    "masked_softmax: a ({t}, {l}) mask does not fit scores {dims:?}"
                );
            }
            let values = m.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            Some(MaskRows { values, t })
        }
        None => None,
    };
    x.contiguous()?.apply_op1(MaskedSoftmax { scale, mask })
}

/// The fused forward (see the module doc).
struct MaskedSoftmax {
    scale: f64,
    mask: Option<MaskRows>,
}

/// `(start, end)` of a contiguous layout's elements, or an error naming the op.
fn contiguous(l: &Layout, op: &str) -> Result<(usize, usize)> {
    match l.contiguous_offsets() {
        Some(o) => Ok(o),
        None => candle_core::bail!("{op}: the input is not contiguous"),
    }
}

macro_rules! softmax_rows {
    ($xs:expr, $cols:expr, $scale:expr, $mask:expr, $t:ty) => {{
        let xs: &[$t] = $xs;
        let cols: usize = $cols;
        let scale = $scale as $t;
        let mut out: Vec<$t> = vec![0.0; xs.len()];
        for (r, (row, dst)) in xs
            .chunks_exact(cols)
            .zip(out.chunks_exact_mut(cols))
            .enumerate()
        {
            let mrow = $mask.map(|m: &MaskRows| {
                let i = r % m.t;
                &m.values[i * cols..(i + 1) * cols]
            });
            let mut max = <$t>::NEG_INFINITY;
            for (j, (&v, d)) in row.iter().zip(dst.iter_mut()).enumerate() {
                let z = v * scale + mrow.map_or(0.0, |m| m[j] as $t);
                *d = z;
                max = max.max(z);
            }
            if max == <$t>::NEG_INFINITY {
                // Every position masked: no probability mass anywhere.
                dst.iter_mut().for_each(|d| *d = 0.0);
                continue;
            }
            let mut sum = 0.0;
            for d in dst.iter_mut() {
                *d = (*d - max).exp();
                sum += *d;
            }
            let inv = 1.0 / sum;
            dst.iter_mut().for_each(|d| *d *= inv);
        }
        out
    }};
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = contiguous(l, self.name())?;
        let cols = l.dims().last().copied().unwrap_or(1).max(1);
        let mask = self.mask.as_ref();
        let out = match s {
            CpuStorage::F32(v) => {
                CpuStorage::F32(softmax_rows!(&v[start..end], cols, self.scale, mask, f32))
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(softmax_rows!(&v[start..end], cols, self.scale, mask, f64))
            }
            other => candle_core::bail!("masked-softmax: no kernel for {:?}", other.dtype()),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let y = res.detach().contiguous()?;
        let g = grad_res.contiguous()?;
        y.apply_op2_no_bwd(&g, &SoftmaxGrad { scale: self.scale })
            .map(Some)
    }
}

/// The fused backward: `dx = scale · y ⊙ (dy − Σ_j dy_j y_j)` per row, from the forward's
/// output `y` and the output gradient `dy`.
struct SoftmaxGrad {
    scale: f64,
}

macro_rules! softmax_grad_rows {
    ($ys:expr, $gs:expr, $cols:expr, $scale:expr, $t:ty) => {{
        let (ys, gs): (&[$t], &[$t]) = ($ys, $gs);
        let scale = $scale as $t;
        let mut out: Vec<$t> = vec![0.0; ys.len()];
        for ((y, g), d) in ys
            .chunks_exact($cols)
            .zip(gs.chunks_exact($cols))
            .zip(out.chunks_exact_mut($cols))
        {
            let dot: $t = y.iter().zip(g).map(|(a, b)| a * b).sum();
            for ((d, &yv), &gv) in d.iter_mut().zip(y).zip(g) {
                *d = scale * yv * (gv - dot);
            }
        }
        out
    }};
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "masked-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "{}: output {:?} and gradient {:?} differ in shape",
                self.name(),
                l1.shape(),
                l2.shape()
            );
        }
        let (a0, a1) = contiguous(l1, self.name())?;
        let (b0, b1) = contiguous(l2, self.name())?;
        let cols = l1.dims().last().copied().unwrap_or(1).max(1);
        let out = match (s1, s2) {
            (CpuStorage::F32(y), CpuStorage::F32(g)) => CpuStorage::F32(softmax_grad_rows!(
                &y[a0..a1],
                &g[b0..b1],
                cols,
                self.scale,
                f32
            )),
            (CpuStorage::F64(y), CpuStorage::F64(g)) => CpuStorage::F64(softmax_grad_rows!(
                &y[a0..a1],
                &g[b0..b1],
                cols,
                self.scale,
                f64
            )),
            (a, b) => candle_core::bail!(
                "{}: no kernel for {:?} x {:?}",
                self.name(),
                a.dtype(),
                b.dtype()
            ),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The composed reference: scale, broadcast the mask, softmax from tensor ops.
    fn composed(x: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
        let softmax_last_dim_slow = |x: &Tensor| -> Result<Tensor> {
            let e = x
                .broadcast_sub(&x.max_keepdim(candle_core::D::Minus1)?.detach())?
                .exp()?;
            e.broadcast_div(&e.sum_keepdim(candle_core::D::Minus1)?)
        };
        let s = (x * scale)?;
        let s = match mask {
            Some(m) => {
                let (t, l) = m.dims2()?;
                let d = s.dims().to_vec();
                s.reshape((d[0], d[1] / t, t, l))?
                    .broadcast_add(m)?
                    .reshape(d)?
            }
            None => s,
        };
        softmax_last_dim_slow(&s)
    }

    fn causal(t: usize) -> Tensor {
        let m: Vec<f64> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f64::NEG_INFINITY } else { 0.0 }))
            .collect();
        Tensor::from_vec(m, (t, t), &Device::Cpu).expect("mask")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f64>())
            .expect("difference")
    }

    #[test]
    fn values_and_gradients_equal_the_composed_ops() {
        let (t, rep) = (5, 2);
        let x = Var::from_tensor(
            &Tensor::randn(0f64, 2.0, (3, rep * t, t), &Device::Cpu).expect("scores"),
        )
        .expect("var");
        let w = Tensor::randn(0f64, 1.0, (3, rep * t, t), &Device::Cpu).expect("weights");
        let mask = causal(t);
        for m in [Some(&mask), None] {
            let fused = masked_softmax(x.as_tensor(), m, 0.37).expect("fused");
            let reference = composed(x.as_tensor(), m, 0.37).expect("composed");
            assert!(max_diff(&fused, &reference) < 1e-12);
            let gf = (&fused * &w)
                .and_then(|l| l.sum_all())
                .and_then(|l| l.backward())
                .expect("fused backward");
            let gr = (&reference * &w)
                .and_then(|l| l.sum_all())
                .and_then(|l| l.backward())
                .expect("composed backward");
            let (a, b) = (gf.get(&x).expect("grad"), gr.get(&x).expect("grad"));
            assert!(
                max_diff(a, b) < 1e-12,
                "gradients differ by {}",
                max_diff(a, b)
            );
        }
    }

    #[test]
    fn a_mask_that_does_not_fit_is_refused() {
        let x = Tensor::zeros((2, 6, 4), DType::F32, &Device::Cpu).expect("x");
        let e = masked_softmax(&x, Some(&causal(4)), 1.0).expect_err("(4,4) mask on 6 rows");
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
