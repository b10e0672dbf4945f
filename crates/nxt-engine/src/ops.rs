//! Autograd ops for training the engine's transformer with little memory: each is one graph
//! node that keeps only its input, where the same computation composed of candle's tensor ops
//! would keep every intermediate (and compute gradients for frozen operands).
//!
//! * [`frozen_linear`], [`const_add`], [`const_mul`]: a frozen operand gets no gradient.
//! * [`frozen_rms_norm`]: RMSNorm with a frozen scale; [`rope`]: rotary embedding (a rotation,
//!   so its backward is the rotation by the opposite angle); [`swiglu`]: `silu(g)·u`.
//!
//! Each op's forward is written with ordinary tensor ops (so it runs on any device) and its
//! backward is the closed-form gradient; the tests check both against the composed ops in F64.

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::op::BackpropOp;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Storage, Tensor, D,
};

type TensorFn = Box<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;
type GradFn = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync>;

/// A unary op whose forward is computed with ordinary tensor ops on operands held outside the
/// autograd graph (frozen weights, masks, tables), and whose backward returns only the
/// input's gradient. candle's own ops compute (and keep) a gradient for every operand of a
/// tracked node, frozen or not; this op records none for them.
struct DetachedOp {
    name: &'static str,
    fwd: TensorFn,
    /// `(input, grad of the output) -> grad of the input`.
    bwd: GradFn,
}

/// A contiguous copy of `(storage, layout)` as a tensor outside the graph (for the forward of
/// a custom op written with tensor ops).
pub fn storage_tensor<S>(s: &S, l: &Layout, wrap: fn(S) -> Storage) -> Result<Tensor>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    // SAFETY: every element of the buffer is written by `copy_strided_src` right below.
    let mut dst = unsafe { s.device().alloc_uninit(l.shape(), s.dtype())? };
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok(Tensor::from_storage(
        wrap(dst),
        l.shape().clone(),
        BackpropOp::none(),
        false,
    ))
}

/// The storage of a tensor's values as a fresh contiguous buffer (the result of a custom op
/// written with tensor ops); `unwrap` picks the backend's storage out of [`Storage`].
pub fn owned_storage<S>(t: &Tensor, unwrap: fn(&Storage) -> Option<&S>) -> Result<(S, Shape)>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    let (st, l) = t.storage_and_layout();
    let Some(s) = unwrap(&st) else {
        candle_core::bail!("detached op: the result is on another device than its input");
    };
    // SAFETY: every element of the buffer is written by `copy_strided_src` right below.
    let mut dst = unsafe { s.device().alloc_uninit(l.shape(), s.dtype())? };
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok((dst, l.shape().clone()))
}

impl CustomOp1 for DetachedOp {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = storage_tensor(s, l, Storage::Cpu)?;
        let y = (self.fwd)(&x)?;
        owned_storage(&y, |st| match st {
            Storage::Cpu(c) => Some(c),
            _ => None,
        })
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let x = storage_tensor(s, l, Storage::Cuda)?;
        let y = (self.fwd)(&x)?;
        owned_storage(&y, |st| match st {
            Storage::Cuda(c) => Some(c),
            _ => None,
        })
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        (self.bwd)(&arg.detach(), grad_res).map(Some)
    }
}

/// Applies `fwd` to `x`; when `x` is part of a graph, through a [`DetachedOp`] whose backward
/// is `bwd` (the input's gradient only, from the output's).
fn detached(
    name: &'static str,
    x: &Tensor,
    fwd: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    bwd: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    detached_with_input(name, x, fwd, move |_, g| bwd(g))
}

/// [`detached`] for ops whose backward needs the input: `bwd(x, grad)`.
fn detached_with_input(
    name: &'static str,
    x: &Tensor,
    fwd: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    bwd: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !x.track_op() {
        return fwd(x);
    }
    x.apply_op1(DetachedOp {
        name,
        fwd: Box::new(fwd),
        bwd: Box::new(bwd),
    })
}

/// `x·Wᵀ (+ b)` for `x: (rows, in)` and a frozen `(out, in)` weight (and `(out,)` bias) held
/// outside the graph: the backward pass computes only `grad·W` for `x`, never a gradient for
/// `W` or `b`. `wt` is an optional contiguous `(in, out)` copy of `W` for the forward.
pub fn frozen_linear(
    x: &Tensor,
    weight: &Tensor,
    wt: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let w = weight.detach();
    let wt = match wt {
        Some(t) => t.detach(),
        None => w.t()?,
    };
    let b = bias.map(|b| b.detach());
    detached(
        "frozen-linear",
        x,
        move |x| {
            let y = x.matmul(&wt)?;
            match &b {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            }
        },
        move |g| g.matmul(&w),
    )
}

/// `x + c` (`c` broadcast to `x`'s shape) where `c` (a mask, a detached statistic) gets no
/// gradient: the backward pass passes the gradient through to `x` only.
pub fn const_add(x: &Tensor, c: &Tensor) -> Result<Tensor> {
    let c = c.detach();
    detached(
        "const-add",
        x,
        move |x| x.broadcast_add(&c),
        |g| Ok(g.clone()),
    )
}

/// `x * c` (`c` broadcast to `x`'s shape) where `c` (a frozen norm weight, a RoPE table) gets
/// no gradient: the backward pass computes only `grad * c` for `x`.
pub fn const_mul(x: &Tensor, c: &Tensor) -> Result<Tensor> {
    let c = c.detach();
    let c2 = c.clone();
    detached(
        "const-mul",
        x,
        move |x| x.broadcast_mul(&c),
        move |g| g.broadcast_mul(&c2),
    )
}

/// RMSNorm with a frozen scale `w`: `y = x·r·w`, `r = 1/sqrt(mean(x²) + eps)` over the last
/// dimension. Backward: `dx = r·(g·w − xn·mean(g·w·xn))` with `xn = x·r`; no gradient for `w`.
pub fn frozen_rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let w = w.detach();
    let w2 = w.clone();
    let norm = move |x: &Tensor| -> Result<(Tensor, Tensor)> {
        let r = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
        Ok((x.broadcast_mul(&r)?, r))
    };
    detached_with_input(
        "frozen-rms-norm",
        x,
        move |x| norm(x)?.0.broadcast_mul(&w),
        move |x, g| {
            let (xn, r) = norm(x)?;
            let gw = g.broadcast_mul(&w2)?;
            let dot = (&gw * &xn)?.mean_keepdim(D::Minus1)?;
            (gw - xn.broadcast_mul(&dot)?)?.broadcast_mul(&r)
        },
    )
}

/// Rotary embedding (`rotate_half` convention) of `x: (b, h, t, d)` with `(t, d/2)` tables:
/// `[x1, x2] -> [x1·cos − x2·sin, x2·cos + x1·sin]`. A rotation, so the backward pass is the
/// rotation of the gradient by the opposite angle (`sin` negated).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (cos, sin) = (cos.detach().contiguous()?, sin.detach().contiguous()?);
    let neg_sin = sin.neg()?;
    let cos2 = cos.clone();
    detached(
        "rope",
        x,
        move |x| rotate(x, &cos, &sin),
        move |g| rotate(g, &cos2, &neg_sin),
    )
}

/// `rotate_half` RoPE of tensor ops (any device and dtype).
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let y1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let y2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[&y1, &y2], D::Minus1)
}

/// `silu(g)·u` as one node keeping only `g` and `u` (the composed ops also keep `silu(g)`).
struct SwiGlu;

impl SwiGlu {
    fn forward(g: &Tensor, u: &Tensor) -> Result<Tensor> {
        g.silu()? * u
    }
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (
            storage_tensor(s1, l1, Storage::Cpu)?,
            storage_tensor(s2, l2, Storage::Cpu)?,
        );
        owned_storage(&Self::forward(&g, &u)?, |st| match st {
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
    ) -> Result<(CudaStorage, Shape)> {
        let (g, u) = (
            storage_tensor(s1, l1, Storage::Cuda)?,
            storage_tensor(s2, l2, Storage::Cuda)?,
        );
        owned_storage(&Self::forward(&g, &u)?, |st| match st {
            Storage::Cuda(c) => Some(c),
            _ => None,
        })
    }

    /// With `σ = sigmoid(g)`: `dg = grad·u·σ·(1 + g·(1 − σ))`, `du = grad·g·σ`.
    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (g, u) = (g.detach(), u.detach());
        let sig = candle_nn::ops::sigmoid(&g)?;
        let silu = (&g * &sig)?;
        let dsilu = (&sig * ((&g * (1.0 - &sig)?)? + 1.0)?)?;
        let dg = ((grad * &u)? * dsilu)?;
        let du = (grad * silu)?;
        Ok((Some(dg), Some(du)))
    }
}

/// `silu(g)·u` (the SwiGLU gate of the feed-forward block); when either is tracked, one graph
/// node keeping only `g` and `u`.
pub fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    if !(g.track_op() || u.track_op()) {
        return SwiGlu::forward(g, u);
    }
    g.apply_op2(u, SwiGlu)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Deterministic values in (-1.5, 1.5) (a 64-bit LCG).
    pub(crate) fn values(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed;
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 1.5
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
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

    /// `op` and `reference` agree in value and in the gradient of `sum(y·probe)` with respect
    /// to every variable of `vars`.
    fn same(
        vars: &[&Var],
        op: impl Fn() -> Tensor,
        reference: impl Fn() -> Tensor,
        probe_seed: u64,
    ) {
        let (y, r) = (op(), reference());
        assert!(max_diff(&y, &r) < 1e-12, "values differ");
        let probe = values(y.dims(), probe_seed);
        let gy = (&y * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gr = (&r * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in vars {
            let (a, b) = (gy.get(v.as_tensor()), gr.get(v.as_tensor()));
            let (a, b) = (a.expect("op gradient"), b.expect("reference gradient"));
            assert!(
                max_diff(a, b) < 1e-12,
                "gradients differ by {}",
                max_diff(a, b)
            );
        }
    }

    #[test]
    fn frozen_rms_norm_matches_the_composed_norm() {
        let x = Var::from_tensor(&values(&[2, 3, 8], 1)).unwrap();
        let w = values(&[8], 2);
        let composed = || {
            let x = x.as_tensor();
            let r = (x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6)
                .unwrap()
                .sqrt()
                .unwrap()
                .recip()
                .unwrap();
            const_mul(&x.broadcast_mul(&r).unwrap(), &w).unwrap()
        };
        same(
            &[&x],
            || frozen_rms_norm(x.as_tensor(), &w, 1e-6).unwrap(),
            composed,
            3,
        );
    }

    #[test]
    fn rope_matches_the_composed_rotation() {
        let x = Var::from_tensor(&values(&[1, 2, 5, 8], 4)).unwrap();
        let (cos, sin) = (values(&[5, 4], 5), values(&[5, 4], 6));
        let composed = || {
            let x = x.as_tensor();
            let c = Tensor::cat(&[&cos, &cos], D::Minus1).unwrap();
            let s = Tensor::cat(&[&sin, &sin], D::Minus1).unwrap();
            let x1 = x.narrow(D::Minus1, 0, 4).unwrap();
            let x2 = x.narrow(D::Minus1, 4, 4).unwrap();
            let rot = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
            (const_mul(x, &c).unwrap() + const_mul(&rot, &s).unwrap()).unwrap()
        };
        same(
            &[&x],
            || rope(x.as_tensor(), &cos, &sin).unwrap(),
            composed,
            7,
        );
    }

    #[test]
    fn swiglu_matches_silu_times_up() {
        let g = Var::from_tensor(&values(&[4, 6], 8)).unwrap();
        let u = Var::from_tensor(&values(&[4, 6], 9)).unwrap();
        same(
            &[&g, &u],
            || swiglu(g.as_tensor(), u.as_tensor()).unwrap(),
            || (g.as_tensor().silu().unwrap() * u.as_tensor()).unwrap(),
            10,
        );
    }

    #[test]
    fn untracked_inputs_skip_the_graph() {
        let x = values(&[2, 8], 11);
        let y = frozen_rms_norm(&x, &values(&[8], 12), 1e-6).unwrap();
        assert!(!y.track_op());
        let y = swiglu(&x, &x).unwrap();
        assert!(!y.track_op());
    }
}
