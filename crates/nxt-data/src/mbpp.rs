//! MBPP problems as repair tasks: the task of one MBPP record (full or sanitized release) and
//! its entry point, shared by the grading-only `mbpp` benchmarks and by MBPP-R.

use nxt_sandbox::SetupPlacement;

use crate::loaders::{MbppRecord, MbppSanitizedRecord};
use crate::task::{RepairTask, SourceDataset, Split, TaskMeta, TestSuite};

/// MBPP problems as grading-only tasks `mbpp/<id>` (setup code after the program).
pub fn mbpp_tasks(records: &[MbppRecord]) -> Vec<RepairTask> {
    records
        .iter()
        .map(|r| mbpp_task(r, format!("mbpp/{}", r.task_id), String::new(), None))
        .collect()
}

/// One MBPP-based task with the given id and buggy program.
pub fn mbpp_task(
    r: &MbppRecord,
    id: String,
    buggy_program: String,
    origin: Option<String>,
) -> RepairTask {
    let setup =
        (!r.test_setup_code.trim().is_empty()).then(|| r.test_setup_code.replace("\r\n", "\n"));
    let suite = TestSuite {
        setup,
        setup_placement: SetupPlacement::AfterProgram,
        tests: r.test_list.clone(),
        comparison: nxt_sandbox::Comparison::Plain,
    };
    RepairTask {
        id,
        problem: r.text.clone(),
        buggy_program,
        entry_point: mbpp_entry_point(r).unwrap_or_default(),
        prompt_tests: suite.clone(),
        grading_tests: suite,
        reference: Some(r.code.replace("\r\n", "\n")),
        meta: TaskMeta {
            source_dataset: SourceDataset::Mbpp,
            source_task_id: r.task_id.to_string(),
            split: Split::of_mbpp_task(r.task_id).unwrap_or(Split::Test),
            bug_type: None,
            failure_symptoms: None,
            origin,
            code_prompt: None,
        },
    }
}

/// The function the MBPP tests call: the first name called in the first test that the
/// reference defines with `def`.
pub fn mbpp_entry_point(r: &MbppRecord) -> Option<String> {
    let defs: Vec<&str> = r
        .code
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("def "))
        .filter_map(|l| l.split('(').next())
        .map(str::trim)
        .collect();
    let test = r.test_list.first()?;
    let mut best: Option<(usize, &str)> = None;
    for d in &defs {
        if let Some(pos) = find_call(test, d) {
            if best.is_none_or(|(p, _)| pos < p) {
                best = Some((pos, d));
            }
        }
    }
    best.map(|(_, d)| d.to_string())
        .or_else(|| defs.last().map(|s| s.to_string()))
}

fn find_call(hay: &str, name: &str) -> Option<usize> {
    let pat = format!("{name}(");
    let mut start = 0;
    while let Some(p) = hay[start..].find(&pat) {
        let at = start + p;
        let prev = hay[..at].chars().next_back();
        if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            return Some(at);
        }
        start = at + 1;
    }
    None
}

/// MBPP sanitized problems as grading-only tasks `mbpp-sanitized/<id>` (imports before).
pub fn mbpp_sanitized_tasks(records: &[MbppSanitizedRecord]) -> Vec<RepairTask> {
    records
        .iter()
        .map(|r| {
            let setup = (!r.test_imports.is_empty()).then(|| r.test_imports.join("\n"));
            let suite = TestSuite {
                setup,
                setup_placement: SetupPlacement::BeforeProgram,
                tests: r.test_list.clone(),
                comparison: nxt_sandbox::Comparison::Plain,
            };
            let as_full = MbppRecord {
                task_id: r.task_id,
                text: r.prompt.clone(),
                code: r.code.clone(),
                test_setup_code: String::new(),
                test_list: r.test_list.clone(),
                challenge_test_list: vec![],
            };
            RepairTask {
                id: format!("mbpp-sanitized/{}", r.task_id),
                problem: r.prompt.clone(),
                buggy_program: String::new(),
                entry_point: mbpp_entry_point(&as_full).unwrap_or_default(),
                prompt_tests: suite.clone(),
                grading_tests: suite,
                reference: Some(r.code.clone()),
                meta: TaskMeta {
                    source_dataset: SourceDataset::MbppSanitized,
                    source_task_id: r.task_id.to_string(),
                    split: Split::of_mbpp_task(r.task_id).unwrap_or(Split::Test),
                    bug_type: None,
                    failure_symptoms: None,
                    origin: None,
                    code_prompt: None,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbpp_entry_point_is_the_called_def() {
        let r = MbppRecord {
            task_id: 5,
            text: String::new(),
            code: "def helper(x):\n  return x\ndef main_fn(a):\n  return helper(a)".into(),
            test_setup_code: String::new(),
            test_list: vec!["assert main_fn(3) == 3".into()],
            challenge_test_list: vec![],
        };
        assert_eq!(mbpp_entry_point(&r).as_deref(), Some("main_fn"));
    }
}
