//! The seeded random stream behind LoRA dropout: one per model, shared by every branch, with a
//! state that a checkpoint saves so that a resumed run draws the same masks.

use std::sync::{Arc, Mutex};

/// Seeded random stream for LoRA dropout, shared by every branch of a model; its state can
/// be read and restored so that a resumed training run draws the same masks.
#[derive(Debug, Clone, Default)]
pub struct DropoutRng {
    state: Arc<Mutex<u64>>,
}

impl DropoutRng {
    /// A stream starting at `state` (a seed, or a value from [`DropoutRng::state`]).
    pub fn new(state: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The current state.
    pub fn state(&self) -> u64 {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Restores a state read with [`DropoutRng::state`].
    pub fn set_state(&self, state: u64) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Advances the stream past `n` draws, as [`DropoutRng::mask`] of `n` would.
    pub(crate) fn skip(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(n as u64));
    }

    /// `n` keep-scales: `1/(1-p)` with probability `1-p`, else 0.
    pub(crate) fn mask(&self, n: usize, p: f32) -> Vec<f32> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let keep = 1.0 / (1.0 - p);
        (0..n)
            .map(|_| {
                *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = *s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let u = (z >> 40) as f32 / (1u64 << 24) as f32;
                if u < p {
                    0.0
                } else {
                    keep
                }
            })
            .collect()
    }
}
