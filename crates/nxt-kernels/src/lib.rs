//! Fused CPU kernels, each with a backward pass of its own, for the differentiable (training)
//! path of the embedded engine's transformer (`nxt-engine`'s `model`).
//!
//! candle builds a differentiable op out of many small ones; each allocates a full-size tensor
//! in the forward pass and more in the backward pass. Where such a chain sits on the hot path
//! of a training step, a kernel here computes it in one pass and says how its gradient is
//! computed. This crate is compiled at opt-level 3 even in dev and test builds (see the
//! workspace `Cargo.toml`): its loops are the arithmetic, and unoptimised they would cost more
//! than the ops they replace.
//!
//! * [`softmax::masked_softmax`]: `softmax(x * scale + mask)` over the last dimension (the
//!   attention probabilities).
//! * [`gemm::matmul_into`]: `dst [+]= scale·lhs·rhs` on strided CPU slices, for fused ops that
//!   write their output once (the LoRA linear layer).

pub mod gemm;
pub mod softmax;
