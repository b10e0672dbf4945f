//! Files the trainer writes and reads back: atomic writes (a kill -9 leaves the old file or
//! the new one) and JSON documents (manifest, trainer state).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Writes `bytes` to `path` atomically: a synced temporary file renamed over it, so a kill
/// leaves the old file or the new one, never a torn one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| TrainError::io(&tmp, e))?;
        f.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::Config(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

/// Reads a JSON file.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("invalid JSON: {e}"),
    })
}
