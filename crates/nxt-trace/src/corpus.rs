//! Minimal readers of the benchmark files that the tracer is exercised on (MBPP, HumanEval,
//! HumanEvalFix, mbpp-r-seed): just the fields a trace needs. Full task models live in `nxt-data`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use nxt_sandbox::SetupPlacement;
use serde_json::Value;

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

/// Errors reading a corpus file.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A record is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was wrong.
        message: String,
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

/// The data directory: `$NXT_DATA_DIR`, else `<workspace>/../shared/data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("NXT_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<(usize, Value)>, CorpusError> {
    let io = |source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| CorpusError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push((i + 1, v));
    }
    Ok(out)
}

fn field<'a>(path: &Path, line: usize, v: &'a Value, name: &str) -> Result<&'a str, CorpusError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| CorpusError::Parse {
            path: path.to_path_buf(),
            line,
            message: format!("missing string field `{name}`"),
        })
}

fn mbpp_item(path: &Path, line: usize, v: &Value) -> Result<CorpusItem, CorpusError> {
    let id = v
        .get("task_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| CorpusError::Parse {
            path: path.to_path_buf(),
            line,
            message: "missing integer field `task_id`".into(),
        })?;
    let tests = v
        .get("test_list")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let setup = v
        .get("test_setup_code")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(String::from);
    Ok(CorpusItem {
        id: format!("mbpp/{id}"),
        program: field(path, line, v, "code")?.to_string(),
        tests,
        setup,
        setup_placement: SetupPlacement::AfterProgram,
    })
}

/// MBPP reference solutions (`mbpp/mbpp.jsonl`), each with its 3 tests.
pub fn mbpp(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let path = data_dir.join("mbpp/mbpp.jsonl");
    read_jsonl(&path)?
        .iter()
        .map(|(line, v)| mbpp_item(&path, *line, v))
        .collect()
}

/// HumanEval canonical solutions (`prompt + canonical_solution`), test `test + check(entry)`.
pub fn humaneval(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let path = data_dir.join("humaneval/HumanEval.jsonl.gz");
    let mut out = Vec::new();
    for (line, v) in read_jsonl(&path)? {
        let id = field(&path, line, &v, "task_id")?.replace("HumanEval/", "humaneval/");
        let program = format!(
            "{}{}",
            field(&path, line, &v, "prompt")?,
            field(&path, line, &v, "canonical_solution")?
        );
        let test = format!(
            "{}\ncheck({})\n",
            field(&path, line, &v, "test")?.trim_end(),
            field(&path, line, &v, "entry_point")?
        );
        out.push(CorpusItem {
            id,
            program,
            tests: vec![test],
            setup: None,
            setup_placement: SetupPlacement::AfterProgram,
        });
    }
    Ok(out)
}

/// HumanEvalFix buggy programs (`declaration + buggy_solution`) on their `test` (which ends
/// with the `check(...)` call).
pub fn humanevalfix(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let path = data_dir.join("humanevalfix/humanevalpack_python.jsonl");
    let mut out = Vec::new();
    for (line, v) in read_jsonl(&path)? {
        let id = field(&path, line, &v, "task_id")?.replace("Python/", "humanevalfix/");
        let program = format!(
            "{}{}",
            field(&path, line, &v, "declaration")?,
            field(&path, line, &v, "buggy_solution")?
        );
        let test = format!(
            "{}\n",
            field(&path, line, &v, "test")?
                .trim_start_matches('\n')
                .trim_end()
        );
        out.push(CorpusItem {
            id,
            program,
            tests: vec![test],
            setup: None,
            setup_placement: SetupPlacement::AfterProgram,
        });
    }
    Ok(out)
}

/// The failing model-written programs of `mbpp-r-seed/failing.jsonl.gz`, each with the 3 MBPP
/// tests of its task (the caller picks the first failing one).
pub fn mbpp_r_failing(data_dir: &Path) -> Result<Vec<CorpusItem>, CorpusError> {
    let refs = mbpp(data_dir)?;
    let by_id: std::collections::HashMap<String, &CorpusItem> =
        refs.iter().map(|r| (r.id.clone(), r)).collect();
    let path = data_dir.join("mbpp-r-seed/failing.jsonl.gz");
    let mut out = Vec::new();
    for (n, (line, v)) in read_jsonl(&path)?.into_iter().enumerate() {
        let task = v
            .get("task_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| CorpusError::Parse {
                path: path.clone(),
                line,
                message: "missing integer field `task_id`".into(),
            })?;
        let Some(reference) = by_id.get(&format!("mbpp/{task}")) else {
            return Err(CorpusError::Parse {
                path: path.clone(),
                line,
                message: format!("task {task} is not in mbpp.jsonl"),
            });
        };
        out.push(CorpusItem {
            id: format!("mbpp-r/{task}#{n}"),
            program: field(&path, line, &v, "program")?.to_string(),
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
