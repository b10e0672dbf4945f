use nxt_data::*;
fn main() {
    let dir = std::path::PathBuf::from("/work/shared/data");
    let pool = default_pool(true).unwrap();
    let tasks = load_benchmark_with("hefix+", &dir, Some(&pool)).unwrap();
    let ids: Vec<String> = std::env::args().skip(1).collect();
    for t in tasks
        .iter()
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
    {
        let t0 = std::time::Instant::now();
        let r = grade(&pool, t, t.reference.as_deref().unwrap()).unwrap();
        let d1 = t0.elapsed();
        let t1 = std::time::Instant::now();
        let b = grade(&pool, t, &t.buggy_program).unwrap();
        println!(
            "{} tests={} ref={} {:?} buggy={} {:?} {}",
            t.id,
            t.grading_tests.tests.len(),
            r.passed,
            d1,
            b.passed,
            t1.elapsed(),
            b.reason().chars().take(100).collect::<String>()
        );
    }
}
