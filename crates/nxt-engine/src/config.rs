//! `config.json` parsing for Qwen2-family and Llama models.
//!
//! Accepts both the older transformers layout (`rope_theta`, `rope_scaling` at the top level)
//! and the transformers 5.x layout (`rope_parameters: {rope_theta, rope_type, ...}`,
//! `sliding_window: null`, `dtype` instead of `torch_dtype`).

use std::path::Path;

use serde_json::Value;

use crate::EngineError;

/// Model architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Arch {
    /// Qwen2, Qwen2.5, Qwen2.5-Coder (q/k/v projections carry a bias).
    Qwen2,
    /// Llama 2/3 and compatible (optional `attention_bias`).
    Llama,
}

/// RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// Scale factor.
        factor: f64,
    },
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        /// Scale factor.
        factor: f64,
        /// Low-frequency factor.
        low_freq_factor: f64,
        /// High-frequency factor.
        high_freq_factor: f64,
        /// Context length the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
}

/// The model hyper-parameters the engine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Longest supported context.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// The LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have a bias.
    pub attention_bias: bool,
    /// o projection has a bias (Llama `attention_bias` applies to it as well).
    pub o_bias: bool,
    /// MLP projections have a bias.
    pub mlp_bias: bool,
    /// BOS token id, if any.
    pub bos_token_id: Option<u32>,
    /// EOS token ids (config.json may give one or a list).
    pub eos_token_ids: Vec<u32>,
}

fn err(path: &str, msg: impl std::fmt::Display) -> EngineError {
    EngineError::Model(format!("{path}: {msg}"))
}

fn get_usize(v: &Value, key: &str, path: &str) -> Result<Option<usize>, EngineError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            err(
                path,
                format!("`{key}` must be a non-negative integer, got {x}"),
            )
        }),
    }
}

fn req_usize(v: &Value, key: &str, path: &str) -> Result<usize, EngineError> {
    get_usize(v, key, path)?.ok_or_else(|| err(path, format!("missing required field `{key}`")))
}

fn get_f64(v: &Value, key: &str, path: &str) -> Result<Option<f64>, EngineError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| err(path, format!("`{key}` must be a number, got {x}"))),
    }
}

fn get_bool(v: &Value, key: &str, path: &str) -> Result<Option<bool>, EngineError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_bool()
            .map(Some)
            .ok_or_else(|| err(path, format!("`{key}` must be a boolean, got {x}"))),
    }
}

/// The end-of-sequence ids of `dir/generation_config.json` (none when the file is absent).
pub fn generation_eos_ids(dir: &std::path::Path) -> Result<Vec<u32>, EngineError> {
    let p = dir.join("generation_config.json");
    if !p.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&p)
        .map_err(|e| EngineError::Model(format!("{}: cannot read: {e}", p.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::Model(format!("{}: invalid JSON: {e}", p.display())))?;
    token_ids(
        v.get("eos_token_id"),
        "eos_token_id",
        &p.display().to_string(),
    )
}

/// Token ids given as one integer or a list (`eos_token_id` in config/generation_config).
fn token_ids(v: Option<&Value>, key: &str, path: &str) -> Result<Vec<u32>, EngineError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|x| vec![x as u32])
            .ok_or_else(|| err(path, format!("`{key}` must be a token id, got {n}"))),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_u64()
                    .map(|x| x as u32)
                    .ok_or_else(|| err(path, format!("`{key}` entries must be token ids, got {x}")))
            })
            .collect(),
        Some(x) => Err(err(
            path,
            format!("`{key}` must be an id or a list of ids, got {x}"),
        )),
    }
}

fn parse_rope_scaling(s: &Value, path: &str) -> Result<RopeScaling, EngineError> {
    if s.is_null() {
        return Ok(RopeScaling::None);
    }
    let ty = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = || {
        get_f64(s, "factor", path)?
            .ok_or_else(|| err(path, format!("rope scaling `{ty}` needs `factor`")))
    };
    match ty {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: factor()? }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: get_f64(s, "low_freq_factor", path)?.unwrap_or(1.0),
            high_freq_factor: get_f64(s, "high_freq_factor", path)?.unwrap_or(4.0),
            original_max_position_embeddings: get_f64(s, "original_max_position_embeddings", path)?
                .unwrap_or(8192.0),
        }),
        other => Err(err(
            path,
            format!("unsupported RoPE scaling type `{other}` (supported: default, linear, llama3)"),
        )),
    }
}

impl ModelConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, EngineError> {
        let p = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| err(&p, format!("cannot read: {e}")))?;
        Self::from_json_str(&text, &p)
    }

    /// Parses the text of a `config.json`; `path` is used in error messages.
    pub fn from_json_str(text: &str, path: &str) -> Result<Self, EngineError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| err(path, format!("invalid JSON: {e}")))?;
        // Multimodal configs nest the language model under `text_config`.
        let v = match v.get("text_config") {
            Some(t) if t.is_object() => t.clone(),
            _ => v,
        };
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let archs: Vec<&str> = v
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let arch = match model_type {
            "qwen2" => Arch::Qwen2,
            "llama" | "mistral" => Arch::Llama,
            _ if archs.iter().any(|a| a.starts_with("Qwen2")) => Arch::Qwen2,
            _ if archs.iter().any(|a| a.starts_with("Llama") || a.starts_with("Mistral")) => {
                Arch::Llama
            }
            other => {
                return Err(err(
                    path,
                    format!(
                        "unsupported model_type `{other}` (architectures {archs:?}); the embedded \
                         engine supports qwen2 and llama; use an OpenAI-compatible server for others"
                    ),
                ))
            }
        };
        if let Some(act) = v.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(err(
                    path,
                    format!("unsupported hidden_act `{act}` (only silu)"),
                ));
            }
        }
        let hidden_size = req_usize(&v, "hidden_size", path)?;
        let num_attention_heads = req_usize(&v, "num_attention_heads", path)?;
        if num_attention_heads == 0 {
            return Err(err(path, "`num_attention_heads` must be > 0"));
        }
        let num_key_value_heads =
            get_usize(&v, "num_key_value_heads", path)?.unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(err(
                path,
                format!(
                    "`num_attention_heads` ({num_attention_heads}) must be a multiple of \
                     `num_key_value_heads` ({num_key_value_heads})"
                ),
            ));
        }
        let head_dim =
            get_usize(&v, "head_dim", path)?.unwrap_or(hidden_size / num_attention_heads);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(err(
                path,
                format!("head size {head_dim} must be even and > 0"),
            ));
        }
        // transformers 5.x: rope_parameters {rope_theta, rope_type, factor, ...}.
        let (rope_theta, rope_scaling) = match v.get("rope_parameters") {
            Some(rp) if rp.is_object() => (
                get_f64(rp, "rope_theta", path)?
                    .or(get_f64(&v, "rope_theta", path)?)
                    .unwrap_or(10000.0),
                parse_rope_scaling(rp, path)?,
            ),
            _ => (
                get_f64(&v, "rope_theta", path)?.unwrap_or(10000.0),
                parse_rope_scaling(v.get("rope_scaling").unwrap_or(&Value::Null), path)?,
            ),
        };
        if get_bool(&v, "use_sliding_window", path)?.unwrap_or(false) {
            return Err(err(
                path,
                "`use_sliding_window: true` is not supported by the embedded engine",
            ));
        }
        let attention_bias = get_bool(&v, "attention_bias", path)?;
        let (qkv_bias, o_bias) = match arch {
            Arch::Qwen2 => (true, false),
            Arch::Llama => (
                attention_bias.unwrap_or(false),
                attention_bias.unwrap_or(false),
            ),
        };
        Ok(Self {
            arch,
            vocab_size: req_usize(&v, "vocab_size", path)?,
            hidden_size,
            intermediate_size: req_usize(&v, "intermediate_size", path)?,
            num_hidden_layers: req_usize(&v, "num_hidden_layers", path)?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: get_usize(&v, "max_position_embeddings", path)?
                .unwrap_or(32768),
            rms_norm_eps: get_f64(&v, "rms_norm_eps", path)?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            tie_word_embeddings: get_bool(&v, "tie_word_embeddings", path)?.unwrap_or(false),
            attention_bias: qkv_bias,
            o_bias,
            mlp_bias: get_bool(&v, "mlp_bias", path)?.unwrap_or(false),
            bos_token_id: token_ids(v.get("bos_token_id"), "bos_token_id", path)?
                .first()
                .copied(),
            eos_token_ids: token_ids(v.get("eos_token_id"), "eos_token_id", path)?,
        })
    }

    /// Inverse RoPE frequencies (`head_dim / 2` values), with scaling applied.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        let scaled: Vec<f64> = match &self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        scaled.into_iter().map(|f| f as f32).collect()
    }

    /// Number of parameters (weights and biases).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let i = self.intermediate_size;
        let mut layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
        if self.attention_bias {
            layer += q + 2 * kv;
        }
        if self.o_bias {
            layer += h;
        }
        if self.mlp_bias {
            layer += 2 * i + h;
        }
        let emb = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { emb };
        emb + head + h + self.num_hidden_layers * layer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_layouts_agree() {
        let old = r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":64,
            "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"vocab_size":100,"rope_theta":1000000.0,"rms_norm_eps":1e-6,
            "sliding_window":32768,"use_sliding_window":false,"tie_word_embeddings":true,
            "eos_token_id":7,"torch_dtype":"bfloat16"}"#;
        let new = r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":64,
            "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"vocab_size":100,"rms_norm_eps":1e-6,
            "rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"},
            "sliding_window":null,"use_sliding_window":false,"tie_word_embeddings":true,
            "eos_token_id":[7],"dtype":"bfloat16"}"#;
        let a = ModelConfig::from_json_str(old, "old").unwrap();
        let b = ModelConfig::from_json_str(new, "new").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 1e6);
        assert_eq!(a.head_dim, 16);
        assert_eq!(a.eos_token_ids, vec![7]);
    }

    #[test]
    fn bad_config_names_field() {
        let e = ModelConfig::from_json_str(r#"{"model_type":"qwen2"}"#, "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x/config.json") && e.contains("hidden_size"),
            "{e}"
        );
        let e = ModelConfig::from_json_str(r#"{"model_type":"gpt2"}"#, "c").unwrap_err();
        assert!(e.to_string().contains("gpt2"));
    }

    #[test]
    fn llama3_scaling_parses() {
        let c = r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,
            "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#;
        let c = ModelConfig::from_json_str(c, "c").unwrap();
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { .. }));
        assert_eq!(c.inv_freq().len(), 8);
    }
}
