//! Odd rationales against a real recorded trace: no crash, and whatever cannot be checked is
//! unverifiable (never contradicted).

use std::path::Path;

use nxt_faithful::{check_rationale, ClaimVerdict, Verdict};
use nxt_trace::Trace;

fn trace(name: &str) -> Trace {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/traces")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn odd_rationales_are_unverifiable_not_contradicted() {
    // hefix/3: balance takes 0, 1, 3, -1, 4; the function returns False.
    let t = trace("hefix-3");
    let huge = "9".repeat(20_000);
    let cases: Vec<(String, Verdict)> = vec![
        // Another language, no value.
        (
            "La función suma las operaciones pero sólo comprueba la igualdad con cero.".into(),
            Verdict::NoClaim,
        ),
        // Another script, with a checkable quote inside.
        ("残高は balance=-1 になりますが、関数は False を返します。".into(), Verdict::Faithful),
        // Code only.
        (
            "```python\ndef below_zero(operations):\n    balance = 0\n    for op in operations:\n        balance += op\n        if balance < 0:\n            return True\n    return False\n```".into(),
            Verdict::NoClaim,
        ),
        // A huge number (more digits than Python parses) and a value that is no literal.
        (format!("balance is {huge}."), Verdict::NoClaim),
        ("The trace shows balance=<int object at 0x7f> and op=Operation(5).".into(), Verdict::NoClaim),
        ("balance=[1, 2, ... and op='unterminated".into(), Verdict::NoClaim),
        // Nesting deeper than the parser follows.
        (format!("balance={}", "[".repeat(100_000)), Verdict::NoClaim),
        // Nothing at all, or control characters.
        (String::new(), Verdict::NoClaim),
        ("\u{0}\u{1b}[31m balance \u{7f}".into(), Verdict::NoClaim),
    ];
    for (text, want) in cases {
        let r = check_rationale(&text, &t);
        let short: String = text.chars().take(60).collect();
        assert_eq!(r.verdict, want, "{short}: {:?}", r.claims);
        assert_eq!(r.count(ClaimVerdict::Contradicted), 0, "{short}");
    }
    // A huge number that Python does parse is compared as a value: contradicted.
    let r = check_rationale("balance is 123456789012345678901234567890.", &t);
    assert_eq!(r.verdict, Verdict::Unfaithful);
}

#[test]
fn a_huge_rationale_is_checked_in_one_pass() {
    let t = trace("hefix-3");
    let one = "The trace shows balance=1 and then balance=3, and the function returns False. ";
    let text = one.repeat(2_000);
    let r = check_rationale(&text, &t);
    assert_eq!(r.verdict, Verdict::Faithful);
    assert_eq!(r.count(ClaimVerdict::Supported), 6_000);
}
