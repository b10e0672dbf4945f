//! The repair step: find the failing test, trace the buggy program on it, render the trace,
//! build the prompt, generate, parse and grade.

use nxt_data::{grading_limits, GradeResult, RepairTask};
use nxt_llm::{Completion, GenerationRequest, Generator, LlmError, Prompt, SamplingParams};
use nxt_sandbox::{Pool, SandboxError, TestOutcome};
use nxt_trace::{CaptureOptions, Format, RenderOptions, TraceRequest};
use serde::{Deserialize, Serialize};

use crate::parse::{parse_completion, ParsedCompletion};
use crate::prompt::{build_prompt, stop_strings, PromptOptions, PromptTrace};
use crate::store::TaskPrep;

/// Errors of the repair pipeline (a failing program or an unparseable completion is a result,
/// not an error).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The sandbox failed (not the program in it).
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// Generation failed.
    #[error("generation: {0}")]
    Llm(#[from] LlmError),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Bad settings or input.
    #[error("{0}")]
    Invalid(String),
    /// Prompts longer than the model's context (found before sampling; the message names
    /// them and what to change).
    #[error("{0}")]
    PromptsTooLong(String),
    /// Writing a report failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Settings of one repair (shared by `nxt repair` and `nxt eval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairConfig {
    /// Prompt layout, shots and whether to show the trace.
    pub prompt: PromptOptions,
    /// Trace representation shown in the prompt.
    pub trace_format: Format,
    /// Renderer settings (head/tail/budgets).
    pub render: RenderOptions,
    /// Tracer capture budgets.
    pub capture: CaptureOptions,
    /// Sampling settings (`stop` is extended with the layout's stop strings).
    pub sampling: SamplingParams,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            prompt: PromptOptions::default(),
            trace_format: Format::Inline,
            render: RenderOptions::default(),
            capture: CaptureOptions::default(),
            sampling: SamplingParams {
                temperature: 0.8,
                top_p: 0.95,
                max_tokens: 1024,
                ..SamplingParams::default()
            },
        }
    }
}

impl RepairConfig {
    /// Sampling parameters for a request: the configured ones plus the layout's stop strings.
    pub fn sampling_for(&self, temperature: f32, seed: Option<u64>) -> SamplingParams {
        let mut p = self.sampling.clone();
        p.temperature = temperature;
        p.seed = seed;
        for s in stop_strings(self.prompt.layout) {
            if !p.stop.contains(&s) {
                p.stop.push(s);
            }
        }
        p
    }
}

/// Find the first shown test the buggy program fails. Returns its index and text, or None
/// when every shown test passes (then the caller may trace the first test anyway).
pub fn find_failing_test(
    pool: &Pool,
    task: &RepairTask,
) -> Result<Option<(usize, String)>, CoreError> {
    let job = task.prompt_job(&task.buggy_program, grading_limits());
    let res = pool.run(&job)?;
    if res.load_error.is_some() {
        // The program does not even load: any test shows that; trace the first.
        return Ok(task.prompt_tests.tests.first().map(|t| (0, t.clone())));
    }
    Ok(res
        .tests
        .iter()
        .position(|t| t.outcome != TestOutcome::Passed)
        .and_then(|i| task.prompt_tests.tests.get(i).map(|t| (i, t.clone()))))
}

/// Prepare a task: find its failing test and, when `cfg.prompt.with_trace`, trace and render
/// the buggy program on it. Tracing problems are recorded in the note, not raised: the prompt
/// then says no trace is available.
pub fn prepare(pool: &Pool, task: &RepairTask, cfg: &RepairConfig) -> Result<TaskPrep, CoreError> {
    let failing = find_failing_test(pool, task)?;
    let (test, mut note) = match failing {
        Some((_, t)) => (Some(t), None),
        None => (
            task.prompt_tests.tests.first().cloned(),
            Some("no shown test fails; traced on the first test".to_string()),
        ),
    };
    if !cfg.prompt.with_trace {
        return Ok(TaskPrep {
            failing_test: test,
            trace: None,
            note,
        });
    }
    let Some(test_text) = test.clone() else {
        return Ok(TaskPrep {
            failing_test: None,
            trace: None,
            note: Some("the task has no shown tests".into()),
        });
    };
    let req = TraceRequest {
        program: task.buggy_program.clone(),
        test: test_text,
        setup: task.prompt_tests.setup.clone(),
        setup_placement: task.prompt_tests.setup_placement,
        capture: cfg.capture.clone(),
        memory_bytes: grading_limits().memory_bytes,
    };
    match nxt_trace::trace(pool, &req) {
        Ok(t) => {
            let text = nxt_trace::render(&t, cfg.trace_format, &cfg.render);
            Ok(TaskPrep {
                failing_test: test,
                trace: Some(text),
                note,
            })
        }
        Err(nxt_trace::TraceError::Sandbox(e)) => Err(e.into()),
        Err(e) => {
            note = Some(format!("tracing failed: {e}"));
            Ok(TaskPrep {
                failing_test: test,
                trace: None,
                note,
            })
        }
    }
}

/// The prompt of a prepared task.
pub fn prompt_for(task: &RepairTask, prep: &TaskPrep, cfg: &RepairConfig) -> Prompt {
    let trace = match (&prep.failing_test, &prep.trace) {
        (Some(test), Some(text)) => Some(PromptTrace {
            test: test.clone(),
            text: text.clone(),
        }),
        _ => None,
    };
    build_prompt(task, trace.as_ref(), &cfg.prompt)
}

/// Parse a completion for a task.
pub fn parse_for(task: &RepairTask, text: &str) -> ParsedCompletion {
    let ep = (!task.entry_point.is_empty()).then_some(task.entry_point.as_str());
    parse_completion(text, ep, &task.buggy_program)
}

/// Grade several programs of one or more tasks in parallel through the pool
/// ([`nxt_data::grade_many`]); `on_done(i, r)` is called as each finishes.
pub fn grade_programs(
    pool: &Pool,
    items: &[(&RepairTask, &str)],
    on_done: &mut dyn FnMut(usize, Result<GradeResult, CoreError>),
) {
    nxt_data::grade_many(pool, items, &mut |i, r| {
        on_done(
            i,
            r.map_err(|e| match e {
                nxt_data::DataError::Sandbox(e) => CoreError::Sandbox(e),
                other => CoreError::Invalid(other.to_string()),
            }),
        );
    });
}

/// One graded sample of `nxt repair`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleOutcome {
    /// The completion.
    pub completion: Completion,
    /// Its parse.
    pub parsed: ParsedCompletion,
    /// Its verdict (None when unparseable: a failure).
    pub grade: Option<GradeResult>,
}

impl SampleOutcome {
    /// Whether the fix passed every grading test.
    pub fn passed(&self) -> bool {
        self.grade.as_ref().is_some_and(|g| g.passed)
    }
}

/// Everything `nxt repair` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairOutcome {
    /// Failing test and trace.
    pub prep: TaskPrep,
    /// The prompt sent.
    pub prompt: Prompt,
    /// The samples, parsed and graded.
    pub samples: Vec<SampleOutcome>,
}

/// Repair one task end to end: `n` samples at `temperature` (0 = greedy).
pub fn repair_task(
    pool: &Pool,
    generator: &dyn Generator,
    task: &RepairTask,
    cfg: &RepairConfig,
    n: usize,
    temperature: f32,
) -> Result<RepairOutcome, CoreError> {
    let prep = prepare(pool, task, cfg)?;
    let prompt = prompt_for(task, &prep, cfg);
    let req = GenerationRequest {
        prompt: prompt.clone(),
        n,
        params: cfg.sampling_for(temperature, cfg.sampling.seed),
    };
    let completions = generator.generate(&req)?;
    let parsed: Vec<ParsedCompletion> = completions
        .iter()
        .map(|c| parse_for(task, &c.text))
        .collect();
    let programs: Vec<(usize, &str)> = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.program.as_deref().map(|prog| (i, prog)))
        .collect();
    let items: Vec<(&RepairTask, &str)> = programs.iter().map(|(_, p)| (task, *p)).collect();
    let mut grades: Vec<Option<GradeResult>> = vec![None; completions.len()];
    let mut first_err = None;
    grade_programs(pool, &items, &mut |i, r| match r {
        Ok(g) => grades[programs[i].0] = Some(g),
        Err(e) => {
            first_err.get_or_insert(e);
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    let samples = completions
        .into_iter()
        .zip(parsed)
        .zip(grades)
        .map(|((completion, parsed), grade)| SampleOutcome {
            completion,
            parsed,
            grade,
        })
        .collect();
    Ok(RepairOutcome {
        prep,
        prompt,
        samples,
    })
}
