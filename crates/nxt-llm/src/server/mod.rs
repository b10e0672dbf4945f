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
//! Generation blocks, so it runs on tokio's blocking pool: at most
//! [`ServerConfig::parallel`] generations at once, and at most [`ServerConfig::queue`] more
//! waiting; beyond that requests are answered 429 with `Retry-After`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::openai::wire::{
    ChoiceField, ChoiceLogprobs, ContentField, ErrorBody, ErrorDetail, IncomingRequest, ModelEntry,
    ModelList, OutMessage, PromptField, ResponseBody, TokenLogprob, UsageField,
};
use crate::{
    ChatMessage, Completion, FinishReason, GenerationRequest, Generator, LlmError, Prompt,
    SamplingParams,
};

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

struct AppState {
    generator: Arc<dyn Generator>,
    model: String,
    config: ServerConfig,
    /// Requests admitted (running or waiting): `parallel + queue` permits.
    admitted: Arc<Semaphore>,
    /// Generations running: `parallel` permits.
    running: Arc<Semaphore>,
    next_id: AtomicU64,
    created: u64,
}

/// The router serving the routes above over `generator`; mount it in an axum app or serve it
/// with [`serve`].
pub fn router(generator: Arc<dyn Generator>, config: &ServerConfig) -> Router {
    let parallel = config.parallel.max(1);
    let model = config
        .model_name
        .clone()
        .unwrap_or_else(|| generator.name());
    let state = Arc::new(AppState {
        generator,
        model,
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
    let app = router(generator, config);
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
        let config = config.clone();
        runtime.spawn(async move {
            let result = serve(listener, generator, &config, async move {
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
        message: "no such route; nxt serve answers /health, /v1/models, /v1/completions and /v1/chat/completions".into(),
        param: None,
        code: None,
    }
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let list = ModelList {
        object: "list".into(),
        data: vec![ModelEntry {
            id: state.model.clone(),
            object: "model".into(),
            created: state.created,
            owned_by: "nxt".into(),
        }],
    };
    json_response(StatusCode::OK, &list)
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

/// Validates a request body into a [`GenerationRequest`].
fn parse_request(body: &[u8], chat: bool, state: &AppState) -> Result<GenerationRequest, ApiError> {
    let req: IncomingRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            format!("the request body is not valid JSON for this endpoint: {e}"),
            None,
        )
    })?;
    if let Some(m) = &req.model {
        if m != &state.model {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                kind: "not_found_error",
                message: format!(
                    "the model `{m}` does not exist; this server serves `{}`",
                    state.model
                ),
                param: Some("model"),
                code: Some("model_not_found"),
            });
        }
    }
    if req.stream == Some(true) {
        return Err(ApiError::bad(
            "streaming is not supported by nxt serve",
            Some("stream"),
        ));
    }
    if req.echo == Some(true) {
        return Err(ApiError::bad(
            "echo is not supported by nxt serve",
            Some("echo"),
        ));
    }
    let prompt = if chat {
        if req.prompt.is_some() {
            return Err(ApiError::bad(
                "`prompt` belongs to /v1/completions; send `messages` here",
                Some("prompt"),
            ));
        }
        let msgs = req
            .messages
            .ok_or_else(|| ApiError::bad("`messages` is required", Some("messages")))?;
        if msgs.is_empty() {
            return Err(ApiError::bad(
                "`messages` must not be empty",
                Some("messages"),
            ));
        }
        let mut out = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.into_iter().enumerate() {
            if !matches!(
                m.role.as_str(),
                "system" | "user" | "assistant" | "developer"
            ) {
                return Err(ApiError::bad(
                    format!(
                        "messages[{i}]: role `{}` is not one of system, user, assistant",
                        m.role
                    ),
                    Some("messages"),
                ));
            }
            let content = match m.content {
                None => String::new(),
                Some(ContentField::Text(t)) => t,
                Some(ContentField::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(ApiError::bad(
                                format!("messages[{i}]: content part type `{}` is not supported (text only)", p.kind),
                                Some("messages"),
                            ));
                        }
                        s.push_str(p.text.as_deref().unwrap_or(""));
                    }
                    s
                }
            };
            let role = if m.role == "developer" {
                "system".to_string()
            } else {
                m.role
            };
            out.push(ChatMessage { role, content });
        }
        Prompt::Chat(out)
    } else {
        if req.messages.is_some() {
            return Err(ApiError::bad(
                "`messages` belongs to /v1/chat/completions; send `prompt` here",
                Some("messages"),
            ));
        }
        match req.prompt {
            None => return Err(ApiError::bad("`prompt` is required", Some("prompt"))),
            Some(PromptField::One(s)) => Prompt::Text(s),
            Some(PromptField::Many(mut v)) => match (v.len(), v.pop()) {
                (1, Some(serde_json::Value::String(s))) => Prompt::Text(s),
                _ => {
                    return Err(ApiError::bad(
                        "`prompt` must be one string (batches and token ids are not supported; send one request per prompt)",
                        Some("prompt"),
                    ))
                }
            },
        }
    };
    let n = req.n.unwrap_or(1);
    if n < 1 || n as u64 > state.config.max_n as u64 {
        return Err(ApiError::bad(
            format!("`n` must be between 1 and {}, got {n}", state.config.max_n),
            Some("n"),
        ));
    }
    let max_tokens = match req.max_tokens.or(req.max_completion_tokens) {
        None => state.config.default_max_tokens,
        Some(m) if m >= 1 => m as usize,
        Some(m) => {
            return Err(ApiError::bad(
                format!("`max_tokens` must be at least 1, got {m}"),
                Some("max_tokens"),
            ))
        }
    };
    let temperature = req.temperature.unwrap_or(1.0);
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(ApiError::bad(
            format!("`temperature` must be a number >= 0, got {temperature}"),
            Some("temperature"),
        ));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad(
            format!("`top_p` must be in (0, 1], got {top_p}"),
            Some("top_p"),
        ));
    }
    let top_k = match req.top_k {
        None | Some(-1) | Some(0) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ApiError::bad(
                format!("`top_k` must be positive, or -1/0 to disable it; got {k}"),
                Some("top_k"),
            ))
        }
    };
    let stop = req.stop.map(|s| s.into_vec()).unwrap_or_default();
    let logprobs = req.logprobs.map(|l| l.requested()).unwrap_or(false);
    Ok(GenerationRequest {
        prompt,
        n: n as usize,
        params: SamplingParams {
            temperature,
            top_p,
            top_k,
            max_tokens,
            stop,
            seed: req.seed,
            logprobs,
        },
    })
}

async fn handle(state: Arc<AppState>, body: Bytes, chat: bool) -> Result<Response, ApiError> {
    let request = parse_request(&body, chat, &state)?;
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
    let generator = state.generator.clone();
    let req = request.clone();
    // The permits move into the blocking task: a slot is freed when generation really ends,
    // even if the client has gone away.
    let completions = tokio::task::spawn_blocking(move || {
        let out = generator.generate(&req);
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
        &response_body(&state, id, chat, &request, completions),
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
    state: &AppState,
    id: u64,
    chat: bool,
    request: &GenerationRequest,
    completions: Vec<Completion>,
) -> ResponseBody {
    let prompt_tokens = completions.first().map(|c| c.prompt_tokens).unwrap_or(0) as u64;
    let completion_tokens: u64 = completions.iter().map(|c| c.completion_tokens as u64).sum();
    let want_logprobs = request.params.logprobs;
    let choices = completions
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            let finish = match c.finish_reason {
                FinishReason::Stop => "stop",
                FinishReason::Length => "length",
            };
            let logprobs = match (want_logprobs, c.logprobs) {
                (true, Some(values)) if chat => Some(ChoiceLogprobs {
                    content: Some(
                        values
                            .into_iter()
                            .map(|logprob| TokenLogprob {
                                token: String::new(),
                                logprob,
                                bytes: None,
                                top_logprobs: Vec::new(),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                (true, Some(values)) => Some(ChoiceLogprobs {
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
        model: state.model.clone(),
        choices,
        usage: Some(UsageField {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }),
    }
}
