//! One endpoint: its URLs, its requests in flight, its failure record and what it is known to
//! refuse. Choosing among endpoints is [`Inner::pick`](super::state::Inner::pick).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::OnceCell;

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
    pub(super) consecutive_failures: AtomicU32,
    /// Milliseconds since the client started before which this endpoint is avoided.
    pub(super) avoid_until_ms: AtomicU64,
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
