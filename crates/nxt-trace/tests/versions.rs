//! The Python tracer on every CPython 3.8-3.13 found: Debian's (`/usr/bin/python3.X`) and those
//! installed under /root/.pyenv/versions (or `$NXT_PYENV_ROOT`). Every golden case must render
//! exactly as on 3.11, except where a version-specific expectation exists under
//! tests/golden/py3X/ (3.8 reports a few events in another order, and its parser words syntax
//! errors differently). The test says which versions ran; with only one version found it is a
//! skip (a failure under `NXT_REQUIRE_RESOURCES=python-versions`). Unsandboxed: the programs
//! are our own golden cases.

mod common;

use std::path::{Path, PathBuf};

use nxt_sandbox::test_support::{skip, PYTHON_VERSIONS};
use nxt_trace::{render, trace, DirectRunner, Format};

/// One interpreter per minor version, `("3X", path)`: Debian's first, else pyenv's.
fn interpreters() -> Vec<(String, PathBuf)> {
    let root = std::env::var_os("NXT_PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv/versions"));
    let mut out = Vec::new();
    for minor in 8..=13 {
        let prefix = format!("3.{minor}.");
        let debian = PathBuf::from(format!("/usr/bin/python3.{minor}"));
        let pyenv = std::fs::read_dir(&root)
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
            })
            .map(|p| p.join("bin/python3"));
        match Some(debian)
            .filter(|p| p.exists())
            .or(pyenv.filter(|p| p.exists()))
        {
            Some(p) => out.push((format!("3{minor}"), p)),
            None => eprintln!(
                "CPython 3.{minor}: not found (/usr/bin/python3.{minor}, {})",
                root.display()
            ),
        }
    }
    eprintln!(
        "golden cases on: {}",
        out.iter()
            .map(|(t, p)| format!("{t} ({})", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

#[test]
fn goldens_on_every_python_version() {
    let cases = common::goldens();
    let pythons = interpreters();
    if pythons.len() < 2 {
        skip(
            PYTHON_VERSIONS,
            &format!(
                "{} CPython version(s) found; the multi-version goldens need two or more",
                pythons.len()
            ),
        );
        if pythons.is_empty() {
            return;
        }
    }
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = pythons
            .into_iter()
            .map(|(tag, python)| s.spawn(|| one_version(&cases, tag, python)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn one_version(cases: &[common::Golden], tag: String, python: PathBuf) -> Vec<String> {
    let mut failures = Vec::new();
    {
        let runner = DirectRunner { python };
        for case in cases {
            let t = trace(&runner, &case.request)
                .unwrap_or_else(|e| panic!("{} on {tag}: {e}", case.name));
            let got = render(&t, Format::Inline, &case.render);
            let special = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/golden/py{tag}/{}.py", case.name));
            let expected =
                std::fs::read_to_string(&special).unwrap_or_else(|_| case.expected.clone());
            if got != expected {
                failures.push(format!("--- {} on {tag} ({}):\n{got}", case.name, t.python));
            }
        }
    }
    failures
}
