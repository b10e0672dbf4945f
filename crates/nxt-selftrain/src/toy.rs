//! The toy repair benchmark and tiny model of the CPU self-training demo (a mechanism demo,
//! never a result).
//!
//! * Tasks: 46 small function templates on three skeletons ([`templates::templates`]): a list
//!   filter-accumulate, a range accumulate and a string filter. A template fixes the slot
//!   values its one-sentence specification names in words ("the product of the numbers in xs
//!   that are at least 3" is `acc = 1`, `if x >= 3:`, `acc = acc * x`); an instance varies the
//!   parameter, loop variable and accumulator names, the constant and the test inputs; one bug
//!   changes exactly one slot ([`BugKind`]). Expected values are computed by running the
//!   correct program in the sandbox, never written by hand; a task is kept only when its buggy
//!   program fails at least one of its 3 prompt tests and its reference passes all 10 grading
//!   tests (the prompt tests and 7 more), both checked in the sandbox.
//! * Splits are by template (train/dev/test disjoint), drawn from the seed so that every slot
//!   value of a held-out template occurs in some training template: the skill the demo needs
//!   ("copy the buggy program, correct the one slot the specification contradicts") is
//!   compositional.
//! * Warm start: hand-made repairs of a few training tasks, rationales written from the
//!   templates in the style of the few-shot exemplars (the failing test, the value the trace
//!   shows, the wrong line, why, the fix), as `{"id","prompt","completion"}` where the prompt
//!   is exactly what the sampler sees under [`toy_repair_config`].
//! * Tiny model: a randomly initialised Qwen2-style model whose BPE merges are learned on the
//!   toy prompts and completions of training tasks, line by line, so the constant instruction
//!   and recurring code lines are a few tokens each ([`toy_model_spec`]).
//!
//! [`prepare_toy`] writes all of it into one directory; see its documentation for reuse.

pub mod templates;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nxt_core::prompt::{format_answer, Layout, PromptOptions, RATIONALE_HEADING};
use nxt_core::repair::{prepare, prompt_for, RepairConfig};
use nxt_data::{grading_limits, RepairTask, SourceDataset, Split, TaskMeta, TestSuite};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_llm::{Prompt, SamplingParams};
use nxt_sandbox::{Job, JobResult, Pool, TestOutcome};
use nxt_trace::{Format, RenderOptions};
use serde::{Deserialize, Serialize};

use templates::{draft, observed_in_trace, rationale, Draft, Rng};
pub use templates::{templates, BugKind, Naming, Template, TemplateKind};

/// Errors of the toy's preparation.
#[derive(Debug, thiserror::Error)]
pub enum ToyError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file's JSON could not be read or written.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What was wrong (with line and column where known).
        message: String,
    },
    /// The sandbox failed (not a program in it).
    #[error("sandbox: {0}")]
    Sandbox(#[from] nxt_sandbox::SandboxError),
    /// Preparing a prompt (failing test, trace) failed.
    #[error("preparing {task}: {source}")]
    Prepare {
        /// The task id.
        task: String,
        /// The error.
        #[source]
        source: nxt_core::CoreError,
    },
    /// Writing the tiny model failed.
    #[error("writing the toy model: {0}")]
    Model(#[from] nxt_engine::EngineError),
    /// Loading the written model (to count the warm-start examples' tokens) failed.
    #[error("loading the toy model: {0}")]
    Load(#[from] nxt_llm::LlmError),
    /// The options cannot produce a benchmark.
    #[error("toy options: {0}")]
    Invalid(String),
    /// The output directory holds a toy made with other options.
    #[error(
        "{dir}: holds a toy prepared with other options (`{key}` differs: {existing} there, {requested} asked); use another directory"
    )]
    OptionsChanged {
        /// The directory.
        dir: PathBuf,
        /// The first differing option (dotted path).
        key: String,
        /// Its value in the directory.
        existing: String,
        /// The value asked for.
        requested: String,
    },
}

/// Shape of the toy's tiny model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToyModelShape {
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// BPE merges learned on the toy corpus.
    pub num_merges: usize,
    /// Longest sequence (prompt + completion) in tokens.
    pub max_position_embeddings: usize,
    /// Weight seed.
    pub seed: u64,
    /// Standard deviation of the random initial weights.
    pub init_std: f32,
}

impl Default for ToyModelShape {
    fn default() -> Self {
        ToyModelShape {
            hidden_size: 64,
            intermediate_size: 192,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            num_merges: 1500,
            max_position_embeddings: 1024,
            seed: 0,
            init_std: 0.02,
        }
    }
}

/// Settings of the toy benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToyOptions {
    /// Seed of the split, the instances and the bugs.
    pub seed: u64,
    /// Tasks per template (fewer only when a template cannot give that many distinct checked
    /// tasks).
    pub instances_per_template: usize,
    /// Templates held out for the dev split.
    pub dev_templates: usize,
    /// Templates held out for the test split.
    pub test_templates: usize,
    /// How instances name things (fixed names by default: see [`Naming`]).
    pub naming: Naming,
    /// Training tasks with a hand-made repair in `warm_start.jsonl`.
    pub warm_start: usize,
    /// Training tasks whose prompts and hand-made completions the tokenizer's merges are
    /// learned on.
    pub corpus_tasks: usize,
    /// The tiny model.
    pub model: ToyModelShape,
}

impl Default for ToyOptions {
    fn default() -> Self {
        ToyOptions {
            seed: 0,
            instances_per_template: 12,
            dev_templates: 6,
            test_templates: 6,
            naming: Naming::Fixed,
            warm_start: 64,
            corpus_tasks: 200,
            model: ToyModelShape::default(),
        }
    }
}

/// What [`prepare_toy`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyArtifacts {
    /// The output directory.
    pub dir: PathBuf,
    /// Training tasks (one serde [`RepairTask`] per line).
    pub train: PathBuf,
    /// Dev tasks.
    pub dev: PathBuf,
    /// Test tasks.
    pub test: PathBuf,
    /// Hand-made repairs: `{"id","prompt","completion"}` per line.
    pub warm_start: PathBuf,
    /// Counts per split, bug type and template.
    pub summary: PathBuf,
    /// The tiny model directory (random weights, toy tokenizer).
    pub model_dir: PathBuf,
    /// Tasks per split (`train`, `dev`, `test`) and warm-start examples (`warm_start`).
    pub counts: BTreeMap<String, usize>,
    /// Token counts of the warm-start examples: `prompt_max`, `prompt_mean`,
    /// `completion_max`, `completion_mean`.
    pub tokens: BTreeMap<String, usize>,
    /// True when an earlier call's output was reused.
    pub reused: bool,
}

/// One hand-made repair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmStartExample {
    /// The task id.
    pub id: String,
    /// The prompt text, exactly as the sampler sees it.
    pub prompt: String,
    /// The answer: rationale and fixed program ([`format_answer`]).
    pub completion: String,
}

/// The answer as the model writes it after a completion-layout prompt: [`format_answer`]
/// without its leading `### Rationale` heading, which ends the prompt.
pub fn answer_after_prompt(rationale: &str, fixed_program: &str) -> String {
    let full = format_answer(rationale, fixed_program);
    match full.strip_prefix(RATIONALE_HEADING) {
        Some(rest) => rest.trim_start_matches('\n').to_string(),
        None => full,
    }
}

/// The repair settings of the toy: completion layout, zero-shot, with the trace; short
/// traces; sampling at 0.8 with top-k 40 and room for a rationale and a short program. The
/// warm-start prompts and the self-training loop both use these.
pub fn toy_repair_config() -> RepairConfig {
    RepairConfig {
        prompt: PromptOptions {
            layout: Layout::Completion,
            few_shot: false,
            with_trace: true,
        },
        trace_format: Format::Inline,
        render: RenderOptions {
            head: 2,
            tail: 1,
            line_budget: 80,
            value_max_chars: 40,
            total_budget: None,
        },
        capture: Default::default(),
        sampling: SamplingParams {
            temperature: 0.8,
            top_p: 1.0,
            top_k: Some(40),
            max_tokens: 192,
            ..SamplingParams::default()
        },
    }
}

/// The template id of a toy task (`source_task_id` is `<template>/<instance>`).
pub fn template_of(task: &RepairTask) -> Option<&str> {
    (task.meta.source_dataset == SourceDataset::Toy)
        .then(|| task.meta.source_task_id.split('/').next())
        .flatten()
}

/// Assign every template to train, dev or test, deterministically from `seed`: `dev` and
/// `test` templates are held out, each split has every skeleton when there are enough
/// templates, and every slot value of a held-out template occurs in a training template.
pub fn split_templates(
    seed: u64,
    dev: usize,
    test: usize,
) -> Result<BTreeMap<String, Split>, ToyError> {
    let all = templates();
    if dev + test + 3 > all.len() {
        return Err(ToyError::Invalid(format!(
            "dev_templates + test_templates = {} leaves too few of the {} templates for training",
            dev + test,
            all.len()
        )));
    }
    let skeletons: BTreeSet<&str> = all.iter().map(|t| t.skeleton()).collect();
    let mut rng = Rng::new(seed, 0x5911);
    for _ in 0..10_000 {
        let mut order: Vec<usize> = (0..all.len()).collect();
        rng.shuffle(&mut order);
        let split_of = |pos: usize| {
            if pos < dev {
                Split::Validation
            } else if pos < dev + test {
                Split::Test
            } else {
                Split::Train
            }
        };
        let mut train_slots: BTreeSet<String> = BTreeSet::new();
        for (pos, &t) in order.iter().enumerate() {
            if split_of(pos) == Split::Train {
                train_slots.extend(all[t].slot_values());
            }
        }
        let covered = order.iter().enumerate().all(|(pos, &t)| {
            split_of(pos) == Split::Train
                || all[t].slot_values().iter().all(|v| train_slots.contains(v))
        });
        let has_skeletons = |split: Split, n: usize| {
            let s: BTreeSet<&str> = order
                .iter()
                .enumerate()
                .filter(|(pos, _)| split_of(*pos) == split)
                .map(|(_, &t)| all[t].skeleton())
                .collect();
            n < skeletons.len() || s.len() == skeletons.len()
        };
        if covered
            && has_skeletons(Split::Validation, dev)
            && has_skeletons(Split::Test, test)
            && has_skeletons(Split::Train, usize::MAX)
        {
            return Ok(order
                .iter()
                .enumerate()
                .map(|(pos, &t)| (all[t].id.clone(), split_of(pos)))
                .collect());
        }
    }
    Err(ToyError::Invalid(format!(
        "no split of {dev} dev and {test} test templates keeps every slot value in training"
    )))
}

/// A checked task and the draft it came from (for the hand-made rationale).
struct Generated {
    task: RepairTask,
    draft: Draft,
}

const MAX_ROUNDS: u64 = 12;

fn value_job(program: &str, calls: &[String]) -> Job {
    TestSuite::plain(calls.iter().map(|c| format!("print(repr({c}))")).collect())
        .job(program, grading_limits())
}

/// The printed values of a value job, or None when any call did not return normally.
fn values(res: &JobResult) -> Option<Vec<String>> {
    if res.load_error.is_some() {
        return None;
    }
    res.tests
        .iter()
        .map(|t| (t.outcome == TestOutcome::Passed).then(|| t.stdout.trim().to_string()))
        .collect()
}

/// Whether a result shows a resource or process failure: toy programs run a few loop steps,
/// so a timeout, memory limit, crash or a test not reached means the machine was overloaded,
/// not that the program is wrong.
fn flaky(res: &JobResult) -> bool {
    let bad = |o: &TestOutcome| {
        matches!(
            o,
            TestOutcome::Timeout
                | TestOutcome::MemoryExceeded
                | TestOutcome::Crashed { .. }
                | TestOutcome::NotRun
        )
    };
    res.load_error.as_ref().is_some_and(bad) || res.tests.iter().any(|t| bad(&t.outcome))
}

const RETRIES: usize = 3;

/// Run `jobs`, rerunning (up to [`RETRIES`] times) those whose results are [`flaky`], so that
/// the generated benchmark does not depend on the machine's load.
fn run_all(pool: &Pool, jobs: &[Job]) -> Result<Vec<JobResult>, ToyError> {
    let mut out: Vec<Option<JobResult>> = vec![None; jobs.len()];
    let mut todo: Vec<usize> = (0..jobs.len()).collect();
    for attempt in 0..=RETRIES {
        if todo.is_empty() {
            break;
        }
        let batch: Vec<Job> = todo.iter().map(|&i| jobs[i].clone()).collect();
        let mut err = None;
        pool.run_many(&batch, |k, r| match r {
            Ok(res) => out[todo[k]] = Some(res),
            Err(e) => {
                err.get_or_insert(e);
            }
        });
        if let Some(e) = err {
            return Err(e.into());
        }
        if attempt < RETRIES {
            todo.retain(|&i| out[i].as_ref().is_none_or(flaky));
        }
    }
    out.into_iter()
        .map(|r| r.ok_or_else(|| ToyError::Invalid("the sandbox returned no result".into())))
        .collect()
}

fn generate(pool: &Pool, opts: &ToyOptions) -> Result<(Vec<Generated>, usize), ToyError> {
    if opts.instances_per_template == 0 {
        return Err(ToyError::Invalid(
            "instances_per_template must be at least 1".into(),
        ));
    }
    let splits = split_templates(opts.seed, opts.dev_templates, opts.test_templates)?;
    let all = templates();
    let mut kept: Vec<Vec<Generated>> = all.iter().map(|_| Vec::new()).collect();
    let mut seen: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
    let mut dropped = 0usize;
    for round in 0..MAX_ROUNDS {
        let mut drafts: Vec<(usize, Draft)> = Vec::new();
        for (ti, t) in all.iter().enumerate() {
            let need = opts.instances_per_template.saturating_sub(kept[ti].len());
            // Draw a few spare drafts: some are dropped by the checks.
            for j in 0..(need + need / 2 + usize::from(need > 0)) {
                let stream = ((ti as u64) << 40) | (round << 20) | j as u64;
                let mut rng = Rng::new(opts.seed, stream);
                drafts.push((ti, draft(t, &mut rng, opts.naming)));
            }
        }
        if drafts.is_empty() {
            break;
        }
        // Expected values from the correct program; the buggy program's on the prompt calls.
        let mut jobs = Vec::with_capacity(2 * drafts.len());
        for (_, d) in &drafts {
            let calls: Vec<String> = d
                .prompt_calls
                .iter()
                .chain(&d.extra_calls)
                .cloned()
                .collect();
            jobs.push(value_job(&d.reference, &calls));
            jobs.push(value_job(&d.buggy, &d.prompt_calls));
        }
        let results = run_all(pool, &jobs)?;
        let mut candidates: Vec<(usize, Draft, RepairTask)> = Vec::new();
        for (i, (ti, d)) in drafts.into_iter().enumerate() {
            let (Some(expected), buggy) = (values(&results[2 * i]), values(&results[2 * i + 1]))
            else {
                dropped += 1;
                continue;
            };
            let fails_shown = match &buggy {
                None => true,
                Some(b) => b.iter().zip(&expected).any(|(x, y)| x != y),
            };
            let key = (d.buggy.clone(), d.prompt_calls.clone());
            if !fails_shown || seen.contains(&key) {
                dropped += 1;
                continue;
            }
            let calls: Vec<&String> = d.prompt_calls.iter().chain(&d.extra_calls).collect();
            let mut asserts: Vec<String> = Vec::new();
            for (c, v) in calls.iter().zip(&expected) {
                let a = format!("assert {c} == {v}");
                if !asserts.contains(&a) {
                    asserts.push(a);
                }
            }
            let shown: Vec<String> = asserts[..d.prompt_calls.len().min(asserts.len())].to_vec();
            let t = &all[ti];
            let split = splits.get(&t.id).copied().unwrap_or(Split::Train);
            let task = RepairTask {
                id: String::new(),
                problem: d.spec.clone(),
                buggy_program: d.buggy.clone(),
                entry_point: d.entry_point.clone(),
                prompt_tests: TestSuite::plain(shown),
                grading_tests: TestSuite::plain(asserts),
                reference: Some(d.reference.clone()),
                meta: TaskMeta {
                    source_dataset: SourceDataset::Toy,
                    source_task_id: String::new(),
                    split,
                    bug_type: Some(d.bug.name().to_string()),
                    failure_symptoms: None,
                    origin: Some("nxt toy generator".into()),
                    code_prompt: None,
                },
            };
            seen.insert(key);
            candidates.push((ti, d, task));
        }
        // The checks of record, with the tests as they are written in the task.
        let mut jobs = Vec::with_capacity(2 * candidates.len());
        for (_, _, task) in &candidates {
            jobs.push(task.prompt_job(&task.buggy_program, grading_limits()));
            jobs.push(task.grading_job(task.reference.as_deref().unwrap_or(""), grading_limits()));
        }
        let results = run_all(pool, &jobs)?;
        for (i, (ti, d, mut task)) in candidates.into_iter().enumerate() {
            let buggy_fails = results[2 * i].load_error.is_some()
                || results[2 * i]
                    .tests
                    .iter()
                    .any(|t| t.outcome != TestOutcome::Passed);
            let reference_passes = results[2 * i + 1].load_error.is_none()
                && results[2 * i + 1]
                    .tests
                    .iter()
                    .all(|t| t.outcome == TestOutcome::Passed);
            if !(buggy_fails && reference_passes) || kept[ti].len() >= opts.instances_per_template {
                dropped += 1;
                continue;
            }
            let n = kept[ti].len();
            task.id = format!("toy/{}/{n}", all[ti].id);
            task.meta.source_task_id = format!("{}/{n}", all[ti].id);
            kept[ti].push(Generated { task, draft: d });
        }
    }
    if let Some((ti, _)) = kept.iter().enumerate().find(|(_, k)| k.is_empty()) {
        return Err(ToyError::Invalid(format!(
            "template {} gave no checked task",
            all[ti].id
        )));
    }
    Ok((kept.into_iter().flatten().collect(), dropped))
}

/// Generate the toy's tasks (all splits, in template order), checked in the sandbox.
pub fn generate_tasks(pool: &Pool, opts: &ToyOptions) -> Result<Vec<RepairTask>, ToyError> {
    Ok(generate(pool, opts)?
        .0
        .into_iter()
        .map(|g| g.task)
        .collect())
}

/// Training tasks in round-robin template order (instance 0 of every template, then 1, ...),
/// so that any prefix covers the training templates evenly.
fn round_robin(generated: &[Generated]) -> Vec<&Generated> {
    let mut by_template: BTreeMap<String, Vec<&Generated>> = BTreeMap::new();
    for g in generated
        .iter()
        .filter(|g| g.task.meta.split == Split::Train)
    {
        by_template
            .entry(g.draft.template.id.clone())
            .or_default()
            .push(g);
    }
    let longest = by_template.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| by_template.values().filter_map(move |v| v.get(i).copied()))
        .collect()
}

/// The hand-made repair of a generated task: the prompt the sampler sees and the answer.
fn hand_made(pool: &Pool, g: &Generated, cfg: &RepairConfig) -> Result<WarmStartExample, ToyError> {
    let prep = prepare(pool, &g.task, cfg).map_err(|source| ToyError::Prepare {
        task: g.task.id.clone(),
        source,
    })?;
    let prompt = match prompt_for(&g.task, &prep, cfg) {
        Prompt::Text(t) => t,
        Prompt::Chat(_) => {
            return Err(ToyError::Invalid(
                "the toy repair config must use the completion layout".into(),
            ))
        }
    };
    let failing = prep.failing_test.clone().unwrap_or_default();
    let observed = prep
        .trace
        .as_deref()
        .and_then(observed_in_trace)
        .ok_or_else(|| {
            ToyError::Invalid(format!(
                "{}: the trace shows no returned value or exception",
                g.task.id
            ))
        })?;
    let text = rationale(&g.draft, &failing, &observed);
    Ok(WarmStartExample {
        id: g.task.id.clone(),
        prompt,
        completion: answer_after_prompt(&text, &g.draft.reference),
    })
}

/// The tiny model of the toy: `shape`, a Qwen2 architecture and BPE merges learned on
/// `corpus` (the toy prompts and completions, see [`prepare_toy`]).
pub fn toy_model_spec(shape: &ToyModelShape, corpus: String) -> TinyModelSpec {
    TinyModelSpec {
        hidden_size: shape.hidden_size,
        intermediate_size: shape.intermediate_size,
        num_layers: shape.num_layers,
        num_heads: shape.num_heads,
        num_kv_heads: shape.num_kv_heads,
        num_merges: shape.num_merges,
        seed: shape.seed,
        init_std: shape.init_std,
        tie_word_embeddings: true,
        corpus: Some(corpus),
        max_position_embeddings: shape.max_position_embeddings,
        ..TinyModelSpec::default()
    }
}

/// Write the toy's tiny model (random weights, toy tokenizer) into `dir`.
pub fn write_toy_model(dir: &Path, shape: &ToyModelShape, corpus: String) -> Result<(), ToyError> {
    write_tiny_model(dir, &toy_model_spec(shape, corpus))?;
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ToyError + '_ {
    move |source| ToyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ToyError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), ToyError> {
    let mut s = String::new();
    for it in items {
        let line = serde_json::to_string(it).map_err(|e| ToyError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        s.push_str(&line);
        s.push('\n');
    }
    write_atomic(path, &s)
}

fn pretty(path: &Path, v: &impl Serialize) -> Result<(), ToyError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| ToyError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &(text + "\n"))
}

/// Read one of the toy's task files (one serde [`RepairTask`] per line).
pub fn load_tasks(path: &Path) -> Result<Vec<RepairTask>, ToyError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(no, l)| {
            serde_json::from_str(l).map_err(|e| ToyError::Json {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", no + 1),
            })
        })
        .collect()
}

/// The first key (dotted path) where two JSON values differ, with both values.
fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    at: &str,
) -> Option<(String, String, String)> {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                let null = serde_json::Value::Null;
                first_difference(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), &path)
            })
        }
        _ if a == b => None,
        _ => Some((at.to_string(), a.to_string(), b.to_string())),
    }
}

const MANIFEST: &str = "toy.json";

/// Prepare the toy in `out_dir`: `train.jsonl`, `dev.jsonl`, `test.jsonl` (tasks),
/// `warm_start.jsonl` (hand-made repairs), `summary.json` (counts per split, bug type and
/// template), `tokenizer_corpus.txt` and `model/` (the tiny model), and last `toy.json` (the
/// options and the artifacts), which marks the directory complete.
///
/// Idempotent: when `toy.json` exists with the same options, everything is reused (nothing
/// is regenerated; `reused` is true). When it holds other options, the call is refused
/// ([`ToyError::OptionsChanged`], naming the first differing option): one directory holds one
/// toy. A directory without `toy.json` (an interrupted call) is regenerated from scratch;
/// generation is deterministic, so the result is the same as an uninterrupted call's.
pub fn prepare_toy(
    out_dir: &Path,
    opts: &ToyOptions,
    pool: &Pool,
) -> Result<ToyArtifacts, ToyError> {
    let manifest = out_dir.join(MANIFEST);
    let asked = serde_json::to_value(opts).map_err(|e| ToyError::Json {
        path: manifest.clone(),
        message: e.to_string(),
    })?;
    if manifest.exists() {
        let text = std::fs::read_to_string(&manifest).map_err(io_err(&manifest))?;
        let stored: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ToyError::Json {
                path: manifest.clone(),
                message: e.to_string(),
            })?;
        let null = serde_json::Value::Null;
        let old = stored.get("options").unwrap_or(&null);
        if let Some((key, existing, requested)) = first_difference(old, &asked, "") {
            return Err(ToyError::OptionsChanged {
                dir: out_dir.to_path_buf(),
                key,
                existing,
                requested,
            });
        }
        let mut art: ToyArtifacts = stored
            .get("artifacts")
            .cloned()
            .ok_or_else(|| ToyError::Json {
                path: manifest.clone(),
                message: "no `artifacts` key".into(),
            })
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| ToyError::Json {
                    path: manifest.clone(),
                    message: format!("`artifacts`: {e}"),
                })
            })?;
        for p in [
            &art.train,
            &art.dev,
            &art.test,
            &art.warm_start,
            &art.summary,
        ] {
            if !p.exists() {
                return Err(ToyError::Invalid(format!(
                    "{} is listed in {} but missing; remove the directory to regenerate",
                    p.display(),
                    manifest.display()
                )));
            }
        }
        art.reused = true;
        return Ok(art);
    }
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let (generated, dropped) = generate(pool, opts)?;
    let by_split = |s: Split| -> Vec<RepairTask> {
        generated
            .iter()
            .filter(|g| g.task.meta.split == s)
            .map(|g| g.task.clone())
            .collect()
    };
    let (train, dev, test) = (
        by_split(Split::Train),
        by_split(Split::Validation),
        by_split(Split::Test),
    );
    let paths = |name: &str| out_dir.join(name);
    jsonl(&paths("train.jsonl"), &train)?;
    jsonl(&paths("dev.jsonl"), &dev)?;
    jsonl(&paths("test.jsonl"), &test)?;

    // Hand-made repairs; the tokenizer corpus is the prompts and answers of more of them.
    let cfg = toy_repair_config();
    let order = round_robin(&generated);
    let n_examples = opts.warm_start.max(opts.corpus_tasks).min(order.len());
    let examples: Vec<WarmStartExample> = order[..n_examples]
        .iter()
        .map(|g| hand_made(pool, g, &cfg))
        .collect::<Result<_, _>>()?;
    let warm: Vec<WarmStartExample> = examples.iter().take(opts.warm_start).cloned().collect();
    jsonl(&paths("warm_start.jsonl"), &warm)?;
    let mut corpus = String::new();
    for e in examples.iter().take(opts.corpus_tasks.max(1)) {
        corpus.push_str(&e.prompt);
        corpus.push_str(&e.completion);
        corpus.push('\n');
    }
    write_atomic(&paths("tokenizer_corpus.txt"), &corpus)?;
    let model_dir = paths("model");
    write_toy_model(&model_dir, &opts.model, corpus)?;

    // Token counts of the warm-start examples under the toy tokenizer.
    let engine = nxt_llm::engine::Engine::load(
        &model_dir.to_string_lossy(),
        nxt_llm::engine::EngineOptions::default(),
    )?;
    let mut prompt_tokens = Vec::new();
    let mut completion_tokens = Vec::new();
    for e in &warm {
        prompt_tokens.push(engine.encode(&e.prompt, false)?.len());
        completion_tokens.push(engine.encode(&e.completion, false)?.len());
    }
    let longest = prompt_tokens
        .iter()
        .zip(&completion_tokens)
        .map(|(p, c)| p + c)
        .max()
        .unwrap_or(0);
    if longest > opts.model.max_position_embeddings {
        return Err(ToyError::Invalid(format!(
            "model.max_position_embeddings = {} is below the longest warm-start example ({longest} tokens)",
            opts.model.max_position_embeddings
        )));
    }
    let stat = |v: &[usize]| {
        (
            v.iter().copied().max().unwrap_or(0),
            v.iter().sum::<usize>() / v.len().max(1),
        )
    };
    let mut tokens = BTreeMap::new();
    let (pm, pa) = stat(&prompt_tokens);
    let (cm, ca) = stat(&completion_tokens);
    tokens.insert("prompt_max".to_string(), pm);
    tokens.insert("prompt_mean".to_string(), pa);
    tokens.insert("completion_max".to_string(), cm);
    tokens.insert("completion_mean".to_string(), ca);

    // Summary.
    let mut per_bug: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut per_template: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut templates_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in &generated {
        let split = split_name(g.task.meta.split);
        *per_bug
            .entry(split.to_string())
            .or_default()
            .entry(g.draft.bug.name().to_string())
            .or_default() += 1;
        let e = per_template
            .entry(g.draft.template.id.clone())
            .or_insert_with(|| serde_json::json!({"split": split, "skeleton": g.draft.template.skeleton(), "tasks": 0}));
        e["tasks"] = serde_json::json!(e["tasks"].as_u64().unwrap_or(0) + 1);
        let list = templates_of.entry(split.to_string()).or_default();
        if !list.contains(&g.draft.template.id) {
            list.push(g.draft.template.id.clone());
        }
    }
    let mut counts = BTreeMap::new();
    counts.insert("train".to_string(), train.len());
    counts.insert("dev".to_string(), dev.len());
    counts.insert("test".to_string(), test.len());
    counts.insert("warm_start".to_string(), warm.len());
    let summary = serde_json::json!({
        "counts": counts,
        "dropped_drafts": dropped,
        "per_bug_type": per_bug,
        "per_template": per_template,
        "templates": templates_of,
        "warm_start_tokens": tokens,
        "vocab_size": engine.tokenizer().get_vocab_size(true),
    });
    pretty(&paths("summary.json"), &summary)?;
    let art = ToyArtifacts {
        dir: out_dir.to_path_buf(),
        train: paths("train.jsonl"),
        dev: paths("dev.jsonl"),
        test: paths("test.jsonl"),
        warm_start: paths("warm_start.jsonl"),
        summary: paths("summary.json"),
        model_dir,
        counts,
        tokens,
        reused: false,
    };
    pretty(
        &manifest,
        &serde_json::json!({"options": asked, "artifacts": art}),
    )?;
    Ok(art)
}

/// The file name of a split (`dev` for validation).
pub fn split_name(split: Split) -> &'static str {
    match split {
        Split::Validation => "dev",
        other => other.name(),
    }
}
