//! `--adapter DIR` and `--lora-modules NAME=DIR` shared by `generate`, `eval`, `repair` and
//! `serve`: every adapter is checked against the base model before any weight is loaded, so a
//! bad directory (missing files, a malformed config, keys that are not LoRA matrices, A/B ranks
//! that disagree with each other or the config, shapes of another base model) stops the
//! command at once with an input error (exit 65) naming the file and the tensor key.

use std::path::{Path, PathBuf};

use nxt_engine::adapter::{check_adapter, AdapterProblem, ProblemKind};
use nxt_engine::config::ModelConfig;

use crate::exit;

/// Problems that make an adapter unusable by the embedded engine. vLLM's serving rules (allowed
/// ranks, `--max-lora-rank`, rank/alpha patterns, which vLLM ignores but the engine applies)
/// are `nxt train check-adapter`'s business, not the engine's.
fn blocks_engine(kind: ProblemKind) -> bool {
    !matches!(
        kind,
        ProblemKind::RankOverLimit | ProblemKind::RankNotAllowed | ProblemKind::Pattern
    )
}

/// The config of a local model directory, for the shape check; `None` for a hub id that is
/// not in a local directory (its shapes are checked when the engine loads it, which names the
/// first mismatched tensor too).
fn local_base_config(model: &str) -> anyhow::Result<Option<ModelConfig>> {
    let dir = Path::new(model);
    if !dir.is_dir() {
        return Ok(None);
    }
    let cfg_path = dir.join("config.json");
    if !cfg_path.exists() {
        // Engine::load reports it with its own message.
        return Ok(None);
    }
    ModelConfig::from_file(&cfg_path)
        .map(Some)
        .map_err(|e| exit::input(format!("{}: {e}", cfg_path.display())))
}

/// Checks the adapter at `dir` against the model `model` (a model directory or hub id; an
/// `http(s)://` server is a usage error: a server's adapters are loaded on the server). `given`
/// is the option as the user wrote it, for messages (`--adapter DIR`, `--lora-modules NAME=DIR`).
pub fn check_for_engine(model: &str, dir: &Path, given: &str) -> anyhow::Result<()> {
    if nxt_llm::is_server_spec(model) {
        return Err(exit::usage(format!(
            "{given}: --model {model} is a server, so the adapter cannot be applied here; \
             load it on the server (`nxt serve --lora-modules NAME=DIR`, vLLM's \
             `--lora-modules`, or POST /v1/load_lora_adapter) and pick it with --served-model NAME"
        )));
    }
    if !dir.is_dir() {
        return Err(exit::input(format!(
            "{given}: not a directory (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors)"
        )));
    }
    let base = local_base_config(model)?;
    let problems: Vec<AdapterProblem> = check_adapter(dir, base.as_ref(), usize::MAX)
        .into_iter()
        .filter(|p| blocks_engine(p.kind))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let what = if base.is_some() {
        format!("does not fit the model {model}")
    } else {
        "is not a usable LoRA adapter".to_string()
    };
    let mut msg = format!("{given} {what}: {}", problems[0].message);
    if problems.len() > 1 {
        msg.push_str(&format!(
            " (and {} more problem{}; `nxt train check-adapter --model {model} --adapter {}` lists them all)",
            problems.len() - 1,
            if problems.len() == 2 { "" } else { "s" },
            dir.display()
        ));
    }
    Err(exit::input(msg))
}

/// The engine options for `model` with the adapter `adapter` (checked first) merged at load.
pub fn engine_options(
    model: &str,
    adapter: Option<&Path>,
) -> anyhow::Result<nxt_llm::engine::EngineOptions> {
    let mut opts = nxt_llm::engine::EngineOptions::default();
    if let Some(dir) = adapter {
        check_for_engine(model, dir, &format!("--adapter {}", dir.display()))?;
        opts.adapter = Some(dir.to_path_buf());
    }
    Ok(opts)
}

/// One `--lora-modules` entry: `NAME=DIR` as vLLM spells it (vLLM's JSON form
/// `{"name": ..., "path": ...}` is accepted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraModule {
    /// The name requests select the adapter by (`"model": NAME`).
    pub name: String,
    /// The adapter directory.
    pub path: PathBuf,
}

/// Parses one `--lora-modules` value (clap value parser).
pub fn parse_lora_module(s: &str) -> Result<LoraModule, String> {
    let s = s.trim();
    if s.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| format!("{s:?}: not valid JSON: {e}"))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    format!("{s:?}: JSON form needs string fields \"name\" and \"path\"")
                })
        };
        let (name, path) = (field("name")?, field("path")?);
        return finish_lora_module(s, name, path);
    }
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=DIR (e.g. fix=runs/adapter)"))?;
    finish_lora_module(s, name.trim().to_string(), path.trim().to_string())
}

fn finish_lora_module(s: &str, name: String, path: String) -> Result<LoraModule, String> {
    if name.is_empty() || path.is_empty() {
        return Err(format!("{s:?}: both NAME and DIR must be non-empty"));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(format!("{s:?}: NAME must not contain whitespace"));
    }
    Ok(LoraModule {
        name,
        path: PathBuf::from(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_module_forms() {
        let m = parse_lora_module("fix=runs/a").unwrap();
        assert_eq!(m.name, "fix");
        assert_eq!(m.path, PathBuf::from("runs/a"));
        let m =
            parse_lora_module(r#"{"name": "x", "path": "/p", "base_model_name": "b"}"#).unwrap();
        assert_eq!((m.name.as_str(), m.path.as_path()), ("x", Path::new("/p")));
        assert!(parse_lora_module("nodir").is_err());
        assert!(parse_lora_module("=dir").is_err());
        assert!(parse_lora_module("name=").is_err());
        assert!(parse_lora_module(r#"{"name": "x"}"#).is_err());
    }
}
