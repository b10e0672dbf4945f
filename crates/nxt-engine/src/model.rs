//! A differentiable decoder-only transformer covering Qwen2 (Qwen2.5, Qwen2.5-Coder) and Llama.
//!
//! Unlike candle-transformers' models, every operation here records gradients when its inputs
//! are variables: RMSNorm, RoPE, SwiGLU and softmax are differentiable ops, those with frozen
//! operands one graph node each that keeps only its input ([`crate::ops`]). That is the
//! default ([`Transformer::fast_kernels`] false), so a trainer can build the model from a
//! [`candle_nn::VarMap`] (see [`Transformer::load_trainable`]) and back-propagate into every
//! weight. For inference, [`Transformer::prepare_for_inference`] switches to candle's fused
//! kernels (which drop gradients) and pre-transposes the weight matrices.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Result, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};

use crate::config::ModelConfig;
use crate::dropout::DropoutRng;
use crate::lora_linear::{fused_lora_linear, DropoutDraw};
pub use crate::ops::{const_add, const_mul, frozen_linear};
use crate::ops::{frozen_rms_norm, rope, swiglu};
use crate::weights::SafetensorsReader;

/// A trainable low-rank branch of a [`Linear`] layer (PEFT LoRA):
/// `y += scaling · (dropout(x)·Aᵀ)·Bᵀ`.
#[derive(Debug, Clone)]
pub struct LoraBranch {
    /// `(r, in)` down-projection (a [`Var`]'s tensor when training).
    pub a: Tensor,
    /// `(out, r)` up-projection (a [`Var`]'s tensor when training).
    pub b: Tensor,
    /// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub scaling: f64,
    /// Dropout probability on the branch's input (training mode only).
    pub dropout: f32,
    /// Dropout stream; `Some` only in training mode.
    rng: Option<DropoutRng>,
}

impl LoraBranch {
    /// A branch from its factors (inference mode: no dropout until
    /// [`Transformer::set_lora_training`]).
    pub fn new(a: Tensor, b: Tensor, scaling: f64, dropout: f32) -> Self {
        Self {
            a,
            b,
            scaling,
            dropout,
            rng: None,
        }
    }

    /// The dropout of a forward over `n` input values: the stream's state, which is then
    /// advanced past the `n` draws (training mode with dropout), or none.
    fn dropout_draw(&self, n: usize) -> Option<DropoutDraw> {
        match &self.rng {
            Some(rng) if self.dropout > 0.0 => {
                let state = rng.state();
                rng.skip(n);
                Some(DropoutDraw {
                    state,
                    p: self.dropout,
                })
            }
            _ => None,
        }
    }

    fn forward(&self, x2: &Tensor) -> Result<Tensor> {
        let x = match &self.rng {
            Some(rng) if self.dropout > 0.0 => {
                let m = rng.mask(x2.elem_count(), self.dropout);
                let m = Tensor::from_vec(m, x2.shape(), x2.device())?.to_dtype(x2.dtype())?;
                (x2 * m)?
            }
            _ => x2.clone(),
        };
        let a = self.a.to_dtype(x.dtype())?;
        let b = self.b.to_dtype(x.dtype())?;
        x.matmul(&a.t()?)?.matmul(&b.t()?)? * self.scaling
    }
}

/// A linear layer `y = x W^T + b` with the weight in the PyTorch `(out, in)` layout.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `(out, in)` weight (the trainable parameter).
    pub weight: Tensor,
    /// Optional `(out,)` bias.
    pub bias: Option<Tensor>,
    /// Contiguous `(in, out)` copy used for inference, when prepared.
    wt: Option<Tensor>,
    /// Optional trainable LoRA branch added to the output.
    pub lora: Option<LoraBranch>,
    /// The weight and bias are frozen constants: the forward goes through [`frozen_linear`],
    /// so no gradient is computed or kept for them.
    pub frozen: bool,
}

impl Linear {
    /// Builds a layer from its parameters.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            wt: None,
            lora: None,
            frozen: false,
        }
    }

    /// Replaces the weight (dropping a prepared transposed copy; call
    /// [`Transformer::prepare_for_inference`] again for the fast path).
    pub fn set_weight(&mut self, weight: Tensor) {
        self.weight = weight;
        self.wt = None;
    }

    /// Output dimension.
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self::new(weight, bias))
    }

    /// Stores a contiguous transposed copy of the weight for fast matmuls (drops the original
    /// layout; gradients still flow if the weight is a variable).
    fn prepare(&mut self) -> Result<()> {
        if self.wt.is_none() {
            self.wt = Some(self.weight.t()?.contiguous()?);
        }
        Ok(())
    }

    /// Input dimension.
    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let y = match (&self.lora, self.frozen) {
            (Some(l), true) => fused_lora_linear(
                &x2,
                &self.weight,
                self.wt.as_ref(),
                self.bias.as_ref(),
                &l.a,
                &l.b,
                l.scaling,
                l.dropout_draw(rows * in_dim),
            )?,
            (lora, frozen) => {
                let y = if frozen {
                    frozen_linear(&x2, &self.weight, self.wt.as_ref(), self.bias.as_ref())?
                } else {
                    let y = match &self.wt {
                        Some(wt) => x2.matmul(wt)?,
                        None => x2.matmul(&self.weight.t()?)?,
                    };
                    match &self.bias {
                        Some(b) => y.broadcast_add(b)?,
                        None => y,
                    }
                };
                match lora {
                    Some(l) => (y + l.forward(&x2)?)?,
                    None => y,
                }
            }
        };
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = y.dims()[1];
        y.reshape(out_dims)
    }
}

/// Root-mean-square layer norm.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// Scale parameter.
    pub weight: Tensor,
    /// Epsilon.
    pub eps: f64,
    /// The scale is a frozen constant (no gradient computed for it).
    pub frozen: bool,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor, fast: bool) -> Result<Tensor> {
        if fast {
            return candle_nn::ops::rms_norm(x, &self.weight, self.eps as f32);
        }
        if self.frozen {
            return frozen_rms_norm(x, &self.weight, self.eps);
        }
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (ms + self.eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(&self.weight)
    }
}

/// Differentiable softmax over the last dimension (the subtracted maximum gets no gradient).
pub fn softmax_last_dim_slow(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.neg()?;
    let e = const_add(x, &max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// Differentiable `softmax(scores * scale + mask)` over the last dimension, for `scores:
/// (b, n_kv, rep * t, l)` and a `(t, l)` mask. On CPU one fused op ([`nxt_kernels::softmax`]):
/// composed of separate steps, each would allocate (and, backwards, accumulate) an
/// attention-sized tensor. Elsewhere composed of tensor ops, to the same values and gradients.
fn masked_softmax(scores: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    if nxt_kernels::softmax::fused(scores) {
        return nxt_kernels::softmax::masked_softmax(scores, mask, scale);
    }
    let scaled = (scores * scale)?;
    let scaled = match mask {
        Some(m) => {
            let (b, n_kv, rows, l) = scaled.dims4()?;
            let t = m.dim(0)?;
            let s = scaled.reshape((b, n_kv, rows / t, t, l))?;
            const_add(&s, m)?.reshape((b, n_kv, rows, l))?
        }
        None => scaled,
    };
    softmax_last_dim_slow(&scaled)
}

/// RoPE `cos`/`sin` tables for the positions `pos..pos+t`, each `(t, head_dim/2)`.
fn rope_tables(
    inv_freq: &[f32],
    pos: usize,
    t: usize,
    dev: &Device,
    dt: DType,
) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in pos..pos + t {
        for &f in inv_freq {
            // Same precision as transformers: position * inv_freq in f32.
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (t, half), dev)?.to_dtype(dt)?;
    let sin = Tensor::from_vec(sin, (t, half), dev)?.to_dtype(dt)?;
    Ok((cos, sin))
}

/// Rotary embedding (`rotate_half` convention) of `x: (b, h, t, d)`.
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor, fast: bool) -> Result<Tensor> {
    let x = x.contiguous()?;
    if fast {
        return candle_nn::rotary_emb::rope(&x, cos, sin);
    }
    rope(&x, cos, sin)
}

/// Key/value cache of one layer: preallocated `(b, kv_heads, capacity, head_dim)` buffers.
#[derive(Debug, Clone)]
struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// Key/value cache for all layers (inference only: writes in place, records no gradient).
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `batch` sequences of up to `capacity` tokens.
    pub fn new(model: &Transformer, batch: usize, capacity: usize) -> Result<Self> {
        let c = &model.cfg;
        let shape = (batch, c.num_key_value_heads, capacity, c.head_dim);
        let layers = (0..c.num_hidden_layers)
            .map(|_| {
                Ok(LayerCache {
                    k: Tensor::zeros(shape, model.dtype, &model.device)?,
                    v: Tensor::zeros(shape, model.dtype, &model.device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: 0,
            capacity,
        })
    }

    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.layers.first().map(|l| l.k.dims()[0]).unwrap_or(0)
    }

    /// Keeps only the batch rows in `rows` (in that order; a row may repeat, which is how one
    /// prefilled prompt is shared by `n` samples).
    pub fn select(&mut self, rows: &[u32]) -> Result<()> {
        let Some(first) = self.layers.first() else {
            return Ok(());
        };
        let idx = Tensor::new(rows, first.k.device())?;
        for l in &mut self.layers {
            l.k = l.k.index_select(&idx, 0)?.contiguous()?;
            l.v = l.v.index_select(&idx, 0)?.contiguous()?;
        }
        Ok(())
    }
}

/// Grouped-query self-attention.
#[derive(Debug, Clone)]
pub struct Attention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    n_heads: usize,
    n_kv: usize,
    head_dim: usize,
}

impl Attention {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut LayerCache, usize)>,
        fast: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hd = self.head_dim;
        let q = self
            .q_proj
            .forward(x)?
            .reshape((b, t, self.n_heads, hd))?
            .transpose(1, 2)?;
        let k = self
            .k_proj
            .forward(x)?
            .reshape((b, t, self.n_kv, hd))?
            .transpose(1, 2)?;
        let v = self
            .v_proj
            .forward(x)?
            .reshape((b, t, self.n_kv, hd))?
            .transpose(1, 2)?;
        let q = apply_rope(&q, cos, sin, fast)?;
        let k = apply_rope(&k, cos, sin, fast)?;
        let (k, v) = match cache {
            Some((c, pos)) => {
                let v = v.contiguous()?;
                c.k.slice_set(&k, 2, pos)?;
                c.v.slice_set(&v, 2, pos)?;
                (c.k.narrow(2, 0, pos + t)?, c.v.narrow(2, 0, pos + t)?)
            }
            None => (k, v.contiguous()?),
        };
        let l = k.dim(2)?;
        let rep = self.n_heads / self.n_kv;
        // Heads h = kv * rep + r share kv head `kv`: fold the `rep` query heads into rows
        // instead of copying the keys/values `rep` times.
        let q = q.reshape((b, self.n_kv, rep * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = q.matmul(&k.t()?)?;
        let att = if fast {
            let att = (scores * scale)?;
            let att = match mask {
                Some(m) => att
                    .reshape((b, self.n_kv, rep, t, l))?
                    .broadcast_add(m)?
                    .reshape((b, self.n_kv, rep * t, l))?,
                None => att,
            };
            candle_nn::ops::softmax_last_dim(&att)?
        } else {
            masked_softmax(&scores, mask, scale)?
        };
        let y = att.matmul(&v)?; // (b, n_kv, rep*t, hd)
        let y = y
            .reshape((b, self.n_heads, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, self.n_heads * hd))?;
        self.o_proj.forward(&y)
    }
}

/// SwiGLU feed-forward block.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
    /// Fused `[gate; up]` for inference.
    gate_up: Option<Linear>,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(gu) = &self.gate_up {
            let y = gu.forward(x)?;
            let i = y.dim(D::Minus1)? / 2;
            let g = y.narrow(D::Minus1, 0, i)?;
            let u = y.narrow(D::Minus1, i, i)?;
            return self.down_proj.forward(&(g.silu()? * u)?);
        }
        let g = self.gate_proj.forward(x)?;
        let u = self.up_proj.forward(x)?;
        self.down_proj.forward(&swiglu(&g, &u)?)
    }
}

/// One decoder layer.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    /// Pre-attention norm.
    pub input_layernorm: RmsNorm,
    /// Self-attention.
    pub self_attn: Attention,
    /// Pre-MLP norm.
    pub post_attention_layernorm: RmsNorm,
    /// Feed-forward block.
    pub mlp: Mlp,
}

/// The decoder-only transformer (Qwen2 or Llama, per [`ModelConfig::arch`]).
#[derive(Debug, Clone)]
pub struct Transformer {
    /// Hyper-parameters.
    pub cfg: ModelConfig,
    /// `(vocab, hidden)` token embedding.
    pub embed_tokens: Tensor,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// Final norm.
    pub norm: RmsNorm,
    /// LM head (shares the embedding when the weights are tied).
    pub lm_head: Linear,
    /// Use candle's fused RMSNorm/RoPE/softmax kernels (no gradients). False by default.
    pub fast_kernels: bool,
    /// The LM head is the embedding matrix.
    pub tied: bool,
    inv_freq: Vec<f32>,
    device: Device,
    dtype: DType,
}

/// The Qwen2 family (Qwen2, Qwen2.5, Qwen2.5-Coder).
pub type Qwen2 = Transformer;
/// Llama 2/3.
pub type Llama = Transformer;

/// Safetensors files of a model directory: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`, or every `*.safetensors` file.
pub fn safetensors_files(dir: &Path) -> std::result::Result<Vec<PathBuf>, crate::EngineError> {
    let err = |m: String| crate::EngineError::Model(m);
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| err(format!("{}: cannot read: {e}", index.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err(format!("{}: invalid JSON: {e}", index.display())))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| err(format!("{}: missing object `weight_map`", index.display())))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| {
                err(format!(
                    "{}: weight_map[{name}] is not a file name",
                    index.display()
                ))
            })?;
            let p = dir.join(f);
            if !files.contains(&p) {
                if !p.exists() {
                    return Err(err(format!(
                        "{}: shard {f} (for {name}) is missing",
                        index.display()
                    )));
                }
                files.push(p);
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(format!("{}: cannot list: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err(format!(
            "{}: no model.safetensors, model.safetensors.index.json or *.safetensors files \
             (only safetensors weights are supported)",
            dir.display()
        )));
    }
    Ok(files)
}

impl Transformer {
    /// Builds the model from a [`VarBuilder`] using Hugging Face parameter names
    /// (`model.layers.0.self_attn.q_proj.weight`, ...). With a `VarMap`-backed builder the
    /// parameters are variables and gradients reach all of them.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let q_dim = cfg.num_attention_heads * cfg.head_dim;
        let kv_dim = cfg.num_key_value_heads * cfg.head_dim;
        let m = vb.pp("model");
        let embed_tokens = m.pp("embed_tokens").get((cfg.vocab_size, h), "weight")?;
        let norm = |vb: VarBuilder| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: vb.get(h, "weight")?,
                eps: cfg.rms_norm_eps,
                frozen: false,
            })
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp("layers").pp(i);
            let a = l.pp("self_attn");
            let p = l.pp("mlp");
            layers.push(DecoderLayer {
                input_layernorm: norm(l.pp("input_layernorm"))?,
                post_attention_layernorm: norm(l.pp("post_attention_layernorm"))?,
                self_attn: Attention {
                    q_proj: Linear::load(&a.pp("q_proj"), h, q_dim, cfg.attention_bias)?,
                    k_proj: Linear::load(&a.pp("k_proj"), h, kv_dim, cfg.attention_bias)?,
                    v_proj: Linear::load(&a.pp("v_proj"), h, kv_dim, cfg.attention_bias)?,
                    o_proj: Linear::load(&a.pp("o_proj"), q_dim, h, cfg.o_bias)?,
                    n_heads: cfg.num_attention_heads,
                    n_kv: cfg.num_key_value_heads,
                    head_dim: cfg.head_dim,
                },
                mlp: Mlp {
                    gate_proj: Linear::load(
                        &p.pp("gate_proj"),
                        h,
                        cfg.intermediate_size,
                        cfg.mlp_bias,
                    )?,
                    up_proj: Linear::load(
                        &p.pp("up_proj"),
                        h,
                        cfg.intermediate_size,
                        cfg.mlp_bias,
                    )?,
                    down_proj: Linear::load(
                        &p.pp("down_proj"),
                        cfg.intermediate_size,
                        h,
                        cfg.mlp_bias,
                    )?,
                    gate_up: None,
                },
            });
        }
        let norm = norm(m.pp("norm"))?;
        let tied = cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight");
        let lm_head = if tied {
            Linear::new(embed_tokens.clone(), None)
        } else {
            Linear::load(&vb.pp("lm_head"), h, cfg.vocab_size, false)?
        };
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            fast_kernels: false,
            tied,
            inv_freq: cfg.inv_freq(),
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// Loads the weights of a model directory as constants (bf16/f16 converted to `dtype`).
    pub fn load_dir(
        dir: &Path,
        cfg: &ModelConfig,
        dtype: DType,
        device: &Device,
    ) -> std::result::Result<Self, crate::EngineError> {
        let vb = SafetensorsReader::open(&safetensors_files(dir)?)?.into_var_builder(dtype, device);
        Self::new(cfg, vb).map_err(|e| {
            crate::EngineError::Model(format!(
                "{}: weights do not match config.json: {e}",
                dir.display()
            ))
        })
    }

    /// Loads a model directory with every weight a [`Var`] in the returned [`VarMap`] (keyed
    /// by the Hugging Face names), ready for full fine-tuning; `fast_kernels` stays off so
    /// gradients reach every weight.
    pub fn load_trainable(
        dir: &Path,
        cfg: &ModelConfig,
        dtype: DType,
        device: &Device,
    ) -> std::result::Result<(Self, VarMap), crate::EngineError> {
        let me =
            |e: candle_core::Error| crate::EngineError::Model(format!("{}: {e}", dir.display()));
        let varmap = VarMap::new();
        let weights = SafetensorsReader::open(&safetensors_files(dir)?)?;
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| crate::EngineError::Model("VarMap lock poisoned".into()))?;
            for name in weights.names() {
                let t = weights
                    .load(name, device)
                    .map_err(me)?
                    .to_dtype(dtype)
                    .map_err(me)?;
                data.insert(name.clone(), Var::from_tensor(&t).map_err(me)?);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        let model = Self::new(cfg, vb).map_err(|e| {
            crate::EngineError::Model(format!(
                "{}: weights do not match config.json: {e}",
                dir.display()
            ))
        })?;
        Ok((model, varmap))
    }

    /// Switches to fused kernels and pre-transposed, fused weights for fast inference.
    /// Gradients no longer flow through the norms, RoPE and softmax afterwards.
    pub fn prepare_for_inference(&mut self) -> Result<()> {
        self.fast_kernels = true;
        for l in &mut self.layers {
            let a = &mut l.self_attn;
            for lin in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj] {
                lin.prepare()?;
            }
            let m = &mut l.mlp;
            m.down_proj.prepare()?;
            let has_lora = m.gate_proj.lora.is_some() || m.up_proj.lora.is_some();
            if has_lora {
                m.gate_proj.prepare()?;
                m.up_proj.prepare()?;
            } else if m.gate_up.is_none() {
                let w = Tensor::cat(&[&m.gate_proj.weight, &m.up_proj.weight], 0)?;
                let b = match (&m.gate_proj.bias, &m.up_proj.bias) {
                    (Some(g), Some(u)) => Some(Tensor::cat(&[g, u], 0)?),
                    _ => None,
                };
                let mut gu = Linear::new(w, b);
                gu.prepare()?;
                m.gate_up = Some(gu);
            }
        }
        self.lm_head.prepare()
    }

    /// The projection `module` (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj` or `down_proj`) of decoder layer `layer`.
    pub fn linear(&self, layer: usize, module: &str) -> Option<&Linear> {
        let l = self.layers.get(layer)?;
        Some(match module {
            "q_proj" => &l.self_attn.q_proj,
            "k_proj" => &l.self_attn.k_proj,
            "v_proj" => &l.self_attn.v_proj,
            "o_proj" => &l.self_attn.o_proj,
            "gate_proj" => &l.mlp.gate_proj,
            "up_proj" => &l.mlp.up_proj,
            "down_proj" => &l.mlp.down_proj,
            _ => return None,
        })
    }

    /// Mutable access to a projection (see [`Transformer::linear`]). The fused inference copy
    /// of `gate_proj`/`up_proj` is dropped, so changes to either take effect; call
    /// [`Transformer::prepare_for_inference`] again for the fast path.
    pub fn linear_mut(&mut self, layer: usize, module: &str) -> Option<&mut Linear> {
        let l = self.layers.get_mut(layer)?;
        Some(match module {
            "q_proj" => &mut l.self_attn.q_proj,
            "k_proj" => &mut l.self_attn.k_proj,
            "v_proj" => &mut l.self_attn.v_proj,
            "o_proj" => &mut l.self_attn.o_proj,
            "gate_proj" => {
                l.mlp.gate_up = None;
                &mut l.mlp.gate_proj
            }
            "up_proj" => {
                l.mlp.gate_up = None;
                &mut l.mlp.up_proj
            }
            "down_proj" => &mut l.mlp.down_proj,
            _ => return None,
        })
    }

    /// Marks every base weight (projections, norms, LM head) as a frozen constant, so the
    /// backward pass computes gradients only for what is added on top (LoRA branches). For
    /// training with a frozen base; a model whose weights are all variables (full fine-tuning)
    /// keeps `false`.
    pub fn set_frozen(&mut self, frozen: bool) {
        for l in &mut self.layers {
            l.input_layernorm.frozen = frozen;
            l.post_attention_layernorm.frozen = frozen;
            let a = &mut l.self_attn;
            for lin in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj] {
                lin.frozen = frozen;
            }
            let m = &mut l.mlp;
            for lin in [&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj] {
                lin.frozen = frozen;
            }
        }
        self.norm.frozen = frozen;
        self.lm_head.frozen = frozen;
    }

    /// Training mode for the LoRA branches: `Some(rng)` turns dropout on, drawing masks from
    /// `rng`; `None` is inference mode (no dropout).
    pub fn set_lora_training(&mut self, rng: Option<DropoutRng>) {
        for l in &mut self.layers {
            let a = &mut l.self_attn;
            let m = &mut l.mlp;
            for lin in [
                &mut a.q_proj,
                &mut a.k_proj,
                &mut a.v_proj,
                &mut a.o_proj,
                &mut m.gate_proj,
                &mut m.up_proj,
                &mut m.down_proj,
            ] {
                if let Some(b) = &mut lin.lora {
                    b.rng = rng.clone();
                }
            }
        }
    }

    /// Every parameter with its Hugging Face name (the tied LM head is listed once, as the
    /// embedding).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.clone(),
        )];
        let lin = |out: &mut Vec<(String, Tensor)>, p: String, l: &Linear| {
            out.push((format!("{p}.weight"), l.weight.clone()));
            if let Some(b) = &l.bias {
                out.push((format!("{p}.bias"), b.clone()));
            }
        };
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                l.input_layernorm.weight.clone(),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                l.post_attention_layernorm.weight.clone(),
            ));
            let a = &l.self_attn;
            lin(&mut out, format!("{p}.self_attn.q_proj"), &a.q_proj);
            lin(&mut out, format!("{p}.self_attn.k_proj"), &a.k_proj);
            lin(&mut out, format!("{p}.self_attn.v_proj"), &a.v_proj);
            lin(&mut out, format!("{p}.self_attn.o_proj"), &a.o_proj);
            lin(&mut out, format!("{p}.mlp.gate_proj"), &l.mlp.gate_proj);
            lin(&mut out, format!("{p}.mlp.up_proj"), &l.mlp.up_proj);
            lin(&mut out, format!("{p}.mlp.down_proj"), &l.mlp.down_proj);
        }
        out.push(("model.norm.weight".into(), self.norm.weight.clone()));
        if !self.tied {
            out.push(("lm_head.weight".into(), self.lm_head.weight.clone()));
        }
        out
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Hidden states after the final norm, `(b, t, hidden)`, for `tokens: (b, t)` (u32) at
    /// positions `pos..pos+t`. With a cache, the keys/values are appended to it and attention
    /// covers everything cached.
    pub fn forward_hidden(
        &self,
        tokens: &Tensor,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let pos = cache.as_ref().map(|c| c.len).unwrap_or(0);
        if let Some(c) = cache.as_ref() {
            if c.batch() != b {
                candle_core::bail!("cache batch {} != input batch {b}", c.batch());
            }
            if pos + t > c.capacity {
                candle_core::bail!("cache capacity {} exceeded ({} + {t})", c.capacity, pos);
            }
        }
        let fast = self.fast_kernels;
        let mut x = self
            .embed_tokens
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, t, self.cfg.hidden_size))?;
        let (cos, sin) = rope_tables(&self.inv_freq, pos, t, &self.device, self.dtype)?;
        let mask = if t > 1 {
            let l = pos + t;
            let m: Vec<f32> = (0..t)
                .flat_map(|i| {
                    (0..l).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(m, (t, l), &self.device)?.to_dtype(self.dtype)?)
        } else {
            None
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let residual = &x;
            let h = layer.input_layernorm.forward(&x, fast)?;
            let lc = cache.as_deref_mut().map(|c| (&mut c.layers[i], pos));
            let h = layer
                .self_attn
                .forward(&h, &cos, &sin, mask.as_ref(), lc, fast)?;
            let x1 = (residual + h)?;
            let h = layer.post_attention_layernorm.forward(&x1, fast)?;
            let h = layer.mlp.forward(&h)?;
            x = (x1 + h)?;
        }
        if let Some(c) = cache {
            c.len = pos + t;
        }
        self.norm.forward(&x, fast)
    }

    /// Logits `(b, t, vocab)` for every position.
    pub fn forward(&self, tokens: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let h = self.forward_hidden(tokens, cache)?;
        self.lm_head.forward(&h)
    }

    /// Logits `(b, vocab)` of the last position only (what sampling needs).
    pub fn forward_last(&self, tokens: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let h = self.forward_hidden(tokens, cache)?;
        let t = h.dim(1)?;
        let last = h.narrow(1, t - 1, 1)?.squeeze(1)?;
        self.lm_head.forward(&last)
    }
}

/// Parameter tensors keyed by name (for saving with `candle_core::safetensors::save`).
pub fn parameters_map(model: &Transformer) -> HashMap<String, Tensor> {
    model.named_parameters().into_iter().collect()
}
