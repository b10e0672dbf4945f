//! Batch tracing with resume (through the direct runner: the programs are our own).

mod common;

use nxt_trace::batch::{done_ids, read_jobs, run_batch, BatchOutput, BatchSettings};
use nxt_trace::{CaptureOptions, DirectRunner, Format, RenderOptions};

#[test]
fn batch_runs_resumes_and_reports_bad_lines() {
    let Some(python) = common::python() else {
        nxt_sandbox::test_support::skip(
            nxt_sandbox::test_support::SANDBOX,
            "no python3 interpreter found",
        );
        return;
    };
    let runner = DirectRunner { python };
    let dir = std::env::temp_dir().join(format!("nxt-trace-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jobs_path = dir.join("jobs.jsonl");
    let out = dir.join("traces.jsonl");
    let mut lines = Vec::new();
    for i in 0..5 {
        lines.push(
            serde_json::json!({
                "id": format!("j{i}"),
                "program": "def f(x):\n    y = x * 2\n    return y\n",
                "test": format!("assert f({i}) == {}", if i == 3 { 0 } else { 2 * i }),
            })
            .to_string(),
        );
    }
    std::fs::write(&jobs_path, lines.join("\n") + "\n").unwrap();
    let jobs = read_jobs(&jobs_path).unwrap();
    assert_eq!(jobs.len(), 5);
    let settings = BatchSettings {
        capture: CaptureOptions::default(),
        format: Format::Inline,
        render: RenderOptions::default(),
        include_trace: false,
        threads: 2,
        chunk: 2,
    };
    // First run on 3 jobs only, then simulate an interrupted write, then resume on all 5.
    assert_eq!(
        run_batch(&runner, &jobs[..3], &out, &settings, &|_, _| {}).unwrap(),
        3
    );
    let mut text = std::fs::read_to_string(&out).unwrap();
    text.push_str("{\"id\": \"j4\", \"verd");
    std::fs::write(&out, &text).unwrap();
    assert_eq!(done_ids(&out).unwrap().len(), 3);
    assert_eq!(
        run_batch(&runner, &jobs, &out, &settings, &|_, _| {}).unwrap(),
        2
    );
    let outputs: Vec<BatchOutput> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = outputs.iter().map(|o| o.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["j0", "j1", "j2", "j3", "j4"]);
    let j3 = outputs.iter().find(|o| o.id == "j3").unwrap();
    assert!(matches!(
        j3.verdict,
        Some(nxt_trace::TestOutcome::Failed { .. })
    ));
    assert!(
        j3.rendered.contains("    y = x * 2  # (1) y=6;"),
        "{}",
        j3.rendered
    );
    assert!(j3
        .rendered
        .ends_with("assert f(3) == 0  # (3) __exception__ = AssertionError()\n"));
    // A malformed jobs file names the file and line.
    std::fs::write(
        &jobs_path,
        "{\"id\": \"a\", \"program\": \"\", \"test\": \"\"}\nnot json\n",
    )
    .unwrap();
    let err = read_jobs(&jobs_path).unwrap_err().to_string();
    assert!(err.contains("jobs.jsonl:2:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
