//! `nxt serve`: an OpenAI-compatible server over the embedded engine (or over other servers).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use nxt_llm::engine::Engine;
use nxt_llm::server::{ServedModels, ServerConfig, ServerHandle};

use super::adapter::LoraModule;
use crate::exit;

/// Arguments of `nxt serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model directory or Hugging Face hub id (an http(s):// URL proxies to other servers).
    #[arg(long)]
    pub model: String,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Model name reported by /v1/models (default: the model's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Generations running at once.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Requests waiting beyond those running before the server answers 429.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// max_tokens for requests that give none.
    #[arg(long, default_value_t = 512)]
    pub default_max_tokens: usize,
    /// A PEFT LoRA adapter directory merged into the served model's weights at load (the
    /// model is then served with the adapter under its own name; no other adapters can be
    /// loaded onto it).
    #[arg(long, conflicts_with = "lora_modules")]
    pub adapter: Option<PathBuf>,
    /// LoRA adapters served beside the base model, as vLLM spells it: `NAME=DIR` (or
    /// `{"name": NAME, "path": DIR}`), several after one flag or the flag repeated. A request
    /// with `"model": NAME` is generated with that adapter; `/v1/models` lists each with
    /// `parent` = the base model. More can be loaded at run time with POST
    /// /v1/load_lora_adapter.
    #[arg(long, num_args = 1.., value_parser = super::adapter::parse_lora_module)]
    pub lora_modules: Vec<LoraModule>,
}

/// Runs `nxt serve` until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let engine_opts = super::adapter::engine_options(&args.model, args.adapter.as_deref())?;
    let mut names = std::collections::BTreeSet::new();
    for m in &args.lora_modules {
        if !names.insert(m.name.as_str()) {
            return Err(exit::usage(format!(
                "--lora-modules: the name {:?} is given twice",
                m.name
            )));
        }
        if args.served_model_name.as_deref() == Some(m.name.as_str()) {
            return Err(exit::usage(format!(
                "--lora-modules: {:?} is also --served-model-name (the base model's name)",
                m.name
            )));
        }
        super::adapter::check_for_engine(
            &args.model,
            &m.path,
            &format!("--lora-modules {}={}", m.name, m.path.display()),
        )?;
    }
    // The embedded engine hosts adapters (given here or loaded at run time); a server URL or a
    // model with an adapter merged serves just itself.
    let served = if nxt_llm::is_server_spec(&args.model) || args.adapter.is_some() {
        let opts = nxt_llm::OpenOptions {
            engine: engine_opts,
            ..Default::default()
        };
        let generator = nxt_llm::open_generator(&args.model, &opts)
            .with_context(|| format!("cannot open model {}", args.model))?;
        ServedModels::new(Arc::from(generator))
    } else {
        let engine = Engine::load(&args.model, engine_opts)
            .with_context(|| format!("cannot open model {}", args.model))?;
        let mut served = ServedModels::engine(Arc::new(engine));
        for m in &args.lora_modules {
            served = served.with_adapter(m.name.clone(), m.path.clone());
        }
        served
    };
    let config = ServerConfig {
        host: args.host.clone(),
        port: args.port,
        model_name: args.served_model_name.clone(),
        parallel: args.parallel.max(1),
        queue: args.queue,
        default_max_tokens: args.default_max_tokens.max(1),
        ..Default::default()
    };
    let name = config
        .model_name
        .clone()
        .unwrap_or_else(|| served.base_name());
    let server = ServerHandle::start_models(served, &config)?;
    for m in &args.lora_modules {
        eprintln!(
            "nxt serve: adapter {} from {} (parent {name})",
            m.name,
            m.path.display()
        );
    }
    // Scripts wait for this line (with the real port when --port 0).
    println!(
        "nxt serve: {name} on {} (Ctrl-C to stop)",
        server.base_url()
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    server.wait_for_signal()?;
    eprintln!("nxt serve: stopped");
    Ok(())
}
