//! An OpenAI-compatible HTTP server over any [`Generator`] (`nxt serve`).
//!
//! Routes: `GET /health`, `GET /v1/models`, `POST /v1/completions`, `POST
//! /v1/chat/completions`. Requests support `n`, `stop`, `seed`, `max_tokens` (or
//! `max_completion_tokens`), `temperature`, `top_p`, `top_k` and `logprobs` (the sampled tokens'
//! log-probabilities; no alternatives); responses carry `usage`. Errors have OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}`: 400 for a bad request, 404 for an unknown
//! model or route, 429 when the queue is full, 500 when generation fails. Streaming is not
//! supported.
//!
//! LoRA adapters (vLLM's API): a server built from [`ServedModels`] with an
//! [`AdapterLoader`] (the embedded [`Engine`](crate::engine::Engine) is one) hosts adapters by
//! name next to the base model: given at start ([`ServedModels::with_adapter`], `nxt serve
//! --lora-modules NAME=DIR`) or at run time with `POST /v1/load_lora_adapter {"lora_name",
//! "lora_path"}` and `POST /v1/unload_lora_adapter {"lora_name"}`. `/v1/models` lists each
//! adapter with `parent` = the base model's id and `root` = its path; a request whose `model`
//! is an adapter's name is generated with that adapter. Errors as vLLM gives them: 400 for a
//! duplicate name, a missing field or an adapter that cannot be loaded, 404 when unloading an
//! unknown name. Memory: each adapter is its own engine with the adapter merged into copies of
//! the projections it adapts (one copy of those weights per adapter; embeddings, norms, the LM
//! head and the tokenizer are shared with the base).
//!
//! Generation blocks, so it runs on tokio's blocking pool: at most
//! [`ServerConfig::parallel`] generations at once, and at most [`ServerConfig::queue`] more
//! waiting; beyond that requests are answered 429 with `Retry-After`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::openai::wire::{
    ChoiceField, ChoiceLogprobs, ErrorBody, ErrorDetail, ModelEntry, ModelList, OutMessage,
    ResponseBody, TokenLogprob, UsageField,
};
use crate::{Completion, FinishReason, GenerationRequest, Generator, LlmError, TokenPiece};

mod adapters;
mod request;

use adapters::{load_lora_adapter, unload_lora_adapter, Adapter};
use request::parse_request;

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind (`127.0.0.1` keeps it local).
    pub host: String,
    /// Port (0 picks a free one; see [`ServerHandle::addr`]).
    pub port: u16,
    /// Name reported by `/v1/models` and accepted as `model`; defaults to the generator's name.
    pub model_name: Option<String>,
    /// Generations running at once.
    pub parallel: usize,
    /// Requests waiting for a generation slot before the server answers 429.
    pub queue: usize,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Largest accepted `n`.
    pub max_n: usize,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            model_name: None,
            parallel: 1,
            queue: 256,
            default_max_tokens: 512,
            max_n: 256,
            max_body_bytes: 32 << 20,
        }
    }
}

/// Makes a generator with a LoRA adapter applied, for servers that host adapters by name.
pub trait AdapterLoader: Send + Sync {
    /// A generator with the adapter at `path` (a PEFT adapter directory) applied. Blocks
    /// (loading and merging take a while); errors name what does not fit.
    fn load_adapter(&self, path: &Path) -> Result<Arc<dyn Generator>, LlmError>;
}

impl AdapterLoader for crate::engine::Engine {
    fn load_adapter(&self, path: &Path) -> Result<Arc<dyn Generator>, LlmError> {
        Ok(Arc::new(self.with_adapter(path)?))
    }
}

/// What a server serves: a base generator, optionally an [`AdapterLoader`] (without one the
/// adapter routes answer 400), and adapters to load at start.
pub struct ServedModels {
    base: Arc<dyn Generator>,
    loader: Option<Arc<dyn AdapterLoader>>,
    initial: Vec<(String, PathBuf)>,
}

impl ServedModels {
    /// The base generator only; adapters cannot be loaded.
    pub fn new(base: Arc<dyn Generator>) -> Self {
        Self {
            base,
            loader: None,
            initial: Vec::new(),
        }
    }

    /// An embedded engine: the base model, and adapters derived from it.
    pub fn engine(engine: Arc<crate::engine::Engine>) -> Self {
        Self {
            base: engine.clone(),
            loader: Some(engine),
            initial: Vec::new(),
        }
    }

    /// Sets the adapter loader.
    pub fn with_loader(mut self, loader: Arc<dyn AdapterLoader>) -> Self {
        self.loader = Some(loader);
        self
    }

    /// The base generator's name (what `/v1/models` lists unless
    /// [`ServerConfig::model_name`] is set).
    pub fn base_name(&self) -> String {
        self.base.name()
    }

    /// An adapter to load at start, served as `name`.
    pub fn with_adapter(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.initial.push((name.into(), path.into()));
        self
    }
}

/// What the handlers share.
struct AppState {
    generator: Arc<dyn Generator>,
    model: String,
    loader: Option<Arc<dyn AdapterLoader>>,
    adapters: RwLock<BTreeMap<String, Adapter>>,
    config: ServerConfig,
    /// Requests admitted (running or waiting): `parallel + queue` permits.
    admitted: Arc<Semaphore>,
    /// Generations running: `parallel` permits.
    running: Arc<Semaphore>,
    next_id: AtomicU64,
    created: u64,
}

/// The router serving the routes above over `generator` (no adapters); mount it in an axum
/// app or serve it with [`serve`].
pub fn router(generator: Arc<dyn Generator>, config: &ServerConfig) -> Router {
    build_router(ServedModels::new(generator), BTreeMap::new(), config)
}

/// The router over `models`, with its start-up adapters loaded (blocking; an adapter that
/// cannot be loaded, a duplicate name or the base model's name is an error naming it).
pub fn router_for(models: ServedModels, config: &ServerConfig) -> Result<Router, LlmError> {
    let base_name = config
        .model_name
        .clone()
        .unwrap_or_else(|| models.base.name());
    let mut adapters = BTreeMap::new();
    for (name, path) in &models.initial {
        if name.is_empty() || *name == base_name || adapters.contains_key(name) {
            return Err(LlmError::Request(format!(
                "adapter name {name:?} is empty, the base model's name or given twice"
            )));
        }
        let Some(loader) = &models.loader else {
            return Err(LlmError::Request(
                "this server's model cannot load LoRA adapters".into(),
            ));
        };
        let generator = loader
            .load_adapter(path)
            .map_err(|e| LlmError::Model(format!("adapter {name}={}: {e}", path.display())))?;
        adapters.insert(
            name.clone(),
            Adapter {
                path: path.display().to_string(),
                generator,
                created: unix_now(),
            },
        );
    }
    Ok(build_router(models, adapters, config))
}

fn build_router(
    served: ServedModels,
    adapters: BTreeMap<String, Adapter>,
    config: &ServerConfig,
) -> Router {
    let parallel = config.parallel.max(1);
    let generator = served.base;
    let model = config
        .model_name
        .clone()
        .unwrap_or_else(|| generator.name());
    let state = Arc::new(AppState {
        generator,
        model,
        loader: served.loader,
        adapters: RwLock::new(adapters),
        admitted: Arc::new(Semaphore::new(parallel + config.queue)),
        running: Arc::new(Semaphore::new(parallel)),
        config: config.clone(),
        next_id: AtomicU64::new(1),
        created: unix_now(),
    });
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/load_lora_adapter", post(load_lora_adapter))
        .route("/v1/unload_lora_adapter", post(unload_lora_adapter))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Serves `generator` on `listener` until `shutdown` resolves (then lets running requests
/// finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    generator: Arc<dyn Generator>,
    config: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), LlmError> {
    serve_router(listener, router(generator, config), shutdown).await
}

/// Serves `app` (from [`router`] or [`router_for`]) on `listener` until `shutdown` resolves.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), LlmError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(LlmError::Io)
}

/// A server running on its own runtime, for tests, benchmarks and embedding.
pub struct ServerHandle {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<Result<(), LlmError>>>,
}

impl ServerHandle {
    /// Binds `config.host:config.port` and starts serving in the background.
    pub fn start(generator: Arc<dyn Generator>, config: &ServerConfig) -> Result<Self, LlmError> {
        Self::start_models(ServedModels::new(generator), config)
    }

    /// Like [`ServerHandle::start`] over `models`: their start-up adapters are loaded first
    /// (an error names the one that failed), then the server binds and serves.
    pub fn start_models(models: ServedModels, config: &ServerConfig) -> Result<Self, LlmError> {
        let app = router_for(models, config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nxt-serve")
            .enable_all()
            .build()?;
        let bind = format!("{}:{}", config.host, config.port);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&bind))
            .map_err(|e| LlmError::Server(format!("cannot listen on {bind}: {e}")))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let result = serve_router(listener, app, async move {
                let _ = stop_rx.await;
            })
            .await;
            let _ = done_tx.send(result);
        });
        Ok(Self {
            addr,
            runtime: Some(runtime),
            stop: Some(stop_tx),
            done: Some(done_rx),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`, the base URL for a client.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stops accepting, lets running requests finish, and returns the server's result.
    pub fn shutdown(mut self) -> Result<(), LlmError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match self.done.take() {
            Some(rx) => rx.recv().unwrap_or(Ok(())),
            None => Ok(()),
        };
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        result
    }

    /// Stops at once: open connections are dropped mid-request, as if the process died.
    pub fn kill(mut self) {
        self.stop.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Serves until Ctrl-C (SIGINT) or SIGTERM, then shuts down gracefully.
    pub fn wait_for_signal(self) -> Result<(), LlmError> {
        if let Some(rt) = &self.runtime {
            rt.block_on(async {
                #[cfg(unix)]
                {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                    tokio::select! {
                        r = tokio::signal::ctrl_c() => r?,
                        _ = term.recv() => {}
                    }
                }
                #[cfg(not(unix))]
                tokio::signal::ctrl_c().await?;
                Ok::<(), std::io::Error>(())
            })?;
        }
        self.shutdown()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        )
            .into_response(),
    }
}

/// An OpenAI-shaped error.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn bad(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.message,
                kind: self.kind.to_string(),
                param: self.param.map(str::to_string),
                code: self.code.map(str::to_string),
            },
        };
        let mut resp = json_response(self.status, &body);
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

async fn health() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "not_found_error",
        message: "no such route; nxt serve answers /health, /v1/models, /v1/completions, /v1/chat/completions, /v1/load_lora_adapter and /v1/unload_lora_adapter".into(),
        param: None,
        code: None,
    }
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let adapters = state.adapters.read().unwrap_or_else(|e| e.into_inner());
    if adapters.is_empty() {
        let list = ModelList {
            object: "list".into(),
            data: vec![ModelEntry {
                id: state.model.clone(),
                object: "model".into(),
                created: state.created,
                owned_by: "nxt".into(),
            }],
        };
        return json_response(StatusCode::OK, &list);
    }
    // With adapters, vLLM's shape: `root` (the weights' path) and `parent` (the base's id).
    let mut data = vec![serde_json::json!({
        "id": state.model,
        "object": "model",
        "created": state.created,
        "owned_by": "nxt",
        "root": state.generator.name(),
        "parent": null,
    })];
    for (name, a) in adapters.iter() {
        data.push(serde_json::json!({
            "id": name,
            "object": "model",
            "created": a.created,
            "owned_by": "nxt",
            "root": a.path,
            "parent": state.model,
        }));
    }
    json_response(
        StatusCode::OK,
        &serde_json::json!({"object": "list", "data": data}),
    )
}

async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(state, body, false)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(state, body, true)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn handle(state: Arc<AppState>, body: Bytes, chat: bool) -> Result<Response, ApiError> {
    let (request, target) = parse_request(&body, chat, &state)?;
    let admitted = state
        .admitted
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            message: format!(
                "server busy: {} requests running and {} waiting; retry later",
                state.config.parallel.max(1),
                state.config.queue
            ),
            param: None,
            code: None,
        })?;
    let running = state
        .running
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| internal("the server is shutting down".into()))?;
    let generator = target.generator.clone();
    let req = request.clone();
    // The permits move into the blocking task: a slot is freed when generation really ends,
    // even if the client has gone away.
    let completions = tokio::task::spawn_blocking(move || {
        let out = generator.generate_with_pieces(&req);
        drop((running, admitted));
        out
    })
    .await
    .map_err(|e| internal(format!("generation panicked: {e}")))?
    .map_err(|e| match e {
        LlmError::Request(m) => ApiError::bad(m, None),
        other => internal(other.to_string()),
    })?;
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    Ok(json_response(
        StatusCode::OK,
        &response_body(&target.name, id, chat, &request, completions),
    ))
}

fn internal(message: String) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "server_error",
        message,
        param: None,
        code: None,
    }
}

fn response_body(
    model: &str,
    id: u64,
    chat: bool,
    request: &GenerationRequest,
    completions: Vec<(Completion, Option<Vec<TokenPiece>>)>,
) -> ResponseBody {
    let prompt_tokens = completions.first().map(|c| c.0.prompt_tokens).unwrap_or(0) as u64;
    let completion_tokens: u64 = completions
        .iter()
        .map(|c| c.0.completion_tokens as u64)
        .sum();
    let want_logprobs = request.params.logprobs;
    let choices = completions
        .into_iter()
        .enumerate()
        .map(|(index, (c, pieces))| {
            let finish = match c.finish_reason {
                FinishReason::Stop => "stop",
                FinishReason::Length => "length",
            };
            let logprobs = match (want_logprobs, c.logprobs) {
                (true, Some(values)) if chat => {
                    let mut pieces = pieces.unwrap_or_default().into_iter();
                    Some(ChoiceLogprobs {
                        content: Some(
                            values
                                .into_iter()
                                .map(|logprob| {
                                    let piece = pieces.next();
                                    TokenLogprob {
                                        token: piece
                                            .as_ref()
                                            .map(|p| p.text.clone())
                                            .unwrap_or_default(),
                                        logprob,
                                        bytes: piece.map(|p| p.bytes),
                                        top_logprobs: Vec::new(),
                                    }
                                })
                                .collect(),
                        ),
                        ..Default::default()
                    })
                }
                (true, Some(values)) => Some(ChoiceLogprobs {
                    tokens: pieces.map(|p| p.into_iter().map(|p| p.text).collect()),
                    token_logprobs: Some(values.into_iter().map(Some).collect()),
                    ..Default::default()
                }),
                _ => None,
            };
            let completion_tokens = Some(c.completion_tokens as u64);
            if chat {
                ChoiceField {
                    index,
                    text: None,
                    message: Some(OutMessage {
                        role: "assistant".into(),
                        content: Some(c.text),
                    }),
                    finish_reason: Some(finish.into()),
                    logprobs,
                    completion_tokens,
                }
            } else {
                ChoiceField {
                    index,
                    text: Some(c.text),
                    message: None,
                    finish_reason: Some(finish.into()),
                    logprobs,
                    completion_tokens,
                }
            }
        })
        .collect();
    ResponseBody {
        id: format!("{}-{id}", if chat { "chatcmpl" } else { "cmpl" }),
        object: if chat {
            "chat.completion"
        } else {
            "text_completion"
        }
        .into(),
        created: unix_now(),
        model: model.to_string(),
        choices,
        usage: Some(UsageField {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }),
    }
}
