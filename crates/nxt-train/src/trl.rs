//! The hand-off to TRL (`--backend trl`): the same data and settings as an `sft.yaml` for
//! `trl sft`, run through a launcher command template (e.g. `accelerate launch ...` or an
//! `sbatch` wrapper), its output streamed, and the adapter it wrote validated.
//!
//! `sft.yaml` is written with JSON values (valid YAML), so simple wrappers can read it line
//! by line. Field names are TRL's (`SFTConfig`, `ModelConfig`, `ScriptArguments`).

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use nxt_engine::adapter::{merged_weights, LoraAdapter};
use nxt_engine::{ModelConfig, Transformer};
use serde_json::{json, Value};

use crate::embedded::{open_base, METRICS_FILE, SUMMARY_FILE};
use crate::files::{read_json, write_json_atomic};
use crate::launcher::run_streamed;
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

/// The `sft.yaml` fields equivalent to `cfg` (model `model`, data `data`, output `output`;
/// `use_cpu` for a host without a CUDA device, see [`trl_use_cpu`]).
pub fn sft_fields(
    cfg: &TrainConfig,
    model: &str,
    data: &Path,
    output: &Path,
    use_cpu: bool,
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
        // transformers writes `trainer_state.json` (the step count and `log_history` nxt
        // reads) only into checkpoints, and `trl sft` does not call `save_state()`; with the
        // `steps` strategy and an unreachable interval, the one checkpoint is the final one.
        ("save_strategy".into(), json!("steps")),
        ("save_steps".into(), json!(FINAL_SAVE_ONLY_STEPS)),
        ("save_total_limit".into(), json!(1)),
        ("save_only_model".into(), json!(true)),
        ("output_dir".into(), json!(output.display().to_string())),
    ]);
    if use_cpu {
        f.push(("use_cpu".into(), json!(true)));
    }
    f
}

/// `save_steps` that no run reaches: only the end-of-training checkpoint is written.
pub const FINAL_SAVE_ONLY_STEPS: u64 = 1_000_000_000;

/// Whether `use_cpu: true` goes into `sft.yaml`: `NXT_TRL_USE_CPU` (`1`/`true` or
/// `0`/`false`) when set, otherwise when this host has no CUDA device visible (no NVIDIA
/// device node or driver entry, or `CUDA_VISIBLE_DEVICES` empty or `-1`). A launcher that
/// trains elsewhere (an `sbatch` wrapper on a GPU-less login node) sets
/// `NXT_TRL_USE_CPU=0`.
pub fn trl_use_cpu() -> bool {
    if let Ok(v) = std::env::var("NXT_TRL_USE_CPU") {
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => return true,
            "0" | "false" | "no" => return false,
            _ => {}
        }
    }
    !cuda_visible(
        std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        Path::new("/"),
    )
}

/// Whether a CUDA device is visible under `root` with `CUDA_VISIBLE_DEVICES` = `visible`.
fn cuda_visible(visible: Option<&str>, root: &Path) -> bool {
    if let Some(v) = visible {
        let v = v.trim();
        if v.is_empty() || v == "-1" || v.eq_ignore_ascii_case("none") {
            return false;
        }
    }
    if root.join("dev/nvidia0").exists() {
        return true;
    }
    std::fs::read_dir(root.join("proc/driver/nvidia/gpus"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
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
    let yaml = render_yaml(&sft_fields(
        cfg,
        &model,
        &train_copy,
        &trl_out,
        trl_use_cpu(),
    ));
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
    if !fill_from_trainer_output(&trl_out, &mut summary)? {
        eprintln!(
            "{}: the launcher left no trainer_state.json (nor a checkpoint-*/ with one); \
             steps and losses are unknown",
            trl_out.display()
        );
    }
    write_metrics(&trl_out, &out.join(METRICS_FILE))?;
    write_json_atomic(&summary_path, &summary)?;
    Ok(summary)
}

/// transformers' trainer state file (`TrainerState.save_to_json`).
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

/// The `trainer_state.json` a transformers/TRL run left in `dir`: the top-level one (written
/// by `trainer.save_state()`), else the one of the newest `checkpoint-N/` (by step).
pub fn find_trainer_state(dir: &Path) -> Option<PathBuf> {
    let top = dir.join(TRAINER_STATE_FILE);
    if top.is_file() {
        return Some(top);
    }
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let step: u64 = name.to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
            let state = e.path().join(TRAINER_STATE_FILE);
            state.is_file().then_some((step, state))
        })
        .max_by_key(|(step, _)| *step)
        .map(|(_, p)| p)
}

/// Parses JSON as Python's `json` writes it: the non-standard `NaN`, `Infinity` and
/// `-Infinity` (a NaN loss or an infinite gradient norm) become `null`.
pub fn parse_python_json(text: &str) -> Result<Value, serde_json::Error> {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push_str("null");
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out)
}

fn read_trainer_state(path: &Path) -> Result<Value, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let v = parse_python_json(&text).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("invalid JSON: {e}"),
    })?;
    if !v.is_object() || !v["log_history"].is_array() {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            msg: "not a transformers trainer state (no `log_history` list)".into(),
        });
    }
    Ok(v)
}

/// The `log_history` entries of training steps (those with a `loss`; the end-of-training
/// summary has `train_loss` instead, evaluations `eval_loss`).
fn step_logs(state: &Value) -> impl Iterator<Item = &Value> {
    state["log_history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.get("loss").is_some() && e.get("step").is_some())
}

/// nxt's `metrics.jsonl` lines (`step`, `epoch`, `loss`, `lr`, `grad_norm`, `total_steps`)
/// from a transformers trainer state's `log_history`; a value the trainer did not log (or
/// logged as NaN) is `null`.
pub fn log_history_metrics(state: &Value) -> Vec<Value> {
    let total = state["max_steps"].as_u64();
    step_logs(state)
        .map(|e| {
            json!({
                "step": e["step"].as_u64(),
                "total_steps": total,
                "epoch": e["epoch"].as_f64(),
                "loss": e["loss"].as_f64(),
                "lr": e["learning_rate"].as_f64(),
                "grad_norm": e["grad_norm"].as_f64(),
            })
        })
        .collect()
}

/// Takes step counts and losses from what the trainer left: transformers'
/// `trainer_state.json` (top level or newest checkpoint: `global_step`, `log_history`), or
/// an nxt `train_summary.json` (a launcher that runs nxt). `false` when neither is there.
fn fill_from_trainer_output(dir: &Path, s: &mut TrainSummary) -> Result<bool, TrainError> {
    if let Some(path) = find_trainer_state(dir) {
        let v = read_trainer_state(&path)?;
        s.steps = v["global_step"].as_u64().unwrap_or(0) as usize;
        let losses: Vec<f64> = step_logs(&v).filter_map(|e| e["loss"].as_f64()).collect();
        if let Some(&l) = losses.last() {
            s.final_loss = l;
            s.mean_loss = losses.iter().sum::<f64>() / losses.len() as f64;
        }
        // TRL logs the tokens seen so far (prompt and completion) as `num_tokens`.
        if let Some(t) = step_logs(&v)
            .filter_map(|e| e["num_tokens"].as_f64())
            .last()
        {
            s.tokens = t as u64;
        }
        return Ok(true);
    }
    if let Ok(inner) = read_json::<TrainSummary>(&dir.join(SUMMARY_FILE)) {
        s.steps = inner.steps;
        s.examples_seen = inner.examples_seen;
        s.completion_tokens = inner.completion_tokens;
        s.tokens = inner.tokens;
        s.final_loss = inner.final_loss;
        s.mean_loss = inner.mean_loss;
        return Ok(true);
    }
    Ok(false)
}

/// Writes `dest` (the run's `metrics.jsonl`) from the trainer's state in `dir`, or copies
/// the `metrics.jsonl` a launcher running nxt left there; nothing when neither exists.
fn write_metrics(dir: &Path, dest: &Path) -> Result<(), TrainError> {
    let lines: Vec<String> = if let Some(path) = find_trainer_state(dir) {
        log_history_metrics(&read_trainer_state(&path)?)
            .iter()
            .map(Value::to_string)
            .collect()
    } else if dir.join(METRICS_FILE).is_file() {
        let src = dir.join(METRICS_FILE);
        let text = std::fs::read_to_string(&src).map_err(|e| TrainError::io(&src, e))?;
        text.lines().map(str::to_string).collect()
    } else {
        return Ok(());
    };
    let tmp = dest.with_extension("jsonl.tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        for l in &lines {
            writeln!(f, "{l}").map_err(|e| TrainError::io(&tmp, e))?;
        }
        f.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, dest).map_err(|e| TrainError::io(dest, e))
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
    nxt_engine::model::safetensors_files(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `trainer_state.json` of a 3-step `trl sft` run as transformers writes it into
    /// `checkpoint-3/` (`json.dumps(indent=2, sort_keys=True)`, a NaN gradient norm written
    /// as `NaN`), and the same after `save_state()` (with the end-of-training entry).
    const CHECKPOINT_STATE: &str =
        include_str!("../tests/fixtures/trl/checkpoint_trainer_state.json");
    const FINAL_STATE: &str = include_str!("../tests/fixtures/trl/final_trainer_state.json");

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nxt-train-trl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn summary() -> TrainSummary {
        TrainSummary {
            out: PathBuf::from("out"),
            adapter_dir: None,
            model_dir: None,
            backend: "trl".into(),
            steps: 0,
            examples: 6,
            examples_seen: 0,
            completion_tokens: 0,
            tokens: 0,
            final_loss: f64::NAN,
            mean_loss: f64::NAN,
            truncated: 0,
            boundary_mismatches: 0,
            wall_s: 0.0,
        }
    }

    #[test]
    fn python_json_non_finite_values_become_null_outside_strings() {
        let v = parse_python_json(
            r#"{"a": NaN, "b": [Infinity, -Infinity, 1.5], "c": "NaN \"Infinity\"", "d": -2}"#,
        )
        .expect("parses");
        assert!(v["a"].is_null());
        assert_eq!(v["b"], json!([null, null, 1.5]));
        assert_eq!(v["c"], json!("NaN \"Infinity\""));
        assert_eq!(v["d"], json!(-2));
        assert!(parse_python_json("{\"a\": Nan}").is_err());
    }

    #[test]
    fn the_newest_checkpoint_state_is_read_when_there_is_no_top_level_one() {
        let dir = tmp("ckpt");
        assert!(find_trainer_state(&dir).is_none());
        let mut s = summary();
        assert!(!fill_from_trainer_output(&dir, &mut s).expect("nothing to read is no error"));
        assert_eq!(s.steps, 0);
        // An older checkpoint (step 2, numerically before 10) and the final one.
        for (name, steps) in [
            ("checkpoint-2", 2),
            ("checkpoint-10", 3),
            ("checkpoint-x", 9),
        ] {
            std::fs::create_dir_all(dir.join(name)).expect("dir");
            let text = CHECKPOINT_STATE
                .replace("\"global_step\": 3", &format!("\"global_step\": {steps}"));
            std::fs::write(dir.join(name).join(TRAINER_STATE_FILE), text).expect("write");
        }
        assert_eq!(
            find_trainer_state(&dir),
            Some(dir.join("checkpoint-10").join(TRAINER_STATE_FILE))
        );
        assert!(fill_from_trainer_output(&dir, &mut s).expect("reads"));
        assert_eq!(s.steps, 3);
        assert_eq!(s.final_loss, 9.7413);
        assert!((s.mean_loss - (10.3821 + 10.1107 + 9.7413) / 3.0).abs() < 1e-12);
        assert_eq!(s.tokens, 180);
        // A top-level state (save_state()) wins over checkpoints; its end-of-training entry
        // (train_loss) is not a step.
        std::fs::write(
            dir.join(TRAINER_STATE_FILE),
            FINAL_STATE.replace("\"global_step\": 3", "\"global_step\": 4"),
        )
        .expect("write");
        let mut s = summary();
        assert!(fill_from_trainer_output(&dir, &mut s).expect("reads"));
        assert_eq!(s.steps, 4);
        assert_eq!(s.final_loss, 9.7413);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn log_history_becomes_metrics_lines() {
        let dir = tmp("metrics");
        std::fs::create_dir_all(dir.join("checkpoint-3")).expect("dir");
        std::fs::write(
            dir.join("checkpoint-3").join(TRAINER_STATE_FILE),
            FINAL_STATE,
        )
        .expect("write");
        let dest = dir.join("metrics.jsonl");
        write_metrics(&dir, &dest).expect("metrics");
        let lines: Vec<Value> = std::fs::read_to_string(&dest)
            .expect("written")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0],
            json!({"step": 1, "total_steps": 3, "epoch": 0.3333333333333333, "loss": 10.3821,
                   "lr": 0.001, "grad_norm": 2.515625})
        );
        assert_eq!(lines[2]["step"], 3);
        assert!(
            lines[2]["grad_norm"].is_null(),
            "NaN is not a number in JSON"
        );
        assert_eq!(lines[2]["loss"], 9.7413);
        // A state that is not a trainer state is an error naming the file.
        std::fs::write(dir.join(TRAINER_STATE_FILE), "{\"global_step\": 1}").expect("write");
        let e = write_metrics(&dir, &dest)
            .expect_err("no log_history")
            .to_string();
        assert!(
            e.contains("trainer_state.json") && e.contains("log_history"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sft_yaml_saves_a_final_checkpoint_and_says_use_cpu_when_asked() {
        let cfg = TrainConfig::new("m", "d.jsonl", "o");
        let render = |cpu| {
            render_yaml(&sft_fields(
                &cfg,
                "m",
                Path::new("d.jsonl"),
                Path::new("o/trl"),
                cpu,
            ))
        };
        let yaml = render(true);
        for line in [
            "save_strategy: \"steps\"",
            "save_steps: 1000000000",
            "save_total_limit: 1",
            "use_cpu: true",
        ] {
            assert!(yaml.contains(line), "{line} missing from\n{yaml}");
        }
        assert!(!render(false).contains("use_cpu"));
    }

    #[test]
    fn cuda_visibility_follows_devices_and_cuda_visible_devices() {
        let root = tmp("cuda");
        assert!(!cuda_visible(None, &root));
        std::fs::create_dir_all(root.join("proc/driver/nvidia/gpus/0000:01:00.0")).expect("dir");
        assert!(cuda_visible(None, &root));
        assert!(cuda_visible(Some("0,1"), &root));
        assert!(!cuda_visible(Some(""), &root));
        assert!(!cuda_visible(Some("-1"), &root));
        let _ = std::fs::remove_dir_all(root);
    }
}
