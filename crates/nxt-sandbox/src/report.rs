//! The isolation report: which layers are active in a pool's workers.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Layers that strengthen cleanup but whose absence does not weaken isolation.
pub const OPTIONAL_LAYERS: &[&str] = &["private_tmpfs"];

/// One isolation layer and whether it took effect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IsolationLayer {
    /// Short name, e.g. `seccomp`, `pid_namespace`.
    pub name: String,
    /// Whether it is in force for every job.
    pub active: bool,
    /// What it does, or why it is missing.
    pub detail: String,
}

/// Which isolation layers a pool's jobs run under (measured by a probe job at worker start).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IsolationReport {
    /// The interpreter the workers run.
    pub python: PathBuf,
    /// Its version, e.g. `3.11.2`.
    pub python_version: String,
    /// Every layer, active or not.
    pub layers: Vec<IsolationLayer>,
}

impl IsolationReport {
    /// Names of the required layers that are not active.
    pub fn missing(&self) -> Vec<String> {
        self.layers
            .iter()
            .filter(|l| !l.active && !OPTIONAL_LAYERS.contains(&l.name.as_str()))
            .map(|l| l.name.clone())
            .collect()
    }

    /// True when every required layer is active.
    pub fn complete(&self) -> bool {
        self.missing().is_empty()
    }
}

impl fmt::Display for IsolationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "python: {} ({})",
            self.python.display(),
            self.python_version
        )?;
        for l in &self.layers {
            let state = if l.active {
                "active"
            } else if OPTIONAL_LAYERS.contains(&l.name.as_str()) {
                "inactive (optional)"
            } else {
                "INACTIVE"
            };
            writeln!(f, "  {:<22} {:<20} {}", l.name, state, l.detail)?;
        }
        let missing = self.missing();
        if missing.is_empty() {
            write!(f, "all required layers active")
        } else {
            write!(f, "missing: {}", missing.join(", "))
        }
    }
}
