//! The keep step: from one iteration's graded samples, the passing ones (under `keep =
//! "passing-and-faithful"` only those whose rationale does not contradict the trace),
//! deduplicated on normalised code + rationale, at most `max_per_task` per task; every sample
//! gets a decision, and the funnel counts each filter.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use nxt_core::store::SampleRecord;
use serde::{Deserialize, Serialize};

use crate::config::{KeepRule, KeepSection};
use crate::ledger::Decision;

/// A kept sample: one training example.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptSample {
    /// Task id.
    pub task_id: String,
    /// The sample's index among its prompt's samples.
    pub sample_idx: i64,
    /// The completion as the model wrote it (rationale + fixed program): the training target.
    pub completion: String,
    /// Prompt tokens of the sample (as the sampler counted them).
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
}

/// How many samples survive each filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funnel {
    /// Hard tasks sampled.
    pub tasks_attempted: usize,
    /// Tasks with at least one passing sample.
    pub tasks_with_pass: usize,
    /// All samples.
    pub samples: usize,
    /// Samples whose fix passed.
    pub passing_samples: usize,
    /// Passing samples whose rationale contradicts the trace (`nxt-faithful`), counted under
    /// either rule.
    #[serde(default)]
    pub unfaithful: usize,
    /// Passing samples left after the faithfulness filter (`keep = "passing-and-faithful"`
    /// drops the unfaithful ones; under `"passing"` this equals `passing_samples`).
    #[serde(default)]
    pub after_faithful: usize,
    /// Passing samples left after the faithfulness filter and dedupe.
    pub after_dedupe: usize,
    /// Left after the per-task cap: the training set.
    pub after_cap: usize,
    /// Prompt + completion tokens of the training set.
    pub training_tokens: i64,
}

/// The result of [`select`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// One decision per sample.
    pub decisions: Vec<Decision>,
    /// The kept samples, by task id then sample index.
    pub kept: Vec<KeptSample>,
    /// The funnel.
    pub funnel: Funnel,
    /// Kept samples per task (tasks with none are left out).
    pub kept_per_task: BTreeMap<String, usize>,
}

/// Normalised rationale for dedupe: case and whitespace do not count.
pub fn normalise_rationale(r: &str) -> String {
    r.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Selects the training samples of one iteration. `records` are the sampling stage's samples
/// (any order), `tasks` the hard tasks that were sampled, `normalised_code` the normal form of
/// each passing sample's program by sample id (a program missing from it counts as its own
/// text). Order is deterministic: by task id, then sample index, so the first samples win.
pub fn select(
    records: &[SampleRecord],
    tasks: &BTreeSet<String>,
    normalised_code: &HashMap<i64, String>,
    cfg: &KeepSection,
) -> Selection {
    let mut recs: Vec<&SampleRecord> = records
        .iter()
        .filter(|r| tasks.contains(&r.task_id))
        .collect();
    recs.sort_by(|a, b| (&a.task_id, a.idx).cmp(&(&b.task_id, b.idx)));
    let mut out = Selection {
        funnel: Funnel {
            tasks_attempted: tasks.len(),
            ..Funnel::default()
        },
        ..Selection::default()
    };
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    let mut with_pass: BTreeSet<&str> = BTreeSet::new();
    for r in recs {
        out.funnel.samples += 1;
        let decision = if r.parsed == Some(false) || r.program.is_none() {
            "unparseable"
        } else if r.passed != Some(true) {
            "failed"
        } else {
            out.funnel.passing_samples += 1;
            with_pass.insert(&r.task_id);
            let unfaithful = r.faithfulness.as_deref() == Some("unfaithful");
            out.funnel.unfaithful += unfaithful as usize;
            let drop = unfaithful && cfg.keep == KeepRule::PassingAndFaithful;
            if !drop {
                out.funnel.after_faithful += 1;
            }
            let program = r.program.as_deref().unwrap_or_default();
            let code = normalised_code
                .get(&r.sample_id)
                .cloned()
                .unwrap_or_else(|| program.to_string());
            let key = (
                r.task_id.clone(),
                code,
                normalise_rationale(r.rationale.as_deref().unwrap_or_default()),
            );
            if drop {
                "unfaithful"
            } else if cfg.dedupe && !seen.insert(key) {
                "duplicate"
            } else {
                out.funnel.after_dedupe += 1;
                let n = out.kept_per_task.entry(r.task_id.clone()).or_default();
                if *n >= cfg.max_per_task {
                    "over_cap"
                } else {
                    *n += 1;
                    out.funnel.after_cap += 1;
                    out.funnel.training_tokens += r.prompt_tokens + r.completion_tokens;
                    out.kept.push(KeptSample {
                        task_id: r.task_id.clone(),
                        sample_idx: r.idx,
                        completion: r.text.clone(),
                        prompt_tokens: r.prompt_tokens,
                        completion_tokens: r.completion_tokens,
                    });
                    "kept"
                }
            }
        };
        out.decisions.push(Decision {
            task_id: r.task_id.clone(),
            sample_idx: r.idx,
            decision: decision.into(),
            completion_tokens: r.completion_tokens,
        });
    }
    out.funnel.tasks_with_pass = with_pass.len();
    out.kept_per_task.retain(|_, n| *n > 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        task: &str,
        idx: i64,
        passed: Option<bool>,
        program: &str,
        rationale: &str,
    ) -> SampleRecord {
        SampleRecord {
            task_id: task.into(),
            sample_id: idx + 1000 * task.len() as i64,
            idx,
            text: format!("{rationale}\n```python\n{program}\n```"),
            prompt_tokens: 10,
            completion_tokens: 5,
            finish_reason: "stop".into(),
            parsed: Some(!program.is_empty()),
            rationale: Some(rationale.into()),
            program: (!program.is_empty()).then(|| program.into()),
            passed,
            faithfulness: None,
        }
    }

    #[test]
    fn dedupe_cap_and_reasons() {
        let records = vec![
            rec("a", 0, Some(true), "x = 1", "Because"),
            rec("a", 1, Some(true), "x = 1", "because  "),
            rec("a", 2, Some(true), "x = 2", "because"),
            rec("a", 3, Some(true), "x = 3", "because"),
            rec("a", 4, Some(false), "x = 4", "because"),
            rec("a", 5, Some(false), "", "no code"),
            rec("bb", 0, Some(false), "y", "r"),
            rec("ccc", 0, Some(true), "z", "r"),
        ];
        let tasks: BTreeSet<String> = ["a", "bb"].iter().map(|s| s.to_string()).collect();
        let cfg = KeepSection {
            max_per_task: 2,
            ..KeepSection::default()
        };
        let s = select(&records, &tasks, &HashMap::new(), &cfg);
        let d: Vec<&str> = s.decisions.iter().map(|d| d.decision.as_str()).collect();
        assert_eq!(
            d,
            [
                "kept",
                "duplicate",
                "kept",
                "over_cap",
                "failed",
                "unparseable",
                "failed"
            ]
        );
        assert_eq!(s.kept.len(), 2);
        assert_eq!(s.funnel.tasks_attempted, 2);
        assert_eq!(s.funnel.tasks_with_pass, 1);
        assert_eq!(s.funnel.passing_samples, 4);
        assert_eq!(s.funnel.after_dedupe, 3);
        assert_eq!(s.funnel.after_cap, 2);
        assert_eq!(s.funnel.training_tokens, 30);
        assert_eq!(s.kept_per_task.get("a"), Some(&2));
        assert!(!s.kept_per_task.contains_key("bb"));
    }

    #[test]
    fn passing_and_faithful_drops_contradicting_rationales() {
        let verdict = |mut r: SampleRecord, v: Option<&str>| {
            r.faithfulness = v.map(str::to_string);
            r
        };
        let records = vec![
            verdict(rec("a", 0, Some(true), "x = 1", "r0"), Some("unfaithful")),
            verdict(rec("a", 1, Some(true), "x = 2", "r1"), Some("faithful")),
            verdict(rec("a", 2, Some(true), "x = 3", "r2"), Some("no_claim")),
            verdict(rec("a", 3, Some(true), "x = 4", "r3"), None),
            verdict(rec("a", 4, Some(false), "x = 5", "r4"), Some("unfaithful")),
        ];
        let tasks: BTreeSet<String> = ["a".to_string()].into();
        let passing = select(&records, &tasks, &HashMap::new(), &KeepSection::default());
        assert_eq!(passing.kept.len(), 4);
        assert_eq!(
            (passing.funnel.unfaithful, passing.funnel.after_faithful),
            (1, 4)
        );
        let cfg = KeepSection {
            keep: KeepRule::PassingAndFaithful,
            max_per_task: 2,
            ..KeepSection::default()
        };
        let s = select(&records, &tasks, &HashMap::new(), &cfg);
        let d: Vec<&str> = s.decisions.iter().map(|d| d.decision.as_str()).collect();
        // The unfaithful sample is dropped before the cap, so two later ones are kept; an
        // unchecked rationale is kept; a failing fix stays `failed`.
        assert_eq!(d, ["unfaithful", "kept", "kept", "over_cap", "failed"]);
        let f = &s.funnel;
        assert_eq!(
            (
                f.passing_samples,
                f.unfaithful,
                f.after_faithful,
                f.after_dedupe,
                f.after_cap
            ),
            (4, 1, 3, 3, 2)
        );
    }

    #[test]
    fn normalised_code_decides_duplicates() {
        let records = vec![
            rec("a", 0, Some(true), "x=1", "r"),
            rec("a", 1, Some(true), "x = 1  # same", "r"),
        ];
        let tasks: BTreeSet<String> = ["a".to_string()].into();
        let norm: HashMap<i64, String> = records
            .iter()
            .map(|r| (r.sample_id, "x = 1".to_string()))
            .collect();
        let s = select(&records, &tasks, &norm, &KeepSection::default());
        assert_eq!(s.kept.len(), 1);
        let s = select(
            &records,
            &tasks,
            &norm,
            &KeepSection {
                dedupe: false,
                ..KeepSection::default()
            },
        );
        assert_eq!(s.kept.len(), 2);
    }
}
