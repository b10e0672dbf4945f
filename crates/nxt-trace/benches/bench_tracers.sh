#!/bin/sh
# Cost per traced line event: nxt tracer vs PySnooper vs snoop (see bench_tracers.py).
# Usage: crates/nxt-trace/benches/bench_tracers.sh [python]   (default /usr/bin/python3.11)
set -eu
PY=${1:-/usr/bin/python3.11}
VENV=${BENCH_VENV:-/tmp/nxt-trace-bench-venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q pysnooper snoop
fi
exec "$VENV/bin/python" "$(dirname "$0")/bench_tracers.py"
