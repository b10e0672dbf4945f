//! The report page on fixture runs written through the real APIs (run stores, the eval report,
//! the self-training loop's ledger, keep step and `results.json` writer): the page structure
//! against snapshots, the numbers against an independent computation, the kept samples per
//! iteration, escaping of model output, comparisons, runs with missing parts and bad input.
//!
//! Snapshots live in `tests/snapshots/`; after an intended change of the page, rerun with
//! `NXT_UPDATE_SNAPSHOTS=1` and review the diff.

mod common;

use std::path::Path;

use common::*;
use nxt_report::headline::headline;
use nxt_report::run::Metric;
use nxt_report::{load_run, render_report, write_report, ReportError};

/// The page's outline plus what it reports missing, with the run directory replaced by `RUN`.
fn snapshot_text(html: &str, missing: &[String], root: &Path) -> String {
    let root = root.display().to_string();
    let mut s = String::from("# sections\n");
    for line in outline(html) {
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("# missing\n");
    for m in missing {
        s.push_str(&m.replace(&root, "RUN"));
        s.push('\n');
    }
    s
}

fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("NXT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("snapshot dir");
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create it with NXT_UPDATE_SNAPSHOTS=1)",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  expected {a}\n  actual   {b}", i + 1))
            .collect();
        panic!(
            "{} differs from the page ({} vs {} lines); rerun with NXT_UPDATE_SNAPSHOTS=1 if intended:\n{}\n--- actual ---\n{actual}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// Tags that must balance on a page (an unescaped `</pre>` or `</details>` in model output
/// would break them).
fn assert_balanced(html: &str) {
    for tag in ["pre", "details", "section", "table", "figure", "svg", "p"] {
        let open =
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        let close = html.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "<{tag}> opened {open} times, closed {close}");
    }
}

/// The body of the page's section `id`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    html.split(&format!("<section id=\"{id}\">"))
        .nth(1)
        .and_then(|x| x.split("</section>").next())
        .unwrap_or_else(|| panic!("no section {id}"))
}

/// Mean per-task pass rate of a plan (pass@1 computed independently of the report).
fn mean_p1(p: &EvalPlan) -> f64 {
    p.tasks
        .iter()
        .map(|t| t.pass as f64 / p.n as f64)
        .sum::<f64>()
        / p.tasks.len() as f64
}

/// A run directory's `results.json`.
fn results_json(dir: &Path) -> serde_json::Value {
    let path = dir.join("results.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read results.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pass@1 row of a headline table.
fn pass_at_1_row(h: &nxt_report::headline::Headline) -> &nxt_report::headline::Row {
    h.rows
        .iter()
        .find(|r| r.metric == Metric::PassAt(1))
        .expect("pass@1 row")
}

fn render(dir: &Path, compare: &[&Path]) -> (String, nxt_report::ReportSummary) {
    let compare: Vec<_> = compare.iter().map(|p| p.to_path_buf()).collect();
    render_report(dir, &compare).unwrap_or_else(|e| panic!("report of {}: {e}", dir.display()))
}

#[test]
fn page_structure_matches_the_snapshots() {
    let d = tempdir();
    let eval = at(d.path(), "eval");
    write_eval_run(
        &eval,
        &EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3, 0, 6, 0, 2]),
    );
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    let killed = at(d.path(), "killed");
    write_selftrain_run(&killed, true);
    let no_trace = at(d.path(), "no-trace");
    write_selftrain_run_no_trace(&no_trace, false);
    for (name, dir) in [
        ("eval", &eval),
        ("selftrain", &st),
        ("killed", &killed),
        ("selftrain-no-trace", &no_trace),
    ] {
        let (html, s) = render(dir, &[]);
        assert_balanced(&html);
        assert_eq!(s.plots, html.matches("<svg").count(), "{name}");
        assert_eq!(
            s.sections,
            outline(&html)
                .iter()
                .map(|l| l.split(':').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        );
        check_snapshot(name, &snapshot_text(&html, &s.missing, d.path()));
    }
}

#[test]
fn headline_numbers_match_an_independent_computation() {
    let d = tempdir();
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    let [base, _, it2] = dev_plans();
    let run = load_run(&st).expect("load");
    let h = headline(&run, &[]);
    let row = pass_at_1_row(&h);
    // Columns: dev base, dev iter 2 (chosen), its delta, then the test groups.
    assert_eq!(h.columns[0].label, "base");
    assert_eq!(h.columns[1].label, "iter 2");
    assert!(h.columns[2].delta);
    let b = row.cells[0].expect("base cell");
    let c = row.cells[1].expect("chosen cell");
    let delta = row.cells[2].expect("delta cell");
    assert!((b.value - mean_p1(&base)).abs() < 1e-12, "{b:?}");
    assert!((c.value - mean_p1(&it2)).abs() < 1e-12, "{c:?}");
    assert!((delta.value - (mean_p1(&it2) - mean_p1(&base))).abs() < 1e-12);
    assert_eq!(b.tasks, 8);
    for v in [b, c, delta] {
        let (lo, hi) = v.ci.expect("interval");
        assert!(lo <= v.value && v.value <= hi, "{v:?}");
    }
    // The same numbers on the page and in the terminal summary.
    let (html, s) = render(&st, &[]);
    // (Formatted from the checked value: an independent sum may round a tie the other way.)
    let cell = format!("{:.1}", 100.0 * c.value);
    let headline_html = section(&html, "headline");
    assert!(
        headline_html.contains(&format!("<td class=\"\">{cell} <span")),
        "{cell}: {headline_html}"
    );
    assert!(s.summary.contains(&cell), "{}", s.summary);
    assert!(s.summary.contains(&format!("{:+.1}", 100.0 * delta.value)));
    // The proxy score of the chosen iteration's test run (trace): mean proxy pass rate.
    let proxy = h
        .rows
        .iter()
        .find(|r| r.metric == Metric::ProxyPassAt(1))
        .expect("proxy row");
    let i = h
        .columns
        .iter()
        .position(|c| c.group == "test: hefix+, trace" && c.label == "iter 2")
        .expect("test column");
    let p = proxy.cells[i].expect("proxy cell");
    let expect = TEST_PROXY_PASS.iter().sum::<usize>() as f64 / 30.0;
    assert!((p.value - expect).abs() < 1e-12, "{p:?} vs {expect}");
    assert!(html.contains("proxy-tiny"));
    // Greedy: the plan's greedy verdict is `pass * 2 > n`.
    let g = h
        .rows
        .iter()
        .find(|r| r.metric == Metric::Greedy)
        .and_then(|r| r.cells[0])
        .expect("greedy");
    let expect = base.tasks.iter().filter(|t| t.pass * 2 > 6).count() as f64 / 8.0;
    assert!((g.value - expect).abs() < 1e-12);
}

/// The cells of the `<table>` right after the fix-rate plot in the iterations section, as
/// (header, rows of cell texts).
fn iterations_table(html: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let sec = section(html, "iterations");
    let table = sec
        .split("<table")
        .nth(1)
        .and_then(|s| s.split("</table>").next())
        .expect("iterations table");
    let cells = |row: &str, tag: &str| -> Vec<String> {
        row.split(&format!("<{tag}>"))
            .skip(1)
            .map(|c| {
                c.split(&format!("</{tag}>"))
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let (head, body) = table.split_once("</thead>").expect("thead");
    let rows = body.split("<tr>").skip(1).map(|r| cells(r, "td")).collect();
    (cells(head, "th"), rows)
}

#[test]
fn dev_without_trace_is_a_column_and_a_series_with_the_numbers_of_results_json() {
    use nxt_report::page::{DEV_NO_TRACE_COLUMN, DEV_NO_TRACE_SERIES, DEV_TRACE_GAIN_COLUMN};
    let d = tempdir();
    let st = at(d.path(), "st");
    write_selftrain_run_no_trace(&st, false);
    let results: serde_json::Value = results_json(&st);
    // results.json: base, iteration 1, iteration 2, with and without the trace.
    let recorded = [
        &results["base"],
        &results["iterations"][0],
        &results["iterations"][1],
    ];
    let (html, s) = render(&st, &[]);
    assert_balanced(&html);
    let (header, rows) = iterations_table(&html);
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {header:?}"))
    };
    let (nt_col, gain_col, dev_col) = (
        col(DEV_NO_TRACE_COLUMN),
        col(DEV_TRACE_GAIN_COLUMN),
        col("dev pass@1 (%)"),
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (i, ((rec, with), without)) in recorded
        .iter()
        .zip(dev_plans())
        .zip(dev_plans_no_trace())
        .enumerate()
    {
        let nt = rec["dev_no_trace"]["pass@1"]
            .as_f64()
            .unwrap_or_else(|| panic!("row {i}: no dev_no_trace pass@1 in results.json"));
        let tr = rec["dev"]["pass@1"].as_f64().expect("dev pass@1");
        // results.json holds the fixture's numbers ...
        assert!((nt - mean_p1(&without)).abs() < 1e-12, "row {i}: {nt}");
        assert!((tr - mean_p1(&with)).abs() < 1e-12, "row {i}: {tr}");
        assert_ne!(nt, tr, "row {i}: the fixture must tell the two apart");
        // ... and the page shows them, with a 95% interval, in the no-trace column.
        let cell = &rows[i][nt_col];
        assert!(
            cell.starts_with(&format!("{:.1} [", 100.0 * nt)),
            "row {i}: {cell} vs {nt}"
        );
        assert!(
            rows[i][dev_col].starts_with(&format!("{:.1}", 100.0 * tr)),
            "row {i}: {} vs {tr}",
            rows[i][dev_col]
        );
        // What the trace adds, paired over the same dev tasks.
        let gain = &rows[i][gain_col];
        assert!(
            gain.starts_with(&format!("{:+.1} [", 100.0 * (tr - nt))),
            "row {i}: {gain} vs {}",
            tr - nt
        );
    }
    // The plot has the no-trace series (its legend), and nothing is reported missing about it.
    let sec = section(&html, "iterations");
    assert!(sec.contains(DEV_NO_TRACE_SERIES), "no no-trace series");
    assert!(sec.contains("Dev without trace:"), "no caption for it");
    assert!(
        !s.missing.iter().any(|m| m.contains("without the trace")),
        "{:?}",
        s.missing
    );

    // A run without it: no column, no series, no note.
    let plain = at(d.path(), "plain");
    write_selftrain_run(&plain, false);
    let (html, s) = render(&plain, &[]);
    let (header, _) = iterations_table(&html);
    assert!(
        !header
            .iter()
            .any(|h| h == DEV_NO_TRACE_COLUMN || h == DEV_TRACE_GAIN_COLUMN),
        "{header:?}"
    );
    assert!(!html.contains(DEV_NO_TRACE_SERIES));
    assert!(!html.contains("Dev without trace:"));
    assert!(!s.missing.iter().any(|m| m.contains("without the trace")));

    // Killed in iteration 2 after its dev stage with the trace: the no-trace cell is empty and
    // the page says so.
    let killed = at(d.path(), "killed");
    write_selftrain_run_no_trace(&killed, true);
    let v: serde_json::Value = results_json(&killed);
    assert!(v["iterations"][1]["dev"].is_object());
    assert!(v["iterations"][1].get("dev_no_trace").is_none());
    assert!(v["iterations"][0]["dev_no_trace"].is_object());
    let (html, s) = render(&killed, &[]);
    let (header, rows) = iterations_table(&html);
    let nt_col = header
        .iter()
        .position(|h| h == DEV_NO_TRACE_COLUMN)
        .expect("column");
    assert_eq!(rows[2][nt_col], "-");
    assert!(
        s.missing
            .iter()
            .any(|m| m.contains("iter 2: no dev evaluation without the trace")),
        "{:?}",
        s.missing
    );
}

#[test]
fn kept_samples_are_listed_and_shown_per_iteration() {
    let d = tempdir();
    let st = at(d.path(), "st");
    let fx = write_selftrain_run(&st, false);
    let results: serde_json::Value = results_json(&st);
    for (i, kept) in fx.kept.iter().enumerate() {
        assert!(!kept.is_empty(), "iteration {} kept nothing", i + 1);
        let ids: Vec<String> = kept.iter().map(|(t, x)| format!("{t}#{x}")).collect();
        assert_eq!(
            results["iterations"][i]["kept_sample_ids"],
            serde_json::json!(ids)
        );
        // The ids are those of train.jsonl.
        let lines: Vec<String> =
            std::fs::read_to_string(st.join(format!("iter-{}/train.jsonl", i + 1)))
                .expect("train.jsonl")
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).expect("line")["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
        assert_eq!(lines, ids);
    }
    let (html, _) = render(&st, &[]);
    let sec = section(&html, "funnel");
    for (i, kept) in fx.kept.iter().enumerate() {
        let n = i + 1;
        let part = sec
            .split(&format!("<h3 id=\"kept-{n}\">"))
            .nth(1)
            .and_then(|s| s.split("<h3").next())
            .unwrap_or_else(|| panic!("no kept samples of iteration {n}"));
        let tasks: std::collections::BTreeSet<&str> = kept.iter().map(|k| k.0.as_str()).collect();
        assert!(
            part.contains(&format!(
                "{} samples kept over {} tasks",
                kept.len(),
                tasks.len()
            )),
            "{part}"
        );
        // One collapsible example per task (at most 3), each with the rationale of the first
        // kept sample of that task, its fix and its verdict.
        let shown = part.matches("<details>").count();
        assert_eq!(shown, tasks.len().min(3));
        let mut seen = std::collections::BTreeSet::new();
        for ((task, idx), rationale) in kept.iter().zip(&fx.kept_rationales[i]) {
            if seen.len() == 3 || !seen.insert(task.as_str()) {
                continue;
            }
            assert!(part.contains(&format!(
                "{} &middot; sample {idx} &middot;",
                nxt_report::html::esc(task)
            )));
            assert!(
                part.contains(&nxt_report::html::esc(rationale)),
                "{rationale}"
            );
        }
        assert_eq!(part.matches("passed every grading test").count(), shown);
        assert_eq!(part.matches("<pre class=\"code\">").count(), 2 * shown);
    }
    // Lengths: kept against dropped, with the kept counts.
    let lengths = section(&html, "lengths");
    // Dropped: the other samples of the tasks the keep step decided on (iteration 1's store
    // is the hard-task filter's, which also sampled the easy tasks: those do not count).
    assert!(fx.hard_tasks.len() < 10);
    for (i, kept) in fx.kept.iter().enumerate() {
        let dropped = fx.decided_samples[i] - kept.len();
        for want in [
            format!("iter {} kept (n={})", i + 1, kept.len()),
            format!("iter {} dropped (n={dropped})", i + 1),
        ] {
            assert!(lengths.contains(&want), "{want}");
        }
    }
    assert!(!html.contains("kept_sample_ids"));
}

#[test]
fn model_text_is_escaped_never_markup() {
    let d = tempdir();
    let eval = at(d.path(), "eval");
    // Task 0 (the hostile one, its id sorts last) is one of the solved tasks shown.
    let mut plan = EvalPlan::new("mbpp-r", 6, &[2, 0, 0, 0, 0, 1]);
    plan.hostile = true;
    write_eval_run(&eval, &plan);
    let st = at(d.path(), "st");
    let fx = write_selftrain_run_with(&st, false, true);
    // The hostile sample was kept: it is on the page among the kept samples.
    assert!(fx.kept_rationales[0].iter().any(|r| r.contains(HOSTILE)));
    for dir in [&eval, &st] {
        let (html, s) = render(dir, &[]);
        let escaped = nxt_report::html::esc(HOSTILE);
        assert!(
            html.matches(&escaped).count() >= 2,
            "{}: the hostile text is not on the page, escaped",
            dir.display()
        );
        assert!(html.contains(&nxt_report::html::esc(HOSTILE_ID)));
        let lower = html.to_ascii_lowercase();
        for bad in ["<script", "<img", "<b onmouseover", "onerror=alert(1)>"] {
            assert!(!lower.contains(bad), "{}: {bad} on the page", dir.display());
        }
        // Every <svg> is one of the report's plots.
        assert_eq!(html.matches("<svg").count(), s.plots);
        assert_balanced(&html);
    }
}

#[test]
fn compare_shows_runs_side_by_side_with_paired_deltas() {
    let d = tempdir();
    let trace = at(d.path(), "with-trace");
    let no_trace = at(d.path(), "no-trace");
    let a = EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3, 0, 6, 0, 2]);
    // Six of the eight tasks, fewer passes: the delta is over the shared tasks only.
    let mut b = EvalPlan {
        with_trace: false,
        ..EvalPlan::new("mbpp-r", 6, &[0, 0, 0, 1, 0, 6])
    };
    b.model = "other-model".into();
    write_eval_run(&trace, &a);
    write_eval_run(&no_trace, &b);
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    let (html, s) = render(&trace, &[&no_trace, &st]);
    assert!(s.sections.contains(&"compare".to_string()));
    let sec = section(&html, "compare");
    for name in ["this run", "no-trace", "st"] {
        assert!(sec.contains(&format!("<td>{name}</td>")), "{name}");
    }
    assert!(sec.contains("mbpp-r, without trace, other-model"));
    // Paired delta over the 6 shared tasks, against the independent mean difference.
    let shared: f64 = (0..6)
        .map(|i| (b.tasks[i].pass as f64 - a.tasks[i].pass as f64) / 6.0)
        .sum::<f64>()
        / 6.0;
    assert!(
        sec.contains(&format!("{:+.1}", 100.0 * shared)) && sec.contains("over 6 tasks"),
        "{sec}"
    );
    // pass@k of the compared runs and coverage against this run.
    assert!(sec.contains("pass@k of the compared runs"));
    assert!(sec.contains("Coverage against this run"));
    // The headline has a column per compared run and their deltas.
    let labels = |a: &Path, b: &Path| -> Vec<String> {
        headline(&load_run(a).expect("load"), &[load_run(b).expect("load")])
            .columns
            .into_iter()
            .map(|c| c.label)
            .collect()
    };
    assert_eq!(
        labels(&trace, &no_trace),
        ["with-trace", "no-trace", "Δ no-trace"]
    );
    // And the summary names both.
    assert!(s.summary.contains("no-trace"));
    // Runs in directories of the same name are told apart by their parents.
    let (x, y) = (d.path().join("x/dev"), d.path().join("y/dev"));
    write_eval_run(&x, &a);
    write_eval_run(&y, &b);
    assert_eq!(labels(&x, &y), ["x/dev", "y/dev", "Δ y/dev"]);
    let (html, _) = render(&x, &[&y]);
    assert!(html.contains("<td>y/dev</td>"));
    // A self-training run compared with an eval run.
    let (html, _) = render(&st, &[&trace]);
    assert!(html.contains("<section id=\"compare\">"));
    assert!(html.contains("compared: mbpp-r, with trace, tiny-model"));
}

#[test]
fn a_run_killed_in_iteration_2_gives_a_page_that_says_what_is_missing() {
    let d = tempdir();
    let killed = at(d.path(), "killed");
    let fx = write_selftrain_run(&killed, true);
    let out = killed.join("report.html");
    let s = write_report(&killed, &[], &out).expect("report of a killed run");
    let html = std::fs::read_to_string(&out).expect("page");
    assert!(html.contains("status running"));
    let box_ = html
        .split("<div class=\"missing-box\" id=\"missing\">")
        .nth(1)
        .and_then(|x| x.split("</div>").next())
        .expect("the missing box");
    for want in [
        "iter 2: no dev evaluation (the run stopped before it)",
        "iter 2: training did not finish (5 steps of metrics so far",
        "last line cut short, ignored",
        "no test evaluation",
        "no proxy rationale evaluation",
    ] {
        assert!(box_.contains(want), "missing box lacks {want:?}:\n{box_}");
        assert!(s.missing.iter().any(|m| m.contains(want)), "{want}");
    }
    // What it has is still shown: iteration 1 in full, iteration 2's sampling and kept samples.
    assert!(html.contains("<h3 id=\"kept-2\">"));
    assert!(html.contains(&format!("{} samples kept over", fx.kept[1].len())));
    assert!(s.plots >= 8, "{} plots", s.plots);
    // Iteration 2's training curves are drawn from the metrics it wrote before the kill.
    let training = section(&html, "training");
    assert_eq!(
        training.matches(">\niter 2\n</text>").count(),
        4,
        "{training}"
    );
}

#[test]
fn eval_runs_with_missing_parts_still_render() {
    let d = tempdir();
    // Only results.json, no run store.
    let full = at(d.path(), "full");
    write_eval_run(&full, &EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3]));
    let no_store = at(d.path(), "no-store");
    std::fs::create_dir_all(&no_store).expect("dir");
    std::fs::copy(full.join("results.json"), no_store.join("results.json")).expect("copy");
    let (html, s) = render(&no_store, &[]);
    assert!(s
        .missing
        .iter()
        .any(|m| m.contains("no run store (run.sqlite) beside results.json")));
    assert!(html.contains("Missing: no sample store: no length distributions"));
    assert!(html.contains("Missing: no evaluation store to take examples from"));
    // The headline comes from the per-task counts of results.json, with intervals.
    assert!(html.contains("<span class=\"ci\">["));
    // Only the run store, no results.json (killed before the end); and samples not graded.
    let store_only = at(d.path(), "store-only");
    write_eval_run(&store_only, &EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3]));
    std::fs::remove_file(store_only.join("results.json")).expect("rm");
    {
        let conn = rusqlite::Connection::open(store_only.join("run.sqlite")).expect("sqlite");
        // The last task's verdicts were never written.
        conn.execute(
            "DELETE FROM verdicts WHERE sample_id IN (SELECT s.id FROM samples s JOIN prompts p ON p.id = s.prompt_id WHERE p.task_id = 'mbpp-r/3')",
            [],
        )
        .expect("delete");
    }
    let (html, s) = render(&store_only, &[]);
    assert!(s.plots >= 1);
    assert!(html.contains("<section id=\"examples\">"));
    assert_balanced(&html);
    // An empty self-training results.json (killed before the first stage finished).
    let empty = at(d.path(), "empty");
    std::fs::create_dir_all(&empty).expect("dir");
    std::fs::write(
        empty.join("results.json"),
        r#"{"kind": "selftrain", "status": "running"}"#,
    )
    .expect("write");
    let (html, s) = render(&empty, &[]);
    for want in [
        "no iteration finished or started",
        "the base model's dev evaluation is missing",
    ] {
        assert!(s.missing.iter().any(|m| m.contains(want)), "{want}");
    }
    assert!(html.contains("Missing: no finished evaluation"));
    assert_balanced(&html);
    // A self-training run whose train-side store was removed: the kept samples say so.
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    std::fs::remove_dir_all(st.join("hard")).expect("rm");
    let (html, _) = render(&st, &[]);
    assert!(
        html.contains("Missing: the train-side sampling store: the kept samples cannot be shown")
    );
}

#[test]
fn bad_input_is_a_clear_error_naming_the_file() {
    let d = tempdir();
    let nowhere = d.path().join("no-such-run");
    match render_report(&nowhere, &[]) {
        Err(e @ ReportError::NotARun { .. }) => {
            assert!(e.to_string().contains("no-such-run"), "{e}")
        }
        other => panic!("expected NotARun, got {other:?}"),
    }
    let empty = at(d.path(), "empty");
    std::fs::create_dir_all(&empty).expect("dir");
    assert!(matches!(
        render_report(&empty, &[]),
        Err(ReportError::NotARun { .. })
    ));
    let bad = at(d.path(), "bad-json");
    std::fs::create_dir_all(&bad).expect("dir");
    std::fs::write(
        bad.join("results.json"),
        "{\n  \"kind\": \"selftrain\",\n  oops\n}",
    )
    .expect("write");
    let e = render_report(&bad, &[]).expect_err("malformed results.json");
    let msg = e.to_string();
    assert!(
        msg.contains("bad-json/results.json") && msg.contains("line 3"),
        "{msg}"
    );
    let corrupt = at(d.path(), "corrupt");
    std::fs::create_dir_all(&corrupt).expect("dir");
    std::fs::write(
        corrupt.join("run.sqlite"),
        b"this is not a database, only text",
    )
    .expect("w");
    let e = render_report(&corrupt, &[]).expect_err("corrupt store");
    assert!(e.to_string().contains("corrupt/run.sqlite"), "{e}");
    // A bad compared run is an error too, naming it.
    let good = at(d.path(), "good");
    write_eval_run(&good, &EvalPlan::new("mbpp-r", 6, &[0, 1]));
    let e = render_report(&good, std::slice::from_ref(&bad)).expect_err("bad compared run");
    assert!(e.to_string().contains("bad-json"), "{e}");
}

#[test]
fn tensorboard_events_of_a_selftrain_run_read_back() {
    use nxt_report::tensorboard::{read_events, write_tensorboard};
    let d = tempdir();
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    let run = load_run(&st).expect("load");
    let tb = d.path().join("tb");
    let (files, count) = write_tensorboard(&run, &tb).expect("tensorboard");
    // One file of evaluation scalars, one per iteration of training curves.
    assert_eq!(files.len(), 3, "{files:?}");
    let mut read = 0;
    let mut tags = std::collections::BTreeMap::new();
    for f in &files {
        for e in read_events(f).expect("events") {
            for (tag, v) in e.scalars {
                read += 1;
                tags.insert((tag, e.step), v);
            }
        }
    }
    assert_eq!(read, count);
    // Dev pass@1 of the base (step 0) and of iteration 2, as in the headline.
    let h = headline(&run, &[]);
    let row = pass_at_1_row(&h);
    let base = row.cells[0].expect("base").value;
    let it2 = row.cells[1].expect("iter 2").value;
    // (TensorBoard scalars are f32.)
    assert_eq!(tags[&("dev/pass@1".to_string(), 0)], base as f32);
    assert_eq!(tags[&("dev/pass@1".to_string(), 2)], it2 as f32);
    // 12 optimizer steps per iteration, the trainer's loss at step 12.
    let loss = 2.0 / (1.0 + 12.0 * 0.3);
    assert!((tags[&("train/loss".to_string(), 12)] - loss as f32).abs() < 1e-6);
}

/// The headline table on the page as rows of (metric, cell texts), tags stripped.
fn page_headline(html: &str) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let body = section(html, "headline");
    let strip = |c: &str| -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for ch in c.chars() {
            match ch {
                '<' => in_tag = true,
                '>' => in_tag = false,
                _ if !in_tag => out.push(ch),
                _ => {}
            }
        }
        out.replace("&amp;", "&").trim().to_string()
    };
    let (head, rows) = body.split_once("</thead>").expect("thead");
    let rows = rows.split("</tbody>").next().unwrap_or("");
    let labels: Vec<String> = head
        .split("<tr>")
        .nth(2)
        .expect("label row")
        .split("<th>")
        .skip(1)
        .map(strip)
        .collect();
    let rows = rows
        .split("<tr>")
        .skip(1)
        .map(|r| {
            let cells: Vec<String> = r
                .split("<td")
                .skip(1)
                .map(|c| strip(&format!("<td{c}")))
                .collect();
            (cells[0].clone(), cells[1..].to_vec())
        })
        .collect();
    (labels, rows)
}

/// The terminal summary as rows of (metric, cell texts): its columns are separated by at
/// least two spaces.
fn terminal_rows(summary: &str) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let split = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let lines: Vec<&str> = summary.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("metric (%)"))
        .expect("header line");
    let labels = split(lines[head])[1..].to_vec();
    let rows = lines[head + 1..]
        .iter()
        .take_while(|l| l.contains("  "))
        .map(|l| {
            let c = split(l);
            (c[0].clone(), c[1..].to_vec())
        })
        .collect();
    (labels, rows)
}

#[test]
fn the_terminal_summary_is_the_page_headline_number_for_number() {
    let d = tempdir();
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    let eval = at(d.path(), "eval");
    write_eval_run(
        &eval,
        &EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3, 0, 6, 0, 2]),
    );
    for dir in [&st, &eval] {
        let (html, s) = render(dir, &[]);
        // What `nxt selftrain` and `nxt eval` print at the end.
        let terminal = nxt_report::summary_table(&load_run(dir).expect("load"), &[]);
        assert_eq!(terminal, s.summary);
        let (page_labels, page_rows) = page_headline(&html);
        let (term_labels, term_rows) = terminal_rows(&terminal);
        assert_eq!(page_labels, term_labels, "{terminal}");
        // Self-training: base, the chosen iteration and its delta per group at least.
        let columns = if dir == &st { 3 } else { 1 };
        assert!(page_labels.len() >= columns, "{page_labels:?}");
        // Every row the terminal shows is on the page with the same cells; the page's other
        // rows have no value at all.
        for (metric, cells) in &term_rows {
            let page = page_rows
                .iter()
                .find(|(m, _)| m == metric)
                .unwrap_or_else(|| panic!("{metric} is not on the page"));
            assert_eq!(&page.1, cells, "{metric}");
        }
        for (metric, cells) in &page_rows {
            if !term_rows.iter().any(|(m, _)| m == metric) {
                assert!(cells.iter().all(|c| c == "-"), "{metric}: {cells:?}");
            }
        }
        assert!(term_rows.len() >= 3, "{terminal}");
        assert!(terminal.contains("pass@1"));
    }
}

/// The fixture's own count of each rationale verdict over the parsed sampled repairs of a
/// plan, split by fix verdict: `fixture_rationale` quotes the right return value for
/// `s % 3 == 0`, a wrong one for `s % 3 == 1`, none otherwise.
fn expected_faithfulness(plan: &EvalPlan) -> [[usize; 3]; 2] {
    let mut out = [[0; 3]; 2];
    for t in &plan.tasks {
        for s in 0..plan.n {
            let passes = s < t.pass;
            if plan.unparseable_some && !passes && s % 4 == 3 {
                continue;
            }
            out[(!passes) as usize][s % 3] += 1;
        }
    }
    out
}

#[test]
fn faithfulness_rates_beside_pass_at_1_and_contradicted_claims_with_their_trace_line() {
    let d = tempdir();
    let eval = at(d.path(), "eval");
    // 12 samples per task: more wrong rationales than the page lists.
    let plan = EvalPlan::new("mbpp-r", 12, &[0, 2, 0, 6, 0, 12, 0, 4]);
    write_eval_run(&eval, &plan);
    let (html, s) = render(&eval, &[]);
    assert_balanced(&html);
    let body = section(&html, "faithfulness");
    let [passed, failed] = expected_faithfulness(&plan);
    let pct = |k: usize, n: usize| format!("{:.1} ({k})", 100.0 * k as f64 / n as f64);
    let (np, nf) = (passed.iter().sum::<usize>(), failed.iter().sum::<usize>());
    // The row: label, pass@1 as in the headline, then per fix verdict the checked count and
    // faithful / unfaithful / no-claim rates.
    let p1 = format!("{:.1} [", 100.0 * mean_p1(&plan));
    let row = body
        .split("<tr>")
        .find(|r| r.contains(&p1))
        .unwrap_or_else(|| panic!("no row with pass@1 {p1}: {body}"));
    let mut want = vec![np.to_string()];
    want.extend(passed.iter().map(|k| pct(*k, np)));
    want.push(nf.to_string());
    want.extend(failed.iter().map(|k| pct(*k, nf)));
    for w in &want {
        assert!(row.contains(&format!(">{w}</td>")), "{w} not in {row}");
    }
    // Contradicted claims: one per wrong rationale, listed with the trace line against it
    // (the return statement of the buggy program, and what the trace shows there).
    let wrong = passed[1] + failed[1];
    assert!(
        body.contains(&format!(
            "{wrong} contradicted claims in {wrong} rationales"
        )),
        "{body}"
    );
    let listed = body
        .split("<details class=\"claims\">")
        .nth(1)
        .expect("claims");
    assert_eq!(
        listed.matches("<q>").count(),
        wrong.min(nxt_report::page::CLAIMS_SHOWN)
    );
    assert!(wrong > nxt_report::page::CLAIMS_SHOWN);
    assert!(listed.contains(&format!(
        "and {} more contradicted claims not listed",
        wrong - nxt_report::page::CLAIMS_SHOWN
    )));
    // Passing fixes first; task 3's trace returns 1 - 3 = -2, its wrong rationales say 5.
    assert!(
        listed.contains("<code>line 2 step 1: return x - 3</code>"),
        "{listed}"
    );
    assert!(
        listed.contains("the trace shows __return__=-2</span>"),
        "{listed}"
    );
    assert!(listed.contains("<q>function returns 5</q>"), "{listed}");
    assert!(!s.missing.iter().any(|m| m.contains("faithfulness")));

    // A store written before the check: the page says there are no verdicts.
    let old = at(d.path(), "old");
    write_eval_run(
        &old,
        &EvalPlan {
            faithfulness: false,
            ..plan.clone()
        },
    );
    let (html, s) = render(&old, &[]);
    let body = section(&html, "faithfulness");
    assert!(body.contains("class=\"missing\""), "{body}");
    assert!(!body.contains("<svg"));
    assert!(s
        .missing
        .iter()
        .any(|m| m.contains("no rationale faithfulness verdicts")));
}

#[test]
fn the_funnel_counts_samples_dropped_as_unfaithful_under_passing_and_faithful() {
    let d = tempdir();
    let st = at(d.path(), "st");
    let fx = write_selftrain_run_opts(
        &st,
        &SelftrainOpts {
            keep_faithful: true,
            ..SelftrainOpts::default()
        },
    );
    let v = results_json(&st);
    let (html, _) = render(&st, &[]);
    let funnel = section(&html, "funnel");
    assert!(funnel.contains("after faithfulness filter"), "{funnel}");
    assert!(funnel.contains("passing but unfaithful (dropped)"));
    for (i, it) in v["iterations"]
        .as_array()
        .expect("iterations")
        .iter()
        .enumerate()
    {
        let f = &it["funnel"];
        let (passing, unfaithful, after) = (
            f["passing_samples"].as_u64().expect("passing"),
            f["unfaithful"].as_u64().expect("unfaithful"),
            f["after_faithful"].as_u64().expect("after_faithful"),
        );
        assert!(
            unfaithful > 0,
            "iteration {}: the fixture has wrong rationales",
            i + 1
        );
        assert_eq!(after, passing - unfaithful);
        assert!(fx.kept[i].len() as u64 <= after);
    }
    // Table rows: the dropped count, then what is left, per iteration.
    let row = |label: &str| -> Vec<String> {
        funnel
            .split("<tr>")
            .find(|r| r.contains(&format!("<td>{label}</td>")))
            .unwrap_or_else(|| panic!("no row {label}"))
            .split("<td>")
            .skip(2)
            .map(|c| c.split("</td>").next().unwrap_or("").to_string())
            .collect()
    };
    let it = v["iterations"].as_array().expect("iterations");
    assert_eq!(
        row("passing but unfaithful (dropped)"),
        it.iter()
            .map(|i| i["funnel"]["unfaithful"].to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        row("after faithfulness filter"),
        it.iter()
            .map(|i| i["funnel"]["after_faithful"].to_string())
            .collect::<Vec<_>>()
    );
    // Under keep = "passing" the filter is no stage; the count says they were kept.
    let plain = at(d.path(), "plain");
    write_selftrain_run(&plain, false);
    let (html, _) = render(&plain, &[]);
    let funnel = section(&html, "funnel");
    assert!(!funnel.contains("after faithfulness filter"));
    assert!(
        funnel.contains("passing but unfaithful (kept: keep = &quot;passing&quot;)"),
        "{funnel}"
    );
}

#[test]
fn rationale_and_program_lengths_are_in_the_runs_tokens_else_characters_with_a_note() {
    use nxt_report::store::{LengthUnit, StoreData};
    let d = tempdir();
    // A model directory with the tokenizer the run used.
    let model = d.path().join("model");
    std::fs::create_dir_all(&model).expect("model dir");
    let corpus = (0..8)
        .flat_map(|i| (0..6).map(move |s| fixture_rationale(i, s)))
        .collect::<Vec<_>>()
        .join("\n");
    let tok = nxt_engine::tiny::tokenizer_json_from_corpus(&corpus, 200);
    std::fs::write(model.join("tokenizer.json"), tok.to_string()).expect("tokenizer");
    let with_tok = at(d.path(), "tok");
    let mut plan = EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3]);
    plan.model = model.display().to_string();
    write_eval_run(&with_tok, &plan);
    let store = StoreData::open(&with_tok.join("run.sqlite")).expect("store");
    assert_eq!(
        store.length_unit,
        LengthUnit::Tokens {
            tokenizer: model.join("tokenizer.json")
        }
    );
    let tokenizer = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).expect("load");
    let core = nxt_core::store::RunStore::open(&with_tok.join("run.sqlite")).expect("core store");
    let records = core
        .sample_records(nxt_core::store::PromptKind::Sample)
        .expect("records");
    let mut compared = 0;
    for r in store.samples.iter().filter(|r| r.kind == "sample") {
        let rec = records
            .iter()
            .find(|x| x.sample_id == r.id)
            .expect("record");
        if let Some(text) = &rec.rationale {
            let n = tokenizer
                .encode(text.as_str(), false)
                .expect("encode")
                .len() as i64;
            assert_eq!(r.rationale_len, Some(n), "sample {}", r.id);
            assert_ne!(Some(text.chars().count() as i64), Some(n));
            compared += 1;
        }
    }
    assert!(compared > 10);
    let (html, _) = render(&with_tok, &[]);
    let lengths = section(&html, "lengths");
    assert!(lengths.contains("rationale (tokens)"), "{lengths}");
    assert!(lengths.contains("fixed program (tokens)"));
    assert!(!lengths.contains("class=\"missing\""));

    // The fixture model "tiny-model" is no directory: characters, and the page says why.
    let plain = at(d.path(), "plain");
    write_eval_run(&plain, &EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3]));
    let store = StoreData::open(&plain.join("run.sqlite")).expect("store");
    assert!(matches!(store.length_unit, LengthUnit::Characters { .. }));
    let (html, _) = render(&plain, &[]);
    let lengths = section(&html, "lengths");
    assert!(lengths.contains("rationale (characters)"));
    assert!(
        lengths.contains("in characters, not tokens") && lengths.contains("tiny-model"),
        "{lengths}"
    );
}
