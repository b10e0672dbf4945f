//! Correctness on the real benchmark data (read from `NXT_DATA_DIR`, default
//! `<workspace>/../shared/data`): reference solutions pass, HumanEvalFix bugs fail.

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use nxt_sandbox::{
    Comparison, Job, JobResult, Limits, Pool, PoolConfig, SetupPlacement, TestOutcome, Verdict,
};
use serde_json::Value;

/// The benchmark data (see `nxt_sandbox::test_support::data_dir`).
fn data_dir() -> Option<std::path::PathBuf> {
    nxt_sandbox::test_support::data_dir(env!("CARGO_MANIFEST_DIR"), &[])
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(PoolConfig::default()).expect("full isolation"))
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read_gz(p: PathBuf) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("field {k}"))
        .to_string()
}

fn limits() -> Limits {
    Limits {
        test_timeout: Duration::from_secs(20),
        job_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

fn job(program: String, setup: Option<String>, place: SetupPlacement, tests: Vec<String>) -> Job {
    Job {
        program,
        setup,
        setup_placement: place,
        tests,
        limits: limits(),
        comparison: Comparison::Strict,
    }
}

/// Runs all jobs; returns the names whose verdict differs from `want`.
fn run_all(names: &[String], jobs: &[Job], want: Verdict) -> Vec<String> {
    let mut bad = Vec::new();
    pool().run_many(jobs, |i, r: Result<JobResult, _>| match r {
        Ok(r) if r.verdict == want => {}
        Ok(r) => {
            let why = r
                .load_error
                .clone()
                .or_else(|| {
                    r.tests
                        .iter()
                        .find(|t| t.outcome != TestOutcome::Passed)
                        .map(|t| t.outcome.clone())
                })
                .map(|o| format!("{o:?}"))
                .unwrap_or_default();
            bad.push(format!("{}: {:?} {why}", names[i], r.verdict));
        }
        Err(e) => bad.push(format!("{}: executor error {e}", names[i])),
    });
    bad.sort();
    bad
}

#[test]
fn humaneval_canonical_solutions_pass() {
    let Some(dir) = data_dir() else { return };
    let recs = jsonl(&read_gz(dir.join("humaneval/HumanEval.jsonl.gz")));
    assert_eq!(recs.len(), 164);
    let names: Vec<String> = recs.iter().map(|r| s(r, "task_id")).collect();
    let jobs: Vec<Job> = recs
        .iter()
        .map(|r| {
            job(
                s(r, "prompt") + &s(r, "canonical_solution"),
                None,
                SetupPlacement::AfterProgram,
                vec![format!("{}\ncheck({})", s(r, "test"), s(r, "entry_point"))],
            )
        })
        .collect();
    let bad = run_all(&names, &jobs, Verdict::Passed);
    assert!(
        bad.is_empty(),
        "{} failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn mbpp_reference_programs_pass() {
    let Some(dir) = data_dir() else { return };
    let recs = jsonl(&std::fs::read_to_string(dir.join("mbpp/mbpp.jsonl")).unwrap());
    assert_eq!(recs.len(), 974);
    let mut names = Vec::new();
    let mut jobs = Vec::new();
    let mut challenge = 0;
    for r in &recs {
        let id = r["task_id"].to_string();
        let setup = Some(s(r, "test_setup_code")).filter(|x| !x.trim().is_empty());
        let tests: Vec<String> = r["test_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(tests.len(), 3, "task {id}");
        names.push(format!("mbpp/{id}"));
        jobs.push(job(
            s(r, "code"),
            setup.clone(),
            SetupPlacement::AfterProgram,
            tests,
        ));
        let ch: Vec<String> = r["challenge_test_list"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        if !ch.is_empty() {
            challenge += 1;
            names.push(format!("mbpp/{id}/challenge"));
            jobs.push(job(s(r, "code"), setup, SetupPlacement::AfterProgram, ch));
        }
    }
    assert_eq!(challenge, 11);
    let bad = run_all(&names, &jobs, Verdict::Passed);
    assert!(
        bad.is_empty(),
        "{} failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn sanitized_mbpp_passes() {
    let Some(dir) = data_dir() else { return };
    let recs: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("mbpp/sanitized-mbpp.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(recs.len(), 427);
    let names: Vec<String> = recs
        .iter()
        .map(|r| format!("sanitized/{}", r["task_id"]))
        .collect();
    let jobs: Vec<Job> = recs
        .iter()
        .map(|r| {
            let imports: Vec<&str> = r["test_imports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            let tests = r["test_list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            job(
                s(r, "code"),
                Some(imports.join("\n")).filter(|x| !x.is_empty()),
                SetupPlacement::BeforeProgram,
                tests,
            )
        })
        .collect();
    let bad = run_all(&names, &jobs, Verdict::Passed);
    assert!(
        bad.is_empty(),
        "{} failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn humanevalfix_buggy_fail_and_canonical_pass() {
    let Some(dir) = data_dir() else { return };
    let recs = jsonl(
        &std::fs::read_to_string(dir.join("humanevalfix/humanevalpack_python.jsonl")).unwrap(),
    );
    assert_eq!(recs.len(), 164);
    let names: Vec<String> = recs.iter().map(|r| s(r, "task_id")).collect();
    let mk = |field: &str| -> Vec<Job> {
        recs.iter()
            .map(|r| {
                let mut j = job(
                    s(r, "declaration") + &s(r, field),
                    None,
                    SetupPlacement::AfterProgram,
                    vec![format!("{}\ncheck({})", s(r, "test"), s(r, "entry_point"))],
                );
                // The 3 buggy programs that loop forever are cut at 3 s.
                j.limits.test_timeout = Duration::from_secs(3);
                j
            })
            .collect()
    };
    let bad = run_all(&names, &mk("buggy_solution"), Verdict::Failed);
    assert!(
        bad.is_empty(),
        "buggy programs that passed:\n{}",
        bad.join("\n")
    );
    let bad = run_all(&names, &mk("canonical_solution"), Verdict::Passed);
    assert!(
        bad.is_empty(),
        "{} canonical failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
