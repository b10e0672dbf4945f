//! `nxt train` (being built; replaced by the real command).

/// Arguments of `nxt train`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nxt train`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("nxt train is not built yet")
}
