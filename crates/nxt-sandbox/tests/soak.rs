//! 10,000 jobs, hostile ones included; afterwards no job process and no job file may remain,
//! and dropping the pool removes the workers and the pool's directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nxt_sandbox::{Comparison, Job, Limits, Pool, PoolConfig, SetupPlacement, Verdict};

const UID_BASE: u32 = 63_100;

fn processes_of_uids(lo: u32, hi: u32) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("Uid:") {
                let uid: u32 = rest.split_whitespace().next().unwrap().parse().unwrap();
                if (lo..hi).contains(&uid) {
                    found.push(format!("pid {name} uid {uid}"));
                }
            }
        }
    }
    found
}

fn hostile(name: &str) -> (String, Vec<String>, Verdict) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hostile")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let tests = text
        .lines()
        .filter_map(|l| l.strip_prefix("# test: ").map(String::from))
        .collect();
    let verdict = if text.contains("# expect: passed") {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    (text, tests, verdict)
}

#[test]
fn ten_thousand_jobs_leave_nothing_behind() {
    let fast_hostile = [
        "01_sys_exit_at_load.py",
        "03_os_exit_in_test.py",
        "06_kill_parent.py",
        "09_write_result_fds.py",
        "12_replace_builtins.py",
        "16_always_true_eq.py",
        "24_write_outside_dir.py",
        "28_fork_bomb.py",
        "29_fork_bomb_in_test.py",
        "34_memory_bomb.py",
        "35_memory_bomb_in_test.py",
        "45_thread_keeps_running.py",
        "49_abort.py",
        "50_network_inet.py",
        "62_fd_exhaustion.py",
        "46_thread_exits_process.py",
        "10_close_all_fds.py",
        "41_stdout_flood_correct.py",
        "67_segfault_c_stack.py",
    ];
    let hostile: Vec<_> = fast_hostile.iter().map(|n| hostile(n)).collect();
    let limits = Limits {
        test_timeout: Duration::from_secs(2),
        job_timeout: Duration::from_secs(20),
        memory_bytes: 512 << 20,
        output_bytes: 4096,
    };
    let mut jobs = Vec::new();
    let mut expect = Vec::new();
    for i in 0..10_000usize {
        let (program, tests, verdict) = if i % 2500 == 1 {
            (
                "def f():\n    while True:\n        pass\n".to_string(),
                vec!["assert f() == 1".to_string()],
                Verdict::Failed,
            )
        } else if i % 40 == 7 {
            hostile[(i / 40) % hostile.len()].clone()
        } else if i % 10 == 3 {
            (
                format!("def f(x):\n    return x + {}\n", 2),
                vec![format!("assert f({i}) == {}", i + 1)],
                Verdict::Failed,
            )
        } else {
            (
                "def f(x):\n    print(x)\n    return x + 1\n".to_string(),
                vec![
                    "assert f(1) == 2".to_string(),
                    format!("assert f({i}) == {}", i + 1),
                ],
                Verdict::Passed,
            )
        };
        jobs.push(Job {
            program,
            setup: None,
            setup_placement: SetupPlacement::AfterProgram,
            tests,
            limits: limits.clone(),
            comparison: Comparison::Strict,
        });
        expect.push(verdict);
    }
    let pool = Pool::new(PoolConfig {
        workers: 2,
        uid_base: UID_BASE,
        ..PoolConfig::default()
    })
    .expect("full isolation");
    let temp: PathBuf = pool.temp_dir().to_path_buf();
    let start = Instant::now();
    let mut wrong = Vec::new();
    let mut errors = Vec::new();
    pool.run_many(&jobs, |i, r| match r {
        Ok(r) if r.verdict == expect[i] => {}
        Ok(r) => wrong.push(format!("job {i}: {:?} {:?}", r.verdict, r.load_error)),
        Err(e) => errors.push(format!("job {i}: {e}")),
    });
    let took = start.elapsed();
    println!(
        "10,000 jobs in {:.1} s ({:.0} jobs/s)",
        took.as_secs_f64(),
        1e4 / took.as_secs_f64()
    );
    assert!(errors.is_empty(), "executor errors: {errors:?}");
    assert!(wrong.is_empty(), "wrong verdicts: {wrong:?}");
    // No job process of this pool's uids survives.
    let left = processes_of_uids(UID_BASE, UID_BASE + 2);
    assert!(left.is_empty(), "leftover job processes: {left:?}");
    // No job directory survives, seen from inside each worker's mount namespace (its private
    // tmpfs) and from the host.
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    for (pid, w) in pids.iter().zip(0..) {
        for wdir in [0, 1] {
            let inside = PathBuf::from(format!("/proc/{pid}/root"))
                .join(temp.strip_prefix("/").unwrap())
                .join(format!("w{wdir}"));
            if let Ok(rd) = std::fs::read_dir(&inside) {
                let entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
                assert!(entries.is_empty(), "worker {w}: leftover {entries:?}");
            }
        }
    }
    for wdir in std::fs::read_dir(&temp).unwrap().flatten() {
        let entries: Vec<_> = std::fs::read_dir(wdir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(entries.is_empty(), "leftover on the host: {entries:?}");
    }
    drop(pool);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} still running after drop"
        );
    }
    assert!(!temp.exists(), "{} not removed", temp.display());
    assert!(processes_of_uids(UID_BASE, UID_BASE + 2).is_empty());
}
