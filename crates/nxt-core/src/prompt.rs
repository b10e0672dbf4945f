//! The NExT repair prompt: problem statement, buggy program, tests and the inline execution
//! trace of the buggy program on its failing test, in chat or plain-completion layout,
//! few-shot (3 exemplars, for base models) or zero-shot (for fine-tuned models), with or
//! without the trace. Also the proxy prompt (a rationale instead of a trace) and the answer
//! format that training data must follow.

use nxt_llm::{ChatMessage, Prompt};
use serde::{Deserialize, Serialize};

use crate::exemplars::{exemplars, Exemplar};
use crate::parse::prose_only;
use crate::task::RepairTask;

/// How the prompt is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Chat messages (system, then user/assistant turns): instruction-tuned models.
    #[default]
    Chat,
    /// One text to continue: base models on `/v1/completions`.
    Completion,
}

/// Prompt settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptOptions {
    /// Layout.
    pub layout: Layout,
    /// Include the 3 worked exemplars (few-shot) or not (zero-shot).
    pub few_shot: bool,
    /// Include the execution trace (the without-trace variant sets this to false).
    pub with_trace: bool,
}

impl Default for PromptOptions {
    fn default() -> Self {
        Self {
            layout: Layout::Chat,
            few_shot: true,
            with_trace: true,
        }
    }
}

/// The trace of the buggy program shown in a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTrace {
    /// The test the program was traced on.
    pub test: String,
    /// The rendered inline trace (program with trace comments, then the test line).
    pub text: String,
}

const SYSTEM_TRACE: &str = "You are an expert Python programmer. You are given a programming problem, a buggy Python program that tries to solve it, the unit tests it must pass, and the execution trace of the buggy program on a failing test. In the trace, every line is followed by a comment listing, in execution order, the values that the line assigned: `(k)` numbers the steps of the run, `__return__` is a returned value and `__exception__` a raised exception. First explain, step by step, what the program does on the failing test, quoting the concrete values from the trace, and where and why it goes wrong. Then write the complete fixed program in one ```python code block.";

const SYSTEM_NO_TRACE: &str = "You are an expert Python programmer. You are given a programming problem, a buggy Python program that tries to solve it, and the unit tests it must pass. First explain, step by step, what the program does on a failing test and where and why it goes wrong. Then write the complete fixed program in one ```python code block.";

const SYSTEM_PROXY: &str = "You are a Python programmer. You are given a programming problem, a buggy Python program that tries to solve it, the unit tests it must pass, and an explanation of the bug written by a colleague. Write the complete fixed program in one ```python code block.";

/// The header of the answer's rationale section.
pub const RATIONALE_HEADING: &str = "### Rationale";
/// The header of the answer's program section.
pub const PROGRAM_HEADING: &str = "### Fixed program";
/// The header that starts every task in a prompt (completion layout stops before a new one).
pub const PROBLEM_HEADING: &str = "### Problem";

fn code_block(code: &str) -> String {
    format!("```python\n{}\n```", code.trim_end_matches('\n'))
}

/// The task block: problem, buggy program, tests and (optionally) the trace.
pub fn task_block(
    spec: &str,
    program: &str,
    tests: &[String],
    trace: Option<&PromptTrace>,
) -> String {
    let mut s = format!(
        "{PROBLEM_HEADING}\n{}\n\n### Buggy program\n{}\n\n### Tests\n{}\n",
        spec.trim(),
        code_block(program),
        code_block(&tests.join("\n")),
    );
    if let Some(t) = trace {
        s.push_str(&format!(
            "\n### Execution trace of the buggy program on the failing test `{}`\n{}\n",
            one_line(&t.test),
            code_block(&t.text)
        ));
    }
    s
}

fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        let head: String = flat.chars().take(197).collect();
        format!("{head}...")
    } else {
        flat
    }
}

/// The answer format: rationale, then the fixed program. Training targets use this too.
pub fn format_answer(rationale: &str, fixed_program: &str) -> String {
    format!(
        "{RATIONALE_HEADING}\n{}\n\n{PROGRAM_HEADING}\n{}\n",
        rationale.trim(),
        code_block(fixed_program)
    )
}

fn exemplar_block(e: &Exemplar, with_trace: bool) -> (String, String) {
    let trace = PromptTrace {
        test: e.failing_test.clone(),
        text: e.trace.clone(),
    };
    let user = task_block(&e.spec, &e.program, &e.tests, with_trace.then_some(&trace));
    (user, format_answer(&e.rationale, &e.fixed))
}

/// Build the repair prompt for one task. `trace` is ignored when `opts.with_trace` is false;
/// when it is true and `trace` is None (the tracer failed), the prompt says so instead.
pub fn build_prompt(
    task: &RepairTask,
    trace: Option<&PromptTrace>,
    opts: &PromptOptions,
) -> Prompt {
    let system = if opts.with_trace {
        SYSTEM_TRACE
    } else {
        SYSTEM_NO_TRACE
    };
    let mut user = task_block(
        &task.problem,
        &task.buggy_program,
        &task.prompt_tests.tests,
        if opts.with_trace { trace } else { None },
    );
    if opts.with_trace && trace.is_none() {
        user.push_str("\n(No execution trace is available for this program.)\n");
    }
    let shots: Vec<(String, String)> = if opts.few_shot {
        exemplars()
            .iter()
            .map(|e| exemplar_block(e, opts.with_trace))
            .collect()
    } else {
        Vec::new()
    };
    layout(system, shots, user, opts.layout)
}

/// The proxy prompt: problem, buggy program, tests and a rationale (no trace); the proxy
/// model must write the fix. Few-shot uses the exemplars' rationales.
///
/// The proxy sees the rationale's prose only ([`prose_only`]): its code blocks (a draft of
/// the fix, say) are replaced by a marker, so that the proxy's score measures the
/// explanation, not a fix copied from it.
pub fn build_proxy_prompt(task: &RepairTask, rationale: &str, opts: &PromptOptions) -> Prompt {
    let with_rationale = |spec: &str, program: &str, tests: &[String], r: &str| {
        format!(
            "{}\n### Explanation of the bug\n{}\n",
            task_block(spec, program, tests, None),
            prose_only(r)
        )
    };
    let shots: Vec<(String, String)> = if opts.few_shot {
        exemplars()
            .iter()
            .map(|e| {
                (
                    with_rationale(&e.spec, &e.program, &e.tests, &e.rationale),
                    format!("{PROGRAM_HEADING}\n{}\n", code_block(&e.fixed)),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let user = with_rationale(
        &task.problem,
        &task.buggy_program,
        &task.prompt_tests.tests,
        rationale,
    );
    let mut prompt = layout(SYSTEM_PROXY, shots, user, opts.layout);
    if let Prompt::Text(t) = &mut prompt {
        // The answer starts with the program heading, not a rationale.
        let cut = t.len() - RATIONALE_HEADING.len() - 1;
        t.truncate(cut);
        t.push_str(PROGRAM_HEADING);
        t.push('\n');
    }
    prompt
}

fn layout(system: &str, shots: Vec<(String, String)>, user: String, layout: Layout) -> Prompt {
    match layout {
        Layout::Chat => {
            let mut msgs = vec![ChatMessage {
                role: "system".into(),
                content: system.into(),
            }];
            for (u, a) in shots {
                msgs.push(ChatMessage {
                    role: "user".into(),
                    content: u,
                });
                msgs.push(ChatMessage {
                    role: "assistant".into(),
                    content: a,
                });
            }
            msgs.push(ChatMessage {
                role: "user".into(),
                content: user,
            });
            Prompt::Chat(msgs)
        }
        Layout::Completion => {
            let mut s = format!("{system}\n\n");
            for (u, a) in shots {
                s.push_str(&u);
                s.push('\n');
                s.push_str(&a);
                s.push('\n');
            }
            s.push_str(&user);
            s.push('\n');
            s.push_str(RATIONALE_HEADING);
            s.push('\n');
            Prompt::Text(s)
        }
    }
}

/// Stop strings for a layout: a completion-layout model would otherwise go on to invent the
/// next task.
pub fn stop_strings(layout: Layout) -> Vec<String> {
    match layout {
        Layout::Chat => Vec::new(),
        Layout::Completion => vec![format!("\n{PROBLEM_HEADING}\n")],
    }
}

/// The text of a prompt, for display and token estimates (chat turns labelled by role).
pub fn prompt_text(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(msgs) => msgs
            .iter()
            .map(|m| format!("<{}>\n{}\n", m.role, m.content))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> RepairTask {
        crate::task::adhoc_task(
            "t/1",
            "Return the double of x.",
            "def dbl(x):\n    return x + 2\n",
            vec!["assert dbl(1) == 2".into(), "assert dbl(3) == 6".into()],
        )
    }

    fn trace() -> PromptTrace {
        PromptTrace {
            test: "assert dbl(3) == 6".into(),
            text: "def dbl(x):  # (0) x=3;\n    return x + 2  # (1) __return__=5;\n\nassert dbl(3) == 6  # (2) __exception__ = AssertionError()".into(),
        }
    }

    #[test]
    fn chat_few_shot_has_three_exemplar_turns_and_the_trace() {
        let p = build_prompt(&task(), Some(&trace()), &PromptOptions::default());
        let Prompt::Chat(m) = p else {
            panic!("chat expected")
        };
        assert_eq!(m.len(), 1 + 2 * 3 + 1);
        assert_eq!(m[0].role, "system");
        assert!(m[0].content.contains("execution trace"));
        for i in 0..3 {
            assert_eq!(m[1 + 2 * i].role, "user");
            assert!(m[1 + 2 * i].content.contains("### Execution trace"));
            assert_eq!(m[2 + 2 * i].role, "assistant");
            assert!(m[2 + 2 * i].content.starts_with(RATIONALE_HEADING));
            assert!(m[2 + 2 * i].content.contains("```python\n"));
        }
        let last = &m[7].content;
        assert!(last.contains("Return the double of x."));
        assert!(last.contains("def dbl(x):\n    return x + 2\n```"));
        assert!(last.contains("assert dbl(1) == 2\nassert dbl(3) == 6"));
        assert!(last.contains("(1) __return__=5;"));
        assert!(last.contains("on the failing test `assert dbl(3) == 6`"));
    }

    #[test]
    fn zero_shot_without_trace() {
        let opts = PromptOptions {
            layout: Layout::Chat,
            few_shot: false,
            with_trace: false,
        };
        let Prompt::Chat(m) = build_prompt(&task(), Some(&trace()), &opts) else {
            panic!()
        };
        assert_eq!(m.len(), 2);
        assert!(!m[1].content.contains("trace"));
        assert!(!m[0].content.contains("trace"));
    }

    #[test]
    fn missing_trace_is_said() {
        let Prompt::Chat(m) = build_prompt(
            &task(),
            None,
            &PromptOptions {
                few_shot: false,
                ..Default::default()
            },
        ) else {
            panic!()
        };
        assert!(m[1].content.contains("No execution trace is available"));
    }

    #[test]
    fn completion_layout_ends_with_rationale_heading_and_stops_at_next_problem() {
        let opts = PromptOptions {
            layout: Layout::Completion,
            few_shot: true,
            with_trace: true,
        };
        let Prompt::Text(t) = build_prompt(&task(), Some(&trace()), &opts) else {
            panic!()
        };
        assert!(t.ends_with("### Rationale\n"));
        assert_eq!(t.matches(PROBLEM_HEADING).count(), 4);
        assert_eq!(t.matches(PROGRAM_HEADING).count(), 3);
        let stops = stop_strings(Layout::Completion);
        // No exemplar answer contains a stop string (else the few-shot text would be cut).
        for e in exemplars() {
            let a = format_answer(&e.rationale, &e.fixed);
            assert!(stops.iter().all(|s| !a.contains(s.as_str())));
        }
    }

    #[test]
    fn proxy_prompt_has_rationale_no_trace() {
        let opts = PromptOptions {
            layout: Layout::Completion,
            few_shot: false,
            with_trace: true,
        };
        let Prompt::Text(t) = build_proxy_prompt(&task(), "It adds 2 instead of doubling.", &opts)
        else {
            panic!()
        };
        assert!(t.contains("### Explanation of the bug\nIt adds 2 instead of doubling."));
        assert!(!t.contains("Execution trace"));
        assert!(t.ends_with("### Fixed program\n"), "{t}");
        let Prompt::Chat(m) = build_proxy_prompt(&task(), "r", &PromptOptions::default()) else {
            panic!()
        };
        assert_eq!(m.len(), 8);
        assert!(m[2].content.starts_with(PROGRAM_HEADING));
    }

    #[test]
    fn no_line_of_the_sampled_fix_reaches_the_proxy_prompt() {
        // A completion that drafts the fix in fenced and unfenced code before the final block.
        let fix = "def dbl(x):\n    doubled = x * 2  # times two\n    return doubled\n";
        let completion = format!(
            "The program adds 2 where it should multiply by 2: `x + 2` gives 5 for 3.\n\
             A first attempt:\n```python\n{fix}```\nOr, without fences:\n\n{fix}\n\
             That is the idea.\n\n### Fixed program\n```python\n{fix}```\n"
        );
        let parsed =
            crate::parse::parse_completion(&completion, Some("dbl"), &task().buggy_program);
        assert_eq!(parsed.program.as_deref(), Some(fix));
        assert!(
            parsed.rationale.contains("doubled = x * 2"),
            "{}",
            parsed.rationale
        );
        for opts in [
            PromptOptions::default(),
            PromptOptions {
                layout: Layout::Completion,
                ..PromptOptions::default()
            },
        ] {
            let text = |p: Prompt| match p {
                Prompt::Text(t) => t,
                Prompt::Chat(m) => m
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            let without = text(build_proxy_prompt(&task(), "", &opts));
            let with = text(build_proxy_prompt(&task(), &parsed.rationale, &opts));
            // Fix lines that the prompt holds anyway (the buggy program's `def` line) aside,
            // none reaches the proxy.
            let leaked: Vec<&str> = fix
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !without.contains(l) && with.contains(l))
                .collect();
            assert!(leaked.is_empty(), "{leaked:?} in\n{with}");
            assert!(with.contains(
                "The program adds 2 where it should multiply by 2: `x + 2` gives 5 for 3."
            ));
            assert!(with.contains(crate::parse::CODE_OMITTED));
            assert!(with.contains("That is the idea."));
        }
    }

    #[test]
    fn answer_format_round_trips_through_the_parser() {
        for e in exemplars() {
            let a = format_answer(&e.rationale, &e.fixed);
            let p = crate::parse::parse_completion(&a, None, &e.program);
            assert_eq!(p.program.as_deref().map(str::trim), Some(e.fixed.trim()));
            assert_eq!(p.rationale, e.rationale.trim());
        }
    }
}
