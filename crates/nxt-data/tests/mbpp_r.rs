//! MBPP-R over the real seed: a deterministic subset (every 40th candidate) is built through
//! the sandbox; splits follow MBPP's task-id ranges, no problem is in two splits, every kept
//! program fails its tests, and our verdicts agree with the file's `passed` field.

mod common;

use std::collections::HashMap;

use nxt_data::mbppr::{build_mbpp_r, load_mbpp_r_dir, read_candidates, write_build, BuildOptions};
use nxt_data::registry::{locate, MBPP_R_SEED};
use nxt_data::{grade_many, loaders::load_mbpp, Split};

#[test]
fn mbpp_r_from_the_seed_subset() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let pool = common::pool();
    let mbpp = load_mbpp(&locate(&dir, "mbpp").unwrap()).unwrap();
    let all = read_candidates(&dir.join(MBPP_R_SEED)).unwrap();
    assert_eq!(all.len(), 15_656);
    let cands: Vec<_> = all.into_iter().step_by(40).collect();
    let build = build_mbpp_r(
        pool,
        &mbpp,
        &cands,
        &BuildOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let s = &build.summary;
    eprintln!(
        "split sizes {:?}, agreement {} / {}",
        s.tasks_per_split, s.agreed, s.compared
    );
    assert_eq!(s.candidates, cands.len());
    // Every candidate is accounted for exactly once.
    assert_eq!(
        s.unknown_task
            + s.syntax_errors
            + s.empty
            + s.duplicates
            + s.passing
            + s.import_artefacts_dropped
            + build.tasks.len(),
        s.candidates
    );
    assert!(build.tasks.len() > 100, "{}", build.tasks.len());
    // Splits by MBPP task id; no problem in two splits.
    let mut split_of: HashMap<String, Split> = HashMap::new();
    for t in &build.tasks {
        let id: u32 = t.meta.source_task_id.parse().unwrap();
        assert_eq!(Some(t.meta.split), Split::of_mbpp_task(id), "{}", t.id);
        assert_eq!(
            *split_of
                .entry(t.meta.source_task_id.clone())
                .or_insert(t.meta.split),
            t.meta.split
        );
        assert!(t.id.starts_with(&format!("mbpp-r/{id}/")));
        assert!(!t.buggy_program.trim().is_empty());
    }
    assert_eq!(build.tasks.len(), s.tasks_per_split.values().sum::<usize>());
    // Our verdicts agree with the seed's `passed` (disagreements are listed and must be rare:
    // see docs/BENCHMARKS.md for the full-seed figure and their causes).
    assert_eq!(s.compared, cands.len());
    assert!(
        s.agreed * 100 >= s.compared * 99,
        "{} / {} agree: {:?}",
        s.agreed,
        s.compared,
        s.disagreements
    );
    // Every kept buggy program fails when graded again; the references pass.
    let items: Vec<_> = build
        .tasks
        .iter()
        .map(|t| (t, t.buggy_program.as_str()))
        .collect();
    let mut passed = 0;
    grade_many(pool, &items, &mut |_, r| {
        passed += r.unwrap().passed as usize
    });
    assert_eq!(passed, 0);
    // Round trip through the directory layout.
    let out = tempfile::tempdir().unwrap();
    write_build(&build, out.path()).unwrap();
    // (The directory is read split by split, so compare in id order.)
    let mut back = load_mbpp_r_dir(out.path()).unwrap();
    let mut want = build.tasks.clone();
    back.sort_by(|a, b| a.id.cmp(&b.id));
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(
        back == want,
        "tasks changed in the round trip through {}",
        out.path().display()
    );
}
