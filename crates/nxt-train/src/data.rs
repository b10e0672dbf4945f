//! Prompt-completion data (`train.jsonl`), tokenised exactly as TRL's `SFTTrainer` does for
//! prompt-completion datasets: EOS appended to the completion (as text, unless it already
//! ends with it), `prompt` and `prompt + completion` tokenised separately (special tokens
//! added as the tokenizer's default call does), the first `len(prompt_ids)` tokens masked
//! out of the loss, a disagreement between the two tokenisations at the boundary counted,
//! and truncation to `max_length` keeping the start.
//!
//! A prompt that alone fills `max_length` (nothing of the completion would remain) is an
//! error naming its line, not a silent skip: raise `max_length` or shorten the prompt.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::TrainError;

/// One tokenised training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The line's `id` field (string or number), else `line:N`.
    pub id: String,
    /// 1-based line number in the data file.
    pub line: usize,
    /// Token ids of prompt + completion + EOS (truncated to `max_length`).
    pub ids: Vec<u32>,
    /// Tokens of the prompt (masked out of the loss).
    pub prompt_len: usize,
    /// The example was cut to `max_length`.
    pub truncated: bool,
    /// The prompt's tokens are not a prefix of the prompt + completion tokens.
    pub boundary_mismatch: bool,
}

impl Example {
    /// Tokens the loss is computed on (completion tokens after truncation; the first token
    /// of a sequence has no prediction).
    pub fn loss_tokens(&self) -> usize {
        self.ids.len() - self.prompt_len.max(1)
    }
}

/// A tokenised data file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file.
    pub path: PathBuf,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Examples in file order.
    pub examples: Vec<Example>,
    /// Fields of each line other than `prompt` and `completion`, by example id.
    pub extra: Map<String, Value>,
    /// Examples cut to `max_length`.
    pub truncated: usize,
    /// Examples whose prompt tokens are not a prefix of the full tokenisation.
    pub boundary_mismatches: usize,
}

/// The token TRL appends to completions: `eos_token` of `tokenizer_config.json`, else the
/// first EOS id of the model's config.
pub fn eos_text(
    model_dir: &Path,
    tokenizer: &Tokenizer,
    eos_ids: &[u32],
) -> Result<String, TrainError> {
    let tc = nxt_engine::TokenizerConfig::from_dir(model_dir)?;
    if let Some(t) = tc.eos_token.filter(|t| !t.is_empty()) {
        return Ok(t);
    }
    eos_ids
        .iter()
        .find_map(|&id| tokenizer.id_to_token(id))
        .ok_or_else(|| {
            TrainError::Config(format!(
                "{}: the model defines no EOS token (tokenizer_config.json eos_token or \
                 config.json eos_token_id)",
                model_dir.display()
            ))
        })
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let mut f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| TrainError::io(path, e))?;
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(tok: &Tokenizer, text: &str, path: &Path, line: usize) -> Result<Vec<u32>, TrainError> {
    tok.encode(text, true)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| TrainError::Data {
            path: path.to_path_buf(),
            line,
            msg: format!("tokenizer: {e}"),
        })
}

/// Reads and tokenises `path`. Blank lines are skipped; a line that is not a JSON object
/// with string `prompt` and non-empty string `completion`, or whose prompt fills
/// `max_length`, is an error naming the file and line.
pub fn load_dataset(
    path: &Path,
    tokenizer: &Tokenizer,
    eos: &str,
    max_length: usize,
) -> Result<Dataset, TrainError> {
    let sha256 = sha256_file(path)?;
    let f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut examples = Vec::new();
    let mut extra = Map::new();
    let (mut truncated, mut mismatches) = (0, 0);
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let err = |msg: String| TrainError::Data {
            path: path.to_path_buf(),
            line: n,
            msg,
        };
        let v: Value =
            serde_json::from_str(&line).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let Value::Object(mut obj) = v else {
            return Err(err("expected a JSON object".into()));
        };
        let prompt = match obj.remove("prompt") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(err("`prompt` is not a string".into())),
            None => return Err(err("missing `prompt`".into())),
        };
        let completion = match obj.remove("completion") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(err("`completion` is not a string".into())),
            None => return Err(err("missing `completion`".into())),
        };
        if completion.is_empty() {
            return Err(err("`completion` is empty".into()));
        }
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(x)) => x.to_string(),
            _ => format!("line:{n}"),
        };
        let completion = if completion.ends_with(eos) {
            completion
        } else {
            completion + eos
        };
        let prompt_ids = encode(tokenizer, &prompt, path, n)?;
        let mut ids = encode(tokenizer, &format!("{prompt}{completion}"), path, n)?;
        let boundary_mismatch = ids.get(..prompt_ids.len()) != Some(&prompt_ids[..]);
        if prompt_ids.len() >= max_length {
            return Err(err(format!(
                "the prompt has {} tokens, max_length is {max_length}: no completion token \
                 would remain (raise --max-length or shorten the prompt)",
                prompt_ids.len()
            )));
        }
        let prompt_len = prompt_ids.len();
        if ids.len() <= prompt_len.max(1) {
            return Err(err(
                "the completion adds no token to the prompt's tokenisation".into(),
            ));
        }
        let cut = ids.len() > max_length;
        if cut {
            ids.truncate(max_length);
            truncated += 1;
        }
        if boundary_mismatch {
            mismatches += 1;
        }
        if extra.contains_key(&id) {
            return Err(err(format!("duplicate id `{id}`")));
        }
        extra.insert(id.clone(), Value::Object(obj));
        examples.push(Example {
            id,
            line: n,
            ids,
            prompt_len,
            truncated: cut,
            boundary_mismatch,
        });
    }
    if examples.is_empty() {
        return Err(TrainError::Dataset {
            path: path.to_path_buf(),
            msg: "no examples".into(),
        });
    }
    Ok(Dataset {
        path: path.to_path_buf(),
        sha256,
        examples,
        extra,
        truncated,
        boundary_mismatches: mismatches,
    })
}
