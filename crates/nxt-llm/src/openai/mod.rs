//! A client for OpenAI-compatible servers: vLLM, SGLang, llama.cpp's `llama-server`, Ollama and
//! OpenAI itself.
//!
//! * `/v1/completions` for [`Prompt::Text`](crate::Prompt::Text), `/v1/chat/completions` for
//!   [`Prompt::Chat`](crate::Prompt::Chat).
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
//! blocking [`Generator`](crate::Generator) trait; async callers can use
//! [`OpenAiClient::generate_async`].
//!
//! reqwest 0.12 is the one HTTP client of the workspace: the hub downloads
//! (`nxt_engine::hub`, async, on a runtime of their own), `nxt-data`'s dataset fetch and
//! `nxt-selftrain`'s adapter loading (its blocking API) use it too. Measured with `cargo tree
//! -e normal -p nxt-cli`: ureq 3 beside it added 3 crates (ureq, ureq-proto, utf8-zero; it
//! shared rustls and webpki-roots), reqwest's blocking API adds 2 (futures-io, futures-sink),
//! and tokio/hyper are compiled for this client and the server anyway; so one client costs no
//! more than two, with one set of TLS, proxy and timeout behaviour.

pub mod wire;

// One job each: `config` (settings), `endpoints` (one server's URLs and record), `state` (the
// shared state and the least-loaded endpoint choice), `models` (model names, preflight),
// `retry` (backoff, which failures are retried, the retry loop), `attempt` (one HTTP request
// and its answer), `client` (the `Generator` impl, `n` fan-out).
mod attempt;
mod client;
mod config;
mod endpoints;
mod models;
mod retry;
mod state;

pub use client::{ClientStats, OpenAiClient};
pub use config::{api_key_from_env, ClientConfig};
