//! Build MBPP-R from the seed (or a subset: every Nth candidate) and print the summary.
//! `cargo run --release -p nxt-data --example build_seed -- <data_dir> <out_dir> [step]`
use nxt_data::mbppr::*;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let out = std::path::PathBuf::from(&args[2]);
    let step: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let pool = nxt_data::default_pool(true).expect("pool");
    let mbpp =
        nxt_data::loaders::load_mbpp(&nxt_data::registry::locate(&dir, "mbpp").unwrap()).unwrap();
    let cands: Vec<Candidate> = read_candidates(&dir.join(nxt_data::registry::MBPP_R_SEED))
        .unwrap()
        .into_iter()
        .step_by(step)
        .collect();
    let t0 = std::time::Instant::now();
    let b = build_mbpp_r(
        &pool,
        &mbpp,
        &cands,
        &BuildOptions::default(),
        &mut |d, t| {
            if d % 1000 == 0 {
                eprintln!("{d}/{t} {:?}", t0.elapsed())
            }
        },
    )
    .unwrap();
    write_build(&b, &out).unwrap();
    eprintln!("built in {:?}", t0.elapsed());
    let mut s = b.summary.clone();
    let d = std::mem::take(&mut s.disagreements);
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
    for x in d {
        println!("{}", serde_json::to_string(&x).unwrap());
    }
}
