#!/usr/bin/env bash
# Embedded engine decode benchmark: nxt (candle, f32) vs HF transformers (PyTorch CPU, f32)
# on the same random-weight Qwen2.5-0.5B-shaped model, batch 1 and 8 samples of one
# 256-token prompt, in one run. Results: docs/BENCHMARKS.md "## Embedded engine".
#
#   benches/engine/run.sh [MODEL_DIR] [DECODE_TOKENS]
#
# Needs a Python with torch + transformers (PYTHON, default /tmp/venv-tf/bin/python):
#   /usr/bin/python3.11 -m venv /tmp/venv-tf && /tmp/venv-tf/bin/pip install torch transformers safetensors
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-/tmp/nxt-bench-qwen2.5-0.5b-random}
N=${2:-32}
PY=${PYTHON:-/tmp/venv-tf/bin/python}
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
cargo build --release -p nxt-llm --example engine_bench
BIN=${CARGO_TARGET_DIR:-target}/release/examples/engine_bench
"$BIN" "$DIR" --write-only
echo "== nxt engine" >&2
"$BIN" "$DIR" --decode "$N" > /tmp/nxt-bench-engine.json
echo "== transformers" >&2
"$PY" benches/engine/hf_bench.py "$DIR" --decode "$N" --threads 2 > /tmp/nxt-bench-hf.json
"$PY" - <<'PY'
import json
a = json.load(open("/tmp/nxt-bench-engine.json")); b = json.load(open("/tmp/nxt-bench-hf.json"))
bw = max(a["read_bandwidth_2threads_bytes_per_s"], b["numpy_read_bandwidth_bytes_per_s"])
print(f"read bandwidth: Rust 2 threads {a['read_bandwidth_2threads_bytes_per_s']/1e9:.2f} GB/s, numpy 1 thread {b['numpy_read_bandwidth_bytes_per_s']/1e9:.2f} GB/s; bound uses {bw/1e9:.2f} GB/s; f32 weights {a['weight_bytes_f32']/1e9:.2f} GB")
print(f"transformers {b['version']}, torch {b['torch']}, {b['threads']} threads; nxt {a['threads']} threads")
print("| batch | nxt tok/s | transformers tok/s | speed-up | bandwidth bound tok/s | nxt % of bound | transformers % of bound |")
print("|---|---|---|---|---|---|---|")
for x, y in zip(a["results"], b["results"]):
    bound = x["batch"] * bw / a["weight_bytes_f32"]
    print(f"| {x['batch']} | {x['tokens_per_s']:.2f} | {y['tokens_per_s']:.2f} | {x['tokens_per_s']/y['tokens_per_s']:.2f}x | {bound:.1f} | {100*x['tokens_per_s']/bound:.0f}% | {100*y['tokens_per_s']/bound:.0f}% |")
PY
