//! The client: its counters and runtime, the [`Generator`] impl, and `n` samples as one
//! request or fanned out as single ones.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use super::config::ClientConfig;
use super::endpoints::Endpoint;
use super::retry::CallError;
use super::state::{Counters, Inner};
use crate::{Completion, GenerationRequest, Generator, LlmError, Prompt, TokenUsage};

/// Counters of a client since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests answered successfully.
    pub requests: u64,
    /// Prompt tokens reported by servers (once per HTTP request).
    pub prompt_tokens: u64,
    /// Completion tokens reported by servers.
    pub completion_tokens: u64,
    /// Attempts that failed retryably and were retried (or given up on).
    pub retries: u64,
    /// Requests that failed for good.
    pub failures: u64,
    /// Requests that were split into single-sample requests because a server refused `n > 1`.
    pub n_fallbacks: u64,
}

/// A client for one or several OpenAI-compatible endpoints. Cheap to share (`Arc` it); all
/// methods take `&self`.
pub struct OpenAiClient {
    pub(super) inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("endpoints", &self.inner.config.endpoints)
            .field("model", &self.inner.config.model)
            .finish()
    }
}

impl Drop for OpenAiClient {
    fn drop(&mut self) {
        // Dropping a runtime blocks; shutting it down in the background is safe from any context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl OpenAiClient {
    /// A client for `config.endpoints` (at least one). Nothing is contacted until the first
    /// request.
    pub fn new(config: ClientConfig) -> Result<Self, LlmError> {
        if config.endpoints.is_empty() {
            return Err(LlmError::Request(
                "no endpoint given for the OpenAI-compatible client".into(),
            ));
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| Endpoint::new(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &config.api_key {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                .map_err(|_| {
                LlmError::Request("the API key contains characters not allowed in a header".into())
            })?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.concurrency.max(1))
            .tcp_nodelay(true)
            .user_agent(concat!("nxt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Server(format!("cannot build the HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.runtime_threads.max(1))
            .thread_name("nxt-openai")
            .enable_all()
            .build()?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        let inner = Inner {
            http,
            endpoints,
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
            counters: Counters::default(),
            rotation: AtomicUsize::new(0),
            rng: AtomicU64::new(seed),
            started: Instant::now(),
        };
        Ok(Self {
            inner: Arc::new(inner),
            runtime: Some(runtime),
        })
    }

    /// Counters since creation.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            requests: c.requests.load(Ordering::Relaxed),
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: c.completion_tokens.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            n_fallbacks: c.n_fallbacks.load(Ordering::Relaxed),
        }
    }

    /// The endpoints' base URLs (normalised, ending in `/v1`).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .iter()
            .map(|e| e.base.clone())
            .collect()
    }

    /// The model name used with the first endpoint, asking `GET /v1/models` if none was given.
    pub fn model_name(&self) -> Result<String, LlmError> {
        let inner = self.inner.clone();
        self.run(async move { inner.model_for(&inner.endpoints[0]).await })
    }

    /// `request.n` completions of one prompt (async; the [`Generator`] impl wraps this).
    pub async fn generate_async(
        &self,
        request: &GenerationRequest,
    ) -> Result<Vec<Completion>, LlmError> {
        generate_shared(self.inner.clone(), Arc::new(request.clone())).await
    }

    /// Runs a future on the client's runtime from any thread (inside or outside another
    /// runtime) and waits for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, LlmError>> + Send + 'static,
    ) -> Result<T, LlmError> {
        let Some(rt) = &self.runtime else {
            return Err(LlmError::Server("client runtime already shut down".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| LlmError::Server("client task ended without an answer".into()))?
    }
}

impl Generator for OpenAiClient {
    fn name(&self) -> String {
        let eps = self.endpoints().join(",");
        match self
            .inner
            .config
            .model
            .as_ref()
            .or_else(|| self.inner.endpoints[0].model.get())
        {
            Some(m) => format!("{m} @ {eps}"),
            None => eps,
        }
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Vec<Completion>, LlmError> {
        let inner = self.inner.clone();
        let req = Arc::new(request.clone());
        self.run(generate_shared(inner, req))
    }

    fn generate_many(
        &self,
        requests: &[GenerationRequest],
        on_done: &mut dyn FnMut(usize, Result<Vec<Completion>, LlmError>),
    ) {
        let Some(rt) = &self.runtime else {
            for i in 0..requests.len() {
                on_done(
                    i,
                    Err(LlmError::Server("client runtime already shut down".into())),
                );
            }
            return;
        };
        let total = requests.len();
        let (tx, rx) = std::sync::mpsc::channel();
        let reqs: Vec<Arc<GenerationRequest>> =
            requests.iter().map(|r| Arc::new(r.clone())).collect();
        let inner = self.inner.clone();
        // Prompt-level tasks in flight: enough to keep every HTTP permit busy, bounded so that
        // a million prompts do not become a million waiting tasks.
        let window = inner.config.concurrency.max(1);
        rt.spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            let mut next = 0usize;
            loop {
                while next < reqs.len() && set.len() < window {
                    let (i, r, inner, tx) = (next, reqs[next].clone(), inner.clone(), tx.clone());
                    set.spawn(async move {
                        let out = generate_shared(inner, r).await;
                        let _ = tx.send((i, out));
                    });
                    next += 1;
                }
                if set.join_next().await.is_none() {
                    break;
                }
            }
        });
        let mut answered = vec![false; total];
        // The channel closes when every task has ended, so this cannot hang.
        while let Ok((i, out)) = rx.recv() {
            answered[i] = true;
            on_done(i, out);
        }
        // A task that panicked never answered: report it instead of dropping it.
        for (i, done) in answered.into_iter().enumerate() {
            if !done {
                on_done(
                    i,
                    Err(LlmError::Server(
                        "the client task for this request failed".into(),
                    )),
                );
            }
        }
    }

    fn preflight(&self) -> Result<(), LlmError> {
        let inner = self.inner.clone();
        self.run(async move { inner.preflight().await })
    }

    fn usage(&self) -> Option<TokenUsage> {
        let s = self.stats();
        Some(TokenUsage {
            requests: s.requests,
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
        })
    }
}

/// `request.n` completions: one request with `n`, or `n` single requests where `n > 1` is
/// refused.
async fn generate_shared(
    inner: Arc<Inner>,
    req: Arc<GenerationRequest>,
) -> Result<Vec<Completion>, LlmError> {
    let n = req.n;
    if n == 0 {
        return Ok(Vec::new());
    }
    if let Prompt::Chat(m) = &req.prompt {
        if m.is_empty() {
            return Err(LlmError::Request(
                "a chat prompt needs at least one message".into(),
            ));
        }
    }
    let mut out: Vec<Completion> = Vec::with_capacity(n);
    if n == 1 || !inner.all_refuse_n() {
        match inner.call(&req, n, req.params.seed).await {
            Ok(mut got) => {
                got.truncate(n);
                out.append(&mut got);
            }
            Err(CallError::NRefused) => {}
            Err(CallError::Fatal(e)) => return Err(e),
        }
        if out.len() == n {
            return Ok(out);
        }
        inner.counters.n_fallbacks.fetch_add(1, Ordering::Relaxed);
    }
    // Fan out the missing samples as single requests, seeds offset by the sample's position.
    let done = out.len();
    let mut set = tokio::task::JoinSet::new();
    for k in done..n {
        let (inner, req) = (inner.clone(), req.clone());
        let seed = req.params.seed.map(|s| s.wrapping_add(k as u64));
        set.spawn(async move { (k, inner.call(&req, 1, seed).await) });
    }
    let mut parts: Vec<(usize, Completion)> = Vec::with_capacity(n - done);
    let mut first_err = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((k, Ok(mut v))) if !v.is_empty() => parts.push((k, v.swap_remove(0))),
            Ok((_, Ok(_))) => {
                first_err.get_or_insert(LlmError::Server("server returned no choices".into()));
            }
            Ok((_, Err(CallError::Fatal(e)))) => {
                first_err.get_or_insert(e);
            }
            Ok((_, Err(CallError::NRefused))) => {
                first_err.get_or_insert(LlmError::Server(
                    "server refused a single-sample request as if n > 1".into(),
                ));
            }
            Err(e) => {
                first_err.get_or_insert(LlmError::Server(format!("client task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    parts.sort_by_key(|(k, _)| *k);
    out.extend(parts.into_iter().map(|(_, c)| c));
    Ok(out)
}
