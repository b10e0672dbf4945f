//! Request parsing: an OpenAI request body validated into a [`GenerationRequest`] and the
//! model ([`Target`]) that serves it. Errors are OpenAI-shaped 400s naming the field (404 for
//! an unknown model).

use std::sync::Arc;

use axum::http::StatusCode;

use super::{ApiError, AppState, ServerConfig};
use crate::openai::wire::{ContentField, IncomingMessage, IncomingRequest, PromptField};
use crate::{ChatMessage, GenerationRequest, Generator, Prompt, SamplingParams};

/// The model a request asked for and the generator serving it.
pub(super) struct Target {
    /// The model's name as served (the base model's or an adapter's).
    pub(super) name: String,
    /// The generator of that model.
    pub(super) generator: Arc<dyn Generator>,
}

/// Validates a request body into a [`GenerationRequest`], for `/v1/chat/completions` when
/// `chat` (else `/v1/completions`), and finds the model it asked for.
pub(super) fn parse_request(
    body: &[u8],
    chat: bool,
    state: &AppState,
) -> Result<(GenerationRequest, Target), ApiError> {
    let mut req: IncomingRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            format!("the request body is not valid JSON for this endpoint: {e}"),
            None,
        )
    })?;
    let target = target(req.model.as_deref(), state)?;
    reject_unsupported(&req)?;
    let prompt = if chat {
        chat_prompt(req.prompt.is_some(), req.messages.take())?
    } else {
        text_prompt(req.messages.is_some(), req.prompt.take())?
    };
    let n = sample_count(req.n, state.config.max_n)?;
    let params = sampling_params(req, &state.config)?;
    Ok((GenerationRequest { prompt, n, params }, target))
}

/// The base model when `model` is absent or its name, else the adapter of that name (404
/// listing the served names when there is none).
fn target(model: Option<&str>, state: &AppState) -> Result<Target, ApiError> {
    let target = match model {
        None => Target {
            name: state.model.clone(),
            generator: state.generator.clone(),
        },
        Some(m) if m == state.model => Target {
            name: m.to_string(),
            generator: state.generator.clone(),
        },
        Some(m) => {
            let adapters = state.adapters.read().unwrap_or_else(|e| e.into_inner());
            match adapters.get(m) {
                Some(a) => Target {
                    name: m.to_string(),
                    generator: a.generator.clone(),
                },
                None => {
                    let mut names = vec![format!("`{}`", state.model)];
                    names.extend(adapters.keys().map(|k| format!("`{k}`")));
                    return Err(ApiError {
                        status: StatusCode::NOT_FOUND,
                        kind: "not_found_error",
                        message: format!(
                            "the model `{m}` does not exist; this server serves {}",
                            names.join(", ")
                        ),
                        param: Some("model"),
                        code: Some("model_not_found"),
                    });
                }
            }
        }
    };
    Ok(target)
}

/// Streaming and echo are refused.
fn reject_unsupported(req: &IncomingRequest) -> Result<(), ApiError> {
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
    Ok(())
}

/// The prompt of a chat request: `messages` (not `prompt`), at least one.
fn chat_prompt(
    has_prompt: bool,
    messages: Option<Vec<IncomingMessage>>,
) -> Result<Prompt, ApiError> {
    if has_prompt {
        return Err(ApiError::bad(
            "`prompt` belongs to /v1/completions; send `messages` here",
            Some("prompt"),
        ));
    }
    let msgs = messages.ok_or_else(|| ApiError::bad("`messages` is required", Some("messages")))?;
    if msgs.is_empty() {
        return Err(ApiError::bad(
            "`messages` must not be empty",
            Some("messages"),
        ));
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.into_iter().enumerate() {
        out.push(chat_message(i, m)?);
    }
    Ok(Prompt::Chat(out))
}

/// Message `i` of a chat: a known role (`developer` read as `system`) and text content.
fn chat_message(i: usize, m: IncomingMessage) -> Result<ChatMessage, ApiError> {
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
        // No tool calls here: a message is its content.
        None => {
            return Err(ApiError::bad(
                format!("messages[{i}]: `content` is required"),
                Some("messages"),
            ))
        }
        Some(ContentField::Text(t)) => t,
        Some(ContentField::Parts(parts)) => {
            let mut s = String::new();
            for p in parts {
                if p.kind != "text" {
                    return Err(ApiError::bad(
                        format!(
                            "messages[{i}]: content part type `{}` is not supported (text only)",
                            p.kind
                        ),
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
    Ok(ChatMessage { role, content })
}

/// The prompt of a completion request: `prompt` (not `messages`), one string.
fn text_prompt(has_messages: bool, prompt: Option<PromptField>) -> Result<Prompt, ApiError> {
    if has_messages {
        return Err(ApiError::bad(
            "`messages` belongs to /v1/chat/completions; send `prompt` here",
            Some("messages"),
        ));
    }
    match prompt {
        None => Err(ApiError::bad("`prompt` is required", Some("prompt"))),
        Some(PromptField::One(s)) => Ok(Prompt::Text(s)),
        Some(PromptField::Many(mut v)) => match (v.len(), v.pop()) {
            (1, Some(serde_json::Value::String(s))) => Ok(Prompt::Text(s)),
            _ => Err(ApiError::bad(
                "`prompt` must be one string (batches and token ids are not supported; send one request per prompt)",
                Some("prompt"),
            )),
        },
    }
}

/// `n`: 1 when absent, else between 1 and `max_n`.
fn sample_count(n: Option<i64>, max_n: usize) -> Result<usize, ApiError> {
    let n = n.unwrap_or(1);
    if n < 1 || n as u64 > max_n as u64 {
        return Err(ApiError::bad(
            format!("`n` must be between 1 and {max_n}, got {n}"),
            Some("n"),
        ));
    }
    Ok(n as usize)
}

/// The sampling settings: `max_tokens` (or `max_completion_tokens`), `temperature`, `top_p`,
/// `top_k` validated in that order, then `stop`, `seed` and `logprobs`.
fn sampling_params(
    req: IncomingRequest,
    config: &ServerConfig,
) -> Result<SamplingParams, ApiError> {
    let max_tokens = max_tokens(
        req.max_tokens.or(req.max_completion_tokens),
        config.default_max_tokens,
    )?;
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
    let top_k = top_k(req.top_k)?;
    let stop = req.stop.map(|s| s.into_vec()).unwrap_or_default();
    let logprobs = req.logprobs.map(|l| l.requested()).unwrap_or(false);
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k,
        max_tokens,
        stop,
        seed: req.seed,
        logprobs,
    })
}

/// `max_tokens`: `default` when absent, else at least 1.
fn max_tokens(requested: Option<i64>, default: usize) -> Result<usize, ApiError> {
    match requested {
        None => Ok(default),
        Some(m) if m >= 1 => Ok(m as usize),
        Some(m) => Err(ApiError::bad(
            format!("`max_tokens` must be at least 1, got {m}"),
            Some("max_tokens"),
        )),
    }
}

/// `top_k`: absent, `-1` or `0` disable it; otherwise it must be positive.
fn top_k(requested: Option<i64>) -> Result<Option<usize>, ApiError> {
    match requested {
        None | Some(-1) | Some(0) => Ok(None),
        Some(k) if k > 0 => Ok(Some(k as usize)),
        Some(k) => Err(ApiError::bad(
            format!("`top_k` must be positive, or -1/0 to disable it; got {k}"),
            Some("top_k"),
        )),
    }
}
