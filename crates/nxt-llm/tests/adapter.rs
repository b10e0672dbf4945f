//! PEFT LoRA adapters on the embedded engine: the file format (keys, shapes, config, metadata),
//! loading variants, merging (checked against the unmerged LoRA forward), loading through
//! `EngineOptions::adapter`, adapters of another base, and `check_adapter`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use nxt_engine::adapter::{
    self, check_adapter, lora_key, merge_into, safetensors_f32_bytes, LoraAdapter, LoraConfig,
    LoraPart, ProblemKind, TARGET_MODULES,
};
use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};
use nxt_engine::{ModelConfig, Transformer};
use nxt_llm::engine::{Engine, EngineOptions};
use nxt_llm::{GenerationRequest, Generator, Prompt, SamplingParams};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-adapter-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny(dir: &Path, spec: &TinyModelSpec) -> ModelConfig {
    write_tiny_model(dir, spec).unwrap();
    ModelConfig::from_file(&dir.join("config.json")).unwrap()
}

fn all_targets() -> Vec<String> {
    TARGET_MODULES.iter().map(|s| s.to_string()).collect()
}

fn random_adapter(cfg: &ModelConfig, r: usize, alpha: f64, rslora: bool) -> LoraAdapter {
    let c = LoraConfig::new(Some("tiny".into()), r, alpha, rslora, 0.0, all_targets());
    LoraAdapter::random(cfg, c, 7, 0.3).unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn logits(model: &Transformer, tokens: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&t, None)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

#[test]
fn keys_follow_peft() {
    assert_eq!(
        lora_key(3, "q_proj", LoraPart::A),
        "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"
    );
    assert_eq!(
        lora_key(0, "down_proj", LoraPart::B),
        "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"
    );
    for k in [
        "base_model.model.model.layers.1.mlp.up_proj.lora_A.default.weight",
        "base_model.model.layers.1.mlp.up_proj.lora_A.weight",
        "model.layers.1.mlp.up_proj.lora_A.weight",
        "layers.1.mlp.up_proj.lora_A.weight",
    ] {
        let p = adapter::parse_lora_key(k).unwrap_or_else(|| panic!("{k}"));
        assert_eq!(p.canonical(), lora_key(1, "up_proj", LoraPart::A), "{k}");
    }
    for bad in [
        "base_model.model.lm_head.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.weight",
        "base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
    ] {
        assert!(adapter::parse_lora_key(bad).is_none(), "{bad}");
    }
}

#[test]
fn scaling_plain_and_rslora() {
    let c = LoraConfig::new(None, 16, 32.0, false, 0.0, all_targets());
    assert_eq!(c.scaling(), 2.0);
    let c = LoraConfig::new(None, 16, 32.0, true, 0.0, all_targets());
    assert_eq!(c.scaling(), 8.0);
    let mut c = LoraConfig::new(None, 8, 16.0, false, 0.0, all_targets());
    c.rank_pattern.insert("q_proj".into(), 4);
    c.alpha_pattern.insert(r"layers\.1\..*".into(), 2.0);
    assert_eq!(
        c.module_rank_scaling("model.layers.0.self_attn.q_proj"),
        (4, 4.0)
    );
    assert_eq!(
        c.module_rank_scaling("model.layers.1.self_attn.q_proj"),
        (4, 0.5)
    );
    assert_eq!(
        c.module_rank_scaling("model.layers.0.mlp.up_proj"),
        (8, 2.0)
    );
}

#[test]
fn save_writes_the_peft_format_and_load_reads_it_back() {
    let d = tmp("roundtrip");
    let cfg = tiny(&d.join("model"), &TinyModelSpec::default());
    let a = random_adapter(&cfg, 8, 16.0, false);
    let out = d.join("adapter");
    a.save(&out).unwrap();

    // Config: the fields PEFT and vLLM read, integers where PEFT writes integers.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(v["peft_type"], "LORA");
    assert_eq!(v["task_type"], "CAUSAL_LM");
    assert_eq!(v["r"], 8);
    assert!(v["lora_alpha"].is_u64(), "{}", v["lora_alpha"]);
    assert_eq!(v["lora_alpha"], 16);
    assert_eq!(v["bias"], "none");
    assert_eq!(v["use_dora"], false);
    assert_eq!(v["use_rslora"], false);
    assert!(v["modules_to_save"].is_null());
    assert_eq!(v["target_modules"].as_array().unwrap().len(), 7);

    // Weights: PEFT keys, [r, in] / [out, r], F32, metadata {"format": "pt"}.
    let shapes = adapter::safetensors_shapes(&out.join("adapter_model.safetensors")).unwrap();
    assert_eq!(shapes.len(), cfg.num_hidden_layers * 7 * 2);
    let h = cfg.hidden_size;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    assert_eq!(shapes[&lora_key(0, "q_proj", LoraPart::A)], vec![8, h]);
    assert_eq!(shapes[&lora_key(0, "k_proj", LoraPart::B)], vec![kv, 8]);
    assert_eq!(
        shapes[&lora_key(1, "down_proj", LoraPart::A)],
        vec![8, cfg.intermediate_size]
    );
    let bytes = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["__metadata__"]["format"], "pt");
    assert_eq!(header[lora_key(0, "q_proj", LoraPart::A)]["dtype"], "F32");
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let b = LoraAdapter::load(&out, &Device::Cpu).unwrap();
    assert_eq!(b.config, a.config);
    assert_eq!(b.tensors.len(), a.tensors.len());
    for (k, t) in &a.tensors {
        let u = &b.tensors[k];
        let d: f32 = (t - u)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0, "{k}");
    }
}

#[test]
fn load_accepts_peft_in_memory_names_and_a_regex_target() {
    let d = tmp("variants");
    let tensors = vec![
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight".to_string(),
            vec![2, 4],
            vec![0.5; 8],
        ),
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight".to_string(),
            vec![3, 2],
            vec![0.25; 6],
        ),
        (
            "model.layers.1.mlp.up_proj.lora_A.weight".to_string(),
            vec![2, 4],
            vec![1.0; 8],
        ),
        (
            "model.layers.1.mlp.up_proj.lora_B.weight".to_string(),
            vec![5, 2],
            vec![1.0; 10],
        ),
    ];
    std::fs::write(
        d.join("adapter_model.safetensors"),
        safetensors_f32_bytes(&tensors, &[]).unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ".*\\.(q_proj|up_proj)",
            "layers_to_transform": null, "revision": null}"#,
    )
    .unwrap();
    let a = LoraAdapter::load(&d, &Device::Cpu).unwrap();
    let keys: Vec<&String> = a.tensors.keys().collect();
    assert_eq!(
        keys,
        vec![
            &lora_key(0, "q_proj", LoraPart::A),
            &lora_key(0, "q_proj", LoraPart::B),
            &lora_key(1, "up_proj", LoraPart::A),
            &lora_key(1, "up_proj", LoraPart::B),
        ]
    );
    assert_eq!(a.config.target_modules, vec!["q_proj", "up_proj"]);
    assert_eq!(
        a.config.target_modules_regex.as_deref(),
        Some(r".*\.(q_proj|up_proj)")
    );
    assert!(a.config.targets("model.layers.3.self_attn.q_proj"));
    assert!(!a.config.targets("model.layers.3.self_attn.k_proj"));
    // Unknown keys survive a save; the regex is written back as a string.
    assert!(a.config.extra.contains_key("layers_to_transform"));
    let json: serde_json::Value = serde_json::from_str(&a.config.to_json().unwrap()).unwrap();
    assert_eq!(json["target_modules"], r".*\.(q_proj|up_proj)");
    assert!(json.get("revision").is_some());
}

#[test]
fn load_errors_name_the_file_and_the_key() {
    let d = tmp("errors");
    let err = |dir: &Path| {
        LoraAdapter::load(dir, &Device::Cpu)
            .unwrap_err()
            .to_string()
    };

    let e = err(&d.join("nope"));
    assert!(e.contains("not a directory"), "{e}");
    let e = err(&d);
    assert!(e.contains("adapter_config.json"), "{e}");

    std::fs::write(
        d.join("adapter_config.json"),
        "{\"peft_type\": \"LORA\",\n \"r\": }",
    )
    .unwrap();
    let e = err(&d);
    assert!(
        e.contains("adapter_config.json") && e.contains("line 2"),
        "{e}"
    );

    std::fs::write(
        d.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": "eight"}"#,
    )
    .unwrap();
    let e = err(&d);
    assert!(e.contains("adapter_config.json"), "{e}");

    std::fs::write(d.join("adapter_config.json"), r#"{"peft_type": "IA3"}"#).unwrap();
    assert!(err(&d).contains("IA3"));

    std::fs::write(
        d.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": 2}"#,
    )
    .unwrap();
    let e = err(&d);
    assert!(e.contains("adapter_model.safetensors"), "{e}");

    let write = |tensors: Vec<(String, Vec<usize>, Vec<f32>)>| {
        std::fs::write(
            d.join("adapter_model.safetensors"),
            safetensors_f32_bytes(&tensors, &[]).unwrap(),
        )
        .unwrap();
    };
    write(vec![(
        "base_model.model.lm_head.lora_A.weight".into(),
        vec![2, 4],
        vec![0.0; 8],
    )]);
    let e = err(&d);
    assert!(e.contains("base_model.model.lm_head.lora_A.weight"), "{e}");

    write(vec![(
        lora_key(0, "q_proj", LoraPart::A),
        vec![2, 4],
        vec![0.0; 8],
    )]);
    let e = err(&d);
    assert!(e.contains("no lora_B"), "{e}");

    write(vec![
        (lora_key(0, "q_proj", LoraPart::A), vec![2, 4], vec![0.0; 8]),
        (
            lora_key(0, "q_proj", LoraPart::B),
            vec![4, 3],
            vec![0.0; 12],
        ),
    ]);
    let e = err(&d);
    assert!(e.contains("same r"), "{e}");

    std::fs::write(d.join("adapter_model.safetensors"), b"garbage").unwrap();
    let e = err(&d);
    assert!(e.contains("adapter_model.safetensors"), "{e}");
}

#[test]
fn merge_equals_the_unmerged_lora_forward_and_changes_the_model() {
    let d = tmp("merge");
    let model_dir = d.join("model");
    let cfg = tiny(
        &model_dir,
        &TinyModelSpec {
            tie_word_embeddings: false,
            ..Default::default()
        },
    );
    let tokens = [1u32, 5, 9, 33, 2, 7, 100, 42];
    for rslora in [false, true] {
        let a = random_adapter(&cfg, 4, 8.0, rslora);
        let base =
            Transformer::load_dir(&model_dir, &cfg, candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut merged = base.clone();
        merge_into(&mut merged, &a).unwrap();
        let mut branched = base.clone();
        adapter::attach_branches(&mut branched, &a).unwrap();
        let lb = logits(&base, &tokens);
        let lm = logits(&merged, &tokens);
        let lr = logits(&branched, &tokens);
        assert!(max_abs_diff(&lm, &lr) < 1e-4, "{}", max_abs_diff(&lm, &lr));
        assert!(
            max_abs_diff(&lm, &lb) > 1e-2,
            "the adapter must change the logits"
        );

        // Prepared (fused kernels, pre-transposed weights) and merged afterwards: the same.
        let mut prepared = base.clone();
        prepared.prepare_for_inference().unwrap();
        merge_into(&mut prepared, &a).unwrap();
        assert!(max_abs_diff(&logits(&prepared, &tokens), &lm) < 1e-4);
    }
}

#[test]
fn engine_loads_an_adapter_and_with_adapter_gives_the_same_engine() {
    let d = tmp("engine");
    let model_dir = d.join("model");
    let cfg = tiny(&model_dir, &TinyModelSpec::default());
    let a = random_adapter(&cfg, 8, 16.0, false);
    let a_dir = d.join("adapter");
    a.save(&a_dir).unwrap();
    let spec = model_dir.to_str().unwrap();
    let base = Engine::load(spec, EngineOptions::default()).unwrap();
    let with = Engine::load(
        spec,
        EngineOptions {
            adapter: Some(a_dir.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(with.name(), format!("{spec}+{}", a_dir.display()));
    assert_eq!(with.adapter_dir(), Some(a_dir.as_path()));
    let derived = base.with_adapter(&a_dir).unwrap();
    assert_eq!(derived.name(), with.name());
    assert!(derived.with_adapter(&a_dir).is_err());

    let tokens = [3u32, 1, 4, 1, 5, 9, 2, 6];
    let lb = base.forward_logits(&tokens).unwrap();
    let lw = with.forward_logits(&tokens).unwrap();
    let ld = derived.forward_logits(&tokens).unwrap();
    assert_eq!(max_abs_diff(&lw, &ld), 0.0);
    assert!(max_abs_diff(&lw, &lb) > 1e-2);
    // Merged-then-prepared equals the unmerged LoRA forward of the raw weights.
    let mut raw =
        Transformer::load_dir(&model_dir, &cfg, candle_core::DType::F32, &Device::Cpu).unwrap();
    adapter::attach_branches(&mut raw, &a).unwrap();
    assert!(max_abs_diff(&logits(&raw, &tokens), &lw) < 1e-4);

    let req = GenerationRequest {
        prompt: Prompt::Text("def add(a, b):".into()),
        n: 2,
        params: SamplingParams {
            max_tokens: 16,
            temperature: 0.9,
            seed: Some(3),
            ..Default::default()
        },
    };
    assert_eq!(
        with.generate(&req).unwrap(),
        derived.generate(&req).unwrap()
    );
    // The base engine is untouched by deriving.
    assert_eq!(
        max_abs_diff(&base.forward_logits(&tokens).unwrap(), &lb),
        0.0
    );
}

#[test]
fn an_adapter_for_another_base_names_the_first_mismatched_tensor() {
    let d = tmp("otherbase");
    let small = d.join("small");
    let big = d.join("big");
    let small_cfg = tiny(&small, &TinyModelSpec::default());
    let big_cfg = tiny(
        &big,
        &TinyModelSpec {
            hidden_size: 48,
            num_layers: 3,
            intermediate_size: 96,
            ..Default::default()
        },
    );
    let load = |model: &Path, adapter: &Path| {
        Engine::load(
            model.to_str().unwrap(),
            EngineOptions {
                adapter: Some(adapter.to_path_buf()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string()
    };
    // Shapes: the first tensor in model order is layer 0's q_proj lora_A.
    let big_adapter = d.join("big-adapter");
    random_adapter(&big_cfg, 4, 8.0, false)
        .save(&big_adapter)
        .unwrap();
    let e = load(&small, &big_adapter);
    assert!(
        e.contains(&lora_key(0, "q_proj", LoraPart::A))
            && e.contains("[4, 48]")
            && e.contains("[4, 32]"),
        "{e}"
    );
    // A layer beyond the model.
    let mut three = small_cfg.clone();
    three.num_hidden_layers = 3;
    let deep = d.join("deep-adapter");
    let c = LoraConfig::new(None, 4, 8.0, false, 0.0, vec!["v_proj".into()]);
    LoraAdapter::random(&three, c, 1, 0.1)
        .unwrap()
        .save(&deep)
        .unwrap();
    let e = load(&small, &deep);
    assert!(
        e.contains(&lora_key(2, "v_proj", LoraPart::A)) && e.contains("2 layers"),
        "{e}"
    );
    // A module the model lacks.
    let odd = d.join("odd-adapter");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(
        odd.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["w1"]}"#,
    )
    .unwrap();
    std::fs::write(
        odd.join("adapter_model.safetensors"),
        safetensors_f32_bytes(
            &[
                (
                    "base_model.model.model.layers.0.mlp.w1.lora_A.weight".into(),
                    vec![2, 32],
                    vec![0.1; 64],
                ),
                (
                    "base_model.model.model.layers.0.mlp.w1.lora_B.weight".into(),
                    vec![64, 2],
                    vec![0.1; 128],
                ),
            ],
            &[],
        )
        .unwrap(),
    )
    .unwrap();
    let e = load(&small, &odd);
    assert!(e.contains("mlp.w1") && e.contains("lora_A"), "{e}");
}

fn kinds(p: &[adapter::AdapterProblem]) -> Vec<ProblemKind> {
    p.iter().map(|p| p.kind).collect()
}

#[test]
fn check_adapter_reports_what_vllm_rejects() {
    let d = tmp("check");
    let cfg = tiny(&d.join("model"), &TinyModelSpec::default());
    let good = d.join("good");
    random_adapter(&cfg, 8, 16.0, true).save(&good).unwrap();
    assert_eq!(check_adapter(&good, Some(&cfg), 16), vec![]);
    // Over the rank limit.
    assert_eq!(
        kinds(&check_adapter(&good, Some(&cfg), 4)),
        vec![ProblemKind::RankOverLimit, ProblemKind::RankOverLimit]
    );

    // Every config problem at once, on an adapter of rank 12 (not an allowed rank).
    let bad = d.join("bad");
    let mut c = LoraConfig::new(None, 12, 24.0, false, 0.0, all_targets());
    c.bias = "all".into();
    c.modules_to_save = Some(vec!["lm_head".into()]);
    c.use_dora = true;
    c.rank_pattern.insert("q_proj".into(), 12);
    c.alpha_pattern.insert("k_proj".into(), 3.0);
    c.target_modules.push("embed_tokens".into());
    let mut a = LoraAdapter::random(&cfg, c, 2, 0.1).unwrap();
    a.save(&bad).unwrap();
    let p = check_adapter(&bad, Some(&cfg), 16);
    let k = kinds(&p);
    for want in [
        ProblemKind::Bias,
        ProblemKind::ModulesToSave,
        ProblemKind::Dora,
        ProblemKind::RankNotAllowed,
        ProblemKind::Pattern,
        ProblemKind::UnknownModule,
    ] {
        assert!(k.contains(&want), "{want:?} missing in {p:#?}");
    }
    assert!(!k.contains(&ProblemKind::ShapeMismatch), "{p:#?}");
    assert!(
        p.iter().any(|p| p.message.contains("embed_tokens")),
        "{p:#?}"
    );

    // Shapes of another base; a rank disagreeing with the config.
    let other = d.join("other");
    let big_cfg = tiny(
        &d.join("big"),
        &TinyModelSpec {
            hidden_size: 48,
            intermediate_size: 96,
            ..Default::default()
        },
    );
    a = random_adapter(&big_cfg, 8, 16.0, false);
    a.config.r = 16;
    a.save(&other).unwrap();
    let p = check_adapter(&other, Some(&cfg), 16);
    let first = p
        .iter()
        .find(|p| p.kind == ProblemKind::ShapeMismatch)
        .unwrap_or_else(|| panic!("{p:#?}"));
    assert!(
        first.message.contains(&lora_key(0, "q_proj", LoraPart::A))
            && first.message.contains("[8, 48]"),
        "{first}"
    );
    assert!(k_has(&p, ProblemKind::Rank), "{p:#?}");
    // Without the base, shapes are not checked.
    assert!(!k_has(
        &check_adapter(&other, None, 16),
        ProblemKind::ShapeMismatch
    ));

    // Missing files and broken JSON.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(
        kinds(&check_adapter(&empty, None, 16)),
        vec![ProblemKind::Files, ProblemKind::Files]
    );
    std::fs::copy(
        good.join("adapter_model.safetensors"),
        empty.join("adapter_model.safetensors"),
    )
    .unwrap();
    std::fs::write(empty.join("adapter_config.json"), "{").unwrap();
    let p = check_adapter(&empty, None, 16);
    assert_eq!(kinds(&p), vec![ProblemKind::Config], "{p:#?}");
    assert!(p[0].message.contains("adapter_config.json"), "{}", p[0]);
}

fn k_has(p: &[adapter::AdapterProblem], k: ProblemKind) -> bool {
    p.iter().any(|p| p.kind == k)
}
