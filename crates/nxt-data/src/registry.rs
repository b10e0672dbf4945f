//! Known dataset files: where they live in a data directory, where they come from upstream,
//! and their pinned sha256; data-directory resolution and download.
//!
//! Every upstream URL names a commit or a release tag, not a branch (a commit upstream cannot
//! break `nxt data fetch`); the commit of each GitHub file is the one whose content has the
//! pinned sha256 (HumanEval: openai/human-eval 463c980b, the file's only version; HumanEvalFix:
//! bigcode-project/octopack 526627ac, its latest change; MBPP full and sanitized:
//! google-research/google-research 30adf0ec). Downloads use reqwest's blocking client, the
//! workspace's one HTTP client (see `nxt-llm`'s crate doc for the measurement).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io_err, DataError, Result};

/// A raw dataset file the crate knows how to fetch and load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetFile {
    /// Name used on the command line (`nxt data fetch NAME`).
    pub name: &'static str,
    /// Human-readable description.
    pub description: &'static str,
    /// Path relative to the data directory.
    pub rel_path: &'static str,
    /// Pinned upstream URL: a file at a commit (`raw.githubusercontent.com/{owner}/{repo}/{commit}/...`)
    /// or a release asset of a tag, never a branch head, so an upstream commit cannot change
    /// what is fetched (the sha256 is checked as well).
    pub url: &'static str,
    /// sha256 (hex) of the exact file.
    pub sha256: &'static str,
    /// Number of records.
    pub records: usize,
    /// License.
    pub license: &'static str,
}

/// Every raw dataset file, pinned.
pub const DATASETS: &[DatasetFile] = &[
    DatasetFile {
        name: "humaneval",
        description: "HumanEval (OpenAI)",
        rel_path: "humaneval/HumanEval.jsonl.gz",
        url: "https://raw.githubusercontent.com/openai/human-eval/463c980b59e818ace59f6f9803cd92c749ceae61/data/HumanEval.jsonl.gz",
        sha256: "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
        records: 164,
        license: "MIT",
    },
    DatasetFile {
        name: "mbpp",
        description: "MBPP, full release",
        rel_path: "mbpp/mbpp.jsonl",
        url: "https://raw.githubusercontent.com/google-research/google-research/30adf0ec5f35f9609c2f1d896005e184195d9146/mbpp/mbpp.jsonl",
        sha256: "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
        records: 974,
        license: "CC-BY-4.0",
    },
    DatasetFile {
        name: "mbpp-sanitized",
        description: "MBPP, sanitized subset",
        rel_path: "mbpp/sanitized-mbpp.json",
        url: "https://raw.githubusercontent.com/google-research/google-research/30adf0ec5f35f9609c2f1d896005e184195d9146/mbpp/sanitized-mbpp.json",
        sha256: "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9",
        records: 427,
        license: "CC-BY-4.0",
    },
    DatasetFile {
        name: "humanevalfix",
        description: "HumanEvalFix (HumanEvalPack, Python)",
        rel_path: "humanevalfix/humanevalpack_python.jsonl",
        url: "https://raw.githubusercontent.com/bigcode-project/octopack/526627ac7b6b6ec1a2b19a20822fbcf16be35162/evaluation/create/humaneval-x/data/python/data/humanevalpack.jsonl",
        sha256: "b1376d72be4bd016a62ad043d9de3846edb8d63edf1222da802a31330c14c3a7",
        records: 164,
        license: "MIT",
    },
    DatasetFile {
        name: "humaneval+",
        description: "HumanEval+ v0.1.10 (EvalPlus)",
        rel_path: "evalplus/humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz",
        url: "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz",
        sha256: "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
        records: 164,
        license: "Apache-2.0",
    },
    DatasetFile {
        name: "mbpp+",
        description: "MBPP+ v0.2.0 (EvalPlus)",
        rel_path: "evalplus/mbppplus/MbppPlus-v0.2.0.jsonl.gz",
        url: "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
        sha256: "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
        records: 378,
        license: "Apache-2.0",
    },
];

/// Relative path of the MBPP-R seed candidates (real model-written MBPP programs; not fetchable).
pub const MBPP_R_SEED: &str = "mbpp-r-seed/candidates.jsonl.gz";

/// Look a raw dataset file up by name (accepts a few aliases: `humanevalplus`, `mbppplus`,
/// `hefix`, `humanevalpack`).
pub fn dataset_file(name: &str) -> Result<&'static DatasetFile> {
    let canon = match name {
        "humanevalplus" | "humaneval-plus" => "humaneval+",
        "mbppplus" | "mbpp-plus" => "mbpp+",
        "humanevalpack" | "hefix" | "humaneval-fix" => "humanevalfix",
        "sanitized-mbpp" | "mbpp_sanitized" => "mbpp-sanitized",
        other => other,
    };
    DATASETS.iter().find(|d| d.name == canon).ok_or_else(|| {
        DataError::UnknownDataset(
            name.to_string(),
            DATASETS
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", "),
        )
    })
}

/// How the data directory was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirSource {
    /// `--data-dir` on the command line.
    Flag,
    /// The `NXT_DATA_DIR` environment variable.
    Env,
    /// The default download directory (`$XDG_DATA_HOME/nxt/data` or `~/.local/share/nxt/data`).
    Default,
}

impl DataDirSource {
    /// Description for messages.
    pub fn describe(self) -> &'static str {
        match self {
            DataDirSource::Flag => "from --data-dir",
            DataDirSource::Env => "from $NXT_DATA_DIR",
            DataDirSource::Default => "default download directory",
        }
    }
}

/// The default download directory: `$XDG_DATA_HOME/nxt/data`, else `$HOME/.local/share/nxt/data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("nxt").join("data");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local").join("share").join("nxt").join("data")
}

/// Resolve the data directory: `flag`, else `$NXT_DATA_DIR`, else [`default_data_dir`].
pub fn resolve_data_dir(flag: Option<&Path>) -> (PathBuf, DataDirSource) {
    if let Some(p) = flag {
        return (p.to_path_buf(), DataDirSource::Flag);
    }
    if let Some(v) = std::env::var_os("NXT_DATA_DIR").filter(|v| !v.is_empty()) {
        return (PathBuf::from(v), DataDirSource::Env);
    }
    (default_data_dir(), DataDirSource::Default)
}

/// Hint telling a user how to provide a dataset without network access.
pub fn local_copy_hint(file: &DatasetFile) -> String {
    format!(
        "download {} on a machine with network access (or copy an existing copy) to <DIR>/{} \
         and pass --data-dir <DIR> or set NXT_DATA_DIR=<DIR>",
        file.url, file.rel_path
    )
}

/// Path of a dataset file inside `data_dir`, or a [`DataError::Missing`] naming how to get it.
pub fn locate(data_dir: &Path, name: &str) -> Result<PathBuf> {
    let file = dataset_file(name)?;
    let path = data_dir.join(file.rel_path);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::Missing {
            name: file.name.to_string(),
            path,
            hint: format!(
                "run `nxt data fetch {}`, or {}",
                file.name,
                local_copy_hint(file)
            ),
        })
    }
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// sha256 of bytes, lowercase hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A reqwest error with its causes (its Display alone says little).
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// State of one dataset file in a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Present and matching its pin.
    Ok,
    /// Present but with another sha256.
    Mismatch(String),
    /// Not there.
    Missing,
}

/// Check one dataset file in `data_dir` against its pin.
pub fn file_status(data_dir: &Path, file: &DatasetFile) -> Result<FileStatus> {
    let path = data_dir.join(file.rel_path);
    if !path.is_file() {
        return Ok(FileStatus::Missing);
    }
    let actual = sha256_file(&path)?;
    Ok(if actual == file.sha256 {
        FileStatus::Ok
    } else {
        FileStatus::Mismatch(actual)
    })
}

/// Download `file` from `url` (its pinned upstream unless overridden) into `data_dir`, verify
/// its sha256 and move it into place atomically. Returns the final path.
pub fn fetch(data_dir: &Path, file: &DatasetFile, url: Option<&str>) -> Result<PathBuf> {
    let url = url.unwrap_or(file.url);
    let dest = data_dir.join(file.rel_path);
    let parent = dest.parent().unwrap_or(data_dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let dl_err = |message: String| DataError::Download {
        name: file.name.to_string(),
        url: url.to_string(),
        message: format!(
            "{message}; without network access, {}",
            local_copy_hint(file)
        ),
    };
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("nxt/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(20))
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .map_err(|e| dl_err(describe(&e)))?;
    let response = client.get(url).send().map_err(|e| dl_err(describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(dl_err(format!("HTTP {status}")));
    }
    let mut reader = response;
    let tmp = parent.join(format!(
        ".{}.part",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download")
    ));
    let mut out = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| dl_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(&tmp))?;
    }
    out.flush().map_err(io_err(&tmp))?;
    drop(out);
    let actual = hex(&h.finalize());
    if actual != file.sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::Checksum {
            path: dest,
            expected: file.sha256.to_string(),
            actual,
        });
    }
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_and_unknown_names_list_known_ones() {
        assert_eq!(dataset_file("humanevalplus").unwrap().name, "humaneval+");
        assert_eq!(dataset_file("hefix").unwrap().name, "humanevalfix");
        let e = dataset_file("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("mbpp+"), "{e}");
    }

    #[test]
    fn fetch_without_network_fails_cleanly_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dataset_file("mbpp").unwrap();
        // Port 9 on loopback: nothing listens there, the connection is refused at once.
        let e = fetch(dir.path(), file, Some("http://127.0.0.1:9/mbpp.jsonl")).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Download { .. }), "{msg}");
        assert!(
            msg.contains("NXT_DATA_DIR") && msg.contains("--data-dir"),
            "{msg}"
        );
        assert!(!dir.path().join(file.rel_path).exists());
    }

    #[test]
    fn fetch_refuses_an_error_status_and_leaves_nothing_behind() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mbpp.jsonl", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let body = "404: Not Found";
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        let dir = tempfile::tempdir().unwrap();
        let file = dataset_file("mbpp").unwrap();
        let e = fetch(dir.path(), file, Some(&url)).unwrap_err();
        server.join().unwrap();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Download { .. }), "{msg}");
        assert!(msg.contains("404") && msg.contains(&url), "{msg}");
        assert!(!dir.path().join(file.rel_path).exists());
        let parent = dir.path().join(file.rel_path);
        let leftovers: Vec<_> = std::fs::read_dir(parent.parent().unwrap())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn locate_missing_names_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let e = locate(dir.path(), "humaneval").unwrap_err().to_string();
        assert!(
            e.contains("HumanEval.jsonl.gz") && e.contains("nxt data fetch humaneval"),
            "{e}"
        );
    }

    /// The commit or tag a dataset URL pins, if it pins one.
    fn pinned_revision(url: &str) -> Option<&str> {
        if let Some(rest) = url.strip_prefix("https://raw.githubusercontent.com/") {
            // owner/repo/<commit>/path
            let rev = rest.split('/').nth(2)?;
            let commit = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
            return commit.then_some(rev);
        }
        if let Some(rest) = url.strip_prefix("https://github.com/") {
            // owner/repo/releases/download/<tag>/asset
            let parts: Vec<&str> = rest.split('/').collect();
            if parts.len() == 6 && parts[2] == "releases" && parts[3] == "download" {
                let tag = parts[4];
                let version = tag.strip_prefix('v').unwrap_or(tag);
                let semver = !version.is_empty()
                    && version
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                return semver.then_some(tag);
            }
        }
        None
    }

    #[test]
    fn every_url_pins_a_commit_or_a_release_tag() {
        for d in DATASETS {
            let rev = pinned_revision(d.url)
                .unwrap_or_else(|| panic!("{}: {} names no commit or release tag", d.name, d.url));
            assert!(
                !["master", "main", "HEAD"].contains(&rev),
                "{}: {rev}",
                d.name
            );
            assert!(
                d.sha256.len() == 64 && d.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: the sha256 stays pinned",
                d.name
            );
        }
        // The check itself tells branch URLs from pinned ones.
        assert_eq!(
            pinned_revision("https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl"),
            None
        );
        assert_eq!(
            pinned_revision(
                "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz"
            ),
            None
        );
        assert_eq!(
            pinned_revision("https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz"),
            Some("v0.1.10")
        );
    }

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
