//! Candidate sampling for MBPP-R: one JSONL line per sampled program, resumable, a torn last
//! line (a kill while writing) is dropped and redone. Uses a canned-text generator (test
//! double) and the real MBPP file.

use std::sync::atomic::{AtomicUsize, Ordering};

use nxt_core::candidates::{sample_candidates, CandidateLine, CandidateOptions};
use nxt_core::prompt::Layout;
use nxt_llm::{Completion, FinishReason, GenerationRequest, Generator, LlmError, Prompt};

struct Fixed {
    samples: AtomicUsize,
}

impl Generator for Fixed {
    fn name(&self) -> String {
        "fixed-test-double".into()
    }
    fn generate(&self, r: &GenerationRequest) -> Result<Vec<Completion>, LlmError> {
        self.samples.fetch_add(r.n, Ordering::SeqCst);
        let text = match &r.prompt {
            // Completion layout: MBPP's [BEGIN] ... [DONE] format, unfenced.
            Prompt::Text(_) => "def f(x):\n    return x\n".to_string(),
            Prompt::Chat(_) => "Here:\n```python\ndef f(x):\n    return x\n```\nDone.".to_string(),
        };
        Ok((0..r.n)
            .map(|_| Completion {
                text: text.clone(),
                prompt_tokens: 5,
                completion_tokens: 5,
                finish_reason: FinishReason::Stop,
                logprobs: None,
            })
            .collect())
    }
}

#[test]
fn candidates_are_written_and_resumed() {
    let Some(data) =
        nxt_sandbox::test_support::data_dir(env!("CARGO_MANIFEST_DIR"), &["mbpp/mbpp.jsonl"])
    else {
        return;
    };
    let path = data.join("mbpp/mbpp.jsonl");
    let all = nxt_data::loaders::load_mbpp(&path).unwrap();
    let train: Vec<_> = all
        .iter()
        .filter(|r| r.task_id >= 601)
        .take(3)
        .cloned()
        .collect();
    let dir = std::env::temp_dir().join(format!("nxt-core-cand-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("c.jsonl");
    for layout in [Layout::Chat, Layout::Completion] {
        let _ = std::fs::remove_file(&out);
        let gen = Fixed {
            samples: AtomicUsize::new(0),
        };
        let opts = CandidateOptions {
            n: 2,
            layout,
            ..CandidateOptions::default()
        };
        let s = sample_candidates(&gen, &train[..2], &all, &opts, &out, &mut |_| {}).unwrap();
        assert_eq!((s.written, s.existing, s.empty), (4, 0, 0));
        // A torn last line, as a kill while writing leaves it.
        let mut text = std::fs::read_to_string(&out).unwrap();
        text.push_str("{\"task_id\": 603, \"prog");
        std::fs::write(&out, text).unwrap();
        let s = sample_candidates(&gen, &train, &all, &opts, &out, &mut |_| {}).unwrap();
        assert_eq!((s.written, s.existing), (2, 4));
        assert_eq!(gen.samples.load(Ordering::SeqCst), 6);
        let lines: Vec<CandidateLine> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert!(
            lines
                .iter()
                .all(|l| l.program == "def f(x):\n    return x\n"),
            "{lines:?}"
        );
        // nxt-data's reader (used by build-mbpp-r) accepts the file.
        let read = nxt_data::mbppr::read_candidates(&out).unwrap();
        assert_eq!(read.len(), 6);
        assert_eq!(read[4].task_id, train[2].task_id);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
