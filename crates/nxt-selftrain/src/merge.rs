//! `nxt selftrain merge`: joins the shard stores of a sampling stage
//! (`<stage>/shard-i-of-N/run.sqlite`, written by `nxt selftrain --shard i/N`) into the
//! stage's own store, which the unsharded run then finds complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nxt_core::RunStore;

use crate::error::SelftrainError;
use crate::ledger::Ledger;

/// What one merged stage received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedStage {
    /// Stage name (`hard`, `iter-2/sample`).
    pub stage: String,
    /// Shards merged.
    pub shards: usize,
    /// Samples added to the stage's store.
    pub samples: usize,
}

fn shard_dirs(stage_dir: &Path) -> Result<BTreeMap<usize, Vec<(usize, PathBuf)>>, SelftrainError> {
    let mut by_count: BTreeMap<usize, Vec<(usize, PathBuf)>> = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(stage_dir) else {
        return Ok(by_count);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("shard-") else {
            continue;
        };
        let Some((i, n)) = rest.split_once("-of-") else {
            continue;
        };
        if let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<usize>()) {
            by_count.entry(n).or_default().push((i, e.path()));
        }
    }
    Ok(by_count)
}

/// Merges every unfinished sampling stage's shards. A stage whose shard set is incomplete
/// (a shard directory missing) is an error naming the missing shards; nothing is merged
/// for it.
pub fn merge_shards(run_dir: &Path) -> Result<Vec<MergedStage>, SelftrainError> {
    let ledger = Ledger::open(&run_dir.join("selftrain.sqlite"))?;
    let mut stages = vec!["hard".to_string()];
    for i in 1..1000 {
        let s = format!("iter-{i}/sample");
        if !run_dir.join(&s).exists() {
            break;
        }
        stages.push(s);
    }
    let mut out = Vec::new();
    for stage in stages {
        if ledger.stage(&stage)?.is_some() {
            continue;
        }
        let dir = run_dir.join(&stage);
        for (count, mut shards) in shard_dirs(&dir)? {
            shards.sort();
            let have: Vec<usize> = shards.iter().map(|s| s.0).collect();
            let missing: Vec<String> = (0..count)
                .filter(|i| !have.contains(i))
                .map(|i| format!("{i}/{count}"))
                .collect();
            if !missing.is_empty() {
                return Err(SelftrainError::Shard(format!(
                    "{stage}: shards {} have not run (no {}/shard-i-of-{count})",
                    missing.join(", "),
                    dir.display()
                )));
            }
            let mut store = RunStore::open(&dir.join("run.sqlite"))?;
            let mut samples = 0;
            for (_, p) in &shards {
                let db = p.join("run.sqlite");
                if !db.exists() {
                    return Err(SelftrainError::Shard(format!(
                        "{}: no run.sqlite (the shard did not start)",
                        p.display()
                    )));
                }
                samples += store.import(&db)?.samples;
            }
            out.push(MergedStage {
                stage: stage.clone(),
                shards: shards.len(),
                samples,
            });
        }
    }
    Ok(out)
}
