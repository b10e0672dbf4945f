//! `nxt-report`: one self-contained HTML page per run (`nxt report`), with inline SVG plots,
//! tables and collapsible examples; no JavaScript, no external resources, so it opens offline.
//!
//! * [`run`]: loading a run directory, an `nxt eval` run (its SQLite run store is the source of
//!   truth) or an `nxt selftrain` run (its `results.json` and the eval stores and training
//!   metrics it points to). Missing parts become notes on the page, never a failure.
//! * [`stats`]: bootstrap intervals over problems (paired for deltas), seeded.
//! * [`headline`]: the Table-2-style headline table and the terminal summary
//!   ([`summary_table`]), both from the same numbers.
//! * [`plots`]: `plotters` SVG charts in the Okabe-Ito palette; [`page`]: the sections.
//! * [`tensorboard`]: TensorBoard event files of the run's scalars (`--tensorboard DIR`).
//!
//! Everything that comes from data (task ids, model output, file names) is HTML-escaped.

use std::path::{Path, PathBuf};

pub mod headline;
pub mod html;
pub mod model;
pub mod page;
pub mod plots;
pub mod run;
pub mod stats;
pub mod store;
pub mod tensorboard;

pub use headline::summary_table;
pub use run::{load_run, LoadedRun};

/// Report failures.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The directory holds neither an eval run nor a self-training run.
    #[error("{path}: not a run directory (no results.json and no run.sqlite)")]
    NotARun {
        /// The directory.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and column).
        message: String,
    },
    /// SQLite failure.
    #[error("run store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored record could not be decoded.
    #[error("run store {path}: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
    /// A TensorBoard event file is malformed.
    #[error("event file: {0}")]
    EventFile(String),
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The HTML file.
    pub out: PathBuf,
    /// `eval` or `selftrain`.
    pub kind: &'static str,
    /// Inline SVG plots on the page.
    pub plots: usize,
    /// Section ids, in page order.
    pub sections: Vec<String>,
    /// What the page reports as missing.
    pub missing: Vec<String>,
    /// The terminal summary (the page's headline numbers).
    pub summary: String,
}

/// Render the report of `run_dir` (compared with the runs in `compare`) as an HTML string.
pub fn render_report(
    run_dir: &Path,
    compare: &[PathBuf],
) -> Result<(String, ReportSummary), ReportError> {
    let run = load_run(run_dir)?;
    let others = compare
        .iter()
        .map(|c| load_run(c))
        .collect::<Result<Vec<_>, _>>()?;
    let rendered = page::render(&run, &others)?;
    let summary = ReportSummary {
        out: PathBuf::new(),
        kind: run.kind(),
        plots: rendered.plots,
        sections: rendered.sections,
        missing: rendered.missing,
        summary: summary_table(&run, &others),
    };
    Ok((rendered.html, summary))
}

/// Write the report of `run_dir` to `out` (written to a temporary file beside it, then
/// renamed, so a reader never sees half a page).
pub fn write_report(
    run_dir: &Path,
    compare: &[PathBuf],
    out: &Path,
) -> Result<ReportSummary, ReportError> {
    let (html, mut summary) = render_report(run_dir, compare)?;
    let io = |path: &Path, source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let tmp = out.with_extension(format!("html.tmp{}", std::process::id()));
    std::fs::write(&tmp, html).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| io(out, e))?;
    summary.out = out.to_path_buf();
    Ok(summary)
}
