//! The batch path of `nxt exec --batch` without the CLI around it: reads a JSON-lines job file
//! (`{"id", "program", "tests": [...], "setup"?, "setup_after"?}`), runs every job through
//! `Pool::run_many` and writes `{"id", "verdict"}` lines. Used by `benches/sandbox/bench.sh`
//! when `USE_EXAMPLE=1`.
//!
//! `cargo run --release -p nxt-sandbox --example batch -- jobs.jsonl out.jsonl [workers] [timeout_s]`

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use nxt_sandbox::{Comparison, Job, Limits, Pool, PoolConfig, SetupPlacement, Verdict};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: batch jobs.jsonl out.jsonl [workers] [timeout_s]");
        std::process::exit(2);
    }
    let workers = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| PoolConfig::default().workers);
    let timeout: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let file = std::fs::File::open(&args[1]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[1]);
        std::process::exit(2)
    });
    let mut ids = Vec::new();
    let mut jobs = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.unwrap_or_default();
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            eprintln!("{}:{}: {e}", args[1], n + 1);
            std::process::exit(2)
        });
        let s = |k: &str| v[k].as_str().map(String::from);
        ids.push(v["id"].clone());
        jobs.push(Job {
            program: s("program").unwrap_or_default(),
            setup: s("setup"),
            setup_placement: if v["setup_after"].as_bool().unwrap_or(false) {
                SetupPlacement::AfterProgram
            } else {
                SetupPlacement::BeforeProgram
            },
            tests: v["tests"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            limits: Limits {
                test_timeout: Duration::from_secs_f64(timeout),
                ..Limits::default()
            },
            comparison: Comparison::Strict,
        });
    }
    let t0 = Instant::now();
    let pool = Pool::new(PoolConfig {
        workers,
        ..PoolConfig::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args[2]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[2]);
        std::process::exit(2)
    }));
    let mut passed = 0;
    pool.run_many(&jobs, |i, r| {
        let verdict = match r {
            Ok(r) if r.verdict == Verdict::Passed => {
                passed += 1;
                "passed".to_string()
            }
            Ok(_) => "failed".to_string(),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"id": ids[i], "verdict": verdict})
        );
    });
    drop(pool);
    let took = t0.elapsed().as_secs_f64();
    let _ = out.flush();
    // CPU of this process and of every waited-for descendant: workers and job processes.
    let cpu = cpu_seconds(libc::RUSAGE_SELF) + cpu_seconds(libc::RUSAGE_CHILDREN);
    let faults = page_faults(libc::RUSAGE_SELF) + page_faults(libc::RUSAGE_CHILDREN);
    println!(
        "{}",
        serde_json::json!({"model": "nxt (Pool::run_many)", "jobs": jobs.len(), "seconds": took,
                           "per_second": jobs.len() as f64 / took, "passed": passed,
                           "cpu_ms_per_job": cpu * 1e3 / jobs.len() as f64,
                           "page_faults_per_job": faults as f64 / jobs.len() as f64,
                           "pool_cpu_ms_per_job":
                               cpu_seconds(libc::RUSAGE_SELF) * 1e3 / jobs.len() as f64})
    );
}

fn page_faults(who: libc::c_int) -> i64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    ru.ru_minflt + ru.ru_majflt
}

fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
