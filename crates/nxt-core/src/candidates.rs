//! Sampling candidate programs for MBPP problems, from which `nxt data build-mbpp-r` keeps the
//! failing ones (NEXT_SPEC.md section 4). Output: JSONL lines `{"task_id", "program", "model"}`,
//! appended as they are sampled; rerunning with the same output file samples only the missing
//! programs of each problem.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use nxt_data::loaders::MbppRecord;
use nxt_llm::{ChatMessage, GenerationRequest, Generator, Prompt, SamplingParams};
use serde::{Deserialize, Serialize};

use crate::eval::Progress;
use crate::parse::parse_completion;
use crate::prompt::Layout;
use crate::repair::CoreError;
use crate::task::guess_entry_point;

/// Settings of candidate sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateOptions {
    /// Programs per problem.
    pub n: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Most new tokens per program.
    pub max_tokens: usize,
    /// Nucleus sampling mass.
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    /// Base seed.
    pub seed: u64,
    /// Chat (instruction-tuned models) or completion (base models, MBPP's 3-shot prompt).
    pub layout: Layout,
    /// Requests handed to the generator at once.
    pub batch: usize,
}

impl Default for CandidateOptions {
    fn default() -> Self {
        CandidateOptions {
            n: 8,
            temperature: 0.8,
            max_tokens: 512,
            top_p: default_top_p(),
            seed: 0,
            layout: Layout::Chat,
            batch: 16,
        }
    }
}

fn default_top_p() -> f32 {
    0.95
}

/// One candidate line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateLine {
    /// MBPP task id.
    pub task_id: u32,
    /// The sampled program (empty when none could be extracted: kept, build-mbpp-r drops it).
    pub program: String,
    /// The model.
    pub model: String,
}

/// What a sampling run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CandidateSummary {
    /// Problems considered.
    pub problems: usize,
    /// Lines already in the output file for them.
    pub existing: usize,
    /// Lines written now.
    pub written: usize,
    /// Completions with no extractable program (written with an empty program).
    pub empty: usize,
}

/// MBPP's own few-shot problems for the completion layout (task ids 2, 3, 4, as in the MBPP
/// paper's prompt).
const SHOT_IDS: [u32; 3] = [2, 3, 4];

fn describe(r: &MbppRecord) -> String {
    format!(
        "You are an expert Python programmer, and here is your task: {} Your code should pass these tests:\n\n{}\n",
        r.text.trim(),
        r.test_list.join("\n")
    )
}

/// The prompt asking a model to solve MBPP problem `r`. `shots` are MBPP records used as
/// examples in the completion layout (ignored in chat layout).
pub fn candidate_prompt(r: &MbppRecord, shots: &[&MbppRecord], layout: Layout) -> Prompt {
    match layout {
        Layout::Chat => Prompt::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "You are an expert Python programmer. Answer with the complete program in one ```python code block.".into(),
            },
            ChatMessage { role: "user".into(), content: describe(r) },
        ]),
        Layout::Completion => {
            let mut s = String::new();
            for e in shots {
                s.push_str(&describe(e));
                s.push_str("[BEGIN]\n");
                s.push_str(e.code.trim_end());
                s.push_str("\n[DONE]\n\n");
            }
            s.push_str(&describe(r));
            s.push_str("[BEGIN]\n");
            Prompt::Text(s)
        }
    }
}

fn existing_counts(out: &Path) -> Result<BTreeMap<u32, usize>, CoreError> {
    let mut m = BTreeMap::new();
    if !out.exists() {
        return Ok(m);
    }
    let text = std::fs::read_to_string(out).map_err(|e| CoreError::Io {
        path: out.display().to_string(),
        source: e,
    })?;
    for (no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<CandidateLine>(line) {
            Ok(c) => *m.entry(c.task_id).or_insert(0) += 1,
            // A line cut by a kill is the last one: ignore it, the program is sampled again.
            Err(_) if no + 1 == text.lines().count() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(CoreError::Invalid(format!(
                    "{}:{}: not a candidate line: {e}",
                    out.display(),
                    no + 1
                )));
            }
        }
    }
    Ok(m)
}

/// Sample `opts.n` programs for each of `problems` with `generator`, appending JSONL lines to
/// `out` (created if missing). `all` is the full MBPP set (the completion layout's exemplars
/// come from it).
pub fn sample_candidates(
    generator: &dyn Generator,
    problems: &[MbppRecord],
    all: &[MbppRecord],
    opts: &CandidateOptions,
    out: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CandidateSummary, CoreError> {
    let io = |e: std::io::Error| CoreError::Io {
        path: out.display().to_string(),
        source: e,
    };
    let have = existing_counts(out)?;
    // Drop a torn last line so appends start on a fresh line.
    if let Ok(text) = std::fs::read_to_string(out) {
        if !text.is_empty() && !text.ends_with('\n') {
            let keep = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
            std::fs::write(out, &text[..keep]).map_err(io)?;
        }
    }
    let shots: Vec<&MbppRecord> = SHOT_IDS
        .iter()
        .filter_map(|id| all.iter().find(|r| r.task_id == *id))
        .collect();
    let mut summary = CandidateSummary {
        problems: problems.len(),
        ..Default::default()
    };
    let mut todo: Vec<(&MbppRecord, GenerationRequest)> = Vec::new();
    for r in problems {
        let got = have.get(&r.task_id).copied().unwrap_or(0);
        summary.existing += got.min(opts.n);
        if got < opts.n {
            let mut stop = Vec::new();
            if opts.layout == Layout::Completion {
                stop.push("[DONE]".to_string());
            }
            let params = SamplingParams {
                temperature: opts.temperature,
                top_p: opts.top_p,
                max_tokens: opts.max_tokens,
                stop,
                seed: Some(
                    opts.seed
                        .wrapping_mul(1_000_003)
                        .wrapping_add(r.task_id as u64 * 1009 + got as u64),
                ),
                ..SamplingParams::default()
            };
            todo.push((
                r,
                GenerationRequest {
                    prompt: candidate_prompt(r, &shots, opts.layout),
                    n: opts.n - got,
                    params,
                },
            ));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(io)?;
    let model = generator.name();
    let total = problems.len();
    let mut done = total - todo.len();
    for chunk in todo.chunks(opts.batch.max(1)) {
        let reqs: Vec<GenerationRequest> = chunk.iter().map(|(_, q)| q.clone()).collect();
        let mut failure: Option<CoreError> = None;
        generator.generate_many(&reqs, &mut |i, res| {
            if failure.is_some() {
                return;
            }
            let r = chunk[i].0;
            let result = res.map_err(CoreError::from).and_then(|cs| {
                let ep = guess_entry_point(&r.test_list, &r.code);
                let mut buf = String::new();
                for c in cs {
                    let p = parse_completion(&c.text, ep.as_deref(), "");
                    let program = p.program.unwrap_or_default();
                    if program.trim().is_empty() {
                        summary.empty += 1;
                    }
                    let line = CandidateLine {
                        task_id: r.task_id,
                        program,
                        model: model.clone(),
                    };
                    buf.push_str(
                        &serde_json::to_string(&line)
                            .map_err(|e| CoreError::Invalid(e.to_string()))?,
                    );
                    buf.push('\n');
                    summary.written += 1;
                }
                // One write per problem: a kill leaves at most one torn line.
                file.write_all(buf.as_bytes())
                    .and_then(|_| file.flush())
                    .map_err(io)
            });
            done += 1;
            progress(&Progress {
                stage: "sample-candidates",
                done,
                total,
                message: format!("mbpp/{}", r.task_id),
            });
            if let Err(e) = result {
                failure = Some(e);
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(summary)
}
