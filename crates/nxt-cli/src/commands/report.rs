//! `nxt report` (being built; replaced by the real command).

/// Arguments of `nxt report`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nxt report`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("nxt report is not built yet")
}
