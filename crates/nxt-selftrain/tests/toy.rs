//! The toy benchmark of the CPU demo, through the real sandbox and tracer: deterministic
//! generation, template-disjoint splits, checked buggy programs and references, and
//! warm-start completions that parse back to the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nxt_core::parse::parse_completion;
use nxt_data::grading_limits;
use nxt_sandbox::{Pool, PoolConfig, TestOutcome};
use nxt_selftrain::toy::{
    load_tasks, prepare_toy, split_templates, template_of, templates, ToyError, ToyModelShape,
    ToyOptions, WarmStartExample,
};

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(PoolConfig::default()).expect("sandbox with full isolation"))
}

fn small() -> ToyOptions {
    ToyOptions {
        seed: 3,
        instances_per_template: 2,
        warm_start: 12,
        corpus_tasks: 24,
        model: ToyModelShape {
            hidden_size: 16,
            intermediate_size: 32,
            num_merges: 300,
            ..ToyModelShape::default()
        },
        ..ToyOptions::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-toy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One prepared toy shared by the tests of this file (generation takes a few seconds).
fn prepared() -> &'static (PathBuf, nxt_selftrain::toy::ToyArtifacts) {
    static TOY: OnceLock<(PathBuf, nxt_selftrain::toy::ToyArtifacts)> = OnceLock::new();
    TOY.get_or_init(|| {
        let dir = tmp("shared");
        let art = prepare_toy(&dir, &small(), pool()).expect("prepare_toy");
        (dir, art)
    })
}

#[test]
fn generation_is_deterministic_and_reused() {
    let (dir, art) = prepared();
    assert!(!art.reused);
    let other = tmp("again");
    let again = prepare_toy(&other, &small(), pool()).expect("second directory");
    for f in [
        "train.jsonl",
        "dev.jsonl",
        "test.jsonl",
        "warm_start.jsonl",
        "tokenizer_corpus.txt",
        "model/tokenizer.json",
        "model/config.json",
    ] {
        assert_eq!(read(&dir.join(f)), read(&other.join(f)), "{f} differs");
    }
    assert_eq!(
        std::fs::read(dir.join("model/model.safetensors")).ok(),
        std::fs::read(other.join("model/model.safetensors")).ok()
    );
    // Same options, same directory: reused as is.
    let reused = prepare_toy(&other, &small(), pool()).expect("reuse");
    assert!(reused.reused);
    assert_eq!(reused.counts, again.counts);
    // Other options: refused, naming the option.
    let changed = ToyOptions { seed: 4, ..small() };
    match prepare_toy(&other, &changed, pool()) {
        Err(ToyError::OptionsChanged { key, .. }) => assert_eq!(key, "seed"),
        other => panic!("expected OptionsChanged, got {other:?}"),
    }
    // A different seed gives different tasks.
    let third = tmp("seed4");
    prepare_toy(&third, &changed, pool()).expect("seed 4");
    assert_ne!(
        read(&dir.join("train.jsonl")),
        read(&third.join("train.jsonl"))
    );
    for d in [other, third] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn splits_are_disjoint_by_template_and_cover_slot_values() {
    let (_, art) = prepared();
    let mut split_of: BTreeMap<String, String> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (name, path) in [
        ("train", &art.train),
        ("dev", &art.dev),
        ("test", &art.test),
    ] {
        let tasks = load_tasks(path).expect("tasks");
        assert!(!tasks.is_empty(), "{name} is empty");
        assert_eq!(art.counts.get(name), Some(&tasks.len()));
        for t in &tasks {
            assert!(ids.insert(t.id.clone()), "duplicate id {}", t.id);
            let tid = template_of(t).expect("toy task").to_string();
            let prev = split_of.insert(tid.clone(), name.to_string());
            assert!(
                prev.is_none() || prev.as_deref() == Some(name),
                "template {tid} in {prev:?} and {name}"
            );
        }
    }
    let opts = small();
    let held: Vec<_> = split_of.values().filter(|s| *s != "train").collect();
    assert_eq!(held.len(), opts.dev_templates + opts.test_templates);
    // Every slot value of a held-out template occurs in training.
    let all = templates();
    let train_slots: BTreeSet<String> = all
        .iter()
        .filter(|t| split_of.get(&t.id).map(String::as_str) == Some("train"))
        .flat_map(|t| t.slot_values())
        .collect();
    for t in all
        .iter()
        .filter(|t| split_of.get(&t.id).map(String::as_str) != Some("train"))
    {
        for v in t.slot_values() {
            assert!(train_slots.contains(&v), "{}: {v} not in training", t.id);
        }
    }
    // The split is a function of the seed.
    let a = split_templates(11, 6, 6).expect("split");
    assert_eq!(a, split_templates(11, 6, 6).expect("split"));
    assert_ne!(a, split_templates(12, 6, 6).expect("split"));
    let summary: serde_json::Value =
        serde_json::from_str(&read(&art.summary)).expect("summary json");
    assert_eq!(
        summary["counts"]["dev"].as_u64(),
        art.counts.get("dev").map(|n| *n as u64)
    );
    assert!(summary["per_bug_type"]["train"]
        .as_object()
        .is_some_and(|m| m.len() >= 5));
}

#[test]
fn buggy_programs_fail_a_prompt_test_and_references_pass_all() {
    let (_, art) = prepared();
    let mut tasks = Vec::new();
    for p in [&art.train, &art.dev, &art.test] {
        tasks.extend(load_tasks(p).expect("tasks"));
    }
    let mut jobs = Vec::new();
    for t in &tasks {
        assert_eq!(t.prompt_tests.tests.len(), 3, "{}", t.id);
        assert!(t.grading_tests.tests.len() >= 6, "{}", t.id);
        for s in &t.prompt_tests.tests {
            assert!(t.grading_tests.tests.contains(s), "{}: {s}", t.id);
        }
        let reference = t.reference.as_deref().expect("reference");
        assert_ne!(reference, t.buggy_program);
        jobs.push(t.prompt_job(&t.buggy_program, grading_limits()));
        jobs.push(t.grading_job(reference, grading_limits()));
    }
    let mut results = vec![None; jobs.len()];
    pool().run_many(&jobs, |i, r| results[i] = Some(r.expect("sandbox")));
    for (i, t) in tasks.iter().enumerate() {
        let buggy = results[2 * i].as_ref().expect("result");
        let fails = buggy.load_error.is_some()
            || buggy.tests.iter().any(|r| r.outcome != TestOutcome::Passed);
        assert!(
            fails,
            "{}: the buggy program passes every prompt test",
            t.id
        );
        let reference = results[2 * i + 1].as_ref().expect("result");
        assert!(
            reference.load_error.is_none()
                && reference
                    .tests
                    .iter()
                    .all(|r| r.outcome == TestOutcome::Passed),
            "{}: the reference fails: {reference:?}",
            t.id
        );
    }
}

#[test]
fn warm_start_completions_parse_to_the_reference() {
    let (_, art) = prepared();
    let train: BTreeMap<String, _> = load_tasks(&art.train)
        .expect("train")
        .into_iter()
        .map(|t| (t.id.clone(), t))
        .collect();
    let examples: Vec<WarmStartExample> = read(&art.warm_start)
        .lines()
        .map(|l| serde_json::from_str(l).expect("warm-start line"))
        .collect();
    assert_eq!(examples.len(), small().warm_start);
    let templates_seen: BTreeSet<_> = examples
        .iter()
        .filter_map(|e| train.get(&e.id).and_then(template_of))
        .collect();
    assert_eq!(
        templates_seen.len(),
        examples.len(),
        "round robin over templates"
    );
    for e in &examples {
        let task = train
            .get(&e.id)
            .expect("warm-start task is a training task");
        let parsed = parse_completion(&e.completion, Some(&task.entry_point), &task.buggy_program);
        assert_eq!(
            parsed.program.as_deref().map(str::trim),
            task.reference.as_deref().map(str::trim),
            "{}",
            e.id
        );
        assert!(e.prompt.ends_with("### Rationale\n"));
        assert!(e
            .prompt
            .contains(&task.buggy_program.trim_end().to_string()));
        assert!(e.prompt.contains("### Execution trace"), "{}", e.prompt);
        assert!(
            parsed.rationale.contains("the trace shows `__"),
            "{}",
            parsed.rationale
        );
    }
}
