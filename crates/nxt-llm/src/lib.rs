//! `nxt-llm`: text generation behind one [`Generator`] interface.
//!
//! Backends (each in its own module):
//! * `engine`: the embedded engine, generation on `nxt-engine`'s candle model (its own
//!   differentiable Qwen2/Llama, tokenizer, chat templates), sampling `n` completions with a
//!   shared prompt prefix. The default.
//! * `openai`: a client for OpenAI-compatible servers (vLLM, SGLang, llama.cpp, Ollama, OpenAI).
//! * `server`: an OpenAI-compatible HTTP server over any [`Generator`] (`nxt serve`).
//!
//! One HTTP client, reqwest 0.12 (tokio, rustls), serves the OpenAI client, the hub downloads
//! (`nxt_engine::hub`) and the workspace's other crates; the `openai` module doc gives the
//! measurement (ureq beside it added 3 crates, reqwest's blocking API adds 2).
//!
//! The types in this file are the contract shared by the backends and by `nxt-core`.

use serde::{Deserialize, Serialize};

pub mod engine;
pub mod open;
pub mod openai;
pub mod server;

pub use nxt_engine::chat::ChatMessage;
pub use nxt_engine::pieces::TokenPiece;
pub use open::{is_server_spec, open_generator, OpenOptions};

/// A prompt: plain text for completion models, or a chat for instruction-tuned ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Prompt {
    /// Raw text continued by the model (`/v1/completions`).
    Text(String),
    /// Messages rendered with the model's chat template (`/v1/chat/completions`).
    Chat(Vec<ChatMessage>),
}

/// Sampling settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 disables).
    pub top_p: f32,
    /// Keep only the k most likely tokens (None disables).
    pub top_k: Option<usize>,
    /// Most new tokens per completion.
    pub max_tokens: usize,
    /// Generation stops before any of these strings (not included in the text).
    pub stop: Vec<String>,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// Return per-token log-probabilities of the sampled tokens.
    pub logprobs: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            max_tokens: 512,
            stop: Vec::new(),
            seed: None,
            logprobs: false,
        }
    }
}

/// A request for `n` completions of one prompt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Number of samples.
    pub n: usize,
    /// Sampling settings.
    pub params: SamplingParams,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// One sampled completion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Completion {
    /// Generated text (stop string excluded).
    pub text: String,
    /// Tokens in the prompt (as the backend counted them).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Log-probabilities of the sampled tokens, when requested and available.
    pub logprobs: Option<Vec<f32>>,
}

/// Errors of generation backends.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Model files missing or malformed.
    #[error("model error: {0}")]
    Model(String),
    /// Network or server failure after retries.
    #[error("server error: {0}")]
    Server(String),
    /// The request is invalid for this backend.
    #[error("invalid request: {0}")]
    Request(String),
    /// The server refused the request for a reason no retry and no other prompt can fix
    /// (authentication failed, unknown model or route): a run must stop with this message.
    #[error("server refused: {0}")]
    Refused(String),
    /// I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<nxt_engine::EngineError> for LlmError {
    fn from(e: nxt_engine::EngineError) -> Self {
        match e {
            nxt_engine::EngineError::Model(m) => LlmError::Model(m),
            nxt_engine::EngineError::Request(m) => LlmError::Request(m),
        }
    }
}

/// Token totals of a generator since it was created.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenUsage {
    /// Requests answered (HTTP requests for the client, `generate` calls for an engine).
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// A text generator. Implementations are thread-safe; calls may block.
pub trait Generator: Send + Sync {
    /// Human-readable name (model path, hub id or endpoint).
    fn name(&self) -> String;

    /// `request.n` completions of one prompt.
    fn generate(&self, request: &GenerationRequest) -> Result<Vec<Completion>, LlmError>;

    /// Many requests; `on_done(index, result)` is called as each finishes (any order).
    /// Backends that can overlap requests (HTTP) override this.
    fn generate_many(
        &self,
        requests: &[GenerationRequest],
        on_done: &mut dyn FnMut(usize, Result<Vec<Completion>, LlmError>),
    ) {
        for (i, r) in requests.iter().enumerate() {
            on_done(i, self.generate(r));
        }
    }

    /// [`Generator::generate`], with each completion's sampled tokens as text and bytes
    /// where the backend knows them (the embedded engine, when log-probabilities are
    /// requested); `None` otherwise.
    #[allow(clippy::type_complexity)]
    fn generate_with_pieces(
        &self,
        request: &GenerationRequest,
    ) -> Result<Vec<(Completion, Option<Vec<TokenPiece>>)>, LlmError> {
        Ok(self
            .generate(request)?
            .into_iter()
            .map(|c| (c, None))
            .collect())
    }

    /// Token totals so far, for backends that count them (`None` otherwise).
    fn usage(&self) -> Option<TokenUsage> {
        None
    }

    /// Checks once, before any work, that the backend can serve at all (a server is
    /// reachable, accepts the credentials and has the model). Backends with nothing to check
    /// return `Ok`.
    fn preflight(&self) -> Result<(), LlmError> {
        Ok(())
    }

    /// The tokens `prompt` takes and the model's context length, for backends that know both
    /// locally (the embedded engine); `None` where only the server knows (HTTP backends).
    fn prompt_fit(&self, _prompt: &Prompt) -> Option<Result<PromptFit, LlmError>> {
        None
    }
}

/// How a prompt fits a model's context (see [`Generator::prompt_fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptFit {
    /// Tokens of the prompt (after the chat template).
    pub prompt_tokens: usize,
    /// The model's context length in tokens.
    pub context: usize,
}

impl PromptFit {
    /// Whether at least one new token can be generated after the prompt.
    pub fn fits(&self) -> bool {
        self.prompt_tokens < self.context
    }
}
