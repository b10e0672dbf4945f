//! Read-only access to an `nxt eval` run store (`run.sqlite`, written by
//! `nxt_core::RunStore`): the configuration, the tasks, and per sample its token counts,
//! finish reason, parse and verdict. Texts (rationales, programs, prompts) are read only for
//! the few examples the page shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nxt_core::task::RepairTask;
use nxt_llm::Prompt;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::model::TaskStat;
use crate::ReportError;

/// One sample's record, without its texts.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRecord {
    /// Row id.
    pub id: i64,
    /// Task id.
    pub task_id: String,
    /// Prompt kind (`sample`, `greedy`, `proxy`).
    pub kind: String,
    /// Index among its prompt's samples.
    pub idx: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Generated tokens.
    pub completion_tokens: i64,
    /// `stop`, `length` or `error`.
    pub finish_reason: String,
    /// Parsed (None: not parsed yet).
    pub parsed: Option<bool>,
    /// Rationale length in characters.
    pub rationale_chars: Option<i64>,
    /// Fixed program length in characters.
    pub program_chars: Option<i64>,
    /// Verdict (None: not graded yet).
    pub passed: Option<bool>,
}

/// One sample with its texts, for an example.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleText {
    /// The raw completion.
    pub completion: String,
    /// The parsed rationale.
    pub rationale: Option<String>,
    /// The parsed fixed program.
    pub program: Option<String>,
    /// Why the parse failed.
    pub parse_reason: Option<String>,
    /// Verdict detail (JSON).
    pub verdict_detail: Option<serde_json::Value>,
}

/// An eval run store, opened read-only.
pub struct StoreData {
    /// The database file.
    pub path: PathBuf,
    conn: Connection,
    /// The stored run configuration.
    pub config: Option<serde_json::Value>,
    /// Tasks, in position order.
    pub tasks: Vec<RepairTask>,
    /// Samples of every kind, in task order.
    pub samples: Vec<SampleRecord>,
    /// Recorded errors and notes.
    pub errors: usize,
}

impl std::fmt::Debug for StoreData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreData")
            .field("path", &self.path)
            .field("tasks", &self.tasks.len())
            .field("samples", &self.samples.len())
            .finish()
    }
}

impl StoreData {
    /// Open `path` read-only and load the configuration, the tasks and the sample records.
    pub fn open(path: &Path) -> Result<StoreData, ReportError> {
        let sq = |source: rusqlite::Error| ReportError::Store {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sq)?;
        let config: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key='config'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sq)?;
        let config = config
            .map(|s| {
                serde_json::from_str(&s).map_err(|e| ReportError::Corrupt {
                    path: path.to_path_buf(),
                    message: format!("meta.config is not JSON: {e}"),
                })
            })
            .transpose()?;
        let mut tasks = Vec::new();
        {
            let mut st = conn
                .prepare("SELECT task_id, input_json FROM tasks ORDER BY position")
                .map_err(sq)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(sq)?;
            for row in rows {
                let (id, json) = row.map_err(sq)?;
                tasks.push(
                    serde_json::from_str(&json).map_err(|e| ReportError::Corrupt {
                        path: path.to_path_buf(),
                        message: format!("task {id}: {e}"),
                    })?,
                );
            }
        }
        let mut samples = Vec::new();
        {
            let mut st = conn
                .prepare(
                    "SELECT s.id, p.task_id, p.kind, s.idx, s.prompt_tokens, s.completion_tokens,
                            s.finish_reason, pa.ok, length(pa.rationale), length(pa.program), v.passed
                     FROM samples s
                     JOIN prompts p ON p.id = s.prompt_id
                     JOIN tasks t ON t.task_id = p.task_id
                     LEFT JOIN parses pa ON pa.sample_id = s.id
                     LEFT JOIN verdicts v ON v.sample_id = s.id
                     ORDER BY t.position, p.kind, p.parent_sample, s.idx",
                )
                .map_err(sq)?;
            let rows = st
                .query_map([], |r| {
                    Ok(SampleRecord {
                        id: r.get(0)?,
                        task_id: r.get(1)?,
                        kind: r.get(2)?,
                        idx: r.get(3)?,
                        prompt_tokens: r.get(4)?,
                        completion_tokens: r.get(5)?,
                        finish_reason: r.get(6)?,
                        parsed: r.get(7)?,
                        rationale_chars: r.get(8)?,
                        program_chars: r.get(9)?,
                        passed: r.get(10)?,
                    })
                })
                .map_err(sq)?;
            for row in rows {
                samples.push(row.map_err(sq)?);
            }
        }
        let errors: i64 = conn
            .query_row("SELECT COUNT(*) FROM errors", [], |r| r.get(0))
            .map_err(sq)?;
        Ok(StoreData {
            path: path.to_path_buf(),
            conn,
            config,
            tasks,
            samples,
            errors: errors as usize,
        })
    }

    /// A string setting of the stored configuration.
    pub fn config_str(&self, key: &str) -> Option<String> {
        self.config.as_ref()?.get(key)?.as_str().map(str::to_string)
    }

    /// Whether the stored configuration shows the trace in the prompt.
    pub fn with_trace(&self) -> Option<bool> {
        self.config
            .as_ref()?
            .pointer("/repair/prompt/with_trace")?
            .as_bool()
    }

    /// `max_tokens` of the stored sampling settings.
    pub fn max_tokens(&self) -> Option<u64> {
        self.config
            .as_ref()?
            .pointer("/repair/sampling/max_tokens")?
            .as_u64()
    }

    /// Per-task counts of one prompt kind (`sample` or `proxy`; `greedy` fills the greedy
    /// verdict of the `sample` counts instead), over the stored tasks.
    pub fn per_task(&self, kind: &str) -> BTreeMap<String, TaskStat> {
        let mut out: BTreeMap<String, TaskStat> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.kind == kind) {
            let e = out.entry(s.task_id.clone()).or_default();
            e.n += 1;
            e.c += (s.passed == Some(true)) as usize;
        }
        if kind == "sample" {
            for s in self.samples.iter().filter(|s| s.kind == "greedy") {
                let e = out.entry(s.task_id.clone()).or_default();
                e.greedy = Some(e.greedy.unwrap_or(false) || s.passed == Some(true));
            }
        }
        out
    }

    /// Whether any sample of `kind` is stored.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.samples.iter().any(|s| s.kind == kind)
    }

    /// The texts of one sample.
    pub fn sample_text(&self, sample_id: i64) -> Result<SampleText, ReportError> {
        let sq = |source: rusqlite::Error| ReportError::Store {
            path: self.path.clone(),
            source,
        };
        let (completion, rationale, program, reason, detail): (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = self
            .conn
            .query_row(
                "SELECT s.text, pa.rationale, pa.program, pa.reason, v.detail FROM samples s
                 LEFT JOIN parses pa ON pa.sample_id = s.id
                 LEFT JOIN verdicts v ON v.sample_id = s.id WHERE s.id = ?1",
                params![sample_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(sq)?;
        Ok(SampleText {
            completion,
            rationale,
            program,
            parse_reason: reason,
            verdict_detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        })
    }

    /// The stored prompt of a task's `kind` samples (parent sample 0).
    pub fn prompt(&self, task_id: &str, kind: &str) -> Result<Option<Prompt>, ReportError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT prompt_json FROM prompts WHERE task_id=?1 AND kind=?2 AND parent_sample=0",
                params![task_id, kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(|source| ReportError::Store {
                path: self.path.clone(),
                source,
            })?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| ReportError::Corrupt {
                path: self.path.clone(),
                message: format!("prompt of {task_id}: {e}"),
            })
        })
        .transpose()
    }
}

/// The trace block of a repair prompt as the model saw it (the task's own block, after the
/// exemplars): `Ok(text)`, or `Err(why there is none)`.
pub fn trace_block(prompt: &Prompt) -> Result<String, String> {
    let user = match prompt {
        Prompt::Text(t) => t.as_str(),
        Prompt::Chat(msgs) => msgs
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .unwrap_or(""),
    };
    let task = match user.rfind(nxt_core::prompt::PROBLEM_HEADING) {
        Some(i) => &user[i..],
        None => user,
    };
    const HEAD: &str = "### Execution trace of the buggy program";
    if let Some(i) = task.find(HEAD) {
        let rest = &task[i..];
        let body_start = rest.find("```").map(|j| j + 3);
        let end = body_start.and_then(|s| rest[s..].find("\n```").map(|e| s + e + 4));
        return Ok(match end {
            Some(e) => rest[..e].to_string(),
            None => rest.to_string(),
        });
    }
    if task.contains("No execution trace is available") {
        Err("the tracer gave no trace for this program; the prompt says so".into())
    } else {
        Err("the prompt has no trace (a run without trace)".into())
    }
}
