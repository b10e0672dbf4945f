//! The run store: one SQLite file per run holding the run's configuration, its tasks, every
//! prompt, every sampled completion (with token usage), every parse result and every verdict.
//!
//! Every record is written in its own transaction as soon as it exists (WAL journal), so a run
//! killed at any point (Ctrl-C, `kill -9`) loses at most the work in flight; reopening the
//! store and running again does only the missing work, and uniqueness constraints make a
//! duplicate impossible.

use std::path::Path;

use nxt_llm::{Completion, Prompt};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::parse::{ParseStatus, ParsedCompletion};
use crate::task::RepairTask;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failure.
    #[error("run store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored record could not be decoded.
    #[error("run store {path}: bad record: {message}")]
    Corrupt {
        /// The database file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The run directory holds a run with another configuration.
    #[error("run store {path} holds a run with another configuration: {differences}; use another --run-dir, or the stored settings to resume it")]
    ConfigMismatch {
        /// The database file.
        path: String,
        /// Each setting that differs: `key: stored X, requested Y`.
        differences: String,
    },
}

/// The kind of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// The `n` sampled repairs.
    Sample,
    /// The greedy repair.
    Greedy,
    /// A proxy model's fix given one sampled rationale.
    Proxy,
}

impl PromptKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Sample => "sample",
            PromptKind::Greedy => "greedy",
            PromptKind::Proxy => "proxy",
        }
    }
}

/// A task's preparation: the failing test found and its rendered trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPrep {
    /// The test traced (None when no shown test fails).
    pub failing_test: Option<String>,
    /// The rendered trace (None when tracing failed or was not asked for).
    pub trace: Option<String>,
    /// Why there is no trace, if there is none.
    pub note: Option<String>,
}

/// One stored sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    /// Row id.
    pub id: i64,
    /// Index among the prompt's samples (0-based).
    pub idx: i64,
    /// Completion text.
    pub text: String,
}

/// One stored parse + verdict of a sample, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Task id.
    pub task_id: String,
    /// Sample row id.
    pub sample_id: i64,
    /// Parsed successfully.
    pub parsed: Option<bool>,
    /// Passed all grading tests (None: not graded yet).
    pub passed: Option<bool>,
}

/// Row counts, for checks and progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Tasks.
    pub tasks: i64,
    /// Tasks whose preparation (failing test + trace) is stored.
    pub prepared: i64,
    /// Prompts.
    pub prompts: i64,
    /// Samples.
    pub samples: i64,
    /// Parse results.
    pub parses: i64,
    /// Verdicts.
    pub verdicts: i64,
    /// Recorded errors.
    pub errors: i64,
}

/// One sample with its parse and verdict (see [`RunStore::sample_records`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRecord {
    /// Task id.
    pub task_id: String,
    /// Sample row id.
    pub sample_id: i64,
    /// Index among its prompt's samples.
    pub idx: i64,
    /// Completion text.
    pub text: String,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Generated tokens.
    pub completion_tokens: i64,
    /// `stop`, `length` or `error`.
    pub finish_reason: String,
    /// Parsed successfully (None: not parsed yet).
    pub parsed: Option<bool>,
    /// The parsed rationale.
    pub rationale: Option<String>,
    /// The parsed fixed program.
    pub program: Option<String>,
    /// Passed all grading tests (None: not graded yet).
    pub passed: Option<bool>,
    /// The rationale's faithfulness verdict (`faithful`, `unfaithful`, `no_claim`; None: not
    /// checked yet).
    pub faithfulness: Option<String>,
}

/// A sample's rationale waiting for the faithfulness check (see
/// [`RunStore::faithfulness_pending`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRationale {
    /// Task id.
    pub task_id: String,
    /// Sample row id.
    pub sample_id: i64,
    /// The parsed rationale.
    pub rationale: String,
}

/// One sample's fix verdict and faithfulness verdict (see [`RunStore::faithfulness_outcomes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FaithfulnessOutcome {
    /// Task id.
    pub task_id: String,
    /// Sample row id.
    pub sample_id: i64,
    /// Passed all grading tests (None: not graded yet).
    pub passed: Option<bool>,
    /// `faithful`, `unfaithful` or `no_claim` (None: not checked).
    pub verdict: Option<String>,
    /// Claims supported, contradicted, unverifiable.
    pub claims: (i64, i64, i64),
}

/// What [`RunStore::import`] added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportCounts {
    /// New samples.
    pub samples: usize,
}

/// Token usage summed over samples of one prompt kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Number of completions.
    pub completions: i64,
    /// Prompt tokens (summed per completion as the backend reported them).
    pub prompt_tokens: i64,
    /// Generated tokens.
    pub completion_tokens: i64,
    /// Completions cut by `max_tokens`.
    pub truncated: i64,
    /// Completions cut by the model's context before `max_tokens` (the prompt left fewer
    /// tokens than that); counted apart from [`Usage::truncated`].
    #[serde(default)]
    pub context_cut: i64,
    /// Samples recorded as failed because the request was invalid (e.g. prompt too long).
    pub failed: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks(
    task_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    input_json TEXT NOT NULL,
    prepared INTEGER NOT NULL DEFAULT 0,
    failing_test TEXT,
    trace TEXT,
    note TEXT);
CREATE TABLE IF NOT EXISTS prompts(
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    kind TEXT NOT NULL,
    parent_sample INTEGER NOT NULL DEFAULT 0,
    prompt_json TEXT NOT NULL,
    variant TEXT NOT NULL DEFAULT '',
    UNIQUE(task_id, kind, parent_sample, variant));
CREATE TABLE IF NOT EXISTS samples(
    id INTEGER PRIMARY KEY,
    prompt_id INTEGER NOT NULL REFERENCES prompts(id),
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    UNIQUE(prompt_id, idx));
CREATE TABLE IF NOT EXISTS parses(
    sample_id INTEGER PRIMARY KEY REFERENCES samples(id),
    ok INTEGER NOT NULL,
    rationale TEXT NOT NULL,
    program TEXT,
    reason TEXT,
    completed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts(
    sample_id INTEGER PRIMARY KEY REFERENCES samples(id),
    passed INTEGER NOT NULL,
    detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faithfulness(
    sample_id INTEGER PRIMARY KEY REFERENCES samples(id),
    verdict TEXT NOT NULL,
    supported INTEGER NOT NULL,
    contradicted INTEGER NOT NULL,
    unverifiable INTEGER NOT NULL,
    report_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS errors(
    id INTEGER PRIMARY KEY,
    task_id TEXT,
    stage TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (datetime('now')));
";

/// An open run store.
pub struct RunStore {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RunStore {
    /// Open (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<RunStore, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: p.clone(),
            source,
        })?;
        let store = RunStore { conn, path: p };
        store
            .conn
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;")
            .map_err(|e| store.err(e))?;
        store.conn.execute_batch(SCHEMA).map_err(|e| store.err(e))?;
        store.migrate().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Stores written before prompts had a `variant` (the proxy model of a proxy prompt) get
    /// the column; their proxy prompts belong to the proxy model named in the stored config.
    fn migrate(&self) -> Result<(), rusqlite::Error> {
        let has_variant: bool = self.conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('prompts') WHERE name = 'variant'",
            [],
            |r| r.get(0),
        )?;
        if has_variant {
            return Ok(());
        }
        let proxy: String = self
            .conn
            .query_row(
                "SELECT COALESCE(json_extract(value, '$.proxy_model'), '') FROM meta WHERE key = 'config'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default();
        self.conn.execute_batch(
            "PRAGMA foreign_keys=OFF;
             BEGIN;
             CREATE TABLE prompts_v2(
                 id INTEGER PRIMARY KEY,
                 task_id TEXT NOT NULL REFERENCES tasks(task_id),
                 kind TEXT NOT NULL,
                 parent_sample INTEGER NOT NULL DEFAULT 0,
                 prompt_json TEXT NOT NULL,
                 variant TEXT NOT NULL DEFAULT '',
                 UNIQUE(task_id, kind, parent_sample, variant));
             INSERT INTO prompts_v2(id, task_id, kind, parent_sample, prompt_json)
                 SELECT id, task_id, kind, parent_sample, prompt_json FROM prompts;
             DROP TABLE prompts;
             ALTER TABLE prompts_v2 RENAME TO prompts;
             COMMIT;
             PRAGMA foreign_keys=ON;",
        )?;
        self.conn.execute(
            "UPDATE prompts SET variant = ?1 WHERE kind = 'proxy'",
            params![proxy],
        )?;
        Ok(())
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, message: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            message,
        }
    }

    /// The database file path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Record the run configuration, or check it against the stored one: a run directory holds
    /// one run. Keys in `volatile` (e.g. `limit`) may differ.
    pub fn check_config(
        &self,
        config: &serde_json::Value,
        volatile: &[&str],
    ) -> Result<(), StoreError> {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                for k in volatile {
                    o.remove(*k);
                }
            }
            v
        };
        let stored: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='config'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        match stored {
            None => {
                self.conn
                    .execute(
                        "INSERT INTO meta(key, value) VALUES('config', ?1)",
                        params![config.to_string()],
                    )
                    .map_err(|e| self.err(e))?;
                Ok(())
            }
            Some(s) => {
                let old: serde_json::Value =
                    serde_json::from_str(&s).map_err(|e| self.corrupt(format!("config: {e}")))?;
                let differences = config_differences(&strip(&old), &strip(config));
                if differences.is_empty() {
                    Ok(())
                } else {
                    Err(StoreError::ConfigMismatch {
                        path: self.path.clone(),
                        differences: differences.join("; "),
                    })
                }
            }
        }
    }

    /// The stored run configuration.
    pub fn config(&self) -> Result<Option<serde_json::Value>, StoreError> {
        let s: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='config'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        s.map(|s| serde_json::from_str(&s).map_err(|e| self.corrupt(format!("config: {e}"))))
            .transpose()
    }

    /// Store a task (no-op when already stored).
    pub fn put_task(&self, position: usize, task: &RepairTask) -> Result<(), StoreError> {
        let json = serde_json::to_string(task).map_err(|e| self.corrupt(e.to_string()))?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO tasks(task_id, position, input_json) VALUES(?1, ?2, ?3)",
                params![task.id, position as i64, json],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// All stored tasks, in position order.
    pub fn tasks(&self) -> Result<Vec<RepairTask>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT input_json FROM tasks ORDER BY position")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let s = r.map_err(|e| self.err(e))?;
            out.push(serde_json::from_str(&s).map_err(|e| self.corrupt(format!("task: {e}")))?);
        }
        Ok(out)
    }

    /// Store a task's preparation.
    pub fn put_prep(&self, task_id: &str, prep: &TaskPrep) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE tasks SET prepared=1, failing_test=?2, trace=?3, note=?4 WHERE task_id=?1",
                params![task_id, prep.failing_test, prep.trace, prep.note],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A task's stored preparation, if done.
    pub fn prep(&self, task_id: &str) -> Result<Option<TaskPrep>, StoreError> {
        self.conn
            .query_row(
                "SELECT failing_test, trace, note FROM tasks WHERE task_id=?1 AND prepared=1",
                params![task_id],
                |r| {
                    Ok(TaskPrep {
                        failing_test: r.get(0)?,
                        trace: r.get(1)?,
                        note: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Get or create the prompt of (`task_id`, `kind`, `parent_sample`); returns its id.
    /// `parent_sample` is the sample whose rationale a proxy prompt carries (0 otherwise).
    pub fn put_prompt(
        &self,
        task_id: &str,
        kind: PromptKind,
        parent_sample: i64,
        prompt: &Prompt,
    ) -> Result<i64, StoreError> {
        self.put_prompt_variant(task_id, kind, parent_sample, "", prompt)
    }

    /// [`RunStore::put_prompt`] for one variant of a prompt kind: proxy prompts are keyed by
    /// their proxy model, so several proxies of one run coexist.
    pub fn put_prompt_variant(
        &self,
        task_id: &str,
        kind: PromptKind,
        parent_sample: i64,
        variant: &str,
        prompt: &Prompt,
    ) -> Result<i64, StoreError> {
        let json = serde_json::to_string(prompt).map_err(|e| self.corrupt(e.to_string()))?;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR IGNORE INTO prompts(task_id, kind, parent_sample, prompt_json, variant) VALUES(?1, ?2, ?3, ?4, ?5)",
            params![task_id, kind.as_str(), parent_sample, json, variant],
        )
        .map_err(|e| self.err(e))?;
        let id = tx
            .query_row(
                "SELECT id FROM prompts WHERE task_id=?1 AND kind=?2 AND parent_sample=?3 AND variant=?4",
                params![task_id, kind.as_str(), parent_sample, variant],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// The stored prompt of (`task_id`, `kind`, `parent_sample`), if any.
    pub fn prompt(
        &self,
        task_id: &str,
        kind: PromptKind,
        parent_sample: i64,
    ) -> Result<Option<(i64, Prompt)>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT id, prompt_json FROM prompts WHERE task_id=?1 AND kind=?2 AND parent_sample=?3 AND variant=''",
                params![task_id, kind.as_str(), parent_sample],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(id, s)| {
            Ok((
                id,
                serde_json::from_str(&s).map_err(|e| self.corrupt(format!("prompt {id}: {e}")))?,
            ))
        })
        .transpose()
    }

    /// Number of samples stored for a prompt.
    pub fn sample_count(&self, prompt_id: i64) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM samples WHERE prompt_id=?1",
                params![prompt_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(n as usize)
    }

    /// Store completions of a prompt as samples `first_idx..`, in one transaction. Samples
    /// whose index is already stored are ignored. Returns the new rows' ids.
    pub fn put_samples(
        &self,
        prompt_id: i64,
        first_idx: usize,
        completions: &[Completion],
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let mut ids = Vec::new();
        for (i, c) in completions.iter().enumerate() {
            let finish = match c.finish_reason {
                nxt_llm::FinishReason::Stop => "stop",
                nxt_llm::FinishReason::Length => "length",
            };
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO samples(prompt_id, idx, text, prompt_tokens, completion_tokens, finish_reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                    params![prompt_id, (first_idx + i) as i64, c.text, c.prompt_tokens as i64, c.completion_tokens as i64, finish],
                )
                .map_err(|e| self.err(e))?;
            if n == 1 {
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
    }

    /// Record `count` samples `first_idx..` of a prompt whose generation failed for good (an
    /// invalid request): empty text, finish reason `error`. They count as failures.
    pub fn put_failed_samples(
        &self,
        prompt_id: i64,
        first_idx: usize,
        count: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let mut ids = Vec::new();
        for i in 0..count {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO samples(prompt_id, idx, text, prompt_tokens, completion_tokens, finish_reason) VALUES(?1, ?2, '', 0, 0, 'error')",
                    params![prompt_id, (first_idx + i) as i64],
                )
                .map_err(|e| self.err(e))?;
            if n == 1 {
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
    }

    /// The samples of a prompt, by index.
    pub fn samples(&self, prompt_id: i64) -> Result<Vec<SampleRow>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, idx, text FROM samples WHERE prompt_id=?1 ORDER BY idx")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![prompt_id], |r| {
                Ok(SampleRow {
                    id: r.get(0)?,
                    idx: r.get(1)?,
                    text: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The text of one sample.
    pub fn sample_text(&self, sample_id: i64) -> Result<String, StoreError> {
        self.conn
            .query_row(
                "SELECT text FROM samples WHERE id=?1",
                params![sample_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Store a parse result (no-op when one is stored).
    pub fn put_parse(&self, sample_id: i64, p: &ParsedCompletion) -> Result<(), StoreError> {
        let reason = match &p.status {
            ParseStatus::Ok => None,
            ParseStatus::Unparseable { reason } => Some(reason.clone()),
        };
        self.conn
            .execute(
                "INSERT OR IGNORE INTO parses(sample_id, ok, rationale, program, reason, completed) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                params![sample_id, p.is_ok(), p.rationale, p.program, reason, p.completed_from_original],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The stored parse of a sample.
    pub fn parse_of(&self, sample_id: i64) -> Result<Option<ParsedCompletion>, StoreError> {
        self.conn
            .query_row(
                "SELECT ok, rationale, program, reason, completed FROM parses WHERE sample_id=?1",
                params![sample_id],
                |r| {
                    let ok: bool = r.get(0)?;
                    let reason: Option<String> = r.get(3)?;
                    Ok(ParsedCompletion {
                        status: if ok {
                            ParseStatus::Ok
                        } else {
                            ParseStatus::Unparseable {
                                reason: reason.unwrap_or_default(),
                            }
                        },
                        rationale: r.get(1)?,
                        program: r.get(2)?,
                        completed_from_original: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Store a verdict (no-op when one is stored). `detail` is a JSON summary.
    pub fn put_verdict(
        &self,
        sample_id: i64,
        passed: bool,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO verdicts(sample_id, passed, detail) VALUES(?1, ?2, ?3)",
                params![sample_id, passed, detail.to_string()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The stored verdict of a sample.
    pub fn verdict_of(&self, sample_id: i64) -> Result<Option<bool>, StoreError> {
        self.conn
            .query_row(
                "SELECT passed FROM verdicts WHERE sample_id=?1",
                params![sample_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Record a failure of some stage (generation, tracing) for the report.
    pub fn put_error(
        &self,
        task_id: Option<&str>,
        stage: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO errors(task_id, stage, message) VALUES(?1, ?2, ?3)",
                params![task_id, stage, message],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Recorded errors: (task id, stage, message).
    pub fn errors(&self) -> Result<Vec<(Option<String>, String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT task_id, stage, message FROM errors ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Parse and verdict state of every sample of one prompt kind (all variants), in task
    /// order.
    pub fn outcomes(&self, kind: PromptKind) -> Result<Vec<Outcome>, StoreError> {
        self.outcomes_where(kind, None)
    }

    /// [`RunStore::outcomes`] of one variant (a proxy model's fixes).
    pub fn outcomes_variant(
        &self,
        kind: PromptKind,
        variant: &str,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.outcomes_where(kind, Some(variant))
    }

    /// The variants stored for a prompt kind (the proxy models of a run), sorted.
    pub fn variants(&self, kind: PromptKind) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT variant FROM prompts WHERE kind = ?1 ORDER BY variant")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![kind.as_str()], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Removes every sample whose generation failed (finish reason `error`, written by
    /// earlier versions for invalid requests), with its parse, verdict and the proxy prompts
    /// built on it, so that a rerun generates them again. Returns how many were removed.
    pub fn drop_failed_samples(&self) -> Result<usize, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let n: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM samples WHERE finish_reason = 'error'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if n > 0 {
            tx.execute_batch(
                "CREATE TEMP TABLE failed_samples(id INTEGER PRIMARY KEY);
                 CREATE TEMP TABLE failed_prompts(id INTEGER PRIMARY KEY);
                 INSERT INTO failed_samples SELECT id FROM samples WHERE finish_reason = 'error';
                 INSERT INTO failed_prompts SELECT id FROM prompts
                     WHERE kind = 'proxy' AND parent_sample IN (SELECT id FROM failed_samples);
                 INSERT OR IGNORE INTO failed_samples
                     SELECT id FROM samples WHERE prompt_id IN (SELECT id FROM failed_prompts);
                 DELETE FROM verdicts WHERE sample_id IN (SELECT id FROM failed_samples);
                 DELETE FROM faithfulness WHERE sample_id IN (SELECT id FROM failed_samples);
                 DELETE FROM parses WHERE sample_id IN (SELECT id FROM failed_samples);
                 DELETE FROM samples WHERE id IN (SELECT id FROM failed_samples);
                 DELETE FROM prompts WHERE id IN (SELECT id FROM failed_prompts);
                 DROP TABLE failed_samples;
                 DROP TABLE failed_prompts;",
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n as usize)
    }

    fn outcomes_where(
        &self,
        kind: PromptKind,
        variant: Option<&str>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.task_id, s.id, pa.ok, v.passed FROM samples s
                 JOIN prompts p ON p.id = s.prompt_id
                 JOIN tasks t ON t.task_id = p.task_id
                 LEFT JOIN parses pa ON pa.sample_id = s.id
                 LEFT JOIN verdicts v ON v.sample_id = s.id
                 WHERE p.kind = ?1 AND (?2 IS NULL OR p.variant = ?2)
                 ORDER BY t.position, p.parent_sample, s.idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![kind.as_str(), variant], |r| {
                Ok(Outcome {
                    task_id: r.get(0)?,
                    sample_id: r.get(1)?,
                    parsed: r.get(2)?,
                    passed: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Token usage of one prompt kind (all variants, all tasks; every completion that ended
    /// at a length limit counts as cut at `max_tokens`).
    pub fn usage(&self, kind: PromptKind) -> Result<Usage, StoreError> {
        self.usage_of(kind, None, None, None)
    }

    /// Token usage of one prompt kind, of one variant when `variant` is given, over the tasks
    /// in `tasks` when given (so that a report's every figure covers the same tasks). With the
    /// run's `max_tokens`, a completion that ended at a length limit with fewer tokens than
    /// that was cut by the context ([`Usage::context_cut`]), not by `max_tokens`.
    pub fn usage_of(
        &self,
        kind: PromptKind,
        variant: Option<&str>,
        tasks: Option<&[&str]>,
        max_tokens: Option<usize>,
    ) -> Result<Usage, StoreError> {
        let tasks_json = tasks.map(|t| serde_json::Value::from(t.to_vec()).to_string());
        let max_tokens = max_tokens.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(s.prompt_tokens),0), COALESCE(SUM(s.completion_tokens),0),
                        COALESCE(SUM(s.finish_reason='length' AND (?4 IS NULL OR s.completion_tokens >= ?4)),0),
                        COALESCE(SUM(s.finish_reason='length' AND ?4 IS NOT NULL AND s.completion_tokens < ?4),0),
                        COALESCE(SUM(s.finish_reason='error'),0)
                 FROM samples s JOIN prompts p ON p.id = s.prompt_id
                 WHERE p.kind = ?1 AND (?2 IS NULL OR p.variant = ?2)
                   AND (?3 IS NULL OR p.task_id IN (SELECT value FROM json_each(?3)))",
                params![kind.as_str(), variant, tasks_json, max_tokens],
                |r| {
                    Ok(Usage {
                        completions: r.get(0)?,
                        prompt_tokens: r.get(1)?,
                        completion_tokens: r.get(2)?,
                        truncated: r.get(3)?,
                        context_cut: r.get(4)?,
                        failed: r.get(5)?,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Row counts of every table.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let q = |sql: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| self.err(e))
        };
        Ok(Counts {
            tasks: q("SELECT COUNT(*) FROM tasks")?,
            prepared: q("SELECT COUNT(*) FROM tasks WHERE prepared=1")?,
            prompts: q("SELECT COUNT(*) FROM prompts")?,
            samples: q("SELECT COUNT(*) FROM samples")?,
            parses: q("SELECT COUNT(*) FROM parses")?,
            verdicts: q("SELECT COUNT(*) FROM verdicts")?,
            errors: q("SELECT COUNT(*) FROM errors")?,
        })
    }

    /// Every sample of one prompt kind with its parse and verdict, in task order, for
    /// consumers that select samples (self-training's keep step).
    pub fn sample_records(&self, kind: PromptKind) -> Result<Vec<SampleRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.task_id, s.id, s.idx, s.text, s.prompt_tokens, s.completion_tokens,
                        s.finish_reason, pa.ok, pa.rationale, pa.program, v.passed, f.verdict
                 FROM samples s
                 JOIN prompts p ON p.id = s.prompt_id
                 JOIN tasks t ON t.task_id = p.task_id
                 LEFT JOIN parses pa ON pa.sample_id = s.id
                 LEFT JOIN verdicts v ON v.sample_id = s.id
                 LEFT JOIN faithfulness f ON f.sample_id = s.id
                 WHERE p.kind = ?1 ORDER BY t.task_id, p.parent_sample, s.idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![kind.as_str()], |r| {
                Ok(SampleRecord {
                    task_id: r.get(0)?,
                    sample_id: r.get(1)?,
                    idx: r.get(2)?,
                    text: r.get(3)?,
                    prompt_tokens: r.get(4)?,
                    completion_tokens: r.get(5)?,
                    finish_reason: r.get(6)?,
                    parsed: r.get(7)?,
                    rationale: r.get(8)?,
                    program: r.get(9)?,
                    passed: r.get(10)?,
                    faithfulness: r.get(11)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Stores the faithfulness check of a sample's rationale (claims and verdicts).
    pub fn put_faithfulness(
        &self,
        sample_id: i64,
        report: &nxt_faithful::FaithfulnessReport,
    ) -> Result<(), StoreError> {
        use nxt_faithful::ClaimVerdict as V;
        let json = serde_json::to_string(report)
            .map_err(|e| self.corrupt(format!("faithfulness report: {e}")))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO faithfulness(sample_id, verdict, supported, contradicted, unverifiable, report_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    sample_id,
                    report.verdict.as_str(),
                    report.count(V::Supported) as i64,
                    report.count(V::Contradicted) as i64,
                    report.count(V::Unverifiable) as i64,
                    json
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The stored faithfulness check of a sample, if any.
    pub fn faithfulness_of(
        &self,
        sample_id: i64,
    ) -> Result<Option<nxt_faithful::FaithfulnessReport>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT report_json FROM faithfulness WHERE sample_id = ?1",
                params![sample_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| self.corrupt(format!("faithfulness of sample {sample_id}: {e}")))
        })
        .transpose()
    }

    /// Parsed samples of one prompt kind whose rationale has not been checked yet, in task
    /// order.
    pub fn faithfulness_pending(
        &self,
        kind: PromptKind,
    ) -> Result<Vec<PendingRationale>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.task_id, s.id, pa.rationale FROM samples s
                 JOIN prompts p ON p.id = s.prompt_id
                 JOIN tasks t ON t.task_id = p.task_id
                 JOIN parses pa ON pa.sample_id = s.id
                 LEFT JOIN faithfulness f ON f.sample_id = s.id
                 WHERE p.kind = ?1 AND f.sample_id IS NULL
                 ORDER BY t.position, p.parent_sample, s.idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![kind.as_str()], |r| {
                Ok(PendingRationale {
                    task_id: r.get(0)?,
                    sample_id: r.get(1)?,
                    rationale: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Every sample of one prompt kind with its fix verdict and faithfulness verdict, in task
    /// order.
    pub fn faithfulness_outcomes(
        &self,
        kind: PromptKind,
    ) -> Result<Vec<FaithfulnessOutcome>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.task_id, s.id, v.passed, f.verdict, COALESCE(f.supported, 0),
                        COALESCE(f.contradicted, 0), COALESCE(f.unverifiable, 0)
                 FROM samples s
                 JOIN prompts p ON p.id = s.prompt_id
                 JOIN tasks t ON t.task_id = p.task_id
                 LEFT JOIN verdicts v ON v.sample_id = s.id
                 LEFT JOIN faithfulness f ON f.sample_id = s.id
                 WHERE p.kind = ?1
                 ORDER BY t.position, p.parent_sample, s.idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![kind.as_str()], |r| {
                Ok(FaithfulnessOutcome {
                    task_id: r.get(0)?,
                    sample_id: r.get(1)?,
                    passed: r.get(2)?,
                    verdict: r.get(3)?,
                    claims: (r.get(4)?, r.get(5)?, r.get(6)?),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Copies everything of another store of the same configuration into this one (shards
    /// of one sampling stage joined before training): tasks, preparations, prompts, samples,
    /// parses, verdicts, faithfulness checks and errors. Rows this store already has are
    /// kept; sample ids are renumbered. Proxy prompts (which point at sample ids) are not merged.
    pub fn import(&mut self, other: &Path) -> Result<ImportCounts, StoreError> {
        let src = RunStore::open(other)?;
        if let (Some(a), Some(b)) = (self.config()?, src.config()?) {
            if a != b {
                return Err(StoreError::ConfigMismatch {
                    path: src.path.clone(),
                    differences: config_differences(&a, &b).join("; "),
                });
            }
        }
        drop(src);
        let path = self.path.clone();
        let err = |source: rusqlite::Error| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        self.conn
            .execute(
                "ATTACH DATABASE ?1 AS src",
                params![other.display().to_string()],
            )
            .map_err(err)?;
        let result = (|| -> Result<ImportCounts, rusqlite::Error> {
            let tx = self.conn.transaction()?;
            let before: i64 = tx.query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))?;
            tx.execute_batch(
                "INSERT OR IGNORE INTO meta SELECT * FROM src.meta;
                 INSERT OR IGNORE INTO tasks SELECT * FROM src.tasks;
                 UPDATE tasks SET prepared = 1,
                     failing_test = (SELECT failing_test FROM src.tasks s WHERE s.task_id = tasks.task_id),
                     trace = (SELECT trace FROM src.tasks s WHERE s.task_id = tasks.task_id),
                     note = (SELECT note FROM src.tasks s WHERE s.task_id = tasks.task_id)
                   WHERE prepared = 0 AND task_id IN (SELECT task_id FROM src.tasks WHERE prepared = 1);
                 INSERT OR IGNORE INTO prompts(task_id, kind, parent_sample, prompt_json)
                   SELECT task_id, kind, parent_sample, prompt_json FROM src.prompts WHERE parent_sample = 0;
                 INSERT OR IGNORE INTO samples(prompt_id, idx, text, prompt_tokens, completion_tokens, finish_reason, created_at)
                   SELECT dp.id, s.idx, s.text, s.prompt_tokens, s.completion_tokens, s.finish_reason, s.created_at
                   FROM src.samples s JOIN src.prompts sp ON sp.id = s.prompt_id
                   JOIN prompts dp ON dp.task_id = sp.task_id AND dp.kind = sp.kind AND dp.parent_sample = sp.parent_sample
                   WHERE sp.parent_sample = 0;
                 CREATE TEMP TABLE sample_map AS
                   SELECT s.id AS src_id, ds.id AS dst_id
                   FROM src.samples s JOIN src.prompts sp ON sp.id = s.prompt_id
                   JOIN prompts dp ON dp.task_id = sp.task_id AND dp.kind = sp.kind AND dp.parent_sample = sp.parent_sample
                   JOIN samples ds ON ds.prompt_id = dp.id AND ds.idx = s.idx
                   WHERE sp.parent_sample = 0;
                 INSERT OR IGNORE INTO parses(sample_id, ok, rationale, program, reason, completed)
                   SELECT m.dst_id, p.ok, p.rationale, p.program, p.reason, p.completed
                   FROM src.parses p JOIN sample_map m ON m.src_id = p.sample_id;
                 INSERT OR IGNORE INTO verdicts(sample_id, passed, detail)
                   SELECT m.dst_id, v.passed, v.detail FROM src.verdicts v JOIN sample_map m ON m.src_id = v.sample_id;
                 INSERT OR IGNORE INTO faithfulness(sample_id, verdict, supported, contradicted, unverifiable, report_json)
                   SELECT m.dst_id, f.verdict, f.supported, f.contradicted, f.unverifiable, f.report_json
                   FROM src.faithfulness f JOIN sample_map m ON m.src_id = f.sample_id;
                 INSERT INTO errors(task_id, stage, message, at) SELECT task_id, stage, message, at FROM src.errors;
                 DROP TABLE sample_map;",
            )?;
            let after: i64 = tx.query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))?;
            tx.commit()?;
            Ok(ImportCounts {
                samples: (after - before) as usize,
            })
        })();
        let detach = self.conn.execute("DETACH DATABASE src", []);
        let counts = result.map_err(err)?;
        detach.map_err(err)?;
        Ok(counts)
    }
}

/// The settings that differ between two configurations, `key: stored X, requested Y`, over
/// the top-level keys (nested objects name their path, `repair.sampling.max_tokens`).
pub fn config_differences(
    stored: &serde_json::Value,
    requested: &serde_json::Value,
) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    let null = serde_json::Value::Null;
                    walk(
                        &path,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{prefix}: stored {a}, requested {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", stored, requested, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nxt_llm::FinishReason;

    fn completion(t: &str) -> Completion {
        Completion {
            text: t.into(),
            prompt_tokens: 10,
            completion_tokens: 3,
            finish_reason: FinishReason::Stop,
            logprobs: None,
        }
    }

    #[test]
    fn records_round_trip_and_are_never_duplicated() {
        let dir = std::env::temp_dir().join(format!("nxt-core-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.sqlite");
        let _ = std::fs::remove_file(&path);
        let store = RunStore::open(&path).unwrap();
        let cfg = serde_json::json!({"model": "m", "n": 2, "limit": 3});
        store.check_config(&cfg, &["limit"]).unwrap();
        store
            .check_config(
                &serde_json::json!({"model": "m", "n": 2, "limit": 5}),
                &["limit"],
            )
            .unwrap();
        assert!(matches!(
            store.check_config(&serde_json::json!({"model": "x", "n": 2}), &["limit"]),
            Err(StoreError::ConfigMismatch { .. })
        ));
        let task = crate::task::adhoc_task(
            "a/1",
            "spec",
            "def f():\n    return 1\n",
            vec!["assert f() == 2".into()],
        );
        store.put_task(0, &task).unwrap();
        store.put_task(0, &task).unwrap();
        assert_eq!(store.tasks().unwrap(), vec![task.clone()]);
        assert_eq!(store.prep("a/1").unwrap(), None);
        let prep = TaskPrep {
            failing_test: Some("assert f() == 2".into()),
            trace: Some("t".into()),
            note: None,
        };
        store.put_prep("a/1", &prep).unwrap();
        assert_eq!(store.prep("a/1").unwrap(), Some(prep));
        let prompt = Prompt::Text("hello".into());
        let pid = store
            .put_prompt("a/1", PromptKind::Sample, 0, &prompt)
            .unwrap();
        assert_eq!(
            store
                .put_prompt("a/1", PromptKind::Sample, 0, &prompt)
                .unwrap(),
            pid
        );
        assert_eq!(
            store.prompt("a/1", PromptKind::Sample, 0).unwrap(),
            Some((pid, prompt))
        );
        let ids = store
            .put_samples(pid, 0, &[completion("x"), completion("y")])
            .unwrap();
        assert_eq!(ids.len(), 2);
        // Re-inserting the same indices adds nothing.
        assert!(store
            .put_samples(pid, 1, &[completion("z")])
            .unwrap()
            .is_empty());
        assert_eq!(store.sample_count(pid).unwrap(), 2);
        let p =
            crate::parse::parse_completion("```python\ndef f():\n    return 2\n```", Some("f"), "");
        store.put_parse(ids[0], &p).unwrap();
        store.put_parse(ids[0], &p).unwrap();
        assert_eq!(store.parse_of(ids[0]).unwrap(), Some(p));
        let bad = crate::parse::parse_completion("", Some("f"), "");
        store.put_parse(ids[1], &bad).unwrap();
        assert_eq!(store.parse_of(ids[1]).unwrap(), Some(bad));
        store
            .put_verdict(ids[0], true, &serde_json::json!({}))
            .unwrap();
        store
            .put_verdict(ids[1], false, &serde_json::json!({"unparseable": true}))
            .unwrap();
        store.put_error(Some("a/1"), "generate", "boom").unwrap();
        let outs = store.outcomes(PromptKind::Sample).unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!((outs[0].parsed, outs[0].passed), (Some(true), Some(true)));
        assert_eq!((outs[1].parsed, outs[1].passed), (Some(false), Some(false)));
        let u = store.usage(PromptKind::Sample).unwrap();
        assert_eq!(
            u,
            Usage {
                completions: 2,
                prompt_tokens: 20,
                completion_tokens: 6,
                truncated: 0,
                context_cut: 0,
                failed: 0
            }
        );
        // Length stops: at max_tokens (10 here) or, with fewer tokens, at the context limit.
        let cut = |tokens: usize| Completion {
            completion_tokens: tokens,
            finish_reason: FinishReason::Length,
            ..completion("cut")
        };
        store.put_samples(pid, 2, &[cut(10), cut(4)]).unwrap();
        let u = store
            .usage_of(PromptKind::Sample, None, None, Some(10))
            .unwrap();
        assert_eq!((u.completions, u.truncated, u.context_cut), (4, 1, 1));
        let u = store.usage(PromptKind::Sample).unwrap();
        assert_eq!((u.truncated, u.context_cut), (2, 0));
        drop(store);
        // Reopen: everything is still there.
        let store = RunStore::open(&path).unwrap();
        let c = store.counts().unwrap();
        assert_eq!(
            c,
            Counts {
                tasks: 1,
                prepared: 1,
                prompts: 1,
                samples: 4,
                parses: 2,
                verdicts: 2,
                errors: 1
            }
        );
        assert_eq!(store.errors().unwrap()[0].2, "boom");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
