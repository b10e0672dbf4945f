//! Loaders over the real files: record counts, pins, and error messages naming file and line.

mod common;

use nxt_data::loaders::*;
use nxt_data::registry::{self, FileStatus, DATASETS};

#[test]
fn record_counts_and_pins_match_the_real_files() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    for f in DATASETS {
        assert_eq!(
            registry::file_status(&dir, f).unwrap(),
            FileStatus::Ok,
            "{}",
            f.name
        );
    }
    let p = |n| registry::locate(&dir, n).unwrap();
    assert_eq!(load_mbpp(&p("mbpp")).unwrap().len(), 974);
    assert_eq!(
        load_mbpp_sanitized(&p("mbpp-sanitized")).unwrap().len(),
        427
    );
    assert_eq!(load_humaneval(&p("humaneval")).unwrap().len(), 164);
    let fix = load_humanevalfix(&p("humanevalfix")).unwrap();
    assert_eq!(fix.len(), 164);
    assert_eq!(
        fix.iter()
            .filter(|r| r.failure_symptoms == "infinite loop")
            .count(),
        3
    );
    let hp = load_evalplus(&p("humaneval+")).unwrap();
    assert_eq!(hp.len(), 164);
    assert_eq!(
        hp.iter()
            .find(|r| r.task_id == "HumanEval/32")
            .unwrap()
            .atol,
        1e-4
    );
    let mp = load_evalplus(&p("mbpp+")).unwrap();
    assert_eq!(mp.len(), 378);
    // MBPP+ inputs hold Python's non-standard `Infinity` tokens; they are kept verbatim.
    assert!(mp.iter().any(|r| r.plus_input_json.contains("Infinity")));
    assert!(mp.iter().all(|r| r.assertion.is_some()));
}

#[test]
fn malformed_files_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("HumanEval.jsonl");
    std::fs::write(&path, "{\"task_id\": \"HumanEval/0\", \"prompt\": \"p\", \"entry_point\": \"f\", \"canonical_solution\": \"\", \"test\": \"\"}\n{\"task_id\": 3}\n").unwrap();
    let e = load_humaneval(&path).unwrap_err().to_string();
    assert!(
        e.contains("HumanEval.jsonl:2") && e.contains("bad record"),
        "{e}"
    );

    let path = dir.path().join("plus.jsonl");
    std::fs::write(&path, "{\"task_id\": \"HumanEval/0\", \"entry_point\": \"f\", \"canonical_solution\": \"x\", \"base_input\": [[1]], \"plus_input\": [[2], \"atol\": 0}\n").unwrap();
    let e = load_evalplus(&path).unwrap_err().to_string();
    assert!(e.contains("plus.jsonl:1"), "{e}");

    let path = dir.path().join("mbpp.jsonl");
    std::fs::write(&path, "{\"task_id\": 1, \"text\": \"t\", \"code\": \"c\", \"test_setup_code\": \"\", \"test_list\": []}\n").unwrap();
    let e = load_mbpp(&path).unwrap_err().to_string();
    assert!(
        e.contains("mbpp.jsonl:1") && e.contains("empty test_list"),
        "{e}"
    );

    let path = dir.path().join("fix.jsonl");
    std::fs::write(&path, "not json\n").unwrap();
    let e = load_humanevalfix(&path).unwrap_err().to_string();
    assert!(e.contains("fix.jsonl:1"), "{e}");
}
