//! `nxt generate`: sample completions for a JSONL file of prompts, with progress and resume.
//!
//! Input lines: `{"id": "...", "prompt": "text"}` or `{"id": ..., "messages": [{"role",
//! "content"}, ...]}` (ids are strings or numbers, unique). Output lines, in finishing order:
//! `{"id", "model", "completions": [{"text", "finish_reason", "prompt_tokens",
//! "completion_tokens", "logprobs"?}], "usage": {"prompt_tokens", "completion_tokens"}}`.
//! Rerunning the same command skips ids already in the output (a last line cut short by a kill
//! is dropped and redone); prompts that failed are not written, so a rerun retries them.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use nxt_llm::{ChatMessage, Completion, GenerationRequest, LlmError, Prompt, SamplingParams};
use serde_json::{json, Value};

/// Arguments of `nxt generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model directory, a Hugging Face hub id, or OpenAI-compatible server URLs
    /// (`http://host:port/v1`; several comma-separated share the load).
    #[arg(long)]
    pub model: String,
    /// Prompts, one JSON object per line: {"id", "prompt": "..."} or {"id", "messages": [...]}.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Output JSONL (appended to; ids already there are skipped).
    #[arg(long)]
    pub out: PathBuf,
    /// Samples per prompt.
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Most new tokens per sample.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// Seed for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop string (repeatable; `\n`, `\t` and `\\` escapes are understood).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Return the sampled tokens' log-probabilities.
    #[arg(long)]
    pub logprobs: bool,
    /// Requests in flight at once (servers only).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Model name to send to servers (default: asked from GET /v1/models).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Retries of a failed request (servers only).
    #[arg(long, default_value_t = 8)]
    pub max_retries: u32,
    /// Timeout of one request in seconds (servers only).
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// A PEFT LoRA adapter directory merged into the model's weights at load (embedded
    /// engine only; for a server, load the adapter there and pick it with --served-model).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

/// One prompt of the input.
struct PromptLine {
    id: Value,
    key: String,
    prompt: Prompt,
}

/// The key an id is compared by (its JSON text: `"7"` and `7` differ).
fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Reads and validates the prompts file.
fn read_prompts(path: &Path) -> anyhow::Result<Vec<PromptLine>> {
    let file =
        File::open(path).with_context(|| format!("cannot open prompts file {}", path.display()))?;
    let mut out = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let lineno = i + 1;
        let at = || format!("{}:{lineno}", path.display());
        let line = line.with_context(|| format!("{}: cannot read", at()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not valid JSON", at()))?;
        let Some(obj) = v.as_object() else {
            bail!(
                "{}: expected a JSON object with \"id\" and \"prompt\" or \"messages\"",
                at()
            );
        };
        let id = match obj.get("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            Some(other) => bail!("{}: \"id\" must be a string or a number, got {other}", at()),
            None => bail!("{}: missing \"id\"", at()),
        };
        let prompt = match (obj.get("prompt"), obj.get("messages")) {
            (Some(Value::String(p)), None) => Prompt::Text(p.clone()),
            (Some(_), None) => bail!("{}: \"prompt\" must be a string", at()),
            (None, Some(m)) => {
                let msgs: Vec<ChatMessage> =
                    serde_json::from_value(m.clone()).with_context(|| {
                        format!(
                            "{}: \"messages\" must be a list of {{\"role\", \"content\"}} objects",
                            at()
                        )
                    })?;
                if msgs.is_empty() {
                    bail!("{}: \"messages\" is empty", at());
                }
                Prompt::Chat(msgs)
            }
            (Some(_), Some(_)) => bail!("{}: give \"prompt\" or \"messages\", not both", at()),
            (None, None) => bail!("{}: missing \"prompt\" (text) or \"messages\" (chat)", at()),
        };
        let key = id_key(&id);
        if let Some(first) = seen.insert(key.clone(), lineno) {
            bail!("{}: id {key} already used on line {first}", at());
        }
        out.push(PromptLine { id, key, prompt });
    }
    Ok(out)
}

/// Ids already in the output. A last line without its newline (the process was killed while
/// writing it) is cut off so that appending starts on a clean line.
fn done_ids(path: &Path) -> anyhow::Result<HashSet<String>> {
    let resumed = nxt_data::jsonl::read_resumable(path).with_context(|| {
        format!(
            "{}: not an nxt generate output? fix or remove the file",
            path.display()
        )
    })?;
    if resumed.dropped_bytes > 0 {
        eprintln!(
            "{}: dropping an unfinished last line ({} bytes); its prompt will be redone",
            path.display(),
            resumed.dropped_bytes
        );
    }
    let mut done = HashSet::new();
    for (line, v) in &resumed.records {
        match v.get("id") {
            Some(id) => {
                done.insert(id_key(id));
            }
            None => bail!("{}:{line}: a line without \"id\"", path.display()),
        }
    }
    Ok(done)
}

/// `\n`, `\t`, `\r` and `\\` escapes in a stop string given on the command line.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn completion_json(c: &Completion) -> Value {
    let mut v = json!({
        "text": c.text,
        "finish_reason": c.finish_reason,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
    });
    if let Some(lp) = &c.logprobs {
        v["logprobs"] = json!(lp);
    }
    v
}

/// Runs `nxt generate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    use crate::exit;
    if args.n == 0 {
        return Err(exit::usage("--n must be at least 1"));
    }
    if args.max_tokens == 0 {
        return Err(exit::usage("--max-tokens must be at least 1"));
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(exit::usage(format!(
            "--top-p must be in (0, 1], got {}",
            args.top_p
        )));
    }
    if !args.temperature.is_finite() || args.temperature < 0.0 {
        return Err(exit::usage(format!(
            "--temperature must be >= 0, got {}",
            args.temperature
        )));
    }
    let engine = super::adapter::engine_options(&args.model, args.adapter.as_deref())?;
    // A prompts file that cannot be read or is malformed is an input error (exit 65).
    let prompts = read_prompts(&args.prompts).map_err(|e| exit::input(exit::describe(&e)))?;
    if prompts.is_empty() {
        return Err(exit::input(format!(
            "{}: no prompts (the file has no JSON lines)",
            args.prompts.display()
        )));
    }
    let done = done_ids(&args.out)?;
    let pending: Vec<&PromptLine> = prompts.iter().filter(|p| !done.contains(&p.key)).collect();
    let skipped = prompts.len() - pending.len();
    if pending.is_empty() {
        eprintln!(
            "all {} prompts of {} are already in {}",
            prompts.len(),
            args.prompts.display(),
            args.out.display()
        );
        return Ok(());
    }
    if skipped > 0 {
        eprintln!(
            "resuming: {skipped} prompts already in {}, {} to go",
            args.out.display(),
            pending.len()
        );
    }

    let opts = nxt_llm::OpenOptions {
        served_model: args.served_model.clone(),
        concurrency: args.concurrency.max(1),
        max_retries: args.max_retries,
        request_timeout: Duration::from_secs(args.timeout.max(1)),
        engine,
        ..Default::default()
    };
    let generator = nxt_llm::open_generator(&args.model, &opts)
        .with_context(|| format!("cannot open model {}", args.model))?;
    // Asked on the first answer: a client only knows the served model's name by then.
    let mut model_name: Option<String> = None;

    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        max_tokens: args.max_tokens,
        stop: args.stop.iter().map(|s| unescape(s)).collect(),
        seed: args.seed,
        logprobs: args.logprobs,
    };
    let requests: Vec<GenerationRequest> = pending
        .iter()
        .map(|p| GenerationRequest {
            prompt: p.prompt.clone(),
            n: args.n,
            params: params.clone(),
        })
        .collect();

    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .with_context(|| format!("cannot open {} for writing", args.out.display()))?;

    let bar = ProgressBar::new(pending.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} prompts ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut written = 0usize;
    let mut failures: Vec<(String, LlmError)> = Vec::new();
    let mut write_error: Option<std::io::Error> = None;
    let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);

    generator.generate_many(&requests, &mut |i, result| {
        bar.inc(1);
        let p = pending[i];
        match result {
            Ok(completions) => {
                let pt = completions.first().map(|c| c.prompt_tokens).unwrap_or(0) as u64;
                let ct: u64 = completions.iter().map(|c| c.completion_tokens as u64).sum();
                prompt_tokens += pt;
                completion_tokens += ct;
                let model = model_name.get_or_insert_with(|| generator.name());
                let line = json!({
                    "id": p.id,
                    "model": model,
                    "completions": completions.iter().map(completion_json).collect::<Vec<_>>(),
                    "usage": {"prompt_tokens": pt, "completion_tokens": ct},
                });
                if write_error.is_none() {
                    // One write per line: a kill leaves at most one partial last line.
                    let mut bytes = line.to_string().into_bytes();
                    bytes.push(b'\n');
                    match out.write_all(&bytes) {
                        Ok(()) => written += 1,
                        Err(e) => write_error = Some(e),
                    }
                }
                bar.set_message(format!("{completion_tokens} tokens out"));
            }
            Err(e) => {
                bar.println(format!("prompt {}: {e}", p.key));
                failures.push((p.key.clone(), e));
            }
        }
    });
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e).with_context(|| format!("writing {}", args.out.display()));
    }
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{written} prompts written to {} in {secs:.1}s ({prompt_tokens} prompt tokens, {completion_tokens} completion tokens, {:.1} completion tokens/s){}",
        args.out.display(),
        completion_tokens as f64 / secs.max(1e-9),
        if skipped > 0 { format!("; {skipped} were already there") } else { String::new() }
    );
    if let Some((id, e)) = failures.first() {
        return Err(exit::failed(format!(
            "{} of {} prompts failed (first: id {id}: {e}); rerun the same command to retry them",
            failures.len(),
            pending.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_escapes() {
        assert_eq!(unescape(r"\n\n"), "\n\n");
        assert_eq!(unescape(r"a\tb\\n\q"), "a\tb\\n\\q");
    }
}
