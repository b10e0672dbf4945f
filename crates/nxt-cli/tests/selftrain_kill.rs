//! `nxt selftrain` survives kill -9: the same command killed with SIGKILL in the middle of three
//! different stages (the warm start's training, the hard stage's sampling and grading, and an
//! iteration's sampling from its fine-tuned model), rerun each time, ends with the same records
//! (every stage's result, every stored sample and verdict, every adapter's weights) as a run that
//! was never interrupted.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nxt_sandbox::test_support::{skip, SANDBOX};
use nxt_sandbox::{Pool, PoolConfig};
use nxt_selftrain::results::fingerprint;

use common::tmpdir;

/// The smallest whole run (about 34 training tasks, 2 iterations), shared with the loop's
/// own tests.
const CONFIG: &str = include_str!("../../../examples/toy-selftrain-smoke.toml");

fn selftrain(config: &Path, run_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nxt"));
    c.arg("selftrain")
        .arg("--config")
        .arg(config)
        .arg("--run-dir")
        .arg(run_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs to the end and fails the test with the command's stderr when it does not succeed.
fn run_to_end(config: &Path, run_dir: &Path) {
    let out = selftrain(config, run_dir).output().expect("spawn nxt");
    assert!(
        out.status.success(),
        "nxt selftrain in {} failed: {}\n{}",
        run_dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts rows of `table` in a SQLite file opened read-only (0 while it does not exist yet).
fn rows(db: &Path, table: &str) -> u64 {
    if !db.exists() {
        return 0;
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, flags) else {
        return 0;
    };
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .unwrap_or(0)
}

/// Whether the ledger records `stage` as finished.
fn finished(run_dir: &Path, stage: &str) -> bool {
    let db = run_dir.join("selftrain.sqlite");
    if !db.exists() {
        return false;
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, flags) else {
        return false;
    };
    conn.query_row(
        "SELECT count(*) FROM stages WHERE name = ?1",
        [stage],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

fn lines(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count() as u64)
        .unwrap_or(0)
}

/// Starts the run, waits until `in_progress` says the stage is under way, kills it with SIGKILL
/// and checks that the kill landed before the stage finished.
fn kill_during(config: &Path, run_dir: &Path, stage: &str, in_progress: &dyn Fn(&Path) -> bool) {
    let mut child: Child = selftrain(config, run_dir).spawn().expect("spawn nxt");
    let start = Instant::now();
    loop {
        if in_progress(run_dir) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the run ended ({status}) before stage {stage} was under way:\n{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(1200),
            "stage {stage} never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        !finished(run_dir, stage),
        "the kill landed after stage {stage} had finished: nothing was interrupted"
    );
}

#[test]
fn kill_9_in_three_stages_then_rerun_gives_the_same_records() {
    if let Err(e) = Pool::new(PoolConfig::default()) {
        skip(
            SANDBOX,
            &format!("sandbox with full isolation unavailable: {e}"),
        );
        return;
    }
    let dir = tmpdir("kill");
    let config = dir.join("selftrain.toml");
    std::fs::write(&config, CONFIG).expect("config");

    let reference = dir.join("reference");
    let reference_thread = {
        let (config, reference) = (config.clone(), reference.clone());
        std::thread::spawn(move || run_to_end(&config, &reference))
    };

    let killed = dir.join("killed");
    kill_during(&config, &killed, "warm-start", &|d| {
        lines(&d.join("warm-start/metrics.jsonl")) >= 23
    });
    kill_during(&config, &killed, "hard", &|d| {
        rows(&d.join("hard/run.sqlite"), "verdicts") >= 4
    });
    kill_during(&config, &killed, "iter-2/sample", &|d| {
        rows(&d.join("iter-2/sample/run.sqlite"), "verdicts") >= 2
    });
    run_to_end(&config, &killed);
    reference_thread.join().expect("reference run");

    let a = fingerprint(&reference).expect("reference fingerprint");
    let b = fingerprint(&killed).expect("resumed fingerprint");
    assert!(
        a["stages"].get("iter-2/dev").is_some(),
        "the reference run did not reach iteration 2: {}",
        a["stages"]
    );
    assert_eq!(a["stages"], b["stages"], "stage results differ");
    assert_eq!(
        a["stores"], b["stores"],
        "stored samples or verdicts differ"
    );
    assert_eq!(a, b, "weights differ");
    let _ = std::fs::remove_dir_all(dir);
}
