//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use nxt_trace::{split_lines, CaptureOptions, RenderOptions, TraceRequest};

/// The interpreter used by direct-runner tests: `$NXT_PYTHON`, else /usr/bin/python3.11, else
/// /usr/bin/python3.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NXT_PYTHON") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/python3.11", "/usr/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// One golden case: the expected rendering and what to trace.
pub struct Golden {
    pub name: String,
    pub path: PathBuf,
    pub expected: String,
    pub request: TraceRequest,
    pub render: RenderOptions,
}

/// Read all golden cases (`tests/golden/*.py`): each file is an inline rendering; stripping it
/// gives the document, whose last blank-line-separated block is the test.
pub fn goldens() -> Vec<Golden> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let expected = std::fs::read_to_string(&path).unwrap();
            let source = nxt_trace::strip_inline_comments(&expected);
            let lines = split_lines(&source);
            let blank = lines
                .iter()
                .rposition(|(c, _)| c.trim().is_empty())
                .unwrap_or_else(|| panic!("{}: no blank line before the test", path.display()));
            let cat = |ls: &[(&str, &str)]| {
                ls.iter()
                    .map(|(c, t)| format!("{c}{t}"))
                    .collect::<String>()
            };
            let program = cat(&lines[..blank]);
            let test = cat(&lines[blank + 1..]);
            let mut capture = CaptureOptions {
                verify: true,
                ..CaptureOptions::default()
            };
            let mut render = RenderOptions::default();
            for (c, _) in &lines {
                if let Some(d) = c.strip_prefix("# nxt:") {
                    for kv in d.split_whitespace() {
                        let (k, v) = kv.split_once('=').unwrap();
                        match k {
                            "max_events" => capture.max_events = v.parse().unwrap(),
                            "run_budget_s" => {
                                capture.run_budget = Duration::from_secs_f64(v.parse().unwrap())
                            }
                            "head" => render.head = v.parse().unwrap(),
                            "tail" => render.tail = v.parse().unwrap(),
                            "line_budget" => render.line_budget = v.parse().unwrap(),
                            "value_max_chars" => render.value_max_chars = v.parse().unwrap(),
                            other => panic!("{}: unknown directive {other}", path.display()),
                        }
                    }
                }
            }
            let mut request = TraceRequest::new(program, test);
            request.capture = capture;
            assert_eq!(
                nxt_trace::document(&request.program, &request.test).0,
                source,
                "{}: document does not round-trip",
                path.display()
            );
            Golden {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                path,
                expected,
                request,
                render,
            }
        })
        .collect()
}
