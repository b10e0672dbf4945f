//! A frozen linear layer with a trainable LoRA branch as one autograd node:
//! `y = x·Wᵀ + b + s·((x⊙m)·Aᵀ)·Bᵀ`.
//!
//! Composed of tensor ops, the branch keeps every intermediate for the backward pass: the
//! dropped-out input `x⊙m` (rows × in), the low-rank product, its scaled copy and the sum (each
//! rows × out). Over the seven projections of a 0.5B model's 24 layers at 256 tokens that is
//! about 0.9 GB. This op keeps only its operands (`x`, which the graph holds anyway, and the
//! factors); the dropout mask is redrawn in the backward pass from the stream state it was
//! drawn with, and the `rows × r` product is recomputed (r is small).
//!
//! On CPU in F32/F64 both passes run on the operands' slices ([`nxt_kernels::gemm`]): the
//! output is allocated once and the base product, the bias and the scaled low-rank term are
//! written into it in place (`s` scales the `rows × r` product, not the output), and the
//! input gradient `g·W + s·(gb·A)` is accumulated the same way. Elsewhere the same formulas
//! run as tensor ops.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp3, DType, Device, Layout, Result, Shape, Storage, Tensor,
    WithDType,
};
use nxt_kernels::gemm::{matmul_into, GemmFloat, MatRef};

use crate::dropout::DropoutRng;
use crate::ops::{owned_storage, storage_tensor};

/// Dropout on the branch's input: the state of the [`DropoutRng`] stream the mask is drawn
/// from, and the drop probability.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropoutDraw {
    /// Stream state before the draw.
    pub state: u64,
    /// Drop probability.
    pub p: f32,
}

impl DropoutDraw {
    /// The keep-scale mask, shaped like `x`.
    fn mask(&self, x: &Tensor) -> Result<Tensor> {
        let m = DropoutRng::new(self.state).mask(x.elem_count(), self.p);
        Tensor::from_vec(m, x.shape(), x.device())?.to_dtype(x.dtype())
    }

    /// The keep-scale mask of `n` elements, row-major, as values of `T`.
    fn mask_values<T: WithDType>(&self, n: usize) -> Vec<T> {
        DropoutRng::new(self.state)
            .mask(n, self.p)
            .into_iter()
            .map(|v| T::from_f64(f64::from(v)))
            .collect()
    }
}

/// The elements of a CPU storage as `T` (an error for another dtype or device).
fn cpu_slice<T: WithDType>(s: &Storage) -> Result<&[T]> {
    match s {
        Storage::Cpu(c) => c.as_slice::<T>(),
        _ => candle_core::bail!("fused-lora-linear: expected a CPU tensor"),
    }
}

/// The row-major `x⊙m` of a `(rows, in)` view and a row-major mask.
fn masked<T: GemmFloat + std::ops::Mul<Output = T>>(x: MatRef<'_, T>, m: &[T]) -> Vec<T> {
    let cols = x.cols();
    (0..x.rows())
        .flat_map(|i| (0..cols).map(move |j| (i, j)))
        .zip(m)
        .map(|((i, j), &mij)| x.at(i, j) * mij)
        .collect()
}

/// Gradients of `(x, A, B)`.
type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// The fused op; its operands are `x: (rows, in)`, `A: (r, in)`, `B: (out, r)`.
struct FusedLora {
    /// Frozen `(out, in)` weight, outside the graph.
    weight: Tensor,
    /// Contiguous `(in, out)` copy of the weight for the forward, if prepared.
    wt: Option<Tensor>,
    /// Frozen `(out,)` bias.
    bias: Option<Tensor>,
    scaling: f64,
    dropout: Option<DropoutDraw>,
    /// Whether `x` needs a gradient (false for the input of the first layer when the
    /// embeddings are frozen).
    x_grad: bool,
}

impl FusedLora {
    /// Whether the slice kernels run for operands of `dtype` on `device`: CPU, F32 or F64,
    /// the frozen weight and bias of the same dtype.
    fn cpu_kernel(&self, dtype: DType, device: &Device) -> bool {
        matches!(device, Device::Cpu)
            && matches!(dtype, DType::F32 | DType::F64)
            && self.weight.dtype() == dtype
            && self.bias.as_ref().is_none_or(|b| b.dtype() == dtype)
    }

    /// The forward on CPU slices: `x: (rows, in)`, `A: (r, in)`, `B: (out, r)`; the
    /// row-major `(rows, out)` output.
    fn cpu_forward<T>(&self, x: MatRef<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>) -> Result<Vec<T>>
    where
        T: GemmFloat + WithDType + std::ops::Mul<Output = T>,
    {
        let (rows, out) = (x.rows(), b.rows());
        let mut y = match &self.bias {
            Some(bias) => {
                let bias = bias.flatten_all()?;
                let (bs, bl) = bias.storage_and_layout();
                let Some((start, end)) = bl.contiguous_offsets() else {
                    candle_core::bail!("fused-lora-linear: the bias is not contiguous");
                };
                let bias = &cpu_slice::<T>(&bs)?[start..end];
                if bias.len() != out {
                    candle_core::bail!(
                        "fused-lora-linear: bias of {} for {out} outputs",
                        bias.len()
                    );
                }
                bias.repeat(rows)
            }
            None => vec![T::ZERO; rows * out],
        };
        {
            let weight = self.wt.as_ref().unwrap_or(&self.weight);
            let (ws, wl) = weight.storage_and_layout();
            let w = MatRef::from_layout(cpu_slice::<T>(&ws)?, wl)?;
            // `wt` is `Wᵀ` already; `weight` is `(out, in)`.
            let wt = if self.wt.is_some() { w } else { w.t() };
            matmul_into(&mut y, x, wt, T::ONE, self.bias.is_some())?;
        }
        let xm = self
            .dropout
            .map(|d| masked(x, &d.mask_values::<T>(rows * x.cols())));
        let xm = match &xm {
            Some(v) => MatRef::row_major(v, rows, x.cols())?,
            None => x,
        };
        let r = a.rows();
        let mut xa = vec![T::ZERO; rows * r];
        matmul_into(&mut xa, xm, a.t(), T::from_f64(self.scaling), false)?;
        matmul_into(
            &mut y,
            MatRef::row_major(&xa, rows, r)?,
            b.t(),
            T::ONE,
            true,
        )?;
        Ok(y)
    }

    /// The backward on CPU tensors (see [`CustomOp3::bwd`] for the formulas): `(dx, dA, dB)`,
    /// `dx` only when `x` wants a gradient.
    fn cpu_backward<T>(&self, x: &Tensor, a: &Tensor, b: &Tensor, g: &Tensor) -> Result<Grads>
    where
        T: GemmFloat + WithDType + std::ops::Mul<Output = T> + std::ops::AddAssign,
    {
        let (xs, xl) = x.storage_and_layout();
        let (as_, al) = a.storage_and_layout();
        let (bs, bl) = b.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let x = MatRef::from_layout(cpu_slice::<T>(&xs)?, xl)?;
        let a = MatRef::from_layout(cpu_slice::<T>(&as_)?, al)?;
        let b = MatRef::from_layout(cpu_slice::<T>(&bs)?, bl)?;
        let g = MatRef::from_layout(cpu_slice::<T>(&gs)?, gl)?;
        let (rows, inp, out, r) = (x.rows(), x.cols(), b.rows(), a.rows());
        let s = T::from_f64(self.scaling);
        let mask = self.dropout.map(|d| d.mask_values::<T>(rows * inp));
        let xm_values = mask.as_ref().map(|m| masked(x, m));
        let xm = match &xm_values {
            Some(v) => MatRef::row_major(v, rows, inp)?,
            None => x,
        };
        let mut xa = vec![T::ZERO; rows * r];
        matmul_into(&mut xa, xm, a.t(), T::ONE, false)?;
        let mut gb = vec![T::ZERO; rows * r];
        matmul_into(&mut gb, g, b, T::ONE, false)?;
        let (xa, gb) = (
            MatRef::row_major(&xa, rows, r)?,
            MatRef::row_major(&gb, rows, r)?,
        );
        let mut db = vec![T::ZERO; out * r];
        matmul_into(&mut db, g.t(), xa, s, false)?;
        let mut da = vec![T::ZERO; r * inp];
        matmul_into(&mut da, gb.t(), xm, s, false)?;
        let dx = if self.x_grad {
            let mut dx = vec![T::ZERO; rows * inp];
            {
                let (ws, wl) = self.weight.storage_and_layout();
                let w = MatRef::from_layout(cpu_slice::<T>(&ws)?, wl)?;
                matmul_into(&mut dx, g, w, T::ONE, false)?;
            }
            match &mask {
                Some(m) => {
                    let mut through = vec![T::ZERO; rows * inp];
                    matmul_into(&mut through, gb, a, s, false)?;
                    for ((d, t), &mij) in dx.iter_mut().zip(&through).zip(m) {
                        *d += *t * mij;
                    }
                }
                None => matmul_into(&mut dx, gb, a, s, true)?,
            }
            Some(Tensor::from_vec(dx, (rows, inp), &Device::Cpu)?)
        } else {
            None
        };
        Ok((
            dx,
            Some(Tensor::from_vec(da, (r, inp), &Device::Cpu)?),
            Some(Tensor::from_vec(db, (out, r), &Device::Cpu)?),
        ))
    }

    fn forward(&self, x: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let y = match &self.wt {
            Some(wt) => x.matmul(wt)?,
            None => x.matmul(&self.weight.t()?)?,
        };
        let y = match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        };
        let xm = match &self.dropout {
            Some(d) => (x * d.mask(x)?)?,
            None => x.clone(),
        };
        let a = a.to_dtype(x.dtype())?;
        let b = b.to_dtype(x.dtype())?;
        let lora = (xm.matmul(&a.t()?)?.matmul(&b.t()?)? * self.scaling)?;
        y + lora
    }
}

impl CustomOp3 for FusedLora {
    fn name(&self) -> &'static str {
        "fused-lora-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = |rows: usize, out: usize| Shape::from((rows, out));
        if self.cpu_kernel(s1.dtype(), &Device::Cpu) {
            match (s1, s2, s3) {
                (CpuStorage::F32(x), CpuStorage::F32(a), CpuStorage::F32(b)) => {
                    let x = MatRef::from_layout(x, l1)?;
                    let y = self.cpu_forward(
                        x,
                        MatRef::from_layout(a, l2)?,
                        MatRef::from_layout(b, l3)?,
                    )?;
                    return Ok((CpuStorage::F32(y), shape(x.rows(), l3.dims()[0])));
                }
                (CpuStorage::F64(x), CpuStorage::F64(a), CpuStorage::F64(b)) => {
                    let x = MatRef::from_layout(x, l1)?;
                    let y = self.cpu_forward(
                        x,
                        MatRef::from_layout(a, l2)?,
                        MatRef::from_layout(b, l3)?,
                    )?;
                    return Ok((CpuStorage::F64(y), shape(x.rows(), l3.dims()[0])));
                }
                _ => {}
            }
        }
        let x = storage_tensor(s1, l1, Storage::Cpu)?;
        let a = storage_tensor(s2, l2, Storage::Cpu)?;
        let b = storage_tensor(s3, l3, Storage::Cpu)?;
        owned_storage(&self.forward(&x, &a, &b)?, |st| match st {
            Storage::Cpu(c) => Some(c),
            _ => None,
        })
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let x = storage_tensor(s1, l1, Storage::Cuda)?;
        let a = storage_tensor(s2, l2, Storage::Cuda)?;
        let b = storage_tensor(s3, l3, Storage::Cuda)?;
        owned_storage(&self.forward(&x, &a, &b)?, |st| match st {
            Storage::Cuda(c) => Some(c),
            _ => None,
        })
    }

    /// With `xm = x⊙m`, `xa = xm·Aᵀ` and `gb = g·B`:
    /// `dB = s·gᵀ·xa`, `dA = s·gbᵀ·xm`, `dx = g·W + s·(gb·A)⊙m`.
    fn bwd(&self, x: &Tensor, a: &Tensor, b: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Grads> {
        let same = [a.dtype(), b.dtype(), g.dtype()]
            .iter()
            .all(|&d| d == x.dtype());
        if same && self.cpu_kernel(x.dtype(), x.device()) && matches!(g.device(), Device::Cpu) {
            return match x.dtype() {
                DType::F32 => self.cpu_backward::<f32>(x, a, b, g),
                _ => self.cpu_backward::<f64>(x, a, b, g),
            };
        }
        let x = x.detach();
        let (a_dtype, b_dtype) = (a.dtype(), b.dtype());
        let a = a.detach().to_dtype(g.dtype())?;
        let b = b.detach().to_dtype(g.dtype())?;
        let mask = match &self.dropout {
            Some(d) => Some(d.mask(&x)?),
            None => None,
        };
        let xm = match &mask {
            Some(m) => (&x * m)?,
            None => x,
        };
        let xa = xm.matmul(&a.t()?)?;
        let gb = g.matmul(&b)?;
        let db = (g.t()?.matmul(&xa)? * self.scaling)?.to_dtype(b_dtype)?;
        let da = (gb.t()?.matmul(&xm)? * self.scaling)?.to_dtype(a_dtype)?;
        let dx = if self.x_grad {
            let through_lora = (gb.matmul(&a)? * self.scaling)?;
            let through_lora = match &mask {
                Some(m) => (through_lora * m)?,
                None => through_lora,
            };
            Some((g.matmul(&self.weight)? + through_lora)?)
        } else {
            None
        };
        Ok((dx, Some(da), Some(db)))
    }
}

/// `x·Wᵀ + b + scaling·((x⊙m)·Aᵀ)·Bᵀ` for `x: (rows, in)`, a frozen `(out, in)` weight `W`
/// (with an optional contiguous `(in, out)` copy `wt`) and bias, and LoRA factors
/// `A: (r, in)`, `B: (out, r)`; `m` is the dropout mask of `dropout` (none: no dropout). When
/// anything is tracked this is one graph node whose backward computes the gradients of `x`, `A`
/// and `B` only, keeping no intermediate of the forward.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_lora_linear(
    x: &Tensor,
    weight: &Tensor,
    wt: Option<&Tensor>,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    scaling: f64,
    dropout: Option<DropoutDraw>,
) -> Result<Tensor> {
    let op = FusedLora {
        weight: weight.detach(),
        wt: wt.map(Tensor::detach),
        bias: bias.map(Tensor::detach),
        scaling,
        dropout,
        x_grad: x.track_op(),
    };
    if !(x.track_op() || a.track_op() || b.track_op()) {
        return op.forward(x, a, b);
    }
    x.apply_op3(a, b, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests::{max_diff, values};
    use candle_core::{DType, Device, Var};

    /// The composed reference: frozen base plus a LoRA branch of ordinary tensor ops.
    fn composed(
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        a: &Tensor,
        b: &Tensor,
        s: f64,
        mask: Option<&Tensor>,
    ) -> Tensor {
        let y = x
            .matmul(&w.detach().t().unwrap())
            .unwrap()
            .broadcast_add(&bias.detach())
            .unwrap();
        let xm = match mask {
            Some(m) => (x * m).unwrap(),
            None => x.clone(),
        };
        let l = (xm
            .matmul(&a.t().unwrap())
            .unwrap()
            .matmul(&b.t().unwrap())
            .unwrap()
            * s)
            .unwrap();
        (y + l).unwrap()
    }

    fn check(dropout: Option<DropoutDraw>, x_is_var: bool, prepared: bool) {
        let (rows, inp, out, r) = (5, 7, 6, 3);
        let xv = Var::from_tensor(&values(&[rows, inp], 1)).unwrap();
        let x = if x_is_var {
            xv.as_tensor().clone()
        } else {
            xv.as_tensor().detach()
        };
        let w = values(&[out, inp], 2);
        let bias = values(&[1, out], 3).squeeze(0).unwrap();
        let a = Var::from_tensor(&values(&[r, inp], 4)).unwrap();
        let b = Var::from_tensor(&values(&[out, r], 5)).unwrap();
        let probe = values(&[rows, out], 6);
        let s = 2.5;
        let wt = w.t().unwrap().contiguous().unwrap();
        let fused = fused_lora_linear(
            &x,
            &w,
            prepared.then_some(&wt),
            Some(&bias),
            a.as_tensor(),
            b.as_tensor(),
            s,
            dropout,
        )
        .unwrap();
        let mask = dropout.map(|d| d.mask(&x).unwrap());
        let reference = composed(
            &x,
            &w,
            &bias,
            a.as_tensor(),
            b.as_tensor(),
            s,
            mask.as_ref(),
        );
        assert!(max_diff(&fused, &reference) < 1e-12);

        let loss = |y: &Tensor| (y * &probe).unwrap().sum_all().unwrap();
        let gf = loss(&fused).backward().unwrap();
        let gr = loss(&reference).backward().unwrap();
        for v in [&a, &b] {
            let (f, r) = (gf.get(v).unwrap(), gr.get(v).unwrap());
            assert!(max_diff(f, r) < 1e-12, "factor gradient differs");
        }
        match (gf.get(xv.as_tensor()), gr.get(xv.as_tensor())) {
            (Some(f), Some(r)) => assert!(max_diff(f, r) < 1e-12, "input gradient differs"),
            (None, None) => assert!(!x_is_var),
            _ => panic!("one of the two computed an input gradient, the other did not"),
        }
        assert!(gf.get(&w).is_none() && gf.get(&bias).is_none());
    }

    #[test]
    fn matches_the_composed_ops_and_their_gradients() {
        check(None, true, false);
        check(None, true, true);
        check(Some(DropoutDraw { state: 9, p: 0.4 }), true, false);
    }

    #[test]
    fn computes_no_input_gradient_for_an_untracked_input() {
        check(Some(DropoutDraw { state: 9, p: 0.4 }), false, true);
    }

    #[test]
    fn the_mask_is_redrawn_identically() {
        let x = Tensor::ones((4, 8), DType::F32, &Device::Cpu).unwrap();
        let d = DropoutDraw { state: 123, p: 0.5 };
        let (m1, m2) = (d.mask(&x).unwrap(), d.mask(&x).unwrap());
        assert_eq!(
            m1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            m2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let kept: f32 = m1.sum_all().unwrap().to_scalar().unwrap();
        assert!(
            kept > 0.0 && kept < 64.0,
            "a 0.5 mask keeps some and drops some"
        );
    }
}
