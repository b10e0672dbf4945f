//! Hugging Face hub ids: find a complete snapshot in the standard hub cache, or download one
//! into it, verified.
//!
//! The cache is the one `huggingface_hub` (and so transformers, vLLM, TRL) and the `hf-hub`
//! crate write, so a model downloaded by any of them is used here and the other way round:
//!
//! ```text
//! $HF_HUB_CACHE/models--Org--Name/
//!     blobs/<etag>                     file contents, named by their ETag
//!     blobs/<etag>.incomplete          a download in progress (resumed with a Range request)
//!     snapshots/<commit>/<file>        relative symlinks: ../../blobs/<etag>
//!     refs/<revision>                  the commit a branch or tag pointed to
//! ```
//!
//! * Where: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//!   `~/.cache/huggingface/hub`; the hub at `HF_ENDPOINT` (default `https://huggingface.co`);
//!   the token from `HF_TOKEN`, else the file at `HF_TOKEN_PATH` (default `$HF_HOME/token`, as
//!   `hf auth login` writes it); `HF_HUB_OFFLINE=1` forbids the network.
//! * What: the repository's file list comes from `GET /api/models/{id}/revision/{rev}`; the
//!   engine's files among them (config, generation config, tokenizer files, chat template, the
//!   safetensors index and every top-level `*.safetensors`) are fetched, weights last.
//! * How, per file, as `huggingface_hub.hf_hub_download` does it: `HEAD
//!   {endpoint}/{id}/resolve/{commit}/{file}` following only relative redirects; the ETag is
//!   `X-Linked-Etag` (the sha256 of an LFS file, given on the redirect to the CDN) or `ETag`
//!   (the git blob sha1 of a small file), `W/` and quotes stripped; the size is
//!   `X-Linked-Size` or `Content-Length`. A blob already in the cache is re-hashed and reused
//!   when it matches (re-fetched when not); otherwise the body is fetched (redirects followed)
//!   into `blobs/<etag>.incomplete`, resumed with `Range: bytes=N-` when a partial file is
//!   there (a server answering 200 restarts it), hashed and checked against the ETag (sha256
//!   for a 64-hex ETag, git's `sha1("blob <len>\0" + content)` for a 40-hex one) and renamed to
//!   `blobs/<etag>`; a resumed file that does not verify is downloaded once more from the
//!   start, a fresh one that does not verify is deleted and refused with an error naming both
//!   digests. A progress line per file goes to stderr.
//! * When the snapshot counts as complete: after a download, when every selected file the API
//!   listed is linked and verified (then `refs/<revision>` is written, so a ref only ever
//!   points at a complete snapshot written here); offline, when `config.json`,
//!   `tokenizer.json` and every weight file (`model.safetensors`, or every shard the index
//!   names) resolve to blobs. Blobs are only ever created by renaming a verified download, so
//!   an existing blob is trusted on load (hashing gigabytes on every load would cost seconds);
//!   a blob corrupted on disk afterwards is found by the next [`download`], which re-hashes.
//!
//! Why not the `hf-hub` crate: its current release (1.x) needs reqwest 0.13 (this workspace's
//! one HTTP client is reqwest 0.12, shared with the OpenAI client; two versions of one client
//! would be compiled), the Xet storage client and its dependencies, and sha2 0.11; the 0.4 line
//! uses ureq 2 for its blocking API. Neither verifies a downloaded file against its ETag. This
//! module follows its behaviour (headers, relative-redirect HEAD, `.incomplete` files, relative
//! symlinks, refs) in about the size of its download function, on the workspace's reqwest.
//! Concurrent downloads of one file by two processes are not coordinated by a lock file; the
//! verification refuses what such a race could mangle.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::EngineError;

/// Files the engine needs from a repository (plus every top-level `*.safetensors` shard).
const WANTED: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
];

/// The default hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Failures of a hub download.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub answered with an error status.
    #[error("{url}: HTTP {status}{hint}: {message}")]
    Http {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// What the status usually means (a token for gated/private repos, a wrong id).
        hint: &'static str,
        /// The server's message (body, trimmed).
        message: String,
    },
    /// The request did not complete (connection, timeout, TLS).
    #[error("{url}: {message}")]
    Network {
        /// The URL requested.
        url: String,
        /// The error and its causes.
        message: String,
    },
    /// The hub's answer is not what the API promises.
    #[error("{url}: unexpected response: {message}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A downloaded file does not match its ETag; it was deleted.
    #[error(
        "{repo}: {file}: the download does not match its ETag: expected {kind} {expected}, \
         got {actual}; the file was deleted (rerun to fetch it again)"
    )]
    Checksum {
        /// The repository.
        repo: String,
        /// The file in the repository.
        file: String,
        /// `sha256` or `git-sha1`.
        kind: &'static str,
        /// The digest the ETag names.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The hub gave an ETag that names no digest this module can check.
    #[error(
        "{repo}: {file}: ETag `{etag}` is neither a sha256 nor a git sha1; cannot verify the file"
    )]
    Unverifiable {
        /// The repository.
        repo: String,
        /// The file in the repository.
        file: String,
        /// The ETag as given.
        etag: String,
    },
    /// The repository lacks what the engine needs.
    #[error("{repo}@{revision}: {message}")]
    Repo {
        /// The repository.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// What is missing.
        message: String,
    },
    /// A cache file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where and how to reach the hub, and where its cache is.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL of the hub (`HF_ENDPOINT`), without a trailing slash.
    pub endpoint: String,
    /// The hub cache directory (see [`cache_dir`]).
    pub cache: PathBuf,
    /// Bearer token for gated or private repositories.
    pub token: Option<String>,
    /// No network at all (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Write a progress line per file to stderr.
    pub progress: bool,
}

impl HubConfig {
    /// The configuration the environment gives, as `huggingface_hub` reads it.
    pub fn from_env() -> Self {
        let endpoint = env_nonempty("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache: cache_dir(),
            token: token_from_env(),
            offline: offline(),
            progress: true,
        }
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface")
}

/// The hub cache directory per the huggingface_hub conventions: `HF_HUB_CACHE` (or its old
/// name `HUGGINGFACE_HUB_CACHE`), else `HF_HOME/hub` (see [`hf_home`]).
pub fn cache_dir() -> PathBuf {
    for key in ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"] {
        if let Some(p) = std::env::var_os(key).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    hf_home().join("hub")
}

/// The token: `HF_TOKEN`, else the first line of the file at `HF_TOKEN_PATH` (default
/// `HF_HOME/token`).
pub fn token_from_env() -> Option<String> {
    if let Some(t) = env_nonempty("HF_TOKEN") {
        return Some(t.trim().to_string());
    }
    let path = env_nonempty("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home().join("token"));
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.lines().next()?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// True when `HF_HUB_OFFLINE` asks for no network.
pub fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE")
            .map(|v| v.trim().to_ascii_lowercase())
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

/// Is `revision` a full commit hash?
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `cache/models--Org--Name`.
pub fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// The cached snapshot of `repo` at `revision` (a branch/tag name resolved through `refs/`,
/// or a commit hash), if it is complete: `config.json`, `tokenizer.json` and every weight file
/// (`model.safetensors`, or each shard `model.safetensors.index.json` names) present, none of
/// them a pointer to a missing blob or to an `.incomplete` one.
pub fn cached_snapshot(cache: &Path, repo: &str, revision: &str) -> Option<PathBuf> {
    let rd = repo_dir(cache, repo);
    let commit = match std::fs::read_to_string(rd.join("refs").join(revision)) {
        Ok(s) => s.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    if commit.is_empty() || commit.contains('/') || commit.starts_with('.') {
        return None;
    }
    let snap = rd.join("snapshots").join(commit);
    snapshot_complete(&snap).then_some(snap)
}

/// Is the file at `path` there (following a symlink), and not a partial download?
fn present(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    match std::fs::read_link(path) {
        Ok(target) => !target.to_string_lossy().ends_with(".incomplete"),
        Err(_) => true,
    }
}

/// The offline completeness rule of [`cached_snapshot`].
fn snapshot_complete(snap: &Path) -> bool {
    if !present(&snap.join("config.json")) || !present(&snap.join("tokenizer.json")) {
        return false;
    }
    let index = snap.join("model.safetensors.index.json");
    if present(&index) {
        let Ok(text) = std::fs::read_to_string(&index) else {
            return false;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        let Some(map) = v.get("weight_map").and_then(|m| m.as_object()) else {
            return false;
        };
        let shards: std::collections::BTreeSet<&str> =
            map.values().filter_map(|s| s.as_str()).collect();
        !shards.is_empty()
            && shards
                .iter()
                .all(|s| !s.contains("..") && present(&snap.join(s)))
    } else {
        present(&snap.join("model.safetensors"))
    }
}

fn offline_help(repo: &str, cache: &Path) -> String {
    format!(
        "offline options: (1) pass a local model directory (config.json, tokenizer.json, \
         *.safetensors) instead of `{repo}`; (2) set HF_HUB_CACHE (or HF_HOME) to a cache holding \
         a complete snapshot (looked in {}); (3) use an OpenAI-compatible server URL such \
         as http://host:port/v1",
        repo_dir(cache, repo).display()
    )
}

/// Resolves `repo` to a local snapshot directory with the environment's settings
/// ([`HubConfig::from_env`]), downloading it into the cache when needed.
pub fn resolve(repo: &str, revision: &str) -> Result<PathBuf, EngineError> {
    resolve_with(&HubConfig::from_env(), repo, revision)
}

/// [`resolve`] with explicit settings: a complete cached snapshot is used without the network;
/// otherwise (unless offline) the snapshot is downloaded and verified.
pub fn resolve_with(cfg: &HubConfig, repo: &str, revision: &str) -> Result<PathBuf, EngineError> {
    if let Some(s) = cached_snapshot(&cfg.cache, repo, revision) {
        return Ok(s);
    }
    if cfg.offline {
        return Err(EngineError::Model(format!(
            "model `{repo}` (revision `{revision}`) is not complete in the Hugging Face cache \
             and HF_HUB_OFFLINE is set; {}",
            offline_help(repo, &cfg.cache)
        )));
    }
    download(cfg, repo, revision).map_err(|e| {
        EngineError::Model(format!(
            "cannot download `{repo}` from {} ({e}); {}",
            cfg.endpoint,
            offline_help(repo, &cfg.cache)
        ))
    })
}

/// Downloads (or completes, or re-verifies) the snapshot of `repo` at `revision` into
/// `cfg.cache` and returns its directory. Always asks the hub for the file list; blobs already
/// in the cache are hashed and reused when they match their ETag, re-fetched when not.
///
/// Runs on a thread of its own (with its own small async runtime), so it may be called from
/// inside an async context too.
pub fn download(cfg: &HubConfig, repo: &str, revision: &str) -> Result<PathBuf, HubError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_err(&cfg.cache))?;
            rt.block_on(Downloader::new(cfg, repo)?.snapshot(revision))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(HubError::Network {
                url: cfg.endpoint.clone(),
                message: "the download thread panicked".into(),
            })
        })
    })
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A reqwest error with its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The ETag of a HEAD answer: `X-Linked-Etag`, else `ETag`, without `W/` and quotes.
fn etag_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let raw = headers
        .get("x-linked-etag")
        .or_else(|| headers.get(reqwest::header::ETAG))?
        .to_str()
        .ok()?;
    let raw = raw.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    Some(raw.trim_matches('"').to_string())
}

/// The digest an ETag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestKind {
    Sha256,
    GitSha1,
}

impl DigestKind {
    fn of(etag: &str) -> Option<Self> {
        let hex = etag.bytes().all(|b| b.is_ascii_hexdigit());
        match etag.len() {
            64 if hex => Some(Self::Sha256),
            40 if hex => Some(Self::GitSha1),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::GitSha1 => "git-sha1",
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The digest of the file at `path`, of the kind `kind`, lowercase hex.
fn digest_file(path: &Path, kind: DigestKind) -> Result<String, HubError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut sha256 = Sha256::new();
    let mut sha1 = Sha1::new();
    if kind == DigestKind::GitSha1 {
        sha1.update(format!("blob {len}\0").as_bytes());
    }
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        match kind {
            DigestKind::Sha256 => sha256.update(&buf[..n]),
            DigestKind::GitSha1 => sha1.update(&buf[..n]),
        }
    }
    Ok(match kind {
        DigestKind::Sha256 => hex(&sha256.finalize()),
        DigestKind::GitSha1 => hex(&sha1.finalize()),
    })
}

/// One progress line on stderr: redrawn in place on a terminal, a start and an end line
/// otherwise.
struct Progress {
    enabled: bool,
    tty: bool,
    label: String,
    total: Option<u64>,
    last: Instant,
}

fn mb(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

impl Progress {
    fn start(enabled: bool, label: String, total: Option<u64>, from: u64) -> Self {
        let p = Self {
            enabled,
            tty: std::io::stderr().is_terminal(),
            label,
            total,
            last: Instant::now(),
        };
        if p.enabled && !p.tty {
            let size = total.map(|t| format!(" ({})", mb(t))).unwrap_or_default();
            let resume = if from > 0 {
                format!(", resuming at {}", mb(from))
            } else {
                String::new()
            };
            eprintln!("downloading {}{size}{resume}", p.label);
        }
        p
    }

    fn update(&mut self, done: u64) {
        if !self.enabled || !self.tty || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let total = self
            .total
            .map(|t| format!(" / {}", mb(t)))
            .unwrap_or_default();
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{}: {}{total}   ", self.label, mb(done));
        let _ = err.flush();
    }

    fn finish(&self, done: u64, what: &str) {
        if !self.enabled {
            return;
        }
        if self.tty {
            eprintln!("\r{}: {} {what}   ", self.label, mb(done));
        } else {
            eprintln!("{}: {} {what}", self.label, mb(done));
        }
    }
}

/// Metadata of one file, from its HEAD answer.
struct FileMeta {
    etag: String,
    kind: DigestKind,
    size: Option<u64>,
}

/// How a fetch of a body into `.incomplete` ended.
enum Fetched {
    /// Written from the start.
    Fresh,
    /// Appended to a partial file.
    Resumed,
}

struct Downloader<'a> {
    cfg: &'a HubConfig,
    repo: &'a str,
    rd: PathBuf,
    /// Follows every redirect (bodies come from a CDN).
    follow: reqwest::Client,
    /// Follows none (HEAD: the hub's own redirect carries the LFS headers).
    manual: reqwest::Client,
}

impl<'a> Downloader<'a> {
    fn new(cfg: &'a HubConfig, repo: &'a str) -> Result<Self, HubError> {
        let build = |policy: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(concat!(
                    "nxt/",
                    env!("CARGO_PKG_VERSION"),
                    "; hf_hub-compatible"
                ))
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .redirect(policy)
                .build()
                .map_err(|e| HubError::Network {
                    url: cfg.endpoint.clone(),
                    message: describe(&e),
                })
        };
        Ok(Self {
            cfg,
            repo,
            rd: repo_dir(&cfg.cache, repo),
            follow: build(reqwest::redirect::Policy::limited(10))?,
            manual: build(reqwest::redirect::Policy::none())?,
        })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, HubError> {
        self.auth(req).send().await.map_err(|e| HubError::Network {
            url: url.to_string(),
            message: describe(&e),
        })
    }

    /// Turns an error status into [`HubError::Http`] with the server's message.
    async fn check(resp: reqwest::Response, url: &str) -> Result<reqwest::Response, HubError> {
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            return Ok(resp);
        }
        let hint = match status.as_u16() {
            401 | 403 => " (a gated or private repository needs a token: set HF_TOKEN)",
            404 => " (no such repository, revision or file)",
            _ => "",
        };
        let message = resp.text().await.unwrap_or_default();
        let message: String = message.trim().chars().take(500).collect();
        Err(HubError::Http {
            url: url.to_string(),
            status: status.as_u16(),
            hint,
            message,
        })
    }

    async fn snapshot(&self, revision: &str) -> Result<PathBuf, HubError> {
        let info_url = format!(
            "{}/api/models/{}/revision/{}",
            self.cfg.endpoint,
            self.repo,
            encode(revision, false)
        );
        let resp = self.send(self.follow.get(&info_url), &info_url).await?;
        let resp = Self::check(resp, &info_url).await?;
        let bad = |message: String| HubError::BadResponse {
            url: info_url.clone(),
            message,
        };
        let text = resp.text().await.map_err(|e| bad(describe(&e)))?;
        let info: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let commit = info
            .get("sha")
            .and_then(|s| s.as_str())
            .filter(|s| is_commit_hash(s))
            .ok_or_else(|| bad("no commit hash in `sha`".into()))?
            .to_string();
        let siblings = info
            .get("siblings")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no `siblings` file list".into()))?;
        let mut files: Vec<String> = siblings
            .iter()
            .filter_map(|f| f.get("rfilename").and_then(|n| n.as_str()))
            .filter(|n| WANTED.contains(n) || (n.ends_with(".safetensors") && !n.contains('/')))
            .map(str::to_string)
            .collect();
        let repo_err = |message: &str| HubError::Repo {
            repo: self.repo.to_string(),
            revision: revision.to_string(),
            message: message.to_string(),
        };
        if !files.iter().any(|f| f == "config.json") {
            return Err(repo_err("no config.json in the repository"));
        }
        if !files.iter().any(|f| f.ends_with(".safetensors")) {
            return Err(repo_err(
                "no *.safetensors weights in the repository (the engine reads safetensors only)",
            ));
        }
        // Weights last: an interrupted download leaves a weight file missing, so the offline
        // completeness rule never accepts a snapshot that lacks a small file.
        files.sort_by_key(|f| (f.ends_with(".safetensors"), f.clone()));
        for f in &files {
            self.file(&commit, f).await?;
        }
        let snap = self.rd.join("snapshots").join(&commit);
        if revision != commit {
            let r = self.rd.join("refs").join(revision);
            if let Some(p) = r.parent() {
                std::fs::create_dir_all(p).map_err(io_err(p))?;
            }
            std::fs::write(&r, &commit).map_err(io_err(&r))?;
        }
        if !snapshot_complete(&snap) {
            return Err(repo_err(
                "the downloaded snapshot lacks tokenizer.json or a weight file its index names",
            ));
        }
        Ok(snap)
    }

    /// HEAD the resolve URL, following relative redirects only (a renamed repository), as
    /// huggingface_hub does; the last answer carries the ETag headers.
    async fn head(&self, url: &str, file: &str) -> Result<FileMeta, HubError> {
        let mut current = url.to_string();
        for _ in 0..10 {
            let resp = self.send(self.manual.head(&current), &current).await?;
            let resp = Self::check(resp, &current).await?;
            let headers = resp.headers();
            if resp.status().is_redirection() {
                if let Some(loc) = headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .filter(|l| l.starts_with('/') && !l.starts_with("//"))
                {
                    current = format!("{}{loc}", self.cfg.endpoint);
                    continue;
                }
            }
            let etag = etag_of(headers).ok_or_else(|| HubError::BadResponse {
                url: current.clone(),
                message: "no ETag (or X-Linked-Etag) header".into(),
            })?;
            let kind = DigestKind::of(&etag).ok_or_else(|| HubError::Unverifiable {
                repo: self.repo.to_string(),
                file: file.to_string(),
                etag: etag.clone(),
            })?;
            let size = headers
                .get("x-linked-size")
                .or_else(|| {
                    (!resp.status().is_redirection())
                        .then(|| headers.get(reqwest::header::CONTENT_LENGTH))
                        .flatten()
                })
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            return Ok(FileMeta { etag, kind, size });
        }
        Err(HubError::BadResponse {
            url: url.to_string(),
            message: "more than 10 relative redirects".into(),
        })
    }

    /// Makes `snapshots/<commit>/<file>` point at a verified blob.
    async fn file(&self, commit: &str, file: &str) -> Result<(), HubError> {
        let url = format!(
            "{}/{}/resolve/{commit}/{}",
            self.cfg.endpoint,
            self.repo,
            encode(file, true)
        );
        let meta = self.head(&url, file).await?;
        let blobs = self.rd.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let blob = blobs.join(&meta.etag);
        let label = format!("{}/{file}", self.repo);
        if blob.is_file() {
            let actual = digest_file(&blob, meta.kind)?;
            if actual == meta.etag {
                return self.link(commit, file, &meta.etag);
            }
            eprintln!(
                "warning: {label}: the cached blob {} has {} {actual}, not its name; fetching it again",
                blob.display(),
                meta.kind.name()
            );
            std::fs::remove_file(&blob).map_err(io_err(&blob))?;
        }
        let part = blobs.join(format!("{}.incomplete", meta.etag));
        let mut restarted = false;
        loop {
            let how = self.fetch(&url, &part, &meta, &label).await?;
            let actual = digest_file(&part, meta.kind)?;
            if actual == meta.etag {
                std::fs::rename(&part, &blob).map_err(io_err(&blob))?;
                if self.cfg.progress {
                    eprintln!("{label}: {} verified", meta.kind.name());
                }
                return self.link(commit, file, &meta.etag);
            }
            std::fs::remove_file(&part).map_err(io_err(&part))?;
            match how {
                Fetched::Resumed if !restarted => {
                    eprintln!(
                        "warning: {label}: the resumed download does not match its ETag; \
                         downloading it again from the start"
                    );
                    restarted = true;
                }
                _ => {
                    return Err(HubError::Checksum {
                        repo: self.repo.to_string(),
                        file: file.to_string(),
                        kind: meta.kind.name(),
                        expected: meta.etag.clone(),
                        actual,
                    })
                }
            }
        }
    }

    /// Fetches the body into `part`, resuming a partial file with a Range request.
    async fn fetch(
        &self,
        url: &str,
        part: &Path,
        meta: &FileMeta,
        label: &str,
    ) -> Result<Fetched, HubError> {
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if meta.size.is_some_and(|s| have > s) {
            have = 0;
        }
        if have > 0 && meta.size == Some(have) {
            // Complete but not renamed (killed between the last write and the rename).
            return Ok(Fetched::Resumed);
        }
        let mut req = self.follow.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut resp = self.send(req, url).await?;
        if have > 0 && resp.status().as_u16() == 416 {
            // The partial file is no prefix the server recognises: start again.
            drop(resp);
            std::fs::remove_file(part).map_err(io_err(part))?;
            have = 0;
            resp = self.send(self.follow.get(url), url).await?;
        }
        let mut resp = Self::check(resp, url).await?;
        let status = resp.status().as_u16();
        let resumed = have > 0
            && status == 206
            && resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().starts_with(&format!("bytes {have}-")));
        if status == 206 && !resumed {
            // A range we did not ask for: start again without one.
            drop(resp);
            std::fs::remove_file(part).map_err(io_err(part))?;
            resp = Self::check(self.send(self.follow.get(url), url).await?, url).await?;
        }
        if resp.status().as_u16() != 200 && !resumed {
            return Err(HubError::BadResponse {
                url: url.to_string(),
                message: format!("HTTP {} for a file download", resp.status()),
            });
        }
        let mut out = if resumed {
            std::fs::OpenOptions::new().append(true).open(part)
        } else {
            have = 0;
            std::fs::File::create(part)
        }
        .map_err(io_err(part))?;
        let mut done = have;
        let mut progress = Progress::start(self.cfg.progress, label.to_string(), meta.size, have);
        loop {
            let chunk = resp.chunk().await.map_err(|e| HubError::Network {
                url: url.to_string(),
                message: format!(
                    "{} (the partial file {} is kept and resumed on the next run)",
                    describe(&e),
                    part.display()
                ),
            })?;
            let Some(chunk) = chunk else { break };
            out.write_all(&chunk).map_err(io_err(part))?;
            done += chunk.len() as u64;
            progress.update(done);
        }
        out.flush().map_err(io_err(part))?;
        out.sync_all().map_err(io_err(part))?;
        progress.finish(
            done,
            &format!("downloaded, checking its {}", meta.kind.name()),
        );
        Ok(if resumed {
            Fetched::Resumed
        } else {
            Fetched::Fresh
        })
    }

    /// `snapshots/<commit>/<file>` -> `../../blobs/<etag>` (one more `..` per directory level
    /// of `file`).
    fn link(&self, commit: &str, file: &str, etag: &str) -> Result<(), HubError> {
        let pointer = self.rd.join("snapshots").join(commit).join(file);
        let parent = pointer.parent().unwrap_or(&self.rd);
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let depth = file.matches('/').count() + 2;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        match std::fs::symlink_metadata(&pointer) {
            Ok(_) => std::fs::remove_file(&pointer).map_err(io_err(&pointer))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&pointer)(e)),
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &pointer).map_err(io_err(&pointer))?;
        #[cfg(not(unix))]
        std::fs::copy(self.rd.join("blobs").join(etag), &pointer).map_err(io_err(&pointer))?;
        Ok(())
    }
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
    fn etags_name_their_digest() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "etag",
            "W/\"0123456789abcdef0123456789abcdef01234567\""
                .parse()
                .unwrap(),
        );
        let e = etag_of(&h).unwrap();
        assert_eq!(e, "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(DigestKind::of(&e), Some(DigestKind::GitSha1));
        h.insert(
            "x-linked-etag",
            format!("\"{}\"", "a".repeat(64)).parse().unwrap(),
        );
        let e = etag_of(&h).unwrap();
        assert_eq!(DigestKind::of(&e), Some(DigestKind::Sha256));
        assert_eq!(DigestKind::of("abc-1"), None);
    }

    #[test]
    fn git_blob_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let d = tempfile_dir("sha1");
        let p = d.join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        assert_eq!(
            digest_file(&p, DigestKind::GitSha1).unwrap(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nxt-hub-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The only test of this crate that sets `HF_*` variables (they are process-wide).
    #[test]
    fn the_environment_gives_cache_endpoint_token_and_offline_as_huggingface_hub_reads_them() {
        let keys = [
            "HF_HOME",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "HF_ENDPOINT",
            "HF_TOKEN",
            "HF_TOKEN_PATH",
            "HF_HUB_OFFLINE",
        ];
        let saved: Vec<_> = keys.iter().map(|k| (*k, std::env::var_os(k))).collect();
        for k in keys {
            std::env::remove_var(k);
        }
        let d = tempfile_dir("env");
        std::fs::write(d.join("token"), "hf_from_file\n").unwrap();
        std::env::set_var("HF_HOME", &d);
        std::env::set_var("HF_ENDPOINT", "http://mirror.example/");
        std::env::set_var("HF_HUB_OFFLINE", "ON");
        let a = HubConfig::from_env();
        std::env::set_var("HF_HUB_CACHE", d.join("elsewhere"));
        std::env::set_var("HF_TOKEN", "hf_from_env");
        std::env::set_var("HF_HUB_OFFLINE", "0");
        let b = HubConfig::from_env();
        for (k, v) in saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(a.cache, d.join("hub"));
        assert_eq!(a.endpoint, "http://mirror.example");
        assert_eq!(a.token.as_deref(), Some("hf_from_file"));
        assert!(a.offline);
        assert_eq!(b.cache, d.join("elsewhere"));
        assert_eq!(b.token.as_deref(), Some("hf_from_env"));
        assert!(!b.offline);
    }

    #[test]
    fn cached_snapshot_needs_config_tokenizer_and_every_weight() {
        let d = tempfile_dir("cached");
        let rd = d.join("models--Org--Name");
        let snap = rd.join("snapshots/abc123");
        std::fs::create_dir_all(rd.join("refs")).unwrap();
        std::fs::create_dir_all(rd.join("blobs")).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(rd.join("refs/main"), "abc123\n").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert!(cached_snapshot(&d, "Org/Name", "main").is_none());
        std::fs::write(snap.join("tokenizer.json"), "{}").unwrap();
        assert!(cached_snapshot(&d, "Org/Name", "main").is_none());
        // A pointer to a partial blob does not count.
        std::fs::write(rd.join("blobs/e1.incomplete"), "x").unwrap();
        std::os::unix::fs::symlink("../../blobs/e1.incomplete", snap.join("model.safetensors"))
            .unwrap();
        assert!(cached_snapshot(&d, "Org/Name", "main").is_none());
        std::fs::remove_file(snap.join("model.safetensors")).unwrap();
        std::fs::write(rd.join("blobs/e1"), "x").unwrap();
        std::os::unix::fs::symlink("../../blobs/e1", snap.join("model.safetensors")).unwrap();
        assert_eq!(cached_snapshot(&d, "Org/Name", "main").unwrap(), snap);
        assert_eq!(cached_snapshot(&d, "Org/Name", "abc123").unwrap(), snap);
        // An index naming a missing shard makes it incomplete again.
        std::fs::write(
            snap.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "model.safetensors", "b": "model-2.safetensors"}}"#,
        )
        .unwrap();
        assert!(cached_snapshot(&d, "Org/Name", "main").is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
