//! Hugging Face hub ids: find a snapshot in the standard cache
//! (`$HF_HUB_CACHE` or `$HF_HOME/hub` or `~/.cache/huggingface/hub`, layout
//! `models--Org--Name/{refs/<rev>, snapshots/<commit>/...}`), or download one into it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::LlmError;

/// Files the engine needs from a repository (plus every `*.safetensors` shard).
const WANTED: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
];

/// The hub cache directory per the huggingface_hub conventions.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("hub");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface").join("hub")
}

/// True when `HF_HUB_OFFLINE` asks for no network.
pub fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

/// Does `s` look like `org/name` (and not like a path)?
pub fn looks_like_repo_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// The cached snapshot of `repo` at `revision` (a branch/tag name resolved through `refs/`,
/// or a commit hash), if it holds a `config.json`.
pub fn cached_snapshot(cache: &Path, repo: &str, revision: &str) -> Option<PathBuf> {
    let rd = repo_dir(cache, repo);
    let commit = std::fs::read_to_string(rd.join("refs").join(revision))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let snap = rd.join("snapshots").join(commit);
    snap.join("config.json").exists().then_some(snap)
}

fn offline_help(repo: &str, cache: &Path) -> String {
    format!(
        "offline options: (1) pass a local model directory (config.json, tokenizer.json, \
         *.safetensors) instead of `{repo}`; (2) set HF_HUB_CACHE (or HF_HOME) to a cache holding \
         a pre-downloaded snapshot (looked in {}); (3) use an OpenAI-compatible server URL such \
         as http://host:port/v1",
        repo_dir(cache, repo).display()
    )
}

/// Resolves `repo` to a local snapshot directory, downloading it into the cache when needed.
pub fn resolve(repo: &str, revision: &str) -> Result<PathBuf, LlmError> {
    let cache = cache_dir();
    if let Some(s) = cached_snapshot(&cache, repo, revision) {
        return Ok(s);
    }
    if offline() {
        return Err(LlmError::Model(format!(
            "model `{repo}` is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {}",
            offline_help(repo, &cache)
        )));
    }
    download(repo, revision, &cache).map_err(|e| {
        LlmError::Model(format!(
            "cannot download `{repo}` from the Hugging Face hub ({e}); {}",
            offline_help(repo, &cache)
        ))
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(3600)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> Result<ureq::http::Response<ureq::Body>, String> {
    let mut req = agent.get(url);
    if let Ok(tok) = std::env::var("HF_TOKEN") {
        req = req.header("Authorization", &format!("Bearer {tok}"));
    }
    req.call().map_err(|e| format!("GET {url}: {e}"))
}

/// Downloads the files the engine needs into the cache; returns the snapshot directory.
fn download(repo: &str, revision: &str, cache: &Path) -> Result<PathBuf, String> {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let endpoint = endpoint.trim_end_matches('/');
    let agent = agent();
    let info_url = format!("{endpoint}/api/models/{repo}/revision/{revision}");
    let mut resp = get(&agent, &info_url)?;
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{info_url}: bad response: {e}"))?;
    let info: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{info_url}: bad response: {e}"))?;
    let commit = info
        .get("sha")
        .and_then(|s| s.as_str())
        .ok_or_else(|| format!("{info_url}: no `sha` in the response"))?
        .to_string();
    let files: Vec<String> = info
        .get("siblings")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("rfilename").and_then(|n| n.as_str()))
                .filter(|n| WANTED.contains(n) || (n.ends_with(".safetensors") && !n.contains('/')))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !files.iter().any(|f| f == "config.json") {
        return Err(format!("{repo}@{revision} has no config.json"));
    }
    let rd = repo_dir(cache, repo);
    let snap = rd.join("snapshots").join(&commit);
    std::fs::create_dir_all(&snap).map_err(|e| format!("{}: {e}", snap.display()))?;
    for f in &files {
        let dest = snap.join(f);
        if dest.exists() {
            continue;
        }
        let url = format!("{endpoint}/{repo}/resolve/{commit}/{f}");
        let mut resp = get(&agent, &url)?;
        let tmp = snap.join(format!(".{f}.incomplete"));
        let mut out = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::io::copy(&mut resp.body_mut().as_reader(), &mut out)
            .map_err(|e| format!("{url}: {e}"))?;
        std::fs::rename(&tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    let refs = rd.join("refs");
    std::fs::create_dir_all(&refs).map_err(|e| format!("{}: {e}", refs.display()))?;
    if revision != commit {
        std::fs::write(refs.join(revision), &commit)
            .map_err(|e| format!("{}: {e}", refs.display()))?;
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert!(looks_like_repo_id("Qwen/Qwen2.5-Coder-0.5B-Instruct"));
        assert!(!looks_like_repo_id("./model"));
        assert!(!looks_like_repo_id("/abs/model"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("../x"));
    }

    #[test]
    fn finds_cached_snapshot_via_ref() {
        let d = std::env::temp_dir().join(format!("nxt-hub-test-{}", std::process::id()));
        let rd = d.join("models--Org--Name");
        std::fs::create_dir_all(rd.join("refs")).unwrap();
        std::fs::create_dir_all(rd.join("snapshots/abc123")).unwrap();
        std::fs::write(rd.join("refs/main"), "abc123\n").unwrap();
        assert!(cached_snapshot(&d, "Org/Name", "main").is_none());
        std::fs::write(rd.join("snapshots/abc123/config.json"), "{}").unwrap();
        assert_eq!(
            cached_snapshot(&d, "Org/Name", "main").unwrap(),
            rd.join("snapshots/abc123")
        );
        assert_eq!(
            cached_snapshot(&d, "Org/Name", "abc123").unwrap(),
            rd.join("snapshots/abc123")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
