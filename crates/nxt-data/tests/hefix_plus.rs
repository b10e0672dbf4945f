//! HeFix+ over the real data: expected outputs from HumanEval+'s canonical solutions, every
//! reference passes the EvalPlus-style tests, every HumanEvalFix buggy program fails them.

mod common;

use nxt_data::benchmarks::hefix_plus_tasks;
use nxt_data::evalplus::{expected_outputs, TaskExpected};
use nxt_data::loaders::{load_evalplus, load_humanevalfix};
use nxt_data::registry::{locate, sha256_file};
use nxt_data::{grade_many, Executor, GradeResult};

#[test]
fn hefix_plus_references_pass_and_buggy_programs_fail() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let pool = common::pool();
    let plus_path = locate(&dir, "humaneval+").unwrap();
    let plus = load_evalplus(&plus_path).unwrap();
    let fix = load_humanevalfix(&locate(&dir, "humanevalfix").unwrap()).unwrap();
    // Cached across runs in the target dir (first run: about a minute on 2 cores).
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nxt-data-cache");
    let sha = sha256_file(&plus_path).unwrap();
    let t0 = std::time::Instant::now();
    let expected = expected_outputs(Some(pool as &dyn Executor), &plus, &sha, &cache).unwrap();
    eprintln!("expected outputs computed in {:?}", t0.elapsed());
    let failed: Vec<_> = expected
        .iter()
        .filter_map(|(k, v)| match v {
            TaskExpected::Failed(m) => Some(format!("{k}: {m}")),
            _ => None,
        })
        .collect();
    assert!(failed.is_empty(), "canonical solutions raising: {failed:?}");
    // The cache now answers without an executor.
    let again = expected_outputs::<dyn Executor>(None, &plus, &sha, &cache).unwrap();
    assert_eq!(again, expected);

    let tasks = hefix_plus_tasks(&fix, &plus, &expected).unwrap();
    assert_eq!(tasks.len(), 164);
    assert!(tasks.iter().all(|t| !t.prompt_tests.tests.is_empty()));
    let total_tests: usize = tasks.iter().map(|t| t.grading_tests.tests.len()).sum();
    eprintln!("{} grading tests in total", total_tests);

    let refs: Vec<_> = tasks
        .iter()
        .map(|t| (t, t.reference.as_deref().unwrap()))
        .collect();
    let mut ref_res: Vec<Option<GradeResult>> = vec![None; refs.len()];
    grade_many(pool, &refs, &mut |i, r| ref_res[i] = Some(r.unwrap()));
    let ref_fail: Vec<_> = ref_res
        .iter()
        .zip(&tasks)
        .filter(|(r, _)| !r.as_ref().unwrap().passed)
        .map(|(r, t)| format!("{}: {}", t.id, r.as_ref().unwrap().reason()))
        .collect();
    assert!(ref_fail.is_empty(), "references failing: {ref_fail:?}");

    let bugs: Vec<_> = tasks
        .iter()
        .map(|t| (t, t.buggy_program.as_str()))
        .collect();
    let mut bug_res: Vec<Option<GradeResult>> = vec![None; bugs.len()];
    grade_many(pool, &bugs, &mut |i, r| bug_res[i] = Some(r.unwrap()));
    let bug_pass: Vec<_> = bug_res
        .iter()
        .zip(&tasks)
        .filter(|(r, _)| r.as_ref().unwrap().passed)
        .map(|(_, t)| t.id.clone())
        .collect();
    assert!(bug_pass.is_empty(), "buggy programs passing: {bug_pass:?}");
    eprintln!("hefix+ check done in {:?}", t0.elapsed());
}
