//! Errors of the trainer.

use std::path::PathBuf;

/// Everything that can stop a training run. Messages name the file, line, setting or step
/// concerned.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An invalid setting (the message names the key).
    #[error("invalid setting: {0}")]
    Config(String),
    /// A bad line of the training data.
    #[error("{}:{line}: {msg}", path.display())]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The training data as a whole is unusable (empty, unreadable).
    #[error("{}: {msg}", path.display())]
    Dataset {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Resuming with a setting that differs from the run already in the output directory.
    #[error(
        "{}: the run there was started with {key} = {before}, now {key} = {now}; \
         use another --out or the same settings",
        out.display()
    )]
    Resume {
        /// The output directory.
        out: PathBuf,
        /// The setting that changed.
        key: String,
        /// Its value in the existing run.
        before: String,
        /// Its value now.
        now: String,
    },
    /// The loss or the gradient became NaN or infinite.
    #[error(
        "step {step}: the {what} is {value} (not finite); training stopped, {kept} \
         (try a lower --lr or --max-grad-norm)"
    )]
    NonFinite {
        /// 1-based optimiser step.
        step: usize,
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The value seen.
        value: f64,
        /// What was kept on disk.
        kept: String,
    },
    /// The external launcher (`--backend trl`) failed.
    #[error("launcher `{command}` failed ({status}); last output:\n{tail}")]
    Launcher {
        /// The command line run.
        command: String,
        /// Exit status, as text.
        status: String,
        /// The last lines it printed.
        tail: String,
    },
    /// A checkpoint that cannot be used.
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Model, tokenizer or adapter files.
    #[error(transparent)]
    Engine(#[from] nxt_engine::EngineError),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    /// File I/O.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}
