//! The models of a run: the base P0 and each iteration's P_i = base + that iteration's
//! adapter (or full weights), as generators. With the embedded engine the adapter is merged
//! into a fresh copy of the base; with servers (vLLM, SGLang, `nxt serve`) it is loaded under
//! a new name through vLLM's `POST /v1/load_lora_adapter` and requested by that name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nxt_llm::{open_generator, Generator, OpenOptions};

use crate::config::SelftrainConfig;
use crate::error::SelftrainError;

/// What a model of the run is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// The base model.
    Base,
    /// Base + a LoRA adapter directory, under a name (`iter-2`).
    Adapter {
        /// Name (on servers: the adapter's model name).
        name: String,
        /// The PEFT adapter directory.
        dir: PathBuf,
    },
    /// A fully fine-tuned model directory.
    Full {
        /// Name.
        name: String,
        /// The model directory.
        dir: PathBuf,
    },
}

/// Opens generators for the run's models.
#[derive(Debug, Clone)]
pub struct Models {
    base: String,
    servers: Vec<String>,
    served_model: Option<String>,
    server_run_dir: Option<PathBuf>,
    run_dir: PathBuf,
    concurrency: usize,
}

impl Models {
    /// The models of `cfg`, with `base` the resolved base model (the warm-started toy model or
    /// `model.base`).
    pub fn new(cfg: &SelftrainConfig, base: &str, run_dir: &Path) -> Self {
        Self {
            base: base.to_string(),
            servers: cfg.model.servers.clone(),
            served_model: cfg.model.served_model.clone(),
            server_run_dir: cfg.model.server_run_dir.clone(),
            run_dir: run_dir.to_path_buf(),
            concurrency: cfg.model.concurrency,
        }
    }

    /// The base model spec (directory or hub id).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether sampling goes to servers.
    pub fn uses_servers(&self) -> bool {
        !self.servers.is_empty()
    }

    /// A generator for `spec`.
    pub fn open(&self, spec: &ModelSpec) -> Result<Box<dyn Generator>, SelftrainError> {
        let mut opts = OpenOptions {
            concurrency: self.concurrency,
            ..OpenOptions::default()
        };
        if self.uses_servers() {
            let urls = self.servers.join(",");
            opts.served_model = match spec {
                ModelSpec::Base => self.served_model.clone(),
                ModelSpec::Adapter { name, dir } => {
                    for url in &self.servers {
                        load_adapter(url, name, &self.server_path(dir))?;
                    }
                    Some(name.clone())
                }
                ModelSpec::Full { .. } => {
                    return Err(SelftrainError::Config {
                        key: "train.full".into(),
                        message: "a fully fine-tuned model cannot be loaded into running servers; use LoRA with servers".into(),
                    })
                }
            };
            return Ok(open_generator(&urls, &opts)?);
        }
        match spec {
            ModelSpec::Base => Ok(open_generator(&self.base, &opts)?),
            ModelSpec::Adapter { dir, .. } => {
                opts.engine.adapter = Some(dir.clone());
                Ok(open_generator(&self.base, &opts)?)
            }
            ModelSpec::Full { dir, .. } => Ok(open_generator(&dir.display().to_string(), &opts)?),
        }
    }

    fn server_path(&self, dir: &Path) -> PathBuf {
        match &self.server_run_dir {
            Some(remote) => match dir.strip_prefix(&self.run_dir) {
                Ok(rel) => remote.join(rel),
                Err(_) => dir.to_path_buf(),
            },
            None => dir.to_path_buf(),
        }
    }
}

/// Loads an adapter on one server (`url` ends in `/v1`). An adapter already listed under that
/// name in `GET /v1/models` is not loaded again (a resumed run).
pub fn load_adapter(url: &str, name: &str, path: &Path) -> Result<(), SelftrainError> {
    let base = url.trim_end_matches('/');
    let server_err = |m: String| SelftrainError::Server {
        url: url.to_string(),
        message: m,
    };
    let agent = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| server_err(format!("HTTP client: {e}")))?;
    let text = agent
        .get(format!("{base}/models"))
        .send()
        .and_then(|r| r.text())
        .map_err(|e| server_err(format!("GET /models: {e}")))?;
    let models: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let already = models["data"]
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m["id"] == name));
    if already {
        return Ok(());
    }
    let body = serde_json::json!({"lora_name": name, "lora_path": path.display().to_string()});
    let resp = agent
        .post(format!("{base}/load_lora_adapter"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map_err(|e| server_err(format!("POST /load_lora_adapter: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(server_err(format!(
            "POST /load_lora_adapter {name} from {}: HTTP {status}: {} (vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora --max-lora-rank >= r)",
            path.display(),
            text.trim()
        )));
    }
    Ok(())
}
