//! The `toy` stage: prepares the toy benchmark (see [`crate::toy`]) and describes what it
//! wrote as the stage's ledger result.

use std::path::Path;

use nxt_sandbox::Pool;
use serde_json::{json, Value};

use crate::error::SelftrainError;
use crate::toy::{prepare_toy, ToyOptions};

/// Prepares the toy in `dir` with the `[toy].options` of the config.
pub fn prepare(dir: &Path, options: &Value, pool: &Pool) -> Result<Value, SelftrainError> {
    let opts: ToyOptions = if options.is_null() {
        ToyOptions::default()
    } else {
        serde_json::from_value(options.clone()).map_err(|e| SelftrainError::Config {
            key: "toy.options".into(),
            message: e.to_string(),
        })?
    };
    let a = prepare_toy(dir, &opts, pool).map_err(|e| SelftrainError::Toy(e.to_string()))?;
    Ok(json!({
        "dir": dir.display().to_string(),
        "model": a.model_dir.display().to_string(),
        "train": a.train.display().to_string(),
        "dev": a.dev.display().to_string(),
        "test": a.test.display().to_string(),
        "warm_start": a.warm_start.display().to_string(),
        "counts": a.counts,
        "tokens": a.tokens,
        "summary": a.summary.display().to_string(),
        "options": serde_json::to_value(&opts).unwrap_or(Value::Null),
    }))
}
