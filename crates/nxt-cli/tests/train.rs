//! `nxt train` end to end: kill -9 mid-run then rerun gives bit-identical weights to an
//! uninterrupted run; `--backend trl` hands off to a launcher (a stand-in that reads
//! `sft.yaml` and runs this binary's embedded trainer) and validates its adapter.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nxt_engine::tiny::{write_tiny_model, TinyModelSpec};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxt-cli-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("model");
    write_tiny_model(
        &model,
        &TinyModelSpec {
            hidden_size: 32,
            intermediate_size: 64,
            num_merges: 120,
            seed: 11,
            ..Default::default()
        },
    )
    .unwrap();
    let data = dir.join("train.jsonl");
    let pairs = [
        ("def add(a, b):\n", "    return a + b\n"),
        ("def is_even(n):\n", "    return n % 2 == 0\n"),
        ("Q: 1 + 2 =", " 3"),
        ("for i in range(10):\n", "    print(i)\n"),
        ("The bug is in", " the loop."),
        ("class Solution:\n", "    def solve(self, nums):\n"),
    ];
    let mut s = String::new();
    for (i, (p, c)) in pairs.iter().enumerate() {
        s.push_str(&serde_json::json!({"id": i, "prompt": p, "completion": c}).to_string());
        s.push('\n');
    }
    std::fs::write(&data, s).unwrap();
    (model, data)
}

fn train_cmd(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nxt"));
    c.arg("train")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

/// `nxt train` handing off to the TRL launcher `launcher` (the stand-in finds the binary
/// under test through `NXT_BIN`).
fn trl_train_cmd(model: &Path, data: &Path, out: &Path, extra: &[&str], launcher: &str) -> Command {
    let mut c = train_cmd(model, data, out, extra);
    c.args(["--backend", "trl", "--launcher", launcher])
        .env("NXT_BIN", env!("CARGO_BIN_EXE_nxt"));
    c
}

const RUN: &[&str] = &[
    "--lora-r",
    "4",
    "--lora-dropout",
    "0.1",
    "--lr",
    "1e-3",
    "--batch-size",
    "2",
    "--grad-accum",
    "2",
    "--max-steps",
    "300",
    "--save-every",
    "7",
    "--schedule",
    "cosine",
    "--warmup-steps",
    "5",
    "--weight-decay",
    "0.01",
    "--seed",
    "3",
];

fn checkpoint_step(out: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(out.join("checkpoint/trainer_state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["step"].as_u64()
}

#[test]
fn kill_9_then_resume_gives_bit_identical_weights() {
    let dir = tmp("kill");
    let (model, data) = setup(&dir);
    // Uninterrupted reference run.
    let reference = dir.join("reference");
    let st = train_cmd(&model, &data, &reference, RUN)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    // The same run, killed with SIGKILL once a checkpoint exists.
    let out = dir.join("killed");
    let mut child = train_cmd(&model, &data, &out, RUN)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if checkpoint_step(&out).is_some_and(|s| s >= 7) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before a checkpoint was seen");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let step = checkpoint_step(&out).unwrap();
    assert!(
        step < 300 && !out.join("train_summary.json").exists(),
        "the kill landed after the run finished (checkpoint step {step})"
    );
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(lines.lines().count() >= 7);
    // Resume to the end.
    let o = train_cmd(&model, &data, &out, RUN).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = std::fs::read(reference.join("adapter_model.safetensors")).unwrap();
    let b = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's (killed at {step})"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 300);
    // A changed setting on resume is refused, naming the key.
    let mut changed: Vec<&str> = RUN.to_vec();
    let i = changed.iter().position(|a| *a == "--lr").unwrap();
    changed[i + 1] = "2e-3";
    let o = train_cmd(&model, &data, &out, &changed).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("lr = 0.001") && err.contains("lr = 0.002"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in for `trl sft --config sft.yaml`: reads the (JSON-valued) YAML and runs this
/// binary's embedded trainer with the same settings into `output_dir`.
/// The stand-in launcher (see the script's header).
const STANDIN: &str = include_str!("fixtures/trl_standin.py");

#[test]
fn trl_backend_hands_off_to_the_launcher_and_validates_its_adapter() {
    let dir = tmp("trl");
    let (model, data) = setup(&dir);
    let script = dir.join("standin.py");
    std::fs::write(&script, STANDIN).unwrap();
    let python = std::env::var("NXT_PYTHON").unwrap_or_else(|_| "python3".into());
    let launcher = format!("{python} {} {{config}}", script.display());
    let flags = [
        "--lora-r",
        "8",
        "--lora-alpha",
        "16",
        "--rslora",
        "--lr",
        "1e-3",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--max-length",
        "64",
        "--seed",
        "5",
        "--target-modules",
        "q_proj,v_proj",
    ];
    let out = dir.join("out");
    let o = trl_train_cmd(&model, &data, &out, &flags, &launcher)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("stand-in trl: running the embedded trainer"),
        "{stderr}"
    );
    let yaml = std::fs::read_to_string(out.join("sft.yaml")).unwrap();
    for key in [
        "completion_only_loss: true",
        "use_peft: true",
        "lora_r: 8",
        "lora_alpha: 16.0",
        "use_rslora: true",
        "lora_target_modules: [\"q_proj\",\"v_proj\"]",
        "per_device_train_batch_size: 2",
        "max_length: 64",
        "seed: 5",
        "report_to: \"none\"",
    ] {
        assert!(yaml.contains(key), "{key} missing from\n{yaml}");
    }
    assert!(out.join("train.jsonl").exists() && out.join("manifest.json").exists());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("backend:            trl"), "{stdout}");
    // The adapter the launcher wrote, with the requested settings.
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("trl/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["r"], 8);
    assert_eq!(cfg["use_rslora"], true);
    // 6 examples, batch 2, 2 epochs = 6 steps: read from the trainer_state.json of the
    // launcher's final checkpoint (the stand-in leaves only what TRL leaves).
    assert!(stdout.contains("steps:              6"), "{stdout}");
    assert!(out.join("trl/checkpoint-6/trainer_state.json").exists());
    assert!(!out.join("trl/train_summary.json").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["steps"], 6);
    assert!(
        summary["final_loss"].as_f64().is_some_and(f64::is_finite),
        "{summary}"
    );
    // The launcher's log_history as nxt metrics lines, for the report's training curves.
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 6);
    for (i, m) in metrics.iter().enumerate() {
        assert_eq!(m["step"], i as u64 + 1);
        for key in ["epoch", "loss", "lr", "grad_norm"] {
            assert!(m[key].as_f64().is_some_and(f64::is_finite), "{key}: {m}");
        }
    }
    assert!(
        !out.join("launcher.json").exists(),
        "the launcher's record outlived it"
    );

    // A failing launcher: its exit status and last output in the error.
    let out2 = dir.join("out-fail");
    let mut c = train_cmd(&model, &data, &out2, &flags);
    c.args([
        "--backend",
        "trl",
        "--launcher",
        "echo preparing; echo 'CUDA out of memory' >&2; exit 3",
    ]);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exit status: 3") && err.contains("CUDA out of memory"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|s| s == "Z" || s == "X"),
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The launcher runs in a process group of its own that does not outlive nxt: `kill -9` of
/// nxt takes the launcher's grandchild with it; one that ignores SIGTERM survives that and is
/// stopped by the rerun (which says so, then trains to the end); SIGTERM to nxt is forwarded
/// to the group and nxt then dies of it, its record of the group removed.
#[test]
fn the_launchers_process_group_does_not_outlive_nxt() {
    let dir = tmp("pgroup");
    let (model, data) = setup(&dir);
    let script = dir.join("standin.py");
    std::fs::write(&script, STANDIN).unwrap();
    let python = std::env::var("NXT_PYTHON").unwrap_or_else(|_| "python3".into());
    let launcher = format!("{python} {} {{config}}", script.display());
    let flags = ["--lora-r", "4", "--max-steps", "3", "--batch-size", "2"];
    let out = dir.join("out");
    let start = |hang: Option<&str>, pidfile: &Path| {
        let _ = std::fs::remove_file(pidfile);
        let mut c = trl_train_cmd(&model, &data, &out, &flags, &launcher);
        c.env("STANDIN_PIDFILE", pidfile)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(h) = hang {
            c.env("STANDIN_HANG", h);
        }
        let child = c.spawn().unwrap();
        wait_until("the stand-in's grandchild", Duration::from_secs(60), || {
            pidfile.exists()
        });
        let pid: i32 = std::fs::read_to_string(pidfile).unwrap().parse().unwrap();
        (child, pid)
    };
    let record = out.join("launcher.json");

    // kill -9 of nxt: the group gets SIGTERM from its supervisor and the grandchild dies.
    let pidfile = dir.join("grandchild-1");
    let (mut nxt, grandchild) = start(Some("1"), &pidfile);
    assert!(!gone(grandchild));
    assert!(record.exists(), "no record of the launcher's group");
    nxt.kill().unwrap();
    nxt.wait().unwrap();
    wait_until("the grandchild to die", Duration::from_secs(10), || {
        gone(grandchild)
    });

    // A grandchild that ignores SIGTERM survives the kill; the rerun stops it first.
    let pidfile = dir.join("grandchild-2");
    let (mut nxt, stubborn) = start(Some("ignore-term"), &pidfile);
    nxt.kill().unwrap();
    nxt.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !gone(stubborn),
        "the SIGTERM-ignoring grandchild died early"
    );
    let o = trl_train_cmd(&model, &data, &out, &flags, &launcher)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("the launcher of an earlier run is still running"),
        "{stderr}"
    );
    assert!(gone(stubborn), "the rerun left the earlier group alive");
    assert!(!record.exists());

    // SIGTERM to nxt is forwarded to the group; nxt dies of it once the group has stopped.
    let out2 = dir.join("out-term");
    let pidfile = dir.join("grandchild-3");
    let _ = std::fs::remove_file(&pidfile);
    let mut c = trl_train_cmd(&model, &data, &out2, &flags, &launcher);
    c.env("STANDIN_PIDFILE", &pidfile)
        .env("STANDIN_HANG", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut nxt = c.spawn().unwrap();
    wait_until("the stand-in's grandchild", Duration::from_secs(60), || {
        pidfile.exists()
    });
    let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let st = Command::new("kill")
        .args(["-TERM", &nxt.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = nxt.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status}");
    assert!(gone(grandchild), "SIGTERM was not forwarded to the group");
    assert!(!out2.join("launcher.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The smallest toy self-training run with `trainer = "trl"`: one iteration. The warm start
/// (which goes through the same trainer) must be long enough for some hard-stage samples to
/// pass (25 epochs are not: nothing is kept and no iteration trains).
const SELFTRAIN_TRL: &str = r#"
[model]

[toy.options]
seed = 5
instances_per_template = 1
warm_start = 12
corpus_tasks = 24

[toy.options.model]
hidden_size = 48
intermediate_size = 96
num_merges = 300

[toy.warm_start]
epochs = 40
lr = 1e-2
batch_size = 4

[prompt]
layout = "completion"
max_tokens = 120

[hard]
samples_per_task = 4
threshold = 1.0

[sampling]
samples_per_task = 4
temperature = 1.0
reuse_hard_samples = true

[keep]
max_per_task = 2

[train]
trainer = "trl"
launcher = "@LAUNCHER@"
lora_r = 4
lr = 1e-3
epochs = 1
batch_size = 2
schedule = "constant"

[eval]
dev_samples = 1
test_samples = 1
ks = [1]

[data]
dev_limit = 2
test_limit = 1

[loop]
iterations = 1
patience = 1
"#;

/// One self-training iteration whose fine-tuning goes through the TRL hand-off (the stand-in
/// leaves what `trl sft` leaves) completes: the iteration's step count, losses and metrics
/// come from the launcher's trainer_state.json, and its adapter is the model of the dev
/// evaluation.
#[test]
fn a_selftrain_iteration_trains_through_the_trl_hand_off() {
    use nxt_sandbox::test_support::{skip, SANDBOX};
    if let Err(e) = nxt_sandbox::Pool::new(nxt_sandbox::PoolConfig::default()) {
        skip(
            SANDBOX,
            &format!("sandbox with full isolation unavailable: {e}"),
        );
        return;
    }
    let dir = tmp("selftrain-trl");
    let script = dir.join("standin.py");
    std::fs::write(&script, STANDIN).unwrap();
    let python = std::env::var("NXT_PYTHON").unwrap_or_else(|_| "python3".into());
    let launcher = format!("{python} {} {{config}}", script.display());
    let config = dir.join("selftrain.toml");
    std::fs::write(
        &config,
        SELFTRAIN_TRL.replace("@LAUNCHER@", &launcher.replace('\\', "\\\\")),
    )
    .unwrap();
    let run_dir = dir.join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_nxt"))
        .arg("selftrain")
        .arg("--config")
        .arg(&config)
        .arg("--run-dir")
        .arg(&run_dir)
        .env("NXT_BIN", env!("CARGO_BIN_EXE_nxt"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("stand-in trl: running the embedded trainer"),
        "{stderr}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap())
            .unwrap();
    let it = &results["iterations"][0];
    assert!(it["kept"].as_u64().unwrap_or(0) > 0, "nothing kept: {it:#}");
    let train = &it["train"];
    assert_eq!(train["summary"]["backend"], "trl", "{train:#}");
    let steps = train["steps"].as_u64().unwrap_or(0);
    assert!(steps > 0, "{train:#}");
    assert!(
        it["train_loss"].as_f64().is_some_and(f64::is_finite),
        "{it:#}"
    );
    let adapter = train["adapter"].as_str().expect("the iteration's adapter");
    assert_eq!(adapter, "iter-1/train/trl");
    let adapter_dir = run_dir.join(adapter);
    assert!(adapter_dir.join("adapter_model.safetensors").exists());
    assert!(adapter_dir
        .join(format!("checkpoint-{steps}/trainer_state.json"))
        .exists());
    let metrics = std::fs::read_to_string(run_dir.join("iter-1/train/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count() as u64, steps);
    // The dev evaluation of iteration 1 ran on the base with that adapter loaded.
    let dev: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("iter-1/dev/results.json")).unwrap(),
    )
    .unwrap();
    let model = dev["model"].as_str().unwrap_or_default();
    assert!(
        model.contains('+') && model.ends_with(&adapter_dir.display().to_string()),
        "{model}"
    );
    assert!(it["dev"]["pass@1"].as_f64().is_some(), "{it:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}
