//! Tracing through the real sandbox pool.

mod common;

use nxt_sandbox::{Pool, PoolConfig};
use nxt_trace::{render, trace, Format, RenderOptions};

fn pool() -> Option<Pool> {
    let config = PoolConfig {
        workers: 2,
        allow_weak_isolation: true,
        ..PoolConfig::default()
    };
    match Pool::new(config) {
        Ok(p) => Some(p),
        Err(e) => {
            nxt_sandbox::test_support::skip(
                nxt_sandbox::test_support::SANDBOX,
                &format!("sandbox pool unavailable: {e}"),
            );
            None
        }
    }
}

#[test]
fn goldens_through_the_pool() {
    let Some(pool) = pool() else { return };
    let mut failures = Vec::new();
    for case in common::goldens() {
        let t = trace(&pool, &case.request).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = render(&t, Format::Inline, &case.render);
        if got != case.expected {
            failures.push(format!(
                "--- {} expected:\n{}\n--- got:\n{}",
                case.name, case.expected, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn spec_example_through_the_pool() {
    let Some(pool) = pool() else { return };
    let req = nxt_trace::TraceRequest::new(
        "def count_vowels(word):\n    n = 0\n    for ch in word:\n        if ch in 'aeiou':\n            n += 1\n    return n\n",
        "assert count_vowels('Apple') == 2",
    );
    let t = trace(&pool, &req).unwrap();
    assert!(
        matches!(t.verdict, nxt_trace::TestOutcome::Failed { .. }),
        "{:?}",
        t.verdict
    );
    let expected = "def count_vowels(word):  # (0) word='Apple';
    n = 0  # (1) n=0;
    for ch in word:  # (2) ch='A'; (3) ch='p'; (4) ch='p'; ...; (6) ch='e';
        if ch in 'aeiou':
            n += 1  # (7) n=1;
    return n  # (8) __return__=1;

assert count_vowels('Apple') == 2  # (9) __exception__ = AssertionError()
";
    assert_eq!(
        render(&t, Format::Inline, &RenderOptions::default()),
        expected
    );
}
