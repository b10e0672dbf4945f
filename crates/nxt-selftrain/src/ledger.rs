//! The loop's ledger, `selftrain.sqlite` in the run directory: the configuration, which stages
//! are finished (with their results), the hard problems, every sample's keep/drop decision,
//! the training sets (path, sha256, size), the trainer's per-step metrics and every
//! evaluation's summary. The samples, parses and verdicts themselves live in the `nxt eval`
//! stores of each sampling stage (`<stage>/run.sqlite`), written as they arrive.
//!
//! A stage's records and its "done" mark are written in one transaction, so a kill leaves a
//! stage either finished or absent; the loop redoes absent stages (their own stores resume).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::SelftrainError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stages(
    name TEXT PRIMARY KEY,
    result_json TEXT NOT NULL,
    wall_s REAL NOT NULL,
    finished_at TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS hard_tasks(
    task_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL,
    c INTEGER NOT NULL,
    hard INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS decisions(
    iteration INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    sample_idx INTEGER NOT NULL,
    decision TEXT NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY(iteration, task_id, sample_idx));
CREATE TABLE IF NOT EXISTS training_sets(
    iteration INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    examples INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS train_metrics(
    iteration INTEGER NOT NULL,
    step INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    PRIMARY KEY(iteration, step));
";

/// One keep/drop decision about a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Task id.
    pub task_id: String,
    /// The sample's index among its prompt's samples.
    pub sample_idx: i64,
    /// `kept`, `failed`, `unparseable`, `duplicate` or `over_cap`.
    pub decision: String,
    /// Completion tokens of the sample.
    pub completion_tokens: i64,
}

/// What one stage's transaction writes besides its result.
#[derive(Debug, Default)]
pub struct StageRecords<'a> {
    /// Hard-problem rows `(task_id, n, c, hard)`.
    pub hard: &'a [(String, usize, usize, bool)],
    /// Keep decisions of an iteration.
    pub decisions: Option<(usize, &'a [Decision])>,
    /// A training set `(iteration, path, sha256, examples)`.
    pub training_set: Option<(usize, &'a str, &'a str, usize)>,
    /// Trainer metrics `(iteration, lines of metrics.jsonl)`.
    pub metrics: Option<(usize, &'a [serde_json::Value])>,
}

/// The open ledger.
pub struct Ledger {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Ledger {
    /// Opens (creating) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger, SelftrainError> {
        let p = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| SelftrainError::Ledger {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let l = Ledger { conn, path: p };
        l.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
            )
            .map_err(|e| l.err(e))?;
        l.conn.execute_batch(SCHEMA).map_err(|e| l.err(e))?;
        Ok(l)
    }

    fn err(&self, e: impl std::fmt::Display) -> SelftrainError {
        SelftrainError::Ledger {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The ledger's file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, SelftrainError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets a meta value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), SelftrainError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The result of a finished stage.
    pub fn stage(&self, name: &str) -> Result<Option<(serde_json::Value, f64)>, SelftrainError> {
        let row: Option<(String, f64)> = self
            .conn
            .query_row(
                "SELECT result_json, wall_s FROM stages WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some((j, w)) => serde_json::from_str(&j)
                .map(|v| Some((v, w)))
                .map_err(|e| self.err(format!("stage {name}: bad result: {e}"))),
        }
    }

    /// Names of the finished stages, in the order they finished.
    pub fn stages(&self) -> Result<Vec<String>, SelftrainError> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM stages ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Marks a stage finished with its result and records, all in one transaction.
    pub fn finish_stage(
        &mut self,
        name: &str,
        result: &serde_json::Value,
        wall_s: f64,
        records: &StageRecords<'_>,
    ) -> Result<(), SelftrainError> {
        let path = self.path.clone();
        let err = |e: rusqlite::Error| SelftrainError::Ledger {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        for (task, n, c, hard) in records.hard {
            tx.execute(
                "INSERT OR REPLACE INTO hard_tasks(task_id, n, c, hard) VALUES (?1, ?2, ?3, ?4)",
                params![task, *n as i64, *c as i64, *hard as i64],
            )
            .map_err(err)?;
        }
        if let Some((it, ds)) = records.decisions {
            tx.execute("DELETE FROM decisions WHERE iteration = ?1", [it as i64])
                .map_err(err)?;
            for d in ds {
                tx.execute(
                    "INSERT INTO decisions(iteration, task_id, sample_idx, decision, completion_tokens) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![it as i64, d.task_id, d.sample_idx, d.decision, d.completion_tokens],
                )
                .map_err(err)?;
            }
        }
        if let Some((it, p, sha, n)) = records.training_set {
            tx.execute(
                "INSERT OR REPLACE INTO training_sets(iteration, path, sha256, examples) VALUES (?1, ?2, ?3, ?4)",
                params![it as i64, p, sha, n as i64],
            )
            .map_err(err)?;
        }
        if let Some((it, lines)) = records.metrics {
            tx.execute(
                "DELETE FROM train_metrics WHERE iteration = ?1",
                [it as i64],
            )
            .map_err(err)?;
            for (i, m) in lines.iter().enumerate() {
                let step = m
                    .get("step")
                    .and_then(|s| s.as_i64())
                    .unwrap_or(i as i64 + 1);
                tx.execute(
                    "INSERT OR REPLACE INTO train_metrics(iteration, step, metrics_json) VALUES (?1, ?2, ?3)",
                    params![it as i64, step, m.to_string()],
                )
                .map_err(err)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO stages(name, result_json, wall_s) VALUES (?1, ?2, ?3)",
            params![name, result.to_string(), wall_s],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// The hard-problem rows `(task_id, n, c, hard)`, by task id.
    pub fn hard_tasks(&self) -> Result<Vec<(String, usize, usize, bool)>, SelftrainError> {
        let mut st = self
            .conn
            .prepare("SELECT task_id, n, c, hard FROM hard_tasks ORDER BY task_id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as usize,
                    r.get::<_, i64>(2)? as usize,
                    r.get::<_, i64>(3)? != 0,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The keep/drop decisions of an iteration, by task and sample index.
    pub fn decisions(&self, iteration: usize) -> Result<Vec<Decision>, SelftrainError> {
        let mut st = self
            .conn
            .prepare("SELECT task_id, sample_idx, decision, completion_tokens FROM decisions WHERE iteration = ?1 ORDER BY task_id, sample_idx")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([iteration as i64], |r| {
                Ok(Decision {
                    task_id: r.get(0)?,
                    sample_idx: r.get(1)?,
                    decision: r.get(2)?,
                    completion_tokens: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The training set of an iteration `(path, sha256, examples)`.
    pub fn training_set(
        &self,
        iteration: usize,
    ) -> Result<Option<(String, String, usize)>, SelftrainError> {
        self.conn
            .query_row(
                "SELECT path, sha256, examples FROM training_sets WHERE iteration = ?1",
                [iteration as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as usize)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}
