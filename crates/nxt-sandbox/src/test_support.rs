//! The resource switch of the workspace's test suites.
//!
//! Tests that need something the machine may lack (the benchmark data, a sandbox that can
//! start, extra CPython versions) skip with a message where it is missing. Under
//! `NXT_REQUIRE_RESOURCES` such a skip is a failure instead, so that CI cannot go green
//! without running them: `NXT_REQUIRE_RESOURCES=1` (or `all`) requires every resource, a
//! comma-separated list (`data,sandbox`) the ones named. Resources: [`DATA`], [`SANDBOX`],
//! [`PYTHON_VERSIONS`]. `.ci/run` sets `NXT_REQUIRE_RESOURCES=data,sandbox`.

/// The environment variable of the switch.
pub const REQUIRE_ENV: &str = "NXT_REQUIRE_RESOURCES";
/// The benchmark data directory (`NXT_DATA_DIR`, or `../shared/data`).
pub const DATA: &str = "data";
/// A sandbox pool that starts.
pub const SANDBOX: &str = "sandbox";
/// CPython versions besides the default one (the tracer's multi-version goldens).
pub const PYTHON_VERSIONS: &str = "python-versions";

/// The benchmark data of the workspace's tests: `NXT_DATA_DIR`, else `shared/data` beside the
/// checkout (`manifest_dir` is the calling crate's `CARGO_MANIFEST_DIR`, two levels below the
/// workspace root), when every path of `needs` exists in it; otherwise a [`skip`] of [`DATA`]
/// (a failure where it is required) and `None`.
pub fn data_dir(manifest_dir: &str, needs: &[&str]) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("NXT_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(manifest_dir).join("../../../shared/data"));
    match needs.iter().find(|n| !dir.join(n).exists()) {
        None if dir.is_dir() => Some(dir),
        missing => {
            let what = missing.map(|m| format!(" (no {m})")).unwrap_or_default();
            skip(
                DATA,
                &format!("NXT_DATA_DIR {} not found{what}", dir.display()),
            );
            None
        }
    }
}

/// Whether `resource` is required by [`REQUIRE_ENV`].
pub fn required(resource: &str) -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| {
        v.split(',').map(str::trim).any(|p| {
            p == resource
                || p == "1"
                || p.eq_ignore_ascii_case("all")
                || p.eq_ignore_ascii_case("true")
        })
    })
}

/// Reports a test skipped because `resource` is missing (`why`), or panics (fails the test)
/// when the switch requires that resource.
pub fn skip(resource: &str, why: &str) {
    if required(resource) {
        panic!("{REQUIRE_ENV} requires `{resource}`, but it is unavailable: {why}");
    }
    eprintln!("skipped: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_names_resources() {
        // Only this test touches the variables in this binary's unit tests.
        std::env::set_var(REQUIRE_ENV, "data, sandbox");
        assert!(required(DATA) && required(SANDBOX) && !required(PYTHON_VERSIONS));
        assert!(std::panic::catch_unwind(|| skip(DATA, "no data")).is_err());
        skip(PYTHON_VERSIONS, "no extra CPython");
        std::env::set_var(REQUIRE_ENV, "1");
        assert!(required(PYTHON_VERSIONS));
        std::env::remove_var(REQUIRE_ENV);
        assert!(!required(DATA));
        skip(DATA, "no data");
        // The data directory: present with what a test needs, or a skip naming what is missing.
        let d = std::env::temp_dir().join(format!("nxt-test-support-{}", std::process::id()));
        std::fs::create_dir_all(d.join("mbpp")).unwrap();
        let before = std::env::var_os("NXT_DATA_DIR");
        std::env::set_var("NXT_DATA_DIR", &d);
        assert_eq!(data_dir("unused", &["mbpp"]), Some(d.clone()));
        assert_eq!(data_dir("unused", &["mbpp", "humanevalfix"]), None);
        std::env::set_var(REQUIRE_ENV, "data");
        assert!(std::panic::catch_unwind(|| data_dir("unused", &["humanevalfix"])).is_err());
        std::env::remove_var(REQUIRE_ENV);
        match before {
            Some(v) => std::env::set_var("NXT_DATA_DIR", v),
            None => std::env::remove_var("NXT_DATA_DIR"),
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
