//! `grade_samples` over real MBPP tasks: pass@k from the sandbox's verdicts, stored per sample
//! in SQLite, and a rerun grades only what is missing or changed.

mod common;

use nxt_data::loaders::load_mbpp;
use nxt_data::mbpp::mbpp_tasks;
use nxt_data::registry::locate;
use nxt_data::samples::{grade_samples, read_samples};
use nxt_data::store::GradeStore;
use nxt_data::{pass_at_k, Executor};

#[test]
fn grading_is_resumable_and_computes_pass_at_k() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let pool = common::pool();
    let mbpp = load_mbpp(&locate(&dir, "mbpp").unwrap()).unwrap();
    let tasks = mbpp_tasks(&mbpp[10..13]); // mbpp/11, 12, 13
    let tmp = tempfile::tempdir().unwrap();
    let samples_path = tmp.path().join("samples.jsonl");
    // Per task: the reference (passes) and a broken program (fails), in three layouts;
    // task 11 gets 5 samples (2 correct) to exercise pass@k.
    let mut lines = Vec::new();
    for t in &tasks {
        let good = t.reference.clone().unwrap();
        lines.push(serde_json::json!({"task_id": t.id, "program": good}));
        lines.push(serde_json::json!({"task_id": t.meta.source_task_id.parse::<u32>().unwrap(), "solution": "def f(:\n"}));
    }
    lines.push(serde_json::json!({"task_id": "mbpp/11", "completion": tasks[0].reference.clone().unwrap()}));
    lines.push(serde_json::json!({"task_id": "mbpp/11", "program": "raise SystemExit(0)"}));
    lines.push(serde_json::json!({"task_id": "Mbpp/11", "program": "def remove_Occ(s, ch):\n    return s\n"}));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&samples_path, &text).unwrap();
    let samples = read_samples(&samples_path, &tasks).unwrap();
    assert_eq!(samples.len(), 9);

    let db = tmp.path().join("grades.sqlite");
    let store = GradeStore::open(&db).unwrap();
    let r1 = grade_samples(
        pool as &dyn Executor,
        "mbpp",
        &tasks,
        &samples,
        &store,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!((r1.graded_now, r1.from_store), (9, 0));
    let t11 = r1.tasks.iter().find(|t| t.task_id == "mbpp/11").unwrap();
    assert_eq!((t11.n, t11.c), (5, 2));
    for t in r1.tasks.iter().filter(|t| t.task_id != "mbpp/11") {
        assert_eq!((t.n, t.c), (2, 1), "{}", t.task_id);
    }
    // Overall pass@1 = mean of c/n; only k <= min n (= 2) are reported.
    let want = (pass_at_k(5, 2, 1) + 0.5 + 0.5) / 3.0;
    assert!((r1.pass_at_k["pass@1"] - want).abs() < 1e-12);
    assert_eq!(r1.pass_at_k.len(), 1);
    drop(store);

    // Rerun: nothing to grade.
    let store = GradeStore::open(&db).unwrap();
    let r2 = grade_samples(
        pool as &dyn Executor,
        "mbpp",
        &tasks,
        &samples,
        &store,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!((r2.graded_now, r2.from_store), (0, 9));
    assert_eq!(r2.pass_at_k, r1.pass_at_k);

    // Change one sample's program and add one: only those two are graded.
    lines[1] =
        serde_json::json!({"task_id": "mbpp/11", "program": tasks[0].reference.clone().unwrap()});
    lines.push(serde_json::json!({"task_id": "mbpp/12", "program": "x = 1\n"}));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&samples_path, &text).unwrap();
    let samples = read_samples(&samples_path, &tasks).unwrap();
    let r3 = grade_samples(
        pool as &dyn Executor,
        "mbpp",
        &tasks,
        &samples,
        &store,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!((r3.graded_now, r3.from_store), (2, 8));
    let t11 = r3.tasks.iter().find(|t| t.task_id == "mbpp/11").unwrap();
    assert_eq!((t11.n, t11.c), (5, 3));

    // Unknown task ids are reported with file and line.
    std::fs::write(
        &samples_path,
        "{\"task_id\": \"mbpp/99\", \"program\": \"\"}\n",
    )
    .unwrap();
    let e = read_samples(&samples_path, &tasks).unwrap_err().to_string();
    assert!(
        e.contains("samples.jsonl:1") && e.contains("mbpp/99"),
        "{e}"
    );
}
