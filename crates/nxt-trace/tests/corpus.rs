//! Every program of ../shared/data traced through the sandbox: no tracer crash, steps numbered
//! once and in order, numbers increasing within each line, `__return__` equal to the real
//! repr, the source given back by stripping the comments, and the same verdict with and
//! without tracing. By default a deterministic subset (every 10th case of each corpus);
//! `NXT_FULL_CORPUS=1` runs everything.

use std::sync::Mutex;

use nxt_data::registry::resolve_data_dir;
use nxt_sandbox::{Pool, PoolConfig};
use nxt_trace::survey::{cases, run_survey, CORPORA};
use nxt_trace::CaptureOptions;

#[test]
fn corpus_traces_are_consistent() {
    let dir = resolve_data_dir(None).0;
    if !dir.join("mbpp/mbpp.jsonl").exists() {
        nxt_sandbox::test_support::skip(
            nxt_sandbox::test_support::DATA,
            &format!("NXT_DATA_DIR {} not found", dir.display()),
        );
        return;
    }
    let full = std::env::var_os("NXT_FULL_CORPUS").is_some_and(|v| v == "1");
    let every = if full { 1 } else { 10 };
    let all = cases(&dir, &CORPORA, every).unwrap();
    let pool = match Pool::new(PoolConfig {
        allow_weak_isolation: true,
        ..PoolConfig::default()
    }) {
        Ok(p) => p,
        Err(e) => {
            nxt_sandbox::test_support::skip(
                nxt_sandbox::test_support::SANDBOX,
                &format!("sandbox pool unavailable: {e}"),
            );
            return;
        }
    };
    let capture = CaptureOptions {
        verify: true,
        run_budget: std::time::Duration::from_secs(3),
        ..CaptureOptions::default()
    };
    let failures = Mutex::new(Vec::new());
    let counts = Mutex::new(std::collections::BTreeMap::<&str, (usize, usize)>::new());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    run_survey(&pool, &all, &capture, true, threads, &|r| {
        let mut c = counts.lock().unwrap();
        let e = c.entry(r.corpus).or_default();
        e.0 += 1;
        if r.trace.as_ref().is_some_and(|t| t.truncated.is_some()) {
            e.1 += 1;
        }
        if let Some(err) = &r.error {
            failures
                .lock()
                .unwrap()
                .push(format!("{}: tracer error: {err}", r.id));
        }
        for p in &r.problems {
            failures.lock().unwrap().push(format!("{}: {p}", r.id));
        }
    });
    for (corpus, (n, truncated)) in counts.lock().unwrap().iter() {
        eprintln!("{corpus}: {n} traces, {truncated} hit a budget");
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} problems in {} traces:\n{}",
        failures.len(),
        all.len(),
        failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
