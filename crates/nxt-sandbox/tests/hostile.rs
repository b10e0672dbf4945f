//! The hostile corpus (`tests/hostile/*.py`): every program must get the verdict (and, where
//! its header says so, the outcome) written in its header, and must leave the machine as it
//! was. Header lines: `# expect: passed|failed`, `# outcome: load|<test index> <status>`,
//! `# test: <statement>` (repeatable), `# absent: <path>` (must not exist afterwards),
//! `# canary: <path>` (created before, must survive unchanged), `# truncated: yes`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nxt_sandbox::{
    Comparison, Job, JobResult, Limits, Pool, PoolConfig, SetupPlacement, TestOutcome, Verdict,
};

struct Case {
    file: PathBuf,
    expect: Verdict,
    outcome: Option<(String, String)>,
    tests: Vec<String>,
    absent: Vec<PathBuf>,
    canary: Vec<PathBuf>,
    truncated: bool,
    program: String,
}

fn parse(file: &Path) -> Case {
    let program = std::fs::read_to_string(file).unwrap();
    let mut c = Case {
        file: file.to_path_buf(),
        expect: Verdict::Failed,
        outcome: None,
        tests: vec![],
        absent: vec![],
        canary: vec![],
        truncated: false,
        program: program.clone(),
    };
    let mut saw_expect = false;
    for line in program.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((key, value)) = rest.split_once(": ") else {
            continue;
        };
        match key {
            "expect" => {
                saw_expect = true;
                c.expect = match value {
                    "passed" => Verdict::Passed,
                    "failed" => Verdict::Failed,
                    v => panic!("{}: bad expect {v}", file.display()),
                }
            }
            "outcome" => {
                let (a, b) = value.split_once(' ').unwrap();
                c.outcome = Some((a.to_string(), b.to_string()));
            }
            "test" => c.tests.push(value.to_string()),
            "absent" => c.absent.push(value.into()),
            "canary" => c.canary.push(value.into()),
            "truncated" => c.truncated = value == "yes",
            _ => {}
        }
    }
    assert!(saw_expect, "{}: no expect header", file.display());
    assert!(!c.tests.is_empty(), "{}: no tests", file.display());
    c
}

fn status(o: &TestOutcome) -> &'static str {
    match o {
        TestOutcome::Passed => "passed",
        TestOutcome::Failed { .. } => "failed",
        TestOutcome::Error { .. } => "error",
        TestOutcome::Timeout => "timeout",
        TestOutcome::MemoryExceeded => "memory_exceeded",
        TestOutcome::Crashed { .. } => "crashed",
        TestOutcome::NotRun => "not_run",
    }
}

fn check(c: &Case, r: &JobResult) -> Result<(), String> {
    if r.verdict != c.expect {
        return Err(format!("verdict {:?}, expected {:?}", r.verdict, c.expect));
    }
    if let Some((at, want)) = &c.outcome {
        let got = if at == "load" {
            r.load_error.as_ref().map(status).unwrap_or("none")
        } else {
            let i: usize = at.parse().unwrap();
            status(&r.tests[i].outcome)
        };
        if got != want {
            return Err(format!("outcome at {at}: {got}, expected {want}"));
        }
    }
    if c.truncated && !r.tests.iter().any(|t| t.output_truncated) {
        return Err("output was not flagged as truncated".into());
    }
    for p in &c.absent {
        if p.exists() {
            return Err(format!("{} was created", p.display()));
        }
    }
    for p in &c.canary {
        match std::fs::read_to_string(p) {
            Ok(s) if s == "canary" => {}
            _ => return Err(format!("canary {} was changed or removed", p.display())),
        }
    }
    Ok(())
}

pub fn corpus() -> Vec<(String, Job, Verdict)> {
    load_cases()
        .into_iter()
        .map(|c| {
            let name = c.file.display().to_string();
            (name, job_of(&c), c.expect)
        })
        .collect()
}

fn load_cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    files.iter().map(|f| parse(f)).collect()
}

fn job_of(c: &Case) -> Job {
    Job {
        program: c.program.clone(),
        setup: None,
        setup_placement: SetupPlacement::AfterProgram,
        tests: c.tests.clone(),
        limits: Limits {
            test_timeout: Duration::from_secs(5),
            job_timeout: Duration::from_secs(20),
            memory_bytes: 512 << 20,
            output_bytes: 64 << 10,
        },
        comparison: Comparison::Strict,
    }
}

#[test]
fn hostile_corpus_gets_the_right_verdicts() {
    let cases = load_cases();
    assert!(cases.len() >= 40, "corpus has {} programs", cases.len());
    for c in &cases {
        for p in &c.absent {
            let _ = std::fs::remove_file(p);
        }
        for p in &c.canary {
            std::fs::write(p, "canary").unwrap();
        }
    }
    let pool = Pool::new(PoolConfig {
        workers: 2,
        ..PoolConfig::default()
    })
    .expect("full isolation");
    let jobs: Vec<Job> = cases.iter().map(job_of).collect();
    let mut failures = Vec::new();
    pool.run_many(&jobs, |i, r| {
        let c = &cases[i];
        match r {
            Ok(r) => {
                if let Err(e) = check(c, &r) {
                    failures.push(format!("{}: {e}\n   {:?}", c.file.display(), r));
                }
            }
            Err(e) => failures.push(format!("{}: executor error {e}", c.file.display())),
        }
    });
    for c in &cases {
        for p in &c.canary {
            let _ = std::fs::remove_file(p);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile programs misjudged:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
