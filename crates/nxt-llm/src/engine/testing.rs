//! Tiny random models for tests (here and in other crates): a real byte-level BPE tokenizer,
//! a chat template and seeded weights, written as an ordinary Hugging Face model directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::config::Arch;
use super::sampling::Rng;
use crate::LlmError;

/// Shape and storage options of a tiny model.
#[derive(Debug, Clone)]
pub struct TinyModelSpec {
    /// Architecture (decides the chat template and the q/k/v biases).
    pub arch: Arch,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// BPE merges learned on the built-in corpus (vocabulary = 256 bytes + merges + specials).
    pub num_merges: usize,
    /// Weight seed.
    pub seed: u64,
    /// Standard deviation of the random weights.
    pub init_std: f32,
    /// Share the embedding with the LM head.
    pub tie_word_embeddings: bool,
    /// Storage dtype of the safetensors (F32, BF16 or F16).
    pub dtype: DType,
    /// Number of safetensors shards (> 1 writes `model.safetensors.index.json`).
    pub shards: usize,
    /// Write config.json in the transformers 5.x layout (`rope_parameters`).
    pub new_config_layout: bool,
    /// Embedding rows (at least the tokenizer's size; larger pads the vocabulary, as real
    /// models do). None: exactly the tokenizer's size.
    pub vocab_size: Option<usize>,
}

impl Default for TinyModelSpec {
    fn default() -> Self {
        Self {
            arch: Arch::Qwen2,
            hidden_size: 32,
            intermediate_size: 64,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            num_merges: 200,
            seed: 0,
            init_std: 0.2,
            tie_word_embeddings: true,
            dtype: DType::F32,
            shards: 1,
            new_config_layout: false,
            vocab_size: None,
        }
    }
}

/// Special tokens of the tiny tokenizer (ChatML and Llama 3 styles).
pub const SPECIAL_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];

/// Qwen2.5's chat template (the instruct models' tokenizer_config.json).
pub const QWEN2_CHAT_TEMPLATE: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// A Llama 3.1-style chat template (uses `bos_token` and `strftime_now`).
pub const LLAMA3_CHAT_TEMPLATE: &str = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

/// Text the tiny tokenizer's merges are learned from.
const CORPUS: &str =
    "def add(a, b):\n    return a + b\n\ndef is_even(n):\n    return n % 2 == 0\n\n\
for i in range(10):\n    print(i)\n\nclass Solution:\n    def solve(self, nums):\n        \
total = 0\n        for x in nums:\n            total += x\n        return total\n\n\
The function returns the sum of the numbers in the list. The bug is in the loop.\n\
# Fixed code\nassert add(1, 2) == 3\nif __name__ == '__main__':\n    main()\n";

/// GPT-2's byte-to-unicode table (byte-level BPE alphabet).
pub fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        table[*b as usize] = char::from_u32(c).unwrap_or(' ');
    }
    table
}

/// Builds the tiny tokenizer's JSON (byte-level BPE with `num_merges` merges learned
/// deterministically on a small built-in corpus, plus [`SPECIAL_TOKENS`]).
pub fn tiny_tokenizer_json(num_merges: usize) -> serde_json::Value {
    let table = bytes_to_unicode();
    let mut vocab: BTreeMap<String, usize> = BTreeMap::new();
    let mut id_of: HashMap<String, usize> = HashMap::new();
    for c in &table {
        let s = c.to_string();
        id_of.insert(s.clone(), id_of.len());
    }
    // Pre-tokenize like GPT-2 roughly: split before spaces/newlines and punctuation.
    let mut words: Vec<Vec<String>> = Vec::new();
    let mut cur = String::new();
    for ch in CORPUS.chars() {
        let boundary = ch == ' ' || ch == '\n' || ch.is_ascii_punctuation();
        if boundary && !cur.is_empty() && !cur.ends_with(' ') {
            words.push(cur.bytes().map(|b| table[b as usize].to_string()).collect());
            cur.clear();
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        words.push(cur.bytes().map(|b| table[b as usize].to_string()).collect());
    }
    let mut merges: Vec<String> = Vec::new();
    while merges.len() < num_merges {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for w in &words {
            for p in w.windows(2) {
                *counts.entry((p[0].clone(), p[1].clone())).or_default() += 1;
            }
        }
        // Most frequent pair; ties broken by the BTreeMap order (deterministic).
        let Some(((a, b), _)) = counts
            .into_iter()
            .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(&x.0)))
        else {
            break;
        };
        let joined = format!("{a}{b}");
        merges.push(format!("{a} {b}"));
        if !id_of.contains_key(&joined) {
            id_of.insert(joined.clone(), id_of.len());
        }
        for w in &mut words {
            let mut i = 0;
            while i + 1 < w.len() {
                if w[i] == a && w[i + 1] == b {
                    w[i] = joined.clone();
                    w.remove(i + 1);
                }
                i += 1;
            }
        }
    }
    for (k, v) in &id_of {
        vocab.insert(k.clone(), *v);
    }
    let base = id_of.len();
    let added: Vec<serde_json::Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": base + i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
}

fn io(path: &Path, e: impl std::fmt::Display) -> LlmError {
    LlmError::Model(format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), LlmError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| io(path, e))?;
    std::fs::write(path, text).map_err(|e| io(path, e))
}

/// Writes a complete tiny model directory (config.json, generation_config.json,
/// tokenizer.json, tokenizer_config.json, safetensors) with seeded random weights.
pub fn write_tiny_model(dir: &Path, spec: &TinyModelSpec) -> Result<(), LlmError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tok = tiny_tokenizer_json(spec.num_merges);
    let base = tok["model"]["vocab"]
        .as_object()
        .map(|o| o.len())
        .unwrap_or(0);
    let vocab_size = (base + SPECIAL_TOKENS.len()).max(spec.vocab_size.unwrap_or(0));
    let id = |t: &str| base + SPECIAL_TOKENS.iter().position(|s| *s == t).unwrap_or(0);
    write_json(&dir.join("tokenizer.json"), &tok)?;
    let (bos, eos, template, eos_ids) = match spec.arch {
        Arch::Qwen2 => (
            None,
            "<|im_end|>",
            QWEN2_CHAT_TEMPLATE,
            vec![id("<|im_end|>"), id("<|endoftext|>")],
        ),
        Arch::Llama => (
            Some("<|begin_of_text|>"),
            "<|eot_id|>",
            LLAMA3_CHAT_TEMPLATE,
            vec![id("<|eot_id|>"), id("<|endoftext|>")],
        ),
    };
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({"bos_token": bos, "eos_token": eos, "pad_token": "<|endoftext|>",
                "chat_template": template, "model_max_length": 2048,
                "tokenizer_class": "PreTrainedTokenizerFast"}),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({"eos_token_id": eos_ids, "bos_token_id": bos.map(id)}),
    )?;
    let head_dim = spec.hidden_size / spec.num_heads.max(1);
    let mut cfg = json!({
        "architectures": [match spec.arch { Arch::Qwen2 => "Qwen2ForCausalLM", Arch::Llama => "LlamaForCausalLM" }],
        "model_type": match spec.arch { Arch::Qwen2 => "qwen2", Arch::Llama => "llama" },
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "bos_token_id": bos.map(id),
        "eos_token_id": eos_ids[1],
        "use_sliding_window": false,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
    });
    if let Some(o) = cfg.as_object_mut() {
        if spec.new_config_layout {
            o.insert(
                "rope_parameters".into(),
                json!({"rope_theta": 10000.0, "rope_type": "default"}),
            );
            o.insert("sliding_window".into(), serde_json::Value::Null);
            o.insert("dtype".into(), json!("float32"));
        } else {
            o.insert("rope_theta".into(), json!(10000.0));
            o.insert("sliding_window".into(), json!(2048));
            o.insert("torch_dtype".into(), json!("float32"));
        }
        if spec.arch == Arch::Llama {
            o.insert("attention_bias".into(), json!(false));
            o.insert("mlp_bias".into(), json!(false));
        }
    }
    write_json(&dir.join("config.json"), &cfg)?;

    // Weights, in a fixed order, from one seeded stream.
    let h = spec.hidden_size;
    let q = spec.num_heads * head_dim;
    let kv = spec.num_kv_heads * head_dim;
    let i = spec.intermediate_size;
    let mut shapes: Vec<(String, Vec<usize>, bool)> = vec![(
        "model.embed_tokens.weight".into(),
        vec![vocab_size, h],
        false,
    )];
    for l in 0..spec.num_layers {
        let p = format!("model.layers.{l}");
        shapes.push((format!("{p}.input_layernorm.weight"), vec![h], true));
        shapes.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            true,
        ));
        shapes.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h], false));
        shapes.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h], false));
        shapes.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h], false));
        shapes.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q], false));
        if spec.arch == Arch::Qwen2 {
            shapes.push((format!("{p}.self_attn.q_proj.bias"), vec![q], false));
            shapes.push((format!("{p}.self_attn.k_proj.bias"), vec![kv], false));
            shapes.push((format!("{p}.self_attn.v_proj.bias"), vec![kv], false));
        }
        shapes.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h], false));
        shapes.push((format!("{p}.mlp.up_proj.weight"), vec![i, h], false));
        shapes.push((format!("{p}.mlp.down_proj.weight"), vec![h, i], false));
    }
    shapes.push(("model.norm.weight".into(), vec![h], true));
    if !spec.tie_word_embeddings {
        shapes.push(("lm_head.weight".into(), vec![vocab_size, h], false));
    }
    let mut rng = Rng::new(spec.seed);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, shape, is_norm) in shapes {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let r = rng.next_normal() as f32 * spec.init_std;
                if is_norm {
                    1.0 + r * 0.5
                } else {
                    r
                }
            })
            .collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(spec.dtype))
            .map_err(|e| io(dir, e))?;
        tensors.push((name, t));
    }
    let shards = spec.shards.max(1);
    if shards == 1 {
        let p = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors.into_iter().collect::<HashMap<_, _>>(), &p)
            .map_err(|e| io(&p, e))?;
    } else {
        let per = tensors.len().div_ceil(shards);
        let mut weight_map = serde_json::Map::new();
        for (k, chunk) in tensors.chunks(per).enumerate() {
            let fname = format!("model-{:05}-of-{:05}.safetensors", k + 1, shards);
            for (name, _) in chunk {
                weight_map.insert(name.clone(), json!(fname));
            }
            let p = dir.join(&fname);
            let map: HashMap<String, Tensor> = chunk.iter().cloned().collect();
            candle_core::safetensors::save(&map, &p).map_err(|e| io(&p, e))?;
        }
        write_json(
            &dir.join("model.safetensors.index.json"),
            &json!({"metadata": {}, "weight_map": weight_map}),
        )?;
    }
    Ok(())
}
