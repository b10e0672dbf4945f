//! Evaluation: `n` sampled repairs per task, greedy pass@1, proxy rationale evaluation, all
//! recorded in the run store as they happen; resumable.
//!
//! Stages (each skips what the store already holds, so a rerun after a kill does only the
//! missing work): check that the generators can serve ([`Generator::preflight`]); store the
//! tasks; prepare them (failing test + trace); check that every prompt fits the model's
//! context (all tasks at once, before any sampling); sample `n` repairs per task, storing,
//! parsing and grading each prompt's completions as soon as they arrive; the greedy repair;
//! the proxy model's fixes from each sampled rationale (stored per proxy model); a final sweep
//! that parses and grades anything left ungraded by an interruption; the faithfulness check
//! of every parsed rationale against the trace (`nxt-faithful`), stored per sample.
//!
//! Generation errors are not sample failures. A request the backend refuses as invalid (a
//! server's 400) is recorded in the errors table and stored as no sample at all, so the report
//! counts it as missing, the run ends with an error, and a rerun asks again. A refusal no
//! retry can fix (authentication, an unknown model: [`LlmError::Refused`]) and any other
//! backend failure stop the run with the backend's message.

use std::collections::BTreeMap;

use nxt_data::RepairTask;
use nxt_llm::{Completion, GenerationRequest, Generator, LlmError, Prompt};
use nxt_sandbox::Pool;

pub use crate::config::EvalConfig;
use crate::prompt::build_proxy_prompt;
use crate::repair::{grade_programs, parse_for, prepare, prompt_for, CoreError};
use crate::report::{build_report, EvalReport};
use crate::store::{PromptKind, RunStore};

/// A progress notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Stage name (`prepare`, `sample`, `greedy`, `proxy`, `grade`).
    pub stage: &'static str,
    /// Units done in this stage (this session, including those already stored).
    pub done: usize,
    /// Units in this stage.
    pub total: usize,
    /// Short description of the last unit.
    pub message: String,
}

/// What the evaluation runs on.
pub struct EvalContext<'a> {
    /// Sandbox pool (tracing and grading).
    pub pool: &'a Pool,
    /// The model being evaluated.
    pub generator: &'a dyn Generator,
    /// The proxy (student) model, if proxy evaluation is wanted.
    pub proxy: Option<&'a dyn Generator>,
}

/// The configuration recorded in the store: a run directory holds one configuration. The
/// proxy model is not part of it: proxy fixes are stored per proxy model.
pub fn config_record(cfg: &EvalConfig, ctx: &EvalContext<'_>) -> serde_json::Value {
    serde_json::json!({
        "benchmark": cfg.benchmark,
        "model": ctx.generator.name(),
        "n": cfg.n,
        "temperature": cfg.temperature,
        "greedy": cfg.greedy,
        "seed": cfg.seed,
        "repair": cfg.repair,
        "ks": cfg.ks,
    })
}

/// Config keys that may change between a run and its resumption (`proxy_model` was recorded
/// by earlier versions).
pub const VOLATILE_CONFIG_KEYS: &[&str] = &["ks", "greedy", "proxy_model"];

/// Checks that every prompt fits the generator's context, when the generator can tell
/// ([`Generator::prompt_fit`]); all prompts that do not fit are named in one error, with what
/// to change.
pub fn check_prompts_fit(
    generator: &dyn Generator,
    prompts: &[(&str, &Prompt)],
    what: &str,
) -> Result<(), CoreError> {
    let mut too_long: Vec<(String, usize)> = Vec::new();
    let mut context = 0;
    for (task_id, prompt) in prompts {
        let Some(fit) = generator.prompt_fit(prompt) else {
            return Ok(());
        };
        let fit = fit?;
        context = fit.context;
        if !fit.fits() {
            too_long.push((task_id.to_string(), fit.prompt_tokens));
        }
    }
    if too_long.is_empty() {
        return Ok(());
    }
    let longest = too_long.iter().map(|t| t.1).max().unwrap_or(0);
    let named: Vec<String> = too_long
        .iter()
        .take(10)
        .map(|(id, n)| format!("{id} ({n} tokens)"))
        .collect();
    Err(CoreError::PromptsTooLong(format!(
        "{} of {} {what} prompts do not fit the context of {} ({context} tokens; the longest has {longest}): {}{}; \
         nothing was sampled. Shorten the prompt with --zero-shot (no worked exemplars) or a smaller \
         --trace-budget, or use a model with a longer context",
        too_long.len(),
        prompts.len(),
        generator.name(),
        named.join(", "),
        if too_long.len() > named.len() {
            format!(" and {} more", too_long.len() - named.len())
        } else {
            String::new()
        }
    )))
}

fn request_seed(base: u64, task_id: &str, salt: u64) -> u64 {
    // FNV-1a over the task id, mixed with the salt: stable across runs and platforms.
    let mut h: u64 = 0xcbf29ce484222325 ^ base;
    for b in task_id.bytes().chain(salt.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Run (or resume) an evaluation over `tasks`, recording everything in `store`, and return the
/// report computed from the store.
pub fn run_eval(
    ctx: &EvalContext<'_>,
    tasks: &[RepairTask],
    cfg: &EvalConfig,
    store: &RunStore,
    progress: &mut dyn FnMut(&Progress),
) -> Result<EvalReport, CoreError> {
    if cfg.n == 0 {
        return Err(CoreError::Invalid("--n must be at least 1".into()));
    }
    if cfg.ks.contains(&0) {
        return Err(CoreError::Invalid(
            "pass@0 is not defined: every k must be at least 1".into(),
        ));
    }
    ctx.generator.preflight()?;
    if let Some(p) = ctx.proxy {
        p.preflight()?;
    }
    store.check_config(&config_record(cfg, ctx), VOLATILE_CONFIG_KEYS)?;
    // Samples an earlier version recorded as failed generations are generated again.
    store.drop_failed_samples()?;
    for (i, t) in tasks.iter().enumerate() {
        store.put_task(i, t)?;
    }
    // Tasks already stored by an earlier, larger run stay in the report only if asked for now.
    let by_id: BTreeMap<&str, &RepairTask> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();

    // 1. Prepare: failing test + trace.
    let total = tasks.len();
    for (i, t) in tasks.iter().enumerate() {
        if store.prep(&t.id)?.is_none() {
            let prep = prepare(ctx.pool, t, &cfg.repair)?;
            if let Some(n) = &prep.note {
                store.put_error(Some(&t.id), "prepare", n)?;
            }
            store.put_prep(&t.id, &prep)?;
        }
        progress(&Progress {
            stage: "prepare",
            done: i + 1,
            total,
            message: t.id.clone(),
        });
    }

    // 2. Every prompt must fit the model, checked for all tasks before any sampling.
    let mut prompts = Vec::with_capacity(tasks.len());
    for t in tasks {
        let prep = store
            .prep(&t.id)?
            .ok_or_else(|| CoreError::Invalid(format!("task {} was not prepared", t.id)))?;
        prompts.push((t.id.as_str(), prompt_for(t, &prep, &cfg.repair)));
    }
    let refs: Vec<(&str, &Prompt)> = prompts.iter().map(|(id, p)| (*id, p)).collect();
    check_prompts_fit(ctx.generator, &refs, "repair")?;

    // 3. Sampled repairs, then greedy.
    sample_stage(
        ctx,
        ctx.generator,
        tasks,
        cfg,
        store,
        PromptKind::Sample,
        progress,
    )?;
    if cfg.greedy {
        sample_stage(
            ctx,
            ctx.generator,
            tasks,
            cfg,
            store,
            PromptKind::Greedy,
            progress,
        )?;
    }

    // 4. Proxy: the student gets each sampled rationale.
    if let Some(proxy) = ctx.proxy {
        proxy_stage(ctx, proxy, tasks, cfg, store, progress)?;
    }

    // 5. Sweep: parse and grade anything an interruption left behind.
    sweep(ctx.pool, &by_id, store, progress)?;

    // 6. Faithfulness: every parsed rationale checked against the trace.
    faithfulness_stage(ctx.pool, &by_id, store, progress)?;

    build_report(
        store,
        cfg,
        ctx.generator.name(),
        ctx.proxy.map(|p| p.name()),
        tasks,
    )
}

/// Store, parse and grade completions that just arrived for `prompt_id`.
fn record_completions(
    pool: &Pool,
    store: &RunStore,
    task: &RepairTask,
    prompt_id: i64,
    first_idx: usize,
    completions: &[Completion],
) -> Result<(), CoreError> {
    let ids = store.put_samples(prompt_id, first_idx, completions)?;
    let mut to_grade: Vec<(i64, String)> = Vec::new();
    for (id, c) in ids.iter().zip(completions) {
        let parsed = parse_for(task, &c.text);
        store.put_parse(*id, &parsed)?;
        match &parsed.program {
            Some(p) => to_grade.push((*id, p.clone())),
            None => store.put_verdict(*id, false, &serde_json::json!({"unparseable": true}))?,
        }
    }
    grade_and_store(pool, store, task, &to_grade)
}

fn grade_and_store(
    pool: &Pool,
    store: &RunStore,
    task: &RepairTask,
    items: &[(i64, String)],
) -> Result<(), CoreError> {
    let pairs: Vec<(&RepairTask, &str)> = items.iter().map(|(_, p)| (task, p.as_str())).collect();
    let mut result = Ok(());
    grade_programs(pool, &pairs, &mut |i, r| {
        let stored = match r {
            Ok(g) => serde_json::to_value(&g)
                .map_err(|e| CoreError::Invalid(format!("grade result: {e}")))
                .and_then(|detail| {
                    store
                        .put_verdict(items[i].0, g.passed, &detail)
                        .map_err(CoreError::from)
                }),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            if result.is_ok() {
                result = Err(e);
            }
        }
    });
    result
}

/// One pending generation: the task, the prompt row, how many samples exist, how many to ask.
struct Pending<'t> {
    task: &'t RepairTask,
    prompt_id: i64,
    have: usize,
    request: GenerationRequest,
}

#[allow(clippy::too_many_arguments)]
fn run_pending(
    ctx: &EvalContext<'_>,
    generator: &dyn Generator,
    store: &RunStore,
    pending: Vec<Pending<'_>>,
    stage: &'static str,
    total: usize,
    already: usize,
    batch: usize,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), CoreError> {
    let mut done = already;
    for chunk in pending.chunks(batch.max(1)) {
        let requests: Vec<GenerationRequest> = chunk.iter().map(|p| p.request.clone()).collect();
        let mut failure: Option<CoreError> = None;
        generator.generate_many(&requests, &mut |i, r: Result<Vec<Completion>, LlmError>| {
            if failure.is_some() {
                return;
            }
            let p = &chunk[i];
            let outcome = match r {
                Ok(cs) => record_completions(ctx.pool, store, p.task, p.prompt_id, p.have, &cs),
                // The backend refused this request (a server's 400, a prompt too long for a
                // server's model): a generation error, not a failed sample. Nothing is stored
                // as a sample, so the report counts the samples as missing and a rerun asks
                // again; the other tasks go on.
                Err(LlmError::Request(msg)) => store
                    .put_error(
                        Some(&p.task.id),
                        stage,
                        &format!("generation failed: {msg}"),
                    )
                    .map_err(CoreError::from),
                // Anything else (server down, refused credentials, model files) stops the run;
                // rerunning resumes.
                Err(e) => store
                    .put_error(Some(&p.task.id), stage, &e.to_string())
                    .map_err(CoreError::from)
                    .and(Err(CoreError::Llm(e))),
            };
            done += 1;
            progress(&Progress {
                stage,
                done,
                total,
                message: p.task.id.clone(),
            });
            if let Err(e) = outcome {
                failure = Some(e);
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(())
}

fn sample_stage(
    ctx: &EvalContext<'_>,
    generator: &dyn Generator,
    tasks: &[RepairTask],
    cfg: &EvalConfig,
    store: &RunStore,
    kind: PromptKind,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), CoreError> {
    let (stage, n, temperature) = match kind {
        PromptKind::Greedy => ("greedy", 1, 0.0),
        _ => ("sample", cfg.n, cfg.temperature),
    };
    let mut pending = Vec::new();
    for t in tasks {
        let prep = store
            .prep(&t.id)?
            .ok_or_else(|| CoreError::Invalid(format!("task {} was not prepared", t.id)))?;
        let prompt = prompt_for(t, &prep, &cfg.repair);
        let prompt_id = store.put_prompt(&t.id, kind, 0, &prompt)?;
        let have = store.sample_count(prompt_id)?;
        if have < n {
            let seed = request_seed(
                cfg.seed,
                &t.id,
                have as u64
                    + if kind == PromptKind::Greedy {
                        1 << 32
                    } else {
                        0
                    },
            );
            let params = cfg.repair.sampling_for(temperature, Some(seed));
            pending.push(Pending {
                task: t,
                prompt_id,
                have,
                request: GenerationRequest {
                    prompt,
                    n: n - have,
                    params,
                },
            });
        }
    }
    let already = tasks.len() - pending.len();
    progress(&Progress {
        stage,
        done: already,
        total: tasks.len(),
        message: String::new(),
    });
    run_pending(
        ctx,
        generator,
        store,
        pending,
        stage,
        tasks.len(),
        already,
        cfg.batch,
        progress,
    )
}

fn proxy_stage(
    ctx: &EvalContext<'_>,
    proxy: &dyn Generator,
    tasks: &[RepairTask],
    cfg: &EvalConfig,
    store: &RunStore,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), CoreError> {
    let mut pending = Vec::new();
    let mut total = 0;
    let proxy_name = proxy.name();
    for t in tasks {
        let Some((pid, _)) = store.prompt(&t.id, PromptKind::Sample, 0)? else {
            continue;
        };
        for s in store.samples(pid)? {
            total += 1;
            let rationale = match store.parse_of(s.id)? {
                Some(p) => p.rationale,
                None => parse_for(t, &s.text).rationale,
            };
            let prompt = build_proxy_prompt(t, &rationale, &cfg.repair.prompt);
            let prompt_id =
                store.put_prompt_variant(&t.id, PromptKind::Proxy, s.id, &proxy_name, &prompt)?;
            if store.sample_count(prompt_id)? == 0 {
                let seed = request_seed(cfg.seed, &t.id, (2u64 << 32) + s.id as u64);
                let params = cfg.repair.sampling_for(cfg.temperature, Some(seed));
                pending.push(Pending {
                    task: t,
                    prompt_id,
                    have: 0,
                    request: GenerationRequest {
                        prompt,
                        n: 1,
                        params,
                    },
                });
            }
        }
    }
    let prompts: Vec<(&str, &Prompt)> = pending
        .iter()
        .map(|p| (p.task.id.as_str(), &p.request.prompt))
        .collect();
    check_prompts_fit(proxy, &prompts, "proxy")?;
    let already = total - pending.len();
    progress(&Progress {
        stage: "proxy",
        done: already,
        total,
        message: String::new(),
    });
    run_pending(
        ctx, proxy, store, pending, "proxy", total, already, cfg.batch, progress,
    )
}

/// Checks every parsed rationale (sampled and greedy) not checked yet against the trace of
/// the buggy program on the task's failing test, recorded again without the prompt's render
/// budget and with larger capture budgets ([`nxt_faithful::full_capture`]), once per task.
/// A task whose program cannot be traced is noted in the errors table and retried on a rerun.
fn faithfulness_stage(
    pool: &Pool,
    tasks: &BTreeMap<&str, &RepairTask>,
    store: &RunStore,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), CoreError> {
    let mut todo: BTreeMap<String, Vec<crate::store::PendingRationale>> = BTreeMap::new();
    for kind in [PromptKind::Sample, PromptKind::Greedy] {
        for p in store.faithfulness_pending(kind)? {
            todo.entry(p.task_id.clone()).or_default().push(p);
        }
    }
    let total = todo.values().map(Vec::len).sum();
    let mut done = 0;
    for (id, items) in &todo {
        done += items.len();
        let (Some(task), Some(test)) = (
            tasks.get(id.as_str()),
            store.prep(id)?.and_then(|p| p.failing_test),
        ) else {
            continue;
        };
        let req = nxt_trace::TraceRequest {
            program: task.buggy_program.clone(),
            test,
            setup: task.prompt_tests.setup.clone(),
            setup_placement: task.prompt_tests.setup_placement,
            capture: nxt_faithful::full_capture(),
            memory_bytes: nxt_data::grading_limits().memory_bytes,
        };
        match nxt_trace::trace(pool, &req) {
            Ok(trace) => {
                let index = nxt_faithful::TraceIndex::new(&trace);
                for item in items {
                    let report = nxt_faithful::check_with(&index, &item.rationale);
                    store.put_faithfulness(item.sample_id, &report)?;
                }
            }
            Err(nxt_trace::TraceError::Sandbox(e)) => return Err(e.into()),
            Err(e) => store.put_error(
                Some(id),
                "faithfulness",
                &format!("tracing for the faithfulness check failed: {e}"),
            )?,
        }
        progress(&Progress {
            stage: "faithfulness",
            done,
            total,
            message: id.clone(),
        });
    }
    Ok(())
}

fn sweep(
    pool: &Pool,
    tasks: &BTreeMap<&str, &RepairTask>,
    store: &RunStore,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), CoreError> {
    let mut todo: BTreeMap<&str, Vec<(i64, String)>> = BTreeMap::new();
    for kind in [PromptKind::Sample, PromptKind::Greedy, PromptKind::Proxy] {
        for o in store.outcomes(kind)? {
            if o.passed.is_some() {
                continue;
            }
            let Some(task) = tasks.get(o.task_id.as_str()) else {
                continue;
            };
            let parsed = match store.parse_of(o.sample_id)? {
                Some(p) => p,
                None => {
                    let text = store.sample_text(o.sample_id)?;
                    let p = parse_for(task, &text);
                    store.put_parse(o.sample_id, &p)?;
                    p
                }
            };
            match parsed.program {
                Some(p) => todo
                    .entry(task.id.as_str())
                    .or_default()
                    .push((o.sample_id, p)),
                None => store.put_verdict(
                    o.sample_id,
                    false,
                    &serde_json::json!({"unparseable": true}),
                )?,
            }
        }
    }
    let total = todo.values().map(Vec::len).sum();
    let mut done = 0;
    for (id, items) in &todo {
        if let Some(task) = tasks.get(id) {
            grade_and_store(pool, store, task, items)?;
        }
        done += items.len();
        progress(&Progress {
            stage: "grade",
            done,
            total,
            message: id.to_string(),
        });
    }
    Ok(())
}
