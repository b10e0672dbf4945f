//! Reports of an evaluation run, computed from the run store: pass@k (the unbiased estimator
//! of `nxt-data`), greedy pass@1, proxy pass@k (per proxy model), unparseable rate, token
//! usage and generation errors; as text, JSON and markdown. Every figure of one report covers
//! the same tasks (those asked for now, even when the store holds more).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use nxt_data::{mean_pass_at_k, RepairTask};
use serde::{Deserialize, Serialize};

use crate::config::EvalConfig;
use crate::repair::CoreError;
use crate::store::{Counts, PromptKind, RunStore, Usage};

/// Per-task counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// Task id.
    pub task_id: String,
    /// Samples stored.
    pub n: usize,
    /// Samples whose fix passed.
    pub correct: usize,
    /// Unparseable samples.
    pub unparseable: usize,
    /// Greedy sample passed (None: no greedy sample).
    pub greedy_passed: Option<bool>,
    /// Proxy fixes stored.
    pub proxy_n: usize,
    /// Proxy fixes that passed.
    pub proxy_correct: usize,
    /// Whether a trace was shown.
    pub traced: bool,
}

/// Summary of one kind of sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindSummary {
    /// pass@k by k (only the k that every task allows, i.e. k <= n).
    pub pass_at_k: BTreeMap<usize, f64>,
    /// Samples.
    pub samples: usize,
    /// Samples not yet graded (an interrupted run).
    pub ungraded: usize,
    /// Unparseable samples.
    pub unparseable: usize,
    /// Unparseable fraction.
    pub unparseable_rate: f64,
    /// Token usage.
    pub usage: Usage,
}

/// One proxy model's fixes from the sampled rationales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxySummary {
    /// The proxy model.
    pub model: String,
    /// Its fixes.
    pub summary: KindSummary,
}

/// A task whose samples could not (all) be generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationError {
    /// Task id.
    pub task_id: String,
    /// Stage (`sample`, `greedy`, `proxy`).
    pub stage: String,
    /// Samples missing.
    pub missing: usize,
    /// The backend's last message for this task and stage.
    pub message: String,
}

/// Samples the generator did not produce (generation errors; a rerun retries them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationErrors {
    /// Samples missing over all tasks and stages.
    pub missing: usize,
    /// Per task and stage.
    pub tasks: Vec<GenerationError>,
}

/// Rationale verdicts of one group of samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaithfulnessRates {
    /// Samples whose rationale was checked.
    pub checked: usize,
    /// Faithful rationales (no contradicted claim, at least one supported).
    pub faithful: usize,
    /// Unfaithful rationales (at least one contradicted claim).
    pub unfaithful: usize,
    /// Rationales without a checkable claim.
    pub no_claim: usize,
    /// `faithful / checked` (0 when nothing was checked).
    pub faithful_rate: f64,
    /// `unfaithful / checked`.
    pub unfaithful_rate: f64,
    /// `no_claim / checked`.
    pub no_claim_rate: f64,
}

impl FaithfulnessRates {
    /// Counts one checked rationale by its verdict (`faithful`, `unfaithful`, anything else
    /// as no claim) and updates the rates.
    pub fn add(&mut self, verdict: &str) {
        self.checked += 1;
        match verdict {
            "faithful" => self.faithful += 1,
            "unfaithful" => self.unfaithful += 1,
            _ => self.no_claim += 1,
        }
        let n = self.checked as f64;
        self.faithful_rate = self.faithful as f64 / n;
        self.unfaithful_rate = self.unfaithful as f64 / n;
        self.no_claim_rate = self.no_claim as f64 / n;
    }
}

/// Faithfulness of the sampled rationales against the trace (`nxt-faithful`), beside pass@k:
/// over all samples, and split by whether the fix passed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaithfulnessSummary {
    /// All sampled repairs.
    pub all: FaithfulnessRates,
    /// Samples whose fix passed.
    pub passed: FaithfulnessRates,
    /// Samples whose fix failed (unparseable ones included).
    pub failed: FaithfulnessRates,
    /// Samples not checked (not parsed yet, or the task has no failing test to trace).
    pub unchecked: usize,
    /// Claims over all checked samples: supported, contradicted, unverifiable.
    pub claims_supported: i64,
    /// Contradicted claims.
    pub claims_contradicted: i64,
    /// Unverifiable claims.
    pub claims_unverifiable: i64,
}

fn faithfulness_summary(
    store: &RunStore,
    ids: &BTreeMap<&str, usize>,
) -> Result<FaithfulnessSummary, CoreError> {
    let mut f = FaithfulnessSummary::default();
    for o in store.faithfulness_outcomes(PromptKind::Sample)? {
        if !ids.contains_key(o.task_id.as_str()) {
            continue;
        }
        let Some(v) = o.verdict.as_deref() else {
            f.unchecked += 1;
            continue;
        };
        f.all.add(v);
        if o.passed == Some(true) {
            f.passed.add(v);
        } else {
            f.failed.add(v);
        }
        f.claims_supported += o.claims.0;
        f.claims_contradicted += o.claims.1;
        f.claims_unverifiable += o.claims.2;
    }
    Ok(f)
}

/// The report of an evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Benchmark.
    pub benchmark: String,
    /// Model evaluated.
    pub model: String,
    /// Proxy model, if any.
    pub proxy_model: Option<String>,
    /// Tasks in the report.
    pub tasks: usize,
    /// Samples asked per task.
    pub n: usize,
    /// Temperature.
    pub temperature: f32,
    /// Trace shown in the prompt.
    pub with_trace: bool,
    /// Few-shot prompt.
    pub few_shot: bool,
    /// Tasks whose prompt had a trace.
    pub traced_tasks: usize,
    /// Sampled repairs.
    pub sampled: KindSummary,
    /// Greedy pass@1 (None when not run).
    pub greedy_pass_at_1: Option<f64>,
    /// Greedy samples.
    pub greedy: Option<KindSummary>,
    /// Proxy fixes from each rationale (the proxy model of this invocation).
    pub proxy: Option<KindSummary>,
    /// Every proxy model whose fixes the run holds, side by side.
    #[serde(default)]
    pub proxies: Vec<ProxySummary>,
    /// Samples that could not be generated (the run is incomplete while this is non-zero).
    #[serde(default)]
    pub generation_errors: GenerationErrors,
    /// Faithfulness of the sampled rationales, split by fix passed / failed.
    #[serde(default)]
    pub faithfulness: FaithfulnessSummary,
    /// Rows in the store.
    pub store_counts: Counts,
    /// Recorded errors / notes (tracing notes, generation failures).
    pub errors: usize,
    /// Per task.
    pub per_task: Vec<TaskSummary>,
}

/// Per task: (samples, correct, unparseable).
type PerTask = (usize, usize, usize);

fn summarize(
    store: &RunStore,
    kind: PromptKind,
    variant: Option<&str>,
    ids: &BTreeMap<&str, usize>,
    ks: &[usize],
    max_tokens: usize,
) -> Result<(KindSummary, Vec<PerTask>), CoreError> {
    let mut per: Vec<PerTask> = vec![(0, 0, 0); ids.len()];
    let mut s = KindSummary::default();
    let outcomes = match variant {
        Some(v) => store.outcomes_variant(kind, v)?,
        None => store.outcomes(kind)?,
    };
    for o in outcomes {
        let Some(&i) = ids.get(o.task_id.as_str()) else {
            continue;
        };
        per[i].0 += 1;
        s.samples += 1;
        if o.passed == Some(true) {
            per[i].1 += 1;
        }
        if o.passed.is_none() {
            s.ungraded += 1;
        }
        if o.parsed == Some(false) {
            per[i].2 += 1;
            s.unparseable += 1;
        }
    }
    s.unparseable_rate = if s.samples == 0 {
        0.0
    } else {
        s.unparseable as f64 / s.samples as f64
    };
    let counts: Vec<(usize, usize)> = per.iter().map(|&(n, c, _)| (n, c)).collect();
    for &k in ks {
        if let Some(v) = mean_pass_at_k(&counts, k) {
            s.pass_at_k.insert(k, v);
        }
    }
    let task_ids: Vec<&str> = ids.keys().copied().collect();
    s.usage = store.usage_of(kind, variant, Some(&task_ids), Some(max_tokens))?;
    Ok((s, per))
}

/// Samples expected but not stored, per task and stage, with the last recorded cause.
fn generation_errors(
    store: &RunStore,
    tasks: &[RepairTask],
    expected: &[(&str, Vec<usize>, &[PerTask])],
) -> Result<GenerationErrors, CoreError> {
    let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
    for (task, stage, message) in store.errors()? {
        if let Some(task) = task {
            last.insert((task, stage), message);
        }
    }
    let mut out = GenerationErrors::default();
    for (stage, want, got) in expected {
        for (i, t) in tasks.iter().enumerate() {
            let missing = want[i].saturating_sub(got[i].0);
            if missing == 0 {
                continue;
            }
            out.missing += missing;
            out.tasks.push(GenerationError {
                task_id: t.id.clone(),
                stage: stage.to_string(),
                missing,
                message: last
                    .get(&(t.id.clone(), stage.to_string()))
                    .cloned()
                    .unwrap_or_else(|| "not generated (the run was interrupted?)".into()),
            });
        }
    }
    Ok(out)
}

/// Compute the report of `tasks` from the store.
pub fn build_report(
    store: &RunStore,
    cfg: &EvalConfig,
    model: String,
    proxy_model: Option<String>,
    tasks: &[RepairTask],
) -> Result<EvalReport, CoreError> {
    let ids: BTreeMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let max_tokens = cfg.repair.sampling.max_tokens;
    let (sampled, per) = summarize(store, PromptKind::Sample, None, &ids, &cfg.ks, max_tokens)?;
    let (greedy, gper) = summarize(store, PromptKind::Greedy, None, &ids, &[1], max_tokens)?;
    let (proxy, pper) = match &proxy_model {
        Some(m) => summarize(store, PromptKind::Proxy, Some(m), &ids, &cfg.ks, max_tokens)?,
        None => (KindSummary::default(), vec![(0, 0, 0); tasks.len()]),
    };
    let mut proxies = Vec::new();
    for m in store.variants(PromptKind::Proxy)? {
        let (summary, _) = summarize(
            store,
            PromptKind::Proxy,
            Some(&m),
            &ids,
            &cfg.ks,
            max_tokens,
        )?;
        if summary.samples > 0 || proxy_model.as_deref() == Some(m.as_str()) {
            proxies.push(ProxySummary { model: m, summary });
        }
    }
    let mut expected: Vec<(&str, Vec<usize>, &[PerTask])> =
        vec![("sample", vec![cfg.n; tasks.len()], &per)];
    if cfg.greedy {
        expected.push(("greedy", vec![1; tasks.len()], &gper));
    }
    if proxy_model.is_some() {
        // One proxy fix per stored sampled repair.
        expected.push(("proxy", per.iter().map(|p| p.0).collect(), &pper));
    }
    let generation_errors = generation_errors(store, tasks, &expected)?;
    let mut per_task = Vec::new();
    let mut traced_tasks = 0;
    for (i, t) in tasks.iter().enumerate() {
        let traced = store.prep(&t.id)?.is_some_and(|p| p.trace.is_some());
        traced_tasks += traced as usize;
        per_task.push(TaskSummary {
            task_id: t.id.clone(),
            n: per[i].0,
            correct: per[i].1,
            unparseable: per[i].2,
            greedy_passed: (gper[i].0 > 0).then_some(gper[i].1 > 0),
            proxy_n: pper[i].0,
            proxy_correct: pper[i].1,
            traced,
        });
    }
    let has_greedy = greedy.samples > 0;
    let has_proxy = proxy_model.is_some();
    Ok(EvalReport {
        benchmark: cfg.benchmark.clone(),
        model,
        proxy_model,
        tasks: tasks.len(),
        n: cfg.n,
        temperature: cfg.temperature,
        with_trace: cfg.repair.prompt.with_trace,
        few_shot: cfg.repair.prompt.few_shot,
        traced_tasks,
        greedy_pass_at_1: if has_greedy {
            greedy.pass_at_k.get(&1).copied()
        } else {
            None
        },
        sampled,
        greedy: has_greedy.then_some(greedy),
        proxy: has_proxy.then_some(proxy),
        proxies,
        generation_errors,
        faithfulness: faithfulness_summary(store, &ids)?,
        store_counts: store.counts()?,
        errors: store.errors()?.len(),
        per_task,
    })
}

fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

impl EvalReport {
    /// Short text summary for the terminal.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} on {} ({} tasks, n={}, T={}, {}, {}):",
            self.model,
            self.benchmark,
            self.tasks,
            self.n,
            self.temperature,
            if self.few_shot { "3-shot" } else { "0-shot" },
            if self.with_trace {
                format!("with trace ({} traced)", self.traced_tasks)
            } else {
                "without trace".into()
            }
        );
        for (k, v) in &self.sampled.pass_at_k {
            let _ = writeln!(s, "  pass@{k:<3} {}%", pct(*v));
        }
        if let Some(g) = self.greedy_pass_at_1 {
            let _ = writeln!(s, "  greedy pass@1 {}%", pct(g));
        }
        for p in &self.proxies {
            for (k, v) in &p.summary.pass_at_k {
                let _ = writeln!(s, "  proxy pass@{k:<3} {}% ({})", pct(*v), p.model);
            }
        }
        let _ = writeln!(
            s,
            "  unparseable {}/{} ({}%); tokens: {} prompt, {} generated ({} completions cut at max_tokens{})",
            self.sampled.unparseable,
            self.sampled.samples,
            pct(self.sampled.unparseable_rate),
            self.sampled.usage.prompt_tokens,
            self.sampled.usage.completion_tokens,
            self.sampled.usage.truncated,
            match self.sampled.usage.context_cut {
                0 => String::new(),
                n => format!(", {n} at the model's context limit"),
            }
        );
        let f = &self.faithfulness;
        if f.all.checked > 0 {
            let _ = writeln!(
                s,
                "  rationales: {}% faithful, {}% unfaithful, {}% no checkable claim ({} checked; \
                 passed fixes {}% / {}% / {}% of {}, failed fixes {}% / {}% / {}% of {})",
                pct(f.all.faithful_rate),
                pct(f.all.unfaithful_rate),
                pct(f.all.no_claim_rate),
                f.all.checked,
                pct(f.passed.faithful_rate),
                pct(f.passed.unfaithful_rate),
                pct(f.passed.no_claim_rate),
                f.passed.checked,
                pct(f.failed.faithful_rate),
                pct(f.failed.unfaithful_rate),
                pct(f.failed.no_claim_rate),
                f.failed.checked,
            );
        }
        if self.sampled.ungraded > 0 {
            let _ = writeln!(s, "  WARNING: {} samples not graded", self.sampled.ungraded);
        }
        let g = &self.generation_errors;
        if g.missing > 0 {
            let _ = writeln!(
                s,
                "  GENERATION ERRORS: {} samples of {} tasks were not generated (figures above \
                 leave them out; rerun the same command to retry them):",
                g.missing,
                g.tasks
                    .iter()
                    .map(|t| t.task_id.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            );
            for t in g.tasks.iter().take(5) {
                let _ = writeln!(
                    s,
                    "    {} ({}, {} missing): {}",
                    t.task_id, t.stage, t.missing, t.message
                );
            }
            if g.tasks.len() > 5 {
                let _ = writeln!(s, "    ... and {} more (see report.md)", g.tasks.len() - 5);
            }
        }
        s
    }

    /// Whether every requested sample was generated.
    pub fn complete(&self) -> bool {
        self.generation_errors.missing == 0
    }

    /// Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# NExT repair: {} on {}\n", self.model, self.benchmark);
        let _ = writeln!(s, "| setting | value |\n|---|---|");
        let _ = writeln!(s, "| tasks | {} |", self.tasks);
        let _ = writeln!(s, "| samples per task | {} |", self.n);
        let _ = writeln!(s, "| temperature | {} |", self.temperature);
        let _ = writeln!(
            s,
            "| prompt | {} |",
            if self.few_shot { "3-shot" } else { "0-shot" }
        );
        let _ = writeln!(
            s,
            "| trace | {} |",
            if self.with_trace {
                format!(
                    "inline ({} of {} tasks traced)",
                    self.traced_tasks, self.tasks
                )
            } else {
                "none".into()
            }
        );
        if let Some(p) = &self.proxy_model {
            let _ = writeln!(s, "| proxy model | {p} |");
        }
        let _ = writeln!(s, "\n## Fix rate\n\n| metric | value (%) |\n|---|---|");
        for (k, v) in &self.sampled.pass_at_k {
            let _ = writeln!(s, "| pass@{k} | {} |", pct(*v));
        }
        if let Some(g) = self.greedy_pass_at_1 {
            let _ = writeln!(s, "| greedy pass@1 | {} |", pct(g));
        }
        for p in &self.proxies {
            for (k, v) in &p.summary.pass_at_k {
                let _ = writeln!(s, "| proxy pass@{k} ({}) | {} |", p.model, pct(*v));
            }
        }
        let _ = writeln!(
            s,
            "| unparseable | {} ({}/{}) |",
            pct(self.sampled.unparseable_rate),
            self.sampled.unparseable,
            self.sampled.samples
        );
        let f = &self.faithfulness;
        if f.all.checked > 0 {
            let _ = writeln!(
                s,
                "\n## Rationale faithfulness\n\nEach sampled rationale's execution claims checked against the trace of the buggy program (faithful: no contradicted claim and at least one supported; unfaithful: a contradicted claim).\n\n| samples | checked | faithful (%) | unfaithful (%) | no checkable claim (%) |\n|---|---|---|---|---|"
            );
            for (name, r) in [
                ("all", &f.all),
                ("fix passed", &f.passed),
                ("fix failed", &f.failed),
            ] {
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} |",
                    r.checked,
                    pct(r.faithful_rate),
                    pct(r.unfaithful_rate),
                    pct(r.no_claim_rate)
                );
            }
            let _ = writeln!(
                s,
                "\nClaims: {} supported, {} contradicted, {} unverifiable; {} samples not checked.",
                f.claims_supported, f.claims_contradicted, f.claims_unverifiable, f.unchecked
            );
        }
        let _ = writeln!(s, "\n## Token usage\n\n| kind | completions | prompt tokens | generated tokens | cut at max_tokens | cut at the context limit |\n|---|---|---|---|---|---|");
        let mut rows = vec![
            ("sampled".to_string(), Some(&self.sampled)),
            ("greedy".to_string(), self.greedy.as_ref()),
        ];
        for p in &self.proxies {
            rows.push((format!("proxy ({})", p.model), Some(&p.summary)));
        }
        for (name, k) in rows {
            if let Some(k) = k {
                let u = &k.usage;
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} | {} |",
                    u.completions, u.prompt_tokens, u.completion_tokens, u.truncated, u.context_cut
                );
            }
        }
        let g = &self.generation_errors;
        if g.missing > 0 {
            let _ = writeln!(
                s,
                "\n## Generation errors\n\n{} samples were not generated; the figures above leave them out. Rerun the same command to retry them.\n\n| task | stage | missing | cause |\n|---|---|---|---|",
                g.missing
            );
            for t in &g.tasks {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    t.task_id,
                    t.stage,
                    t.missing,
                    t.message.replace('|', "\\|").replace('\n', " ")
                );
            }
        }
        let _ = writeln!(s, "\n## Per task\n\n| task | correct / n | unparseable | greedy | proxy | traced |\n|---|---|---|---|---|---|");
        for t in &self.per_task {
            let g = match t.greedy_passed {
                Some(true) => "pass",
                Some(false) => "fail",
                None => "-",
            };
            let _ = writeln!(
                s,
                "| {} | {} / {} | {} | {g} | {} / {} | {} |",
                t.task_id,
                t.correct,
                t.n,
                t.unparseable,
                t.proxy_correct,
                t.proxy_n,
                if t.traced { "yes" } else { "no" }
            );
        }
        let c = &self.store_counts;
        let _ = writeln!(
            s,
            "\nStore: {} tasks, {} prompts, {} samples, {} parses, {} verdicts, {} notes/errors.",
            c.tasks, c.prompts, c.samples, c.parses, c.verdicts, c.errors
        );
        s
    }

    /// Write `results.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), CoreError> {
        let io = |p: &Path, e: std::io::Error| CoreError::Io {
            path: p.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| CoreError::Invalid(format!("report: {e}")))?;
        let p = dir.join("results.json");
        std::fs::write(&p, json + "\n").map_err(|e| io(&p, e))?;
        let p = dir.join("report.md");
        std::fs::write(&p, self.markdown()).map_err(|e| io(&p, e))?;
        Ok(())
    }
}
