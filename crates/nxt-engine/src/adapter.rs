//! PEFT LoRA adapters: the on-disk format PEFT, TRL and vLLM read and write, loading, saving,
//! merging into the engine's [`Transformer`], and validation against vLLM's rules.
//!
//! An adapter directory holds `adapter_config.json` ([`LoraConfig`]) and
//! `adapter_model.safetensors`, whose keys carry no adapter name:
//! `base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight` (see
//! [`lora_key`]), with `lora_A` of shape `[r, in_features]` and `lora_B` of shape
//! `[out_features, r]`, stored in F32. Loading also accepts PEFT's in-memory naming
//! (`lora_A.default.weight`) and the prefix variants `base_model.model.layers.`, `model.layers.`
//! and `layers.`; every key is normalised to the canonical form above.
//!
//! A LoRA module computes `y = x·Wᵀ + scaling · (x·Aᵀ)·Bᵀ`, so merging adds
//! `scaling · B·A` to `W` ([`merge_into`]), with `scaling = lora_alpha / r`
//! (`lora_alpha / sqrt(r)` with rsLoRA; [`LoraConfig::scaling`]).
//!
//! ```no_run
//! use candle_core::Device;
//! use nxt_engine::adapter::LoraAdapter;
//! let adapter = LoraAdapter::load(std::path::Path::new("runs/adapter"), &Device::Cpu)?;
//! println!("r = {}, scaling = {}", adapter.config.r, adapter.config.scaling());
//! # Ok::<(), nxt_engine::EngineError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ModelConfig;
use crate::model::{Linear, Transformer};
use crate::EngineError;

/// The seven projections of a Qwen2/Llama decoder layer that LoRA can target (and the only ones
/// vLLM supports for these architectures).
pub const TARGET_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Ranks vLLM accepts (`--max-lora-rank` must also be at least the adapter's rank).
pub const VLLM_ALLOWED_RANKS: [usize; 9] = [1, 8, 16, 32, 64, 128, 256, 320, 512];

/// File name of the adapter configuration.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// File name of the adapter weights.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Key prefix of every tensor in a PEFT adapter file.
const KEY_PREFIX: &str = "base_model.model.model.layers.";

/// The module group (`self_attn` or `mlp`) of a projection name.
pub fn module_group(module: &str) -> &'static str {
    match module {
        "q_proj" | "k_proj" | "v_proj" | "o_proj" => "self_attn",
        _ => "mlp",
    }
}

/// `adapter_config.json` as PEFT writes it. Unknown keys are kept in [`LoraConfig::extra`] and
/// written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawConfig", into = "RawConfig")]
pub struct LoraConfig {
    /// `"LORA"`.
    pub peft_type: String,
    /// `"CAUSAL_LM"` for decoder-only language models.
    pub task_type: Option<String>,
    /// The base model the adapter was trained on (a hub id or a path).
    pub base_model_name_or_path: Option<String>,
    /// Rank.
    pub r: usize,
    /// Scaling numerator.
    pub lora_alpha: f64,
    /// Dropout on the LoRA input during training (no effect on inference).
    pub lora_dropout: f64,
    /// `"none"`, `"all"` or `"lora_only"` (vLLM supports only `"none"`).
    pub bias: String,
    /// Weights stored `(in, out)` (GPT-2 style Conv1D); false for Qwen2/Llama.
    pub fan_in_fan_out: bool,
    /// rsLoRA scaling `lora_alpha / sqrt(r)`.
    pub use_rslora: bool,
    /// DoRA (weight-decomposed LoRA); not supported by nxt or vLLM.
    pub use_dora: bool,
    /// Extra modules trained and saved in full; not supported by nxt or vLLM.
    pub modules_to_save: Option<Vec<String>>,
    /// Saved for inference.
    pub inference_mode: bool,
    /// Targeted module names (`q_proj`, ... or full module paths). When the file gave a regex
    /// string instead, [`LoraConfig::target_modules_regex`] holds it and this list holds the
    /// projections it matched in the adapter file (filled by [`LoraAdapter::load`]).
    pub target_modules: Vec<String>,
    /// `target_modules` given as a regex (PEFT full-matches it against module paths such as
    /// `model.layers.0.self_attn.q_proj`); written back as the string.
    pub target_modules_regex: Option<String>,
    /// Per-module ranks (PEFT regex keys); vLLM ignores them.
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alphas (PEFT regex keys); vLLM ignores them.
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Every other key of the file, kept as it was.
    pub extra: BTreeMap<String, Value>,
}

/// `target_modules` on disk: a list of names or one regex string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum TargetField {
    List(Vec<String>),
    Regex(String),
}

fn default_peft_type() -> String {
    "LORA".into()
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_bias() -> String {
    "none".into()
}

fn ser_number<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

fn ser_numbers<S: serde::Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            map.serialize_entry(k, &(*v as i64))?;
        } else {
            map.serialize_entry(k, v)?;
        }
    }
    map.end()
}

fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawConfig {
    #[serde(default = "default_peft_type")]
    peft_type: String,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default = "default_r")]
    r: usize,
    #[serde(default = "default_alpha", serialize_with = "ser_number")]
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default = "default_bias")]
    bias: String,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    inference_mode: bool,
    #[serde(default)]
    target_modules: Option<TargetField>,
    #[serde(default, deserialize_with = "de_null_default")]
    rank_pattern: BTreeMap<String, usize>,
    #[serde(
        default,
        deserialize_with = "de_null_default",
        serialize_with = "ser_numbers"
    )]
    alpha_pattern: BTreeMap<String, f64>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

impl From<RawConfig> for LoraConfig {
    fn from(r: RawConfig) -> Self {
        let (target_modules, target_modules_regex) = match r.target_modules {
            None => (Vec::new(), None),
            Some(TargetField::List(l)) => (l, None),
            Some(TargetField::Regex(s)) => (Vec::new(), Some(s)),
        };
        LoraConfig {
            peft_type: r.peft_type,
            task_type: r.task_type,
            base_model_name_or_path: r.base_model_name_or_path,
            r: r.r,
            lora_alpha: r.lora_alpha,
            lora_dropout: r.lora_dropout,
            bias: r.bias,
            fan_in_fan_out: r.fan_in_fan_out,
            use_rslora: r.use_rslora,
            use_dora: r.use_dora,
            modules_to_save: r.modules_to_save,
            inference_mode: r.inference_mode,
            target_modules,
            target_modules_regex,
            rank_pattern: r.rank_pattern,
            alpha_pattern: r.alpha_pattern,
            extra: r.extra,
        }
    }
}

impl From<LoraConfig> for RawConfig {
    fn from(c: LoraConfig) -> Self {
        let target_modules = match c.target_modules_regex {
            Some(s) => Some(TargetField::Regex(s)),
            None => Some(TargetField::List(c.target_modules)),
        };
        RawConfig {
            peft_type: c.peft_type,
            task_type: c.task_type,
            base_model_name_or_path: c.base_model_name_or_path,
            r: c.r,
            lora_alpha: c.lora_alpha,
            lora_dropout: c.lora_dropout,
            bias: c.bias,
            fan_in_fan_out: c.fan_in_fan_out,
            use_rslora: c.use_rslora,
            use_dora: c.use_dora,
            modules_to_save: c.modules_to_save,
            inference_mode: c.inference_mode,
            target_modules,
            rank_pattern: c.rank_pattern,
            alpha_pattern: c.alpha_pattern,
            extra: c.extra,
        }
    }
}

impl LoraConfig {
    /// A config PEFT and vLLM both accept (`CAUSAL_LM`, bias `none`, no DoRA, no
    /// modules_to_save, inference mode).
    pub fn new(
        base: Option<String>,
        r: usize,
        alpha: f64,
        rslora: bool,
        dropout: f64,
        targets: Vec<String>,
    ) -> Self {
        LoraConfig {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: base,
            r,
            lora_alpha: alpha,
            lora_dropout: dropout,
            bias: "none".into(),
            fan_in_fan_out: false,
            use_rslora: rslora,
            use_dora: false,
            modules_to_save: None,
            inference_mode: true,
            target_modules: targets,
            target_modules_regex: None,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Parses `adapter_config.json` text; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, EngineError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| EngineError::Model(format!("{origin}: invalid JSON: {e}")))?;
        if !v.is_object() {
            return Err(EngineError::Model(format!(
                "{origin}: expected a JSON object, got {}",
                json_kind(&v)
            )));
        }
        let cfg: LoraConfig =
            serde_json::from_value(v).map_err(|e| EngineError::Model(format!("{origin}: {e}")))?;
        if let Some(re) = &cfg.target_modules_regex {
            full_regex(re).map_err(|e| {
                EngineError::Model(format!(
                    "{origin}: `target_modules` regex {re:?} does not compile: {e}"
                ))
            })?;
        }
        for k in cfg.rank_pattern.keys().chain(cfg.alpha_pattern.keys()) {
            pattern_regex(k).map_err(|e| {
                EngineError::Model(format!(
                    "{origin}: rank/alpha pattern {k:?} does not compile: {e}"
                ))
            })?;
        }
        Ok(cfg)
    }

    /// Reads `adapter_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Model(format!("{}: cannot read: {e}", path.display())))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// The config as pretty JSON (what [`LoraAdapter::save`] writes).
    pub fn to_json(&self) -> Result<String, EngineError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| EngineError::Model(format!("adapter config: cannot serialise: {e}")))
    }

    /// `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        scaling_of(self.lora_alpha, self.r, self.use_rslora)
    }

    /// Rank and scaling of one module (`module_path` such as `model.layers.0.self_attn.q_proj`),
    /// after `rank_pattern` / `alpha_pattern` (PEFT matches a pattern when
    /// `(.*\.)?(pattern)$` matches the path; the first matching key in sorted order wins).
    pub fn module_rank_scaling(&self, module_path: &str) -> (usize, f64) {
        let matches = |k: &String| pattern_regex(k).is_ok_and(|re| re.is_match(module_path));
        let r = self
            .rank_pattern
            .iter()
            .find(|(k, _)| matches(k))
            .map(|(_, v)| *v)
            .unwrap_or(self.r);
        let alpha = self
            .alpha_pattern
            .iter()
            .find(|(k, _)| matches(k))
            .map(|(_, v)| *v)
            .unwrap_or(self.lora_alpha);
        (r, scaling_of(alpha, r, self.use_rslora))
    }

    /// Whether `module_path` (`model.layers.{i}.{group}.{module}`) is targeted: a list entry
    /// equal to the path or to its last dotted components (PEFT's suffix rule), or the regex
    /// matching the whole path.
    pub fn targets(&self, module_path: &str) -> bool {
        if let Some(re) = &self.target_modules_regex {
            return full_regex(re).is_ok_and(|re| re.is_match(module_path));
        }
        self.target_modules
            .iter()
            .any(|t| module_path == t || module_path.ends_with(&format!(".{t}")))
    }
}

fn scaling_of(alpha: f64, r: usize, rslora: bool) -> f64 {
    if r == 0 {
        return 0.0;
    }
    if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    }
}

fn full_regex(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{re})$"))
}

fn pattern_regex(p: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!(r"^(?:.*\.)?(?:{p})$"))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Which LoRA matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoraPart {
    /// `lora_A`, `[r, in_features]`.
    A,
    /// `lora_B`, `[out_features, r]`.
    B,
}

impl LoraPart {
    fn name(self) -> &'static str {
        match self {
            LoraPart::A => "lora_A",
            LoraPart::B => "lora_B",
        }
    }
}

/// The PEFT key of one LoRA matrix:
/// `base_model.model.model.layers.{layer}.{self_attn|mlp}.{module}.lora_{A|B}.weight`
/// (`q/k/v/o_proj` are under `self_attn`, everything else under `mlp`).
pub fn lora_key(layer: usize, module: &str, part: LoraPart) -> String {
    format!(
        "{KEY_PREFIX}{layer}.{}.{module}.{}.weight",
        module_group(module),
        part.name()
    )
}

/// The module path PEFT matches patterns against: `model.layers.{layer}.{group}.{module}`.
pub fn module_path(layer: usize, group: &str, module: &str) -> String {
    format!("model.layers.{layer}.{group}.{module}")
}

/// A parsed adapter key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraKey {
    /// Decoder layer index.
    pub layer: usize,
    /// `self_attn`, `mlp`, or whatever group the file named.
    pub group: String,
    /// Module name (`q_proj`, ...).
    pub module: String,
    /// A or B.
    pub part: LoraPart,
}

impl LoraKey {
    /// The canonical key (`base_model.model.model.layers.{i}.{group}.{module}.lora_X.weight`).
    pub fn canonical(&self) -> String {
        format!(
            "{KEY_PREFIX}{}.{}.{}.{}.weight",
            self.layer,
            self.group,
            self.module,
            self.part.name()
        )
    }

    /// The module path (`model.layers.{i}.{group}.{module}`).
    pub fn module_path(&self) -> String {
        module_path(self.layer, &self.group, &self.module)
    }
}

/// Why a key is not a LoRA matrix of a decoder layer.
fn key_problem(key: &str) -> String {
    if key.contains("lora_magnitude_vector") {
        "a DoRA magnitude vector (DoRA is not supported)".into()
    } else if key.contains("lora_embedding_") {
        "LoRA on an embedding (only the seven layer projections are supported)".into()
    } else if key.contains("modules_to_save") || !key.contains("lora_") {
        "a full weight (modules_to_save or a trained bias), which LoRA serving does not support"
            .into()
    } else if key.ends_with(".bias") {
        "a LoRA bias (lora_bias), which is not supported".into()
    } else {
        format!(
            "not of the form `{KEY_PREFIX}{{i}}.{{self_attn|mlp}}.{{module}}.lora_{{A|B}}.weight`"
        )
    }
}

/// Parses an adapter key in any accepted naming (`.default.` adapter names stripped, prefixes
/// `base_model.model.model.`, `base_model.model.`, `model.` or none before `layers.`).
pub fn parse_lora_key(key: &str) -> Option<LoraKey> {
    let k = key.replace(".default.", ".");
    let mut rest = k.as_str();
    rest = rest.strip_prefix("base_model.model.").unwrap_or(rest);
    rest = rest.strip_prefix("model.").unwrap_or(rest);
    let rest = rest.strip_prefix("layers.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    // {i}.{group}.{module}.lora_X.weight
    if parts.len() != 5 || parts[4] != "weight" {
        return None;
    }
    let layer: usize = parts[0].parse().ok()?;
    let part = match parts[3] {
        "lora_A" => LoraPart::A,
        "lora_B" => LoraPart::B,
        _ => return None,
    };
    if parts[1].is_empty() || parts[2].is_empty() {
        return None;
    }
    Some(LoraKey {
        layer,
        group: parts[1].to_string(),
        module: parts[2].to_string(),
        part,
    })
}

/// One adapted module: its A and B matrices.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// Decoder layer.
    pub layer: usize,
    /// Module group (`self_attn` or `mlp`).
    pub group: String,
    /// Module name.
    pub module: String,
    /// Key of `lora_A`.
    pub a_key: String,
    /// Key of `lora_B`.
    pub b_key: String,
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
}

/// A LoRA adapter in memory: its config and its tensors under canonical keys
/// ([`lora_key`]), `lora_A` `[r, in]` and `lora_B` `[out, r]`, F32.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// `adapter_config.json`.
    pub config: LoraConfig,
    /// Canonical key -> tensor.
    pub tensors: BTreeMap<String, Tensor>,
}

/// The A and B entries (key, value) of one module, as they are found.
type PairSlot<T> = [Option<(String, T)>; 2];

fn module_order(module: &str) -> usize {
    TARGET_MODULES
        .iter()
        .position(|m| *m == module)
        .unwrap_or(TARGET_MODULES.len())
}

impl LoraAdapter {
    /// Loads an adapter directory (`adapter_config.json` + `adapter_model.safetensors`) onto
    /// `device` as F32. Errors name the file and, for tensors, the key: missing files, bad JSON,
    /// a non-LoRA `peft_type`, keys that are not LoRA matrices of decoder layers, an A without
    /// its B, matrices that are not 2-D or whose ranks disagree.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, EngineError> {
        if !dir.is_dir() {
            return Err(EngineError::Model(format!(
                "adapter {}: not a directory",
                dir.display()
            )));
        }
        let cfg_path = dir.join(CONFIG_FILE);
        if !cfg_path.exists() {
            return Err(EngineError::Model(format!(
                "adapter {}: no {CONFIG_FILE} (a PEFT adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE})",
                dir.display()
            )));
        }
        let mut config = LoraConfig::from_file(&cfg_path)?;
        if !config.peft_type.eq_ignore_ascii_case("LORA") {
            return Err(EngineError::Model(format!(
                "{}: peft_type is {:?}; only LORA adapters are supported",
                cfg_path.display(),
                config.peft_type
            )));
        }
        let w_path = dir.join(WEIGHTS_FILE);
        if !w_path.exists() {
            let hint = if dir.join("adapter_model.bin").exists() {
                " (found adapter_model.bin: only safetensors is supported; re-save with \
                 save_pretrained(..., safe_serialization=True))"
            } else {
                ""
            };
            return Err(EngineError::Model(format!(
                "adapter {}: no {WEIGHTS_FILE}{hint}",
                dir.display()
            )));
        }
        let raw = candle_core::safetensors::load(&w_path, &Device::Cpu)
            .map_err(|e| EngineError::Model(format!("{}: {e}", w_path.display())))?;
        let mut names: Vec<&String> = raw.keys().collect();
        names.sort();
        let mut tensors = BTreeMap::new();
        for name in names {
            let key = parse_lora_key(name).ok_or_else(|| {
                EngineError::Model(format!(
                    "{}: tensor {name:?} is {}",
                    w_path.display(),
                    key_problem(name)
                ))
            })?;
            let t = &raw[name];
            if t.rank() != 2 {
                return Err(EngineError::Model(format!(
                    "{}: tensor {name:?} has shape {:?}; LoRA matrices are 2-D",
                    w_path.display(),
                    t.dims()
                )));
            }
            let canonical = key.canonical();
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            if tensors.insert(canonical.clone(), t).is_some() {
                return Err(EngineError::Model(format!(
                    "{}: tensor {name:?} appears twice (as {canonical})",
                    w_path.display()
                )));
            }
        }
        if tensors.is_empty() {
            return Err(EngineError::Model(format!(
                "{}: holds no LoRA tensors",
                w_path.display()
            )));
        }
        let adapter = LoraAdapter {
            config: config.clone(),
            tensors,
        };
        let modules = adapter
            .modules()
            .map_err(|e| EngineError::Model(format!("{}: {e}", w_path.display())))?;
        // The file's modules are the truth (as in vLLM); a regex or a missing list is resolved
        // to the projections it holds.
        if config.target_modules_regex.is_some() || config.target_modules.is_empty() {
            let found: BTreeSet<(usize, String)> = modules
                .iter()
                .map(|m| (module_order(&m.module), m.module.clone()))
                .collect();
            config.target_modules = found.into_iter().map(|(_, m)| m).collect();
        }
        Ok(LoraAdapter {
            config,
            tensors: adapter.tensors,
        })
    }

    /// The adapted modules in model order (layer, then q, k, v, o, gate, up, down), each with
    /// both matrices. Errors (as plain messages) for an A without its B or the reverse, and for
    /// A and B of disagreeing rank.
    pub fn modules(&self) -> Result<Vec<LoraModule>, String> {
        let mut pairs: BTreeMap<(usize, usize, String, String), PairSlot<Tensor>> = BTreeMap::new();
        for (k, t) in &self.tensors {
            let key =
                parse_lora_key(k).ok_or_else(|| format!("tensor {k:?} is {}", key_problem(k)))?;
            let slot = pairs
                .entry((
                    key.layer,
                    module_order(&key.module),
                    key.module.clone(),
                    key.group.clone(),
                ))
                .or_default();
            let i = match key.part {
                LoraPart::A => 0,
                LoraPart::B => 1,
            };
            slot[i] = Some((k.clone(), t.clone()));
        }
        let mut out = Vec::with_capacity(pairs.len());
        for ((layer, _, module, group), [a, b]) in pairs {
            let path = module_path(layer, &group, &module);
            let (a_key, a) = a.ok_or_else(|| format!("{path} has lora_B but no lora_A"))?;
            let (b_key, b) = b.ok_or_else(|| format!("{path} has lora_A but no lora_B"))?;
            if a.rank() != 2 || b.rank() != 2 || a.dims()[0] != b.dims()[1] {
                return Err(format!(
                    "{a_key} has shape {:?} and {b_key} has shape {:?}: lora_A must be [r, in] and lora_B [out, r] with the same r",
                    a.dims(),
                    b.dims()
                ));
            }
            out.push(LoraModule {
                layer,
                group,
                module,
                a_key,
                b_key,
                a,
                b,
            });
        }
        Ok(out)
    }

    /// Writes `adapter_model.safetensors` (F32, metadata `{"format": "pt"}`) and then
    /// `adapter_config.json` into `dir` (created if needed), each through a temporary file
    /// renamed into place, so a reader never sees a half-written file.
    pub fn save(&self, dir: &Path) -> Result<(), EngineError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Model(format!("{}: cannot create: {e}", dir.display())))?;
        let mut entries = Vec::with_capacity(self.tensors.len());
        for (k, t) in &self.tensors {
            let t = t.to_dtype(DType::F32)?;
            let dims = t.dims().to_vec();
            let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
            entries.push((k.clone(), dims, data));
        }
        let bytes = safetensors_f32_bytes(&entries, &[("format", "pt")])?;
        write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
        let json = self.config.to_json()?;
        write_atomic(&dir.join(CONFIG_FILE), format!("{json}\n").as_bytes())
    }
}

/// A safetensors file of F32 tensors (`(name, shape, data)`), with string metadata.
pub fn safetensors_f32_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &[(&str, &str)],
) -> Result<Vec<u8>, EngineError> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        header.insert("__metadata__".into(), Value::Object(m));
    }
    let mut offset = 0usize;
    for (name, dims, data) in tensors {
        let n: usize = dims.iter().product();
        if n != data.len() {
            return Err(EngineError::Model(format!(
                "tensor {name}: shape {dims:?} holds {n} values, got {}",
                data.len()
            )));
        }
        let end = offset + 4 * n;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": dims, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| EngineError::Model(format!("safetensors header: {e}")))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in tensors {
        for x in data {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    Ok(out)
}

/// Writes `path` through a temporary file in the same directory, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        EngineError::Model(format!("{}: cannot write: {e}", path.display()))
    })
}

/// The projection `group.module` of a decoder layer, if the model has it.
fn projection<'a>(
    model: &'a Transformer,
    layer: usize,
    group: &str,
    module: &str,
) -> Option<&'a Linear> {
    let l = model.layers.get(layer)?;
    match (group, module) {
        ("self_attn", "q_proj") => Some(&l.self_attn.q_proj),
        ("self_attn", "k_proj") => Some(&l.self_attn.k_proj),
        ("self_attn", "v_proj") => Some(&l.self_attn.v_proj),
        ("self_attn", "o_proj") => Some(&l.self_attn.o_proj),
        ("mlp", "gate_proj") => Some(&l.mlp.gate_proj),
        ("mlp", "up_proj") => Some(&l.mlp.up_proj),
        ("mlp", "down_proj") => Some(&l.mlp.down_proj),
        _ => None,
    }
}

/// One merged weight: `W + scaling · B·A` for a projection.
#[derive(Debug, Clone)]
pub struct MergedWeight {
    /// Decoder layer.
    pub layer: usize,
    /// `self_attn` or `mlp`.
    pub group: String,
    /// Projection name.
    pub module: String,
    /// The merged `(out, in)` weight, in the model's dtype and on its device.
    pub weight: Tensor,
}

/// Checks `adapter` against `model` and computes every merged weight without changing the
/// model. The first problem (in model order) is an error naming the adapter tensor: a layer
/// beyond the model, a module the model lacks, or a shape mismatch (with both shapes).
pub fn merged_weights(
    model: &Transformer,
    adapter: &LoraAdapter,
) -> Result<Vec<MergedWeight>, EngineError> {
    let modules = adapter
        .modules()
        .map_err(|e| EngineError::Model(format!("adapter: {e}")))?;
    let n_layers = model.layers.len();
    // Validate everything first so that a failure leaves nothing half done.
    for m in &modules {
        if m.layer >= n_layers {
            return Err(EngineError::Model(format!(
                "adapter tensor {} targets layer {} but the model has {n_layers} layers \
                 (an adapter for a different base model?)",
                m.a_key, m.layer
            )));
        }
        let Some(lin) = projection(model, m.layer, &m.group, &m.module) else {
            return Err(EngineError::Model(format!(
                "adapter tensor {} targets {}.{}, which the model does not have \
                 (its layers have self_attn.{{q,k,v,o}}_proj and mlp.{{gate,up,down}}_proj)",
                m.a_key, m.group, m.module
            )));
        };
        let w = lin.weight.dims();
        let (out_f, in_f) = (w[0], w[1]);
        let r = m.a.dims()[0];
        if m.a.dims() != [r, in_f] {
            return Err(EngineError::Model(format!(
                "adapter tensor {} has shape {:?} but the model's layer {} {}.{} (weight [{out_f}, {in_f}]) needs [{r}, {in_f}] \
                 (an adapter for a different base model?)",
                m.a_key,
                m.a.dims(),
                m.layer,
                m.group,
                m.module
            )));
        }
        if m.b.dims() != [out_f, r] {
            return Err(EngineError::Model(format!(
                "adapter tensor {} has shape {:?} but the model's layer {} {}.{} (weight [{out_f}, {in_f}]) needs [{out_f}, {r}] \
                 (an adapter for a different base model?)",
                m.b_key,
                m.b.dims(),
                m.layer,
                m.group,
                m.module
            )));
        }
    }
    let mut out = Vec::with_capacity(modules.len());
    for m in modules {
        let Some(lin) = projection(model, m.layer, &m.group, &m.module) else {
            continue;
        };
        let path = module_path(m.layer, &m.group, &m.module);
        let (_, scaling) = adapter.config.module_rank_scaling(&path);
        let dev = lin.weight.device();
        let a = m.a.to_device(dev)?.to_dtype(DType::F32)?;
        let b = m.b.to_device(dev)?.to_dtype(DType::F32)?;
        let delta = (b.matmul(&a)? * scaling)?;
        let w = lin.weight.to_dtype(DType::F32)?;
        let merged = (w + delta)?.to_dtype(lin.weight.dtype())?;
        out.push(MergedWeight {
            layer: m.layer,
            group: m.group,
            module: m.module,
            weight: merged,
        });
    }
    Ok(out)
}

/// Merges `adapter` into `model`: `W += scaling · B·A` for every adapted projection (PEFT's
/// `merge_and_unload`). Works on a fresh or a prepared model (a prepared one is prepared
/// again, so only the changed projections get new inference copies). On any error the model
/// is left unchanged; a shape mismatch names the first mismatched tensor and both shapes.
pub fn merge_into(model: &mut Transformer, adapter: &LoraAdapter) -> Result<(), EngineError> {
    let merged = merged_weights(model, adapter)?;
    let prepared = model.fast_kernels;
    for m in merged {
        if let Some(lin) = model.linear_mut(m.layer, &m.module) {
            lin.set_weight(m.weight);
        }
    }
    if prepared {
        model.prepare_for_inference()?;
    }
    Ok(())
}

/// Attaches `adapter` to `model` as unmerged LoRA branches (`y = x·Wᵀ + scaling·(x·Aᵀ)·Bᵀ`,
/// the base weights untouched), with the config's dropout; for training on top of an
/// existing adapter or for comparing against the merged weights. Same checks as
/// [`merge_into`].
pub fn attach_branches(model: &mut Transformer, adapter: &LoraAdapter) -> Result<(), EngineError> {
    // Validates shapes, layers and modules (the merged weights themselves are not kept).
    merged_weights(model, adapter)?;
    let modules = adapter
        .modules()
        .map_err(|e| EngineError::Model(format!("adapter: {e}")))?;
    for m in modules {
        let path = module_path(m.layer, &m.group, &m.module);
        let (_, scaling) = adapter.config.module_rank_scaling(&path);
        let dev = model.device().clone();
        let (a, b) = (m.a.to_device(&dev)?, m.b.to_device(&dev)?);
        if let Some(lin) = model.linear_mut(m.layer, &m.module) {
            lin.lora = Some(crate::model::LoraBranch::new(
                a,
                b,
                scaling,
                adapter.config.lora_dropout as f32,
            ));
        }
    }
    if model.fast_kernels {
        model.prepare_for_inference()?;
    }
    Ok(())
}

impl LoraAdapter {
    /// The adapter held by `model`'s LoRA branches (what a trainer saves), under canonical
    /// keys, F32, with `config` (its `target_modules` set to the projections found when empty).
    pub fn from_branches(model: &Transformer, mut config: LoraConfig) -> Result<Self, EngineError> {
        let mut tensors = BTreeMap::new();
        let mut found: Vec<String> = Vec::new();
        for layer in 0..model.layers.len() {
            for module in TARGET_MODULES {
                let Some(br) = model.linear(layer, module).and_then(|l| l.lora.as_ref()) else {
                    continue;
                };
                tensors.insert(
                    lora_key(layer, module, LoraPart::A),
                    br.a.detach().to_dtype(DType::F32)?,
                );
                tensors.insert(
                    lora_key(layer, module, LoraPart::B),
                    br.b.detach().to_dtype(DType::F32)?,
                );
                if !found.iter().any(|m| m == module) {
                    found.push(module.to_string());
                }
            }
        }
        if tensors.is_empty() {
            return Err(EngineError::Model(
                "the model has no LoRA branches to save".into(),
            ));
        }
        if config.target_modules.is_empty() && config.target_modules_regex.is_none() {
            found.sort_by_key(|m| module_order(m));
            config.target_modules = found;
        }
        Ok(LoraAdapter { config, tensors })
    }
}

/// What kind of problem [`check_adapter`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A file is missing or unreadable.
    Files,
    /// `adapter_config.json` is malformed or not a LoRA config.
    Config,
    /// `bias` other than `"none"`.
    Bias,
    /// Non-null `modules_to_save`.
    ModulesToSave,
    /// DoRA.
    Dora,
    /// Rank above `--max-lora-rank`.
    RankOverLimit,
    /// Rank outside vLLM's allowed set.
    RankNotAllowed,
    /// `rank_pattern` / `alpha_pattern` set (vLLM ignores them).
    Pattern,
    /// A targeted module the model does not have (or vLLM does not support).
    UnknownModule,
    /// A tensor key that is not a LoRA matrix of a decoder layer.
    BadKey,
    /// A/B pairs incomplete, or ranks that disagree with each other or the config.
    Rank,
    /// A tensor whose shape does not fit the base model (or a layer beyond it).
    ShapeMismatch,
}

/// One problem found by [`check_adapter`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterProblem {
    /// Category.
    pub kind: ProblemKind,
    /// One clear line.
    pub message: String,
}

impl std::fmt::Display for AdapterProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Tensor names and shapes from a safetensors header (the data is not read).
pub fn safetensors_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| format!("not a safetensors file (no header length): {e}"))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 || n + 8 > total {
        return Err(format!(
            "not a safetensors file (header length {n} for a file of {total} bytes)"
        ));
    }
    let mut h = vec![0u8; n as usize];
    f.read_exact(&mut h)
        .map_err(|e| format!("truncated safetensors header: {e}"))?;
    let v: Value =
        serde_json::from_slice(&h).map_err(|e| format!("safetensors header is not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "safetensors header is not a JSON object".to_string())?;
    let mut out = BTreeMap::new();
    for (k, t) in obj {
        if k == "__metadata__" {
            continue;
        }
        let shape = t
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().map(|x| x as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| format!("tensor {k:?} has no valid `shape` in the header"))?;
        out.insert(k.clone(), shape);
    }
    Ok(out)
}

/// Expected `(in, out)` of a projection of `cfg`'s layers.
fn expected_dims(cfg: &ModelConfig, group: &str, module: &str) -> Option<(usize, usize)> {
    let h = cfg.hidden_size;
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let i = cfg.intermediate_size;
    match (group, module) {
        ("self_attn", "q_proj") => Some((h, q)),
        ("self_attn", "k_proj") | ("self_attn", "v_proj") => Some((h, kv)),
        ("self_attn", "o_proj") => Some((q, h)),
        ("mlp", "gate_proj") | ("mlp", "up_proj") => Some((h, i)),
        ("mlp", "down_proj") => Some((i, h)),
        _ => None,
    }
}

/// Checks an adapter directory for what vLLM would reject or mis-scale, and (given the base
/// model's config) for shapes that do not fit the base. Returns every problem found, each with
/// one clear line; empty means the adapter is fine. Reads only the safetensors header.
pub fn check_adapter(
    dir: &Path,
    base: Option<&ModelConfig>,
    max_lora_rank: usize,
) -> Vec<AdapterProblem> {
    let mut out = Vec::new();
    let mut push = |kind: ProblemKind, message: String| out.push(AdapterProblem { kind, message });
    let cfg_path = dir.join(CONFIG_FILE);
    let w_path = dir.join(WEIGHTS_FILE);
    let cfg = if !cfg_path.exists() {
        push(
            ProblemKind::Files,
            format!("{}: missing", cfg_path.display()),
        );
        None
    } else {
        match LoraConfig::from_file(&cfg_path) {
            Ok(c) => Some(c),
            Err(e) => {
                push(ProblemKind::Config, e.to_string());
                None
            }
        }
    };
    let shapes = if !w_path.exists() {
        push(
            ProblemKind::Files,
            format!(
                "{}: missing{}",
                w_path.display(),
                if dir.join("adapter_model.bin").exists() {
                    " (adapter_model.bin found: vLLM and nxt want safetensors)"
                } else {
                    ""
                }
            ),
        );
        None
    } else {
        match safetensors_shapes(&w_path) {
            Ok(s) => Some(s),
            Err(e) => {
                push(ProblemKind::Files, format!("{}: {e}", w_path.display()));
                None
            }
        }
    };
    let cfg_name = cfg_path.display().to_string();
    if let Some(c) = &cfg {
        if !c.peft_type.eq_ignore_ascii_case("LORA") {
            push(
                ProblemKind::Config,
                format!(
                    "{cfg_name}: peft_type is {:?}; only LORA adapters can be served",
                    c.peft_type
                ),
            );
        }
        if c.bias != "none" {
            push(
                ProblemKind::Bias,
                format!(
                    "{cfg_name}: bias is {:?}; vLLM supports only \"none\" (trained biases would be dropped or rejected)",
                    c.bias
                ),
            );
        }
        if let Some(m) = &c.modules_to_save {
            push(
                ProblemKind::ModulesToSave,
                format!(
                    "{cfg_name}: modules_to_save is {m:?}; vLLM supports only null (it may fail at the first generation)"
                ),
            );
        }
        if c.use_dora {
            push(
                ProblemKind::Dora,
                format!("{cfg_name}: use_dora is true; vLLM and nxt do not support DoRA"),
            );
        }
        if c.r > max_lora_rank {
            push(
                ProblemKind::RankOverLimit,
                format!(
                    "{cfg_name}: r = {} is above --max-lora-rank {max_lora_rank} (start vLLM with --max-lora-rank {} or more)",
                    c.r,
                    VLLM_ALLOWED_RANKS
                        .iter()
                        .find(|&&x| x >= c.r)
                        .copied()
                        .unwrap_or(c.r)
                ),
            );
        }
        if !VLLM_ALLOWED_RANKS.contains(&c.r) {
            push(
                ProblemKind::RankNotAllowed,
                format!(
                    "{cfg_name}: r = {} is not a rank vLLM accepts ({VLLM_ALLOWED_RANKS:?})",
                    c.r
                ),
            );
        }
        if !c.rank_pattern.is_empty() {
            push(
                ProblemKind::Pattern,
                format!(
                    "{cfg_name}: rank_pattern {:?} is set; vLLM ignores it, so those modules would be scaled wrongly",
                    c.rank_pattern
                ),
            );
        }
        if !c.alpha_pattern.is_empty() {
            push(
                ProblemKind::Pattern,
                format!(
                    "{cfg_name}: alpha_pattern {:?} is set; vLLM ignores it, so those modules would be scaled wrongly",
                    c.alpha_pattern
                ),
            );
        }
        if c.target_modules_regex.is_none() {
            for t in &c.target_modules {
                let leaf = t.rsplit('.').next().unwrap_or(t);
                if !TARGET_MODULES.contains(&leaf) {
                    push(
                        ProblemKind::UnknownModule,
                        format!(
                            "{cfg_name}: target module {t:?} is not a projection the model has (Qwen2/Llama: {})",
                            TARGET_MODULES.join(", ")
                        ),
                    );
                }
            }
        }
    }
    let Some(shapes) = shapes else {
        return out;
    };
    let w_name = w_path.display().to_string();
    let mut ranks: BTreeMap<String, PairSlot<Vec<usize>>> = BTreeMap::new();
    let mut parsed = Vec::new();
    for (k, shape) in &shapes {
        let Some(key) = parse_lora_key(k) else {
            let kind = if k.contains("lora_magnitude_vector") {
                ProblemKind::Dora
            } else if k.contains("modules_to_save") {
                ProblemKind::ModulesToSave
            } else {
                ProblemKind::BadKey
            };
            push(
                kind,
                format!("{w_name}: tensor {k:?} is {}", key_problem(k)),
            );
            continue;
        };
        if shape.len() != 2 {
            push(
                ProblemKind::Rank,
                format!("{w_name}: tensor {k:?} has shape {shape:?}; LoRA matrices are 2-D"),
            );
            continue;
        }
        parsed.push((key.clone(), k.clone(), shape.clone()));
        let i = match key.part {
            LoraPart::A => 0,
            LoraPart::B => 1,
        };
        ranks.entry(key.module_path()).or_default()[i] = Some((k.clone(), shape.clone()));
    }
    if shapes.is_empty() {
        push(ProblemKind::Files, format!("{w_name}: holds no tensors"));
    }
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for (key, _, _) in &parsed {
        let supported =
            TARGET_MODULES.contains(&key.module.as_str()) && module_group(&key.module) == key.group;
        if !supported && unknown.insert(format!("{}.{}", key.group, key.module)) {
            push(
                ProblemKind::UnknownModule,
                format!(
                    "{w_name}: adapts {}.{} (e.g. {}), which Qwen2/Llama layers do not have (vLLM supports {})",
                    key.group,
                    key.module,
                    key.canonical(),
                    TARGET_MODULES.join(", ")
                ),
            );
        }
    }
    let mut rank_over_reported = false;
    for (path, [a, b]) in &ranks {
        match (a, b) {
            (Some((ak, ashape)), Some((bk, bshape))) => {
                if ashape[0] != bshape[1] {
                    push(
                        ProblemKind::Rank,
                        format!(
                            "{w_name}: {ak} has shape {ashape:?} and {bk} has shape {bshape:?}; their ranks differ"
                        ),
                    );
                    continue;
                }
                let r = ashape[0];
                if let Some(c) = &cfg {
                    let (want, _) = c.module_rank_scaling(path);
                    if r != want {
                        push(
                            ProblemKind::Rank,
                            format!(
                                "{w_name}: {ak} has rank {r} but {CONFIG_FILE} says r = {want}"
                            ),
                        );
                    }
                }
                if r > max_lora_rank && !rank_over_reported {
                    rank_over_reported = true;
                    push(
                        ProblemKind::RankOverLimit,
                        format!(
                            "{w_name}: {ak} has rank {r}, above --max-lora-rank {max_lora_rank}"
                        ),
                    );
                }
            }
            (Some((ak, _)), None) => push(
                ProblemKind::Rank,
                format!("{w_name}: {ak} has no matching lora_B"),
            ),
            (None, Some((bk, _))) => push(
                ProblemKind::Rank,
                format!("{w_name}: {bk} has no matching lora_A"),
            ),
            (None, None) => {}
        }
    }
    if let Some(c) = &cfg {
        if let Some(re) = &c.target_modules_regex {
            if !parsed.iter().any(|(k, _, _)| c.targets(&k.module_path())) {
                push(
                    ProblemKind::UnknownModule,
                    format!(
                        "{cfg_name}: target_modules regex {re:?} matches none of the adapter's modules"
                    ),
                );
            }
        }
    }
    if let Some(base) = base {
        // Model order: layer, then projection order.
        let mut sorted = parsed.clone();
        sorted.sort_by_key(|(k, name, _)| (k.layer, module_order(&k.module), k.part, name.clone()));
        for (key, name, shape) in sorted {
            if key.layer >= base.num_hidden_layers {
                push(
                    ProblemKind::ShapeMismatch,
                    format!(
                        "{w_name}: tensor {name} targets layer {} but the base model has {} layers",
                        key.layer, base.num_hidden_layers
                    ),
                );
                continue;
            }
            let Some((in_f, out_f)) = expected_dims(base, &key.group, &key.module) else {
                continue;
            };
            let bad = match key.part {
                LoraPart::A => shape[1] != in_f,
                LoraPart::B => shape[0] != out_f,
            };
            if bad {
                let want = match key.part {
                    LoraPart::A => format!("[r, {in_f}]"),
                    LoraPart::B => format!("[{out_f}, r]"),
                };
                push(
                    ProblemKind::ShapeMismatch,
                    format!(
                        "{w_name}: tensor {name} has shape {shape:?} but the base model's {}.{} (weight [{out_f}, {in_f}]) needs {want}",
                        key.group, key.module
                    ),
                );
            }
        }
    }
    out
}

impl LoraAdapter {
    /// A random adapter for `cfg`'s architecture with non-zero A and B (normal, standard
    /// deviation `std`, seeded), covering `config.target_modules` (the seven projections when
    /// empty) in every layer. For tests and benchmarks: a trained adapter looks like this,
    /// whereas a fresh one (B = 0) does not change the model.
    pub fn random(
        cfg: &ModelConfig,
        mut config: LoraConfig,
        seed: u64,
        std: f32,
    ) -> Result<Self, EngineError> {
        if config.target_modules.is_empty() {
            config.target_modules = TARGET_MODULES.iter().map(|m| m.to_string()).collect();
        }
        let mut rng = crate::sampling::Rng::new(seed);
        let mut normal =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.next_normal() as f32) * std).collect() };
        let mut tensors = BTreeMap::new();
        for layer in 0..cfg.num_hidden_layers {
            for module in TARGET_MODULES {
                let group = module_group(module);
                if !config.targets(&module_path(layer, group, module)) {
                    continue;
                }
                let Some((in_f, out_f)) = expected_dims(cfg, group, module) else {
                    continue;
                };
                let (r, _) = config.module_rank_scaling(&module_path(layer, group, module));
                let a = Tensor::from_vec(normal(r * in_f), (r, in_f), &Device::Cpu)?;
                let b = Tensor::from_vec(normal(out_f * r), (out_f, r), &Device::Cpu)?;
                tensors.insert(lora_key(layer, module, LoraPart::A), a);
                tensors.insert(lora_key(layer, module, LoraPart::B), b);
            }
        }
        if tensors.is_empty() {
            return Err(EngineError::Model(format!(
                "target_modules {:?} match none of the model's projections",
                config.target_modules
            )));
        }
        Ok(LoraAdapter { config, tensors })
    }
}

/// What [`merge_model_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSummary {
    /// Projections whose weights were merged.
    pub modules: usize,
    /// Weight files written (the base's file names and sharding are kept).
    pub weight_files: Vec<PathBuf>,
    /// Other files copied from the base (config, tokenizer, generation config, index).
    pub copied: Vec<PathBuf>,
}

/// Whether a file of a model directory holds weights (any of the formats the hub serves, or
/// the PyTorch shard index), by its name: what [`merge_model_dir`] rewrites instead of
/// copying, and what trainers writing a model directory of their own leave out.
pub fn is_weight_file(name: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".gguf",
        ".h5",
        ".msgpack",
    ]
    .iter()
    .any(|x| name.ends_with(x))
        || name == "pytorch_model.bin.index.json"
}

/// Copies the files of model directory `src` that are not weights (config, tokenizer,
/// generation config, shard index; see [`is_weight_file`]) into `out`, leaving out dotfiles
/// and the names in `skip`; each is written through a temporary file renamed into place, in
/// name order. Returns the paths written.
pub fn copy_model_files(
    src: &Path,
    out: &Path,
    skip: &[&str],
) -> Result<Vec<PathBuf>, EngineError> {
    let entries = std::fs::read_dir(src)
        .map_err(|e| EngineError::Model(format!("{}: cannot list: {e}", src.display())))?;
    let mut names: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.') && !is_weight_file(n) && !skip.contains(&n.as_str()))
        .collect();
    names.sort();
    let mut copied = Vec::new();
    for (name, path) in names {
        let bytes = std::fs::read(&path)
            .map_err(|e| EngineError::Model(format!("{}: cannot read: {e}", path.display())))?;
        let dest = out.join(&name);
        write_atomic(&dest, &bytes)?;
        copied.push(dest);
    }
    Ok(copied)
}

/// Writes base + adapter as a Hugging Face model directory in `out` (PEFT's
/// `merge_and_unload` followed by `save_pretrained`): every weight file of `base_dir` is written
/// under its own name with `W + scaling · B·A` for each adapted projection (computed in F32,
/// stored in the base tensor's dtype) and every other tensor unchanged; config, tokenizer,
/// generation config and shard index are copied. The engine and `transformers` load the result
/// like any model directory. Everything is validated before anything is written: an adapter
/// tensor for a layer or projection the base lacks, or whose shape does not fit, is an error
/// naming the tensor and both shapes. `out` must differ from both inputs; each file is written
/// through a temporary file renamed into place.
pub fn merge_model_dir(
    base_dir: &Path,
    adapter_dir: &Path,
    out: &Path,
) -> Result<MergeSummary, EngineError> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(out, base_dir) || same(out, adapter_dir) {
        return Err(EngineError::Model(format!(
            "{}: the merged model must go to a directory of its own (not the base model's or the adapter's)",
            out.display()
        )));
    }
    let adapter = LoraAdapter::load(adapter_dir, &Device::Cpu)?;
    let modules = adapter
        .modules()
        .map_err(|e| EngineError::Model(format!("adapter {}: {e}", adapter_dir.display())))?;
    let files = crate::model::safetensors_files(base_dir)?;
    // Where each base weight lives, and its shape.
    let mut located: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let shapes = safetensors_shapes(f)
            .map_err(|e| EngineError::Model(format!("{}: {e}", f.display())))?;
        for (k, s) in shapes {
            located.insert(k, (i, s));
        }
    }
    // Validate every module first (model order), so that nothing is written on a mismatch.
    let mut plan: Vec<(usize, String, &LoraModule)> = Vec::with_capacity(modules.len());
    for m in &modules {
        let name = format!("model.layers.{}.{}.{}.weight", m.layer, m.group, m.module);
        let Some((file, shape)) = located.get(&name) else {
            return Err(EngineError::Model(format!(
                "adapter tensor {} targets {name}, which the base model {} does not have \
                 (an adapter for a different base model?)",
                m.a_key,
                base_dir.display()
            )));
        };
        if shape.len() != 2 {
            return Err(EngineError::Model(format!(
                "{}: {name} has shape {shape:?}; a projection weight is 2-D",
                files[*file].display()
            )));
        }
        let (out_f, in_f) = (shape[0], shape[1]);
        let r = m.a.dims()[0];
        for (key, got, want) in [
            (&m.a_key, m.a.dims(), [r, in_f]),
            (&m.b_key, m.b.dims(), [out_f, r]),
        ] {
            if got != want {
                return Err(EngineError::Model(format!(
                    "adapter tensor {key} has shape {got:?} but the base model's {name} is \
                     [{out_f}, {in_f}], which needs {want:?} (an adapter for a different base model?)"
                )));
            }
        }
        plan.push((*file, name, m));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| EngineError::Model(format!("{}: cannot create: {e}", out.display())))?;
    let mut weight_files = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let reader = crate::weights::SafetensorsReader::open(std::slice::from_ref(f))?;
        let mut tensors = reader
            .names()
            .iter()
            .map(|name| Ok((name.clone(), reader.load(name, &Device::Cpu)?)))
            .collect::<candle_core::Result<HashMap<String, Tensor>>>()
            .map_err(|e| EngineError::Model(format!("{}: {e}", f.display())))?;
        drop(reader);
        for (_, name, m) in plan.iter().filter(|(file, _, _)| *file == i) {
            let Some(w) = tensors.get(name) else {
                continue;
            };
            let path = module_path(m.layer, &m.group, &m.module);
            let (_, scaling) = adapter.config.module_rank_scaling(&path);
            let delta =
                (m.b.to_dtype(DType::F32)?
                    .matmul(&m.a.to_dtype(DType::F32)?)?
                    * scaling)?;
            let merged = (w.to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?;
            tensors.insert(name.clone(), merged);
        }
        let file_name = f
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "model.safetensors".into());
        let dest = out.join(&file_name);
        let tmp = out.join(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        candle_core::safetensors::save(&tensors, &tmp)
            .map_err(|e| EngineError::Model(format!("{}: cannot write: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &dest)
            .map_err(|e| EngineError::Model(format!("{}: cannot write: {e}", dest.display())))?;
        weight_files.push(dest);
    }
    let copied = copy_model_files(base_dir, out, &[])?;
    Ok(MergeSummary {
        modules: plan.len(),
        weight_files,
        copied,
    })
}
