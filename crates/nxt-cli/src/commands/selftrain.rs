//! `nxt selftrain` (being built; replaced by the real command).

/// Arguments of `nxt selftrain`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nxt selftrain`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("nxt selftrain is not built yet")
}
