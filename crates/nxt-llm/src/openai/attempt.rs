//! One HTTP attempt: the request body, the POST under the concurrency limit, and the answer
//! turned into completions (stop strings applied, token counts per choice).

use std::sync::atomic::Ordering;

use super::endpoints::{Endpoint, InFlight};
use super::retry::{describe, failed_answer, model_lookup_failed, retry_after, AttemptError};
use super::state::Inner;
use super::wire::{self, LogprobsField, OutgoingRequest, ResponseBody};
use crate::{Completion, FinishReason, GenerationRequest, LlmError, Prompt};

impl Inner {
    /// One HTTP attempt.
    pub(super) async fn attempt(
        &self,
        ep: &Endpoint,
        url: &str,
        req: &GenerationRequest,
        n: usize,
        seed: Option<u64>,
    ) -> Result<Vec<Completion>, AttemptError> {
        let model = self.model_for(ep).await.map_err(model_lookup_failed)?;
        let send_top_k =
            req.params.top_k.is_some() && !ep.top_k_unsupported.load(Ordering::Relaxed);
        let body = encode_body(&model, req, n, seed, send_top_k)?;

        let permit =
            self.permits.acquire().await.map_err(|_| {
                AttemptError::Fatal(LlmError::Server("client is shutting down".into()))
            })?;
        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(&ep.in_flight);
        let sent = self.http.post(url).body(body).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(AttemptError::Retry {
                    why: format!("POST {url}: {}", describe(&e)),
                    delay: None,
                })
            }
        };
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| AttemptError::Retry {
            why: format!("POST {url}: reading the answer: {}", describe(&e)),
            delay: None,
        })?;
        drop(guard);
        drop(permit);

        if !status.is_success() {
            let msg = wire::error_message(&bytes);
            return Err(failed_answer(url, status, msg, n, send_top_k, retry_after));
        }
        let parsed: ResponseBody = serde_json::from_slice(&bytes).map_err(|e| {
            AttemptError::Fatal(LlmError::Server(format!(
                "POST {url}: the answer is not a completion response: {e}: {}",
                wire::error_message(&bytes)
            )))
        })?;
        Ok(self.to_completions(parsed, &req.params.stop))
    }

    /// Choices in index order, stop strings applied client-side too (some servers cap the
    /// number of stop strings), token counts per choice.
    fn to_completions(&self, parsed: ResponseBody, stop: &[String]) -> Vec<Completion> {
        let usage = parsed.usage.unwrap_or_default();
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        c.completion_tokens
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);

        let mut choices = parsed.choices;
        choices.sort_by_key(|ch| ch.index);
        let mut exact = true;
        let mut out: Vec<Completion> = choices
            .iter()
            .map(|ch| {
                let mut text = ch.text().to_string();
                let mut finish = ch.finish();
                if let Some(cut) = earliest_stop(&text, stop) {
                    text.truncate(cut);
                    finish = FinishReason::Stop;
                }
                let logprobs = ch.logprobs.as_ref().and_then(|l| l.values());
                exact &= ch.completion_tokens.is_some() || logprobs.is_some();
                Completion {
                    completion_tokens: ch
                        .completion_tokens
                        .map(|t| t as usize)
                        .or(logprobs.as_ref().map(|l| l.len()))
                        .unwrap_or(0),
                    text,
                    prompt_tokens: usage.prompt_tokens as usize,
                    finish_reason: finish,
                    logprobs,
                }
            })
            .collect();
        if !exact {
            apportion_tokens(&mut out, usage.completion_tokens);
        }
        out
    }
}

/// The JSON body of one request for `n` samples (`top_k` only when `send_top_k`).
fn encode_body(
    model: &str,
    req: &GenerationRequest,
    n: usize,
    seed: Option<u64>,
    send_top_k: bool,
) -> Result<Vec<u8>, AttemptError> {
    let p = &req.params;
    let (prompt, messages, logprobs) = match &req.prompt {
        Prompt::Text(t) => (
            Some(t.as_str()),
            None,
            p.logprobs.then_some(LogprobsField::Count(1)),
        ),
        Prompt::Chat(m) => (
            None,
            Some(m.as_slice()),
            p.logprobs.then_some(LogprobsField::Flag(true)),
        ),
    };
    let body = OutgoingRequest {
        model,
        prompt,
        messages,
        n,
        max_tokens: p.max_tokens,
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: if send_top_k { p.top_k } else { None },
        stop: &p.stop,
        seed,
        logprobs,
    };
    serde_json::to_vec(&body).map_err(|e| {
        AttemptError::Fatal(LlmError::Request(format!("cannot encode the request: {e}")))
    })
}

/// Per-choice completion tokens when the server gave no per-choice count (`nxt serve` does;
/// log-probabilities give one too): exact for one choice, otherwise the usage total shared out
/// in proportion to text length (OpenAI's `usage` only gives the sum over choices).
fn apportion_tokens(out: &mut [Completion], total: u64) {
    if out.is_empty() {
        return;
    }
    if out.len() == 1 {
        out[0].completion_tokens = total as usize;
        return;
    }
    let lens: Vec<u64> = out.iter().map(|c| c.text.len() as u64 + 1).collect();
    let sum: u64 = lens.iter().sum();
    let mut given = 0u64;
    let last = out.len() - 1;
    for (i, c) in out.iter_mut().enumerate() {
        let share = if i == last {
            total.saturating_sub(given)
        } else {
            total * lens[i] / sum
        };
        given += share;
        c.completion_tokens = share as usize;
    }
}

/// Byte offset of the earliest stop string in `text`.
fn earliest_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(earliest_stop("abc END x\n\n", &stops), Some(4));
        assert_eq!(earliest_stop("abc", &stops), None);
    }

    #[test]
    fn token_counts_are_shared_out_exactly() {
        let mk = |t: &str| Completion {
            text: t.into(),
            prompt_tokens: 3,
            completion_tokens: 0,
            finish_reason: FinishReason::Stop,
            logprobs: None,
        };
        let mut v = vec![mk("aaaa"), mk(""), mk("aaaaaaaaa")];
        apportion_tokens(&mut v, 10);
        assert_eq!(v.iter().map(|c| c.completion_tokens).sum::<usize>(), 10);
        assert!(v[2].completion_tokens > v[1].completion_tokens);
    }
}
