//! The sandbox's processes have short command lines (`ps` shows one line each, not the
//! harness's source), and they still run jobs.

use std::time::Duration;

use nxt_sandbox::test_support::{skip, SANDBOX};
use nxt_sandbox::{Comparison, Job, Limits, Pool, PoolConfig, SetupPlacement, Verdict};

/// The command lines of this process's children (every thread's).
fn children_cmdlines() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        for pid in children.split_whitespace() {
            if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                out.push(String::from_utf8_lossy(&raw).replace('\0', " "));
            }
        }
    }
    out
}

#[test]
fn worker_command_lines_are_short() {
    let pool = match Pool::new(PoolConfig {
        workers: 1,
        allow_weak_isolation: true,
        ..PoolConfig::default()
    }) {
        Ok(p) => p,
        Err(e) => {
            skip(SANDBOX, &format!("sandbox pool unavailable: {e}"));
            return;
        }
    };
    let job = Job {
        program: "def f():\n    return 1\n".into(),
        setup: None,
        setup_placement: SetupPlacement::AfterProgram,
        tests: vec!["assert f() == 1".into()],
        limits: Limits::default(),
        comparison: Comparison::default(),
    };
    let result = pool.run(&job).expect("the job runs");
    assert_eq!(result.verdict, Verdict::Passed, "{result:?}");
    // The worker and its compiler are children of this process.
    let mut lines = children_cmdlines();
    for _ in 0..50 {
        if !lines.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        lines = children_cmdlines();
    }
    assert!(!lines.is_empty(), "no sandbox process found");
    for l in &lines {
        assert!(l.len() < 400, "{} bytes: {}...", l.len(), &l[..200]);
        assert!(!l.contains('\n'), "{l}");
    }
}
