//! The settings of an evaluation run, shared by the evaluation ([`crate::eval`]) and its
//! report ([`crate::report`]).

use serde::{Deserialize, Serialize};

use crate::repair::RepairConfig;

/// Settings of an evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Benchmark name (for the report).
    pub benchmark: String,
    /// Repair settings (prompt, trace, sampling).
    pub repair: RepairConfig,
    /// Samples per task.
    pub n: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Also sample one greedy repair per task.
    pub greedy: bool,
    /// The `k` of pass@k.
    pub ks: Vec<usize>,
    /// Base seed (per-request seeds derive from it, so a resumed run samples the same way).
    pub seed: u64,
    /// Requests handed to the generator at once (HTTP backends overlap them).
    pub batch: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            benchmark: String::new(),
            repair: RepairConfig::default(),
            n: 32,
            temperature: 0.8,
            greedy: true,
            ks: vec![1, 5, 10, 25],
            seed: 0,
            batch: 16,
        }
    }
}
