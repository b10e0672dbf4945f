//! The embedded trainer: LoRA or full fine-tuning of the engine's differentiable model,
//! resumable from checkpoints.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use nxt_engine::adapter::{copy_model_files, LoraAdapter, LoraConfig};
use nxt_engine::dropout::DropoutRng;
use nxt_engine::model::LoraBranch;
use nxt_engine::{ModelConfig, Transformer};
use rand::distr::{Distribution, Uniform};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::data::{self, Dataset};
use crate::files::{read_json, write_atomic, write_json_atomic};
use crate::loss::batch_nll;
use crate::manifest::{self, Manifest};
use crate::optim::{self, AdamW, Param};
use crate::{StepMetrics, TrainConfig, TrainError, TrainSummary};

/// Sub-directory of the output directory that holds the checkpoint.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The checkpoint's commit record (written last, atomically).
pub const TRAINER_STATE: &str = "trainer_state.json";
/// One line per optimiser step.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Written when a run is complete.
pub const SUMMARY_FILE: &str = "train_summary.json";

/// `trainer_state.json`: where a run stands at its last checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimiser steps done.
    pub step: usize,
    /// Steps the run will make.
    pub total_steps: usize,
    /// Epoch of the next step (0-based).
    pub epoch: usize,
    /// Step within that epoch of the next step (0-based).
    pub step_in_epoch: usize,
    /// File (in the checkpoint directory) with the weights and AdamW moments.
    pub tensors: String,
    /// State of the dropout stream.
    pub dropout_rng: u64,
    /// Completion tokens trained on so far.
    pub completion_tokens: u64,
    /// Sequence tokens (prompt + completion) processed so far.
    pub tokens: u64,
    /// Examples processed so far (repeats counted).
    pub examples_seen: u64,
    /// Sum of the step losses so far.
    pub loss_sum: f64,
    /// Loss of the last step.
    pub last_loss: f64,
    /// Training wall time so far, seconds.
    pub wall_s: f64,
    /// nxt version that wrote it.
    pub nxt_version: String,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MetricsLine {
    step: usize,
    epoch: f64,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    completion_tokens: usize,
    tokens: usize,
    tokens_per_s: f64,
    wall_s: f64,
}

/// The trainer's view of the base model directory.
pub(crate) struct Base {
    pub dir: PathBuf,
    pub cfg: ModelConfig,
    pub tokenizer: Tokenizer,
    pub eos: String,
    pub pad: u32,
}

pub(crate) fn open_base(model: &str) -> Result<Base, TrainError> {
    let dir = nxt_engine::resolve_model(model, "main")?;
    let cfg = ModelConfig::from_file(&dir.join("config.json"))?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tok_path)
        .map_err(|e| nxt_engine::EngineError::Model(format!("{}: {e}", tok_path.display())))?;
    let eos = data::eos_text(&dir, &tokenizer, &cfg.eos_token_ids)?;
    let pad = tokenizer
        .token_to_id(&eos)
        .or_else(|| cfg.eos_token_ids.first().copied())
        .unwrap_or(0);
    Ok(Base {
        dir,
        cfg,
        tokenizer,
        eos,
        pad,
    })
}

/// Micro-batches (example indices) of every optimiser step of one epoch.
pub fn epoch_plan(n: usize, cfg: &TrainConfig, epoch: usize) -> Vec<Vec<Vec<usize>>> {
    let mut order: Vec<usize> = (0..n).collect();
    let seed = cfg
        .seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch as u64 + 1);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let micro: Vec<Vec<usize>> = order.chunks(cfg.batch_size).map(|c| c.to_vec()).collect();
    micro.chunks(cfg.grad_accum).map(|c| c.to_vec()).collect()
}

/// Optimiser steps per epoch for `n` examples.
pub fn steps_per_epoch(n: usize, cfg: &TrainConfig) -> usize {
    n.div_ceil(cfg.batch_size).div_ceil(cfg.grad_accum)
}

/// The device and compute dtype of a run.
fn device_and_dtype(cfg: &TrainConfig) -> Result<(Device, DType), TrainError> {
    match cfg.device_spec()? {
        None => Ok((Device::Cpu, DType::F32)),
        Some(i) => {
            let dev = Device::new_cuda(i).map_err(|e| {
                TrainError::Config(format!(
                    "device: cannot open CUDA device {i} ({e}); build with `--features cuda` \
                     or train on the CPU"
                ))
            })?;
            // Frozen base weights in bf16 with F32 LoRA factors; full fine-tuning in F32.
            Ok((dev, if cfg.full { DType::F32 } else { DType::BF16 }))
        }
    }
}

/// The model with its trainable parameters (LoRA factors, or every weight).
pub struct Trainable {
    /// The model.
    pub model: Transformer,
    /// Trainable parameters in a fixed order.
    pub params: Vec<Param>,
    /// The dropout stream (LoRA with dropout > 0).
    pub dropout: Option<DropoutRng>,
}

/// Builds the model for `cfg` from `dir`: LoRA branches (A Kaiming-uniform from the seed, B
/// zero) on a frozen base, or every weight a variable with `full`.
pub fn build_trainable(
    cfg: &TrainConfig,
    dir: &Path,
    mcfg: &ModelConfig,
    dtype: DType,
    device: &Device,
) -> Result<Trainable, TrainError> {
    if cfg.full {
        let (model, varmap) = Transformer::load_trainable(dir, mcfg, dtype, device)?;
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .map_err(|_| TrainError::Config("VarMap lock poisoned".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let decay = !(name.ends_with(".bias") || name.contains("norm"));
                Param::new(name, var, decay)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        return Ok(Trainable {
            model,
            params,
            dropout: None,
        });
    }
    let mut model = Transformer::load_dir(dir, mcfg, dtype, device)?;
    model.set_frozen(true);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let scaling = cfg.lora_scaling();
    let r = cfg.lora_r;
    let mut params = Vec::new();
    let modules: Vec<&str> = nxt_engine::adapter::TARGET_MODULES
        .iter()
        .copied()
        .filter(|m| cfg.target_modules.iter().any(|t| t == m))
        .collect();
    for layer in 0..model.layers.len() {
        for &module in &modules {
            let lin = model.linear_mut(layer, module).ok_or_else(|| {
                TrainError::Config(format!("target_modules: the model has no {module}"))
            })?;
            let (in_dim, out_dim) = (lin.in_dim(), lin.out_dim());
            // PEFT: kaiming_uniform_(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0.
            let bound = 1.0 / (in_dim as f32).sqrt();
            let dist = Uniform::new_inclusive(-bound, bound)
                .map_err(|e| TrainError::Config(format!("lora init: {e}")))?;
            let a: Vec<f32> = (0..r * in_dim).map(|_| dist.sample(&mut rng)).collect();
            let a = Var::from_tensor(&Tensor::from_vec(a, (r, in_dim), device)?)?;
            let b = Var::from_tensor(&Tensor::zeros((out_dim, r), DType::F32, device)?)?;
            lin.lora = Some(LoraBranch::new(
                a.as_tensor().clone(),
                b.as_tensor().clone(),
                scaling,
                cfg.lora_dropout as f32,
            ));
            use nxt_engine::adapter::{lora_key, LoraPart};
            params.push(Param::new(lora_key(layer, module, LoraPart::A), a, true)?);
            params.push(Param::new(lora_key(layer, module, LoraPart::B), b, true)?);
        }
    }
    let dropout = (cfg.lora_dropout > 0.0).then(|| {
        DropoutRng::new(cfg.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D)
    });
    model.set_lora_training(dropout.clone());
    Ok(Trainable {
        model,
        params,
        dropout,
    })
}

fn checkpoint_tensors(params: &[Param]) -> Result<HashMap<String, Tensor>, TrainError> {
    let mut m = HashMap::new();
    for p in params {
        m.insert(format!("param.{}", p.name), p.var.as_tensor().detach());
        m.insert(format!("exp_avg.{}", p.name), p.exp_avg.clone());
        m.insert(format!("exp_avg_sq.{}", p.name), p.exp_avg_sq.clone());
    }
    Ok(m)
}

fn save_checkpoint(out: &Path, params: &[Param], state: &TrainerState) -> Result<(), TrainError> {
    let dir = out.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let file = dir.join(&state.tensors);
    let tmp = dir.join(format!("{}.tmp", state.tensors));
    candle_core::safetensors::save(&checkpoint_tensors(params)?, &tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| TrainError::io(&file, e))?;
    write_json_atomic(&dir.join(TRAINER_STATE), state)?;
    // Older tensor files are no longer referenced.
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("state-") && name != state.tensors {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

fn load_checkpoint(
    out: &Path,
    params: &mut [Param],
    device: &Device,
) -> Result<Option<TrainerState>, TrainError> {
    let dir = out.join(CHECKPOINT_DIR);
    let sp = dir.join(TRAINER_STATE);
    if !sp.exists() {
        return Ok(None);
    }
    let state: TrainerState = read_json(&sp)?;
    let file = dir.join(&state.tensors);
    let tensors =
        candle_core::safetensors::load(&file, device).map_err(|e| TrainError::Checkpoint {
            path: file.clone(),
            msg: e.to_string(),
        })?;
    let get = |k: String| {
        tensors
            .get(&k)
            .cloned()
            .ok_or_else(|| TrainError::Checkpoint {
                path: file.clone(),
                msg: format!("missing tensor {k}"),
            })
    };
    for p in params.iter_mut() {
        let w = get(format!("param.{}", p.name))?;
        if w.dims() != p.var.dims() {
            return Err(TrainError::Checkpoint {
                path: file.clone(),
                msg: format!(
                    "{}: shape {:?}, the model's is {:?}",
                    p.name,
                    w.dims(),
                    p.var.dims()
                ),
            });
        }
        p.var.set(&w.to_dtype(p.var.dtype())?)?;
        p.exp_avg = get(format!("exp_avg.{}", p.name))?;
        p.exp_avg_sq = get(format!("exp_avg_sq.{}", p.name))?;
    }
    Ok(Some(state))
}

/// Keeps the lines of `metrics.jsonl` up to `step` (a resumed run redoes the later ones).
fn trim_metrics(path: &Path, step: usize) -> Result<(), TrainError> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut kept = String::new();
    for line in text.lines() {
        match serde_json::from_str::<MetricsLine>(line) {
            Ok(m) if m.step <= step => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => {}
        }
    }
    write_atomic(path, kept.as_bytes())
}

/// Writes the trained result into `out`: the PEFT adapter, or (full) a model directory.
fn write_outputs(
    cfg: &TrainConfig,
    base: &Base,
    tr: &Trainable,
) -> Result<(Option<PathBuf>, Option<PathBuf>), TrainError> {
    let out = &cfg.out;
    if cfg.full {
        let tensors: HashMap<String, Tensor> = tr
            .params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().detach()))
            .collect();
        let tmp = out.join("model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, out.join("model.safetensors"))
            .map_err(|e| TrainError::io(out.join("model.safetensors"), e))?;
        // The trained weights are written unsharded: the base's safetensors index goes too.
        copy_model_files(&base.dir, out, &["model.safetensors.index.json"])?;
        Ok((None, Some(out.clone())))
    } else {
        let lcfg = LoraConfig::new(
            Some(cfg.model.clone()),
            cfg.lora_r,
            cfg.lora_alpha,
            cfg.rslora,
            cfg.lora_dropout,
            cfg.target_modules.clone(),
        );
        let adapter = LoraAdapter::from_branches(&tr.model, lcfg)?;
        adapter.save(out)?;
        Ok((Some(out.clone()), None))
    }
}

/// Runs (or resumes, or returns the summary of) an embedded training run.
pub fn run(
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&StepMetrics),
) -> Result<TrainSummary, TrainError> {
    let out = cfg.out.clone();
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    let _heap = crate::heap::RetainedHeap::begin();
    let base = open_base(&cfg.model)?;
    let data = data::load_dataset(&cfg.data, &base.tokenizer, &base.eos, cfg.max_length)?;
    let weights_sha = manifest::weights_sha256(&base.dir)?;
    let manifest = Manifest::new(cfg, &base.dir, &data, weights_sha);
    manifest::check_or_write(&out, &manifest)?;
    let summary_path = out.join(SUMMARY_FILE);
    if summary_path.exists() {
        return read_json(&summary_path);
    }
    if data.boundary_mismatches > 0 {
        eprintln!(
            "warning: {} of {} examples: the prompt's tokens are not a prefix of the \
             prompt+completion tokens (a token merges across the boundary; ending prompts \
             with a newline avoids it); the first len(prompt) tokens are masked, as TRL does",
            data.boundary_mismatches,
            data.examples.len()
        );
    }
    let (device, dtype) = device_and_dtype(cfg)?;
    let mut tr = build_trainable(cfg, &base.dir, &base.cfg, dtype, &device)?;
    let n = data.examples.len();
    let spe = steps_per_epoch(n, cfg);
    let total = cfg.max_steps.unwrap_or(cfg.epochs * spe);
    let state = load_checkpoint(&out, &mut tr.params, &device)?;
    let metrics_path = out.join(METRICS_FILE);
    let mut st = match state {
        Some(s) => {
            if s.total_steps != total {
                return Err(TrainError::Checkpoint {
                    path: out.join(CHECKPOINT_DIR).join(TRAINER_STATE),
                    msg: format!("made for {} steps, this run has {total}", s.total_steps),
                });
            }
            if let Some(d) = &tr.dropout {
                d.set_state(s.dropout_rng);
            }
            trim_metrics(&metrics_path, s.step)?;
            s
        }
        None => {
            if metrics_path.exists() {
                std::fs::remove_file(&metrics_path)
                    .map_err(|e| TrainError::io(&metrics_path, e))?;
            }
            TrainerState {
                step: 0,
                total_steps: total,
                epoch: 0,
                step_in_epoch: 0,
                tensors: String::new(),
                dropout_rng: tr.dropout.as_ref().map(|d| d.state()).unwrap_or(0),
                completion_tokens: 0,
                tokens: 0,
                examples_seen: 0,
                loss_sum: 0.0,
                last_loss: f64::NAN,
                wall_s: 0.0,
                nxt_version: env!("CARGO_PKG_VERSION").into(),
            }
        }
    };
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| TrainError::io(&metrics_path, e))?;
    let adam = AdamW::new(cfg.weight_decay);
    let start = Instant::now();
    let wall0 = st.wall_s;
    let mut plan_epoch = usize::MAX;
    let mut plan: Vec<Vec<Vec<usize>>> = Vec::new();
    let last_ckpt = |st: &TrainerState| -> String {
        if st.tensors.is_empty() {
            "no checkpoint had been written yet".to_string()
        } else {
            format!(
                "the last good checkpoint (step {}) is in {}",
                st.step,
                out.join(CHECKPOINT_DIR).display()
            )
        }
    };
    let mut saved = st.clone();
    while st.step < total {
        let t0 = Instant::now();
        let (epoch, sie) = (st.step / spe, st.step % spe);
        if plan_epoch != epoch {
            plan = epoch_plan(n, cfg, epoch);
            plan_epoch = epoch;
        }
        let micro = &plan[sie];
        let step_tokens: usize = micro
            .iter()
            .flatten()
            .map(|&i| data.examples[i].loss_tokens())
            .sum();
        let seq_tokens: usize = micro
            .iter()
            .flatten()
            .map(|&i| data.examples[i].ids.len())
            .sum();
        let mut grads: Vec<Option<Tensor>> = vec![None; tr.params.len()];
        let mut loss = 0f64;
        for mb in micro {
            let batch: Vec<&data::Example> = mb.iter().map(|&i| &data.examples[i]).collect();
            let (nll, _) = batch_nll(&tr.model, &batch, base.pad)?;
            let scaled = (nll / step_tokens as f64)?;
            loss += scaled.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let gs = scaled.backward()?;
            for (k, p) in tr.params.iter().enumerate() {
                if let Some(g) = gs.get(p.var.as_tensor()) {
                    grads[k] = Some(match grads[k].take() {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let step1 = st.step + 1;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite {
                step: step1,
                what: "loss",
                value: loss,
                kept: last_ckpt(&saved),
            });
        }
        let grads: Vec<Tensor> = grads
            .into_iter()
            .zip(&tr.params)
            .map(|(g, p)| match g {
                Some(g) => Ok(g),
                None => Tensor::zeros(p.var.shape(), p.var.dtype(), p.var.device()),
            })
            .collect::<candle_core::Result<_>>()?;
        let norm = optim::global_norm(&grads)?;
        if !norm.is_finite() {
            return Err(TrainError::NonFinite {
                step: step1,
                what: "gradient norm",
                value: norm,
                kept: last_ckpt(&saved),
            });
        }
        let clip = optim::clip_factor(norm, cfg.max_grad_norm);
        let lr = optim::learning_rate(cfg.lr, cfg.schedule, cfg.warmup_steps, st.step, total);
        for (p, g) in tr.params.iter_mut().zip(&grads) {
            let g = if clip != 1.0 { (g * clip)? } else { g.clone() };
            adam.update(p, &g, step1, lr)?;
        }
        st.step = step1;
        st.epoch = st.step / spe;
        st.step_in_epoch = st.step % spe;
        st.completion_tokens += step_tokens as u64;
        st.tokens += seq_tokens as u64;
        st.examples_seen += micro.iter().map(|m| m.len() as u64).sum::<u64>();
        st.loss_sum += loss;
        st.last_loss = loss;
        st.dropout_rng = tr.dropout.as_ref().map(|d| d.state()).unwrap_or(0);
        st.wall_s = wall0 + start.elapsed().as_secs_f64();
        let dt = t0.elapsed().as_secs_f64().max(1e-9);
        let m = StepMetrics {
            step: st.step,
            total_steps: total,
            epoch: st.step as f64 / spe as f64,
            loss,
            lr,
            grad_norm: norm,
            completion_tokens: step_tokens,
            tokens: seq_tokens,
            tokens_per_s: seq_tokens as f64 / dt,
            wall_s: st.wall_s,
        };
        let line = MetricsLine {
            step: m.step,
            epoch: m.epoch,
            loss: m.loss,
            lr: m.lr,
            grad_norm: m.grad_norm,
            completion_tokens: m.completion_tokens,
            tokens: m.tokens,
            tokens_per_s: m.tokens_per_s,
            wall_s: m.wall_s,
        };
        let text = serde_json::to_string(&line)
            .map_err(|e| TrainError::Config(format!("metrics: {e}")))?;
        writeln!(metrics, "{text}")
            .and_then(|_| metrics.flush())
            .map_err(|e| TrainError::io(&metrics_path, e))?;
        progress(&m);
        let periodic = cfg.save_every > 0 && st.step % cfg.save_every == 0;
        if periodic || st.step == total {
            st.tensors = format!("state-{:08}.safetensors", st.step);
            save_checkpoint(&out, &tr.params, &st)?;
            saved = st.clone();
        }
    }
    let (adapter_dir, model_dir) = write_outputs(cfg, &base, &tr)?;
    let summary = TrainSummary {
        out: out.clone(),
        adapter_dir,
        model_dir,
        backend: "embedded".into(),
        steps: st.step,
        examples: n,
        examples_seen: st.examples_seen,
        completion_tokens: st.completion_tokens,
        tokens: st.tokens,
        final_loss: st.last_loss,
        mean_loss: if st.step > 0 {
            st.loss_sum / st.step as f64
        } else {
            f64::NAN
        },
        truncated: data.truncated,
        boundary_mismatches: data.boundary_mismatches,
        wall_s: st.wall_s,
    };
    write_json_atomic(&summary_path, &summary)?;
    // The run is complete: the checkpoint's tensors are no longer needed.
    let tensors = out.join(CHECKPOINT_DIR).join(&st.tensors);
    let _ = std::fs::remove_file(tensors);
    Ok(summary)
}

/// Loads the data of `cfg` the way a run would (for tools that inspect it).
pub fn load_data(cfg: &TrainConfig) -> Result<Dataset, TrainError> {
    let base = open_base(&cfg.model)?;
    data::load_dataset(&cfg.data, &base.tokenizer, &base.eos, cfg.max_length)
}
