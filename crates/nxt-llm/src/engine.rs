//! The embedded engine behind [`Generator`]: loads a Hugging Face model directory (or hub id)
//! into `nxt-engine`'s model, renders chat templates, and samples `n` completions per prompt
//! with one shared prefill and a batched decode (one forward of batch `n` per step).
//!
//! ```no_run
//! use nxt_llm::engine::{Engine, EngineOptions};
//! use nxt_llm::{GenerationRequest, Generator, Prompt, SamplingParams};
//! let engine = Engine::load("Qwen/Qwen2.5-Coder-0.5B-Instruct", EngineOptions::default())?;
//! let out = engine.generate(&GenerationRequest {
//!     prompt: Prompt::Text("def add(a, b):".into()),
//!     n: 4,
//!     params: SamplingParams { temperature: 0.8, max_tokens: 64, ..Default::default() },
//! })?;
//! # Ok::<(), nxt_llm::LlmError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use tokenizers::Tokenizer;

use nxt_engine::sampling::{self, Rng, SamplerConfig};
use nxt_engine::{
    adapter, config, pieces, ChatTemplate, KvCache, ModelConfig, TokenizerConfig, Transformer,
};

use crate::{
    Completion, FinishReason, GenerationRequest, Generator, LlmError, Prompt, SamplingParams,
};

impl From<candle_core::Error> for LlmError {
    fn from(e: candle_core::Error) -> Self {
        LlmError::Model(format!("candle: {e}"))
    }
}

/// Where the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineDevice {
    /// CPU (f32).
    #[default]
    Cpu,
    /// CUDA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
}

/// Options of [`Engine::load`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Device.
    pub device: EngineDevice,
    /// Compute dtype (default: F32 on CPU, BF16 on CUDA).
    pub dtype: Option<DType>,
    /// Hub revision (branch, tag or commit) when loading by id.
    pub revision: String,
    /// A PEFT LoRA adapter directory merged into the weights after loading
    /// ([`adapter::merge_into`]); an adapter for another base model fails naming the first
    /// mismatched tensor.
    pub adapter: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            device: EngineDevice::Cpu,
            dtype: None,
            revision: "main".into(),
            adapter: None,
        }
    }
}

/// A loaded model ready to generate. Thread-safe; each call owns its own KV cache.
pub struct Engine {
    name: String,
    dir: PathBuf,
    model: Transformer,
    tokenizer: Arc<Tokenizer>,
    template: Option<Arc<ChatTemplate>>,
    eos: Vec<u32>,
    adapter: Option<PathBuf>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("adapter", &self.adapter)
            .finish()
    }
}

/// `base+adapter` as an engine's name.
fn adapter_name(base: &str, adapter: &Path) -> String {
    format!("{base}+{}", adapter.display())
}

impl Engine {
    /// Loads a model from a local directory or a hub id (downloaded into the HF cache).
    pub fn load(path_or_id: &str, opts: EngineOptions) -> Result<Engine, LlmError> {
        let dir = nxt_engine::resolve_model(path_or_id, &opts.revision)?;
        let device = match opts.device {
            EngineDevice::Cpu => Device::Cpu,
            EngineDevice::Cuda(i) => Device::new_cuda(i).map_err(|e| {
                LlmError::Model(format!(
                    "cannot open CUDA device {i} ({e}); build with `--features cuda` or use the CPU"
                ))
            })?,
        };
        let dtype = opts.dtype.unwrap_or(if device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        });
        let cfg = ModelConfig::from_file(&dir.join("config.json"))?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| LlmError::Model(format!("{}: {e}", tok_path.display())))?;
        let tcfg = TokenizerConfig::from_dir(&dir)?;
        let template = match &tcfg.chat_template {
            Some(src) => Some(ChatTemplate::new(
                src,
                tcfg.bos_token.clone().unwrap_or_default(),
                tcfg.eos_token.clone().unwrap_or_default(),
                &dir.join("tokenizer_config.json").display().to_string(),
            )?),
            None => None,
        };
        let mut eos = cfg.eos_token_ids.clone();
        eos.extend(config::generation_eos_ids(&dir)?);
        if let Some(t) = tcfg
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t))
        {
            eos.push(t);
        }
        eos.sort_unstable();
        eos.dedup();
        let mut model = Transformer::load_dir(&dir, &cfg, dtype, &device)?;
        let mut name = path_or_id.to_string();
        if let Some(a) = &opts.adapter {
            let lora = adapter::LoraAdapter::load(a, &device)?;
            adapter::merge_into(&mut model, &lora).map_err(|e| {
                LlmError::Model(format!(
                    "adapter {} does not fit the model {}: {e}",
                    a.display(),
                    dir.display()
                ))
            })?;
            name = adapter_name(path_or_id, a);
        }
        model.prepare_for_inference()?;
        Ok(Engine {
            name,
            dir,
            model,
            tokenizer: Arc::new(tokenizer),
            template: template.map(Arc::new),
            eos,
            adapter: opts.adapter.clone(),
        })
    }

    /// A new engine sharing this (base) engine's tokenizer and every weight the adapter does
    /// not change, with the adapter at `dir` merged into its own copies of the adapted
    /// projections. Memory: one merged copy (plus its inference layout) of each adapted
    /// projection per adapter; embeddings, norms and the LM head are shared. Its outputs equal
    /// those of [`Engine::load`] with [`EngineOptions::adapter`] set to `dir`. An engine that
    /// already has an adapter is refused (derive adapters from the base).
    pub fn with_adapter(&self, dir: &Path) -> Result<Engine, LlmError> {
        if let Some(a) = &self.adapter {
            return Err(LlmError::Model(format!(
                "{}: already has the adapter {} merged; load adapters onto the base engine",
                self.name,
                a.display()
            )));
        }
        let lora = adapter::LoraAdapter::load(dir, self.model.device())?;
        let mut model = self.model.clone();
        adapter::merge_into(&mut model, &lora).map_err(|e| {
            LlmError::Model(format!(
                "adapter {} does not fit the model {}: {e}",
                dir.display(),
                self.dir.display()
            ))
        })?;
        Ok(Engine {
            name: adapter_name(&self.name, dir),
            dir: self.dir.clone(),
            model,
            tokenizer: self.tokenizer.clone(),
            template: self.template.clone(),
            eos: self.eos.clone(),
            adapter: Some(dir.to_path_buf()),
        })
    }

    /// The adapter merged into this engine's weights, if any.
    pub fn adapter_dir(&self) -> Option<&Path> {
        self.adapter.as_deref()
    }

    /// The model directory in use.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The model.
    pub fn model(&self) -> &Transformer {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// End-of-sequence token ids (config.json, generation_config.json, tokenizer_config.json).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The prompt text the model sees (chat prompts rendered with the chat template).
    pub fn render_prompt(&self, prompt: &Prompt) -> Result<String, LlmError> {
        match prompt {
            Prompt::Text(t) => Ok(t.clone()),
            Prompt::Chat(msgs) => match &self.template {
                Some(t) => Ok(t.render(msgs, true)?),
                None => Err(LlmError::Request(format!(
                    "{}: the model has no chat template; send a text prompt",
                    self.dir.display()
                ))),
            },
        }
    }

    /// Token ids of a prompt (special tokens added for text prompts, as `/v1/completions`
    /// does; chat templates add their own).
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, LlmError> {
        let text = self.render_prompt(prompt)?;
        let add_special = matches!(prompt, Prompt::Text(_));
        self.encode(&text, add_special)
    }

    /// Tokenizes text.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, LlmError> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| LlmError::Request(format!("tokenizer: {e}")))
    }

    /// Detokenizes ids (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| LlmError::Model(format!("tokenizer: {e}")))
    }

    /// Logits `(tokens.len(), vocab)` of a full forward pass (no cache), as nested vectors.
    pub fn forward_logits(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, LlmError> {
        let t = Tensor::new(tokens, self.model.device())?.unsqueeze(0)?;
        let logits = self
            .model
            .forward(&t, None)?
            .squeeze(0)?
            .to_dtype(DType::F32)?;
        Ok(logits.to_vec2()?)
    }

    fn check(&self, n: usize, p: &SamplingParams) -> Result<(), LlmError> {
        if n == 0 {
            return Err(LlmError::Request("n must be at least 1".into()));
        }
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return Err(LlmError::Request(format!(
                "temperature must be >= 0, got {}",
                p.temperature
            )));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(LlmError::Request(format!(
                "top_p must be in (0, 1], got {}",
                p.top_p
            )));
        }
        if p.top_k == Some(0) {
            return Err(LlmError::Request("top_k must be at least 1".into()));
        }
        Ok(())
    }
}

/// Per-sample decoding state.
struct Stream {
    rng: Rng,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    text: String,
    finish: Option<FinishReason>,
}

impl Generator for Engine {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn generate(&self, req: &GenerationRequest) -> Result<Vec<Completion>, LlmError> {
        self.check(req.n, &req.params)?;
        let prompt = self.encode_prompt(&req.prompt)?;
        self.generate_from_ids(&prompt, req.n, &req.params)
    }

    fn generate_with_pieces(
        &self,
        req: &GenerationRequest,
    ) -> Result<Vec<(Completion, Option<Vec<crate::TokenPiece>>)>, LlmError> {
        self.check(req.n, &req.params)?;
        let prompt = self.encode_prompt(&req.prompt)?;
        let want = req.params.logprobs;
        Ok(self
            .generate_ids(&prompt, req.n, &req.params)?
            .into_iter()
            .map(|(c, ids)| {
                let pieces = want.then(|| {
                    ids.iter()
                        .map(|&id| pieces::token_piece(&self.tokenizer, id))
                        .collect()
                });
                (c, pieces)
            })
            .collect())
    }

    fn prompt_fit(&self, prompt: &Prompt) -> Option<Result<crate::PromptFit, LlmError>> {
        Some(self.encode_prompt(prompt).map(|ids| crate::PromptFit {
            prompt_tokens: ids.len(),
            context: self.model.cfg.max_position_embeddings,
        }))
    }
}

impl Engine {
    /// `n` completions of an already tokenized prompt: one prefill shared by the `n` samples,
    /// then one batched forward per step over the samples still running.
    pub fn generate_from_ids(
        &self,
        prompt: &[u32],
        n: usize,
        p: &SamplingParams,
    ) -> Result<Vec<Completion>, LlmError> {
        Ok(self
            .generate_ids(prompt, n, p)?
            .into_iter()
            .map(|(c, _)| c)
            .collect())
    }

    /// [`Engine::generate_from_ids`], with each completion's sampled token ids.
    fn generate_ids(
        &self,
        prompt: &[u32],
        n: usize,
        p: &SamplingParams,
    ) -> Result<Vec<(Completion, Vec<u32>)>, LlmError> {
        self.check(n, p)?;
        if let Some(&bad) = prompt
            .iter()
            .find(|&&t| t as usize >= self.model.cfg.vocab_size)
        {
            return Err(LlmError::Request(format!(
                "prompt token id {bad} is outside the vocabulary"
            )));
        }
        if prompt.is_empty() {
            return Err(LlmError::Request("the prompt is empty".into()));
        }
        let max_ctx = self.model.cfg.max_position_embeddings;
        if prompt.len() >= max_ctx {
            return Err(LlmError::Request(format!(
                "prompt has {} tokens; the model's context is {max_ctx}",
                prompt.len()
            )));
        }
        let max_new = p.max_tokens.min(max_ctx - prompt.len());
        let seed = p.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (std::process::id() as u64).rotate_left(32)
        });
        let mut streams: Vec<Stream> = (0..n)
            .map(|i| Stream {
                rng: Rng::for_stream(seed, i as u64),
                tokens: Vec::new(),
                logprobs: Vec::new(),
                text: String::new(),
                finish: None,
            })
            .collect();
        let done = |streams: Vec<Stream>| -> Vec<(Completion, Vec<u32>)> {
            streams
                .into_iter()
                .map(|s| {
                    let c = Completion {
                        text: s.text,
                        prompt_tokens: prompt.len(),
                        completion_tokens: s.tokens.len(),
                        finish_reason: s.finish.unwrap_or(FinishReason::Length),
                        logprobs: p.logprobs.then_some(s.logprobs),
                    };
                    (c, s.tokens)
                })
                .collect()
        };
        if max_new == 0 {
            return Ok(done(streams));
        }
        let sc = SamplerConfig {
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
        };
        let dev = self.model.device().clone();
        // Prefill once (batch 1), then share the cached prefix among the n samples.
        let mut cache = KvCache::new(&self.model, 1, prompt.len() + max_new)?;
        let input = Tensor::new(prompt, &dev)?.unsqueeze(0)?;
        let logits = self.model.forward_last(&input, Some(&mut cache))?;
        let logits = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let first = &logits[0];
        let mut scratch = Vec::new();
        let mut active: Vec<usize> = (0..n).collect();
        let mut rows: Vec<Vec<f32>> = vec![first.clone()];
        let mut row_of: Vec<usize> = vec![0; n];
        loop {
            // Sample one token per active stream from its logits row.
            let mut next = Vec::with_capacity(active.len());
            for (k, &si) in active.iter().enumerate() {
                let row = &rows[row_of[k]];
                let s = &mut streams[si];
                let tok = sampling::sample(row, &sc, &mut s.rng, &mut scratch);
                if p.logprobs {
                    s.logprobs.push(sampling::log_prob(row, tok));
                }
                s.tokens.push(tok as u32);
                if self.eos.contains(&(tok as u32)) {
                    s.finish = Some(FinishReason::Stop);
                } else {
                    let gen = &s.tokens[..];
                    s.text = self.decode(gen)?;
                    if let Some(cut) = p
                        .stop
                        .iter()
                        .filter(|x| !x.is_empty())
                        .filter_map(|x| s.text.find(x.as_str()))
                        .min()
                    {
                        s.text.truncate(cut);
                        s.finish = Some(FinishReason::Stop);
                    } else if s.tokens.len() >= max_new {
                        s.finish = Some(FinishReason::Length);
                    }
                }
                next.push(tok as u32);
            }
            // Keep the streams that go on; shrink (or, after the prefill, expand) the cache.
            let keep: Vec<usize> = (0..active.len())
                .filter(|&k| streams[active[k]].finish.is_none())
                .collect();
            if keep.is_empty() {
                break;
            }
            let cache_rows: Vec<u32> = keep
                .iter()
                .map(|&k| if cache.batch() == 1 { 0 } else { k as u32 })
                .collect();
            if cache_rows.len() != cache.batch()
                || cache_rows.iter().enumerate().any(|(i, &r)| r as usize != i)
            {
                cache.select(&cache_rows)?;
            }
            let toks: Vec<u32> = keep.iter().map(|&k| next[k]).collect();
            active = keep.iter().map(|&k| active[k]).collect();
            let input = Tensor::new(toks.as_slice(), &dev)?.unsqueeze(1)?;
            let logits = self.model.forward_last(&input, Some(&mut cache))?;
            rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            row_of = (0..active.len()).collect();
        }
        Ok(done(streams))
    }
}
