//! Finding the CPython interpreter the workers run (once, by absolute path).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SandboxError;

/// Finds a usable CPython (3.8 or newer) and returns its absolute path.
///
/// Order: the environment variable `NXT_PYTHON` (used as given, must work); else every
/// `python3` on `PATH` (a shell shim such as pyenv's is resolved to the real binary through
/// `sys.executable`), then `/usr/bin/python3` and `/usr/local/bin/python3`. An interpreter whose
/// standard library the unprivileged sandbox user could not read (e.g. under a `0700` home) is
/// passed over while another candidate works.
pub fn find_python() -> Result<PathBuf, SandboxError> {
    if let Some(p) = std::env::var_os("NXT_PYTHON") {
        let p = PathBuf::from(p);
        let (exe, _) = probe(&p)
            .map_err(|e| SandboxError::Python(format!("NXT_PYTHON={}: {e}", p.display())))?;
        return Ok(exe);
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let c = dir.join("python3");
            if c.is_file() {
                candidates.push(c);
            }
        }
    }
    candidates.push(PathBuf::from("/usr/bin/python3"));
    candidates.push(PathBuf::from("/usr/local/bin/python3"));
    let mut errors = Vec::new();
    let mut fallback = None;
    for c in candidates {
        match probe(&c) {
            Ok((exe, stdlib)) => {
                if world_readable(&exe) && world_readable(&stdlib) {
                    return Ok(exe);
                }
                if fallback.is_none() {
                    fallback = Some(exe);
                }
            }
            Err(e) => errors.push(format!("{}: {e}", c.display())),
        }
    }
    fallback.ok_or_else(|| {
        SandboxError::Python(format!(
            "no CPython >= 3.8 found (set NXT_PYTHON); tried: {}",
            errors.join("; ")
        ))
    })
}

/// Runs the candidate once: returns (real executable, stdlib directory).
fn probe(candidate: &Path) -> Result<(PathBuf, PathBuf), String> {
    let real = if is_elf(candidate) { None } else { Some(()) };
    let out = Command::new(candidate)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys, os; print(os.path.realpath(sys.executable)); \
             print(sys.version_info[0], sys.version_info[1]); \
             print(os.path.dirname(os.__file__))",
        ])
        .output()
        .map_err(|e| format!("cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let exe = lines.next().unwrap_or_default().trim().to_string();
    let ver = lines.next().unwrap_or_default().trim().to_string();
    let stdlib = lines.next().unwrap_or_default().trim().to_string();
    let mut parts = ver
        .split_whitespace()
        .map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if major != 3 || minor < 8 {
        return Err(format!("version {major}.{minor} is older than 3.8"));
    }
    let exe = if exe.is_empty() {
        // sys.executable can be empty in odd embeddings; fall back to the candidate itself.
        match real {
            None => candidate.canonicalize().map_err(|e| e.to_string())?,
            Some(()) => return Err("sys.executable is empty".into()),
        }
    } else {
        PathBuf::from(exe)
    };
    if !is_elf(&exe) {
        return Err(format!("{} is not a native executable", exe.display()));
    }
    Ok((exe, PathBuf::from(stdlib)))
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| &magic == b"\x7fELF")
        .unwrap_or(false)
}

/// True when every ancestor directory is searchable by others and the path itself readable.
fn world_readable(p: &Path) -> bool {
    let mut cur = Some(p);
    let mut first = true;
    while let Some(c) = cur {
        match std::fs::metadata(c) {
            Ok(m) => {
                let mode = m.permissions().mode();
                let need = if first && !m.is_dir() { 0o004 } else { 0o001 };
                if mode & need == 0 {
                    return false;
                }
            }
            Err(_) => return false,
        }
        first = false;
        cur = c.parent();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_world_readable_python() {
        let p = find_python().expect("a python");
        assert!(p.is_absolute());
        assert!(is_elf(&p));
    }
}
