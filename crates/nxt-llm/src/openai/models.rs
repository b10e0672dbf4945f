//! Each endpoint's model name (`GET /v1/models`), and the preflight check that asks every
//! endpoint once before any work.

use reqwest::StatusCode;

use super::endpoints::Endpoint;
use super::retry::{describe, refusal};
use super::state::Inner;
use super::wire;
use crate::LlmError;

impl Inner {
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
