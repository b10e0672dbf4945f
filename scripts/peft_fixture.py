#!/usr/bin/env python3
"""PEFT / transformers / TRL interoperability of nxt's LoRA adapters, and the fixtures of
crates/nxt-train/tests/peft_interop.rs.

CI does not install torch; this script is run by hand (figures in docs/INTEROP.md):

    /usr/bin/python3.11 -m venv /tmp/peftenv
    /tmp/peftenv/bin/pip install torch peft transformers safetensors trl
    cargo build --release -p nxt-cli -p nxt-train --example peft_interop
    PATH=/tmp/peftenv/bin:$PATH /tmp/peftenv/bin/python scripts/peft_fixture.py [--work DIR] [--no-trl] [--write-fixtures]

What it does, each step checked (the script exits 1 on the first failure):

1. nxt writes a tiny Qwen2 model directory (`peft_interop model`); transformers loads it
   (AutoModelForCausalLM, float32, eager attention) and its logits equal the engine's.
2. nxt -> PEFT: nxt writes a random rank-8 adapter; `peft.PeftModel.from_pretrained` loads it
   on the transformers model; logits equal the engine's with `--adapter` (to 1e-4).
3. PEFT -> nxt: PEFT creates a LoRA adapter (r=8, alpha=16, all seven projections, A and B
   random) and saves it with `save_pretrained`; `nxt train check-adapter --model` accepts
   it and the engine's logits with it equal PEFT's.
4. `nxt train merge` of the PEFT adapter: transformers loads the merged directory and its
   logits equal PEFT's base+adapter (and the engine's).
5. `nxt train --backend trl` runs `trl sft` for real on the tiny model on the CPU; the
   adapter TRL wrote passes nxt's validation and its logits in the engine equal PEFT's.

With --write-fixtures, the model, the PEFT adapter, the TRL adapter and PEFT's reference
logits are copied to crates/nxt-train/tests/fixtures/peft/ (the test loads them in CI).
A summary (versions, max |logit difference| per step) is printed as JSON and written to
WORK/summary.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import torch

TOL = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates", "nxt-train", "tests", "fixtures", "peft")


def sh(cmd, **kw):
    """Runs a command, echoing it; a failure stops the script with its output."""
    print("+ " + " ".join(str(c) for c in cmd), file=sys.stderr)
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"command failed with status {r.returncode}: {cmd[0]} {cmd[1]}")
    return r.stdout


def find_bin(name, explicit):
    if explicit:
        return explicit
    for profile in ("release", "debug"):
        for sub in ("", "examples"):
            p = os.path.join(ROOT, "target", profile, sub, name)
            if os.path.exists(p):
                return p
    raise SystemExit(f"{name} not built: cargo build --release -p nxt-cli -p nxt-train --example peft_interop")


def load_hf(model_dir):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(
        model_dir, torch_dtype=torch.float32, attn_implementation="eager"
    )
    m.eval()
    return m


def hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].to(torch.float32)


def nxt_logits(interop, work, model_dir, adapter=None, tag="x"):
    out = os.path.join(work, f"logits-{tag}.json")
    cmd = [interop, "logits", model_dir, out]
    if adapter:
        cmd.append(adapter)
    sh(cmd)
    with open(out) as f:
        v = json.load(f)
    return v["tokens"], torch.tensor(v["logits"], dtype=torch.float32)


def max_diff(a, b):
    return float((a - b).abs().max())


def check(name, diff, results, tol=TOL):
    ok = diff <= tol
    results[name] = {"max_abs_diff": diff, "tolerance": tol, "ok": ok}
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |diff| = {diff:.3e} (tolerance {tol:g})", file=sys.stderr)
    if not ok:
        raise SystemExit(f"{name}: logits differ by {diff:.3e} > {tol:g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/nxt-peft-fixture", help="scratch directory (emptied)")
    ap.add_argument("--nxt", help="the nxt binary (default: target/{release,debug}/nxt)")
    ap.add_argument("--interop", help="the peft_interop example binary")
    ap.add_argument("--no-trl", action="store_true", help="skip step 5 (TRL)")
    ap.add_argument("--write-fixtures", action="store_true", help="copy fixtures into the repo")
    args = ap.parse_args()

    import peft
    import transformers
    from peft import LoraConfig, PeftModel, get_peft_model

    nxt = find_bin("nxt", args.nxt)
    interop = find_bin("peft_interop", args.interop)
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    torch.manual_seed(0)
    results = {}

    # 1. The model: nxt writes it, transformers loads it.
    model_dir = os.path.join(work, "model")
    sh([interop, "model", model_dir])
    tokens, base_nxt = nxt_logits(interop, work, model_dir, tag="base")
    base_hf = load_hf(model_dir)
    check("base model: transformers vs nxt", max_diff(hf_logits(base_hf, tokens), base_nxt), results)

    # 2. nxt -> PEFT.
    nxt_adapter = os.path.join(work, "nxt-adapter")
    sh([interop, "adapter", model_dir, nxt_adapter, "5"])
    _, with_nxt_adapter = nxt_logits(interop, work, model_dir, nxt_adapter, tag="nxt-adapter")
    peft_model = PeftModel.from_pretrained(load_hf(model_dir), nxt_adapter)
    peft_model.eval()
    got = hf_logits(peft_model, tokens)
    check("nxt-written adapter: PEFT vs nxt", max_diff(got, with_nxt_adapter), results)
    results["nxt-written adapter changes the logits by"] = max_diff(got, base_nxt)

    # 3. PEFT -> nxt.
    peft_adapter = os.path.join(work, "peft-adapter")
    lcfg = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,  # A and B random, so the adapter changes the model
        task_type="CAUSAL_LM",
    )
    pm = get_peft_model(load_hf(model_dir), lcfg)
    pm.eval()
    pm.save_pretrained(peft_adapter, safe_serialization=True)
    peft_ref = hf_logits(pm, tokens)
    print(sh([nxt, "train", "check-adapter", "--model", model_dir, "--adapter", peft_adapter]), file=sys.stderr)
    _, got = nxt_logits(interop, work, model_dir, peft_adapter, tag="peft-adapter")
    check("PEFT-written adapter: nxt vs PEFT", max_diff(got, peft_ref), results)

    # 4. nxt train merge, loaded by transformers.
    merged = os.path.join(work, "merged")
    sh([nxt, "train", "merge", "--model", model_dir, "--adapter", peft_adapter, "--out", merged])
    check("nxt train merge: transformers vs PEFT base+adapter", max_diff(hf_logits(load_hf(merged), tokens), peft_ref), results)
    _, got = nxt_logits(interop, work, merged, tag="merged")
    check("nxt train merge: nxt vs PEFT base+adapter", max_diff(got, peft_ref), results)

    # 5. TRL for real, through nxt train --backend trl.
    trl_adapter = None
    if not args.no_trl:
        import trl

        data = os.path.join(work, "train.jsonl")
        pairs = [
            ("def add(a, b):\n", "    return a + b\n"),
            ("def is_even(n):\n", "    return n % 2 == 0\n"),
            ("The bug is in", " the loop."),
            ("for i in range(10):\n", "    print(i)\n"),
        ]
        with open(data, "w") as f:
            for i, (p, c) in enumerate(pairs):
                f.write(json.dumps({"id": i, "prompt": p, "completion": c}) + "\n")
        trl_out = os.path.join(work, "trl-run")
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
        t0 = time.time()
        out = sh(
            [nxt, "train", "--model", model_dir, "--data", data, "--out", trl_out, "--backend", "trl",
             "--lora-r", "8", "--lora-alpha", "16", "--lr", "1e-2", "--max-steps", "8", "--max-length", "64",
             # TRL's SFTConfig defaults to bf16, which transformers refuses without a GPU.
             "--launcher", "trl sft --config {config} --bf16 false --use_cpu true"],
            env=env,
        )
        results["trl run"] = {"wall_s": round(time.time() - t0, 1), "summary": out.strip().splitlines()}
        trl_adapter = os.path.join(trl_out, "trl")
        print(sh([nxt, "train", "check-adapter", "--model", model_dir, "--adapter", trl_adapter]), file=sys.stderr)
        pm = PeftModel.from_pretrained(load_hf(model_dir), trl_adapter)
        pm.eval()
        trl_ref = hf_logits(pm, tokens)
        _, got = nxt_logits(interop, work, model_dir, trl_adapter, tag="trl-adapter")
        check("TRL-trained adapter: nxt vs PEFT", max_diff(got, trl_ref), results)
        results["TRL-trained adapter changes the logits by"] = max_diff(trl_ref, base_nxt)
        results["versions_trl"] = trl.__version__

    results["versions"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": sys.version.split()[0],
    }

    if args.write_fixtures:
        shutil.rmtree(FIXTURES, ignore_errors=True)
        os.makedirs(FIXTURES)
        shutil.copytree(model_dir, os.path.join(FIXTURES, "model"))
        dest = os.path.join(FIXTURES, "peft-adapter")
        os.makedirs(dest)
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(os.path.join(peft_adapter, f), dest)
        expected = {
            "generator": f"scripts/peft_fixture.py: peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}",
            "tokens": tokens,
            "base": hf_logits(base_hf, tokens).tolist(),
            "peft-adapter": peft_ref.tolist(),
        }
        if trl_adapter:
            dest = os.path.join(FIXTURES, "trl-adapter")
            os.makedirs(dest)
            for f in ("adapter_config.json", "adapter_model.safetensors"):
                shutil.copy(os.path.join(trl_adapter, f), dest)
            expected["trl-adapter"] = trl_ref.tolist()
        with open(os.path.join(FIXTURES, "expected.json"), "w") as f:
            json.dump(expected, f)
        print(f"fixtures written to {FIXTURES}", file=sys.stderr)

    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
