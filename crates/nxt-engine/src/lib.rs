//! `nxt-engine`: the candle model behind nxt's embedded generation and its trainer.
//!
//! * [`model`]: a differentiable Qwen2/Llama decoder ([`Transformer`]) with a KV cache, loaded
//!   from a Hugging Face model directory ([`config`], [`weights`]) or built trainable from a
//!   [`candle_nn::VarMap`]; [`ops`] and the LoRA linear layer are its custom ops (frozen
//!   weights keep no gradient); [`dropout`] is the seeded stream of LoRA dropout.
//! * [`adapter`]: PEFT LoRA adapters: read, write, check against vLLM's rules, merge.
//! * [`chat`]: chat templates rendered as transformers does; [`pieces`]: sampled tokens as
//!   text and bytes; [`sampling`]: temperature, top-p, top-k sampling with seeded streams.
//! * [`hub`]: model ids resolved in (or downloaded into) the Hugging Face hub cache.
//! * [`tiny`] (feature `tiny`): tiny random models with a learned tokenizer, written as a model
//!   directory: the CPU demo's model and the tests' models.
//!
//! Generation behind `nxt-llm`'s `Generator` interface is `nxt_llm::engine::Engine`, built on
//! this crate; the trainer (`nxt-train`) uses this crate alone, without the HTTP stack.

pub mod adapter;
pub mod chat;
pub mod config;
pub mod dropout;
mod error;
pub mod hub;
mod lora_linear;
pub mod model;
pub mod ops;
pub mod pieces;
pub mod sampling;
#[cfg(feature = "tiny")]
pub mod tiny;
pub mod weights;

use std::path::{Path, PathBuf};

pub use chat::{ChatMessage, ChatTemplate, TokenizerConfig};
pub use config::{Arch, ModelConfig};
pub use error::EngineError;
pub use model::{KvCache, Llama, Qwen2, Transformer};

/// Resolves a local model directory (it must hold a `config.json`) or a hub id (`Org/Name`,
/// found in or downloaded into the Hugging Face cache, see [`hub`]) to a model directory.
pub fn resolve_model(path_or_id: &str, revision: &str) -> Result<PathBuf, EngineError> {
    let p = Path::new(path_or_id);
    if p.is_dir() {
        if !p.join("config.json").exists() {
            return Err(EngineError::Model(format!(
                "{}: not a model directory (no config.json)",
                p.display()
            )));
        }
        return Ok(p.to_path_buf());
    }
    if hub::looks_like_repo_id(path_or_id) {
        return hub::resolve(path_or_id, revision);
    }
    Err(EngineError::Model(format!(
        "`{path_or_id}` is neither a model directory nor a hub id like `Org/Name`"
    )))
}
