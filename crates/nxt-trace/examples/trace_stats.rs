//! Corpus statistics and throughput of the tracer without the `nxt` binary (same numbers as
//! `nxt trace --stats`). Usage:
//! `cargo run --release -p nxt-trace --example trace_stats -- [corpora,comma,separated] [every]`.

use std::sync::Mutex;
use std::time::Instant;

use nxt_data::registry::resolve_data_dir;
use nxt_trace::survey::{cases, markdown, run_survey, summarize, CORPORA};
use nxt_trace::{CaptureOptions, Pool, PoolConfig, RenderOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let corpora: Vec<String> = match args.first() {
        Some(list) => list.split(',').map(String::from).collect(),
        None => CORPORA.iter().map(|s| s.to_string()).collect(),
    };
    let names: Vec<&str> = corpora.iter().map(String::as_str).collect();
    let every: usize = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|e| format!("bad `every` argument {n:?}: {e}"))?,
        None => 1,
    };
    let all = cases(&resolve_data_dir(None).0, &names, every)?;
    let config = PoolConfig {
        allow_weak_isolation: true,
        ..PoolConfig::default()
    };
    let workers = config.workers;
    let pool = Pool::new(config)?;
    let results = Mutex::new(Vec::new());
    let start = Instant::now();
    run_survey(
        &pool,
        &all,
        &CaptureOptions::default(),
        false,
        workers,
        &|r| {
            results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        },
    );
    let traced = start.elapsed();
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let render_start = Instant::now();
    let stats = summarize(&results, &RenderOptions::default(), None);
    println!("{}", markdown(&stats, "characters"));
    println!(
        "{} traces captured in {:.1}s ({workers} workers); all formats rendered in {:.2}s",
        results.len(),
        traced.as_secs_f64(),
        render_start.elapsed().as_secs_f64()
    );
    Ok(())
}
