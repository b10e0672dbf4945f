//! `nxt-core`: trace-augmented program repair (NExT) on top of the sandbox (`nxt-sandbox`),
//! the tracer (`nxt-trace`), the datasets (`nxt-data`) and the generators (`nxt-llm`, on
//! `nxt-engine`'s model for the embedded one).
//!
//! * [`prompt`]: the NExT prompt (few-/zero-shot, with/without trace, chat/completion) and the
//!   proxy prompt; [`exemplars`]: the three worked few-shot exemplars.
//! * [`parse`]: completion → (rationale, fixed program); [`pysource`]: Python source split
//!   into top-level statements by a tokenizer (tests files, completions).
//! * [`repair`]: one repair: failing test → trace → prompt → generate → parse → grade.
//! * [`config`]: [`EvalConfig`], the settings an evaluation and its report share.
//! * [`eval`]: `n` samples per task, greedy, proxy; resumable through [`store`], the SQLite run
//!   store; [`report`]: pass@k, unparseable rate, token usage as text / JSON / markdown.
//! * [`candidates`]: sampling candidate programs for building MBPP-R.
//! * [`run_dir`]: the default run directory of an evaluation (`runs/...`) and creating it.

pub mod candidates;
pub mod config;
pub mod eval;
pub mod exemplars;
pub mod parse;
pub mod prompt;
pub mod pysource;
pub mod repair;
pub mod report;
pub mod run_dir;
pub mod store;
pub mod task;

pub use config::EvalConfig;
pub use eval::{run_eval, EvalContext, Progress};
pub use repair::{repair_task, CoreError, RepairConfig, RepairOutcome};
pub use report::EvalReport;
pub use store::RunStore;
