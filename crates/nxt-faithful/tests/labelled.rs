//! The labelled rationale set (tests/fixtures/rationales.txt) against the checker: precision
//! and recall of "contradicted" and "supported", rationale verdict accuracy, and speed.
//!
//! The floors are set from the measured figures (docs/BENCHMARKS.md, "Rationale
//! faithfulness"): a change to the extractor or checker that loses more than a few claims
//! fails here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nxt_faithful::{check_with, ClaimVerdict, TraceIndex, Verdict};
use nxt_trace::Trace;

#[derive(Debug)]
struct Label {
    verdict: ClaimVerdict,
    start: usize,
    end: usize,
    snippet: String,
}

#[derive(Debug)]
struct Entry {
    task: String,
    kind: String,
    verdict: Verdict,
    text: String,
    labels: Vec<Label>,
    line: usize,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn parse_verdict(s: &str, at: usize) -> Verdict {
    match s {
        "faithful" => Verdict::Faithful,
        "unfaithful" => Verdict::Unfaithful,
        "no_claim" => Verdict::NoClaim,
        other => panic!("rationales.txt:{at}: unknown verdict `{other}`"),
    }
}

fn parse_label(s: &str, at: usize) -> ClaimVerdict {
    match s {
        "supported" => ClaimVerdict::Supported,
        "contradicted" => ClaimVerdict::Contradicted,
        "unverifiable" => ClaimVerdict::Unverifiable,
        other => panic!("rationales.txt:{at}: unknown label `{other}`"),
    }
}

fn load(file: &str) -> Vec<Entry> {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
    let mut out: Vec<Entry> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    let mut in_labels = false;
    for (no, line) in text.lines().enumerate() {
        let at = no + 1;
        if let Some(head) = line.strip_prefix("=== ") {
            let parts: Vec<&str> = head.split_whitespace().collect();
            assert_eq!(
                parts.len(),
                3,
                "rationales.txt:{at}: `=== TASK KIND VERDICT`"
            );
            out.push(Entry {
                task: parts[0].to_string(),
                kind: parts[1].to_string(),
                verdict: parse_verdict(parts[2], at),
                text: String::new(),
                labels: Vec::new(),
                line: at,
            });
            body.clear();
            in_labels = false;
            continue;
        }
        let Some(e) = out.last_mut() else {
            assert!(
                line.starts_with('#') || line.trim().is_empty(),
                "rationales.txt:{at}: text before the first entry"
            );
            continue;
        };
        if line == "---" && !in_labels {
            e.text = body.join("\n");
            in_labels = true;
            continue;
        }
        if !in_labels {
            body.push(line);
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (label, snippet) = line
            .split_once(" | ")
            .unwrap_or_else(|| panic!("rationales.txt:{at}: `LABEL | SNIPPET`"));
        let (snippet, nth) = match snippet.rsplit_once(" @") {
            Some((s, n)) if n.parse::<usize>().is_ok() => (s, n.parse::<usize>().unwrap()),
            _ => (snippet, 1),
        };
        let start = e
            .text
            .match_indices(snippet)
            .nth(nth - 1)
            .map(|(i, _)| i)
            .unwrap_or_else(|| {
                panic!("rationales.txt:{at}: `{snippet}` (#{nth}) is not in the rationale")
            });
        e.labels.push(Label {
            verdict: parse_label(label.trim(), at),
            start,
            end: start + snippet.len(),
            snippet: snippet.to_string(),
        });
    }
    out
}

fn trace_of(task: &str, cache: &mut HashMap<String, Trace>) -> Trace {
    cache
        .entry(task.to_string())
        .or_insert_with(|| {
            let p = fixtures()
                .join("traces")
                .join(format!("{}.json", task.replace('/', "-")));
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .clone()
}

#[derive(Default, Debug)]
struct Tally {
    /// (checker said V, label is V)
    tp: HashMap<ClaimVerdict, usize>,
    /// checker said V
    said: HashMap<ClaimVerdict, usize>,
    /// labels V
    labelled: HashMap<ClaimVerdict, usize>,
    /// labels V found with verdict V
    found: HashMap<ClaimVerdict, usize>,
    verdict_right: usize,
    rationales: usize,
    claims_checked: usize,
    by_kind: HashMap<String, (usize, usize)>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Precision and recall of one labelled file.
struct Figures {
    p_contra: f64,
    r_contra: f64,
    p_supp: f64,
    r_supp: f64,
    acc: f64,
}

fn measure(file: &str) -> Figures {
    let entries = load(file);
    println!("== {file}");
    let mut cache = HashMap::new();
    let mut t = Tally::default();
    let mut misses = Vec::new();
    for e in &entries {
        let trace = trace_of(&e.task, &mut cache);
        let index = TraceIndex::new(&trace);
        let report = check_with(&index, &e.text);
        t.rationales += 1;
        t.claims_checked += report.claims.len();
        let k = t.by_kind.entry(e.kind.clone()).or_default();
        k.1 += 1;
        if report.verdict == e.verdict {
            t.verdict_right += 1;
            k.0 += 1;
        } else {
            misses.push(format!(
                "{file}:{} {} {}: verdict {} (labelled {})",
                e.line,
                e.task,
                e.kind,
                report.verdict.as_str(),
                e.verdict.as_str()
            ));
        }
        // Each extracted claim matches the label it overlaps most; none: not a claim.
        for c in &report.claims {
            let label = e
                .labels
                .iter()
                .filter(|l| l.start < c.claim.end && c.claim.start < l.end)
                .max_by_key(|l| l.end.min(c.claim.end) - l.start.max(c.claim.start))
                .map(|l| l.verdict)
                .unwrap_or(ClaimVerdict::Unverifiable);
            *t.said.entry(c.verdict).or_default() += 1;
            if label == c.verdict {
                *t.tp.entry(c.verdict).or_default() += 1;
            } else if c.verdict != ClaimVerdict::Unverifiable {
                misses.push(format!(
                    "{file}:{} {}: `{}` checked {} ({}), labelled {}",
                    e.line,
                    e.task,
                    c.text,
                    c.verdict.as_str(),
                    c.reason,
                    label.as_str()
                ));
            }
        }
        for l in &e.labels {
            *t.labelled.entry(l.verdict).or_default() += 1;
            let hit = report
                .claims
                .iter()
                .any(|c| c.verdict == l.verdict && l.start < c.claim.end && c.claim.start < l.end);
            if hit {
                *t.found.entry(l.verdict).or_default() += 1;
            } else if l.verdict != ClaimVerdict::Unverifiable {
                misses.push(format!(
                    "{file}:{} {}: labelled {} `{}` not found as such",
                    e.line,
                    e.task,
                    l.verdict.as_str(),
                    l.snippet
                ));
            }
        }
    }
    let get = |m: &HashMap<ClaimVerdict, usize>, v| m.get(&v).copied().unwrap_or(0);
    let (s, c) = (ClaimVerdict::Supported, ClaimVerdict::Contradicted);
    let p_contra = ratio(get(&t.tp, c), get(&t.said, c));
    let r_contra = ratio(get(&t.found, c), get(&t.labelled, c));
    let p_supp = ratio(get(&t.tp, s), get(&t.said, s));
    let r_supp = ratio(get(&t.found, s), get(&t.labelled, s));
    let acc = ratio(t.verdict_right, t.rationales);
    println!(
        "rationales: {}, claims extracted: {}",
        t.rationales, t.claims_checked
    );
    println!(
        "labelled claims: {} supported, {} contradicted, {} unverifiable",
        get(&t.labelled, s),
        get(&t.labelled, c),
        get(&t.labelled, ClaimVerdict::Unverifiable)
    );
    println!(
        "contradicted: precision {p_contra:.3} ({}/{}), recall {r_contra:.3} ({}/{})",
        get(&t.tp, c),
        get(&t.said, c),
        get(&t.found, c),
        get(&t.labelled, c)
    );
    println!(
        "supported: precision {p_supp:.3} ({}/{}), recall {r_supp:.3} ({}/{})",
        get(&t.tp, s),
        get(&t.said, s),
        get(&t.found, s),
        get(&t.labelled, s)
    );
    println!(
        "rationale verdict accuracy {acc:.3} ({}/{})",
        t.verdict_right, t.rationales
    );
    let mut kinds: Vec<_> = t.by_kind.iter().collect();
    kinds.sort();
    for (k, (right, n)) in kinds {
        println!("  {k}: {right}/{n} verdicts right");
    }
    for m in &misses {
        println!("  miss: {m}");
    }
    Figures {
        p_contra,
        r_contra,
        p_supp,
        r_supp,
        acc,
    }
}

#[test]
fn labelled_set_precision_and_recall() {
    assert!(load("rationales.txt").len() >= 60);
    let f = measure("rationales.txt");
    // Floors from the measured figures (docs/BENCHMARKS.md).
    assert!(
        f.p_contra >= 0.95,
        "contradicted precision {:.3}",
        f.p_contra
    );
    assert!(f.r_contra >= 0.90, "contradicted recall {:.3}", f.r_contra);
    assert!(f.p_supp >= 0.95, "supported precision {:.3}", f.p_supp);
    assert!(f.r_supp >= 0.90, "supported recall {:.3}", f.r_supp);
    assert!(f.acc >= 0.95, "verdict accuracy {:.3}", f.acc);
}

#[test]
fn held_out_set_precision_and_recall() {
    let f = measure("heldout.txt");
    // Floors from the measured held-out figures (16 rationales: one claim is 1/7 of the
    // contradicted recall, so recall floors stay below the measurement).
    assert!(
        f.p_contra >= 0.95,
        "contradicted precision {:.3}",
        f.p_contra
    );
    assert!(f.r_contra >= 0.70, "contradicted recall {:.3}", f.r_contra);
    assert!(f.p_supp >= 0.95, "supported precision {:.3}", f.p_supp);
    assert!(f.r_supp >= 0.85, "supported recall {:.3}", f.r_supp);
    assert!(f.acc >= 0.80, "verdict accuracy {:.3}", f.acc);
}

#[test]
fn checking_speed_on_the_labelled_set() {
    let entries = load("rationales.txt");
    let mut cache = HashMap::new();
    let traces: Vec<Trace> = entries
        .iter()
        .map(|e| trace_of(&e.task, &mut cache))
        .collect();
    let start = Instant::now();
    let mut claims = 0usize;
    let rounds = 20;
    for _ in 0..rounds {
        for (e, tr) in entries.iter().zip(&traces) {
            claims += check_with(&TraceIndex::new(tr), &e.text).claims.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} rationale checks, {claims} claims in {secs:.3} s: {:.0} claims/s, {:.0} rationales/s (index built per rationale)",
        rounds * entries.len(),
        claims as f64 / secs,
        (rounds * entries.len()) as f64 / secs
    );
    assert!(claims > 0);
}
