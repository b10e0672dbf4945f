//! A run killed with SIGKILL mid-way resumes without losing or duplicating anything.
//!
//! The test re-runs its own binary as a child (`resume_child`, an ignored helper that the
//! parent runs with `--ignored` and `NXT_CORE_RESUME_CHILD_DIR` set; it is not a test). The child's generator (a canned-text test double)
//! blocks forever after two requests, so the kill always lands in the middle of the run.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{pool, tasks, Canned};
use nxt_core::eval::{run_eval, EvalConfig, EvalContext};
use nxt_core::store::RunStore;

const N: usize = 3;

fn config() -> EvalConfig {
    EvalConfig {
        benchmark: "test".into(),
        n: N,
        greedy: false,
        batch: 1,
        ks: vec![1],
        ..EvalConfig::default()
    }
}

/// The child of [`kill_9_mid_run_then_resume_loses_and_duplicates_nothing`]: not a test.
#[test]
#[ignore = "child-process helper of kill_9_mid_run_then_resume_loses_and_duplicates_nothing"]
fn resume_child() {
    let Ok(dir) = std::env::var("NXT_CORE_RESUME_CHILD_DIR") else {
        panic!(
            "resume_child is a helper: run by its parent test with NXT_CORE_RESUME_CHILD_DIR set"
        );
    };
    let Some(pool) = pool() else {
        std::process::exit(3)
    };
    let store = RunStore::open(&std::path::Path::new(&dir).join("run.sqlite")).unwrap();
    let mut gen = Canned::new();
    gen.hang_after = Some(2);
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    let _ = run_eval(&ctx, &tasks(), &config(), &store, &mut |_| {});
    unreachable!("the generator hangs; the parent kills this process");
}

#[test]
fn kill_9_mid_run_then_resume_loses_and_duplicates_nothing() {
    if pool().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("nxt-core-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("run.sqlite");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resume_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("NXT_CORE_RESUME_CHILD_DIR", &dir)
        .spawn()
        .unwrap();
    // Wait until the child stored the first two tasks' samples and verdicts (its generator then
    // blocks on the third request).
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child ended before the kill: {status}");
        }
        if db.exists() {
            if let Ok(store) = RunStore::open(&db) {
                if let Ok(c) = store.counts() {
                    if c.verdicts >= 2 * N as i64 {
                        break;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    let store = RunStore::open(&db).unwrap();
    let at_kill = store.counts().unwrap();
    assert_eq!(at_kill.tasks, 3);
    assert_eq!(
        at_kill.samples,
        2 * N as i64,
        "the third task's samples were never generated"
    );

    // Resume in this process with a generator that does not hang.
    let pool = common::pool().unwrap();
    let gen = Canned::new();
    let ctx = EvalContext {
        pool: &pool,
        generator: &gen,
        proxy: None,
    };
    let report = run_eval(&ctx, &tasks(), &config(), &store, &mut |_| {}).unwrap();
    // Only the missing work was done: one request of N samples.
    assert_eq!(gen.requests.load(Ordering::SeqCst), 1);
    assert_eq!(gen.samples.load(Ordering::SeqCst), N);
    let c = store.counts().unwrap();
    assert_eq!((c.tasks, c.prepared, c.prompts), (3, 3, 3));
    assert_eq!(
        (c.samples, c.parses, c.verdicts),
        (3 * N as i64, 3 * N as i64, 3 * N as i64)
    );
    for t in &report.per_task {
        assert_eq!(t.n, N, "{t:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
