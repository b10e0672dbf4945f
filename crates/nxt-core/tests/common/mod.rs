//! Shared helpers of nxt-core's integration tests: a sandbox pool and a canned-text generator.
//!
//! `Canned` is a TEST DOUBLE of a model: it answers from fixed texts so that the pipeline's
//! bookkeeping (what is stored, parsed, graded and counted) can be checked exactly. The real
//! engine runs in nxt-cli's end-to-end tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nxt_core::task::{adhoc_task, RepairTask};
use nxt_llm::{Completion, FinishReason, GenerationRequest, Generator, LlmError, Prompt};
use nxt_sandbox::{Pool, PoolConfig};

/// The benchmark data (see `nxt_sandbox::test_support::data_dir`).
pub fn data_dir() -> Option<std::path::PathBuf> {
    nxt_sandbox::test_support::data_dir(env!("CARGO_MANIFEST_DIR"), &["humanevalfix"])
}

/// A sandbox pool, or None (with a message) where the sandbox cannot start.
pub fn pool() -> Option<Pool> {
    match Pool::new(PoolConfig {
        workers: 2,
        allow_weak_isolation: true,
        ..PoolConfig::default()
    }) {
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

/// Three small repair tasks with known fixes.
pub fn tasks() -> Vec<RepairTask> {
    vec![
        adhoc_task(
            "t/dbl",
            "Write a function that returns twice its argument.",
            "def dbl(x):\n    return x + 2\n",
            vec!["assert dbl(2) == 4".into(), "assert dbl(1) == 2".into(), "assert dbl(5) == 10".into()],
        ),
        adhoc_task(
            "t/vowels",
            "Count the vowels of a word, upper or lower case.",
            "def count_vowels(word):\n    n = 0\n    for ch in word:\n        if ch in 'aeiou':\n            n += 1\n    return n\n",
            vec!["assert count_vowels('Apple') == 2".into(), "assert count_vowels('xyz') == 0".into()],
        ),
        adhoc_task(
            "t/scale",
            "Multiply the sum of a list by the module constant K.",
            "import math\nK = 3\n\ndef helper(xs):\n    return sum(xs)\n\ndef scaled(xs):\n    return helper(xs) + K\n",
            vec!["assert scaled([1, 2]) == 9".into(), "assert scaled([]) == 0".into()],
        ),
    ]
}

/// The correct fix of each task, as a model would write it (the `scale` fix is only the
/// function: the parser must complete it from the buggy program).
pub fn correct_answer(task_id: &str) -> &'static str {
    match task_id {
        "t/dbl" => "The trace shows __return__=4 for x=1: it adds 2 instead of doubling. CORRECT-RATIONALE\n\n```python\ndef dbl(x):\n    return 2 * x\n```\n",
        "t/vowels" => "The 'A' is not counted (n stays 1). CORRECT-RATIONALE\n```python\ndef count_vowels(word):\n    n = 0\n    for ch in word:\n        if ch.lower() in 'aeiou':\n            n += 1\n    return n\n```\nThis counts both cases.",
        _ => "It adds K instead of multiplying. CORRECT-RATIONALE\n```python\ndef scaled(xs):\n    return helper(xs) * K\n```",
    }
}

/// A wrong fix (parses, fails).
pub fn wrong_answer(task_id: &str) -> String {
    let name = match task_id {
        "t/dbl" => "dbl(x)",
        "t/vowels" => "count_vowels(word)",
        _ => "scaled(xs)",
    };
    format!("I think it is off by one.\n```python\ndef {name}:\n    return 1\n```")
}

/// An unparseable answer.
pub const UNPARSEABLE: &str = "I cannot tell what is wrong with this program.";

fn task_of(prompt: &Prompt) -> String {
    let text = match prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
    };
    // The last task block of the prompt is the task asked about.
    let last = text.rsplit("### Problem").next().unwrap_or("").to_string();
    if last.contains("def dbl(") {
        "t/dbl".into()
    } else if last.contains("def count_vowels(") {
        "t/vowels".into()
    } else {
        "t/scale".into()
    }
}

/// Canned-text generator (test double).
///
/// Sampled requests (temperature > 0) cycle through `[correct, wrong, unparseable, correct]`
/// per task; greedy requests get the correct answer; proxy requests (their prompt carries an
/// explanation) get the correct answer when the explanation contains `CORRECT-RATIONALE`.
/// After `hang_after` requests it blocks forever (to be killed mid-run).
pub struct Canned {
    pub counters: Mutex<HashMap<String, usize>>,
    pub requests: AtomicUsize,
    pub samples: AtomicUsize,
    pub prompts: Mutex<Vec<Prompt>>,
    pub hang_after: Option<usize>,
    /// Requests for this task fail as invalid (like a prompt longer than the context).
    pub reject_task: Option<&'static str>,
    /// Every request is refused like a server refusing the API key.
    pub refuse: bool,
}

impl Canned {
    pub fn new() -> Canned {
        Canned {
            counters: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
            samples: AtomicUsize::new(0),
            prompts: Mutex::new(Vec::new()),
            hang_after: None,
            reject_task: None,
            refuse: false,
        }
    }
}

impl Generator for Canned {
    fn name(&self) -> String {
        "canned-test-double".into()
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Vec<Completion>, LlmError> {
        let r = self.requests.fetch_add(1, Ordering::SeqCst);
        if self.hang_after.is_some_and(|h| r >= h) {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        if self.refuse {
            return Err(LlmError::Refused(
                "POST /v1/chat/completions answered 401 Unauthorized: Incorrect API key provided"
                    .into(),
            ));
        }
        self.samples.fetch_add(request.n, Ordering::SeqCst);
        self.prompts.lock().unwrap().push(request.prompt.clone());
        let task = task_of(&request.prompt);
        if self.reject_task == Some(task.as_str()) {
            return Err(LlmError::Request(
                "prompt has 9999 tokens; the model's context is 2048".into(),
            ));
        }
        let text_all = match &request.prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
        };
        let is_proxy = text_all.contains("### Explanation of the bug");
        let mut out = Vec::new();
        for _ in 0..request.n {
            let text = if is_proxy {
                let expl = text_all
                    .rsplit("### Explanation of the bug")
                    .next()
                    .unwrap_or("");
                if expl.contains("CORRECT-RATIONALE") {
                    correct_answer(&task).to_string()
                } else {
                    wrong_answer(&task)
                }
            } else if request.params.temperature == 0.0 {
                correct_answer(&task).to_string()
            } else {
                let mut c = self.counters.lock().unwrap();
                let i = c.entry(task.clone()).or_insert(0);
                let t = match *i % 4 {
                    0 | 3 => correct_answer(&task).to_string(),
                    1 => wrong_answer(&task),
                    _ => UNPARSEABLE.to_string(),
                };
                *i += 1;
                t
            };
            out.push(Completion {
                prompt_tokens: 100,
                completion_tokens: text.len() / 4,
                text,
                finish_reason: FinishReason::Stop,
                logprobs: None,
            });
        }
        Ok(out)
    }
}
