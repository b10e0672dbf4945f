//! `nxt serve`: an OpenAI-compatible server over the embedded engine (or over other servers).

use std::sync::Arc;

use anyhow::Context;
use nxt_llm::server::{ServerConfig, ServerHandle};

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
}

/// Runs `nxt serve` until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = nxt_llm::OpenOptions::default();
    let generator = nxt_llm::open_generator(&args.model, &opts)
        .with_context(|| format!("cannot open model {}", args.model))?;
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
        .unwrap_or_else(|| generator.name());
    let server = ServerHandle::start(Arc::from(generator), &config)?;
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
