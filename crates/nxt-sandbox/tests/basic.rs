//! Basic behaviour of the pool: verdicts, outcomes, setup placement, drivers.

use std::sync::OnceLock;
use std::time::Duration;

use nxt_sandbox::{
    Comparison, DriverJob, Job, Limits, Pool, PoolConfig, SetupPlacement, TestOutcome, Verdict,
};

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        Pool::new(PoolConfig {
            workers: 2,
            ..PoolConfig::default()
        })
        .expect("pool starts with full isolation")
    })
}

fn job(program: &str, tests: &[&str]) -> Job {
    Job {
        program: program.into(),
        setup: None,
        setup_placement: SetupPlacement::AfterProgram,
        tests: tests.iter().map(|s| s.to_string()).collect(),
        limits: Limits {
            test_timeout: Duration::from_secs(3),
            job_timeout: Duration::from_secs(20),
            ..Limits::default()
        },
        comparison: Comparison::Strict,
    }
}

/// Kills a process the pool spawned. The listed pid waits for the process proper (PID 1 of
/// its namespace, its child): that one goes first, so it is gone for sure before the next job.
fn kill_tree(pid: u32) {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    for c in children.split_whitespace() {
        // SAFETY: plain kill(2) of our own grandchild.
        assert_eq!(unsafe { libc::kill(c.parse().unwrap(), libc::SIGKILL) }, 0);
    }
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

#[test]
fn isolation_is_complete() {
    let r = pool().isolation_report();
    println!("{r}");
    assert!(r.complete(), "{r}");
}

#[test]
fn pass_fail_error_outcomes() {
    let r = pool()
        .run(&job(
            "def add(a, b):\n    return a + b\n",
            &[
                "assert add(1, 2) == 3",
                "assert add(1, 2) == 4, 'wrong'",
                "assert add(1, 'x') == 3",
                "print('hi'); assert add(2, 2) == 4",
            ],
        ))
        .unwrap();
    assert_eq!(r.verdict, Verdict::Failed);
    assert_eq!(r.tests[0].outcome, TestOutcome::Passed);
    assert_eq!(
        r.tests[1].outcome,
        TestOutcome::Failed {
            message: "wrong".into()
        }
    );
    match &r.tests[2].outcome {
        TestOutcome::Error { exc_type, line, .. } => {
            assert_eq!(exc_type, "TypeError");
            assert_eq!(*line, Some(2));
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(r.tests[3].outcome, TestOutcome::Passed);
    assert_eq!(r.tests[3].stdout, "hi\n");
}

#[test]
fn all_pass_is_passed() {
    let r = pool()
        .run(&job(
            "def f(x):\n    return [x, x]\n",
            &["assert f(1) == [1, 1]"],
        ))
        .unwrap();
    assert_eq!(r.verdict, Verdict::Passed, "{r:?}");
}

#[test]
fn setup_placement() {
    let mut j = job("class A:\n    pass\n", &["assert isinstance(make(), A)"]);
    j.setup = Some("def make():\n    return A()\n".into());
    assert_eq!(pool().run(&j).unwrap().verdict, Verdict::Passed);
    j.setup = Some("x = A()\ndef make():\n    return x\n".into());
    j.setup_placement = SetupPlacement::BeforeProgram;
    let r = pool().run(&j).unwrap();
    assert!(
        matches!(r.load_error, Some(TestOutcome::Error { .. })),
        "{r:?}"
    );
    assert_eq!(r.tests[0].outcome, TestOutcome::NotRun);
}

#[test]
fn timeout_then_resume() {
    let r = pool()
        .run(&job(
            "def f(n):\n    while n:\n        pass\n    return 1\n",
            &["assert f(1) == 1", "assert f(0) == 1"],
        ))
        .unwrap();
    assert_eq!(r.tests[0].outcome, TestOutcome::Timeout);
    assert_eq!(r.tests[1].outcome, TestOutcome::Passed);
}

#[test]
fn strict_vs_plain() {
    let prog = "class T:\n    def __eq__(self, o):\n        return True\ndef f():\n    return T()\ndef g():\n    return 1.0\n";
    let mut j = job(
        prog,
        &[
            "assert f() == 3",
            "assert g() == 1",
            "assert not (f() != 3)",
        ],
    );
    let r = pool().run(&j).unwrap();
    assert!(matches!(r.tests[0].outcome, TestOutcome::Failed { .. }));
    assert_eq!(r.tests[1].outcome, TestOutcome::Passed);
    assert!(matches!(r.tests[2].outcome, TestOutcome::Failed { .. }));
    j.comparison = Comparison::Plain;
    let r = pool().run(&j).unwrap();
    assert_eq!(r.tests[0].outcome, TestOutcome::Passed);
}

#[test]
fn large_programs_compile_in_the_child() {
    // Over 64 KiB: not sent to the compiler, compiled by the job's child under its limits.
    let padding = "# padding line to make the program large\n".repeat(2000);
    let program = format!("{padding}def f(x):\n    return x + 1\n");
    assert!(program.len() > 64 << 10);
    let r = pool()
        .run(&job(&program, &["assert f(1) == 2", "assert f(1) == 3"]))
        .unwrap();
    assert_eq!(r.tests[0].outcome, TestOutcome::Passed);
    assert!(matches!(r.tests[1].outcome, TestOutcome::Failed { .. }));
    let broken = format!("{padding}def f(x:\n");
    let r = pool().run(&job(&broken, &["assert f(1) == 2"])).unwrap();
    assert!(
        matches!(&r.load_error, Some(TestOutcome::Error { exc_type, .. }) if exc_type == "SyntaxError"),
        "{r:?}"
    );
}

#[test]
fn compile_errors_and_warnings_reach_the_result() {
    let r = pool()
        .run(&job("def f(:\n    pass\n", &["assert f() is None"]))
        .unwrap();
    assert!(
        matches!(&r.load_error, Some(TestOutcome::Error { exc_type, .. }) if exc_type == "SyntaxError"),
        "{r:?}"
    );
    assert_eq!(r.tests[0].outcome, TestOutcome::NotRun);
    // The syntax error carries its program line (it used to be null), and the message is
    // worded as Python words it.
    let r = pool()
        .run(&job(
            "import math\n\ndef f(x)\n    return x\n",
            &["assert f(1) == 1"],
        ))
        .unwrap();
    match &r.load_error {
        Some(TestOutcome::Error {
            exc_type,
            message,
            line,
        }) => {
            assert_eq!(exc_type, "SyntaxError");
            assert_eq!(*line, Some(3), "{r:?}");
            assert!(message.ends_with("(<program>, line 3)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Tests are numbered from 1 in their file names, as `nxt exec` numbers them.
    let r = pool()
        .run(&job("x = 1\n", &["assert x == 1", "assert (x"]))
        .unwrap();
    match &r.tests[1].outcome {
        TestOutcome::Error { message, .. } => assert!(message.contains("<test 2>"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A warning raised while compiling the program is the program's stderr.
    let r = pool()
        .run(&job(
            "def f():\n    return 1 is 1\n",
            &["assert f()", "assert (", "assert f() == 1"],
        ))
        .unwrap();
    assert!(r.load_stderr.contains("SyntaxWarning"), "{r:?}");
    assert_eq!(r.tests[0].outcome, TestOutcome::Passed);
    assert!(
        matches!(&r.tests[1].outcome, TestOutcome::Error { exc_type, .. } if exc_type == "SyntaxError"),
        "{r:?}"
    );
    assert_eq!(r.tests[2].outcome, TestOutcome::Passed);
}

#[test]
fn a_dead_compiler_is_survived() {
    let pool = Pool::new(PoolConfig {
        workers: 1,
        uid_base: 63_400,
        ..PoolConfig::default()
    })
    .unwrap();
    let before = pool.compiler_pids();
    assert_eq!(before.len(), 1);
    kill_tree(before[0]);
    let r = pool
        .run(&job(
            "def f():\n    return 1\n",
            &["assert f() == 1", "assert f() == 2"],
        ))
        .expect("the job runs, compiled by its own child");
    assert_eq!(r.tests[0].outcome, TestOutcome::Passed);
    assert!(matches!(r.tests[1].outcome, TestOutcome::Failed { .. }));
    let after = pool.compiler_pids();
    assert_eq!(after.len(), 1, "the worker was replaced with a compiler");
    assert_ne!(after[0], before[0]);
}

#[test]
fn driver_roundtrip() {
    let d = DriverJob {
        driver: "data = nxt_payload()\nprint('working')\nnxt_emit(data[::-1])\n".into(),
        payload: b"abc".to_vec(),
        limits: Limits::default(),
        max_emit_bytes: 1000,
    };
    let r = pool().run_driver(&d).unwrap();
    assert_eq!(r.outcome, TestOutcome::Passed);
    assert_eq!(r.emitted.as_deref(), Some(&b"cba"[..]));
    assert_eq!(r.stdout, "working\n");
}

#[test]
fn a_dead_worker_is_replaced_transparently() {
    let pool = Pool::new(PoolConfig {
        workers: 1,
        uid_base: 63_300,
        ..PoolConfig::default()
    })
    .unwrap();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 1);
    kill_tree(pids[0]);
    let r = pool
        .run(&job("def f():\n    return 1\n", &["assert f() == 1"]))
        .expect("the job runs on a fresh worker");
    assert_eq!(r.verdict, Verdict::Passed);
    let now = pool.worker_pids();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], pids[0]);
}
