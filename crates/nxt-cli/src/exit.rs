//! Exit statuses of `nxt`, one meaning each, for every command (README section "Exit codes"):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the work ran and its result is negative: tests failed (`exec`, `trace` of a test with a syntax error), a run is incomplete because samples could not be generated (`eval`, `generate`), the isolation is incomplete (`exec --isolation-report`) |
//! | 2 | the work could not be done: the executor, the sandbox, a server, a model or the file system failed |
//! | 64 | usage error: bad or conflicting command-line arguments, a rerun whose settings differ from the stored run's |
//! | 65 | input error: an input file that cannot be read, is not UTF-8 text or is malformed (a config, a prompts or jobs file, a run directory that holds no run), a dataset missing from the data directory or failing its sha256 pin, an unknown task id, prompts that do not fit the model |
//! | 141 | stdout was closed early (`nxt ... \| head`) |
//!
//! Errors are printed as one `error:` line with their causes, never with a backtrace (panics,
//! which are bugs, keep theirs).

use std::fmt;

/// The work ran and its result is negative.
pub const FAILED: i32 = 1;
/// The work could not be done.
pub const RUNTIME: i32 = 2;
/// Bad command-line arguments (the BSD `EX_USAGE`).
pub const USAGE: i32 = 64;
/// Bad input data (the BSD `EX_DATAERR`).
pub const INPUT: i32 = 65;

/// An error that carries its exit status.
#[derive(Debug)]
pub struct Exit {
    /// The exit status.
    pub code: i32,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// A usage error (exit 64).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: USAGE,
        message: message.into(),
    })
}

/// An input error (exit 65).
pub fn input(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: INPUT,
        message: message.into(),
    })
}

/// A negative result (exit 1).
pub fn failed(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: FAILED,
        message: message.into(),
    })
}

/// The exit status of an error: the first [`Exit`] in its chain, else the kind of a known
/// library error, else [`RUNTIME`].
pub fn code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<nxt_core::store::StoreError>() {
            if matches!(e, nxt_core::store::StoreError::ConfigMismatch { .. }) {
                return USAGE;
            }
        }
        if let Some(e) = cause.downcast_ref::<nxt_core::CoreError>() {
            match e {
                nxt_core::CoreError::PromptsTooLong(_) => return INPUT,
                nxt_core::CoreError::Invalid(_) => return USAGE,
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<nxt_data::DataError>() {
            match e {
                nxt_data::DataError::UnknownDataset(..) | nxt_data::DataError::BadTaskId(_) => {
                    return USAGE
                }
                nxt_data::DataError::Malformed { .. }
                | nxt_data::DataError::UnknownTask { .. }
                | nxt_data::DataError::Missing { .. }
                | nxt_data::DataError::Checksum { .. } => return INPUT,
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<nxt_selftrain::SelftrainError>() {
            match e {
                nxt_selftrain::SelftrainError::Config { .. } => return INPUT,
                nxt_selftrain::SelftrainError::ConfigChanged { .. } => return USAGE,
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<nxt_report::ReportError>() {
            if matches!(
                e,
                nxt_report::ReportError::NotARun { .. } | nxt_report::ReportError::Json { .. }
            ) {
                return INPUT;
            }
        }
    }
    RUNTIME
}

/// One line: the error and its causes, `a: b: c` (causes already contained in the text
/// before them are left out).
pub fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_chain() {
        assert_eq!(code_of(&usage("x")), USAGE);
        assert_eq!(code_of(&input("x").context("reading y")), INPUT);
        assert_eq!(code_of(&anyhow::anyhow!("boom")), RUNTIME);
        let e: anyhow::Error = nxt_core::CoreError::PromptsTooLong("long".into()).into();
        assert_eq!(code_of(&e), INPUT);
        let e = anyhow::Error::new(nxt_data::DataError::UnknownDataset("q".into(), "a".into()))
            .context("loading");
        assert_eq!(code_of(&e), USAGE);
        let e = anyhow::Error::new(nxt_data::DataError::Missing {
            name: "mbpp".into(),
            path: "/d/mbpp/mbpp.jsonl".into(),
            hint: "fetch it".into(),
        });
        assert_eq!(code_of(&e), INPUT);
        let e: anyhow::Error = nxt_selftrain::SelftrainError::Config {
            key: "sampling.n".into(),
            message: "must be at least 1".into(),
        }
        .into();
        assert_eq!(code_of(&e), INPUT);
        let e: anyhow::Error = nxt_selftrain::SelftrainError::ConfigChanged {
            key: "seed".into(),
            old: "0".into(),
            new: "1".into(),
        }
        .into();
        assert_eq!(code_of(&e), USAGE);
        let e: anyhow::Error = nxt_report::ReportError::NotARun { path: "/x".into() }.into();
        assert_eq!(code_of(&e), INPUT);
    }

    #[test]
    fn causes_are_joined_once() {
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&e), "outer: inner");
        let e = anyhow::anyhow!("inner").context("outer: inner");
        assert_eq!(describe(&e), "outer: inner");
    }
}
