//! The endpoints: URLs, requests in flight, the least-loaded choice (avoiding endpoints that
//! just failed), and each endpoint's model name (`GET /v1/models`, also the preflight check).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use reqwest::StatusCode;
use tokio::sync::OnceCell;

use super::client::Inner;
use super::retry::{describe, refusal};
use super::wire;
use crate::LlmError;

/// One server.
pub(super) struct Endpoint {
    /// Base URL, normalised (ends in `/v1`, no trailing slash).
    pub(super) base: String,
    /// `{base}/completions`.
    pub(super) completions_url: String,
    /// `{base}/chat/completions`.
    pub(super) chat_url: String,
    /// `{base}/models`.
    pub(super) models_url: String,
    /// HTTP requests to this endpoint in flight (see [`InFlight`]).
    pub(super) in_flight: AtomicUsize,
    /// Failed attempts since the last success.
    consecutive_failures: AtomicU32,
    /// Milliseconds since the client started before which this endpoint is avoided.
    avoid_until_ms: AtomicU64,
    /// The server refused `n > 1` (or answered fewer choices): send single requests.
    pub(super) n_unsupported: AtomicBool,
    /// The server rejected `top_k`: do not send it again.
    pub(super) top_k_unsupported: AtomicBool,
    /// The model name found with `GET /v1/models` (when none is configured).
    pub(super) model: OnceCell<String>,
}

impl Endpoint {
    /// An endpoint for the base URL `raw` (`http` or `https`; a URL without a path gets `/v1`).
    pub(super) fn new(raw: &str) -> Result<Self, LlmError> {
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
pub(super) struct InFlight<'a>(pub(super) &'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    /// Milliseconds since the client started.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether every endpoint is known to refuse `n > 1`.
    pub(super) fn all_refuse_n(&self) -> bool {
        self.endpoints
            .iter()
            .all(|e| e.n_unsupported.load(Ordering::Relaxed))
    }

    /// The endpoint to use next: not recently failed, then fewest requests in flight, ties
    /// rotated. `wants_n` prefers endpoints that accept `n > 1`.
    pub(super) fn pick(&self, wants_n: bool) -> &Endpoint {
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

    /// Records a failed attempt: the endpoint is avoided for a while, longer after each
    /// consecutive failure (capped at [`ClientConfig::backoff_max`](super::ClientConfig)).
    pub(super) fn mark_failure(&self, ep: &Endpoint) {
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

    /// Records a success: the endpoint is no longer avoided.
    pub(super) fn mark_success(&self, ep: &Endpoint) {
        if ep.consecutive_failures.load(Ordering::Relaxed) != 0 {
            ep.consecutive_failures.store(0, Ordering::Relaxed);
            ep.avoid_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// The model name for `ep`: configured, or the first of `GET /v1/models` (one attempt;
    /// the caller's retry loop covers failures).
    pub(super) async fn model_for(&self, ep: &Endpoint) -> Result<String, LlmError> {
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
    pub(super) async fn preflight(&self) -> Result<(), LlmError> {
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
}
