//! Read-only access to an `nxt eval` run store (`run.sqlite`, written by
//! `nxt_core::RunStore`): the configuration, the tasks, and per sample its token counts,
//! finish reason, parse, verdict and faithfulness verdict. Rationale and program lengths are
//! counted in tokens with the run's own tokenizer when its model directory (or its hub cache
//! snapshot) is at hand, else in characters ([`LengthUnit`] says which). Other texts (prompts,
//! completions) are read only for the few examples the page shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nxt_faithful::{ClaimVerdict, Evidence, FaithfulnessReport};

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
    /// Rationale length, in the store's [`LengthUnit`] (None: no parse).
    pub rationale_len: Option<i64>,
    /// Fixed program length, in the store's [`LengthUnit`] (None: no program parsed).
    pub program_len: Option<i64>,
    /// Verdict (None: not graded yet).
    pub passed: Option<bool>,
    /// Faithfulness verdict of the rationale (`faithful`, `unfaithful`, `no_claim`; None:
    /// not checked, or a store written before the check existed).
    pub faithfulness: Option<String>,
}

/// What rationale and program lengths of a store are counted in.
#[derive(Debug, Clone, PartialEq)]
pub enum LengthUnit {
    /// Tokens of the run's tokenizer (`tokenizer.json` at this path).
    Tokens {
        /// The tokenizer file.
        tokenizer: PathBuf,
    },
    /// Characters, because no tokenizer was at hand.
    Characters {
        /// Why (no model recorded, a server URL, no `tokenizer.json`, a load failure).
        why: String,
    },
}

impl LengthUnit {
    /// `tokens` or `characters`.
    pub fn name(&self) -> &'static str {
        match self {
            LengthUnit::Tokens { .. } => "tokens",
            LengthUnit::Characters { .. } => "characters",
        }
    }
}

/// One contradicted claim of a sampled rationale, with the trace line that contradicts it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContradictedClaim {
    /// Task id.
    pub task_id: String,
    /// Index of the sample among its prompt's samples.
    pub idx: i64,
    /// The fix's verdict (None: not graded).
    pub passed: Option<bool>,
    /// The claim's text in the rationale.
    pub text: String,
    /// Why the checker contradicted it.
    pub reason: String,
    /// The trace line behind the verdict.
    pub evidence: Option<Evidence>,
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
    /// Whether the store has a faithfulness table (stores written before the check have
    /// none).
    pub has_faithfulness: bool,
    /// What [`SampleRecord::rationale_len`] and [`SampleRecord::program_len`] count.
    pub length_unit: LengthUnit,
}

/// The run's tokenizer for `model` (the `model` of a stored run configuration): a model
/// directory's `tokenizer.json`, or a hub id's cached snapshot's; `Err(why)` when there is
/// none at hand (a server URL, a model directory that is gone, a cache without the model).
pub fn find_tokenizer(model: Option<&str>) -> Result<PathBuf, String> {
    let Some(model) = model.filter(|m| !m.is_empty()) else {
        return Err("the run store records no model".into());
    };
    if nxt_llm::is_server_spec(model) {
        return Err(format!(
            "the model was served over HTTP ({model}): its tokenizer is not at hand"
        ));
    }
    let dir = Path::new(model);
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else if nxt_engine::hub::looks_like_repo_id(model) {
        nxt_engine::hub::cached_snapshot(&nxt_engine::hub::cache_dir(), model, "main")
            .ok_or_else(|| format!("{model} is not in the local hub cache"))?
    } else {
        return Err(format!("the model directory {model} is not there"));
    };
    let t = dir.join("tokenizer.json");
    if t.is_file() {
        Ok(t)
    } else {
        Err(format!("{} has no tokenizer.json", dir.display()))
    }
}

/// A length counter: tokens of a loaded tokenizer, else characters.
struct Counter {
    tokenizer: Option<tokenizers::Tokenizer>,
    unit: LengthUnit,
    /// The tokenizer failed on a text after counting others: recount all in characters.
    switched: bool,
}

impl Counter {
    fn for_model(model: Option<&str>) -> Counter {
        let loaded = find_tokenizer(model).and_then(|path| {
            tokenizers::Tokenizer::from_file(&path)
                .map(|t| (t, path.clone()))
                .map_err(|e| format!("{}: {e}", path.display()))
        });
        match loaded {
            Ok((t, path)) => Counter {
                tokenizer: Some(t),
                unit: LengthUnit::Tokens { tokenizer: path },
                switched: false,
            },
            Err(why) => Counter {
                tokenizer: None,
                unit: LengthUnit::Characters { why },
                switched: false,
            },
        }
    }

    /// The length of `text`; a text the tokenizer fails on switches the whole store to
    /// characters (one unit per store).
    fn len(&mut self, text: &str) -> i64 {
        if let Some(t) = &self.tokenizer {
            match t.encode(text, false) {
                Ok(enc) => return enc.len() as i64,
                Err(e) => {
                    self.tokenizer = None;
                    self.switched = true;
                    self.unit = LengthUnit::Characters {
                        why: format!("the tokenizer failed on a sample: {e}"),
                    };
                }
            }
        }
        text.chars().count() as i64
    }
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
        let has_faithfulness: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type='table' AND name='faithfulness'",
                [],
                |r| r.get(0),
            )
            .map_err(sq)?;
        let model = config
            .as_ref()
            .and_then(|c: &serde_json::Value| c.get("model"))
            .and_then(|m| m.as_str());
        let mut counter = Counter::for_model(model);
        let mut samples = Vec::new();
        {
            let (faith_col, faith_join) = if has_faithfulness {
                (
                    "f.verdict",
                    "LEFT JOIN faithfulness f ON f.sample_id = s.id",
                )
            } else {
                ("NULL", "")
            };
            let mut st = conn
                .prepare(&format!(
                    "SELECT s.id, p.task_id, p.kind, s.idx, s.prompt_tokens, s.completion_tokens,
                            s.finish_reason, pa.ok, pa.rationale, pa.program, v.passed, {faith_col}
                     FROM samples s
                     JOIN prompts p ON p.id = s.prompt_id
                     JOIN tasks t ON t.task_id = p.task_id
                     LEFT JOIN parses pa ON pa.sample_id = s.id
                     LEFT JOIN verdicts v ON v.sample_id = s.id
                     {faith_join}
                     ORDER BY t.position, p.kind, p.parent_sample, s.idx"
                ))
                .map_err(sq)?;
            let mut rows = st.query([]).map_err(sq)?;
            while let Some(r) = rows.next().map_err(sq)? {
                let rationale: Option<String> = r.get(8).map_err(sq)?;
                let program: Option<String> = r.get(9).map_err(sq)?;
                samples.push(SampleRecord {
                    id: r.get(0).map_err(sq)?,
                    task_id: r.get(1).map_err(sq)?,
                    kind: r.get(2).map_err(sq)?,
                    idx: r.get(3).map_err(sq)?,
                    prompt_tokens: r.get(4).map_err(sq)?,
                    completion_tokens: r.get(5).map_err(sq)?,
                    finish_reason: r.get(6).map_err(sq)?,
                    parsed: r.get(7).map_err(sq)?,
                    rationale_len: rationale.as_deref().map(|t| counter.len(t)),
                    program_len: program.as_deref().map(|t| counter.len(t)),
                    passed: r.get(10).map_err(sq)?,
                    faithfulness: r.get(11).map_err(sq)?,
                });
            }
        }
        // A tokenizer that failed midway: count every sample the same way.
        if counter.switched {
            let mut st = conn
                .prepare(
                    "SELECT s.id, length(pa.rationale), length(pa.program) FROM samples s
                     JOIN parses pa ON pa.sample_id = s.id",
                )
                .map_err(sq)?;
            let lens: BTreeMap<i64, (Option<i64>, Option<i64>)> = st
                .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
                .map_err(sq)?
                .collect::<Result<_, _>>()
                .map_err(sq)?;
            for s in &mut samples {
                if let Some((r, p)) = lens.get(&s.id) {
                    s.rationale_len = *r;
                    s.program_len = *p;
                }
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
            has_faithfulness,
            length_unit: counter.unit,
        })
    }

    /// The contradicted claims of the unfaithful rationales of `kind` samples (`sample`,
    /// `greedy`) of the tasks `include` accepts, in task order: samples whose fix passed
    /// first (those are the ones self-training would learn from). Empty for a store without
    /// a faithfulness table.
    pub fn contradicted_claims(
        &self,
        kind: &str,
        include: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<ContradictedClaim>, ReportError> {
        if !self.has_faithfulness {
            return Ok(Vec::new());
        }
        let sq = |source: rusqlite::Error| ReportError::Store {
            path: self.path.clone(),
            source,
        };
        let mut st = self
            .conn
            .prepare(
                "SELECT p.task_id, s.idx, v.passed, f.report_json FROM faithfulness f
                 JOIN samples s ON s.id = f.sample_id
                 JOIN prompts p ON p.id = s.prompt_id
                 JOIN tasks t ON t.task_id = p.task_id
                 LEFT JOIN verdicts v ON v.sample_id = s.id
                 WHERE p.kind = ?1 AND f.contradicted > 0
                 ORDER BY COALESCE(v.passed, 0) DESC, t.position, p.parent_sample, s.idx",
            )
            .map_err(sq)?;
        let rows = st
            .query_map(params![kind], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<bool>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(sq)?;
        let mut out = Vec::new();
        for row in rows {
            let (task_id, idx, passed, json) = row.map_err(sq)?;
            if !include(&task_id) {
                continue;
            }
            let report: FaithfulnessReport =
                serde_json::from_str(&json).map_err(|e| ReportError::Corrupt {
                    path: self.path.clone(),
                    message: format!("faithfulness report of {task_id} sample {idx}: {e}"),
                })?;
            for c in report
                .claims
                .into_iter()
                .filter(|c| c.verdict == ClaimVerdict::Contradicted)
            {
                out.push(ContradictedClaim {
                    task_id: task_id.clone(),
                    idx,
                    passed,
                    text: c.text,
                    reason: c.reason,
                    evidence: c.evidence,
                });
            }
        }
        Ok(out)
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
