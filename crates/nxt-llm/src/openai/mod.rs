//! A client for OpenAI-compatible servers: vLLM, SGLang, llama.cpp's `llama-server`, Ollama and
//! OpenAI itself.
//!
//! * `/v1/completions` for [`Prompt::Text`], `/v1/chat/completions` for [`Prompt::Chat`].
//! * `n > 1` is sent as one request; a server that refuses it (llama.cpp answers "Only one
//!   completion choice is allowed") or silently returns fewer choices (Ollama) is remembered per
//!   endpoint and sent `n` parallel requests instead, with the seed offset per request.
//! * A concurrency limit on HTTP requests in flight, shared by all endpoints; several endpoints
//!   share the load (least requests in flight, endpoints that just failed are avoided for a
//!   while).
//! * Retries with exponential backoff and jitter on timeouts, connection errors, 408, 429
//!   (honouring `Retry-After`) and 5xx, up to [`ClientConfig::max_retries`].
//! * `top_k` is sent as an extra field (vLLM, SGLang, llama.cpp accept it); a server that rejects
//!   it with a 400 naming `top_k` (OpenAI) gets the request again without it, and never again.
//! * Token usage totals in atomic counters ([`OpenAiClient::stats`]).
//!
//! The HTTP stack is tokio + reqwest (rustls): measured at about the same requests per second
//! and CPU per request as raw hyper on loopback (see `docs/BENCHMARKS.md`), with TLS, proxies
//! and timeouts handled. The client owns a small tokio runtime so that it can implement the
//! blocking [`Generator`] trait; async callers can use [`OpenAiClient::generate_async`].
//!
//! reqwest 0.12 is the one HTTP client of the workspace: the hub downloads
//! (`engine::hub`, async, on a runtime of their own), `nxt-data`'s dataset fetch and
//! `nxt-selftrain`'s adapter loading (its blocking API) use it too. Measured with `cargo tree
//! -e normal -p nxt-cli`: ureq 3 beside it added 3 crates (ureq, ureq-proto, utf8-zero; it
//! shared rustls and webpki-roots), reqwest's blocking API adds 2 (futures-io, futures-sink),
//! and tokio/hyper are compiled for this client and the server anyway; so one client costs no
//! more than two, with one set of TLS, proxy and timeout behaviour.

pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use tokio::sync::{OnceCell, Semaphore};

use crate::{Completion, FinishReason, GenerationRequest, Generator, LlmError, Prompt, TokenUsage};
use wire::{LogprobsField, OutgoingRequest, ResponseBody};

/// Settings of an [`OpenAiClient`].
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

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    n_fallbacks: AtomicU64,
}

/// One server.
struct Endpoint {
    base: String,
    completions_url: String,
    chat_url: String,
    models_url: String,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the client started before which this endpoint is avoided.
    avoid_until_ms: AtomicU64,
    n_unsupported: AtomicBool,
    top_k_unsupported: AtomicBool,
    model: OnceCell<String>,
}

impl Endpoint {
    fn new(raw: &str) -> Result<Self, LlmError> {
        let url = reqwest::Url::parse(raw.trim())
            .map_err(|e| LlmError::Request(format!("endpoint {raw:?} is not a URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(LlmError::Request(format!(
                "endpoint {raw:?}: only http:// and https:// URLs are supported"
            )));
        }
        let mut base = url.as_str().trim_end_matches('/').to_string();
        if url.path() == "/" || url.path().is_empty() {
            base.push_str("/v1");
        }
        Ok(Self {
            completions_url: format!("{base}/completions"),
            chat_url: format!("{base}/chat/completions"),
            models_url: format!("{base}/models"),
            base,
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            avoid_until_ms: AtomicU64::new(0),
            n_unsupported: AtomicBool::new(false),
            top_k_unsupported: AtomicBool::new(false),
            model: OnceCell::new(),
        })
    }
}

/// Decrements an endpoint's in-flight count when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
    config: ClientConfig,
    permits: Semaphore,
    counters: Counters,
    rotation: AtomicUsize,
    rng: AtomicU64,
    started: Instant,
}

/// How one HTTP attempt failed.
enum AttemptError {
    /// Worth retrying (after `delay` if the server asked for one).
    Retry {
        why: String,
        delay: Option<Duration>,
    },
    /// The server refused `n > 1`.
    NRefused,
    /// The server rejected `top_k`.
    TopKRefused,
    /// Final.
    Fatal(LlmError),
}

/// A client for one or several OpenAI-compatible endpoints. Cheap to share (`Arc` it); all
/// methods take `&self`.
pub struct OpenAiClient {
    inner: Arc<Inner>,
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

enum CallError {
    NRefused,
    Fatal(LlmError),
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn all_refuse_n(&self) -> bool {
        self.endpoints
            .iter()
            .all(|e| e.n_unsupported.load(Ordering::Relaxed))
    }

    /// Uniform in `[0, 1)` from a shared splitmix64 state.
    fn random(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential backoff with jitter: uniform in `[d/2, d]`, `d = base * 2^attempt`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.config.backoff_max;
        let d = self
            .config
            .backoff_base
            .checked_mul(1u32 << attempt.min(20))
            .unwrap_or(cap)
            .min(cap);
        d.mul_f64(0.5 + 0.5 * self.random())
    }

    /// The endpoint to use next: not recently failed, then fewest requests in flight, ties
    /// rotated. `wants_n` prefers endpoints that accept `n > 1`.
    fn pick(&self, wants_n: bool) -> &Endpoint {
        let now = self.now_ms();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let len = self.endpoints.len();
        let mut best: Option<(&Endpoint, (bool, bool, usize))> = None;
        for j in 0..len {
            let ep = &self.endpoints[(start + j) % len];
            let key = (
                ep.avoid_until_ms.load(Ordering::Relaxed) > now,
                wants_n && ep.n_unsupported.load(Ordering::Relaxed),
                ep.in_flight.load(Ordering::Relaxed),
            );
            if best.as_ref().is_none_or(|(_, k)| key < *k) {
                best = Some((ep, key));
            }
        }
        // `endpoints` is never empty (checked in `OpenAiClient::new`).
        best.map(|(e, _)| e).unwrap_or(&self.endpoints[0])
    }

    fn mark_failure(&self, ep: &Endpoint) {
        let fails = ep.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let penalty = self
            .config
            .backoff_base
            .checked_mul(1u32 << fails.min(16))
            .unwrap_or(self.config.backoff_max)
            .min(self.config.backoff_max);
        ep.avoid_until_ms.store(
            self.now_ms() + penalty.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    fn mark_success(&self, ep: &Endpoint) {
        if ep.consecutive_failures.load(Ordering::Relaxed) != 0 {
            ep.consecutive_failures.store(0, Ordering::Relaxed);
            ep.avoid_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// The model name for `ep`: configured, or the first of `GET /v1/models` (one attempt;
    /// the caller's retry loop covers failures).
    async fn model_for(&self, ep: &Endpoint) -> Result<String, LlmError> {
        if let Some(m) = &self.config.model {
            return Ok(m.clone());
        }
        ep.model
            .get_or_try_init(|| async {
                let resp = self.http.get(&ep.models_url).send().await.map_err(|e| {
                    LlmError::Server(format!("GET {}: {}", ep.models_url, describe(&e)))
                })?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| {
                    LlmError::Server(format!("GET {}: {}", ep.models_url, describe(&e)))
                })?;
                if !status.is_success() {
                    let why = format!(
                        "GET {} answered {status}: {} (pass the model name explicitly, e.g. --served-model)",
                        ep.models_url,
                        wire::error_message(&body)
                    );
                    return Err(if status.is_server_error() {
                        LlmError::Server(why)
                    } else {
                        refusal(status, why)
                    });
                }
                let list: wire::ModelList = serde_json::from_slice(&body).map_err(|e| {
                    LlmError::Server(format!("GET {}: not a model list: {e}", ep.models_url))
                })?;
                list.data.into_iter().next().map(|m| m.id).ok_or_else(|| {
                    LlmError::Server(format!(
                        "GET {} lists no model (pass the model name explicitly, e.g. --served-model)",
                        ep.models_url
                    ))
                })
            })
            .await
            .cloned()
    }

    /// One `GET /v1/models` per endpoint, no retries: when no endpoint can be reached, or one
    /// refuses the credentials or does not list the configured model, this fails before any
    /// work. An endpoint that cannot be reached while others can is left to the load sharing,
    /// and a server error (5xx: still loading) to the retrying requests.
    async fn preflight(&self) -> Result<(), LlmError> {
        let mut unreachable = Vec::new();
        for ep in &self.endpoints {
            let resp = match self.http.get(&ep.models_url).send().await {
                Ok(r) => r,
                Err(e) => {
                    unreachable.push(format!("GET {}: {}", ep.models_url, describe(&e)));
                    continue;
                }
            };
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| {
                LlmError::Server(format!("GET {}: {}", ep.models_url, describe(&e)))
            })?;
            if status.is_server_error() {
                continue;
            }
            if !status.is_success() {
                if status == StatusCode::NOT_FOUND && self.config.model.is_some() {
                    // Some servers have no model list; the configured name is used as given.
                    continue;
                }
                return Err(refusal(
                    status,
                    format!(
                        "GET {} answered {status}: {}",
                        ep.models_url,
                        wire::error_message(&body)
                    ),
                ));
            }
            let Ok(list) = serde_json::from_slice::<wire::ModelList>(&body) else {
                continue;
            };
            let ids: Vec<String> = list.data.into_iter().map(|m| m.id).collect();
            match &self.config.model {
                Some(m) if !ids.is_empty() && !ids.contains(m) => {
                    return Err(LlmError::Refused(format!(
                        "{} does not serve model {m:?}; it lists {}",
                        ep.base,
                        ids.iter()
                            .map(|i| format!("{i:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Some(_) => {}
                None => match ids.first() {
                    Some(first) => {
                        let _ = ep.model.set(first.clone());
                    }
                    None => {
                        return Err(LlmError::Refused(format!(
                            "GET {} lists no model (pass the model name explicitly, e.g. --served-model)",
                            ep.models_url
                        )))
                    }
                },
            }
        }
        if unreachable.len() == self.endpoints.len() {
            return Err(LlmError::Server(format!(
                "cannot reach the server{}: {} (is it running, and is the URL right?)",
                if unreachable.len() > 1 { "s" } else { "" },
                unreachable.join("; ")
            )));
        }
        Ok(())
    }

    /// One logical request (n samples, or 1) with retries over the endpoints.
    async fn call(
        &self,
        req: &GenerationRequest,
        n: usize,
        seed: Option<u64>,
    ) -> Result<Vec<Completion>, CallError> {
        let mut attempt: u32 = 0;
        let mut top_k_retry_done = false;
        loop {
            let ep = self.pick(n > 1);
            if n > 1 && ep.n_unsupported.load(Ordering::Relaxed) {
                return Err(CallError::NRefused);
            }
            let url = match req.prompt {
                Prompt::Text(_) => &ep.completions_url,
                Prompt::Chat(_) => &ep.chat_url,
            };
            let result = self.attempt(ep, url, req, n, seed).await;
            let (why, delay) = match result {
                Ok(v) => {
                    self.mark_success(ep);
                    if n > 1 && v.len() < n {
                        // Ollama ignores `n` and answers one choice: remember, fan out the rest.
                        ep.n_unsupported.store(true, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(AttemptError::NRefused) => {
                    ep.n_unsupported.store(true, Ordering::Relaxed);
                    return Err(CallError::NRefused);
                }
                Err(AttemptError::TopKRefused) if !top_k_retry_done => {
                    top_k_retry_done = true;
                    ep.top_k_unsupported.store(true, Ordering::Relaxed);
                    continue;
                }
                Err(AttemptError::TopKRefused) => (
                    format!("{url} rejected top_k even when it was not sent"),
                    None,
                ),
                Err(AttemptError::Fatal(e)) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(CallError::Fatal(e));
                }
                Err(AttemptError::Retry { why, delay }) => (why, delay),
            };
            self.mark_failure(ep);
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            if attempt >= self.config.max_retries {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                return Err(CallError::Fatal(LlmError::Server(format!(
                    "gave up after {} attempt{}; last error: {why}",
                    attempt + 1,
                    if attempt == 0 { "" } else { "s" }
                ))));
            }
            let wait = match delay {
                Some(d) => d.min(self.config.backoff_max),
                None => self.backoff(attempt),
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One HTTP attempt.
    async fn attempt(
        &self,
        ep: &Endpoint,
        url: &str,
        req: &GenerationRequest,
        n: usize,
        seed: Option<u64>,
    ) -> Result<Vec<Completion>, AttemptError> {
        let model = self.model_for(ep).await.map_err(|e| match e {
            LlmError::Refused(_) => AttemptError::Fatal(e),
            LlmError::Server(m) => AttemptError::Retry {
                why: m,
                delay: None,
            },
            other => AttemptError::Retry {
                why: other.to_string(),
                delay: None,
            },
        })?;
        let p = &req.params;
        let send_top_k = p.top_k.is_some() && !ep.top_k_unsupported.load(Ordering::Relaxed);
        let (prompt, messages, logprobs) = match &req.prompt {
            Prompt::Text(t) => (
                Some(t.as_str()),
                None,
                p.logprobs.then_some(LogprobsField::Count(1)),
            ),
            Prompt::Chat(m) => (
                None,
                Some(m.as_slice()),
                p.logprobs.then_some(LogprobsField::Flag(true)),
            ),
        };
        let body = OutgoingRequest {
            model: &model,
            prompt,
            messages,
            n,
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: if send_top_k { p.top_k } else { None },
            stop: &p.stop,
            seed,
            logprobs,
        };
        let body = serde_json::to_vec(&body).map_err(|e| {
            AttemptError::Fatal(LlmError::Request(format!("cannot encode the request: {e}")))
        })?;

        let permit =
            self.permits.acquire().await.map_err(|_| {
                AttemptError::Fatal(LlmError::Server("client is shutting down".into()))
            })?;
        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(&ep.in_flight);
        let sent = self.http.post(url).body(body).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(AttemptError::Retry {
                    why: format!("POST {url}: {}", describe(&e)),
                    delay: None,
                })
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let bytes = resp.bytes().await.map_err(|e| AttemptError::Retry {
            why: format!("POST {url}: reading the answer: {}", describe(&e)),
            delay: None,
        })?;
        drop(guard);
        drop(permit);

        if !status.is_success() {
            let msg = wire::error_message(&bytes);
            if n > 1 && refuses_n(&msg) {
                return Err(AttemptError::NRefused);
            }
            if status == StatusCode::BAD_REQUEST && send_top_k && msg.contains("top_k") {
                return Err(AttemptError::TopKRefused);
            }
            let why = format!("POST {url} answered {status}: {msg}");
            if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error()
            {
                return Err(AttemptError::Retry {
                    why,
                    delay: retry_after,
                });
            }
            return Err(AttemptError::Fatal(refusal(status, why)));
        }
        let parsed: ResponseBody = serde_json::from_slice(&bytes).map_err(|e| {
            AttemptError::Fatal(LlmError::Server(format!(
                "POST {url}: the answer is not a completion response: {e}: {}",
                wire::error_message(&bytes)
            )))
        })?;
        Ok(self.to_completions(parsed, &req.params.stop))
    }

    /// Choices in index order, stop strings applied client-side too (some servers cap the
    /// number of stop strings), token counts per choice.
    fn to_completions(&self, parsed: ResponseBody, stop: &[String]) -> Vec<Completion> {
        let usage = parsed.usage.unwrap_or_default();
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        c.completion_tokens
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);

        let mut choices = parsed.choices;
        choices.sort_by_key(|ch| ch.index);
        let mut exact = true;
        let mut out: Vec<Completion> = choices
            .iter()
            .map(|ch| {
                let mut text = ch.text().to_string();
                let mut finish = ch.finish();
                if let Some(cut) = earliest_stop(&text, stop) {
                    text.truncate(cut);
                    finish = FinishReason::Stop;
                }
                let logprobs = ch.logprobs.as_ref().and_then(|l| l.values());
                exact &= ch.completion_tokens.is_some() || logprobs.is_some();
                Completion {
                    completion_tokens: ch
                        .completion_tokens
                        .map(|t| t as usize)
                        .or(logprobs.as_ref().map(|l| l.len()))
                        .unwrap_or(0),
                    text,
                    prompt_tokens: usage.prompt_tokens as usize,
                    finish_reason: finish,
                    logprobs,
                }
            })
            .collect();
        if !exact {
            apportion_tokens(&mut out, usage.completion_tokens);
        }
        out
    }
}

/// Per-choice completion tokens when the server gave no per-choice count (`nxt serve` does;
/// log-probabilities give one too): exact for one choice, otherwise the usage total shared out
/// in proportion to text length (OpenAI's `usage` only gives the sum over choices).
fn apportion_tokens(out: &mut [Completion], total: u64) {
    if out.is_empty() {
        return;
    }
    if out.len() == 1 {
        out[0].completion_tokens = total as usize;
        return;
    }
    let lens: Vec<u64> = out.iter().map(|c| c.text.len() as u64 + 1).collect();
    let sum: u64 = lens.iter().sum();
    let mut given = 0u64;
    let last = out.len() - 1;
    for (i, c) in out.iter_mut().enumerate() {
        let share = if i == last {
            total.saturating_sub(given)
        } else {
            total * lens[i] / sum
        };
        given += share;
        c.completion_tokens = share as usize;
    }
}

/// Byte offset of the earliest stop string in `text`.
fn earliest_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// Whether an error message says the server does not do `n > 1` (llama.cpp: "Only one
/// completion choice is allowed"; others word it differently).
fn refuses_n(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "only one completion choice",
        "n > 1",
        "n>1",
        "'n' must be 1",
        "`n` must be 1",
        "n must be 1",
        "n is not supported",
        "only n=1",
        "only n = 1",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// A reqwest error in words, with its causes (reqwest's Display alone says little).
/// The error of a final 4xx: authentication, permission and not-found refusals stop a run
/// ([`LlmError::Refused`]); other client errors belong to the request ([`LlmError::Request`]).
fn refusal(status: StatusCode, why: String) -> LlmError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => LlmError::Refused(format!(
            "{why} (check the API key in NXT_API_KEY or OPENAI_API_KEY)"
        )),
        StatusCode::NOT_FOUND => LlmError::Refused(format!(
            "{why} (check the server URL and the model name, --served-model)"
        )),
        s if s.is_client_error() => LlmError::Request(why),
        _ => LlmError::Server(why),
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut s = kind.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
        depth += 1;
        if depth > 4 {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_normalised() {
        let e = Endpoint::new("http://localhost:8000").unwrap();
        assert_eq!(e.base, "http://localhost:8000/v1");
        let e = Endpoint::new("http://h:1/v1/").unwrap();
        assert_eq!(e.chat_url, "http://h:1/v1/chat/completions");
        assert!(Endpoint::new("ftp://x").is_err());
        assert!(Endpoint::new("not a url").is_err());
    }

    #[test]
    fn n_refusals_are_recognised() {
        assert!(refuses_n("Only one completion choice is allowed"));
        assert!(refuses_n(
            "Illegal param: only one completion choice is allowed"
        ));
        assert!(!refuses_n("model not found"));
    }

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(earliest_stop("abc END x\n\n", &stops), Some(4));
        assert_eq!(earliest_stop("abc", &stops), None);
    }

    #[test]
    fn token_counts_are_shared_out_exactly() {
        let mk = |t: &str| Completion {
            text: t.into(),
            prompt_tokens: 3,
            completion_tokens: 0,
            finish_reason: FinishReason::Stop,
            logprobs: None,
        };
        let mut v = vec![mk("aaaa"), mk(""), mk("aaaaaaaaa")];
        apportion_tokens(&mut v, 10);
        assert_eq!(v.iter().map(|c| c.completion_tokens).sum::<usize>(), 10);
        assert!(v[2].completion_tokens > v[1].completion_tokens);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut cfg = ClientConfig::new(["http://127.0.0.1:1/v1"]);
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(1000);
        let c = OpenAiClient::new(cfg).unwrap();
        for a in 0..10 {
            let d = c.inner.backoff(a);
            let full = Duration::from_millis((100u64 << a).min(1000));
            assert!(d >= full / 2 && d <= full, "attempt {a}: {d:?}");
        }
    }
}
