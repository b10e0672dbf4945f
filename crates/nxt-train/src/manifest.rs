//! `manifest.json`: what a run was made from (settings, data and base weights hashes, seed,
//! nxt version, example ids). A rerun in the same output directory must match it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::{sha256_file, Dataset};
use crate::files::{read_json, write_json_atomic};
use crate::{TrainConfig, TrainError};

/// File name of the manifest in the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// nxt version that started the run.
    pub nxt_version: String,
    /// Every setting ([`TrainConfig`] as JSON).
    pub settings: Value,
    /// Seed (also in `settings`).
    pub seed: u64,
    /// The resolved base model directory.
    pub model_dir: String,
    /// sha256 of each base weights file, by file name.
    pub base_weights_sha256: BTreeMap<String, String>,
    /// sha256 of the data file.
    pub data_sha256: String,
    /// Examples in the data file.
    pub examples: usize,
    /// Example ids in file order.
    pub example_ids: Vec<String>,
    /// Fields of each data line other than prompt and completion, by id.
    pub example_fields: Map<String, Value>,
    /// Examples truncated to `max_length`.
    pub truncated: usize,
    /// Examples whose prompt tokenisation disagrees with the full one at the boundary.
    pub boundary_mismatches: usize,
}

/// sha256 of every safetensors file of a model directory, by file name.
pub fn weights_sha256(dir: &Path) -> Result<BTreeMap<String, String>, TrainError> {
    let mut m = BTreeMap::new();
    for f in nxt_engine::model::safetensors_files(dir)? {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        m.insert(name, sha256_file(&f)?);
    }
    Ok(m)
}

impl Manifest {
    /// The manifest of a run of `cfg` on `data` with base weights hashed as `weights`.
    pub fn new(
        cfg: &TrainConfig,
        model_dir: &Path,
        data: &Dataset,
        weights: BTreeMap<String, String>,
    ) -> Self {
        Manifest {
            nxt_version: env!("CARGO_PKG_VERSION").into(),
            settings: serde_json::to_value(cfg).unwrap_or(Value::Null),
            seed: cfg.seed,
            model_dir: model_dir.display().to_string(),
            base_weights_sha256: weights,
            data_sha256: data.sha256.clone(),
            examples: data.examples.len(),
            example_ids: data.examples.iter().map(|e| e.id.clone()).collect(),
            example_fields: data.extra.clone(),
            truncated: data.truncated,
            boundary_mismatches: data.boundary_mismatches,
        }
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(unset)".into(),
        Some(v) => v.to_string(),
    }
}

/// Writes the manifest into `out`, or, when one is there, checks that this run has the same
/// settings, data and base weights (the first difference is an error naming the key).
pub fn check_or_write(out: &Path, m: &Manifest) -> Result<(), TrainError> {
    let path = out.join(MANIFEST_FILE);
    if !path.exists() {
        return write_json_atomic(&path, m);
    }
    let old: Manifest = read_json(&path)?;
    let diff = |key: &str, before: String, now: String| TrainError::Resume {
        out: out.to_path_buf(),
        key: key.into(),
        before,
        now,
    };
    let empty = Map::new();
    let a = old.settings.as_object().unwrap_or(&empty);
    let b = m.settings.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if k == "out" {
            continue;
        }
        if a.get(k) != b.get(k) {
            return Err(diff(k, show(a.get(k)), show(b.get(k))));
        }
    }
    if old.data_sha256 != m.data_sha256 {
        return Err(diff(
            "data (sha256)",
            old.data_sha256.clone(),
            m.data_sha256.clone(),
        ));
    }
    if old.base_weights_sha256 != m.base_weights_sha256 {
        return Err(diff(
            "model weights (sha256)",
            format!("{:?}", old.base_weights_sha256),
            format!("{:?}", m.base_weights_sha256),
        ));
    }
    Ok(())
}
