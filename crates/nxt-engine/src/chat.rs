//! Chat templates from `tokenizer_config.json` / `chat_template.jinja`, rendered with
//! minijinja the way transformers does (trim_blocks, lstrip_blocks, Python string methods,
//! `raise_exception`, `strftime_now`, `tojson`).

use std::path::Path;

use minijinja::{Environment, ErrorKind, Value};
use serde_json::Value as Json;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

/// A compiled chat template plus the special tokens it refers to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token` as text ("" when the tokenizer has none).
    pub bos_token: String,
    /// `eos_token` as text ("" when the tokenizer has none).
    pub eos_token: String,
}

/// A special token in tokenizer_config.json: a string or an `AddedToken` object.
fn token_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

/// What tokenizer_config.json says about special tokens and the template.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// `bos_token`.
    pub bos_token: Option<String>,
    /// `eos_token`.
    pub eos_token: Option<String>,
    /// The chat template source, if any.
    pub chat_template: Option<String>,
}

impl TokenizerConfig {
    /// Reads `tokenizer_config.json` (optional) and `chat_template.jinja` (optional, preferred
    /// when present, as transformers 5.x writes it) from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, EngineError> {
        let mut out = Self::default();
        let p = dir.join("tokenizer_config.json");
        if p.exists() {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| EngineError::Model(format!("{}: cannot read: {e}", p.display())))?;
            let v: Json = serde_json::from_str(&text)
                .map_err(|e| EngineError::Model(format!("{}: invalid JSON: {e}", p.display())))?;
            out.bos_token = token_text(v.get("bos_token"));
            out.eos_token = token_text(v.get("eos_token"));
            out.chat_template = match v.get("chat_template") {
                Some(Json::String(s)) => Some(s.clone()),
                // A list of named templates: take "default".
                Some(Json::Array(a)) => a
                    .iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                    .or_else(|| a.first())
                    .and_then(|t| t.get("template"))
                    .and_then(Json::as_str)
                    .map(str::to_string),
                _ => None,
            };
        }
        let j = dir.join("chat_template.jinja");
        if j.exists() {
            out.chat_template =
                Some(std::fs::read_to_string(&j).map_err(|e| {
                    EngineError::Model(format!("{}: cannot read: {e}", j.display()))
                })?);
        }
        Ok(out)
    }
}

/// `strftime` for the handful of directives chat templates use, in UTC.
pub fn strftime_utc(fmt: &str, unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = unix_secs.div_euclid(86400);
    let secs = unix_secs.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let month = MONTHS[(m - 1) as usize];
    let wday = DAYS[days.rem_euclid(7) as usize];
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('-') => match it.next() {
                Some('d') => out.push_str(&d.to_string()),
                Some('m') => out.push_str(&m.to_string()),
                Some(o) => {
                    out.push_str("%-");
                    out.push(o)
                }
                None => out.push_str("%-"),
            },
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(&month[..3]),
            Some('A') => out.push_str(wday),
            Some('a') => out.push_str(&wday[..3]),
            Some('H') => out.push_str(&format!("{:02}", secs / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o)
            }
            None => out.push('%'),
        }
    }
    out
}

impl ChatTemplate {
    /// Compiles `source`; `origin` names the file in error messages.
    pub fn new(
        source: &str,
        bos_token: String,
        eos_token: String,
        origin: &str,
    ) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| EngineError::Model(format!("{origin}: template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", |fmt: String| -> String {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            strftime_utc(&fmt, now)
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| {
                EngineError::Model(format!("{origin}: chat template does not compile: {e}"))
            })?;
        Ok(Self {
            env,
            bos_token,
            eos_token,
        })
    }

    /// Renders `messages` (with the assistant turn opened when `add_generation_prompt`).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Model(format!("chat template: {e}")))?;
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                minijinja::context! { role => m.role.clone(), content => m.content.clone() }
            })
            .collect();
        tmpl.render(minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        })
        .map_err(|e| {
            let mut msg = format!("chat template failed: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            EngineError::Request(msg)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        assert_eq!(strftime_utc("%d %b %Y", 0), "01 Jan 1970");
        // 2024-02-29 12:34:56 UTC, a Thursday.
        assert_eq!(
            strftime_utc("%Y-%m-%d %H:%M:%S %A %B %-d%%", 1_709_210_096),
            "2024-02-29 12:34:56 Thursday February 29%"
        );
    }

    #[test]
    fn raise_exception_surfaces() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok",
            String::new(),
            String::new(),
            "t",
        )
        .unwrap();
        let m = |r: &str| {
            vec![ChatMessage {
                role: r.into(),
                content: "x".into(),
            }]
        };
        assert_eq!(t.render(&m("user"), true).unwrap(), "ok");
        let e = t.render(&m("system"), true).unwrap_err().to_string();
        assert!(e.contains("first must be user"), "{e}");
    }

    #[test]
    fn python_methods_and_tojson() {
        let t = ChatTemplate::new(
            "{{ messages[0].content.strip().upper() }}|{{ messages[0].content.startswith(' a') }}|{{ messages | tojson }}",
            String::new(),
            String::new(),
            "t",
        )
        .unwrap();
        let out = t
            .render(
                &[ChatMessage {
                    role: "user".into(),
                    content: " ab ".into(),
                }],
                false,
            )
            .unwrap();
        // Python-style output, as transformers' jinja2 renders it.
        assert!(out.starts_with("AB|True|["), "{out}");
        assert!(out.contains(r#""role": "user""#), "{out}");
    }
}
