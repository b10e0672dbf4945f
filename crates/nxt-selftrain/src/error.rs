//! Errors of the self-training loop.

/// Everything that can stop a self-training run. The run store stays consistent whatever the
/// error: rerunning the same command resumes.
#[derive(Debug, thiserror::Error)]
pub enum SelftrainError {
    /// A configuration setting is wrong.
    #[error("config: {}{message}", if key.is_empty() { String::new() } else { format!("`{key}`: ") })]
    Config {
        /// The dotted key (`sampling.temperature`), empty when unknown.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// The run directory holds a run with another configuration.
    #[error("the run directory holds a run whose `{key}` was {old}, now {new}; use another --run-dir or change it back")]
    ConfigChanged {
        /// The dotted key that differs.
        key: String,
        /// Stored value (JSON).
        old: String,
        /// Requested value (JSON).
        new: String,
    },
    /// Sampling, grading or evaluation failed.
    #[error(transparent)]
    Core(#[from] nxt_core::CoreError),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] nxt_core::store::StoreError),
    /// Loading data failed.
    #[error(transparent)]
    Data(#[from] nxt_data::DataError),
    /// A generator (engine or server) failed.
    #[error(transparent)]
    Llm(#[from] nxt_llm::LlmError),
    /// Model files, the tokenizer or the chat template of a model (the engine's message).
    #[error(transparent)]
    Engine(#[from] nxt_engine::EngineError),
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] nxt_sandbox::SandboxError),
    /// Fine-tuning failed (the trainer's message).
    #[error("training ({stage}): {source}")]
    Train {
        /// Which training stage (`warm start`, `iteration 2`).
        stage: String,
        /// The trainer's error.
        #[source]
        source: nxt_train::TrainError,
    },
    /// The toy benchmark could not be prepared.
    #[error("toy benchmark: {0}")]
    Toy(String),
    /// The loop's own ledger failed.
    #[error("ledger {path}: {message}")]
    Ledger {
        /// The database file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A server refused an adapter route or could not be reached.
    #[error("server {url}: {message}")]
    Server {
        /// The server.
        url: String,
        /// What failed.
        message: String,
    },
    /// Bad shard arguments or an incomplete set of shards.
    #[error("shard: {0}")]
    Shard(String),
    /// A training task is also a dev or test task.
    #[error("data leak: {0}")]
    Leak(String),
}

impl SelftrainError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        SelftrainError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
