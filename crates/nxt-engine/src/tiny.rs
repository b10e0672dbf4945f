//! Tiny random models, the CPU demo's and the tests' (here and in other crates): a real byte-level
//! BPE tokenizer, a chat template and seeded weights, written as an ordinary Hugging Face model
//! directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use crate::config::Arch;
use crate::sampling::Rng;
use crate::EngineError;

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
    /// Text to learn the `num_merges` BPE merges on, line by line (see
    /// [`tokenizer_json_from_corpus`]). None: the built-in corpus, word by word
    /// ([`tiny_tokenizer_json`]).
    pub corpus: Option<String>,
    /// `max_position_embeddings` of config.json (the longest sequence the model takes).
    pub max_position_embeddings: usize,
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
            corpus: None,
            max_position_embeddings: 2048,
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
    let pre_tokenizer = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    bpe_tokenizer_json(vocab, merges, pre_tokenizer)
}

/// The tokenizer.json of a byte-level BPE with this vocabulary (tokens to ids, ids from 0
/// without gaps), merges and pre-tokenizer, plus [`SPECIAL_TOKENS`] after the vocabulary.
fn bpe_tokenizer_json(
    vocab: BTreeMap<String, usize>,
    merges: Vec<String>,
    pre_tokenizer: serde_json::Value,
) -> serde_json::Value {
    let base = vocab.len();
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
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
}

/// Builds a byte-level BPE tokenizer's JSON whose `num_merges` merges are learned on `corpus`
/// (plus [`SPECIAL_TOKENS`]).
///
/// Unlike [`tiny_tokenizer_json`], the pre-tokenizer splits the text into lines (each keeping
/// its `\n`) and not into words, so merges may span spaces: text that recurs verbatim in the
/// corpus (a constant instruction, headings, whole lines of code) ends up as a few long tokens.
/// Learning is deterministic (the most frequent pair wins, ties go to the lexicographically
/// smallest pair) and incremental (only the lines containing the merged pair are recounted),
/// so a corpus of a few hundred kilobytes and a few thousand merges takes well under a second.
/// Fewer merges are learned when no pair occurs twice any more.
pub fn tokenizer_json_from_corpus(corpus: &str, num_merges: usize) -> serde_json::Value {
    let table = bytes_to_unicode();
    // Symbols: the 256 byte characters first (ids 0..256, in byte order), then merges.
    let mut names: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let mut line_counts: HashMap<&str, i64> = HashMap::new();
    for line in corpus.split_inclusive('\n') {
        *line_counts.entry(line).or_default() += 1;
    }
    let mut lines: Vec<(&str, i64)> = line_counts.into_iter().collect();
    lines.sort_unstable();
    let mut words: Vec<Vec<u32>> = lines
        .iter()
        .map(|(l, _)| l.bytes().map(u32::from).collect())
        .collect();
    let freq: Vec<i64> = lines.iter().map(|(_, n)| *n).collect();
    let mut counts: HashMap<(u32, u32), i64> = HashMap::new();
    let mut where_: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
    for (wi, w) in words.iter().enumerate() {
        for p in w.windows(2) {
            let key = (p[0], p[1]);
            *counts.entry(key).or_default() += freq[wi];
            let at = where_.entry(key).or_default();
            if at.last() != Some(&wi) {
                at.push(wi);
            }
        }
    }
    let mut merges: Vec<String> = Vec::new();
    while merges.len() < num_merges {
        let mut best: Option<((u32, u32), i64)> = None;
        for (&pair, &n) in &counts {
            let better = match best {
                None => true,
                Some((bp, bn)) => {
                    n > bn
                        || (n == bn
                            && (
                                names[pair.0 as usize].as_str(),
                                names[pair.1 as usize].as_str(),
                            ) < (names[bp.0 as usize].as_str(), names[bp.1 as usize].as_str()))
                }
            };
            if better {
                best = Some((pair, n));
            }
        }
        let Some(((a, b), n)) = best else { break };
        if n < 2 {
            break;
        }
        let new_id = names.len() as u32;
        let joined = format!("{}{}", names[a as usize], names[b as usize]);
        merges.push(format!("{} {}", names[a as usize], names[b as usize]));
        names.push(joined);
        let touched = where_.remove(&(a, b)).unwrap_or_default();
        for wi in touched {
            let w = &words[wi];
            if !w.windows(2).any(|p| p[0] == a && p[1] == b) {
                continue;
            }
            for p in w.windows(2) {
                let key = (p[0], p[1]);
                if let Some(c) = counts.get_mut(&key) {
                    *c -= freq[wi];
                    if *c <= 0 {
                        counts.remove(&key);
                    }
                }
            }
            let mut merged = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                    merged.push(new_id);
                    i += 2;
                } else {
                    merged.push(w[i]);
                    i += 1;
                }
            }
            for p in merged.windows(2) {
                let key = (p[0], p[1]);
                *counts.entry(key).or_default() += freq[wi];
                if key != (a, b) {
                    let at = where_.entry(key).or_default();
                    if at.last() != Some(&wi) {
                        at.push(wi);
                    }
                }
            }
            words[wi] = merged;
        }
        counts.remove(&(a, b));
    }
    // The byte symbols are named by the byte-level alphabet; merged symbols by their text.
    let mut vocab: BTreeMap<String, usize> = BTreeMap::new();
    for (id, name) in names.iter().enumerate() {
        let name: String = if id < 256 {
            table[id].to_string()
        } else {
            name.clone()
        };
        let next = vocab.len();
        vocab.entry(name).or_insert(next);
    }
    let pre_tokenizer = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "\n"}, "behavior": "MergedWithPrevious", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
    ]});
    bpe_tokenizer_json(vocab, merges, pre_tokenizer)
}

fn io(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Model(format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), EngineError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| io(path, e))?;
    std::fs::write(path, text).map_err(|e| io(path, e))
}

/// Writes a complete tiny model directory (config.json, generation_config.json,
/// tokenizer.json, tokenizer_config.json, safetensors) with seeded random weights.
pub fn write_tiny_model(dir: &Path, spec: &TinyModelSpec) -> Result<(), EngineError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tok = match &spec.corpus {
        Some(corpus) => tokenizer_json_from_corpus(corpus, spec.num_merges),
        None => tiny_tokenizer_json(spec.num_merges),
    };
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
                "chat_template": template, "model_max_length": spec.max_position_embeddings,
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
        "max_position_embeddings": spec.max_position_embeddings,
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
            o.insert("sliding_window".into(), json!(spec.max_position_embeddings));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> String {
        let mut s = String::new();
        for i in 0..400 {
            s.push_str("You are an expert Python programmer. Fix the program.\n\n");
            s.push_str(&format!(
                "def f{}(xs):\n    total = 0\n    for x in xs:\n        if x > {}:\n            total = total + x\n    return total\n",
                i % 7,
                i % 10
            ));
        }
        s
    }

    fn tokenizer(json: &serde_json::Value) -> tokenizers::Tokenizer {
        let text = serde_json::to_string(json).expect("json");
        tokenizers::Tokenizer::from_bytes(text.as_bytes()).expect("tokenizer loads")
    }

    #[test]
    fn corpus_tokenizer_is_deterministic_round_trips_and_compresses_repeated_lines() {
        let c = corpus();
        let a = tokenizer_json_from_corpus(&c, 100);
        let b = tokenizer_json_from_corpus(&c, 100);
        assert_eq!(a, b);
        let merges = a["model"]["merges"].as_array().map(Vec::len);
        assert_eq!(merges, Some(100));
        let tok = tokenizer(&a);
        let text = "You are an expert Python programmer. Fix the program.\n\ndef f3(xs):\n    total = 0\n    return total + 9 - ü\n";
        let enc = tok.encode(text, false).expect("encode");
        let dec = tok.decode(enc.get_ids(), false).expect("decode");
        assert_eq!(dec, text);
        // The constant instruction line (55 bytes) is a handful of tokens.
        let line = tok
            .encode(
                "You are an expert Python programmer. Fix the program.\n",
                false,
            )
            .expect("encode");
        assert!(line.get_ids().len() <= 3, "{:?}", line.get_tokens());
        // Vocabulary ids are contiguous: 256 bytes + merges (+ specials after them).
        let vocab = a["model"]["vocab"]
            .as_object()
            .map(|v| v.len())
            .unwrap_or(0);
        let max_id = a["model"]["vocab"]
            .as_object()
            .and_then(|v| v.values().filter_map(|x| x.as_u64()).max())
            .unwrap_or(0);
        assert_eq!(max_id as usize + 1, vocab);
        assert_eq!(a["added_tokens"][0]["id"].as_u64(), Some(vocab as u64));
    }

    #[test]
    fn corpus_tokenizer_stops_when_no_pair_repeats() {
        let t = tokenizer_json_from_corpus("abcabc", 100);
        let merges = t["model"]["merges"].as_array().map(Vec::len).unwrap_or(0);
        assert!(merges > 0 && merges < 100, "{merges}");
    }

    #[test]
    fn write_tiny_model_uses_the_corpus_and_position_limit() {
        let dir = std::env::temp_dir().join(format!("nxt-tiny-corpus-{}", std::process::id()));
        let spec = TinyModelSpec {
            corpus: Some(corpus()),
            num_merges: 100,
            max_position_embeddings: 1024,
            ..Default::default()
        };
        write_tiny_model(&dir, &spec).expect("write");
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).expect("config"),
        )
        .expect("json");
        assert_eq!(cfg["max_position_embeddings"].as_u64(), Some(1024));
        let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tok");
        assert_eq!(
            cfg["vocab_size"].as_u64(),
            Some(tok.get_vocab_size(true) as u64)
        );
        let enc = tok.encode("    total = 0\n", false).expect("encode");
        assert_eq!(enc.get_ids().len(), 1, "{:?}", enc.get_tokens());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
