//! Run directories: the name `nxt eval` gives a run when no `--run-dir` is given
//! (`runs/<benchmark>-<model>-<trace|no-trace>`), and creating one. Self-training runs are
//! named by `nxt_selftrain::default_run_dir` under the same [`RUNS`] directory.

use std::path::{Path, PathBuf};

use nxt_data::Benchmark;

use crate::repair::CoreError;

/// The directory, relative to the working directory, that default run directories go in.
pub const RUNS: &str = "runs";

/// A model spec shortened to one file-name component: the last path component of a model
/// directory or hub id (`Qwen/Qwen2.5-Coder-0.5B-Instruct` -> `Qwen2.5-Coder-0.5B-Instruct`),
/// or everything after the scheme of a server URL; characters other than alphanumerics, `.`
/// and `-` become `_`.
pub fn slug(spec: &str) -> String {
    let s = spec.trim_end_matches('/');
    let last = if s.contains("://") {
        s.split("://").nth(1).unwrap_or(s)
    } else {
        s.rsplit('/').next().unwrap_or(s)
    };
    last.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The default run directory of an evaluation of `model` (with the PEFT `adapter` merged
/// into it, if any) on `benchmark`: `runs/<benchmark>-<model>[+<adapter>]-<trace|no-trace>`,
/// the benchmark's `+` written `plus` (`runs/hefixplus-Qwen2.5-Coder-0.5B-Instruct-trace`).
pub fn eval_run_dir(
    benchmark: Benchmark,
    model: &str,
    adapter: Option<&Path>,
    with_trace: bool,
) -> PathBuf {
    let model = match adapter {
        Some(a) => format!("{}+{}", slug(model), slug(&a.display().to_string())),
        None => slug(model),
    };
    PathBuf::from(RUNS).join(format!(
        "{}-{model}-{}",
        benchmark.name().replace('+', "plus"),
        if with_trace { "trace" } else { "no-trace" }
    ))
}

/// Create the run directory `dir` and its parents (nothing happens when it exists).
pub fn create(dir: &Path) -> Result<(), CoreError> {
    std::fs::create_dir_all(dir).map_err(|source| CoreError::Io {
        path: dir.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_the_last_component_of_a_directory_or_hub_id() {
        assert_eq!(
            slug("Qwen/Qwen2.5-Coder-0.5B-Instruct"),
            "Qwen2.5-Coder-0.5B-Instruct"
        );
        assert_eq!(slug("./models/tiny model/"), "tiny_model");
        assert_eq!(slug("http://localhost:8000/v1"), "localhost_8000_v1");
    }

    #[test]
    fn eval_run_dirs_name_benchmark_model_adapter_and_trace() {
        assert_eq!(
            eval_run_dir(
                Benchmark::HefixPlus,
                "Qwen/Qwen2.5-Coder-0.5B-Instruct",
                None,
                true
            ),
            Path::new("runs/hefixplus-Qwen2.5-Coder-0.5B-Instruct-trace")
        );
        assert_eq!(
            eval_run_dir(
                Benchmark::MbppR,
                "./Qwen2.5-Coder-0.5B-Instruct",
                Some(Path::new("runs/sft")),
                false
            ),
            Path::new("runs/mbpp-r-Qwen2.5-Coder-0.5B-Instruct+sft-no-trace")
        );
    }

    #[test]
    fn create_makes_parents_and_accepts_an_existing_directory() {
        let root = std::env::temp_dir().join(format!("nxt-core-run-dir-{}", std::process::id()));
        let dir = root.join("runs/a-b-trace");
        create(&dir).unwrap();
        create(&dir).unwrap();
        assert!(dir.is_dir());
        let file = root.join("file");
        std::fs::write(&file, b"").unwrap();
        let err = create(&file.join("sub")).unwrap_err();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(matches!(err, CoreError::Io { path, .. } if path.ends_with("file/sub")));
    }
}
