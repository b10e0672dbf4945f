#!/usr/bin/env bash
# Cross-check `nxt grade --dataset humaneval+` against EvalPlus itself, per sample.
#
# Not part of `cargo test`: it installs evalplus from PyPI into a venv under /tmp.
# Samples (benches/data/make_samples.py, deterministic): the 164 HumanEval+ canonical
# solutions, the 164 HumanEvalFix buggy programs and mutants of the canonical solutions
# (3 per task: operator swaps, comparison swaps, and/or swaps, integer constants +-1).
#
# Usage: benches/data/evalplus_crosscheck.sh [DATA_DIR]   (default: $NXT_DATA_DIR or ../shared/data)
# Env: PER_TASK (mutants per task, default 3), EVALPLUS_VERSION (default 0.3.1),
#      NXT (the nxt binary; default: cargo build --release -p nxt-cli).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DATA=${1:-${NXT_DATA_DIR:-$(cd .. && pwd)/shared/data}}
PY=${PYTHON:-/usr/bin/python3.11}
VENV=${VENV:-/tmp/nxt-evalplus-venv}
WORK=${WORK:-/tmp/nxt-evalplus-crosscheck}
PER_TASK=${PER_TASK:-3}
EVALPLUS_VERSION=${EVALPLUS_VERSION:-0.3.1}
mkdir -p "$WORK"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import evalplus" 2>/dev/null; then
  echo "== installing evalplus==$EVALPLUS_VERSION into $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q "evalplus==$EVALPLUS_VERSION"
fi

if [ -z "${NXT:-}" ]; then
  echo "== building nxt (release)"
  cargo build -q --release -p nxt-cli
  NXT="${CARGO_TARGET_DIR:-$ROOT/target}/release/nxt"
fi

echo "== samples"
SAMPLES="$WORK/samples.jsonl"
"$PY" benches/data/make_samples.py "$DATA/evalplus/humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz" \
  "$DATA/humanevalfix/humanevalpack_python.jsonl" "$SAMPLES" "$PER_TASK"

echo "== evalplus $EVALPLUS_VERSION"
zcat "$DATA/evalplus/humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz" > "$WORK/HumanEvalPlus.jsonl"
rm -f "$WORK/samples_eval_results.json"
T0=$(date +%s)
( cd "$WORK" && HUMANEVAL_OVERRIDE_PATH="$WORK/HumanEvalPlus.jsonl" EVALPLUS_CACHE_DIR="$WORK/cache" \
    "$VENV/bin/evalplus.evaluate" --dataset humaneval --samples "$SAMPLES" --i_just_wanna_run > "$WORK/evalplus.log" 2>&1 ) \
  || { tail -n 30 "$WORK/evalplus.log"; exit 1; }
T1=$(date +%s)

echo "== nxt grade"
rm -f "$WORK/grades.sqlite"
"$NXT" grade --dataset humaneval+ --samples "$SAMPLES" --db "$WORK/grades.sqlite" --data-dir "$DATA" \
  --allow-weak-isolation > "$WORK/nxt.txt"
T2=$(date +%s)
echo "evalplus: $((T1 - T0)) s, nxt grade: $((T2 - T1)) s (nxt includes computing expected outputs unless cached)"

echo "== comparison"
"$PY" - "$SAMPLES" "$WORK/samples_eval_results.json" "$WORK/grades.sqlite" <<'PYEOF'
import collections, json, sqlite3, sys
samples = [json.loads(l) for l in open(sys.argv[1])]
ep = json.load(open(sys.argv[2]))["eval"]
db = sqlite3.connect(sys.argv[3])
ours = {(t, n): bool(p) for t, n, p in db.execute("SELECT task_id, sample_no, passed FROM grades")}
count = collections.Counter()
by_kind = collections.defaultdict(collections.Counter)
bad = []
for s in samples:
    tid = s["task_id"]
    n = count[tid]
    count[tid] += 1
    r = ep[tid][n]
    assert r["solution"] == s["solution"], "sample order mismatch at %s #%d" % (tid, n)
    theirs = r["base_status"] == "pass" and r["plus_status"] == "pass"
    mine = ours[("humaneval+/" + tid.split("/")[1], n)]
    kind = s["kind"].split(":")[0]
    by_kind[kind][theirs == mine] += 1
    if theirs != mine:
        bad.append((tid, n, s["kind"], theirs, mine, r["base_status"], r["plus_status"]))
total = sum(sum(c.values()) for c in by_kind.values())
agree = sum(c[True] for c in by_kind.values())
print("agreement: %d / %d samples (%.2f%%)" % (agree, total, 100.0 * agree / total))
for k, c in sorted(by_kind.items()):
    print("  %-12s %d / %d" % (k, c[True], c[True] + c[False]))
print("evalplus passes: %d, nxt passes: %d" % (
    sum(1 for t, rs in ep.items() for r in rs if r["base_status"] == r["plus_status"] == "pass"),
    sum(ours.values())))
for b in bad:
    print("  DIFF %s #%d %-14s evalplus=%s nxt=%s (evalplus base=%s plus=%s)" % b)
PYEOF
