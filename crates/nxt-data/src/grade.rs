//! Grading a program on a task's grading tests.

use std::time::Duration;

use nxt_sandbox::{JobResult, TestOutcome, Verdict};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::exec::{grading_limits, Executor};
use crate::task::RepairTask;

/// The first test that did not pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Index of the test in the grading suite.
    pub index: usize,
    /// The test statement (truncated to 500 characters).
    pub test: String,
    /// What happened.
    pub outcome: TestOutcome,
}

/// Verdict of one program on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeResult {
    /// Every grading test passed.
    pub passed: bool,
    /// Number of tests that passed.
    pub tests_passed: usize,
    /// Number of grading tests.
    pub tests_total: usize,
    /// Set when the program (or setup) failed before any test ran.
    pub load_error: Option<TestOutcome>,
    /// First failing test, if any.
    pub first_failure: Option<Failure>,
    /// Wall time of the job.
    pub duration: Duration,
}

impl GradeResult {
    /// Summarise a sandbox result for `task`.
    pub fn from_job(task: &RepairTask, res: &JobResult) -> GradeResult {
        let tests = &task.grading_tests.tests;
        let tests_passed = res
            .tests
            .iter()
            .filter(|t| t.outcome == TestOutcome::Passed)
            .count();
        let first_failure = res
            .tests
            .iter()
            .enumerate()
            .find(|(_, t)| t.outcome != TestOutcome::Passed)
            .map(|(i, t)| Failure {
                index: i,
                test: tests
                    .get(i)
                    .map(|s| s.chars().take(500).collect())
                    .unwrap_or_default(),
                outcome: t.outcome.clone(),
            });
        let passed = res.verdict == Verdict::Passed
            && res.load_error.is_none()
            && tests_passed == tests.len()
            && res.tests.len() == tests.len();
        GradeResult {
            passed,
            tests_passed,
            tests_total: tests.len(),
            load_error: res.load_error.clone(),
            first_failure,
            duration: res.duration,
        }
    }

    /// One-line description of why it failed (empty when it passed).
    pub fn reason(&self) -> String {
        if self.passed {
            return String::new();
        }
        if let Some(e) = &self.load_error {
            return format!("program failed to load: {}", outcome_text(e));
        }
        match &self.first_failure {
            Some(f) => format!(
                "test {} {}: {}",
                f.index,
                outcome_text(&f.outcome),
                f.test.lines().next().unwrap_or("")
            ),
            None => "failed".into(),
        }
    }
}

/// Short text for a test outcome.
pub fn outcome_text(o: &TestOutcome) -> String {
    match o {
        TestOutcome::Passed => "passed".into(),
        TestOutcome::Failed { message } if message.is_empty() => "AssertionError".into(),
        TestOutcome::Failed { message } => format!(
            "AssertionError: {}",
            message.chars().take(200).collect::<String>()
        ),
        TestOutcome::Error {
            exc_type, message, ..
        } => {
            format!(
                "{exc_type}: {}",
                message.chars().take(200).collect::<String>()
            )
        }
        TestOutcome::Timeout => "timeout".into(),
        TestOutcome::MemoryExceeded => "memory limit exceeded".into(),
        TestOutcome::Crashed { signal } => format!("crashed (signal {signal})"),
        TestOutcome::NotRun => "not run".into(),
    }
}

/// Run `program` on `task`'s grading tests with [`grading_limits`].
pub fn grade<E: Executor + ?Sized>(
    exec: &E,
    task: &RepairTask,
    program: &str,
) -> Result<GradeResult> {
    let res = exec.run_job(&task.grading_job(program, grading_limits()))?;
    Ok(GradeResult::from_job(task, &res))
}

/// Grade many `(task, program)` pairs in parallel; `on_done(index, result)` is called as each
/// finishes (in any order).
pub fn grade_many<E: Executor + ?Sized>(
    exec: &E,
    items: &[(&RepairTask, &str)],
    on_done: &mut dyn FnMut(usize, Result<GradeResult>),
) {
    let jobs: Vec<_> = items
        .iter()
        .map(|(t, p)| t.grading_job(p, grading_limits()))
        .collect();
    exec.run_jobs(&jobs, &mut |i, r| {
        let out = match r {
            Ok(res) => Ok(GradeResult::from_job(items[i].0, &res)),
            Err(e) => Err(e.into()),
        };
        on_done(i, out);
    });
}
