//! The report page: sections built from a loaded run, each with its plots, tables and notes
//! of what is missing.

use nxt_core::report::FaithfulnessRates;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::headline::{cell_text, headline, Headline};
use crate::html::{clip, esc, figure, missing, pre, table, CSS};
use crate::plots::{
    bar_chart, box_chart, color, line_chart, BarChart, BoxChart, BoxRow, LineChart, Series, GREY,
};
use crate::run::{EvalView, IterView, LoadedRun, Metric, Run, SelftrainView, Value95};
use crate::store::{trace_block, ContradictedClaim, LengthUnit, SampleRecord, StoreData};
use crate::ReportError;

/// The rendered page and what it holds.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The HTML document.
    pub html: String,
    /// Plots (inline SVG) on the page.
    pub plots: usize,
    /// Section ids, in order.
    pub sections: Vec<String>,
    /// Everything the page reports as missing.
    pub missing: Vec<String>,
}

struct Page {
    sections: Vec<(String, String, String)>,
    plots: usize,
}

impl Page {
    fn plot(&mut self, svg: String, caption: &str) -> String {
        self.plots += 1;
        figure(&svg, caption)
    }
}

const EXAMPLES_PER_KIND: usize = 3;
const TEXT_MAX: usize = 6000;

fn cell_html(c: Option<&Value95>, delta: bool) -> String {
    match c {
        None => "<td class=\"na\">-</td>".into(),
        Some(v) => {
            let class = if delta {
                if v.ci.is_some_and(|(lo, _)| lo > 0.0) {
                    "delta pos"
                } else if v.ci.is_some_and(|(_, hi)| hi < 0.0) {
                    "delta neg"
                } else {
                    "delta"
                }
            } else {
                ""
            };
            let text = cell_text(v, delta);
            let (main, ci) = match text.split_once(' ') {
                Some((m, c)) => (
                    m.to_string(),
                    format!(" <span class=\"ci\">{}</span>", esc(c)),
                ),
                None => (text, String::new()),
            };
            format!("<td class=\"{class}\">{}{ci}</td>", esc(&main))
        }
    }
}

fn headline_html(h: &Headline) -> String {
    let mut s = String::from("<div class=\"wide\"><table class=\"num headline\"><thead><tr><th rowspan=\"2\">metric (%)</th>");
    let mut i = 0;
    while i < h.columns.len() {
        let g = &h.columns[i].group;
        let span = h.columns[i..].iter().take_while(|c| &c.group == g).count();
        let _ = write!(s, "<th class=\"group\" colspan=\"{span}\">{}</th>", esc(g));
        i += span;
    }
    s.push_str("</tr><tr>");
    for c in &h.columns {
        let _ = write!(s, "<th>{}</th>", esc(&c.label));
    }
    s.push_str("</tr></thead><tbody>");
    for r in &h.rows {
        let _ = write!(s, "<tr><td>{}</td>", esc(&r.metric.name()));
        for (c, col) in r.cells.iter().zip(&h.columns) {
            s.push_str(&cell_html(c.as_ref(), col.delta));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    for n in &h.notes {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    s
}

/// A plotted point (x, y%) with its error bar (x, lo%, hi%).
type PlotPoint = ((f64, f64), Option<(f64, f64, f64)>);

fn pct_points(v: &EvalView, m: Metric, x: f64) -> Option<PlotPoint> {
    let val = v.metric(m)?;
    Some((
        (x, 100.0 * val.value),
        val.ci.map(|(lo, hi)| (x, 100.0 * lo, 100.0 * hi)),
    ))
}

fn series_of(name: &str, col: usize, pts: Vec<PlotPoint>) -> Series {
    let mut s = Series::new(name, color(col), pts.iter().map(|p| p.0).collect());
    s.errors = pts.iter().filter_map(|p| p.1).collect();
    s
}

fn y_range_pct(series: &[Series]) -> (f64, f64) {
    let hi = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.errors.iter().map(|e| e.2))
        })
        .fold(0.0f64, f64::max);
    (0.0, (hi * 1.2).clamp(5.0, 100.0))
}

/// pass@k curve of several evaluations (k on a log axis), with bootstrap intervals.
fn passk_chart(title: &str, evals: &[(String, &EvalView)]) -> Result<Option<String>, ReportError> {
    let mut c = LineChart::new(title, "k (samples drawn, log scale)", "pass@k (%)");
    c.log_x = true;
    for (i, (name, e)) in evals.iter().enumerate() {
        let pts: Vec<_> = e
            .ks()
            .into_iter()
            .filter_map(|k| pct_points(e, Metric::PassAt(k), k as f64))
            .collect();
        if !pts.is_empty() {
            c.series.push(series_of(name, i, pts));
        }
    }
    if c.series.is_empty() {
        return Ok(None);
    }
    c.y_range = Some(y_range_pct(&c.series));
    line_chart(&c).map(Some)
}

fn coverage(base: &EvalView, other: &EvalView) -> Option<[f64; 4]> {
    let a = base.solved();
    let b = other.solved();
    let mut counts = [0.0; 4];
    let mut any = false;
    for (id, sa) in &a {
        let Some(sb) = b.get(id) else { continue };
        any = true;
        let i = match (sa, sb) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        counts[i] += 1.0;
    }
    any.then_some(counts)
}

fn coverage_chart(rows: &[(String, [f64; 4])], base_name: &str) -> Result<String, ReportError> {
    let names = [
        "solved by both".to_string(),
        format!("only by {base_name}"),
        "only by this one".to_string(),
        "by neither".to_string(),
    ];
    let cols = [color(2), color(3), color(0), RGB_LIGHT];
    bar_chart(&BarChart {
        title: format!("Coverage against {base_name} (solved = at least one passing sample)"),
        categories: rows.iter().map(|r| r.0.clone()).collect(),
        category_label: String::new(),
        value_label: "tasks".into(),
        groups: (0..4)
            .map(|g| {
                (
                    names[g].clone(),
                    cols[g],
                    rows.iter().map(|r| r.1[g]).collect(),
                )
            })
            .collect(),
        horizontal: true,
        stacked: true,
        value_labels: true,
        width: 860,
        integer_values: true,
    })
}

const RGB_LIGHT: plotters::style::RGBColor = plotters::style::RGBColor(0xc8, 0xc8, 0xc8);

fn coverage_table(rows: &[(String, [f64; 4])], base_name: &str) -> String {
    table(
        &[
            "evaluation".into(),
            "both".into(),
            format!("only {}", esc(base_name)),
            "only this one".into(),
            "neither".into(),
        ],
        &rows
            .iter()
            .map(|(n, c)| {
                let mut r = vec![esc(n)];
                r.extend(c.iter().map(|v| format!("{v}")));
                r
            })
            .collect::<Vec<_>>(),
        "num",
    )
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| esc(&v.to_string())).unwrap_or_else(|| "-".into())
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}", 100.0 * v))
        .unwrap_or_else(|| "-".into())
}

fn metric_cell(e: Option<&EvalView>, m: Metric) -> String {
    e.and_then(|e| e.metric(m))
        .map(|v| esc(&cell_text(&v, false)))
        .unwrap_or_else(|| "-".into())
}

fn sampled_from_x(it: &IterView, pos: usize) -> f64 {
    match it.it.sampled_from.as_deref() {
        Some("base") => 0.0,
        Some(s) => s
            .trim_start_matches("iter-")
            .trim_start_matches("iter ")
            .parse::<f64>()
            .unwrap_or(pos as f64),
        None => pos as f64,
    }
}

/// Legend of the dev-without-trace series in the fix-rate-per-iteration plot.
pub const DEV_NO_TRACE_SERIES: &str = "dev pass@1 without trace (sampled)";
/// Header of the iterations table's dev-without-trace pass@1 column.
pub const DEV_NO_TRACE_COLUMN: &str = "dev pass@1, no trace (%)";
/// Header of the iterations table's column of what the trace adds to dev pass@1.
pub const DEV_TRACE_GAIN_COLUMN: &str = "Δ dev pass@1 trace vs no trace (paired)";

fn selftrain_sections(
    page: &mut Page,
    s: &SelftrainView,
    notes: &mut Vec<String>,
) -> Result<(), ReportError> {
    let best = s.best();
    // Fix rate per iteration.
    let mut body = String::new();
    let mut c = LineChart::new(
        "Fix rate per iteration",
        "iteration (0 = base model)",
        "fix rate (%)",
    );
    c.integer_x = true;
    let mut dev_pts = Vec::new();
    let mut greedy_pts = Vec::new();
    let mut no_trace_pts = Vec::new();
    if let Some(b) = &s.base_dev {
        dev_pts.extend(pct_points(b, Metric::PassAt(1), 0.0));
        greedy_pts.extend(pct_points(b, Metric::Greedy, 0.0));
    }
    if let Some(b) = &s.base_dev_no_trace {
        no_trace_pts.extend(pct_points(b, Metric::PassAt(1), 0.0));
    }
    let mut train_pts = Vec::new();
    for (pos, it) in s.iterations.iter().enumerate() {
        if let Some(d) = &it.dev {
            dev_pts.extend(pct_points(d, Metric::PassAt(1), it.number as f64));
            greedy_pts.extend(pct_points(d, Metric::Greedy, it.number as f64));
        }
        if let Some(d) = &it.dev_no_trace {
            no_trace_pts.extend(pct_points(d, Metric::PassAt(1), it.number as f64));
        }
        if let Some(p) = it.it.train_side.as_ref().and_then(|t| t.pass_at_1) {
            train_pts.push((sampled_from_x(it, pos), 100.0 * p));
        }
    }
    let max_x = s.iterations.iter().map(|i| i.number).max().unwrap_or(0) as f64;
    if let Some(v) = s
        .base_dev
        .as_ref()
        .and_then(|b| b.metric(Metric::PassAt(1)))
    {
        let mut line = Series::new(
            "base model, dev pass@1",
            GREY,
            (0..=max_x.max(1.0) as usize)
                .map(|x| (x as f64, 100.0 * v.value))
                .collect(),
        );
        line.dashed = true;
        line.markers = false;
        c.series.push(line);
    }
    if !dev_pts.is_empty() {
        c.series.push(series_of("dev pass@1 (sampled)", 0, dev_pts));
    }
    if !greedy_pts.is_empty() {
        c.series.push(series_of("dev greedy pass@1", 1, greedy_pts));
    }
    if !no_trace_pts.is_empty() {
        // After the test series' colours (3, 4, ...), so no two series share one.
        c.series.push(series_of(
            DEV_NO_TRACE_SERIES,
            3 + s.test_base.len().max(s.test_best.len()),
            no_trace_pts,
        ));
    }
    if !train_pts.is_empty() {
        let mut t = Series::new(
            "train-side pass@1 (sampling temperature, hard tasks)",
            color(2),
            train_pts,
        );
        t.markers = true;
        c.series.push(t);
    }
    for (bi, (bench, (base_t, _))) in s.test_base.iter().enumerate() {
        let mut pts = Vec::new();
        if let Some(b) = base_t {
            pts.extend(pct_points(b, Metric::PassAt(1), 0.0));
        }
        if let (Some(bn), Some((Some(t), _))) = (best, s.test_best.get(bench)) {
            pts.extend(pct_points(t, Metric::PassAt(1), bn as f64));
        }
        if !pts.is_empty() {
            c.series.push(series_of(
                &format!("test pass@1, {bench} (trace)"),
                3 + bi,
                pts,
            ));
        }
    }
    if c.series.is_empty() {
        body.push_str(&missing(
            "no evaluation finished: nothing to plot per iteration",
        ));
    } else {
        c.y_range = Some(y_range_pct(&c.series));
        c.x_range = Some((-0.3, max_x.max(1.0) + 0.3));
        c.size = (860, 440);
        let svg = line_chart(&c)?;
        let mut caption = String::from(
            "pass@1 per iteration with 95% bootstrap intervals over tasks. Train-side pass@1 is measured on the hard training tasks at the sampling temperature, by the model that sampled that iteration's data (plotted at that model's iteration). Test is measured for the base model and the chosen iteration only.",
        );
        if s.has_dev_no_trace() {
            caption.push_str(" Dev without trace: the same dev tasks and samples per task with no execution trace in the prompt (the chosen iteration is still picked on dev with the trace).");
        }
        body.push_str(&page.plot(svg, &caption));
    }
    // Per-iteration table; without-trace columns when the run evaluated dev without it.
    let no_trace = s.has_dev_no_trace();
    let no_trace_cells = |with: Option<&EvalView>, without: Option<&EvalView>| {
        let delta = match (with, without) {
            (Some(w), Some(wo)) => wo
                .delta(w, Metric::PassAt(1))
                .map(|v| esc(&cell_text(&v, true)))
                .unwrap_or_else(|| "-".into()),
            _ => "-".into(),
        };
        [metric_cell(without, Metric::PassAt(1)), delta]
    };
    let base_dev = s.base_dev.as_ref();
    let mut rows = Vec::new();
    if base_dev.is_some() || s.base_dev_no_trace.is_some() {
        let mut row = vec![
            "0 (base)".into(),
            "-".into(),
            opt_pct(s.results.hard.as_ref().and_then(|h| h.pass_at_1)),
            "-".into(),
            "-".into(),
            metric_cell(base_dev, Metric::PassAt(1)),
            metric_cell(base_dev, Metric::Greedy),
            "-".into(),
        ];
        if no_trace {
            row.extend(no_trace_cells(base_dev, s.base_dev_no_trace.as_ref()));
        }
        rows.push(row);
    }
    for it in &s.iterations {
        let delta = match (base_dev, &it.dev) {
            (Some(b), Some(d)) => b
                .delta(d, Metric::PassAt(1))
                .map(|v| esc(&cell_text(&v, true)))
                .unwrap_or_else(|| "-".into()),
            _ => "-".into(),
        };
        let mark = if best == Some(it.number) {
            " (chosen)"
        } else {
            ""
        };
        let mut row = vec![
            format!("{}{mark}", it.number),
            opt(it.it.sampled_from.as_deref()),
            opt_pct(it.it.train_side.as_ref().and_then(|t| t.pass_at_1)),
            opt(it.it.kept),
            opt(it
                .it
                .train
                .as_ref()
                .and_then(|t| t.final_loss)
                .or(it.it.train_loss)
                .map(|l| format!("{l:.4}"))),
            metric_cell(it.dev.as_ref(), Metric::PassAt(1)),
            metric_cell(it.dev.as_ref(), Metric::Greedy),
            delta,
        ];
        if no_trace {
            row.extend(no_trace_cells(it.dev.as_ref(), it.dev_no_trace.as_ref()));
        }
        rows.push(row);
    }
    let mut header: Vec<String> = vec![
        "iteration".into(),
        "sampled from".into(),
        "train-side pass@1 (%)".into(),
        "kept samples".into(),
        "final train loss".into(),
        "dev pass@1 (%)".into(),
        "dev greedy (%)".into(),
        "Δ dev pass@1 vs base (paired)".into(),
    ];
    if no_trace {
        header.push(DEV_NO_TRACE_COLUMN.into());
        header.push(DEV_TRACE_GAIN_COLUMN.into());
    }
    body.push_str(&table(&header, &rows, "num"));
    if let Some(h) = &s.results.hard {
        let _ = write!(
            body,
            "<p class=\"note\">Hard tasks: {} of {} training tasks had base pass@1 below {} (estimated from {} samples per task); base pass@1 on all training tasks {}%.</p>",
            opt(h.hard), opt(h.tasks), opt(h.threshold), opt(h.samples_per_task), opt_pct(h.pass_at_1)
        );
    } else {
        body.push_str(&missing("the hard-task filter record (hard)"));
        notes.push("the hard-task filter record (hard) is missing".into());
    }
    page.sections
        .push(("iterations".into(), "Self-training iterations".into(), body));

    // pass@k curves.
    let mut body = String::new();
    let mut evals: Vec<(String, &EvalView)> = Vec::new();
    if let Some(b) = &s.base_dev {
        evals.push(("base, dev".into(), b));
    }
    if let Some(bn) = best.filter(|b| *b > 0) {
        if let Some(d) = s.dev_of(bn) {
            evals.push((format!("iter {bn} (chosen), dev"), d));
        }
    }
    match passk_chart("pass@k on dev: base and chosen iteration", &evals)? {
        Some(svg) => body.push_str(&page.plot(
            svg,
            "Unbiased pass@k from n samples per task; 95% bootstrap intervals over tasks.",
        )),
        None => body.push_str(&missing(
            "no dev evaluation with per-task counts: no pass@k curve",
        )),
    }
    let benches: BTreeSet<&String> = s.test_base.keys().chain(s.test_best.keys()).collect();
    for bench in benches {
        let mut ev: Vec<(String, &EvalView)> = Vec::new();
        for (who, m) in [("base", &s.test_base), ("chosen", &s.test_best)] {
            if let Some((t, nt)) = m.get(bench) {
                if let Some(t) = t {
                    ev.push((format!("{who}, trace"), t));
                }
                if let Some(nt) = nt {
                    ev.push((format!("{who}, no trace"), nt));
                }
            }
        }
        if let Some(svg) = passk_chart(&format!("pass@k on test: {bench}"), &ev)? {
            body.push_str(&page.plot(
                svg,
                &format!("{bench}: with and without the trace in the prompt."),
            ));
        }
    }
    if s.test_base.is_empty() && s.test_best.is_empty() {
        body.push_str(&missing("no test evaluation yet"));
    }
    page.sections
        .push(("passk".into(), "pass@k curves".into(), body));

    // Funnel and kept-per-task histogram.
    let mut body = String::new();
    let with_funnel: Vec<&IterView> = s
        .iterations
        .iter()
        .filter(|i| i.it.funnel.is_some())
        .collect();
    if with_funnel.is_empty() {
        body.push_str(&missing("no iteration recorded its data funnel"));
    } else {
        let keep_rule = s
            .results
            .config
            .as_ref()
            .and_then(|c| c.pointer("/keep/keep"))
            .and_then(|k| k.as_str())
            .unwrap_or("passing");
        let faithful_filter = keep_rule == "passing-and-faithful";
        let stages = with_funnel[0]
            .it
            .funnel
            .clone()
            .unwrap_or_default()
            .stages(faithful_filter);
        let recorded: Vec<usize> = (0..stages.len())
            .filter(|&k| {
                with_funnel.iter().any(|i| {
                    i.it.funnel
                        .as_ref()
                        .is_some_and(|f| f.stages(faithful_filter)[k].1.is_some())
                })
            })
            .collect();
        let svg = bar_chart(&BarChart {
            title: "Training-data funnel per iteration".into(),
            categories: recorded.iter().map(|&k| stages[k].0.to_string()).collect(),
            category_label: String::new(),
            value_label: "tasks or samples (count)".into(),
            groups: with_funnel
                .iter()
                .map(|i| {
                    let f =
                        i.it.funnel
                            .clone()
                            .unwrap_or_default()
                            .stages(faithful_filter);
                    (
                        format!("iter {}", i.number),
                        color(i.number.saturating_sub(1)),
                        recorded
                            .iter()
                            .map(|&k| f[k].1.unwrap_or(0) as f64)
                            .collect(),
                    )
                })
                .collect(),
            horizontal: true,
            stacked: false,
            value_labels: true,
            width: 860,
            integer_values: true,
        })?;
        let caption = if faithful_filter {
            "Tasks attempted, tasks with at least one passing sample, then samples: passing, after the faithfulness filter (keep = \"passing-and-faithful\" drops passing samples whose rationale contradicts the trace), after deduplication, after the per-task cap."
        } else {
            "Tasks attempted, tasks with at least one passing sample, then samples: passing, after deduplication, after the per-task cap."
        };
        body.push_str(&page.plot(svg, caption));
        let mut header = vec!["stage".to_string()];
        header.extend(with_funnel.iter().map(|i| format!("iter {}", i.number)));
        let mut rows: Vec<Vec<String>> = (0..stages.len())
            .map(|k| {
                let mut r = vec![esc(stages[k].0)];
                r.extend(with_funnel.iter().map(|i| {
                    opt(i
                        .it
                        .funnel
                        .as_ref()
                        .and_then(|f| f.stages(faithful_filter)[k].1))
                }));
                r
            })
            .collect();
        if with_funnel
            .iter()
            .any(|i| i.it.funnel.as_ref().is_some_and(|f| f.unfaithful.is_some()))
        {
            let mut u = vec![if faithful_filter {
                "passing but unfaithful (dropped)".to_string()
            } else {
                esc(&format!(
                    "passing but unfaithful (kept: keep = \"{keep_rule}\")"
                ))
            }];
            u.extend(
                with_funnel
                    .iter()
                    .map(|i| opt(i.it.funnel.as_ref().and_then(|f| f.unfaithful))),
            );
            rows.insert(3, u);
        }
        let mut tok = vec!["training tokens".to_string()];
        tok.extend(
            with_funnel
                .iter()
                .map(|i| opt(i.it.funnel.as_ref().and_then(|f| f.training_tokens))),
        );
        rows.push(tok);
        let mut kept = vec!["kept for training".to_string()];
        kept.extend(with_funnel.iter().map(|i| opt(i.it.kept)));
        rows.push(kept);
        body.push_str(&table(&header, &rows, "num"));
    }
    let with_kept: Vec<&IterView> = s
        .iterations
        .iter()
        .filter(|i| !i.it.kept_per_task.is_empty())
        .collect();
    if with_kept.is_empty() {
        body.push_str(&missing(
            "no iteration recorded kept samples per task (kept_per_task)",
        ));
    } else {
        let max = with_kept
            .iter()
            .flat_map(|i| i.it.kept_per_task.values().copied())
            .max()
            .unwrap_or(1)
            .max(1);
        let svg = bar_chart(&BarChart {
            title: "Kept samples per task".into(),
            categories: (1..=max).map(|k| k.to_string()).collect(),
            category_label: "samples kept for the task (count)".into(),
            value_label: "tasks (count)".into(),
            groups: with_kept
                .iter()
                .map(|i| {
                    let mut hist = vec![0.0; max as usize];
                    for v in i.it.kept_per_task.values() {
                        if *v >= 1 {
                            hist[(*v - 1) as usize] += 1.0;
                        }
                    }
                    (
                        format!("iter {}", i.number),
                        color(i.number.saturating_sub(1)),
                        hist,
                    )
                })
                .collect(),
            horizontal: false,
            stacked: false,
            value_labels: max <= 12,
            width: 860,
            integer_values: true,
        })?;
        body.push_str(&page.plot(svg, "Histogram over tasks with at least one kept sample: how many samples each contributed (bounded by the per-task cap)."));
    }
    for it in &s.iterations {
        body.push_str(&kept_examples_html(it)?);
    }
    page.sections
        .push(("funnel".into(), "Training data".into(), body));

    // Coverage.
    let mut body = String::new();
    let mut rows = Vec::new();
    if let Some(b) = &s.base_dev {
        for it in &s.iterations {
            if let Some(cv) = it.dev.as_ref().and_then(|d| coverage(b, d)) {
                rows.push((format!("iter {} dev", it.number), cv));
            }
        }
    }
    for (bench, (bt, bn)) in &s.test_base {
        if let Some((t, n)) = s.test_best.get(bench) {
            for (name, a, b) in [("trace", bt, t), ("no trace", bn, n)] {
                if let (Some(a), Some(b)) = (a, b) {
                    if let Some(cv) = coverage(a, b) {
                        rows.push((format!("chosen, test {bench} {name}"), cv));
                    }
                }
            }
        }
    }
    if rows.is_empty() {
        body.push_str(&missing(
            "no evaluation pair with per-task counts: no coverage",
        ));
    } else {
        body.push_str(&page.plot(coverage_chart(&rows, "the base model")?, "Does the model solve new problems or only sharpen old ones? Tasks by whether the base model and this evaluation solved them (at least one passing sample of n)."));
        body.push_str(&coverage_table(&rows, "base"));
    }
    page.sections.push((
        "coverage".into(),
        "Coverage against the base model".into(),
        body,
    ));

    // Training curves.
    let mut body = String::new();
    let with_metrics: Vec<&IterView> = s
        .iterations
        .iter()
        .filter(|i| !i.metrics.is_empty())
        .collect();
    if with_metrics.is_empty() {
        body.push_str(&missing(
            "no training metrics (metrics.jsonl) for any iteration",
        ));
    } else {
        body.push_str("<div class=\"grid2\">");
        type Get = fn(&crate::model::MetricLine) -> Option<f64>;
        let panels: [(&str, &str, Get); 4] = [
            ("Training loss", "loss (nats per target token)", |m| m.loss),
            ("Learning rate", "learning rate", |m| m.lr),
            ("Gradient norm", "gradient L2 norm (before clipping)", |m| {
                m.grad_norm
            }),
            ("Throughput", "tokens per second", |m| m.tokens_per_s),
        ];
        for (title, ylabel, get) in panels {
            let mut c = LineChart::new(title, "optimizer step", ylabel);
            c.size = (560, 330);
            for i in &with_metrics {
                let pts: Vec<(f64, f64)> = i
                    .metrics
                    .iter()
                    .enumerate()
                    .filter_map(|(j, m)| Some((m.step.unwrap_or(j as f64 + 1.0), get(m)?)))
                    .collect();
                if !pts.is_empty() {
                    let mut sr = Series::new(
                        format!("iter {}", i.number),
                        color(i.number.saturating_sub(1)),
                        pts,
                    );
                    sr.markers = sr.points.len() <= 30;
                    c.series.push(sr);
                }
            }
            if c.series.is_empty() {
                body.push_str(&missing(&format!("{title}: not in the metrics")));
            } else {
                let svg = line_chart(&c)?;
                body.push_str(&page.plot(svg, &format!("{title} per optimizer step, one line per iteration (each iteration fine-tunes from the base weights).")));
            }
        }
        body.push_str("</div>");
    }
    page.sections
        .push(("training".into(), "Training curves".into(), body));
    Ok(())
}

/// Sample groups for the length plots: (label, records); `include` picks the samples.
fn length_groups<'a>(
    label: &str,
    store: &'a StoreData,
    kept: Option<&BTreeSet<(String, i64)>>,
    include: &dyn Fn(&SampleRecord) -> bool,
) -> Vec<(String, Vec<&'a SampleRecord>)> {
    let is_kept =
        |k: &BTreeSet<(String, i64)>, r: &SampleRecord| k.contains(&(r.task_id.clone(), r.idx));
    let samples: Vec<&SampleRecord> = store
        .samples
        .iter()
        .filter(|r| r.kind == "sample" && include(r))
        .collect();
    match kept {
        Some(k) => vec![
            (
                format!("{label} kept"),
                samples.iter().copied().filter(|r| is_kept(k, r)).collect(),
            ),
            (
                format!("{label} dropped"),
                samples.iter().copied().filter(|r| !is_kept(k, r)).collect(),
            ),
        ],
        None => vec![
            (
                format!("{label} passing"),
                samples
                    .iter()
                    .copied()
                    .filter(|r| r.passed == Some(true))
                    .collect(),
            ),
            (
                format!("{label} failing"),
                samples
                    .iter()
                    .copied()
                    .filter(|r| r.passed != Some(true))
                    .collect(),
            ),
        ],
    }
}

fn lengths_section(page: &mut Page, run: &LoadedRun) -> Result<(), ReportError> {
    let mut body = String::new();
    // (group label, records), and the stores for the rates table.
    let mut groups: Vec<(String, Vec<&SampleRecord>)> = Vec::new();
    // (name, store, the tasks of it that count: None = all).
    type Tasks<'a> = Option<&'a BTreeSet<String>>;
    let mut stores: Vec<(String, &StoreData, Tasks<'_>)> = Vec::new();
    // The stores the length plots draw from, with what their lengths count.
    let mut units: Vec<(String, &LengthUnit)> = Vec::new();
    match &run.run {
        Run::Eval(e) => {
            if let Some(st) = &e.store {
                units.push((e.label.clone(), &st.length_unit));
                groups.extend(length_groups("", st, None, &|_| true));
                stores.push((e.label.clone(), st, None));
            }
        }
        Run::Selftrain(s) => {
            let mut kept_known = true;
            for it in &s.iterations {
                if let Some(st) = &it.sample_store {
                    kept_known &= it.kept.is_some();
                    units.push((
                        format!("iter {} train-side sampling", it.number),
                        &st.length_unit,
                    ));
                    groups.extend(length_groups(
                        &format!("iter {}", it.number),
                        st,
                        it.kept.as_ref(),
                        &|r| it.in_keep_step(&r.task_id),
                    ));
                    stores.push((
                        format!("iter {} train-side sampling", it.number),
                        st,
                        it.decided_tasks.as_ref(),
                    ));
                }
            }
            if !kept_known {
                body.push_str(&missing("which samples were kept is not recorded (kept_sample_ids): lengths of passing vs failing samples are shown instead of kept vs dropped"));
            }
            for (name, e) in s.base_dev.iter().map(|b| (b.label.clone(), b)).chain(
                s.iterations
                    .iter()
                    .filter_map(|i| i.dev.as_ref().map(|d| (d.label.clone(), d))),
            ) {
                if let Some(st) = &e.store {
                    stores.push((name, st, None));
                }
            }
        }
    }
    for g in &mut groups {
        g.0 = g.0.trim().to_string();
        let t = g.0.clone();
        g.0 = format!("{} (n={})", t, g.1.len());
    }
    if groups.is_empty() {
        body.push_str(&missing("no sample store: no length distributions"));
    } else {
        let all_tokens = units
            .iter()
            .all(|(_, u)| matches!(u, LengthUnit::Tokens { .. }));
        let all_chars = units
            .iter()
            .all(|(_, u)| matches!(u, LengthUnit::Characters { .. }));
        let unit = if all_tokens {
            "tokens"
        } else if all_chars {
            "characters"
        } else {
            "tokens or characters, see below"
        };
        let rationale_unit = format!("rationale ({unit})");
        let program_unit = format!("fixed program ({unit})");
        body.push_str("<div class=\"grid2\">");
        type Get = fn(&SampleRecord) -> Option<f64>;
        let panels: [(&str, &str, Get); 4] = [
            ("Prompt length", "prompt (tokens)", |r| {
                Some(r.prompt_tokens as f64)
            }),
            ("Completion length", "completion (tokens)", |r| {
                Some(r.completion_tokens as f64)
            }),
            ("Rationale length", &rationale_unit, |r| {
                r.rationale_len.map(|v| v as f64)
            }),
            ("Fixed-program length", &program_unit, |r| {
                r.program_len.map(|v| v as f64)
            }),
        ];
        for (title, unit, get) in panels {
            let rows = groups
                .iter()
                .enumerate()
                .map(|(i, (label, recs))| BoxRow {
                    label: label.clone(),
                    color: if i % 2 == 0 { color(0) } else { color(1) },
                    values: recs.iter().filter_map(|r| get(r)).collect(),
                })
                .collect();
            let svg = box_chart(&BoxChart {
                title: title.into(),
                value_label: unit.into(),
                rows,
                width: 560,
            })?;
            body.push_str(&page.plot(svg, &format!("{title}: box from the first to the third quartile, line at the median, whiskers to 1.5 IQR, dots beyond.")));
        }
        body.push_str("</div>");
        body.push_str("<p class=\"note\">Prompt and completion tokens are the backend's counts; rationale and program lengths are of the parsed parts (a completion that did not parse has neither), counted with the run's tokenizer where it is at hand.</p>");
        let in_chars: Vec<String> = units
            .iter()
            .filter_map(|(name, u)| match u {
                LengthUnit::Characters { why } => Some(format!("{name}: {why}")),
                LengthUnit::Tokens { .. } => None,
            })
            .collect();
        if !in_chars.is_empty() {
            body.push_str(&missing(&format!(
                "rationale and program lengths in characters, not tokens, for {} (no tokenizer at hand: {})",
                if all_chars { "every store" } else { "some stores" },
                in_chars.join("; ")
            )));
        } else if let Some((_, LengthUnit::Tokens { tokenizer })) = units.first() {
            let _ = write!(
                body,
                "<p class=\"note\">Tokenizer: <code>{}</code>.</p>",
                esc(&tokenizer.display().to_string())
            );
        }
    }
    if !stores.is_empty() {
        let rows: Vec<Vec<String>> = stores
            .iter()
            .map(|(name, st, tasks)| {
                let s: Vec<&SampleRecord> = st
                    .samples
                    .iter()
                    .filter(|r| r.kind == "sample" && tasks.is_none_or(|t| t.contains(&r.task_id)))
                    .collect();
                let n = s.len().max(1) as f64;
                let trunc = s.iter().filter(|r| r.finish_reason == "length").count();
                let unp = s.iter().filter(|r| r.parsed == Some(false)).count();
                let failed = s.iter().filter(|r| r.finish_reason == "error").count();
                vec![
                    esc(name),
                    s.len().to_string(),
                    format!("{:.1} ({trunc})", 100.0 * trunc as f64 / n),
                    format!("{:.1} ({unp})", 100.0 * unp as f64 / n),
                    failed.to_string(),
                    opt(st.max_tokens()),
                ]
            })
            .collect();
        body.push_str(&table(
            &[
                "samples of".into(),
                "sampled completions".into(),
                "cut at max_tokens (%)".into(),
                "unparseable (%)".into(),
                "generation failed".into(),
                "max_tokens".into(),
            ],
            &rows,
            "num",
        ));
    }
    page.sections.push((
        "lengths".into(),
        "Lengths, truncation and parse failures".into(),
        body,
    ));
    Ok(())
}

/// Contradicted claims listed per evaluation on the page; the rest are counted.
pub const CLAIMS_SHOWN: usize = 20;

/// One evaluation (or train-side sampling) in the faithfulness section.
struct FaithRow<'a> {
    label: String,
    store: &'a StoreData,
    /// The tasks that count (None: all).
    tasks: Option<&'a BTreeSet<String>>,
    /// pass@1 as the headline computes it (None: train-side, from the records).
    pass1: Option<Value95>,
}

/// The rates of one side (fix passed or failed), in bar order: faithful, unfaithful, no claim.
fn faith_rates(c: &FaithfulnessRates) -> [f64; 3] {
    [c.faithful_rate, c.unfaithful_rate, c.no_claim_rate]
}

/// Table cells of one side: checked, then each rate with its count ("-" when none checked).
fn faith_cells(c: &FaithfulnessRates) -> [String; 4] {
    let cell = |r: f64, k: usize| {
        if c.checked == 0 {
            "-".to_string()
        } else {
            format!("{:.1} ({k})", 100.0 * r)
        }
    };
    [
        c.checked.to_string(),
        cell(c.faithful_rate, c.faithful),
        cell(c.unfaithful_rate, c.unfaithful),
        cell(c.no_claim_rate, c.no_claim),
    ]
}

/// The evaluations of a run whose stores are at hand, in page order, for the faithfulness
/// section: an eval run itself; a self-training run's base dev, then per iteration its
/// train-side sampling (the hard tasks it decided on) and dev, then the test evaluations.
fn faith_rows(run: &LoadedRun) -> Vec<FaithRow<'_>> {
    fn of(e: &EvalView) -> Option<FaithRow<'_>> {
        Some(FaithRow {
            label: e.label.clone(),
            store: e.store.as_ref()?,
            tasks: None,
            pass1: e.metric(Metric::PassAt(1)),
        })
    }
    match &run.run {
        Run::Eval(e) => of(e).into_iter().collect(),
        Run::Selftrain(s) => {
            let mut rows: Vec<FaithRow<'_>> = s
                .base_dev
                .iter()
                .chain(s.base_dev_no_trace.iter())
                .filter_map(of)
                .collect();
            for it in &s.iterations {
                if let Some(st) = &it.sample_store {
                    rows.push(FaithRow {
                        label: format!("iter {} train-side sampling", it.number),
                        store: st,
                        tasks: it.decided_tasks.as_ref(),
                        pass1: None,
                    });
                }
                rows.extend(it.dev.iter().chain(it.dev_no_trace.iter()).filter_map(of));
            }
            rows.extend(
                s.test_base
                    .values()
                    .chain(s.test_best.values())
                    .flat_map(|(a, b)| a.iter().chain(b.iter()))
                    .filter_map(of),
            );
            rows
        }
    }
}

fn claims_table(claims: &[ContradictedClaim]) -> String {
    let rows: Vec<Vec<String>> = claims
        .iter()
        .take(CLAIMS_SHOWN)
        .map(|c| {
            let fix = match c.passed {
                Some(true) => "<span class=\"pass\">passed</span>",
                Some(false) => "<span class=\"fail\">failed</span>",
                None => "not graded",
            };
            let trace = match &c.evidence {
                Some(ev) => {
                    let step = ev.step.map(|s| format!(" step {s}")).unwrap_or_default();
                    format!(
                        "<code>line {}{}: {}</code><br><span class=\"note\">the trace shows {}</span>",
                        ev.line,
                        esc(&step),
                        esc(&clip(&ev.source, 120)),
                        esc(&clip(&ev.shows, 120))
                    )
                }
                None => "-".into(),
            };
            vec![
                esc(&c.task_id),
                c.idx.to_string(),
                fix.to_string(),
                format!("<q>{}</q>", esc(&clip(&c.text, 160))),
                esc(&clip(&c.reason, 160)),
                trace,
            ]
        })
        .collect();
    table(
        &[
            "task".into(),
            "sample".into(),
            "fix".into(),
            "claim in the rationale".into(),
            "why contradicted".into(),
            "trace line".into(),
        ],
        &rows,
        "claims",
    )
}

fn faithfulness_section(
    page: &mut Page,
    run: &LoadedRun,
    notes: &mut Vec<String>,
) -> Result<(), ReportError> {
    let mut body = String::new();
    let rows = faith_rows(run);
    let checked: Vec<(&FaithRow<'_>, FaithfulnessRates, FaithfulnessRates, usize)> =
        rows.iter()
            .filter_map(|r| {
                let mut passed = FaithfulnessRates::default();
                let mut failed = FaithfulnessRates::default();
                let mut unchecked = 0;
                for s in r.store.samples.iter().filter(|s| {
                    s.kind == "sample" && r.tasks.is_none_or(|t| t.contains(&s.task_id))
                }) {
                    let side = if s.passed == Some(true) {
                        &mut passed
                    } else {
                        &mut failed
                    };
                    match &s.faithfulness {
                        Some(v) => side.add(v),
                        None => unchecked += (s.parsed == Some(true)) as usize,
                    }
                }
                (passed.checked + failed.checked > 0).then_some((r, passed, failed, unchecked))
            })
            .collect();
    if checked.is_empty() {
        let why = if rows.is_empty() {
            "no run store is at hand"
        } else if rows.iter().all(|r| !r.store.has_faithfulness) {
            "the run stores have no faithfulness table (written before the check existed)"
        } else {
            "the run stores hold no faithfulness verdicts yet (the check runs after grading)"
        };
        notes.push(format!("no rationale faithfulness verdicts: {why}"));
        body.push_str(&missing(&format!("no rationale faithfulness verdicts in this run: {why}. nxt eval checks every parsed rationale's execution claims against the trace (nxt-faithful) and stores the verdicts per sample.")));
        page.sections
            .push(("faithfulness".into(), "Rationale faithfulness".into(), body));
        return Ok(());
    }
    // Stacked bars: per evaluation and fix verdict, the share of each rationale verdict.
    let mut categories = Vec::new();
    let mut values: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for (r, passed, failed, _) in &checked {
        for (side, c) in [("fix passed", passed), ("fix failed", failed)] {
            if c.checked == 0 {
                continue;
            }
            categories.push(format!("{} · {side} (n={})", r.label, c.checked));
            for (k, v) in faith_rates(c).into_iter().enumerate() {
                values[k].push(100.0 * v);
            }
        }
    }
    let [f, u, c] = values;
    let svg = bar_chart(&BarChart {
        title: "Rationale faithfulness by fix verdict".into(),
        categories,
        category_label: String::new(),
        value_label: "checked rationales (%)".into(),
        groups: vec![
            ("faithful".into(), color(2), f),
            ("unfaithful".into(), color(3), u),
            ("no checkable claim".into(), GREY, c),
        ],
        horizontal: true,
        stacked: true,
        value_labels: false,
        width: 860,
        integer_values: false,
    })?;
    body.push_str(&page.plot(svg, "Each parsed rationale's execution claims checked against the trace of the buggy program: faithful (at least one claim supported, none contradicted), unfaithful (any claim contradicted), or no claim the trace can settle; split by whether the sample's fix passed the tests."));
    let table_rows: Vec<Vec<String>> = checked
        .iter()
        .map(|(r, passed, failed, unchecked)| {
            let pass1 = match &r.pass1 {
                Some(v) => cell_text(v, false),
                None => {
                    // Train side: the mean per-task pass rate of the counted samples.
                    let mut per: std::collections::BTreeMap<&str, (usize, usize)> =
                        Default::default();
                    for s in r.store.samples.iter().filter(|s| {
                        s.kind == "sample" && r.tasks.is_none_or(|t| t.contains(&s.task_id))
                    }) {
                        let e = per.entry(s.task_id.as_str()).or_default();
                        e.0 += 1;
                        e.1 += (s.passed == Some(true)) as usize;
                    }
                    let n = per.len().max(1) as f64;
                    let p: f64 = per.values().map(|(n, c)| *c as f64 / *n as f64).sum();
                    format!("{:.1}", 100.0 * p / n)
                }
            };
            let mut row = vec![esc(&r.label), pass1];
            row.extend(faith_cells(passed));
            row.extend(faith_cells(failed));
            row.push(unchecked.to_string());
            row
        })
        .collect();
    body.push_str(&table(
        &[
            "evaluation".into(),
            "pass@1 (%)".into(),
            "fix passed: checked".into(),
            "faithful (%)".into(),
            "unfaithful (%)".into(),
            "no claim (%)".into(),
            "fix failed: checked".into(),
            "faithful (%)".into(),
            "unfaithful (%)".into(),
            "no claim (%)".into(),
            "parsed, not checked".into(),
        ],
        &table_rows,
        "num",
    ));
    body.push_str("<p class=\"note\">Rates are over the checked rationales of the sampled repairs (counts in brackets); an unparseable completion has no rationale to check. pass@1 is the same figure as in the headline (train side: mean per-task pass rate at the sampling temperature).</p>");
    body.push_str("<h3>Contradicted claims</h3>");
    let mut any = false;
    for (r, _, _, _) in &checked {
        let claims = r
            .store
            .contradicted_claims("sample", &|t: &str| r.tasks.is_none_or(|ts| ts.contains(t)))?;
        if claims.is_empty() {
            continue;
        }
        any = true;
        let rationales: BTreeSet<(&str, i64)> =
            claims.iter().map(|c| (c.task_id.as_str(), c.idx)).collect();
        let shown = claims.len().min(CLAIMS_SHOWN);
        let _ = write!(
            body,
            "<details class=\"claims\"><summary>{} &middot; {} contradicted claims in {} rationales (fixes that passed first)</summary>",
            esc(&r.label),
            claims.len(),
            rationales.len()
        );
        body.push_str(&claims_table(&claims));
        if claims.len() > shown {
            let _ = write!(
                body,
                "<p class=\"note\">and {} more contradicted claims not listed.</p>",
                claims.len() - shown
            );
        }
        body.push_str("</details>");
    }
    if !any {
        body.push_str("<p class=\"note\">No checked rationale contradicts the trace.</p>");
    }
    page.sections
        .push(("faithfulness".into(), "Rationale faithfulness".into(), body));
    Ok(())
}

fn all_evals(run: &LoadedRun) -> Vec<&EvalView> {
    match &run.run {
        Run::Eval(e) => vec![e.as_ref()],
        Run::Selftrain(s) => s
            .dev_evals()
            .chain(
                s.test_base
                    .values()
                    .chain(s.test_best.values())
                    .flat_map(|(a, b)| a.iter().chain(b.iter())),
            )
            .collect(),
    }
}

fn proxy_section(page: &mut Page, run: &LoadedRun, notes: &mut Vec<String>) {
    let mut body = String::new();
    let evals: Vec<&EvalView> = all_evals(run)
        .into_iter()
        .filter(|e| e.proxy_per_task.is_some())
        .collect();
    if evals.is_empty() {
        notes.push("no proxy rationale evaluation (nxt eval --proxy-model M)".into());
        body.push_str(&missing("no proxy rationale evaluation in this run (nxt eval --proxy-model M gives one: a smaller model fixes the program from each sampled rationale, without the trace)"));
    } else {
        let rows: Vec<Vec<String>> = evals
            .iter()
            .map(|e| {
                vec![
                    esc(&e.label),
                    opt(e.proxy_model.as_deref()),
                    metric_cell(Some(e), Metric::ProxyPassAt(1)),
                    metric_cell(Some(e), Metric::PassAt(1)),
                ]
            })
            .collect();
        body.push_str(&table(
            &[
                "evaluation".into(),
                "proxy model".into(),
                "proxy pass@1 (%)".into(),
                "the model's own pass@1 (%)".into(),
            ],
            &rows,
            "num",
        ));
        body.push_str("<p class=\"note\">Better rationales help the proxy (student) model more: it sees the problem, the buggy program and one sampled rationale, no trace.</p>");
    }
    page.sections
        .push(("proxy".into(), "Proxy rationale score".into(), body));
}

fn compare_section(
    page: &mut Page,
    run: &LoadedRun,
    compare: &[LoadedRun],
) -> Result<(), ReportError> {
    let mut body = String::new();
    let main = run.primary();
    let dirs: Vec<&std::path::Path> = std::iter::once(run)
        .chain(compare)
        .map(|r| r.dir.as_path())
        .collect();
    let names = crate::run::run_names(&dirs);
    let mut entries: Vec<(String, &LoadedRun, Option<&EvalView>)> =
        vec![("this run".into(), run, main)];
    for (c, name) in compare.iter().zip(&names[1..]) {
        entries.push((name.clone(), c, c.primary()));
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|(name, r, e)| {
            let delta = match (main, e) {
                (Some(m), Some(e)) if !std::ptr::eq(m, *e) => m
                    .delta(e, Metric::PassAt(1))
                    .map(|v| format!("{} over {} tasks", esc(&cell_text(&v, true)), v.tasks))
                    .unwrap_or_else(|| "no shared tasks".into()),
                _ => "-".into(),
            };
            vec![
                esc(name),
                esc(&r.dir.display().to_string()),
                r.kind().into(),
                e.map(|e| esc(&e.label)).unwrap_or_else(|| "-".into()),
                e.map(|e| esc(&e.describe())).unwrap_or_else(|| "-".into()),
                e.map(|e| e.per_task.len().to_string())
                    .unwrap_or_else(|| "-".into()),
                metric_cell(*e, Metric::PassAt(1)),
                metric_cell(*e, Metric::Greedy),
                delta,
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            "run".into(),
            "directory".into(),
            "kind".into(),
            "evaluation".into(),
            "benchmark, prompt, model".into(),
            "tasks".into(),
            "pass@1 (%)".into(),
            "greedy pass@1 (%)".into(),
            "Δ pass@1 vs this run (paired)".into(),
        ],
        &rows,
        "num",
    ));
    body.push_str(
        "<p class=\"note\">A self-training run stands in with its chosen iteration on dev.</p>",
    );
    let evals: Vec<(String, &EvalView)> = entries
        .iter()
        .filter_map(|(n, _, e)| e.map(|e| (n.clone(), e)))
        .collect();
    if let Some(svg) = passk_chart("pass@k of the compared runs", &evals)? {
        body.push_str(&page.plot(
            svg,
            "Each run's evaluation; 95% bootstrap intervals over tasks.",
        ));
    }
    if let Some(m) = main {
        let cov: Vec<(String, [f64; 4])> = evals
            .iter()
            .skip(1)
            .filter_map(|(n, e)| coverage(m, e).map(|c| (n.clone(), c)))
            .collect();
        if !cov.is_empty() {
            body.push_str(&page.plot(
                coverage_chart(&cov, "this run")?,
                "Tasks solved by this run and by each compared run (shared tasks only).",
            ));
            body.push_str(&coverage_table(&cov, "this run"));
        }
    }
    page.sections
        .push(("compare".into(), "Runs compared".into(), body));
    Ok(())
}

fn settings_section(page: &mut Page, run: &LoadedRun) {
    let mut body = String::new();
    match &run.run {
        Run::Eval(e) => {
            let mut rows = vec![
                vec!["model".into(), opt(e.model.as_deref())],
                vec!["benchmark".into(), opt(e.benchmark.as_deref())],
                vec!["trace in the prompt".into(), opt(e.with_trace)],
                vec!["temperature".into(), opt(e.temperature)],
                vec!["tasks".into(), e.per_task.len().to_string()],
                vec!["proxy model".into(), opt(e.proxy_model.as_deref())],
            ];
            if let Some(st) = &e.store {
                rows.push(vec![
                    "run store".into(),
                    esc(&st.path.display().to_string()),
                ]);
                rows.push(vec![
                    "errors and notes recorded".into(),
                    st.errors.to_string(),
                ]);
            }
            body.push_str(&table(&["setting".into(), "value".into()], &rows, ""));
            match e.store.as_ref().and_then(|s| s.config.as_ref()) {
                Some(c) => {
                    body.push_str(
                        "<div class=\"label\">Configuration recorded in the run store</div>",
                    );
                    body.push_str(&pre(
                        &serde_json::to_string_pretty(c).unwrap_or_default(),
                        "json",
                    ));
                }
                None => body.push_str(&missing("the run store's configuration")),
            }
        }
        Run::Selftrain(s) => {
            let r = &s.results;
            let p = r.provenance.clone().unwrap_or_default();
            let mut rows = vec![
                vec!["status".into(), opt(r.status.as_deref())],
                vec!["nxt version".into(), opt(r.nxt_version.as_deref())],
                vec!["base model".into(), opt(p.base_model.as_deref())],
                vec![
                    "base weights sha256".into(),
                    opt(p.base_weights_sha256.as_deref()),
                ],
                vec!["seed".into(), opt(p.seed)],
                vec!["chosen iteration".into(), opt(s.best())],
            ];
            for (k, v) in &p.other {
                let cell = match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                        pre(&serde_json::to_string_pretty(v).unwrap_or_default(), "json")
                    }
                    serde_json::Value::String(t) => esc(t),
                    other => esc(&other.to_string()),
                };
                rows.push(vec![esc(k), cell]);
            }
            for it in &s.iterations {
                if let Some(t) = &it.it.train {
                    rows.push(vec![
                        format!("iter {} adapter", it.number),
                        opt(t.adapter.as_deref()),
                    ]);
                    rows.push(vec![
                        format!("iter {} training set sha256", it.number),
                        opt(t.train_set_sha256.as_deref()),
                    ]);
                }
            }
            body.push_str(&table(&["setting".into(), "value".into()], &rows, ""));
            if p.data.is_empty() {
                body.push_str(&missing("data provenance (paths and sha256 of the splits)"));
            } else {
                let rows: Vec<Vec<String>> = p
                    .data
                    .iter()
                    .map(|(k, d)| {
                        vec![
                            esc(k),
                            opt(d.path.as_deref()),
                            opt(d.sha256.as_deref()),
                            opt(d.tasks),
                        ]
                    })
                    .collect();
                body.push_str(&table(
                    &[
                        "split".into(),
                        "path".into(),
                        "sha256".into(),
                        "tasks".into(),
                    ],
                    &rows,
                    "",
                ));
            }
            // Wall time per stage.
            let stages: BTreeSet<&String> = s
                .iterations
                .iter()
                .flat_map(|i| i.it.wall_s.keys())
                .collect();
            if !stages.is_empty() || !r.wall_s.is_empty() {
                let mut header = vec!["iteration".to_string()];
                header.extend(stages.iter().map(|k| format!("{} (s)", esc(k))));
                let mut rows: Vec<Vec<String>> = s
                    .iterations
                    .iter()
                    .map(|i| {
                        let mut row = vec![i.number.to_string()];
                        row.extend(
                            stages
                                .iter()
                                .map(|k| opt(i.it.wall_s.get(*k).map(|v| format!("{v:.1}")))),
                        );
                        row
                    })
                    .collect();
                for (k, v) in &r.wall_s {
                    let mut row = vec![format!("run {}", esc(k))];
                    row.push(format!("{v:.1}"));
                    row.resize(header.len(), String::new());
                    rows.push(row);
                }
                body.push_str("<div class=\"label\">Wall time per stage</div>");
                body.push_str(&table(&header, &rows, "num"));
            } else {
                body.push_str(&missing("wall times"));
            }
            match &r.config {
                Some(c) => {
                    body.push_str("<div class=\"label\">Configuration</div>");
                    body.push_str(&pre(
                        &serde_json::to_string_pretty(c).unwrap_or_default(),
                        "json",
                    ));
                }
                None => body.push_str(&missing("the run's configuration")),
            }
        }
    }
    page.sections
        .push(("settings".into(), "Settings and provenance".into(), body));
}

fn verdict_text(
    rec: &SampleRecord,
    detail: Option<&serde_json::Value>,
    reason: Option<&str>,
) -> String {
    match rec.passed {
        Some(true) => "passed every grading test".into(),
        None => "not graded yet (the run was interrupted)".into(),
        Some(false) => {
            if rec.parsed == Some(false) {
                return format!("unparseable: {}", reason.unwrap_or("no program found"));
            }
            let Some(d) = detail else {
                return "failed".into();
            };
            if let Some(e) = d.get("generation_error") {
                return format!("generation failed: {}", e.as_str().unwrap_or(""));
            }
            let mut s = match (d.get("tests_passed"), d.get("tests_total")) {
                (Some(p), Some(t)) => format!("failed: {p} of {t} grading tests passed"),
                _ => "failed".into(),
            };
            if let Some(f) = d.get("first_failure").filter(|f| !f.is_null()) {
                let _ = write!(s, "; first failure: {}", clip(&f.to_string(), 600));
            }
            if let Some(f) = d.get("load_error").filter(|f| !f.is_null()) {
                let _ = write!(s, "; load error: {}", clip(&f.to_string(), 300));
            }
            s
        }
    }
}

/// The task part of an example: problem, buggy program and the trace as the model saw it.
fn task_html(store: &StoreData, task_id: &str) -> Result<String, ReportError> {
    let mut s = String::new();
    if let Some(t) = store.tasks.iter().find(|t| t.id == task_id) {
        s.push_str("<div class=\"label\">Problem</div>");
        s.push_str(&pre(&clip(&t.problem, 2000), "problem"));
        s.push_str("<div class=\"label\">Buggy program</div>");
        s.push_str(&pre(&clip(&t.buggy_program, TEXT_MAX), "code"));
    } else {
        s.push_str(&missing("the task is not in the run store"));
    }
    s.push_str("<div class=\"label\">Trace as the model saw it</div>");
    match store.prompt(task_id, "sample")? {
        Some(p) => match trace_block(&p) {
            Ok(t) => s.push_str(&pre(&clip(&t, TEXT_MAX), "trace")),
            Err(why) => s.push_str(&format!("<p class=\"note\">{}</p>", esc(&why))),
        },
        None => s.push_str(&missing("the prompt is not stored")),
    }
    Ok(s)
}

/// The sample part of an example: the rationale, the fixed program and the verdict.
fn sample_html(store: &StoreData, r: &SampleRecord) -> Result<String, ReportError> {
    let mut s = String::new();
    let t = store.sample_text(r.id)?;
    let _ = write!(
        s,
        "<div class=\"label\">Sample {} ({} completion tokens, finish: {})</div>",
        r.idx,
        r.completion_tokens,
        esc(&r.finish_reason)
    );
    s.push_str("<div class=\"label\">Rationale</div>");
    match t.rationale.as_deref().filter(|r| !r.trim().is_empty()) {
        Some(rat) => s.push_str(&pre(&clip(rat, TEXT_MAX), "rationale")),
        None => s.push_str("<p class=\"note\">(no rationale)</p>"),
    }
    s.push_str("<div class=\"label\">Fixed program</div>");
    match &t.program {
        Some(p) => s.push_str(&pre(&clip(p, TEXT_MAX), "code")),
        None => {
            s.push_str("<p class=\"note\">(none parsed; the raw completion follows)</p>");
            s.push_str(&pre(&clip(&t.completion, TEXT_MAX), "completion"));
        }
    }
    let _ = write!(
        s,
        "<div class=\"label\">Verdict</div><p>{}</p>",
        esc(&verdict_text(
            r,
            t.verdict_detail.as_ref(),
            t.parse_reason.as_deref()
        ))
    );
    Ok(s)
}

fn example_html(
    store: &StoreData,
    task_id: &str,
    solved: bool,
    stat: &crate::model::TaskStat,
) -> Result<String, ReportError> {
    let recs: Vec<&SampleRecord> = store
        .samples
        .iter()
        .filter(|r| r.task_id == task_id && r.kind == "sample")
        .collect();
    let pick = if solved {
        recs.iter().find(|r| r.passed == Some(true))
    } else {
        recs.iter()
            .find(|r| r.parsed == Some(true))
            .or(recs.first())
    }
    .copied();
    let mut s = String::new();
    let (cls, word) = if solved {
        ("pass", "solved")
    } else {
        ("fail", "failed")
    };
    let greedy = match stat.greedy {
        Some(true) => ", greedy passed",
        Some(false) => ", greedy failed",
        None => "",
    };
    let _ = write!(
        s,
        "<details><summary><span class=\"{cls}\">{word}</span> {} &middot; {} of {} samples passed{greedy}</summary>",
        esc(task_id),
        stat.c,
        stat.n
    );
    s.push_str(&task_html(store, task_id)?);
    match pick {
        Some(r) => s.push_str(&sample_html(store, r)?),
        None => s.push_str(&missing("no sample stored for this task")),
    }
    s.push_str("</details>");
    Ok(s)
}

/// A few of the samples iteration `it` kept for training (one per task, first tasks first),
/// each with its task, rationale, fix and verdict.
fn kept_examples_html(it: &IterView) -> Result<String, ReportError> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<h3 id=\"kept-{n}\">Iteration {n}: samples kept for training</h3>",
        n = it.number
    );
    let Some(kept) = &it.kept else {
        s.push_str(&missing(
            "which samples were kept is not recorded (kept_sample_ids)",
        ));
        return Ok(s);
    };
    let Some(store) = &it.sample_store else {
        s.push_str(&missing(
            "the train-side sampling store: the kept samples cannot be shown",
        ));
        return Ok(s);
    };
    let tasks: BTreeSet<&str> = kept.iter().map(|k| k.0.as_str()).collect();
    let _ = write!(
        s,
        "<p class=\"note\">{} samples kept over {} tasks{}; the first of each of the first {} tasks below.</p>",
        kept.len(),
        tasks.len(),
        it.it
            .train_set
            .as_deref()
            .map(|t| format!(", all of them in {}", esc(t)))
            .unwrap_or_default(),
        tasks.len().min(EXAMPLES_PER_KIND)
    );
    if kept.is_empty() {
        s.push_str("<p class=\"note\">No sample was kept in this iteration.</p>");
        return Ok(s);
    }
    let by_key: std::collections::HashMap<(&str, i64), &SampleRecord> = store
        .samples
        .iter()
        .filter(|r| r.kind == "sample")
        .map(|r| ((r.task_id.as_str(), r.idx), r))
        .collect();
    let absent = kept
        .iter()
        .filter(|(t, i)| !by_key.contains_key(&(t.as_str(), *i)))
        .count();
    let mut shown = BTreeSet::new();
    for (task, idx) in kept {
        if shown.len() >= EXAMPLES_PER_KIND {
            break;
        }
        if shown.contains(task.as_str()) {
            continue;
        }
        let Some(rec) = by_key.get(&(task.as_str(), *idx)) else {
            continue;
        };
        shown.insert(task.as_str());
        let per_task = kept.iter().filter(|k| &k.0 == task).count();
        let _ = write!(
            s,
            "<details><summary><span class=\"pass\">kept</span> {} &middot; sample {} &middot; {} of its samples kept</summary>",
            esc(task),
            idx,
            per_task
        );
        s.push_str(&task_html(store, task)?);
        s.push_str(&sample_html(store, rec)?);
        s.push_str("</details>");
    }
    if absent > 0 {
        s.push_str(&missing(&format!(
            "{absent} kept samples are not in the train-side store {}",
            store.path.display()
        )));
    }
    Ok(s)
}

fn examples_section(page: &mut Page, run: &LoadedRun) -> Result<(), ReportError> {
    let mut body = String::new();
    let evals: Vec<&EvalView> = match &run.run {
        Run::Eval(e) => vec![e.as_ref()],
        Run::Selftrain(s) => s
            .base_dev
            .iter()
            .chain(s.iterations.iter().filter_map(|i| i.dev.as_ref()))
            .collect(),
    };
    let mut any = false;
    for e in evals {
        let Some(st) = &e.store else { continue };
        any = true;
        let _ = write!(body, "<h3>{}</h3>", esc(&e.label));
        let solved: Vec<(&String, &crate::model::TaskStat)> = e
            .per_task
            .iter()
            .filter(|(_, t)| t.c > 0)
            .take(EXAMPLES_PER_KIND)
            .collect();
        let failed: Vec<(&String, &crate::model::TaskStat)> = e
            .per_task
            .iter()
            .filter(|(_, t)| t.c == 0)
            .take(EXAMPLES_PER_KIND)
            .collect();
        if solved.is_empty() {
            body.push_str("<p class=\"note\">No task solved.</p>");
        }
        for (id, t) in solved {
            body.push_str(&example_html(st, id, true, t)?);
        }
        if failed.is_empty() {
            body.push_str("<p class=\"note\">No task failed.</p>");
        }
        for (id, t) in failed {
            body.push_str(&example_html(st, id, false, t)?);
        }
    }
    if !any {
        body.push_str(&missing("no evaluation store to take examples from"));
    }
    page.sections
        .push(("examples".into(), "Examples".into(), body));
    Ok(())
}

/// Render the page of `run`, comparing it with `compare`.
pub fn render(run: &LoadedRun, compare: &[LoadedRun]) -> Result<Rendered, ReportError> {
    let mut page = Page {
        sections: Vec::new(),
        plots: 0,
    };
    let mut notes = run.notes();
    for c in compare {
        for n in c.notes() {
            notes.push(format!("{}: {n}", c.dir.display()));
        }
    }
    let h = headline(run, compare);
    let mut body = headline_html(&h);
    if h.columns.is_empty() {
        body.push_str(&missing("no finished evaluation"));
    }
    page.sections
        .push(("headline".into(), "Fix rate".into(), body));
    match &run.run {
        Run::Selftrain(s) => selftrain_sections(&mut page, s, &mut notes)?,
        Run::Eval(e) => {
            let mut body = String::new();
            match passk_chart(
                &format!("pass@k: {}", e.describe()),
                &[(e.label.clone(), e.as_ref())],
            )? {
                Some(svg) => body.push_str(&page.plot(
                    svg,
                    "Unbiased pass@k from n samples per task; 95% bootstrap intervals over tasks.",
                )),
                None => body.push_str(&missing("no per-task counts: no pass@k curve")),
            }
            page.sections
                .push(("passk".into(), "pass@k curve".into(), body));
        }
    }
    lengths_section(&mut page, run)?;
    faithfulness_section(&mut page, run, &mut notes)?;
    proxy_section(&mut page, run, &mut notes);
    if !compare.is_empty() {
        compare_section(&mut page, run, compare)?;
    }
    settings_section(&mut page, run);
    examples_section(&mut page, run)?;

    let mut seen = BTreeSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    let title = format!(
        "nxt report: {}",
        run.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let status = match &run.run {
        Run::Selftrain(s) => format!(
            ", status {}",
            s.results.status.as_deref().unwrap_or("unknown")
        ),
        Run::Eval(_) => String::new(),
    };
    let _ = writeln!(
        html,
        "<p class=\"sub\">{} run in <code>{}</code>{}; written by nxt-report {}</p>",
        run.kind(),
        esc(&run.dir.display().to_string()),
        esc(&status),
        env!("CARGO_PKG_VERSION")
    );
    if !notes.is_empty() {
        html.push_str("<div class=\"missing-box\" id=\"missing\"><strong>What this run does not have (yet):</strong><ul>");
        for n in &notes {
            let _ = write!(html, "<li>{}</li>", esc(n));
        }
        html.push_str("</ul></div>\n");
    }
    html.push_str("<nav class=\"toc\">");
    for (id, t, _) in &page.sections {
        let _ = writeln!(html, "<a href=\"#{}\">{}</a>", esc(id), esc(t));
    }
    html.push_str("</nav>\n");
    for (id, t, b) in &page.sections {
        let _ = write!(
            html,
            "<section id=\"{}\">\n<h2>{}</h2>\n{b}\n</section>\n",
            esc(id),
            esc(t)
        );
    }
    html.push_str("<footer>Self-contained: inline SVG plots, no scripts, no external resources. Plots use the Okabe-Ito colour-blind-safe palette.</footer>\n</body>\n</html>\n");
    Ok(Rendered {
        html,
        plots: page.plots,
        sections: page.sections.iter().map(|s| s.0.clone()).collect(),
        missing: notes,
    })
}
