//! EvalPlus (HumanEval+) grading: expected outputs computed by running the canonical solution
//! once per input inside the sandbox (cached, keyed by the dataset's sha256), and test suites
//! that compare outputs as EvalPlus' `unsafe_execute` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nxt_sandbox::{Comparison, DriverJob, Limits, SetupPlacement, TestOutcome};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, DataError, Result};
use crate::exec::Executor;
use crate::loaders::EvalPlusRecord;
use crate::task::TestSuite;

/// Python driver computing expected outputs (trusted; runs in the sandbox).
pub const EXPECTED_DRIVER: &str = include_str!("../python/evalplus_expected.py");
/// Python helpers used by EvalPlus-style tests (`_nxt_ep_eq`, `_nxt_ep_zero`).
pub const CHECK_HELPERS: &str = include_str!("../python/evalplus_check.py");

/// Version of the cache layout (bump when the driver's output changes).
const CACHE_VERSION: u32 = 2;

/// Outputs whose literal is longer than this are compared by digest.
pub const MAX_LITERAL: usize = 64 * 1024;

/// One input and the canonical solution's output on it, as Python literals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedCase {
    /// Each argument as a Python literal.
    pub args: Vec<String>,
    /// The canonical output as a Python literal (`None` when given by digest).
    pub out: Option<String>,
    /// sha256 of the output's canonical literal, for outputs longer than 64 KiB as text.
    #[serde(default)]
    pub digest: Option<String>,
    /// EvalPlus' `is_floats(out)`.
    pub floats: bool,
}

/// Expected outputs of one task, or why they could not be computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskExpected {
    /// Outputs on the base and plus inputs.
    Ok {
        /// Base inputs (the original HumanEval tests' inputs).
        base: Vec<ExpectedCase>,
        /// Plus inputs.
        plus: Vec<ExpectedCase>,
    },
    /// The canonical solution failed (message names the exception).
    Failed(String),
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    dataset_sha256: String,
    tasks: BTreeMap<String, TaskExpected>,
}

/// The cache directory: `$NXT_CACHE_DIR`, else `$XDG_CACHE_HOME/nxt`, else `~/.cache/nxt`.
pub fn cache_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("NXT_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    if let Some(v) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(v).join("nxt");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("nxt")
}

/// Path of the expected-output cache for a dataset file with the given sha256.
pub fn cache_path(cache_dir: &Path, dataset_sha256: &str) -> PathBuf {
    cache_dir.join(format!("evalplus-expected-{dataset_sha256}.json"))
}

/// Limits of one expected-output driver run.
fn driver_limits() -> Limits {
    Limits {
        test_timeout: Duration::from_secs(300),
        job_timeout: Duration::from_secs(300),
        memory_bytes: 4 << 30,
        output_bytes: 64 * 1024,
    }
}

/// Run the canonical solution of `rec` on all its inputs.
pub fn compute_expected<E: Executor + ?Sized>(
    exec: &E,
    rec: &EvalPlusRecord,
) -> Result<TaskExpected> {
    let code = format!("{}{}", rec.prompt, rec.canonical_solution);
    let payload = serde_json::json!({
        "code": code,
        "entry_point": rec.entry_point,
        "inputs": {"base": rec.base_input_json, "plus": rec.plus_input_json},
        "max_literal": MAX_LITERAL,
    });
    let job = DriverJob {
        driver: format!("{CHECK_HELPERS}\n{EXPECTED_DRIVER}"),
        payload: payload.to_string().into_bytes(),
        limits: driver_limits(),
        max_emit_bytes: 256 << 20,
    };
    let res = exec.run_driver_job(&job)?;
    let Some(bytes) = res.emitted else {
        let why = match &res.outcome {
            TestOutcome::Timeout => "timed out".to_string(),
            TestOutcome::MemoryExceeded => "memory limit exceeded".to_string(),
            o => format!(
                "{o:?}; stderr: {}",
                res.stderr.chars().take(500).collect::<String>()
            ),
        };
        return Ok(TaskExpected::Failed(format!(
            "driver emitted nothing: {why}"
        )));
    };
    #[derive(Deserialize)]
    struct Answer {
        error: Option<String>,
        base: Option<Vec<ExpectedCase>>,
        plus: Option<Vec<ExpectedCase>>,
    }
    let ans: Answer = serde_json::from_slice(&bytes).map_err(|e| DataError::Reference {
        task: rec.task_id.clone(),
        message: format!("driver answer is not valid JSON: {e}"),
    })?;
    match (ans.error, ans.base, ans.plus) {
        (Some(e), _, _) => Ok(TaskExpected::Failed(e)),
        (None, Some(base), Some(plus)) => Ok(TaskExpected::Ok { base, plus }),
        _ => Err(DataError::Reference {
            task: rec.task_id.clone(),
            message: "incomplete driver answer".into(),
        }),
    }
}

/// Expected outputs for every record, from the cache when it holds this dataset's sha256,
/// otherwise computed with `exec` (two at a time) and written to the cache.
///
/// `exec` may be `None` when the cache is known to be warm; a cold cache then is an error.
pub fn expected_outputs<E: Executor + ?Sized>(
    exec: Option<&E>,
    records: &[EvalPlusRecord],
    dataset_sha256: &str,
    cache_dir: &Path,
) -> Result<BTreeMap<String, TaskExpected>> {
    let path = cache_path(cache_dir, dataset_sha256);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(c) = serde_json::from_str::<CacheFile>(&text) {
            if c.version == CACHE_VERSION
                && c.dataset_sha256 == dataset_sha256
                && records.iter().all(|r| c.tasks.contains_key(&r.task_id))
            {
                return Ok(c.tasks);
            }
        }
    }
    let Some(exec) = exec else {
        return Err(DataError::Invalid(format!(
            "no cached expected outputs at {} and no executor to compute them",
            path.display()
        )));
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(BTreeMap::new());
    let first_err = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(rec) = records.get(i) else { break };
                match compute_expected(exec, rec) {
                    Ok(t) => {
                        if let Ok(mut m) = results.lock() {
                            m.insert(rec.task_id.clone(), t);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = first_err.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().ok().flatten() {
        return Err(e);
    }
    let tasks = results
        .into_inner()
        .map_err(|_| DataError::Invalid("worker thread panicked".into()))?;
    let cache = CacheFile {
        version: CACHE_VERSION,
        dataset_sha256: dataset_sha256.to_string(),
        tasks,
    };
    std::fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
    let tmp = path.with_extension("json.part");
    let text = serde_json::to_string(&cache).map_err(|e| DataError::Invalid(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(cache.tasks)
}

/// Format an `atol` as a Python float literal.
fn py_float(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// The EvalPlus-style test suite of one record: one `assert` per base input, then per plus
/// input, each comparing the entry point's output with the canonical output as EvalPlus does
/// (exact `==`, else `atol`/`rtol=1e-7` closeness with equal types and lengths; `atol` becomes
/// 1e-6 from the first float-valued expected output on, per phase, as in EvalPlus; HumanEval/32
/// uses the `|poly(xs, x)| <= atol` oracle).
pub fn evalplus_suite(
    rec: &EvalPlusRecord,
    base: &[ExpectedCase],
    plus: &[ExpectedCase],
) -> TestSuite {
    let find_zero = rec.entry_point == "find_zero";
    let mut tests = Vec::with_capacity(base.len() + plus.len());
    for phase in [base, plus] {
        let mut atol = rec.atol;
        for case in phase {
            let call = format!("{}({})", rec.entry_point, case.args.join(", "));
            if find_zero {
                let xs = case.args.first().map(String::as_str).unwrap_or("[]");
                tests.push(format!(
                    "_nxt_guard(); assert _nxt_ep_zero({xs}, {call}, {}); _nxt_pass()",
                    py_float(rec.atol)
                ));
                continue;
            }
            if atol == 0.0 && case.floats {
                atol = 1e-6;
            }
            match (&case.out, &case.digest) {
                (Some(out), _) => tests.push(format!(
                    "_nxt_guard(); assert _nxt_ep_eq({call}, {out}, {}); _nxt_pass()",
                    py_float(atol)
                )),
                (None, Some(d)) => tests.push(format!(
                    "_nxt_guard(); assert _nxt_ep_digest({call}, '{d}'); _nxt_pass()"
                )),
                (None, None) => tests.push(format!(
                    "assert False, 'no expected output for {}'",
                    rec.task_id
                )),
            }
        }
    }
    TestSuite {
        setup: Some(CHECK_HELPERS.to_string()),
        setup_placement: SetupPlacement::AfterProgram,
        tests,
        comparison: Comparison::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(entry: &str, atol: f64) -> EvalPlusRecord {
        EvalPlusRecord {
            task_id: "HumanEval/0".into(),
            prompt: String::new(),
            entry_point: entry.into(),
            canonical_solution: String::new(),
            contract: String::new(),
            test: None,
            assertion: None,
            atol,
            base_input_json: "[]".into(),
            plus_input_json: "[]".into(),
        }
    }

    fn case(args: &[&str], out: &str, floats: bool) -> ExpectedCase {
        ExpectedCase {
            args: args.iter().map(|s| s.to_string()).collect(),
            out: Some(out.into()),
            digest: None,
            floats,
        }
    }

    #[test]
    fn atol_becomes_sticky_after_first_float_output_per_phase() {
        let base = [
            case(&["1"], "1", false),
            case(&["2"], "0.5", true),
            case(&["3"], "3", false),
        ];
        let plus = [case(&["4"], "4", false)];
        let s = evalplus_suite(&rec("f", 0.0), &base, &plus);
        assert_eq!(
            s.tests,
            vec![
                "_nxt_guard(); assert _nxt_ep_eq(f(1), 1, 0.0); _nxt_pass()",
                "_nxt_guard(); assert _nxt_ep_eq(f(2), 0.5, 1e-6); _nxt_pass()",
                "_nxt_guard(); assert _nxt_ep_eq(f(3), 3, 1e-6); _nxt_pass()",
                "_nxt_guard(); assert _nxt_ep_eq(f(4), 4, 0.0); _nxt_pass()",
            ]
        );
        assert!(s.setup.as_deref().unwrap_or("").contains("def _nxt_ep_eq"));
    }

    #[test]
    fn find_zero_uses_the_poly_oracle() {
        let s = evalplus_suite(
            &rec("find_zero", 1e-4),
            &[case(&["[1, 2]"], "-0.5", true)],
            &[],
        );
        assert_eq!(
            s.tests,
            vec![
                "_nxt_guard(); assert _nxt_ep_zero([1, 2], find_zero([1, 2]), 0.0001); _nxt_pass()"
            ]
        );
    }

    #[test]
    fn python_float_literals() {
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(1e-6), "1e-6");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(2.0), "2.0");
    }
}
