//! MBPP-R: MBPP problems paired with failing model-written programs.
//!
//! Built from any JSONL file of candidates (`{"task_id", "program"}` per line, e.g. samples
//! from a model): programs with syntax errors, empty programs and duplicates (after
//! normalising the code: docstrings, comments and formatting removed) are dropped, the rest run
//! against the MBPP tests, and those failing at least one test become repair tasks
//! `mbpp-r/<task>/<n>`, assigned to splits by MBPP's own task-id ranges.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use nxt_sandbox::{DriverJob, Limits};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, malformed, DataError, Result};
use crate::exec::{grading_limits, with_executor, Executor};
use crate::grade::GradeResult;
use crate::jsonl::read_lines;
use crate::loaders::{self, MbppRecord};
use crate::mbpp::mbpp_task;
use crate::registry::{self, sha256_file};
use crate::task::{RepairTask, Split};

/// Python driver that parses and normalises programs (never runs them).
pub const NORMALISE_DRIVER: &str = include_str!("../python/normalise.py");

/// One candidate program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// MBPP task id.
    pub task_id: u32,
    /// Program text.
    pub program: String,
    /// Model that wrote it, if known.
    pub model: Option<String>,
    /// Verdict recorded in the file (`passed`), if any.
    pub passed: Option<bool>,
    /// Seed files: passes once a standard-library import header is prepended.
    pub passed_with_import_header: Option<bool>,
    /// Error recorded in the file, if any.
    pub error: Option<String>,
    /// 1-based line in the candidates file.
    pub line: usize,
}

/// Read a candidates file (JSONL, `.gz` accepted). `task_id` may be a number, a numeric string
/// or `Mbpp/<n>`/`MBPP/<n>`; `program` may also be called `solution` or `completion`.
pub fn read_candidates(path: &Path) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for (line, text) in read_lines(path)? {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| malformed(path, line, format!("bad JSON: {e}")))?;
        let task_id = match v.get("task_id") {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(serde_json::Value::String(s)) => {
                s.rsplit('/').next().and_then(|s| s.trim().parse().ok())
            }
            _ => None,
        }
        .ok_or_else(|| malformed(path, line, "missing or non-numeric `task_id`"))?;
        let program = ["program", "solution", "completion"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|p| p.as_str()))
            .ok_or_else(|| malformed(path, line, "missing string field `program`"))?
            .to_string();
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let b = |k: &str| v.get(k).and_then(|x| x.as_bool());
        out.push(Candidate {
            task_id,
            program,
            model: s("model"),
            passed: b("passed"),
            passed_with_import_header: b("passed_with_import_header"),
            error: s("error"),
            line,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Deserialize)]
struct Parsed {
    syntax_ok: bool,
    empty: bool,
    norm: String,
}

/// Parse and normalise programs in the sandbox (chunks of 2,000 per driver run), never running
/// them: per program (syntax ok, empty, normalised code). The normal form is `ast.unparse` with
/// docstrings removed, so comments, blank lines and formatting do not count as differences.
pub fn normalise_all<E: Executor + ?Sized>(
    exec: &E,
    programs: &[&str],
) -> Result<Vec<(bool, bool, String)>> {
    let mut out = Vec::with_capacity(programs.len());
    for chunk in programs.chunks(2000) {
        let job = DriverJob {
            driver: NORMALISE_DRIVER.to_string(),
            payload: serde_json::to_vec(chunk).map_err(|e| DataError::Invalid(e.to_string()))?,
            limits: Limits {
                test_timeout: std::time::Duration::from_secs(120),
                job_timeout: std::time::Duration::from_secs(120),
                memory_bytes: 2 << 30,
                output_bytes: 64 * 1024,
            },
            max_emit_bytes: 256 << 20,
        };
        let res = exec.run_driver_job(&job)?;
        let bytes = res.emitted.ok_or_else(|| {
            DataError::Invalid(format!(
                "normaliser emitted nothing ({:?}): {}",
                res.outcome, res.stderr
            ))
        })?;
        let parsed: Vec<Parsed> = serde_json::from_slice(&bytes)
            .map_err(|e| DataError::Invalid(format!("normaliser answer: {e}")))?;
        if parsed.len() != chunk.len() {
            return Err(DataError::Invalid(
                "normaliser answered for a different number of programs".into(),
            ));
        }
        out.extend(parsed.into_iter().map(|p| (p.syntax_ok, p.empty, p.norm)));
    }
    Ok(out)
}

/// Options of [`build_mbpp_r`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Also drop failures that a standard-library import header fixes (only known when the
    /// candidates file carries `passed_with_import_header`, as the seed does).
    pub drop_import_artefacts: bool,
}

/// Where our verdict and the file's `passed` field differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    /// Line in the candidates file.
    pub line: usize,
    /// MBPP task id.
    pub task_id: u32,
    /// The file's verdict.
    pub file_passed: bool,
    /// Our verdict.
    pub our_passed: bool,
    /// The file's error text.
    pub file_error: String,
    /// Why we failed it (empty when we passed it).
    pub our_reason: String,
}

/// Counts of one MBPP-R build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildSummary {
    /// Candidates read.
    pub candidates: usize,
    /// Dropped: task id outside MBPP 1-974.
    pub unknown_task: usize,
    /// Dropped: syntax errors.
    pub syntax_errors: usize,
    /// Dropped: empty programs.
    pub empty: usize,
    /// Dropped: duplicates after normalisation (same task).
    pub duplicates: usize,
    /// Dropped: passed all tests.
    pub passing: usize,
    /// Dropped: import-header artefacts (only with `drop_import_artefacts`).
    pub import_artefacts_dropped: usize,
    /// Kept tasks flagged as import-header artefacts.
    pub import_artefacts_kept: usize,
    /// Repair tasks per split name.
    pub tasks_per_split: BTreeMap<String, usize>,
    /// Distinct MBPP problems per split name.
    pub problems_per_split: BTreeMap<String, usize>,
    /// Candidates whose file verdict (`passed`) was compared with ours.
    pub compared: usize,
    /// ... of which agreed.
    pub agreed: usize,
    /// The disagreements.
    pub disagreements: Vec<Disagreement>,
}

/// Result of a build: tasks and counts.
#[derive(Debug, Clone)]
pub struct Build {
    /// Tasks of all splits, ordered by MBPP task id then candidate order.
    pub tasks: Vec<RepairTask>,
    /// Counts.
    pub summary: BuildSummary,
}

/// Build MBPP-R from candidates. Every syntactically valid, non-empty candidate is executed
/// once (so that its verdict can be compared with the file's `passed`), duplicates only once.
pub fn build_mbpp_r<E: Executor + ?Sized>(
    exec: &E,
    mbpp: &[MbppRecord],
    candidates: &[Candidate],
    opts: &BuildOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Build> {
    let by_id: HashMap<u32, &MbppRecord> = mbpp.iter().map(|r| (r.task_id, r)).collect();
    let mut summary = BuildSummary {
        candidates: candidates.len(),
        ..Default::default()
    };
    let programs: Vec<&str> = candidates.iter().map(|c| c.program.as_str()).collect();
    let parsed = normalise_all(exec, &programs)?;

    // Distinct (task, program text) pairs to execute.
    let mut run_index: HashMap<(u32, &str), usize> = HashMap::new();
    let mut to_run: Vec<(u32, &str)> = Vec::new();
    for (c, (ok, empty, _)) in candidates.iter().zip(&parsed) {
        if *ok && !*empty && by_id.contains_key(&c.task_id) {
            let key = (c.task_id, c.program.as_str());
            if let std::collections::hash_map::Entry::Vacant(v) = run_index.entry(key) {
                v.insert(to_run.len());
                to_run.push(key);
            }
        }
    }
    let shells: Vec<RepairTask> = to_run
        .iter()
        .map(|(t, p)| mbpp_task(by_id[t], String::new(), p.to_string(), None))
        .collect();
    let jobs: Vec<_> = shells
        .iter()
        .map(|t| t.grading_job(&t.buggy_program, grading_limits()))
        .collect();
    let mut verdicts: Vec<Option<GradeResult>> = vec![None; jobs.len()];
    let mut first_err: Option<DataError> = None;
    let mut done = 0usize;
    let total = jobs.len();
    exec.run_jobs(&jobs, &mut |i, r| {
        done += 1;
        progress(done, total);
        match r {
            Ok(res) => verdicts[i] = Some(GradeResult::from_job(&shells[i], &res)),
            Err(e) => {
                first_err.get_or_insert(e.into());
            }
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }

    let mut seen: HashSet<(u32, &str)> = HashSet::new();
    let mut per_task_n: HashMap<u32, usize> = HashMap::new();
    let mut kept: Vec<(u32, usize, RepairTask)> = Vec::new();
    for (ci, (c, (ok, empty, norm))) in candidates.iter().zip(&parsed).enumerate() {
        let Some(rec) = by_id.get(&c.task_id) else {
            summary.unknown_task += 1;
            continue;
        };
        let verdict = if *ok && !*empty {
            verdicts[run_index[&(c.task_id, c.program.as_str())]].as_ref()
        } else {
            None
        };
        let our_passed = verdict.is_some_and(|v| v.passed);
        if let Some(file_passed) = c.passed {
            summary.compared += 1;
            if file_passed == our_passed {
                summary.agreed += 1;
            } else {
                summary.disagreements.push(Disagreement {
                    line: c.line,
                    task_id: c.task_id,
                    file_passed,
                    our_passed,
                    file_error: c.error.clone().unwrap_or_default(),
                    our_reason: match verdict {
                        Some(v) => v.reason(),
                        None if !ok => "syntax error".into(),
                        None => "empty program".into(),
                    },
                });
            }
        }
        if !ok {
            summary.syntax_errors += 1;
            continue;
        }
        if *empty {
            summary.empty += 1;
            continue;
        }
        if !seen.insert((c.task_id, norm.as_str())) {
            summary.duplicates += 1;
            continue;
        }
        if our_passed {
            summary.passing += 1;
            continue;
        }
        let artefact = c.passed_with_import_header == Some(true);
        if artefact && opts.drop_import_artefacts {
            summary.import_artefacts_dropped += 1;
            continue;
        }
        let n = per_task_n.entry(c.task_id).or_insert(0);
        let mut task = mbpp_task(
            rec,
            format!("mbpp-r/{}/{}", c.task_id, n),
            c.program.clone(),
            c.model.clone(),
        );
        *n += 1;
        if artefact {
            summary.import_artefacts_kept += 1;
            task.meta.bug_type =
                Some("missing import (passes with a standard-library import header)".into());
        }
        kept.push((c.task_id, ci, task));
    }
    kept.sort_by_key(|(t, ci, _)| (*t, *ci));
    let tasks: Vec<RepairTask> = kept.into_iter().map(|(_, _, t)| t).collect();
    let mut problems: BTreeMap<String, HashSet<u32>> = BTreeMap::new();
    for t in &tasks {
        *summary
            .tasks_per_split
            .entry(t.meta.split.name().to_string())
            .or_insert(0) += 1;
        problems
            .entry(t.meta.split.name().to_string())
            .or_default()
            .insert(t.meta.source_task_id.parse().unwrap_or(0));
    }
    summary.problems_per_split = problems.into_iter().map(|(k, v)| (k, v.len())).collect();
    Ok(Build { tasks, summary })
}

/// Write a build to `dir`: one `<split>.jsonl` of tasks per split and `summary.json`.
pub fn write_build(build: &Build, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    for split in Split::ALL {
        let path = dir.join(format!("{}.jsonl", split.name()));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io_err(&path))?);
        for t in build.tasks.iter().filter(|t| t.meta.split == split) {
            let line = serde_json::to_string(t).map_err(|e| DataError::Invalid(e.to_string()))?;
            writeln!(f, "{line}").map_err(io_err(&path))?;
        }
        f.flush().map_err(io_err(&path))?;
    }
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&build.summary)
        .map_err(|e| DataError::Invalid(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(io_err(&path))
}

/// Read the tasks of an MBPP-R directory written by [`write_build`] (all splits).
pub fn load_mbpp_r_dir(dir: &Path) -> Result<Vec<RepairTask>> {
    let mut tasks = Vec::new();
    let mut any = false;
    for split in Split::ALL {
        let path = dir.join(format!("{}.jsonl", split.name()));
        if !path.is_file() {
            continue;
        }
        any = true;
        for (line, t) in crate::jsonl::read_jsonl::<RepairTask>(&path)? {
            if t.meta.split != split {
                return Err(malformed(
                    &path,
                    line,
                    format!("task {} belongs to split {}", t.id, t.meta.split.name()),
                ));
            }
            tasks.push(t);
        }
    }
    if !any {
        return Err(DataError::Invalid(format!(
            "{} holds no MBPP-R split files (<split>.jsonl)",
            dir.display()
        )));
    }
    Ok(tasks)
}

/// The cache directory of an MBPP-R built from the seed file with sha256 `sha`.
pub fn seed_cache_dir(sha: &str) -> PathBuf {
    crate::evalplus::cache_dir().join(format!("mbpp-r-{}", &sha[..16.min(sha.len())]))
}

/// MBPP-R for [`crate::load_benchmark`]: `<data_dir>/mbpp-r` if present, else the cached build
/// of the seed, else build from the seed now (executing every candidate) and cache it.
pub fn load_mbpp_r(data_dir: &Path, exec: Option<&dyn Executor>) -> Result<Vec<RepairTask>> {
    let built = data_dir.join("mbpp-r");
    if built.join("summary.json").is_file() {
        return load_mbpp_r_dir(&built);
    }
    let seed = data_dir.join(registry::MBPP_R_SEED);
    if !seed.is_file() {
        return Err(DataError::Missing {
            name: "mbpp-r".into(),
            path: seed,
            hint:
                "build one with `nxt data build-mbpp-r --candidates FILE --out <DATA_DIR>/mbpp-r`"
                    .into(),
        });
    }
    let cache = seed_cache_dir(&sha256_file(&seed)?);
    if cache.join("summary.json").is_file() {
        return load_mbpp_r_dir(&cache);
    }
    let mbpp = loaders::load_mbpp(&registry::locate(data_dir, "mbpp")?)?;
    let cands = read_candidates(&seed)?;
    let build = with_executor(exec, |e| {
        build_mbpp_r(e, &mbpp, &cands, &BuildOptions::default(), &mut |_, _| {})
    })?;
    write_build(&build, &cache)?;
    Ok(build.tasks)
}

/// Split of an MBPP task id, for callers that only have the id.
pub fn split_of(task_id: u32) -> Option<Split> {
    Split::of_mbpp_task(task_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_accept_several_id_and_program_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(
            &p,
            "{\"task_id\": 11, \"program\": \"x\", \"passed\": false}\n\n{\"task_id\": \"Mbpp/12\", \"solution\": \"y\"}\n",
        )
        .unwrap();
        let c = read_candidates(&p).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].task_id, c[0].passed, c[0].line), (11, Some(false), 1));
        assert_eq!(
            (c[1].task_id, c[1].program.as_str(), c[1].line),
            (12, "y", 3)
        );
        std::fs::write(
            &p,
            "{\"task_id\": 11, \"program\": \"x\"}\n{\"task_id\": \"abc\", \"program\": \"x\"}\n",
        )
        .unwrap();
        let e = read_candidates(&p).unwrap_err().to_string();
        assert!(e.contains("c.jsonl:2") && e.contains("task_id"), "{e}");
    }
}
