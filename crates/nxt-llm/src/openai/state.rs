//! The client's shared state (HTTP client, endpoints, permits, counters, jitter) and the choice
//! of the endpoint for the next request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::Semaphore;

use super::config::ClientConfig;
use super::endpoints::Endpoint;

/// The live counters behind [`ClientStats`](super::ClientStats).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) prompt_tokens: AtomicU64,
    pub(super) completion_tokens: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) n_fallbacks: AtomicU64,
}

/// The client's shared state, owned by its tasks through an `Arc`.
pub(super) struct Inner {
    /// The HTTP client (headers, timeouts and the connection pool set up once).
    pub(super) http: reqwest::Client,
    /// Never empty (checked in [`OpenAiClient::new`](super::OpenAiClient::new)).
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) config: ClientConfig,
    /// HTTP requests in flight over all endpoints: [`ClientConfig::concurrency`] permits.
    pub(super) permits: Semaphore,
    pub(super) counters: Counters,
    /// Start of the next endpoint scan (ties rotate).
    pub(super) rotation: AtomicUsize,
    /// splitmix64 state of the backoff jitter.
    pub(super) rng: AtomicU64,
    /// When the client was created (endpoint avoidance is in milliseconds since).
    pub(super) started: Instant,
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
}
