//! The benchmark programs the tracer is exercised on (MBPP references, HumanEval canonical
//! solutions, HumanEvalFix buggy programs, mbpp-r-seed failing programs), read with
//! `nxt-data`'s loaders and reduced to what a trace needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nxt_data::loaders::{load_humaneval, load_humanevalfix, load_mbpp, MbppRecord};
use nxt_data::mbppr::read_candidates;
use nxt_data::registry::locate;
use nxt_data::DataError;
use nxt_sandbox::SetupPlacement;

/// A program with its tests, ready to trace.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusItem {
    /// Stable id, e.g. `mbpp/11`, `humaneval/0`, `humanevalfix/0`, `mbpp-r/4#2`.
    pub id: String,
    /// Program source.
    pub program: String,
    /// Test statements (MBPP: one assert each; HumanEval: one `check(...)` block).
    pub tests: Vec<String>,
    /// Setup code, if any.
    pub setup: Option<String>,
    /// Where setup runs (MBPP needs it after the program).
    pub setup_placement: SetupPlacement,
}

/// Errors reading a corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A dataset file is missing, unreadable or malformed (the message names file and line).
    #[error(transparent)]
    Data(#[from] DataError),
    /// A record refers to an MBPP task that `mbpp.jsonl` lacks.
    #[error("{path}:{line}: task {task} is not in mbpp.jsonl")]
    UnknownMbppTask {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The MBPP task id.
        task: u32,
    },
    /// A task id of no known form.
    #[error(
        "unknown task `{0}` (expected mbpp/<id>, humaneval/<n>, humanevalfix/<n> or hefix/<n>)"
    )]
    UnknownTask(String),
    /// A well-formed task id that the dataset does not have.
    #[error("no task `{id}` in {path} ({available})")]
    NoSuchTask {
        /// The id asked for.
        id: String,
        /// The dataset file.
        path: PathBuf,
        /// The ids it has, e.g. `ids 1 to 974`.
        available: String,
    },
}

fn mbpp_item(r: MbppRecord) -> CorpusItem {
    let setup = (!r.test_setup_code.trim().is_empty()).then_some(r.test_setup_code);
    CorpusItem {
        id: format!("mbpp/{}", r.task_id),
        program: r.code,
        tests: r.test_list,
        setup,
        setup_placement: SetupPlacement::AfterProgram,
    }
}

/// MBPP reference solutions (`mbpp/mbpp.jsonl`), each with its 3 tests.
pub fn mbpp(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let records = load_mbpp(&locate(data_dir, "mbpp")?)?;
    Ok(records.into_iter().map(mbpp_item).collect())
}

/// HumanEval canonical solutions (`prompt + canonical_solution`), test `test + check(entry)`.
pub fn humaneval(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let records = load_humaneval(&locate(data_dir, "humaneval")?)?;
    Ok(records
        .into_iter()
        .map(|r| CorpusItem {
            id: r.task_id.replace("HumanEval/", "humaneval/"),
            program: format!("{}{}", r.prompt, r.canonical_solution),
            tests: vec![format!("{}\ncheck({})\n", r.test.trim_end(), r.entry_point)],
            setup: None,
            setup_placement: SetupPlacement::AfterProgram,
        })
        .collect())
}

/// HumanEvalFix buggy programs (`declaration + buggy_solution`) on their `test` (which ends
/// with the `check(...)` call).
pub fn humanevalfix(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let records = load_humanevalfix(&locate(data_dir, "humanevalfix")?)?;
    Ok(records
        .into_iter()
        .map(|r| CorpusItem {
            id: r.task_id.replace("Python/", "humanevalfix/"),
            program: format!("{}{}", r.declaration, r.buggy_solution),
            tests: vec![format!("{}\n", r.test.trim_start_matches('\n').trim_end())],
            setup: None,
            setup_placement: SetupPlacement::AfterProgram,
        })
        .collect())
}

/// The failing model-written programs of `mbpp-r-seed/failing.jsonl.gz`, each with the 3 MBPP
/// tests of its task (the caller picks the first failing one).
pub fn mbpp_r_failing(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let refs = mbpp(data_dir)?;
    let by_id: HashMap<&str, &CorpusItem> = refs.iter().map(|r| (r.id.as_str(), r)).collect();
    let path = data_dir.join("mbpp-r-seed/failing.jsonl.gz");
    let mut out = Vec::new();
    for (n, c) in read_candidates(&path)?.into_iter().enumerate() {
        let Some(reference) = by_id.get(format!("mbpp/{}", c.task_id).as_str()) else {
            return Err(CorpusError::UnknownMbppTask {
                path,
                line: c.line,
                task: c.task_id,
            });
        };
        out.push(CorpusItem {
            id: format!("mbpp-r/{}#{n}", c.task_id),
            program: c.program,
            tests: reference.tests.clone(),
            setup: reference.setup.clone(),
            setup_placement: reference.setup_placement,
        });
    }
    Ok(out)
}

/// Look up one task by id: `mbpp/<task_id>` (reference solution), `humaneval/<n>` (canonical
/// solution) or `humanevalfix/<n>` (the buggy program; also `hefix/<n>` and `hefix+/<n>`, the
/// ids of `nxt repair`). A malformed id is [`CorpusError::UnknownTask`]; a well-formed one that
/// the dataset lacks is [`CorpusError::NoSuchTask`].
pub fn task(data_dir: &Path, id: &str) -> Result<CorpusItem, CorpusError> {
    let unknown = || CorpusError::UnknownTask(id.to_string());
    let (prefix, number) = id.split_once('/').ok_or_else(unknown)?;
    let number: u64 = number.trim().parse().map_err(|_| unknown())?;
    let (corpus, file): (&str, &str) = match prefix.to_ascii_lowercase().as_str() {
        "mbpp" => ("mbpp", "mbpp/mbpp.jsonl"),
        "humaneval" => ("humaneval", "humaneval/HumanEval.jsonl.gz"),
        "humanevalfix" | "hefix" | "hefix+" => {
            ("humanevalfix", "humanevalfix/humanevalpack_python.jsonl")
        }
        _ => return Err(unknown()),
    };
    let items = match corpus {
        "mbpp" => mbpp(data_dir)?,
        "humaneval" => humaneval(data_dir)?,
        _ => humanevalfix(data_dir)?,
    };
    let canonical = format!("{corpus}/{number}");
    let numbers: Vec<u64> = items
        .iter()
        .filter_map(|i| i.id.rsplit('/').next()?.parse().ok())
        .collect();
    let available = match (numbers.iter().min(), numbers.iter().max()) {
        (Some(lo), Some(hi)) => format!("{} tasks, ids {lo} to {hi}", numbers.len()),
        _ => "no tasks".to_string(),
    };
    items
        .into_iter()
        .find(|i| i.id == canonical)
        .ok_or_else(|| CorpusError::NoSuchTask {
            id: id.to_string(),
            path: data_dir.join(file),
            available,
        })
}
