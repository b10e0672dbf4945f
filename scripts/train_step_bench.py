#!/usr/bin/env python3
"""CPU and wall seconds per optimiser step of the toy warm start, per nxt binary and candle
thread setting.

The workload is the warm start of examples/toy-selftrain-smoke.toml: full fine-tuning of its
48-wide, 2-layer tiny model, batch 4, about 400 tokens per sequence, so attention dominates the
step. CPU seconds per step (the process's user+system time between two logged steps) is the
figure to compare on a shared machine: wall time follows the load, and spin-waiting threads
show up as CPU time.

    /usr/bin/python3.11 scripts/train_step_bench.py --seconds 40 target/release/nxt /tmp/nxt-before
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "toy-selftrain-smoke.toml"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def steps(metrics: Path) -> list:
    if not metrics.exists():
        return []
    return [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]


def measure(binary: str, env_extra: dict, seconds: float, work: Path) -> dict:
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    env = dict(os.environ, **env_extra)
    proc = subprocess.Popen(
        [binary, "selftrain", "--config", str(CONFIG), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    metrics = run_dir / "warm-start" / "metrics.jsonl"
    start = None
    try:
        while proc.poll() is None:
            rows = steps(metrics)
            if start is None and len(rows) >= 1:
                start = (len(rows), cpu_seconds(proc.pid), time.monotonic())
            if start is not None and time.monotonic() - start[2] >= seconds:
                break
            time.sleep(0.05)
        end = (len(steps(metrics)), cpu_seconds(proc.pid), time.monotonic())
    finally:
        proc.kill()
        proc.wait()
    if start is None or end[0] <= start[0]:
        raise SystemExit(f"{binary}: no optimiser steps were logged in {metrics}")
    n = end[0] - start[0]
    return {
        "steps": n,
        "cpu_s_per_step": (end[1] - start[1]) / n,
        "wall_s_per_step": (end[2] - start[2]) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binaries", nargs="+", help="nxt binaries to compare")
    ap.add_argument("--seconds", type=float, default=40.0, help="measured time per setting")
    args = ap.parse_args()
    settings = [("default threads", {}), ("CANDLE_NUM_THREADS=1", {"CANDLE_NUM_THREADS": "1"})]
    print(f"| binary | threads | steps | CPU s/step | wall s/step | load |")
    print(f"|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for binary in args.binaries:
            for name, extra in settings:
                load = os.getloadavg()[0]
                r = measure(binary, extra, args.seconds, Path(tmp))
                print(
                    f"| {binary} | {name} | {r['steps']} | {r['cpu_s_per_step']:.3f} "
                    f"| {r['wall_s_per_step']:.3f} | {load:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
