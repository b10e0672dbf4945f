//! Consistency checks of a trace and its renderings (used by the corpus tests and
//! `nxt trace --stats`).

use std::collections::BTreeMap;

use crate::model::{EventKind, Trace};
use crate::render::{
    event_text, marker_position, render, source_is_strippable, split_lines, strip_inline_comments,
    Format, RenderOptions,
};

/// Every problem found in `t` (empty when the trace is consistent):
/// - the tracer reported no internal failure;
/// - step numbers are 0, 1, 2, ... in event order (each appears once, in execution order);
/// - every event sits on a line of the document;
/// - in the uncompressed inline rendering, each line's comment holds exactly its events, with
///   increasing step numbers; removing the comments of the default rendering gives back the
///   source byte for byte;
/// - each `__return__` equals the unbounded repr of the real return value (when recorded with
///   [`crate::CaptureOptions::verify`]); a value cut by the capture bounds must agree with the
///   real repr up to its first `...`.
pub fn check_trace(t: &Trace) -> Vec<String> {
    let mut problems = Vec::new();
    for e in &t.tracer_errors {
        problems.push(format!("tracer error: {e}"));
    }
    let lines = split_lines(&t.source);
    for (i, e) in t.events.iter().enumerate() {
        if e.step != i as u64 {
            problems.push(format!("event {i} has step {} (expected {i})", e.step));
            break;
        }
        if e.line == 0 || e.line as usize > lines.len() {
            problems.push(format!(
                "step {} on line {} outside 1..={}",
                e.step,
                e.line,
                lines.len()
            ));
        }
    }
    // Uncompressed inline rendering: per line, the events' texts in step order.
    let full = RenderOptions {
        head: usize::MAX / 4,
        tail: 0,
        line_budget: usize::MAX,
        value_max_chars: usize::MAX,
        total_budget: None,
    };
    let text = render(t, Format::Inline, &full);
    let strippable = source_is_strippable(&t.source);
    if strippable && strip_inline_comments(&text) != t.source {
        problems.push("stripping the uncompressed rendering does not give the source back".into());
    }
    let mut by_line: BTreeMap<u32, Vec<&crate::Event>> = BTreeMap::new();
    for e in &t.events {
        by_line.entry(e.line).or_default().push(e);
    }
    let rendered = split_lines(&text);
    for (line, evs) in &by_line {
        let Some((content, _)) = rendered.get(*line as usize - 1) else {
            continue;
        };
        let Some(p) = marker_position(content) else {
            problems.push(format!("line {line}: events but no comment"));
            continue;
        };
        let comment = &content[p + 4..];
        let mut at = 0;
        let mut last_step = None;
        for e in evs {
            if last_step.is_some_and(|s| e.step <= s) {
                problems.push(format!(
                    "line {line}: step {} after {:?}",
                    e.step, last_step
                ));
            }
            last_step = Some(e.step);
            let want = event_text(e, usize::MAX);
            match comment[at..].find(&want) {
                Some(q) => at += q + want.len(),
                None => {
                    problems.push(format!(
                        "line {line}: step {} missing or out of order",
                        e.step
                    ));
                    break;
                }
            }
        }
    }
    let default = render(t, Format::Inline, &RenderOptions::default());
    if strippable && strip_inline_comments(&default) != t.source {
        problems.push("stripping the default rendering does not give the source back".into());
    }
    // Return values against the real reprs.
    let real: BTreeMap<u64, &Option<String>> =
        t.real_returns.iter().map(|(s, r)| (*s, r)).collect();
    for e in &t.events {
        let EventKind::Return { value } = &e.kind else {
            continue;
        };
        let Some(Some(r)) = real.get(&e.step) else {
            continue;
        };
        if value == r {
            continue;
        }
        let ok = match value.find("...") {
            Some(p) => r.starts_with(&value[..p]),
            None => false,
        };
        if !ok {
            problems.push(format!(
                "step {}: __return__={} but the real value is {}",
                e.step,
                crate::render::clip_value(value, 200),
                crate::render::clip_value(r, 200)
            ));
        }
    }
    problems
}
