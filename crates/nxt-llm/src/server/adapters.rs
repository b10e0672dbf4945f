//! The LoRA adapter routes (vLLM's API): `POST /v1/load_lora_adapter` and `POST
//! /v1/unload_lora_adapter`, and the adapters a server hosts by name.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{internal, unix_now, ApiError, AppState};
use crate::Generator;

/// A hosted adapter.
pub(super) struct Adapter {
    /// Where it was loaded from (`root` in `/v1/models`).
    pub(super) path: String,
    /// The base model with the adapter applied.
    pub(super) generator: Arc<dyn Generator>,
    /// When it was loaded (Unix seconds).
    pub(super) created: u64,
}

/// A plain-text 200, as vLLM answers the adapter routes.
fn text_ok(message: String) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        message,
    )
        .into_response()
}

/// A non-empty string field of the JSON body, trimmed.
fn adapter_field(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(|x| x.as_str())
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
}

/// `POST /v1/load_lora_adapter {"lora_name", "lora_path", "load_inplace"?}`.
pub(super) async fn load_lora_adapter(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    load_adapter_route(state, body)
        .await
        .unwrap_or_else(|e| e.into_response())
}

/// Loads the adapter (on the blocking pool) and hosts it under its name.
async fn load_adapter_route(state: Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("the request body is not valid JSON: {e}"), None))?;
    let (Some(name), Some(path)) = (
        adapter_field(&v, "lora_name"),
        adapter_field(&v, "lora_path"),
    ) else {
        return Err(ApiError::bad(
            "Both 'lora_name' and 'lora_path' must be provided.",
            None,
        ));
    };
    let inplace = v.get("load_inplace").and_then(|x| x.as_bool()) == Some(true);
    let duplicate = || {
        ApiError::bad(
            format!("The lora adapter '{name}' has already been loaded."),
            Some("lora_name"),
        )
    };
    if name == state.model {
        return Err(ApiError::bad(
            format!("'{name}' is the base model's name; give the adapter another name"),
            Some("lora_name"),
        ));
    }
    if !inplace
        && state
            .adapters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&name)
    {
        return Err(duplicate());
    }
    let Some(loader) = state.loader.clone() else {
        return Err(ApiError::bad(
            "this server's model cannot load LoRA adapters",
            None,
        ));
    };
    let dir = PathBuf::from(&path);
    let generator = tokio::task::spawn_blocking(move || loader.load_adapter(&dir))
        .await
        .map_err(|e| internal(format!("loading the adapter panicked: {e}")))?
        .map_err(|e| {
            ApiError::bad(
                format!("cannot load the lora adapter '{name}' from {path}: {e}"),
                Some("lora_path"),
            )
        })?;
    let mut adapters = state.adapters.write().unwrap_or_else(|e| e.into_inner());
    if !inplace && adapters.contains_key(&name) {
        // Loaded meanwhile by a concurrent request.
        return Err(duplicate());
    }
    adapters.insert(
        name.clone(),
        Adapter {
            path,
            generator,
            created: unix_now(),
        },
    );
    Ok(text_ok(format!(
        "Success: LoRA adapter '{name}' added successfully."
    )))
}

/// `POST /v1/unload_lora_adapter {"lora_name"}`.
pub(super) async fn unload_lora_adapter(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Response {
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::bad(format!("the request body is not valid JSON: {e}"), None)
                .into_response()
        }
    };
    let Some(name) = adapter_field(&v, "lora_name") else {
        return ApiError::bad(
            "'lora_name' needs to be provided to unload a LoRA adapter.",
            None,
        )
        .into_response();
    };
    let removed = state
        .adapters
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&name);
    match removed {
        Some(_) => text_ok(format!(
            "Success: LoRA adapter '{name}' removed successfully."
        )),
        None => ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "NotFoundError",
            message: format!("The lora adapter '{name}' cannot be found."),
            param: Some("lora_name"),
            code: None,
        }
        .into_response(),
    }
}
