//! Renderer behaviour on hand-made traces (no Python needed).

use nxt_trace::{
    document, render, render_measured, strip_inline_comments, Event, EventKind, Format,
    RenderOptions, TestOutcome, Trace, Truncation, TruncationReason, Var,
};

fn var(step: u64, line: u32, name: &str, value: &str) -> Event {
    Event {
        step,
        line,
        kind: EventKind::Line {
            vars: vec![Var {
                name: name.into(),
                value: value.into(),
            }],
        },
    }
}

fn loop_trace(n: u64) -> Trace {
    let (source, test_first_line) = document(
        "def f(n):\n    for i in range(n):\n        pass\n    return n\n",
        "assert f(3) == 3",
    );
    let mut events: Vec<Event> = (0..n).map(|i| var(i, 2, "i", &i.to_string())).collect();
    events.push(Event {
        step: n,
        line: 4,
        kind: EventKind::Return {
            value: n.to_string(),
        },
    });
    Trace {
        source,
        test_first_line,
        events,
        truncated: None,
        verdict: TestOutcome::Passed,
        load_error: None,
        stdout: String::new(),
        python: "3.11".into(),
        real_returns: Vec::new(),
        tracer_errors: Vec::new(),
        lost_events: 0,
    }
}

#[test]
fn head_tail_and_line_budget() {
    let t = loop_trace(10);
    let text = render(&t, Format::Inline, &RenderOptions::default());
    assert!(
        text.contains("    for i in range(n):  # (0) i=0; (1) i=1; (2) i=2; ...; (9) i=9;\n"),
        "{text}"
    );
    let o = RenderOptions {
        head: 2,
        tail: 2,
        ..RenderOptions::default()
    };
    let text = render(&t, Format::Inline, &o);
    assert!(
        text.contains("# (0) i=0; (1) i=1; ...; (8) i=8; (9) i=9;\n"),
        "{text}"
    );
    let o = RenderOptions {
        line_budget: 30,
        ..RenderOptions::default()
    };
    let text = render(&t, Format::Inline, &o);
    assert!(text.contains("# (0) i=0; ...; (9) i=9;\n"), "{text}");
    assert_eq!(strip_inline_comments(&text), t.source);
}

#[test]
fn value_truncation_keeps_head_and_tail() {
    let mut t = loop_trace(0);
    t.events
        .insert(0, var(0, 2, "s", &format!("'{}'", "ab".repeat(100))));
    t.events[1].step = 1;
    let o = RenderOptions {
        value_max_chars: 20,
        ..RenderOptions::default()
    };
    let text = render(&t, Format::Inline, &o);
    assert!(text.contains("# (0) s='ababababab...babab';\n"), "{text}");
}

#[test]
fn truncation_marker_and_total_budget() {
    let mut t = loop_trace(50);
    t.truncated = Some(Truncation {
        reason: TruncationReason::Steps,
        at_step: 51,
        line: Some(2),
    });
    let text = render(&t, Format::Inline, &RenderOptions::default());
    assert!(
        text.contains("[trace truncated: step budget reached]"),
        "{text}"
    );
    assert_eq!(strip_inline_comments(&text), t.source);
    // A total budget in "tokens" (here: whitespace-separated words) forces cuts.
    let words = |s: &str| s.split_whitespace().count();
    let full = render_measured(&t, Format::Scratchpad, &RenderOptions::default(), &words);
    let o = RenderOptions {
        total_budget: Some(words(&full) / 3),
        ..RenderOptions::default()
    };
    let cut = render_measured(&t, Format::Scratchpad, &o, &words);
    assert!(words(&cut) <= words(&full) / 3, "{cut}");
    assert!(cut.contains("[trace truncated: render budget]"), "{cut}");
    let o = RenderOptions {
        total_budget: Some(t.source.len() + 60),
        ..RenderOptions::default()
    };
    let inline = render(&t, Format::Inline, &o);
    assert!(inline.chars().count() <= t.source.len() + 60, "{inline}");
    assert!(
        inline.contains("[trace truncated: render budget]"),
        "{inline}"
    );
    assert_eq!(strip_inline_comments(&inline), t.source);
}

#[test]
fn strip_keeps_user_comments_and_crlf() {
    let (source, test_first_line) = document("x = 1  # a comment\r\ny = 2\r\n", "assert x == 1");
    assert!(source.contains("\r\n\r\nassert x == 1\r\n"));
    let t = Trace {
        source: source.clone(),
        test_first_line,
        events: vec![var(0, 1, "x", "1"), var(1, 2, "y", "2")],
        truncated: None,
        verdict: TestOutcome::Passed,
        load_error: None,
        stdout: String::new(),
        python: String::new(),
        real_returns: Vec::new(),
        tracer_errors: Vec::new(),
        lost_events: 0,
    };
    let text = render(&t, Format::Inline, &RenderOptions::default());
    assert!(
        text.starts_with("x = 1  # a comment  # (0) x=1;\r\ny = 2  # (1) y=2;\r\n"),
        "{text:?}"
    );
    assert_eq!(strip_inline_comments(&text), source);
    assert_eq!(render(&t, Format::None, &RenderOptions::default()), "");
    let json = render(&t, Format::Json, &RenderOptions::default());
    assert!(
        json.starts_with("{\"events\":[{\"step\":0,\"line\":1,\"kind\":\"line\""),
        "{json}"
    );
}
