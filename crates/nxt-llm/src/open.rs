//! Opening a generator from a model spec string, as the CLI and `nxt-core` take it.

use std::time::Duration;

use crate::engine::{Engine, EngineOptions};
use crate::openai::{ClientConfig, OpenAiClient};
use crate::{Generator, LlmError};

/// Options for [`open_generator`]: the client's when the spec is a URL, the engine's otherwise.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Model name to send to servers; `None` asks `GET /v1/models`.
    pub served_model: Option<String>,
    /// Bearer token for servers; `None` reads `NXT_API_KEY`, then `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// Most HTTP requests in flight (client only).
    pub concurrency: usize,
    /// Retries of a failed HTTP request (client only).
    pub max_retries: u32,
    /// Timeout of one HTTP request (client only).
    pub request_timeout: Duration,
    /// Embedded engine settings (device, dtype, hub revision, and the LoRA adapter to merge:
    /// `engine.adapter`). A server spec with an adapter is refused: a server's adapter is
    /// chosen by name (`served_model`) after loading it on the server.
    pub engine: EngineOptions,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            served_model: None,
            api_key: None,
            concurrency: 32,
            max_retries: 8,
            request_timeout: Duration::from_secs(1800),
            engine: EngineOptions::default(),
        }
    }
}

/// Whether `spec` names OpenAI-compatible servers: `http(s)://...`, several separated by commas.
pub fn is_server_spec(spec: &str) -> bool {
    let s = spec.trim_start().to_ascii_lowercase();
    s.starts_with("http://") || s.starts_with("https://")
}

/// Opens `spec`: one or more comma-separated `http(s)://host:port/v1` URLs give an
/// [`OpenAiClient`] sharing the load between them; anything else is a local model directory or
/// a Hugging Face hub id for the embedded [`Engine`].
pub fn open_generator(spec: &str, opts: &OpenOptions) -> Result<Box<dyn Generator>, LlmError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(LlmError::Request(
            "empty model spec: give a model directory, a hub id or an http(s):// server URL".into(),
        ));
    }
    if is_server_spec(spec) {
        if let Some(a) = &opts.engine.adapter {
            return Err(LlmError::Request(format!(
                "model spec {spec:?} is a server, so the adapter {} cannot be merged here: load it \
                 on the server (`--lora-modules NAME=DIR` or POST /v1/load_lora_adapter) and pick \
                 it with `--served-model NAME`",
                a.display()
            )));
        }
        let urls: Vec<String> = spec
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = urls.iter().find(|u| !is_server_spec(u)) {
            return Err(LlmError::Request(format!(
                "model spec {spec:?}: {bad:?} is not an http(s):// URL (a list of servers must be all URLs)"
            )));
        }
        let mut cfg = ClientConfig::new(urls);
        cfg.model = opts.served_model.clone();
        if opts.api_key.is_some() {
            cfg.api_key = opts.api_key.clone();
        }
        cfg.concurrency = opts.concurrency.max(1);
        cfg.max_retries = opts.max_retries;
        cfg.request_timeout = opts.request_timeout;
        return Ok(Box::new(OpenAiClient::new(cfg)?));
    }
    Ok(Box::new(Engine::load(spec, opts.engine.clone())?))
}
