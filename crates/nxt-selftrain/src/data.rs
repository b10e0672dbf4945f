//! Loading the loop's task sets and proving that no dev or test problem is trained on.

use std::collections::BTreeSet;
use std::path::Path;

use nxt_data::{RepairTask, Split};
use nxt_sandbox::Pool;

use crate::config::is_path_source;
use crate::error::SelftrainError;

/// Loads one data source: `mbpp-r:SPLIT`, `hefix+`, `hefix`, or a JSONL file of repair tasks.
pub fn load_source(
    source: &str,
    data_dir: &Path,
    pool: &Pool,
    limit: Option<usize>,
) -> Result<Vec<RepairTask>, SelftrainError> {
    let mut tasks = if is_path_source(source) {
        read_tasks(Path::new(source))?
    } else {
        let (bench, split) = match source.split_once(':') {
            Some((b, s)) => (b, Some(s)),
            None => (source, None),
        };
        let all = nxt_data::load_benchmark_with(bench, data_dir, Some(pool))?;
        match split.map(|s| {
            Split::parse(s).ok_or_else(|| SelftrainError::Config {
                key: "data".into(),
                message: format!("`{source}`: unknown split `{s}`"),
            })
        }) {
            Some(split) => {
                let split = split?;
                all.into_iter().filter(|t| t.meta.split == split).collect()
            }
            None => all,
        }
    };
    if let Some(n) = limit {
        tasks.truncate(n);
    }
    if tasks.is_empty() {
        return Err(SelftrainError::Config {
            key: "data".into(),
            message: format!("`{source}` has no tasks"),
        });
    }
    Ok(tasks)
}

/// Reads a JSONL file of [`RepairTask`]s; a bad line is named by file and line number.
pub fn read_tasks(path: &Path) -> Result<Vec<RepairTask>, SelftrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| SelftrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let t: RepairTask = serde_json::from_str(line).map_err(|e| SelftrainError::Io {
            path: format!("{}:{}", path.display(), i + 1),
            message: format!("not a repair task: {e}"),
        })?;
        out.push(t);
    }
    Ok(out)
}

/// The problem a task is about: its source dataset and source task id. Several repair tasks
/// (buggy programs) share one problem; a problem is in one split only.
pub fn problem_key(t: &RepairTask) -> String {
    format!("{}/{}", t.meta.source_dataset.name(), t.meta.source_task_id)
}

/// Fails when a training task shares its id or its problem with a dev or test task.
pub fn check_no_leak(
    train: &[RepairTask],
    held_out: &[(&str, &[RepairTask])],
) -> Result<(), SelftrainError> {
    let ids: BTreeSet<&str> = train.iter().map(|t| t.id.as_str()).collect();
    let problems: BTreeSet<String> = train.iter().map(problem_key).collect();
    for (name, tasks) in held_out {
        for t in tasks.iter() {
            if ids.contains(t.id.as_str()) {
                return Err(SelftrainError::Leak(format!(
                    "task {} is in the training set and in {name}",
                    t.id
                )));
            }
            let p = problem_key(t);
            if problems.contains(&p) {
                return Err(SelftrainError::Leak(format!(
                    "problem {p} (task {}) of {name} is also a training problem",
                    t.id
                )));
            }
        }
    }
    Ok(())
}
