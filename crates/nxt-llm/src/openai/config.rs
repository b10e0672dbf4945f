//! The client's settings.

use std::time::Duration;

/// Settings of an [`OpenAiClient`](super::OpenAiClient).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URLs such as `http://localhost:8000/v1` (a URL without a path gets `/v1`).
    pub endpoints: Vec<String>,
    /// Model name to send; `None` asks each endpoint's `GET /v1/models` and uses the first.
    pub model: Option<String>,
    /// Bearer token; [`ClientConfig::new`] reads `NXT_API_KEY`, then `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// Most HTTP requests in flight at once, over all endpoints.
    pub concurrency: usize,
    /// Retries of one HTTP request after a retryable failure (so `max_retries + 1` attempts).
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    pub backoff_base: Duration,
    /// Cap of one backoff delay (and of an honoured `Retry-After`).
    pub backoff_max: Duration,
    /// Whole-request timeout (generation can be slow: keep it generous).
    pub request_timeout: Duration,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Worker threads of the client's tokio runtime (1 sustains thousands of requests/s).
    pub runtime_threads: usize,
}

impl ClientConfig {
    /// Defaults for `endpoints`, with the API key taken from the environment.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            model: None,
            api_key: api_key_from_env(),
            concurrency: 32,
            max_retries: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(1800),
            connect_timeout: Duration::from_secs(10),
            runtime_threads: 1,
        }
    }
}

/// The API key from `NXT_API_KEY`, else `OPENAI_API_KEY` (empty values ignored).
pub fn api_key_from_env() -> Option<String> {
    ["NXT_API_KEY", "OPENAI_API_KEY"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
}
