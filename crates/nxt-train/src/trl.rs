//! The hand-off to TRL (`--backend trl`): the same data and settings as an `sft.yaml` for
//! `trl sft`, run through a launcher command template (e.g. `accelerate launch ...` or an
//! `sbatch` wrapper), its output streamed, and the adapter it wrote validated.
//!
//! `sft.yaml` is written with JSON values (valid YAML), so simple wrappers can read it line
//! by line. Field names are TRL's (`SFTConfig`, `ModelConfig`, `ScriptArguments`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device};
use nxt_llm::engine::adapter::{merged_weights, LoraAdapter};
use nxt_llm::engine::{ModelConfig, Transformer};
use serde_json::{json, Value};

use crate::embedded::{open_base, read_json, write_json_atomic, SUMMARY_FILE};
use crate::manifest::{self, Manifest};
use crate::{data, Schedule, TrainConfig, TrainError, TrainSummary};

/// The config file written for the launcher.
pub const SFT_YAML: &str = "sft.yaml";
/// Where TRL is told to write its output (inside `out`).
pub const TRL_OUTPUT_DIR: &str = "trl";
/// The copy of the training data handed to TRL.
pub const TRAIN_JSONL: &str = "train.jsonl";

/// TRL's `lr_scheduler_type` for our schedule (transformers' `constant` ignores warm-up).
fn scheduler_name(cfg: &TrainConfig) -> &'static str {
    match (cfg.schedule, cfg.warmup_steps > 0) {
        (Schedule::Constant, false) => "constant",
        (Schedule::Constant, true) => "constant_with_warmup",
        (Schedule::Cosine, _) => "cosine",
    }
}

/// The `sft.yaml` fields equivalent to `cfg` (model `model`, data `data`, output `output`).
pub fn sft_fields(
    cfg: &TrainConfig,
    model: &str,
    data: &Path,
    output: &Path,
) -> Vec<(String, Value)> {
    let mut f: Vec<(String, Value)> = vec![
        ("model_name_or_path".into(), json!(model)),
        (
            "datasets".into(),
            json!([{"path": "json", "data_files": data.display().to_string(), "split": "train"}]),
        ),
        ("completion_only_loss".into(), json!(true)),
        ("packing".into(), json!(false)),
        ("use_peft".into(), json!(!cfg.full)),
    ];
    if !cfg.full {
        f.push(("lora_r".into(), json!(cfg.lora_r)));
        f.push(("lora_alpha".into(), json!(cfg.lora_alpha)));
        f.push(("lora_dropout".into(), json!(cfg.lora_dropout)));
        f.push(("lora_target_modules".into(), json!(cfg.target_modules)));
        f.push(("use_rslora".into(), json!(cfg.rslora)));
    }
    f.extend([
        ("learning_rate".into(), json!(cfg.lr)),
        ("num_train_epochs".into(), json!(cfg.epochs)),
        (
            "max_steps".into(),
            json!(cfg.max_steps.map(|s| s as i64).unwrap_or(-1)),
        ),
        ("per_device_train_batch_size".into(), json!(cfg.batch_size)),
        ("gradient_accumulation_steps".into(), json!(cfg.grad_accum)),
        ("max_length".into(), json!(cfg.max_length)),
        ("seed".into(), json!(cfg.seed)),
        ("lr_scheduler_type".into(), json!(scheduler_name(cfg))),
        ("warmup_steps".into(), json!(cfg.warmup_steps)),
        ("weight_decay".into(), json!(cfg.weight_decay)),
        ("max_grad_norm".into(), json!(cfg.max_grad_norm)),
        ("logging_steps".into(), json!(1)),
        ("report_to".into(), json!("none")),
        ("save_strategy".into(), json!("no")),
        ("output_dir".into(), json!(output.display().to_string())),
    ]);
    f
}

/// Renders fields as YAML with JSON values.
pub fn render_yaml(fields: &[(String, Value)]) -> String {
    let mut s = String::from(
        "# Written by `nxt train --backend trl`: the embedded trainer's settings for `trl sft`.\n",
    );
    for (k, v) in fields {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s
}

/// Quotes a string for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn absolute(p: &Path) -> Result<PathBuf, TrainError> {
    std::path::absolute(p).map_err(|e| TrainError::io(p, e))
}

/// Runs the TRL hand-off for `cfg` with `launcher`.
pub fn run(cfg: &TrainConfig, launcher: &str) -> Result<TrainSummary, TrainError> {
    let out = absolute(&cfg.out)?;
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    let base = open_base(&cfg.model)?;
    // Tokenising validates the data before anything is launched (and fills the manifest).
    let data = data::load_dataset(&cfg.data, &base.tokenizer, &base.eos, cfg.max_length)?;
    let manifest = Manifest::new(cfg, &base.dir, &data, manifest::weights_sha256(&base.dir)?);
    manifest::check_or_write(&out, &manifest)?;
    let summary_path = out.join(SUMMARY_FILE);
    if summary_path.exists() {
        return read_json(&summary_path);
    }
    let train_copy = out.join(TRAIN_JSONL);
    if absolute(&cfg.data)? != train_copy {
        std::fs::copy(&cfg.data, &train_copy).map_err(|e| TrainError::io(&train_copy, e))?;
    }
    let trl_out = out.join(TRL_OUTPUT_DIR);
    let model = if Path::new(&cfg.model).is_dir() {
        absolute(Path::new(&cfg.model))?.display().to_string()
    } else {
        cfg.model.clone()
    };
    let yaml_path = out.join(SFT_YAML);
    let yaml = render_yaml(&sft_fields(cfg, &model, &train_copy, &trl_out));
    std::fs::write(&yaml_path, yaml).map_err(|e| TrainError::io(&yaml_path, e))?;
    let command = launcher
        .replace("{config}", &shell_quote(&yaml_path.display().to_string()))
        .replace("{out}", &shell_quote(&out.display().to_string()));
    eprintln!("launching: {command}");
    let start = std::time::Instant::now();
    run_streamed(&command, &out)?;
    let wall_s = start.elapsed().as_secs_f64();
    let (adapter_dir, model_dir) = if cfg.full {
        validate_model(&trl_out, &base.cfg)?;
        (None, Some(trl_out.clone()))
    } else {
        validate_adapter(&trl_out, cfg, &base.dir, &base.cfg)?;
        (Some(trl_out.clone()), None)
    };
    let mut summary = TrainSummary {
        out: out.clone(),
        adapter_dir,
        model_dir,
        backend: "trl".into(),
        steps: 0,
        examples: data.examples.len(),
        examples_seen: 0,
        completion_tokens: 0,
        tokens: 0,
        final_loss: f64::NAN,
        mean_loss: f64::NAN,
        truncated: data.truncated,
        boundary_mismatches: data.boundary_mismatches,
        wall_s,
    };
    fill_from_trainer_output(&trl_out, &mut summary);
    write_json_atomic(&summary_path, &summary)?;
    Ok(summary)
}

/// Takes step counts and losses from what the trainer left: an nxt `train_summary.json`, or
/// transformers' `trainer_state.json` (`global_step`, `log_history`).
fn fill_from_trainer_output(dir: &Path, s: &mut TrainSummary) {
    if let Ok(inner) = read_json::<TrainSummary>(&dir.join(SUMMARY_FILE)) {
        s.steps = inner.steps;
        s.examples_seen = inner.examples_seen;
        s.completion_tokens = inner.completion_tokens;
        s.tokens = inner.tokens;
        s.final_loss = inner.final_loss;
        s.mean_loss = inner.mean_loss;
        return;
    }
    if let Ok(v) = read_json::<Value>(&dir.join("trainer_state.json")) {
        s.steps = v["global_step"].as_u64().unwrap_or(0) as usize;
        let losses: Vec<f64> = v["log_history"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["loss"].as_f64()).collect())
            .unwrap_or_default();
        if let Some(&l) = losses.last() {
            s.final_loss = l;
            s.mean_loss = losses.iter().sum::<f64>() / losses.len() as f64;
        }
    }
}

/// Runs `command` with `sh -c` in `cwd`, streaming its output to stderr; a failure is an
/// error with the exit status and the last lines.
fn run_streamed(command: &str, cwd: &Path) -> Result<(), TrainError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TrainError::Launcher {
            command: command.into(),
            status: format!("could not start sh: {e}"),
            tail: String::new(),
        })?;
    let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));
    let mut threads = Vec::new();
    let readers: Vec<Box<dyn std::io::Read + Send>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for r in readers {
        let tail = tail.clone();
        threads.push(std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.push_back(line);
                if t.len() > 20 {
                    t.pop_front();
                }
            }
        }));
    }
    let status = child.wait().map_err(|e| TrainError::Launcher {
        command: command.into(),
        status: format!("wait failed: {e}"),
        tail: String::new(),
    })?;
    for t in threads {
        let _ = t.join();
    }
    if !status.success() {
        let t = tail.lock().unwrap_or_else(|p| p.into_inner());
        return Err(TrainError::Launcher {
            command: command.into(),
            status: status.to_string(),
            tail: t.iter().cloned().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// Checks the adapter the launcher wrote: it loads, has the requested rank, and fits the
/// base model (the first mismatched tensor is named).
fn validate_adapter(
    dir: &Path,
    cfg: &TrainConfig,
    base_dir: &Path,
    base_cfg: &ModelConfig,
) -> Result<(), TrainError> {
    let adapter = LoraAdapter::load(dir, &Device::Cpu)?;
    if adapter.config.r != cfg.lora_r {
        return Err(TrainError::Config(format!(
            "{}: the launcher wrote an adapter of rank {}, the settings ask for lora_r = {}",
            dir.display(),
            adapter.config.r,
            cfg.lora_r
        )));
    }
    let model = Transformer::load_dir(base_dir, base_cfg, DType::F32, &Device::Cpu)?;
    merged_weights(&model, &adapter)?;
    Ok(())
}

/// Checks the model directory the launcher wrote (full fine-tuning): same shapes as the base.
fn validate_model(dir: &Path, base: &ModelConfig) -> Result<(), TrainError> {
    let cfg = ModelConfig::from_file(&dir.join("config.json"))?;
    if cfg.hidden_size != base.hidden_size
        || cfg.num_hidden_layers != base.num_hidden_layers
        || cfg.vocab_size != base.vocab_size
    {
        return Err(TrainError::Config(format!(
            "{}: the launcher wrote a model of another shape than the base",
            dir.display()
        )));
    }
    nxt_llm::engine::model::safetensors_files(dir)?;
    Ok(())
}
