//! The repair task (re-exported from `nxt-data`) and small helpers around it.

pub use nxt_data::{RepairTask, Split, TaskMeta, TestSuite};

/// A repair task built from loose parts (`nxt repair --program bug.py --tests tests.py`): the
/// shown tests also grade it. The entry point is the first function defined in `program` that
/// the tests call (else the last one defined).
pub fn adhoc_task(task_id: &str, problem: &str, program: &str, tests: Vec<String>) -> RepairTask {
    let entry_point = guess_entry_point(&tests, program).unwrap_or_default();
    RepairTask {
        id: task_id.to_string(),
        problem: problem.to_string(),
        buggy_program: program.to_string(),
        entry_point,
        prompt_tests: TestSuite::plain(tests.clone()),
        grading_tests: TestSuite::plain(tests),
        reference: None,
        meta: TaskMeta {
            source_dataset: nxt_data::SourceDataset::Mbpp,
            source_task_id: task_id.to_string(),
            split: Split::Test,
            bug_type: None,
            failure_symptoms: None,
            origin: Some("user".to_string()),
            code_prompt: None,
        },
    }
}

/// Guess the entry point: the first function defined in `program` that the tests call.
pub fn guess_entry_point(tests: &[String], program: &str) -> Option<String> {
    let defs: Vec<String> = program
        .lines()
        .filter_map(|l| {
            let r = l.strip_prefix("def ")?;
            let name: String = r
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect();
    let called = |name: &str| {
        tests.iter().any(|t| {
            t.match_indices(name).any(|(i, _)| {
                let before_ok = i == 0
                    || !t[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
                let after = &t[i + name.len()..];
                before_ok && after.trim_start().starts_with('(')
            })
        })
    };
    defs.iter()
        .find(|d| called(d))
        .or_else(|| defs.last())
        .cloned()
}

/// Split a tests file into statements: each top-level statement (with its indented lines,
/// clauses and decorators, continued over brackets, strings and backslashes as Python's
/// tokenizer does; see [`crate::pysource`]) is one test; blank lines and comments between
/// statements are dropped.
pub fn split_tests(text: &str) -> Vec<String> {
    crate::pysource::top_level_statements(text)
        .into_iter()
        .map(|s| s.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_is_the_called_function() {
        let p = "def helper(x):\n    return x\ndef main_fn(x):\n    return helper(x)\n";
        let t = vec!["assert main_fn(1) == 1".to_string()];
        assert_eq!(guess_entry_point(&t, p).as_deref(), Some("main_fn"));
        let t = vec!["assert 1 == 1".to_string()];
        assert_eq!(guess_entry_point(&t, p).as_deref(), Some("main_fn"));
        assert_eq!(guess_entry_point(&t, "x = 1\n"), None);
        let task = adhoc_task("x/1", "spec", p, vec!["assert helper(2) == 2".into()]);
        assert_eq!(task.entry_point, "helper");
    }

    #[test]
    fn tests_file_splits_into_statements() {
        let t = "# tests\nassert f(1) == 2\n\nassert f(\n    3,\n) == 4\nfor x in [1]:\n    assert f(x)\n";
        assert_eq!(
            split_tests(t),
            vec![
                "assert f(1) == 2",
                "assert f(\n    3,\n) == 4",
                "for x in [1]:\n    assert f(x)"
            ]
        );
    }

    #[test]
    fn brackets_and_hashes_in_strings_do_not_merge_or_cut_tests() {
        let t = "assert f(')') == 1\nassert g('#(') == 2\nassert h(\"\"\"\n)\"\"\") == 3\nassert f'{x[\"(\"]}' == '4'\nassert k(1) == 5\n";
        assert_eq!(
            split_tests(t),
            vec![
                "assert f(')') == 1",
                "assert g('#(') == 2",
                "assert h(\"\"\"\n)\"\"\") == 3",
                "assert f'{x[\"(\"]}' == '4'",
                "assert k(1) == 5"
            ]
        );
    }
}
