//! Shared helpers of the real-data tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// `NXT_DATA_DIR`, else `<workspace root>/../shared/data`; `None` (with a message) if absent.
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("NXT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join("mbpp/mbpp.jsonl").is_file() {
        Some(dir)
    } else {
        nxt_sandbox::test_support::skip(
            nxt_sandbox::test_support::DATA,
            &format!("NXT_DATA_DIR ({}) not found", dir.display()),
        );
        None
    }
}

/// One sandbox pool per test binary (weak isolation accepted: CI containers may lack layers).
pub fn pool() -> &'static nxt_sandbox::Pool {
    static POOL: OnceLock<nxt_sandbox::Pool> = OnceLock::new();
    POOL.get_or_init(|| nxt_data::default_pool(true).expect("sandbox pool"))
}
