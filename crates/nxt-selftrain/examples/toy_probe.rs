//! The toy self-training probe: does every stage of the CPU demo carry signal?
//!
//! 1. `prepare_toy` (tasks, hand-made repairs, tiny random model);
//! 2. warm start: full fine-tuning of the random model on the hand-made repairs;
//! 3. sample the warm-started model (n per task, temperature 0.8, top-k 40) on the training
//!    tasks and on dev, grade every fix;
//! 4. for each iteration: keep the passing training samples (deduplicated on code +
//!    rationale, at most 10 per task), fine-tune the warm-started model on them, sample dev
//!    (and the training tasks, for the next iteration) with it.
//!
//! Prints the fix rate (mean fraction of passing samples per task) and the share of tasks
//! solved at least once per stage, with wall times.
//!
//! ```sh
//! NXT_PYTHON=/usr/bin/python3.11 cargo run --release -p nxt-selftrain --example toy_probe -- \
//!     dir=/tmp/toy-probe warm_epochs=6 warm_lr=3e-3 iters=2
//! ```
//! Settings are `key=value` arguments (see `Settings`); the toy options may be given as a
//! JSON file with `toy=PATH`.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nxt_core::repair::{grade_programs, parse_for, prepare, prompt_for};
use nxt_data::RepairTask;
use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::{GenerationRequest, Generator, Prompt};
use nxt_sandbox::{Pool, PoolConfig};
use nxt_selftrain::toy::{load_tasks, prepare_toy, toy_repair_config, ToyOptions};
use nxt_train::{train, Schedule, TrainConfig};

type Res<T> = Result<T, Box<dyn Error>>;

#[derive(Debug, Clone)]
struct Settings {
    dir: PathBuf,
    toy: ToyOptions,
    warm_epochs: usize,
    warm_lr: f64,
    warm_batch: usize,
    self_epochs: usize,
    self_lr: f64,
    n: usize,
    iters: usize,
    train_tasks: usize,
    dev_tasks: usize,
    max_tokens: usize,
    per_task_cap: usize,
}

fn settings() -> Res<Settings> {
    let mut s = Settings {
        dir: PathBuf::from("/tmp/toy-probe"),
        toy: ToyOptions::default(),
        warm_epochs: 6,
        warm_lr: 3e-3,
        warm_batch: 8,
        self_epochs: 3,
        self_lr: 3e-3,
        n: 32,
        iters: 1,
        train_tasks: usize::MAX,
        dev_tasks: usize::MAX,
        max_tokens: 192,
        per_task_cap: 10,
    };
    for arg in std::env::args().skip(1) {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| format!("argument `{arg}`: expected key=value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{k}: {e}");
        match k {
            "dir" => s.dir = PathBuf::from(v),
            "toy" => {
                let text = std::fs::read_to_string(v).map_err(|e| bad(&e))?;
                s.toy = serde_json::from_str(&text).map_err(|e| bad(&e))?;
            }
            "warm_epochs" => s.warm_epochs = v.parse().map_err(|e| bad(&e))?,
            "warm_lr" => s.warm_lr = v.parse().map_err(|e| bad(&e))?,
            "warm_batch" => s.warm_batch = v.parse().map_err(|e| bad(&e))?,
            "self_epochs" => s.self_epochs = v.parse().map_err(|e| bad(&e))?,
            "self_lr" => s.self_lr = v.parse().map_err(|e| bad(&e))?,
            "n" => s.n = v.parse().map_err(|e| bad(&e))?,
            "iters" => s.iters = v.parse().map_err(|e| bad(&e))?,
            "train_tasks" => s.train_tasks = v.parse().map_err(|e| bad(&e))?,
            "dev_tasks" => s.dev_tasks = v.parse().map_err(|e| bad(&e))?,
            "max_tokens" => s.max_tokens = v.parse().map_err(|e| bad(&e))?,
            "per_task_cap" => s.per_task_cap = v.parse().map_err(|e| bad(&e))?,
            "instances" => s.toy.instances_per_template = v.parse().map_err(|e| bad(&e))?,
            "warm_start" => s.toy.warm_start = v.parse().map_err(|e| bad(&e))?,
            "hidden" => s.toy.model.hidden_size = v.parse().map_err(|e| bad(&e))?,
            "intermediate" => s.toy.model.intermediate_size = v.parse().map_err(|e| bad(&e))?,
            "layers" => s.toy.model.num_layers = v.parse().map_err(|e| bad(&e))?,
            "heads" => s.toy.model.num_heads = v.parse().map_err(|e| bad(&e))?,
            "kv_heads" => s.toy.model.num_kv_heads = v.parse().map_err(|e| bad(&e))?,
            "merges" => s.toy.model.num_merges = v.parse().map_err(|e| bad(&e))?,
            "seed" => s.toy.seed = v.parse().map_err(|e| bad(&e))?,
            "naming" => {
                s.toy.naming = serde_json::from_value(serde_json::json!(v)).map_err(|e| bad(&e))?
            }
            other => return Err(format!("unknown setting `{other}`").into()),
        }
    }
    Ok(s)
}

/// One task's prompt, prepared once.
struct Prepared {
    task: RepairTask,
    prompt: Prompt,
}

/// One graded sample.
struct Sample {
    completion: String,
    rationale: String,
    program: Option<String>,
    passed: bool,
}

fn prepared(pool: &Pool, tasks: Vec<RepairTask>) -> Res<Vec<Prepared>> {
    let cfg = toy_repair_config();
    tasks
        .into_iter()
        .map(|task| {
            let prep = prepare(pool, &task, &cfg)?;
            let prompt = prompt_for(&task, &prep, &cfg);
            Ok(Prepared { task, prompt })
        })
        .collect()
}

/// Sample `n` completions per task and grade them.
fn sample(
    pool: &Pool,
    engine: &Engine,
    tasks: &[Prepared],
    n: usize,
    max_tokens: usize,
    seed: u64,
) -> Res<Vec<Vec<Sample>>> {
    let cfg = toy_repair_config();
    let mut out = Vec::new();
    for (ti, p) in tasks.iter().enumerate() {
        let mut params = cfg.sampling_for(0.8, Some(seed ^ (ti as u64) << 16));
        params.max_tokens = max_tokens;
        let completions = engine.generate(&GenerationRequest {
            prompt: p.prompt.clone(),
            n,
            params,
        })?;
        let parsed: Vec<_> = completions
            .iter()
            .map(|c| parse_for(&p.task, &c.text))
            .collect();
        let items: Vec<(&RepairTask, &str)> = parsed
            .iter()
            .filter_map(|q| q.program.as_deref().map(|prog| (&p.task, prog)))
            .collect();
        let mut verdicts = vec![false; items.len()];
        let mut err = None;
        grade_programs(pool, &items, &mut |i, r| match r {
            Ok(g) => verdicts[i] = g.passed,
            Err(e) => {
                err.get_or_insert(e);
            }
        });
        if let Some(e) = err {
            return Err(e.into());
        }
        let mut v = verdicts.into_iter();
        let samples = completions
            .into_iter()
            .zip(parsed)
            .map(|(c, q)| {
                let passed = q.program.is_some() && v.next().unwrap_or(false);
                Sample {
                    completion: c.text,
                    rationale: q.rationale,
                    program: q.program,
                    passed,
                }
            })
            .collect();
        out.push(samples);
    }
    Ok(out)
}

/// (fix rate = mean share of passing samples, share of tasks solved at least once,
/// share of parseable samples)
fn rates(samples: &[Vec<Sample>]) -> (f64, f64, f64) {
    let t = samples.len().max(1) as f64;
    let fix = samples
        .iter()
        .map(|s| s.iter().filter(|x| x.passed).count() as f64 / s.len().max(1) as f64)
        .sum::<f64>()
        / t;
    let solved = samples
        .iter()
        .filter(|s| s.iter().any(|x| x.passed))
        .count() as f64
        / t;
    let n: usize = samples.iter().map(Vec::len).sum();
    let parsed = samples
        .iter()
        .flatten()
        .filter(|x| x.program.is_some())
        .count() as f64
        / n.max(1) as f64;
    (fix, solved, parsed)
}

fn keep(tasks: &[Prepared], samples: &[Vec<Sample>], cap: usize, path: &Path) -> Res<usize> {
    let mut lines = String::new();
    let mut kept = 0;
    for (p, ss) in tasks.iter().zip(samples) {
        let Prompt::Text(prompt) = &p.prompt else {
            return Err("the toy prompt is not a text prompt".into());
        };
        let mut seen = BTreeSet::new();
        for s in ss.iter().filter(|s| s.passed) {
            let key = (
                s.program
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                s.rationale.split_whitespace().collect::<Vec<_>>().join(" "),
            );
            if seen.len() >= cap || !seen.insert(key) {
                continue;
            }
            let line = serde_json::json!({"prompt": prompt, "completion": s.completion});
            lines.push_str(&line.to_string());
            lines.push('\n');
            kept += 1;
        }
    }
    std::fs::write(path, lines)?;
    Ok(kept)
}

fn fine_tune(
    base: &Path,
    data: &Path,
    out: &Path,
    epochs: usize,
    lr: f64,
    batch: usize,
) -> Res<(PathBuf, f64)> {
    let mut cfg = TrainConfig::new(base.to_string_lossy(), data, out);
    cfg.full = true;
    cfg.lr = lr;
    cfg.epochs = epochs;
    cfg.batch_size = batch;
    cfg.warmup_steps = 10;
    cfg.schedule = Schedule::Cosine;
    cfg.max_length = 1024;
    let mut last = Instant::now();
    let summary = train(&cfg, &mut |m| {
        if last.elapsed().as_secs_f64() > 10.0 || m.step == m.total_steps {
            last = Instant::now();
            eprintln!(
                "  step {}/{} loss {:.4} ({:.0} tok/s)",
                m.step, m.total_steps, m.loss, m.tokens_per_s
            );
        }
    })?;
    let dir = summary
        .model_dir
        .ok_or("full fine-tuning wrote no model directory")?;
    Ok((dir, summary.final_loss))
}

fn main() -> Res<()> {
    let s = settings()?;
    eprintln!("settings: {s:?}");
    let pool = Pool::new(PoolConfig::default())?;
    let mut times: BTreeMap<String, f64> = BTreeMap::new();

    let t = Instant::now();
    let art = prepare_toy(&s.dir.join("toy"), &s.toy, &pool)?;
    times.insert("1 prepare".into(), t.elapsed().as_secs_f64());
    eprintln!("toy: {:?} tokens {:?}", art.counts, art.tokens);

    let t = Instant::now();
    let train_tasks: Vec<_> = load_tasks(&art.train)?
        .into_iter()
        .take(s.train_tasks)
        .collect();
    let dev_tasks: Vec<_> = load_tasks(&art.dev)?
        .into_iter()
        .take(s.dev_tasks)
        .collect();
    let train_p = prepared(&pool, train_tasks)?;
    let dev_p = prepared(&pool, dev_tasks)?;
    times.insert("2 traces".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let warm_out = s.dir.join("warm");
    let (warm, warm_loss) = fine_tune(
        &art.model_dir,
        &art.warm_start,
        &warm_out,
        s.warm_epochs,
        s.warm_lr,
        s.warm_batch,
    )?;
    times.insert("3 warm start".into(), t.elapsed().as_secs_f64());
    eprintln!("warm start: final loss {warm_loss:.4}");

    let t = Instant::now();
    let engine = Engine::load(&warm.to_string_lossy(), EngineOptions::default())?;
    let dev_base = sample(&pool, &engine, &dev_p, s.n, s.max_tokens, 1)?;
    times.insert("4 sample dev (base)".into(), t.elapsed().as_secs_f64());
    let (f, so, pa) = rates(&dev_base);
    println!("base dev: fix rate {f:.4}, solved {so:.3}, parseable {pa:.3}");
    if let Some(ex) = dev_base.first().and_then(|x| x.first()) {
        eprintln!("--- a base dev sample ---\n{}\n---", ex.completion);
    }

    let t = Instant::now();
    let mut train_samples = sample(&pool, &engine, &train_p, s.n, s.max_tokens, 2)?;
    times.insert("5 sample train (base)".into(), t.elapsed().as_secs_f64());
    let (f, so, pa) = rates(&train_samples);
    println!("base train: fix rate {f:.4}, solved {so:.3}, parseable {pa:.3}");

    for it in 1..=s.iters {
        let data = s.dir.join(format!("kept-{it}.jsonl"));
        let kept = keep(&train_p, &train_samples, s.per_task_cap, &data)?;
        println!("iteration {it}: kept {kept} samples");
        if kept == 0 {
            break;
        }
        let t = Instant::now();
        let (model, loss) = fine_tune(
            &warm,
            &data,
            &s.dir.join(format!("iter-{it}")),
            s.self_epochs,
            s.self_lr,
            s.warm_batch,
        )?;
        times.insert(format!("6.{it} train"), t.elapsed().as_secs_f64());
        let t = Instant::now();
        let engine = Engine::load(&model.to_string_lossy(), EngineOptions::default())?;
        let dev_it = sample(&pool, &engine, &dev_p, s.n, s.max_tokens, 1)?;
        times.insert(format!("7.{it} sample dev"), t.elapsed().as_secs_f64());
        let (f, so, pa) = rates(&dev_it);
        println!(
            "iteration {it} dev: fix rate {f:.4}, solved {so:.3}, parseable {pa:.3}, train loss {loss:.4}"
        );
        if it < s.iters {
            let t = Instant::now();
            train_samples = sample(&pool, &engine, &train_p, s.n, s.max_tokens, 2 + it as u64)?;
            times.insert(format!("8.{it} sample train"), t.elapsed().as_secs_f64());
            let (f, so, _) = rates(&train_samples);
            println!("iteration {it} train: fix rate {f:.4}, solved {so:.3}");
        }
    }
    for (k, v) in &times {
        println!("time {k}: {v:.1} s");
    }
    Ok(())
}
