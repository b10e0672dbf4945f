#!/bin/sh
# Cost per traced line event: nxt tracer vs PySnooper vs snoop (see bench_tracers.py).
# Usage: crates/nxt-trace/benches/bench_tracers.sh [python]   (default /usr/bin/python3.11)
# BENCH_SET=loops: the loop-heavy programs; BENCH_REPEAT: runs per figure (median).
set -eu
PY=${1:-/usr/bin/python3.11}
VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# one venv per Python version (PySnooper and snoop from PyPI)
VENV=${BENCH_VENV:-/tmp/nxt-trace-bench-venv-$VER}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q pysnooper snoop
fi
exec "$VENV/bin/python" "$(dirname "$0")/bench_tracers.py"
