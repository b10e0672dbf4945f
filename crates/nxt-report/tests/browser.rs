//! The report in a real browser: headless Chromium opens the pages of fixture runs (a finished
//! self-training run, one killed in iteration 2, an eval run with hostile model output) through
//! `tests/browser_check.sh`, which fails unless the headline table and every plot were laid out
//! with a non-empty box and the page logged nothing to the console. The checker itself is shown
//! to fail on a page that logs an error and on a page with an empty plot.
//!
//! Needs `chromium` (Debian: `apt-get install -y chromium`): skipped where it is missing, a
//! failure when `NXT_REQUIRE_RESOURCES` names `browser` (as `.ci/run` does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use nxt_report::write_report;

/// The resource name of this test under `NXT_REQUIRE_RESOURCES`.
const BROWSER: &str = "browser";

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser_check.sh")
}

/// Runs the checker on `page` (with a screenshot to `shot`): exit code and output.
fn check(page: &Path, shot: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).arg(page);
    if let Some(s) = shot {
        cmd.arg(s).arg("1600");
    }
    let out = cmd.output().expect("run browser_check.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn reports_render_in_headless_chromium() {
    if chromium().is_none() {
        nxt_sandbox::test_support::skip(
            BROWSER,
            "no chromium on PATH (apt-get install -y chromium): the browser check did not run",
        );
        return;
    }
    let d = tempdir();
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    let killed = at(d.path(), "killed");
    write_selftrain_run(&killed, true);
    let eval = at(d.path(), "eval");
    let mut plan = EvalPlan::new("mbpp-r", 6, &[2, 0, 0, 3, 0, 1]);
    plan.hostile = true;
    write_eval_run(&eval, &plan);
    for (dir, compare) in [
        (&st, vec![eval.clone()]),
        (&killed, vec![]),
        (&eval, vec![]),
    ] {
        let page = dir.join("report.html");
        let s = write_report(dir, &compare, &page).expect("report");
        let shot = dir.join("shot.png");
        let (code, out) = check(&page, Some(&shot));
        assert_eq!(code, 0, "{}:\n{out}", page.display());
        assert!(
            out.contains(&format!("SVGS {}\n", s.plots)),
            "{} plots expected:\n{out}",
            s.plots
        );
        let png = std::fs::read(&shot).expect("screenshot");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{}: {} bytes",
            shot.display(),
            png.len()
        );
    }
}

#[test]
fn the_browser_check_fails_on_console_errors_and_empty_plots() {
    if chromium().is_none() {
        nxt_sandbox::test_support::skip(BROWSER, "no chromium on PATH: the checker was not run");
        return;
    }
    let d = tempdir();
    let eval = at(d.path(), "eval");
    write_eval_run(&eval, &EvalPlan::new("mbpp-r", 6, &[2, 0, 0, 3]));
    let page = eval.join("report.html");
    write_report(&eval, &[], &page).expect("report");
    let html = std::fs::read_to_string(&page).expect("page");
    let (code, out) = check(&page, None);
    assert_eq!(code, 0, "{out}");
    // The same page logging an error.
    let logs = d.path().join("logs.html");
    std::fs::write(
        &logs,
        html.replace(
            "</footer>",
            "</footer><script>console.error('broken')</script>",
        ),
    )
    .expect("write");
    let (code, out) = check(&logs, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("console errors"), "{out}");
    // The same page with its first plot collapsed to nothing.
    let empty = d.path().join("empty.html");
    let i = html.find("<svg").expect("a plot");
    let end = i + html[i..].find('>').expect("svg tag end");
    let collapsed = format!(
        "{}<svg style=\"display:none\"{}",
        &html[..i],
        &html[i + 4..=end]
    ) + &html[end + 1..];
    std::fs::write(&empty, collapsed).expect("write");
    let (code, out) = check(&empty, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("empty box"), "{out}");
}
