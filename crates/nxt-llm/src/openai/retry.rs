//! Retries: exponential backoff with jitter, `Retry-After`, which failures are retried and
//! which are final, the retry loop of one logical request, and errors in words.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;

use super::state::Inner;
use crate::{Completion, GenerationRequest, LlmError, Prompt};

/// How one HTTP attempt failed.
pub(super) enum AttemptError {
    /// Worth retrying (after `delay` if the server asked for one).
    Retry {
        /// What failed, for the final error.
        why: String,
        /// The server's `Retry-After`, if any.
        delay: Option<Duration>,
    },
    /// The server refused `n > 1`.
    NRefused,
    /// The server rejected `top_k`.
    TopKRefused,
    /// Final.
    Fatal(LlmError),
}

/// How one logical request (all its attempts) failed.
pub(super) enum CallError {
    /// The endpoint refuses `n > 1`: send single requests instead.
    NRefused,
    /// Final (retries exhausted, or not retryable).
    Fatal(LlmError),
}

impl Inner {
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
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.config.backoff_max;
        let d = self
            .config
            .backoff_base
            .checked_mul(1u32 << attempt.min(20))
            .unwrap_or(cap)
            .min(cap);
        d.mul_f64(0.5 + 0.5 * self.random())
    }

    /// One logical request (n samples, or 1) with retries over the endpoints.
    pub(super) async fn call(
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
}

/// A failed model-name lookup as an attempt's error: a refusal is final, anything else is
/// retried.
pub(super) fn model_lookup_failed(e: LlmError) -> AttemptError {
    match e {
        LlmError::Refused(_) => AttemptError::Fatal(e),
        LlmError::Server(m) => AttemptError::Retry {
            why: m,
            delay: None,
        },
        other => AttemptError::Retry {
            why: other.to_string(),
            delay: None,
        },
    }
}

/// A `Retry-After` header in seconds (a non-negative number; HTTP dates are not honoured).
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A non-2xx answer to `POST url` with error message `msg`: `n > 1` or `top_k` refused (when
/// they were sent), retried on 408, 429 and 5xx (after `retry_after` if given), otherwise final.
pub(super) fn failed_answer(
    url: &str,
    status: StatusCode,
    msg: String,
    n: usize,
    sent_top_k: bool,
    retry_after: Option<Duration>,
) -> AttemptError {
    if n > 1 && refuses_n(&msg) {
        return AttemptError::NRefused;
    }
    if status == StatusCode::BAD_REQUEST && sent_top_k && msg.contains("top_k") {
        return AttemptError::TopKRefused;
    }
    let why = format!("POST {url} answered {status}: {msg}");
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        return AttemptError::Retry {
            why,
            delay: retry_after,
        };
    }
    AttemptError::Fatal(refusal(status, why))
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

/// The error of a final 4xx: authentication, permission and not-found refusals stop a run
/// ([`LlmError::Refused`]); other client errors belong to the request ([`LlmError::Request`]).
pub(super) fn refusal(status: StatusCode, why: String) -> LlmError {
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

/// A reqwest error in words, with its causes (reqwest's Display alone says little).
pub(super) fn describe(e: &reqwest::Error) -> String {
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
    use super::super::{ClientConfig, OpenAiClient};
    use super::*;

    #[test]
    fn n_refusals_are_recognised() {
        assert!(refuses_n("Only one completion choice is allowed"));
        assert!(refuses_n(
            "Illegal param: only one completion choice is allowed"
        ));
        assert!(!refuses_n("model not found"));
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
