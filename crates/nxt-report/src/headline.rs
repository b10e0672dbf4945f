//! The headline table, in the layout of the NExT paper's Table 2: one row per metric (pass@k,
//! greedy pass@1, proxy pass@1), columns per benchmark and prompt (with / without trace), the
//! base model, the run and the paired delta. The HTML page and the terminal summary are both
//! rendered from this one table, so they always agree.

use std::fmt::Write as _;

use crate::run::{EvalView, LoadedRun, Metric, Run, Value95, KS};
use crate::stats::{RESAMPLES, SEED};

type TestMap = std::collections::BTreeMap<String, (Option<EvalView>, Option<EvalView>)>;

/// One column of the headline table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The group it belongs to (benchmark and prompt).
    pub group: String,
    /// Its label within the group (`base`, `iter 2`, `Δ`).
    pub label: String,
    /// A delta column.
    pub delta: bool,
}

/// One row: a metric, a cell per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The metric.
    pub metric: Metric,
    /// Cells, one per column (None: not measured).
    pub cells: Vec<Option<Value95>>,
}

/// The headline table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headline {
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows.
    pub rows: Vec<Row>,
    /// Notes (what the deltas are against, what is missing).
    pub notes: Vec<String>,
}

/// A group of columns: a reference evaluation and the ones compared with it.
struct Group<'a> {
    name: String,
    members: Vec<(String, &'a EvalView)>,
}

/// Build the headline table of `run` (and the runs compared with it).
pub fn headline(run: &LoadedRun, compare: &[LoadedRun]) -> Headline {
    let mut notes = Vec::new();
    let mut gs: Vec<Group<'_>> = Vec::new();
    let dirs: Vec<&std::path::Path> = std::iter::once(run)
        .chain(compare)
        .map(|r| r.dir.as_path())
        .collect();
    let names = crate::run::run_names(&dirs);
    match &run.run {
        Run::Eval(e) => {
            let mut members = vec![(names[0].clone(), e.as_ref())];
            for (c, name) in compare.iter().zip(&names[1..]) {
                match c.primary() {
                    Some(p) => members.push((p.label_for_compare(c, name), p)),
                    None => notes.push(format!(
                        "{}: no evaluation to compare with",
                        c.dir.display()
                    )),
                }
            }
            if members.len() > 1 {
                notes.push(format!(
                    "Δ columns: difference to {} (the first run), paired bootstrap over the tasks both ran.",
                    names[0]
                ));
            }
            gs.push(Group {
                name: e.describe(),
                members,
            });
        }
        Run::Selftrain(s) => {
            let best = s.best();
            let best_label = match best {
                Some(0) => "base (chosen)".to_string(),
                Some(b) => format!("iter {b}"),
                None => "best".to_string(),
            };
            let best_dev = best.filter(|b| *b > 0).and_then(|b| s.dev_of(b));
            if let Some(base) = &s.base_dev {
                let mut members = vec![("base".to_string(), base)];
                if let Some(d) = best_dev {
                    members.push((best_label.clone(), d));
                }
                gs.push(Group {
                    name: format!("dev: {}", base.describe()),
                    members,
                });
            } else if let Some(d) = best_dev {
                gs.push(Group {
                    name: format!("dev: {}", d.describe()),
                    members: vec![(best_label.clone(), d)],
                });
            }
            let benches: std::collections::BTreeSet<&String> =
                s.test_base.keys().chain(s.test_best.keys()).collect();
            for bench in benches {
                for (i, prompt) in ["trace", "no trace"].iter().enumerate() {
                    fn pick<'v>(m: &'v TestMap, bench: &str, i: usize) -> Option<&'v EvalView> {
                        m.get(bench)
                            .and_then(|(a, b)| if i == 0 { a.as_ref() } else { b.as_ref() })
                    }
                    let mut members = Vec::new();
                    if let Some(b) = pick(&s.test_base, bench, i) {
                        members.push(("base".to_string(), b));
                    }
                    if let Some(b) = pick(&s.test_best, bench, i) {
                        members.push((best_label.clone(), b));
                    }
                    if !members.is_empty() {
                        gs.push(Group {
                            name: format!("test: {bench}, {prompt}"),
                            members,
                        });
                    }
                }
            }
            for (c, name) in compare.iter().zip(&names[1..]) {
                if let Some(p) = c.primary() {
                    gs.push(Group {
                        name: format!("compared: {}", p.describe()),
                        members: vec![(p.label_for_compare(c, name), p)],
                    });
                }
            }
            notes.push(
                "Δ: the chosen iteration minus the base model, paired bootstrap over the tasks both ran."
                    .into(),
            );
        }
    }
    let mut columns = Vec::new();
    let mut col_evals: Vec<(Option<&EvalView>, &EvalView)> = Vec::new();
    for g in &gs {
        let reference = g.members[0].1;
        for (i, (label, e)) in g.members.iter().enumerate() {
            columns.push(Column {
                group: g.name.clone(),
                label: label.clone(),
                delta: false,
            });
            col_evals.push((None, e));
            if i > 0 {
                columns.push(Column {
                    group: g.name.clone(),
                    label: format!("Δ {label}"),
                    delta: true,
                });
                col_evals.push((Some(reference), e));
            }
        }
    }
    let mut metrics: Vec<Metric> = KS
        .iter()
        .map(|k| Metric::PassAt(*k))
        .filter(|m| col_evals.iter().any(|(_, e)| e.metric(*m).is_some()))
        .collect();
    metrics.push(Metric::Greedy);
    metrics.push(Metric::ProxyPassAt(1));
    let rows = metrics
        .into_iter()
        .map(|m| Row {
            metric: m,
            cells: col_evals
                .iter()
                .map(|(reference, e)| match reference {
                    None => e.metric(m),
                    Some(r) => r.delta(e, m),
                })
                .collect(),
        })
        .collect();
    notes.push(format!(
        "Intervals: 95% percentile bootstrap over tasks, {RESAMPLES} resamples, seed {SEED:#x}; pass@k per task by the unbiased estimator."
    ));
    if gs.is_empty() {
        notes.push("No evaluation has finished yet: the table is empty.".into());
    }
    Headline {
        columns,
        rows,
        notes,
    }
}

impl EvalView {
    /// The label of a compared run's evaluation: the run's name (see
    /// [`crate::run::run_names`]) and, for a self-training run, which evaluation stands for it.
    pub fn label_for_compare(&self, run: &LoadedRun, name: &str) -> String {
        let dir = name.to_string();
        let own = run
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if matches!(run.run, Run::Eval(_)) || own == self.label {
            dir
        } else {
            format!("{dir}: {}", self.label)
        }
    }
}

/// A percentage with one decimal (`42.5`); a delta gets its sign.
pub fn pct(v: f64, signed: bool) -> String {
    if signed {
        format!("{:+.1}", 100.0 * v)
    } else {
        format!("{:.1}", 100.0 * v)
    }
}

/// A cell as text: `42.5 [38.1, 47.0]`.
pub fn cell_text(c: &Value95, delta: bool) -> String {
    match c.ci {
        Some((lo, hi)) => format!(
            "{} [{}, {}]",
            pct(c.value, delta),
            pct(lo, delta),
            pct(hi, delta)
        ),
        None => pct(c.value, delta),
    }
}

/// The headline numbers as a plain-text table for the terminal (the page shows the same
/// numbers): percentages with 95% bootstrap intervals.
pub fn summary_table(run: &LoadedRun, compare: &[LoadedRun]) -> String {
    let h = headline(run, compare);
    let mut out = String::new();
    let _ = writeln!(out, "{} run {}", run.kind(), run.dir.display());
    if h.columns.is_empty() {
        let _ = writeln!(out, "  no evaluation finished yet");
        return out;
    }
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["metric (%)".to_string()];
    head.extend(h.columns.iter().map(|c| c.label.clone()));
    table.push(head);
    for r in &h.rows {
        if r.cells.iter().all(|c| c.is_none()) {
            continue;
        }
        let mut line = vec![r.metric.name()];
        for (c, col) in r.cells.iter().zip(&h.columns) {
            line.push(
                c.as_ref()
                    .map(|v| cell_text(v, col.delta))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        table.push(line);
    }
    let mut widths: Vec<usize> = (0..table[0].len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // A group's name must fit over its columns: widen its last column when it does not.
    let mut i = 0;
    while i < h.columns.len() {
        let g = &h.columns[i].group;
        let span = h.columns[i..].iter().take_while(|c| &c.group == g).count();
        let w: usize = (i..i + span).map(|j| widths[j + 1] + 2).sum::<usize>() - 2;
        let need = g.chars().count();
        if need > w {
            widths[i + span] += need - w;
        }
        i += span;
    }
    // Group header line.
    let mut groups_line = format!("{:w$}", "", w = widths[0]);
    let mut i = 0;
    while i < h.columns.len() {
        let g = &h.columns[i].group;
        let mut j = i;
        let mut w = 0;
        while j < h.columns.len() && &h.columns[j].group == g {
            w += widths[j + 1] + 2;
            j += 1;
        }
        let name: String = g.chars().take(w.saturating_sub(2)).collect();
        let _ = write!(groups_line, "  {name:w$}", w = w - 2);
        i = j;
    }
    let _ = writeln!(out, "{}", groups_line.trim_end());
    for row in &table {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == 0 {
                let _ = write!(line, "{cell:<w$}", w = widths[0]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for n in &h.notes {
        let _ = writeln!(out, "{n}");
    }
    out
}
