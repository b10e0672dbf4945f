//! The engine's error type.

/// Errors of loading, running and saving a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Model files (weights, config, tokenizer, chat template, adapter) missing or malformed, or
    /// a tensor operation failed.
    #[error("model error: {0}")]
    Model(String),
    /// The input is invalid for this model (a chat template that rejects the messages, text
    /// the tokenizer cannot encode).
    #[error("invalid request: {0}")]
    Request(String),
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Model(format!("candle: {e}"))
    }
}
