//! Shared helpers of the real-data tests.
#![allow(dead_code)]

use std::sync::OnceLock;

/// The benchmark data (see `nxt_sandbox::test_support::data_dir`).
pub fn data_dir() -> Option<std::path::PathBuf> {
    nxt_sandbox::test_support::data_dir(env!("CARGO_MANIFEST_DIR"), &["mbpp/mbpp.jsonl"])
}

/// One sandbox pool per test binary (weak isolation accepted: CI containers may lack layers).
pub fn pool() -> &'static nxt_sandbox::Pool {
    static POOL: OnceLock<nxt_sandbox::Pool> = OnceLock::new();
    POOL.get_or_init(|| nxt_data::default_pool(true).expect("sandbox pool"))
}
