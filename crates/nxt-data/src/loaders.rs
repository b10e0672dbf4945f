//! Loaders for the raw benchmark files (field layouts as released upstream).

use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::error::{malformed, Result};
use crate::jsonl::{read_jsonl, read_lines, split_object};

/// One MBPP problem (full release, `mbpp.jsonl`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MbppRecord {
    /// Task id, 1-974.
    pub task_id: u32,
    /// Problem statement.
    pub text: String,
    /// Reference solution.
    pub code: String,
    /// Setup code the tests need (run AFTER the solution: tasks 367 and 927 use its classes).
    pub test_setup_code: String,
    /// The three `assert` tests.
    pub test_list: Vec<String>,
    /// Extra, harder tests (present on a few tasks).
    #[serde(default)]
    pub challenge_test_list: Vec<String>,
}

/// One MBPP sanitized problem (`sanitized-mbpp.json`, a single JSON array).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MbppSanitizedRecord {
    /// Task id (same numbering as the full release).
    pub task_id: u32,
    /// Hand-edited problem statement.
    pub prompt: String,
    /// Reference solution.
    pub code: String,
    /// Import statements the tests need (run BEFORE the solution).
    #[serde(default)]
    pub test_imports: Vec<String>,
    /// The `assert` tests.
    pub test_list: Vec<String>,
    /// Provenance notebook.
    #[serde(default)]
    pub source_file: String,
}

/// One HumanEval problem.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HumanEvalRecord {
    /// `HumanEval/<n>`.
    pub task_id: String,
    /// Signature + docstring.
    pub prompt: String,
    /// Function under test.
    pub entry_point: String,
    /// Body completing `prompt`.
    pub canonical_solution: String,
    /// Test code defining `check(candidate)`.
    pub test: String,
}

/// One HumanEvalFix problem (HumanEvalPack, Python).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HumanEvalFixRecord {
    /// `Python/<n>`.
    pub task_id: String,
    /// Signature + docstring.
    pub prompt: String,
    /// Imports + signature, without docstring.
    pub declaration: String,
    /// Correct body.
    pub canonical_solution: String,
    /// Body with one injected bug.
    pub buggy_solution: String,
    /// Bug class, e.g. `missing logic`.
    pub bug_type: String,
    /// Symptom, e.g. `incorrect output`, `infinite loop`.
    pub failure_symptoms: String,
    /// Function under test.
    pub entry_point: String,
    /// Full test code (`def check(<entry_point>): ...` + `check(<entry_point>)`).
    pub test: String,
    /// The docstring examples as a test (`def check(...)` ...); empty for a few tasks.
    pub example_test: String,
    /// Signature line.
    #[serde(default)]
    pub signature: String,
    /// Docstring text.
    #[serde(default)]
    pub docstring: String,
    /// Instruction text of HumanEvalSynthesize.
    #[serde(default)]
    pub instruction: String,
}

impl HumanEvalFixRecord {
    /// The number `n` of `Python/<n>`.
    pub fn number(&self) -> Option<u32> {
        self.task_id.rsplit('/').next()?.parse().ok()
    }
}

/// One EvalPlus problem (HumanEval+ or MBPP+).
///
/// The input lists are kept as raw JSON text: they may contain `NaN`/`Infinity`, which only
/// Python's `json` accepts, and they are only ever evaluated by Python.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPlusRecord {
    /// `HumanEval/<n>` or `Mbpp/<n>`.
    pub task_id: String,
    /// Prompt (signature + docstring for HumanEval+, a docstring for MBPP+).
    pub prompt: String,
    /// Function under test.
    pub entry_point: String,
    /// Reference solution (for HumanEval+ a body completing `prompt`).
    pub canonical_solution: String,
    /// Input validity contract (assert lines).
    pub contract: String,
    /// Original HumanEval test code (HumanEval+ only).
    pub test: Option<String>,
    /// Original asserts (MBPP+ only).
    pub assertion: Option<String>,
    /// Float tolerance.
    pub atol: f64,
    /// JSON text of the list of base inputs (each a list of arguments).
    pub base_input_json: String,
    /// JSON text of the list of plus inputs.
    pub plus_input_json: String,
}

fn de_u32_lenient<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        N(u32),
        S(String),
    }
    match Id::deserialize(d)? {
        Id::N(n) => Ok(n),
        Id::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Like [`MbppRecord`] but tolerant of string task ids (seen in some mirrors).
#[derive(Deserialize)]
struct MbppRaw {
    #[serde(deserialize_with = "de_u32_lenient")]
    task_id: u32,
    text: String,
    code: String,
    #[serde(default)]
    test_setup_code: String,
    test_list: Vec<String>,
    #[serde(default)]
    challenge_test_list: Vec<String>,
}

/// Load MBPP (full, JSONL; `.gz` accepted).
pub fn load_mbpp(path: &Path) -> Result<Vec<MbppRecord>> {
    let rows: Vec<(usize, MbppRaw)> = read_jsonl(path)?;
    let mut out = Vec::with_capacity(rows.len());
    for (line, r) in rows {
        if r.test_list.is_empty() {
            return Err(malformed(
                path,
                line,
                format!("task {} has an empty test_list", r.task_id),
            ));
        }
        out.push(MbppRecord {
            task_id: r.task_id,
            text: r.text,
            code: r.code,
            test_setup_code: r.test_setup_code,
            test_list: r.test_list,
            challenge_test_list: r.challenge_test_list,
        });
    }
    check_unique(path, out.iter().map(|r| r.task_id.to_string()))?;
    Ok(out)
}

/// Load MBPP sanitized (one JSON array, or JSONL).
pub fn load_mbpp_sanitized(path: &Path) -> Result<Vec<MbppSanitizedRecord>> {
    let text = crate::jsonl::read_to_string_maybe_gz(path)?;
    let out: Vec<MbppSanitizedRecord> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
            .map_err(|e| malformed(path, e.line(), format!("bad MBPP sanitized file: {e}")))?
    } else {
        read_jsonl::<MbppSanitizedRecord>(path)?
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    };
    check_unique(path, out.iter().map(|r| r.task_id.to_string()))?;
    Ok(out)
}

/// Load HumanEval (JSONL, `.gz` accepted).
pub fn load_humaneval(path: &Path) -> Result<Vec<HumanEvalRecord>> {
    let out: Vec<HumanEvalRecord> = read_jsonl(path)?.into_iter().map(|(_, r)| r).collect();
    check_unique(path, out.iter().map(|r| r.task_id.clone()))?;
    Ok(out)
}

/// Load HumanEvalFix (HumanEvalPack Python JSONL).
pub fn load_humanevalfix(path: &Path) -> Result<Vec<HumanEvalFixRecord>> {
    let rows: Vec<(usize, HumanEvalFixRecord)> = read_jsonl(path)?;
    for (line, r) in &rows {
        if r.number().is_none() {
            return Err(malformed(
                path,
                *line,
                format!("task_id `{}` is not `Python/<n>`", r.task_id),
            ));
        }
    }
    let out: Vec<HumanEvalFixRecord> = rows.into_iter().map(|(_, r)| r).collect();
    check_unique(path, out.iter().map(|r| r.task_id.clone()))?;
    Ok(out)
}

/// Load an EvalPlus release (HumanEval+ or MBPP+; JSONL, `.gz` accepted).
pub fn load_evalplus(path: &Path) -> Result<Vec<EvalPlusRecord>> {
    let mut out = Vec::new();
    for (line, text) in read_lines(path)? {
        let fields = split_object(&text).map_err(|m| malformed(path, line, m))?;
        let mut rec = EvalPlusRecord {
            task_id: String::new(),
            prompt: String::new(),
            entry_point: String::new(),
            canonical_solution: String::new(),
            contract: String::new(),
            test: None,
            assertion: None,
            atol: 0.0,
            base_input_json: String::new(),
            plus_input_json: String::new(),
        };
        let str_field = |key: &str, raw: &str| -> Result<String> {
            serde_json::from_str::<String>(raw)
                .map_err(|e| malformed(path, line, format!("field `{key}` is not a string: {e}")))
        };
        for (key, raw) in &fields {
            match key.as_str() {
                "task_id" => rec.task_id = str_field(key, raw)?,
                "prompt" => rec.prompt = str_field(key, raw)?,
                "entry_point" => rec.entry_point = str_field(key, raw)?,
                "canonical_solution" => rec.canonical_solution = str_field(key, raw)?,
                "contract" => rec.contract = str_field(key, raw)?,
                "test" => rec.test = Some(str_field(key, raw)?),
                "assertion" => rec.assertion = Some(str_field(key, raw)?),
                "atol" => {
                    rec.atol = serde_json::from_str::<f64>(raw).map_err(|e| {
                        malformed(path, line, format!("field `atol` is not a number: {e}"))
                    })?
                }
                "base_input" => rec.base_input_json = raw.clone(),
                "plus_input" => rec.plus_input_json = raw.clone(),
                _ => {}
            }
        }
        for (name, val) in [
            ("task_id", &rec.task_id),
            ("entry_point", &rec.entry_point),
            ("canonical_solution", &rec.canonical_solution),
            ("base_input", &rec.base_input_json),
            ("plus_input", &rec.plus_input_json),
        ] {
            if val.is_empty() {
                return Err(malformed(path, line, format!("missing field `{name}`")));
            }
        }
        // MBPP+ v0.2.0 writes `{}` for a task without plus inputs (Mbpp/793).
        for val in [&mut rec.base_input_json, &mut rec.plus_input_json] {
            if val.trim() == "{}" {
                *val = "[]".to_string();
            }
        }
        for (name, val) in [
            ("base_input", &rec.base_input_json),
            ("plus_input", &rec.plus_input_json),
        ] {
            if !val.starts_with('[') {
                return Err(malformed(
                    path,
                    line,
                    format!("field `{name}` is not a list"),
                ));
            }
        }
        out.push(rec);
    }
    check_unique(path, out.iter().map(|r| r.task_id.clone()))?;
    Ok(out)
}

fn check_unique(path: &Path, ids: impl Iterator<Item = String>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id.clone()) {
            return Err(malformed(path, 0, format!("duplicate task_id `{id}`")));
        }
    }
    Ok(())
}
