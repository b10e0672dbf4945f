//! Median per-job overhead of the sandbox for a trivial program, one worker, sequential jobs.
//!
//! `cargo run --release -p nxt-sandbox --example overhead -- [jobs]`

use std::time::{Duration, Instant};

use nxt_sandbox::{Comparison, Job, Limits, Pool, PoolConfig, SetupPlacement, Verdict};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let pool = Pool::new(PoolConfig {
        workers: 1,
        ..PoolConfig::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let job = Job {
        program: "def f():\n    return 1\n".into(),
        setup: None,
        setup_placement: SetupPlacement::AfterProgram,
        tests: vec!["assert f() == 1".into()],
        limits: Limits::default(),
        comparison: Comparison::Strict,
    };
    for _ in 0..20 {
        let _ = pool.run(&job);
    }
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = pool.run(&job).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
        times.push(t.elapsed());
        assert_eq!(r.verdict, Verdict::Passed);
    }
    drop(pool);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // CPU time of this process and of every (waited-for) descendant: workers and jobs.
    let cpu = cpu_seconds(libc::RUSAGE_SELF) + cpu_seconds(libc::RUSAGE_CHILDREN);
    println!(
        "trivial job, 1 worker, {n} runs: median {:.2} ms, p10 {:.2} ms, p90 {:.2} ms; \
         CPU (all processes, incl. start-up) {:.2} ms per job",
        ms(times[n / 2]),
        ms(times[n / 10]),
        ms(times[n * 9 / 10]),
        cpu * 1e3 / (n + 20) as f64
    );
}

fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
