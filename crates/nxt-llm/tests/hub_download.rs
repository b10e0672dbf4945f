//! Hub downloads against a hub-shaped server on loopback (`/api/models/{id}/revision/{rev}`,
//! `/{id}/resolve/{rev}/{file}` with the hub's ETag headers, LFS files redirected to a "CDN"
//! route that honours Range requests), serving the files of a tiny model written by
//! `write_tiny_model`: the Hugging Face cache layout, offline loading from it, corrupted blobs
//! and corrupted transfers, resumed partial downloads, a missing token.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nxt_engine::hub::{self, HubConfig, HubError};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_llm::engine::{Engine, EngineOptions};
use sha1::Sha1;
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_test_token";

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(b: &[u8]) -> String {
    hexs(&Sha256::digest(b))
}

fn git_sha1(b: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    hexs(&h.finalize())
}

fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors")
}

/// The ETag the hub gives a file (sha256 for LFS files, git blob sha1 otherwise).
fn etag(name: &str, bytes: &[u8]) -> String {
    if is_lfs(name) {
        sha256(bytes)
    } else {
        git_sha1(bytes)
    }
}

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    corrupt: bool,
    log: Vec<Seen>,
}

/// A hub-shaped HTTP/1.1 server on 127.0.0.1 (one thread per connection, `Connection: close`).
struct FakeHub {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeHub {
    fn start(files: BTreeMap<String, Vec<u8>>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            files,
            ..State::default()
        }));
        let (st, base) = (state.clone(), url.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (st, base) = (st.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &st, &base);
                });
            }
        });
        FakeHub { url, state }
    }

    fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    fn set_corrupt(&self, on: bool) {
        self.state.lock().unwrap().corrupt = on;
    }

    fn config(&self, cache: &Path, token: Option<&str>) -> HubConfig {
        HubConfig {
            endpoint: self.url.clone(),
            cache: cache.to_path_buf(),
            token: token.map(str::to_string),
            offline: false,
            progress: true,
        }
    }
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k == "Content-Length") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    conn.write_all(out.as_bytes())?;
    if !head_only {
        conn.write_all(body)?;
    }
    conn.flush()
}

fn serve(mut conn: TcpStream, st: &Mutex<State>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let (mut range, mut auth) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let head = method == "HEAD";
    let (files, corrupt) = {
        let mut s = st.lock().unwrap();
        s.log.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            auth: auth.clone(),
        });
        (s.files.clone(), s.corrupt)
    };
    let authorized = auth.as_deref() == Some(&format!("Bearer {TOKEN}"));
    let commit_h = ("X-Repo-Commit".to_string(), COMMIT.to_string());

    if let Some(rev) = path.strip_prefix("/api/models/Org/Tiny/revision/") {
        if !authorized {
            return respond(
                &mut conn,
                "401 Unauthorized",
                &[],
                b"Invalid credentials in Authorization header",
                head,
            );
        }
        if rev != "main" && rev != COMMIT {
            return respond(&mut conn, "404 Not Found", &[], b"Revision Not Found", head);
        }
        let siblings: Vec<serde_json::Value> = files
            .keys()
            .map(|k| serde_json::json!({ "rfilename": k }))
            .collect();
        let body = serde_json::json!({ "id": "Org/Tiny", "sha": COMMIT, "siblings": siblings });
        return respond(
            &mut conn,
            "200 OK",
            &[("Content-Type".into(), "application/json".into())],
            body.to_string().as_bytes(),
            head,
        );
    }
    if let Some(rest) = path.strip_prefix("/Org/Tiny/resolve/") {
        if !authorized {
            return respond(
                &mut conn,
                "401 Unauthorized",
                &[],
                b"Access to model Org/Tiny is restricted.",
                head,
            );
        }
        let Some((_rev, name)) = rest.split_once('/') else {
            return respond(&mut conn, "404 Not Found", &[], b"Entry not found", head);
        };
        let Some(bytes) = files.get(name) else {
            return respond(&mut conn, "404 Not Found", &[], b"Entry not found", head);
        };
        if is_lfs(name) {
            // As the hub does: a redirect to the CDN carrying the LFS file's sha256 and size.
            let sha = sha256(bytes);
            return respond(
                &mut conn,
                "302 Found",
                &[
                    commit_h,
                    ("ETag".into(), "\"pointer-file-etag\"".into()),
                    ("X-Linked-Etag".into(), format!("\"{sha}\"")),
                    ("X-Linked-Size".into(), bytes.len().to_string()),
                    ("Location".into(), format!("{base}/cdn/{sha}")),
                ],
                b"",
                head,
            );
        }
        return respond(
            &mut conn,
            "200 OK",
            &[
                commit_h,
                ("ETag".into(), format!("W/\"{}\"", git_sha1(bytes))),
            ],
            bytes,
            head,
        );
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(bytes) = files.values().find(|b| sha256(b) == sha) else {
            return respond(&mut conn, "404 Not Found", &[], b"no such object", head);
        };
        let mut bytes = bytes.clone();
        if corrupt {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
        }
        let total = bytes.len();
        if let Some(start) = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse::<usize>().ok())
        {
            if start >= total {
                return respond(&mut conn, "416 Range Not Satisfiable", &[], b"", head);
            }
            return respond(
                &mut conn,
                "206 Partial Content",
                &[(
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{total}", total - 1),
                )],
                &bytes[start..],
                head,
            );
        }
        return respond(&mut conn, "200 OK", &[], &bytes, head);
    }
    respond(&mut conn, "404 Not Found", &[], b"not found", head)
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-hub-dl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The tiny model's files (two safetensors shards and their index) plus a README the engine
/// does not need.
fn tiny_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    write_tiny_model(
        dir,
        &TinyModelSpec {
            shards: 2,
            ..TinyModelSpec::default()
        },
    )
    .expect("tiny model");
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("model dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        files.insert(name, std::fs::read(&p).expect("read"));
    }
    files.insert("README.md".into(), b"# Tiny\n".to_vec());
    files
}

fn lfs_files(files: &BTreeMap<String, Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .filter(|(k, _)| is_lfs(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn cdn_gets(log: &[Seen]) -> Vec<Seen> {
    log.iter()
        .filter(|s| s.method == "GET" && s.path.starts_with("/cdn/"))
        .cloned()
        .collect()
}

#[test]
fn download_writes_the_hf_cache_layout_and_the_engine_loads_it_offline() {
    let root = temp("layout");
    let files = tiny_files(&root.join("src"));
    let hubsrv = FakeHub::start(files.clone());
    let cache = root.join("hub");
    let snap =
        hub::download(&hubsrv.config(&cache, Some(TOKEN)), "Org/Tiny", "main").expect("download");

    let rd = cache.join("models--Org--Tiny");
    assert_eq!(snap, rd.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(rd.join("refs/main")).expect("refs/main"),
        COMMIT
    );
    let mut linked = 0;
    for (name, bytes) in &files {
        let pointer = snap.join(name);
        if name == "README.md" {
            assert!(!pointer.exists(), "README.md is not an engine file");
            continue;
        }
        let target =
            std::fs::read_link(&pointer).unwrap_or_else(|e| panic!("{name} is not a symlink: {e}"));
        let tag = etag(name, bytes);
        assert_eq!(target, Path::new("../../blobs").join(&tag), "{name}");
        assert_eq!(
            std::fs::read(rd.join("blobs").join(&tag)).expect("blob"),
            *bytes,
            "{name}"
        );
        assert_eq!(std::fs::read(&pointer).expect("pointer"), *bytes);
        linked += 1;
    }
    assert!(
        linked >= 6,
        "config, tokenizer files, index, 2 shards: {linked}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(rd.join("blobs"))
        .expect("blobs")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let log = hubsrv.log();
    assert!(
        log.iter()
            .filter(|s| !s.path.starts_with("/cdn/"))
            .all(|s| s.auth.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "every hub request carries the token: {log:?}"
    );
    assert!(
        log.iter()
            .any(|s| s.method == "HEAD"
                && s.path == format!("/Org/Tiny/resolve/{COMMIT}/config.json")),
        "files are resolved at the commit: {log:?}"
    );
    assert_eq!(cdn_gets(&log).len(), 2, "one CDN GET per shard: {log:?}");

    // The engine finds the snapshot through HF_HUB_CACHE and needs no network.
    let requests = log.len();
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let engine = Engine::load("Org/Tiny", EngineOptions::default());
    let missing = Engine::load("Org/Missing", EngineOptions::default());
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_HUB_CACHE");
    engine.expect("Engine::load from the cache, offline");
    let e = missing.expect_err("a model not in the cache").to_string();
    assert!(
        e.contains("HF_HUB_OFFLINE") && e.contains("Org/Missing"),
        "{e}"
    );
    assert_eq!(hubsrv.log().len(), requests, "offline load made requests");

    // A snapshot whose last shard is missing is not complete.
    let (last, _) = lfs_files(&files).pop().expect("a shard");
    std::fs::remove_file(snap.join(&last)).expect("remove pointer");
    assert!(hub::cached_snapshot(&cache, "Org/Tiny", "main").is_none());
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_corrupted_blob_is_fetched_again_and_a_corrupted_transfer_is_refused() {
    let root = temp("corrupt");
    let files = tiny_files(&root.join("src"));
    let hubsrv = FakeHub::start(files.clone());
    let cache = root.join("hub");
    let cfg = hubsrv.config(&cache, Some(TOKEN));
    hub::download(&cfg, "Org/Tiny", "main").expect("download");

    // Same size, one byte flipped: the next download re-hashes, finds it and fetches it again.
    let (name, bytes) = lfs_files(&files).remove(0);
    let blob = cache.join("models--Org--Tiny/blobs").join(sha256(&bytes));
    let mut bad = bytes.clone();
    bad[10] ^= 0x01;
    std::fs::write(&blob, &bad).expect("corrupt the blob");
    let before = cdn_gets(&hubsrv.log()).len();
    hub::download(&cfg, "Org/Tiny", "main").expect("second download");
    assert_eq!(
        std::fs::read(&blob).expect("blob"),
        bytes,
        "{name} restored"
    );
    let again = cdn_gets(&hubsrv.log());
    assert_eq!(
        again.len(),
        before + 1,
        "only the corrupted blob is fetched again"
    );
    assert!(again[before].path.ends_with(&sha256(&bytes)));

    // A transfer that does not match its X-Linked-Etag is deleted and refused.
    hubsrv.set_corrupt(true);
    let cache2 = root.join("hub2");
    let e = hub::download(&hubsrv.config(&cache2, Some(TOKEN)), "Org/Tiny", "main")
        .expect_err("corrupt transfer");
    let msg = e.to_string();
    match &e {
        HubError::Checksum {
            file,
            kind,
            expected,
            actual,
            ..
        } => {
            assert_eq!(file, &name);
            assert_eq!(*kind, "sha256");
            assert_eq!(expected, &sha256(&bytes));
            assert_ne!(actual, expected);
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(
        msg.contains(&name) && msg.contains("does not match"),
        "{msg}"
    );
    let blobs2 = cache2.join("models--Org--Tiny/blobs");
    assert!(!blobs2.join(sha256(&bytes)).exists());
    assert!(!blobs2
        .join(format!("{}.incomplete", sha256(&bytes)))
        .exists());
    assert!(hub::cached_snapshot(&cache2, "Org/Tiny", "main").is_none());
    assert!(!cache2.join("models--Org--Tiny/refs/main").exists());
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_partial_download_is_resumed_with_a_range_request_or_redone() {
    let root = temp("resume");
    let files = tiny_files(&root.join("src"));
    let hubsrv = FakeHub::start(files.clone());
    let (_, bytes) = lfs_files(&files).remove(0);
    let sha = sha256(&bytes);
    let half = bytes.len() / 2;

    // A good prefix: resumed from where it stopped.
    let cache = root.join("hub");
    let blobs = cache.join("models--Org--Tiny/blobs");
    std::fs::create_dir_all(&blobs).expect("blobs");
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &bytes[..half]).expect("partial");
    hub::download(&hubsrv.config(&cache, Some(TOKEN)), "Org/Tiny", "main").expect("download");
    assert_eq!(std::fs::read(blobs.join(&sha)).expect("blob"), bytes);
    let gets: Vec<Seen> = cdn_gets(&hubsrv.log())
        .into_iter()
        .filter(|s| s.path.ends_with(&sha))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(
        gets[0].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );

    // A wrong prefix: resumed, found wrong, downloaded again from the start.
    let cache2 = root.join("hub2");
    let blobs2 = cache2.join("models--Org--Tiny/blobs");
    std::fs::create_dir_all(&blobs2).expect("blobs");
    std::fs::write(blobs2.join(format!("{sha}.incomplete")), vec![0u8; half]).expect("partial");
    let n = hubsrv.log().len();
    hub::download(&hubsrv.config(&cache2, Some(TOKEN)), "Org/Tiny", "main").expect("download");
    assert_eq!(std::fs::read(blobs2.join(&sha)).expect("blob"), bytes);
    let gets: Vec<Seen> = cdn_gets(&hubsrv.log()[n..])
        .into_iter()
        .filter(|s| s.path.ends_with(&sha))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(
        gets[0].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(gets[1].range, None);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_missing_token_stops_with_the_hubs_message_and_the_variable_to_set() {
    let root = temp("token");
    let files = tiny_files(&root.join("src"));
    let hubsrv = FakeHub::start(files);
    let cache = root.join("hub");
    let e = hub::download(&hubsrv.config(&cache, None), "Org/Tiny", "main").expect_err("no token");
    let msg = e.to_string();
    assert!(matches!(e, HubError::Http { status: 401, .. }), "{msg}");
    assert!(
        msg.contains("HF_TOKEN") && msg.contains("Invalid credentials"),
        "{msg}"
    );
    assert!(hub::cached_snapshot(&cache, "Org/Tiny", "main").is_none());
    std::fs::remove_dir_all(&root).ok();
}
