//! The repair-task model shared by every benchmark.

use nxt_sandbox::{Comparison, Job, Limits, SetupPlacement};
use serde::{Deserialize, Serialize};

/// The dataset a task was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceDataset {
    /// MBPP (full release, 974 problems).
    Mbpp,
    /// MBPP sanitized (427 problems).
    MbppSanitized,
    /// HumanEval (164 problems).
    HumanEval,
    /// HumanEvalFix (HumanEvalPack, Python).
    HumanEvalFix,
    /// HumanEval+ (EvalPlus).
    HumanEvalPlus,
    /// MBPP+ (EvalPlus).
    MbppPlus,
    /// The generated toy repair benchmark of the CPU self-training demo (`nxt-selftrain`'s
    /// `toy` module); `source_task_id` is `<template>/<instance>`.
    Toy,
}

impl SourceDataset {
    /// Short name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SourceDataset::Mbpp => "mbpp",
            SourceDataset::MbppSanitized => "mbpp-sanitized",
            SourceDataset::HumanEval => "humaneval",
            SourceDataset::HumanEvalFix => "humanevalfix",
            SourceDataset::HumanEvalPlus => "humaneval+",
            SourceDataset::MbppPlus => "mbpp+",
            SourceDataset::Toy => "toy",
        }
    }
}

/// Split of a task. MBPP's own task-id ranges define the MBPP splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// MBPP 601-974.
    Train,
    /// MBPP 511-600.
    Validation,
    /// MBPP 11-510, and every evaluation-only benchmark (HumanEval, HeFix+).
    Test,
    /// MBPP 1-10 (the few-shot prompt problems).
    FewShot,
}

impl Split {
    /// The split MBPP assigns to a task id (1-974), or `None` outside that range.
    pub fn of_mbpp_task(task_id: u32) -> Option<Split> {
        match task_id {
            1..=10 => Some(Split::FewShot),
            11..=510 => Some(Split::Test),
            511..=600 => Some(Split::Validation),
            601..=974 => Some(Split::Train),
            _ => None,
        }
    }

    /// Name as written in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::FewShot => "few-shot",
        }
    }

    /// Parse a split name (`train`, `validation`/`dev`, `test`, `few-shot`/`prompt`).
    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "validation" | "dev" | "valid" => Some(Split::Validation),
            "test" => Some(Split::Test),
            "few-shot" | "fewshot" | "prompt" => Some(Split::FewShot),
            _ => None,
        }
    }

    /// All splits, in a stable order.
    pub const ALL: [Split; 4] = [Split::Train, Split::Validation, Split::Test, Split::FewShot];
}

/// A set of test statements plus what they need to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestSuite {
    /// Setup code (imports, helper classes, the grading helper of EvalPlus-style suites).
    pub setup: Option<String>,
    /// Where the setup runs relative to the program (MBPP 367 and 927 need `AfterProgram`).
    pub setup_placement: SetupPlacement,
    /// Test statements, each one a (possibly multi-line) Python statement.
    pub tests: Vec<String>,
    /// How `==` in `assert` statements is judged.
    pub comparison: Comparison,
}

impl TestSuite {
    /// A suite of plain `assert` statements with no setup.
    pub fn plain(tests: Vec<String>) -> TestSuite {
        TestSuite {
            setup: None,
            setup_placement: SetupPlacement::AfterProgram,
            tests,
            comparison: Comparison::Plain,
        }
    }

    /// The sandbox job running `program` against this suite.
    pub fn job(&self, program: &str, limits: Limits) -> Job {
        Job {
            program: program.to_string(),
            setup: self.setup.clone(),
            setup_placement: self.setup_placement,
            tests: self.tests.clone(),
            limits,
            comparison: self.comparison,
        }
    }
}

/// Where a task came from and how it is classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMeta {
    /// The dataset the problem comes from.
    pub source_dataset: SourceDataset,
    /// The problem's id in that dataset (e.g. `11` for MBPP, `HumanEval/0`).
    pub source_task_id: String,
    /// Split of the task.
    pub split: Split,
    /// Bug type where known (HumanEvalFix's `bug_type`, e.g. `missing logic`).
    pub bug_type: Option<String>,
    /// Failure symptom where known (HumanEvalFix's `failure_symptoms`).
    pub failure_symptoms: Option<String>,
    /// Who wrote the buggy program (model name), where known.
    pub origin: Option<String>,
    /// Code prompt that a human-eval style `completion` continues (HumanEval prompt), if any.
    pub code_prompt: Option<String>,
}

/// One repair task `(x, y~, T)`: a problem, a buggy program and tests.
///
/// Grading-only benchmarks (`humaneval`, `humaneval+`, `mbpp`, ...) use the same type with an
/// empty `buggy_program`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairTask {
    /// Stable id: `hefix/0`, `mbpp/11`, `humaneval/0`, `mbpp-r/11/0`, ...
    pub id: String,
    /// Natural-language problem statement.
    pub problem: String,
    /// The buggy program (complete source; empty for grading-only benchmarks).
    pub buggy_program: String,
    /// Name of the function under test.
    pub entry_point: String,
    /// Tests shown in the prompt.
    pub prompt_tests: TestSuite,
    /// Tests used for grading (may differ from the prompt tests: HeFix+ grades on EvalPlus tests).
    pub grading_tests: TestSuite,
    /// A reference (correct) solution, complete source, if known.
    pub reference: Option<String>,
    /// Metadata.
    pub meta: TaskMeta,
}

impl RepairTask {
    /// The job grading `program` on this task's grading tests.
    pub fn grading_job(&self, program: &str, limits: Limits) -> Job {
        self.grading_tests.job(program, limits)
    }

    /// The job running `program` on this task's prompt tests.
    pub fn prompt_job(&self, program: &str, limits: Limits) -> Job {
        self.prompt_tests.job(program, limits)
    }
}
