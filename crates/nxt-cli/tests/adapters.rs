//! LoRA adapters through the real binary: `--adapter` on `nxt generate` changes the output
//! and equals a `nxt train merge`d model; `nxt serve --lora-modules` serves each adapter by
//! name with `parent` in `/v1/models`; `nxt train check-adapter` reports rank, alpha, targets
//! and shape problems; bad adapter directories are input errors (exit 65) naming the file and
//! the tensor key, before any model is loaded.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use nxt_engine::adapter::{LoraAdapter, LoraConfig};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_engine::ModelConfig;
use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::{GenerationRequest, Prompt, SamplingParams};
use serde_json::Value;

use common::{nxt, tmpdir};

const NXT: &str = env!("CARGO_BIN_EXE_nxt");

fn spec(hidden: usize, seed: u64) -> TinyModelSpec {
    TinyModelSpec {
        hidden_size: hidden,
        intermediate_size: 2 * hidden,
        num_merges: 120,
        seed,
        ..Default::default()
    }
}

/// A random (non-zero) adapter of rank `r` for the model in `model`, saved in `out`.
fn write_adapter(model: &Path, out: &Path, r: usize, seed: u64) {
    let cfg = ModelConfig::from_file(&model.join("config.json")).unwrap();
    let lcfg = LoraConfig::new(
        Some(model.display().to_string()),
        r,
        2.0 * r as f64,
        false,
        0.0,
        Vec::new(),
    );
    LoraAdapter::random(&cfg, lcfg, seed, 0.3)
        .unwrap()
        .save(out)
        .unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const PROMPTS: &str = r#"{"id": "a", "prompt": "def add(a, b):"}
{"id": "b", "prompt": "The bug is in"}
{"id": "c", "prompt": "for i in range(10):"}
"#;

/// Greedy texts by id of `nxt generate --model MODEL [extra]`.
fn generate(dir: &Path, model: &Path, tag: &str, extra: &[&str]) -> Vec<(String, String)> {
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let out = dir.join(format!("{tag}.jsonl"));
    let mut args = vec![
        "generate",
        "--model",
        s(model),
        "--prompts",
        s(&prompts),
        "--out",
        s(&out),
        "--max-tokens",
        "12",
    ];
    args.extend_from_slice(extra);
    let o = nxt(&args);
    assert!(o.status.success(), "generate {tag}: {}", stderr(&o));
    let mut rows: Vec<(String, String)> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["completions"][0]["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(rows.len(), 3, "{tag}");
    rows
}

#[test]
fn generate_with_an_adapter_differs_from_the_base_and_equals_the_merged_model() {
    let d = tmpdir("merge");
    let model = d.join("model");
    write_tiny_model(&model, &spec(32, 11)).unwrap();
    let adapter = d.join("adapter");
    write_adapter(&model, &adapter, 8, 3);

    let base = generate(&d, &model, "base", &[]);
    let adapted = generate(&d, &model, "adapted", &["--adapter", s(&adapter)]);
    assert_ne!(base, adapted, "the adapter changes no greedy completion");

    let merged = d.join("merged");
    let o = nxt(&[
        "train",
        "merge",
        "--model",
        s(&model),
        "--adapter",
        s(&adapter),
        "--out",
        s(&merged),
    ]);
    assert!(o.status.success(), "merge: {}", stderr(&o));
    assert!(stdout(&o).contains("14 merged"), "{}", stdout(&o));
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        assert!(merged.join(f).is_file(), "merge wrote no {f}");
    }
    let from_merged = generate(&d, &merged, "merged", &[]);
    assert_eq!(adapted, from_merged);

    // Logits: the merged directory equals base + adapter to 1e-4, and differs from the base.
    let tokens: Vec<u32> = (1..40).collect();
    let la = Engine::load(
        s(&model),
        EngineOptions {
            adapter: Some(adapter.clone()),
            ..Default::default()
        },
    )
    .unwrap()
    .forward_logits(&tokens)
    .unwrap();
    let lm = Engine::load(s(&merged), EngineOptions::default())
        .unwrap()
        .forward_logits(&tokens)
        .unwrap();
    let lb = Engine::load(s(&model), EngineOptions::default())
        .unwrap()
        .forward_logits(&tokens)
        .unwrap();
    let max_diff = |x: &[Vec<f32>], y: &[Vec<f32>]| {
        x.iter()
            .flatten()
            .zip(y.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };
    assert!(max_diff(&la, &lm) <= 1e-4, "{}", max_diff(&la, &lm));
    assert!(max_diff(&la, &lb) > 1e-2, "{}", max_diff(&la, &lb));

    // Merging into an existing input directory is refused.
    let o = nxt(&[
        "train",
        "merge",
        "--model",
        s(&model),
        "--adapter",
        s(&adapter),
        "--out",
        s(&model),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("directory of its own"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// An adapter of `model`'s shapes with one file removed or changed, and what the error names.
fn assert_input_error(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(65), "{e}");
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    assert!(
        !e.contains("loading model"),
        "the model was loaded first: {e}"
    );
}

#[test]
fn bad_adapters_are_input_errors_naming_the_file_and_the_key() {
    let d = tmpdir("bad");
    let model = d.join("model");
    write_tiny_model(&model, &spec(32, 11)).unwrap();
    let other = d.join("other");
    write_tiny_model(&other, &spec(48, 12)).unwrap();
    let prompts = d.join("prompts.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let out = d.join("out.jsonl");
    let gen = |adapter: &Path| {
        nxt(&[
            "generate",
            "--model",
            s(&model),
            "--prompts",
            s(&prompts),
            "--out",
            s(&out),
            "--adapter",
            s(adapter),
        ])
    };

    // No weights file.
    let missing = d.join("missing");
    write_adapter(&model, &missing, 8, 1);
    std::fs::remove_file(missing.join("adapter_model.safetensors")).unwrap();
    assert_input_error(&gen(&missing), &["adapter_model.safetensors", "missing"]);

    // Not a directory at all.
    assert_input_error(&gen(&d.join("nope")), &["nope", "not a directory"]);

    // Trained on another base: the first mismatched tensor is named with both shapes.
    let foreign = d.join("foreign");
    write_adapter(&other, &foreign, 8, 2);
    let o = gen(&foreign);
    assert_input_error(
        &o,
        &[
            "does not fit the model",
            "adapter_model.safetensors",
            "layers.0.self_attn.q_proj.lora_A.weight",
            "[8, 48]",
        ],
    );

    // The config says r = 16 but the tensors have rank 8.
    let rank = d.join("rank");
    write_adapter(&model, &rank, 8, 4);
    let cfg_path = rank.join("adapter_config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["r"] = 16.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    assert_input_error(&gen(&rank), &["lora_A.weight", "has rank 8", "r = 16"]);
    assert!(!out.exists(), "a failed run wrote output");

    // The same checks guard eval, repair, serve (--adapter and --lora-modules) and merge.
    let o = nxt(&[
        "eval",
        "--benchmark",
        "hefix+",
        "--model",
        s(&model),
        "--adapter",
        s(&foreign),
        "--n",
        "1",
        "--data-dir",
        s(&d.join("no-data")),
    ]);
    assert_input_error(&o, &["layers.0.self_attn.q_proj.lora_A.weight"]);
    let o = nxt(&[
        "repair",
        "--program",
        s(&prompts),
        "--tests",
        s(&prompts),
        "--model",
        s(&model),
        "--adapter",
        s(&missing),
    ]);
    assert_input_error(&o, &["adapter_model.safetensors"]);
    let o = nxt(&[
        "serve",
        "--model",
        s(&model),
        "--port",
        "0",
        "--lora-modules",
        &format!("bad={}", s(&foreign)),
    ]);
    assert_input_error(&o, &["--lora-modules bad=/", "lora_A.weight"]);
    let o = nxt(&[
        "train",
        "merge",
        "--model",
        s(&model),
        "--adapter",
        s(&rank),
        "--out",
        s(&d.join("merged")),
    ]);
    assert_input_error(&o, &["r = 16"]);
    assert!(!d.join("merged").exists(), "a refused merge wrote output");

    // An adapter cannot be merged into a server's model: a usage error.
    let good = d.join("good");
    write_adapter(&model, &good, 8, 5);
    let o = nxt(&[
        "generate",
        "--model",
        "http://127.0.0.1:9/v1",
        "--prompts",
        s(&prompts),
        "--out",
        s(&out),
        "--adapter",
        s(&good),
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("--lora-modules"), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn check_adapter_reports_rank_alpha_targets_and_shape_mismatches() {
    let d = tmpdir("check");
    let model = d.join("model");
    write_tiny_model(&model, &spec(32, 11)).unwrap();
    let other = d.join("other");
    write_tiny_model(&other, &spec(48, 12)).unwrap();
    let adapter = d.join("adapter");
    write_adapter(&model, &adapter, 8, 1);

    let o = nxt(&[
        "train",
        "check-adapter",
        "--model",
        s(&model),
        "--adapter",
        s(&adapter),
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("rank:           8"), "{out}");
    assert!(out.contains("alpha:          16 (scaling 2.0000)"), "{out}");
    assert!(
        out.contains(
            "targets:        q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
        ),
        "{out}"
    );
    assert!(out.contains("modules:        14 in 2 layers"), "{out}");
    assert!(out.contains("shapes:         fit"), "{out}");
    assert!(out.contains("ok: vLLM can serve this adapter"), "{out}");

    // The positional form, against the wrong base: exit 1, each mismatch on its own line.
    let o = nxt(&["train", "check-adapter", s(&adapter), "--model", s(&other)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(
        out.contains("shapes:         28 tensors do not fit"),
        "{out}"
    );
    assert!(
        out.contains("layers.0.self_attn.q_proj.lora_A.weight has shape [8, 32]"),
        "{out}"
    );
    assert!(stderr(&o).contains("problems"), "{}", stderr(&o));

    // Rank above --max-lora-rank.
    let o = nxt(&[
        "train",
        "check-adapter",
        s(&adapter),
        "--max-lora-rank",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("above --max-lora-rank 4"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("shapes:         not checked"),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `nxt serve` on a loopback port; killed on drop.
struct Served(Child, String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(NXT)
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    Served(child, url)
}

/// `GET /v1/models` over a plain socket.
fn models(base_url: &str) -> Value {
    let addr = base_url
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /v1/models HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

/// Greedy completion of `prompt` by the served model `name`.
fn served_text(url: &str, name: &str, prompt: &str) -> String {
    let opts = nxt_llm::OpenOptions {
        served_model: Some(name.to_string()),
        ..Default::default()
    };
    let g = nxt_llm::open_generator(url, &opts).unwrap();
    let r = GenerationRequest {
        prompt: Prompt::Text(prompt.to_string()),
        n: 1,
        params: SamplingParams {
            temperature: 0.0,
            max_tokens: 12,
            ..Default::default()
        },
    };
    g.generate(&r).unwrap().remove(0).text
}

#[test]
fn serve_hosts_lora_modules_by_name_with_their_parent() {
    let d = tmpdir("serve");
    let model = d.join("model");
    write_tiny_model(&model, &spec(32, 11)).unwrap();
    let (a1, a2) = (d.join("a1"), d.join("a2"));
    write_adapter(&model, &a1, 8, 21);
    write_adapter(&model, &a2, 8, 22);
    let direct = generate(&d, &model, "a1", &["--adapter", s(&a1)]);
    let base = generate(&d, &model, "base", &[]);
    let prompt = "def add(a, b):";
    let want_a1 = &direct.iter().find(|(id, _)| id == "a").unwrap().1;
    let want_base = &base.iter().find(|(id, _)| id == "a").unwrap().1;

    let server = serve(&[
        "--model",
        s(&model),
        "--served-model-name",
        "tiny",
        "--lora-modules",
        &format!("fix={}", s(&a1)),
        &format!(r#"{{"name": "other", "path": "{}"}}"#, s(&a2)),
    ]);
    let list = models(&server.1);
    let entries = list["data"].as_array().unwrap();
    let by_id = |id: &str| {
        entries
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {list}"))
    };
    assert_eq!(entries.len(), 3, "{list}");
    assert!(by_id("tiny")["parent"].is_null(), "{list}");
    assert_eq!(by_id("fix")["parent"], "tiny", "{list}");
    assert_eq!(by_id("other")["parent"], "tiny", "{list}");
    assert_eq!(by_id("fix")["root"], s(&a1), "{list}");

    assert_eq!(&served_text(&server.1, "fix", prompt), want_a1);
    assert_eq!(&served_text(&server.1, "tiny", prompt), want_base);
    assert_ne!(served_text(&server.1, "other", prompt), *want_a1);
    drop(server);

    // --adapter: the merged model is what the server serves.
    let server = serve(&["--model", s(&model), "--adapter", s(&a1)]);
    let list = models(&server.1);
    let entries = list["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    let name = entries[0]["id"].as_str().unwrap().to_string();
    assert_eq!(&served_text(&server.1, &name, prompt), want_a1);
    drop(server);

    // Two modules under one name are refused.
    let o = nxt(&[
        "serve",
        "--model",
        s(&model),
        "--port",
        "0",
        "--lora-modules",
        &format!("x={}", s(&a1)),
        &format!("x={}", s(&a2)),
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("given twice"), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_adapter_trained_by_nxt_train_reproduces_its_completions_through_generate_and_serve() {
    let d = tmpdir("memorise");
    let model = d.join("model");
    write_tiny_model(&model, &spec(64, 7)).unwrap();
    let pairs = [
        ("def add(a, b):\n", "    return a + b\n"),
        ("def is_even(n):\n", "    return n % 2 == 0\n"),
        ("Q: 1 + 2 =", " 3"),
        ("The bug is in", " the loop."),
    ];
    let (mut data, mut prompts) = (String::new(), String::new());
    for (i, (p, c)) in pairs.iter().enumerate() {
        data.push_str(&serde_json::json!({"id": i, "prompt": p, "completion": c}).to_string());
        data.push('\n');
        prompts.push_str(&serde_json::json!({"id": format!("p{i}"), "prompt": p}).to_string());
        prompts.push('\n');
    }
    let data_path = d.join("train.jsonl");
    std::fs::write(&data_path, data).unwrap();
    let adapter = d.join("sft");
    let o = nxt(&[
        "train",
        "--model",
        s(&model),
        "--data",
        s(&data_path),
        "--out",
        s(&adapter),
        "--lora-r",
        "8",
        "--lora-alpha",
        "16",
        "--lr",
        "5e-3",
        "--batch-size",
        "4",
        "--epochs",
        "150",
    ]);
    assert!(o.status.success(), "train: {}", stderr(&o));
    let prompts_path = d.join("prompts.jsonl");
    std::fs::write(&prompts_path, prompts).unwrap();
    let texts = |extra: &[&str], tag: &str| -> Vec<String> {
        let out = d.join(format!("{tag}.jsonl"));
        let mut args = vec![
            "generate",
            "--model",
            s(&model),
            "--prompts",
            s(&prompts_path),
            "--out",
            s(&out),
            "--max-tokens",
            "24",
        ];
        args.extend_from_slice(extra);
        let o = nxt(&args);
        assert!(o.status.success(), "generate {tag}: {}", stderr(&o));
        let mut rows: Vec<(String, String)> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["completions"][0]["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, t)| t).collect()
    };
    let want: Vec<String> = pairs.iter().map(|(_, c)| c.to_string()).collect();
    assert_eq!(texts(&["--adapter", s(&adapter)], "trained"), want);
    assert_ne!(
        texts(&[], "base"),
        want,
        "the base model already knew the data"
    );

    // The same adapter served by name.
    let server = serve(&[
        "--model",
        s(&model),
        "--lora-modules",
        &format!("sft={}", s(&adapter)),
    ]);
    for (p, c) in &pairs {
        let opts = nxt_llm::OpenOptions {
            served_model: Some("sft".into()),
            ..Default::default()
        };
        let g = nxt_llm::open_generator(&server.1, &opts).unwrap();
        let r = GenerationRequest {
            prompt: Prompt::Text(p.to_string()),
            n: 1,
            params: SamplingParams {
                temperature: 0.0,
                max_tokens: 24,
                ..Default::default()
            },
        };
        assert_eq!(g.generate(&r).unwrap()[0].text, *c, "prompt {p:?}");
    }
    drop(server);
    std::fs::remove_dir_all(&d).unwrap();
}
