//! `nxt-selftrain`: self-training, the NExT paper's Algorithm 1, on top of `nxt-core` (the
//! repair step, evaluation and its run store) and `nxt-train` (fine-tuning).
//!
//! * [`config`]: `selftrain.toml`, every setting named, defaults from ReST-EM/STaR.
//! * [`run`]: the loop as resumable stages (hard problems, per iteration sample -> keep ->
//!   train from the base -> dev eval, early stop, best iteration, test sets).
//! * [`keep`]: the passing-sample filter (dedupe on normalised code + rationale, per-task cap)
//!   and its funnel; [`ledger`]: the loop's SQLite ledger; [`results`]: `results.json`,
//!   `report.md` and the terminal table; [`merge`]: joining `--shard i/N` stores;
//!   [`models`]: base and per-iteration models (embedded engine or vLLM-style servers with
//!   runtime adapter loading); [`trainer`]: the M-step through `nxt-train`.
//! * [`toy`]: the generated toy repair benchmark and tiny model of the CPU mechanism demo.

pub mod config;
pub mod data;
pub mod error;
pub mod keep;
pub mod ledger;
pub mod merge;
pub mod models;
pub mod results;
pub mod run;
pub mod toy;
mod toy_stage;
pub mod trainer;

pub use config::{default_run_dir, SelftrainConfig};
pub use error::SelftrainError;
pub use run::{run, Event, RunEnd, RunOptions, Shard};
