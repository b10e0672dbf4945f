#!/usr/bin/env python3
"""transformers (PyTorch, CPU, float32) side of the engine benchmark: same model directory
and prompt ids as crates/nxt-llm/examples/engine_bench.rs, same timing method
(decode tokens/s = samples * N / (t(N+1 new tokens) - t(1 new token))).

usage: hf_bench.py MODEL_DIR [--decode N] [--threads T]
"""
import argparse
import json
import os
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - t
    prompt = json.load(open(os.path.join(a.model_dir, "prompt.json")))
    ids = torch.tensor([prompt])

    def run(n, new):
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                num_return_sequences=n,
                max_new_tokens=new,
                min_new_tokens=new,
                pad_token_id=0,
            )
        return time.perf_counter() - t, out.shape[1] - ids.shape[1]

    # Read bandwidth: numpy sum over a 1 GiB float32 buffer (single thread), best of 3.
    import numpy as np
    buf = np.ones(1 << 28, dtype=np.float32)
    bw = 0.0
    for _ in range(3):
        t = time.perf_counter()
        buf.sum()
        bw = max(bw, buf.nbytes / (time.perf_counter() - t))
    del buf

    torch.manual_seed(0)
    run(1, 2)  # warm-up
    results = []
    for n in (1, 8):
        t1, _ = run(n, 1)
        tn, got = run(n, a.decode + 1)
        tps = n * (got - 1) / (tn - t1)
        print(f"transformers batch {n}: prefill+1 {t1:.2f}s, +{got - 1} tokens {tn - t1:.2f}s -> {tps:.2f} tok/s", file=sys.stderr)
        results.append({"batch": n, "prefill_s": t1, "decode_tokens": n * (got - 1), "decode_s": tn - t1, "tokens_per_s": tps})
    print(json.dumps({"engine": "transformers", "version": transformers.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "load_s": load_s,
                      "numpy_read_bandwidth_bytes_per_s": bw, "results": results}))


if __name__ == "__main__":
    main()
