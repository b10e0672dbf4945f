//! Errors of the data crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading, building or grading.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record of a data file is malformed.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the whole file is one JSON document).
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A dataset file is missing from the data directory.
    #[error("dataset `{name}` not found: {path} does not exist ({hint})")]
    Missing {
        /// Dataset name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// An unknown dataset or benchmark name.
    #[error("unknown dataset `{0}` (known: {1})")]
    UnknownDataset(String, String),
    /// A task id that does not name a benchmark and a task in it (`hefix/0`, `mbpp-r/11/0`).
    #[error("task id `{0}`: expected BENCHMARK/ID such as hefix/0")]
    BadTaskId(String),
    /// A well-formed task id that is not in its benchmark.
    #[error("no task {id} in benchmark {benchmark}")]
    UnknownTask {
        /// The id as given.
        id: String,
        /// The benchmark searched.
        benchmark: String,
    },
    /// A download failed.
    #[error("download of `{name}` from {url} failed: {message}")]
    Download {
        /// Dataset name.
        name: String,
        /// URL.
        url: String,
        /// What went wrong, with a hint.
        message: String,
    },
    /// A checksum did not match its pin.
    #[error("{path}: sha256 {actual} does not match the pinned {expected}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// The executor failed (not the program under test).
    #[error("executor: {0}")]
    Sandbox(#[from] nxt_sandbox::SandboxError),
    /// Computing reference outputs failed.
    #[error("reference outputs for {task}: {message}")]
    Reference {
        /// Task id.
        task: String,
        /// What went wrong.
        message: String,
    },
    /// The SQLite grade store failed.
    #[error("grade store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// Invalid argument or inconsistent input.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}

pub(crate) fn malformed(
    path: &std::path::Path,
    line: usize,
    message: impl Into<String>,
) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}
