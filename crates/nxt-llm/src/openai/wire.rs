//! JSON shapes of the OpenAI completions and chat-completions APIs, shared by the client
//! ([`super::OpenAiClient`]) and the server ([`crate::server`]).
//!
//! Request types are lenient where servers disagree (a `stop` given as one string or a list,
//! `logprobs` given as a number or a boolean, chat `content` given as a string or as parts).

use serde::{Deserialize, Serialize};

use crate::{ChatMessage, FinishReason};

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// `logprobs` as sent: a count for `/v1/completions`, a flag for `/v1/chat/completions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum LogprobsField {
    /// `/v1/chat/completions`: `true` asks for the sampled tokens' log-probabilities.
    Flag(bool),
    /// `/v1/completions`: how many alternatives per position (the sampled token always comes).
    Count(i64),
}

impl LogprobsField {
    /// Whether the field asks for log-probabilities at all.
    pub fn requested(&self) -> bool {
        match self {
            LogprobsField::Flag(b) => *b,
            LogprobsField::Count(n) => *n >= 0,
        }
    }
}

/// `stop` as sent: one string or a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl StopField {
    /// The stop strings, empty ones dropped.
    pub fn into_vec(self) -> Vec<String> {
        let v = match self {
            StopField::One(s) => vec![s],
            StopField::Many(v) => v,
        };
        v.into_iter().filter(|s| !s.is_empty()).collect()
    }
}

/// The body the client sends to either endpoint (fields absent when not needed, so that strict
/// servers see only what they know).
#[derive(Debug, Serialize)]
pub(crate) struct OutgoingRequest<'a> {
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<&'a [ChatMessage]>,
    #[serde(skip_serializing_if = "is_one")]
    pub n: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<LogprobsField>,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Chat message content: a string, or a list of parts of which the text ones are joined.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ContentField {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": "..."}, ...]`.
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part chat message content.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// Part type (`text` is the only one understood).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// A chat message as received by the server.
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Content; `null` is allowed for assistant messages and read as empty.
    #[serde(default)]
    pub content: Option<ContentField>,
}

/// A `prompt` as received: one string, or a list holding exactly one string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// One prompt.
    One(String),
    /// A batch of prompts (only batches of one are served).
    Many(Vec<serde_json::Value>),
}

/// Body of `/v1/completions` or `/v1/chat/completions` as received by the server. Unknown
/// fields are ignored, as vLLM and llama.cpp do.
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingRequest {
    /// Model name (checked against the served name when present).
    #[serde(default)]
    pub model: Option<String>,
    /// `/v1/completions` prompt.
    #[serde(default)]
    pub prompt: Option<PromptField>,
    /// `/v1/chat/completions` messages.
    #[serde(default)]
    pub messages: Option<Vec<IncomingMessage>>,
    /// Number of samples.
    #[serde(default)]
    pub n: Option<i64>,
    /// Most new tokens per sample.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Newer OpenAI name for `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Top-k (`-1`, `0` or absent disable it).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<StopField>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Log-probabilities.
    #[serde(default)]
    pub logprobs: Option<LogprobsField>,
    /// Streaming (not supported by `nxt serve`).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Echo the prompt (not supported).
    #[serde(default)]
    pub echo: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageField {
    /// Prompt tokens (counted once, not once per sample).
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens over all samples.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of both.
    #[serde(default)]
    pub total_tokens: u64,
}

/// Chat log-probability entry of one token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenLogprob {
    /// Token text: the token's decoded piece (`nxt serve` fills it from the engine's vocabulary).
    #[serde(default)]
    pub token: String,
    /// Log-probability of the sampled token.
    pub logprob: f32,
    /// UTF-8 bytes of the token, when known.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    /// Alternatives (not produced by `nxt serve`).
    #[serde(default)]
    pub top_logprobs: Vec<serde_json::Value>,
}

/// `logprobs` of one choice, in either API's shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChoiceLogprobs {
    /// `/v1/completions`: log-probability per token (`null` for the first token under echo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_logprobs: Option<Vec<Option<f32>>>,
    /// `/v1/completions`: token texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
    /// `/v1/chat/completions`: one entry per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<TokenLogprob>>,
}

impl ChoiceLogprobs {
    /// The sampled tokens' log-probabilities, whichever shape carried them.
    pub fn values(&self) -> Option<Vec<f32>> {
        if let Some(v) = &self.token_logprobs {
            return Some(v.iter().map(|x| x.unwrap_or(0.0)).collect());
        }
        self.content
            .as_ref()
            .map(|c| c.iter().map(|t| t.logprob).collect())
    }
}

/// Assistant message of a chat choice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutMessage {
    /// Always `assistant`.
    #[serde(default)]
    pub role: String,
    /// Generated text (`null` from some servers when empty).
    #[serde(default)]
    pub content: Option<String>,
}

/// One choice of either API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChoiceField {
    /// Position among the choices.
    #[serde(default)]
    pub index: usize,
    /// `/v1/completions` text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `/v1/chat/completions` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<OutMessage>,
    /// `stop` or `length` (others are read as `stop`).
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Log-probabilities when requested.
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    /// Tokens generated for this choice: an extension written by `nxt serve` (OpenAI's
    /// `usage` only gives the sum over choices); other servers omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
}

impl ChoiceField {
    /// The generated text of either shape.
    pub fn text(&self) -> &str {
        if let Some(t) = &self.text {
            return t;
        }
        self.message
            .as_ref()
            .and_then(|m| m.content.as_deref())
            .unwrap_or("")
    }

    /// The finish reason mapped onto [`FinishReason`].
    pub fn finish(&self) -> FinishReason {
        match self.finish_reason.as_deref() {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        }
    }
}

/// A response body of either API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseBody {
    /// Response id.
    #[serde(default)]
    pub id: String,
    /// `text_completion` or `chat.completion`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// The samples.
    pub choices: Vec<ChoiceField>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<UsageField>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelEntry {
    /// The name to pass as `model`.
    pub id: String,
    /// Always `model`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Owner.
    #[serde(default)]
    pub owned_by: String,
}

/// `GET /v1/models` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelList {
    /// Always `list`.
    #[serde(default)]
    pub object: String,
    /// Served models.
    pub data: Vec<ModelEntry>,
}

/// OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside an [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// Error class, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, when one is to blame.
    pub param: Option<String>,
    /// Machine-readable code.
    pub code: Option<String>,
}

/// The message of an error response, whichever server wrote it: OpenAI/vLLM/llama.cpp
/// `{"error": {"message"}}`, Ollama `{"error": "..."}`, older vLLM `{"message"}`, FastAPI
/// `{"detail"}`; otherwise the start of the raw body.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        if let Some(m) = found {
            return match m {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    let mut end = text.len().min(500);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_of_several_servers() {
        assert_eq!(
            error_message(br#"{"error":{"code":500,"message":"Only one completion choice is allowed","type":"server_error"}}"#),
            "Only one completion choice is allowed"
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(
            error_message(br#"{"object":"error","message":"bad"}"#),
            "bad"
        );
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn logprobs_of_both_shapes() {
        let c: ChoiceLogprobs =
            serde_json::from_str(r#"{"token_logprobs":[-0.5,null],"tokens":["a","b"]}"#).unwrap();
        assert_eq!(c.values(), Some(vec![-0.5, 0.0]));
        let c: ChoiceLogprobs = serde_json::from_str(
            r#"{"content":[{"token":"a","logprob":-1.5,"bytes":[97],"top_logprobs":[]}]}"#,
        )
        .unwrap();
        assert_eq!(c.values(), Some(vec![-1.5]));
    }

    #[test]
    fn outgoing_request_omits_defaults() {
        let body = OutgoingRequest {
            model: "m",
            prompt: Some("hi"),
            messages: None,
            n: 1,
            max_tokens: 5,
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            stop: &[],
            seed: None,
            logprobs: None,
        };
        let s = serde_json::to_string(&body).unwrap();
        assert_eq!(
            s,
            r#"{"model":"m","prompt":"hi","max_tokens":5,"temperature":0.0,"top_p":1.0}"#
        );
    }
}
