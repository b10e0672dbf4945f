#!/usr/bin/env python3
"""Training benchmark: nxt's embedded trainer vs PEFT + transformers (PyTorch, CPU) on the same
random 0.5B-shaped Qwen2 model, batch 1, LoRA r=16 (alpha 32) on all seven projections and full
fine-tuning, at 128/256/512 tokens per example. Figures go to docs/BENCHMARKS.md ("Fine-tuning").

    cargo build --release -p nxt-cli && cargo build --release -p nxt-train --example bench_model
    target/release/examples/bench_model /tmp/bench-0.5b          # about 2 GB, F32
    /tmp/peftenv/bin/python scripts/train_bench.py --model /tmp/bench-0.5b [--lengths 128,256,512] \
        [--modes lora,full] [--steps 4] [--no-peft]

Each (trainer, mode, length) runs in a child process of its own, so its peak RSS (ru_maxrss of
that child, from wait4) is its alone. Trained tokens/s = sequence tokens (prompt + completion)
per second of optimiser step, the mean over the steps after the first (the first pays for lazy
allocation). The child's CPU seconds (user + system, model loading included) are recorded too:
on a machine shared with other work they say more than wall-clock rates. Both trainers do the
same work per step: forward, completion-only loss,
backward, AdamW update (lr 1e-4); neither uses gradient checkpointing. nxt's examples are text
cut to exactly --max-length tokens by its own tokenizer (prompt 16 tokens); PEFT gets random
token ids of the same length with the first 16 positions masked.

Without torch (--no-peft) only nxt is measured. Results are printed as a Markdown table and as
JSON (--json FILE).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT_TOKENS = 16

PEFT_CHILD = r"""
import json, sys, time, torch
from transformers import AutoModelForCausalLM
mode, length, steps, model_dir, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
if mode == "lora":
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
vocab = min(model.config.vocab_size if hasattr(model.config, "vocab_size") else model.get_input_embeddings().num_embeddings, 400)
times = []
for step in range(steps):
    ids = torch.randint(0, vocab, (1, length))
    labels = ids.clone()
    labels[:, :%d] = -100
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
    print(f"peft {mode} {length}: step {step + 1} {times[-1]:.2f}s loss {loss.item():.3f}", file=sys.stderr, flush=True)
print(json.dumps({"step_s": times, "trainable": sum(p.numel() for p in params)}))
""" % PROMPT_TOKENS


def run_measured(cmd, env=None, cwd=None):
    """Runs cmd; returns (stdout, peak RSS in bytes, wall seconds, CPU seconds (user + system))."""
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=cwd, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed with status {p.returncode}")
    return out, ru.ru_maxrss * 1024, time.time() - t0, ru.ru_utime + ru.ru_stime


def words(n, rng):
    vocab = ["def", "return", "total", "for", "in", "range", "if", "else", "print", "while", "x", "y",
             "nums", "count", "result", "append", "len", "+", "-", "==", "(", ")", ":", "0", "1", "2"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def nxt_run(nxt, model, mode, length, steps, work):
    rng = random.Random(length)
    data = os.path.join(work, f"data-{length}.jsonl")
    with open(data, "w") as f:
        for i in range(steps):
            # A prompt of about PROMPT_TOKENS tokens and a completion longer than the cut.
            f.write(json.dumps({"id": i, "prompt": words(8, rng), "completion": " " + words(4 * length, rng)}) + "\n")
    out = os.path.join(work, f"nxt-{mode}-{length}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [nxt, "train", "--model", model, "--data", data, "--out", out, "--max-length", str(length),
           "--max-steps", str(steps), "--lr", "1e-4", "--batch-size", "1", "--seed", "0"]
    if mode == "full":
        cmd.append("--full")
    else:
        cmd += ["--lora-r", "16", "--lora-alpha", "32"]
    _, rss, wall, cpu = run_measured(cmd)
    steps_s = []
    toks = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            toks.append(m["tokens"])
            steps_s.append(m["tokens"] / m["tokens_per_s"])
    shutil.rmtree(out, ignore_errors=True)
    return {"step_s": steps_s, "tokens": toks, "peak_rss": rss, "wall_s": wall, "cpu_s": cpu}


def peft_run(python, model, mode, length, steps, threads):
    out, rss, wall, cpu = run_measured([python, "-c", PEFT_CHILD, mode, str(length), str(steps), model, str(threads)])
    r = json.loads(out.strip().splitlines()[-1])
    return {"step_s": r["step_s"], "tokens": [length] * steps, "peak_rss": rss, "wall_s": wall, "cpu_s": cpu}


def summarise(r):
    steps = list(zip(r["step_s"], r["tokens"]))[1:] or list(zip(r["step_s"], r["tokens"]))
    secs = sum(s for s, _ in steps)
    toks = sum(t for _, t in steps)
    return {"tokens_per_s": toks / secs, "s_per_step": secs / len(steps), "peak_rss_gb": r["peak_rss"] / 1e9,
            "tokens_per_example": r["tokens"][0], "cpu_s_whole_run": r["cpu_s"], "wall_s_whole_run": r["wall_s"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--nxt", default=os.path.join(ROOT, "target", "release", "nxt"))
    ap.add_argument("--python", default=sys.executable, help="a Python with torch, transformers, peft")
    ap.add_argument("--lengths", default="128,256,512")
    ap.add_argument("--modes", default="lora,full")
    ap.add_argument("--trainers", default="nxt,peft")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", default="/tmp/nxt-train-bench")
    ap.add_argument("--json")
    ap.add_argument("--no-peft", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    trainers = [t for t in args.trainers.split(",") if not (args.no_peft and t == "peft")]
    rows = []
    for mode in args.modes.split(","):
        for length in [int(x) for x in args.lengths.split(",")]:
            for trainer in trainers:
                load = os.getloadavg()[0]
                try:
                    if trainer == "nxt":
                        r = nxt_run(args.nxt, args.model, mode, length, args.steps, args.work)
                    else:
                        r = peft_run(args.python, args.model, mode, length, args.steps, args.threads)
                    s = summarise(r)
                except RuntimeError as e:
                    s = {"error": str(e)}
                    r = {}
                row = {"trainer": trainer, "mode": mode, "length": length, "load_before": load, **s, "raw": r}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "raw"}), file=sys.stderr, flush=True)
    print("| mode | tokens | trainer | trained tokens/s | s/step | peak RSS (GB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['mode']} | {r['length']} | {r['trainer']} | {r['error']} | | |")
        else:
            print(f"| {r['mode']} | {r['length']} | {r['trainer']} | {r['tokens_per_s']:.1f} | {r['s_per_step']:.2f} | {r['peak_rss_gb']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
