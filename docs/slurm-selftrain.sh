#!/usr/bin/env bash
# Self-training on a Slurm cluster: sampling and grading of each iteration split across an
# array of shard jobs, each with its own store; the coordinator merges them and trains.
#
#   sbatch docs/slurm-selftrain.sh            # submits itself as the coordinator
#
# Assumes: `nxt` on PATH on every node, the run directory on a shared file system, the
# servers of [model].servers reachable from the shard nodes (or an embedded model per shard
# node, with [model].servers left empty), CPUs for the sandbox on every shard node.
#SBATCH --job-name=nxt-selftrain
#SBATCH --time=48:00:00
#SBATCH --cpus-per-task=8
set -euo pipefail

CONFIG=${CONFIG:-examples/paper-selftrain.toml}
RUN=${RUN:-/shared/runs/next-qwen7b}
SHARDS=${SHARDS:-16}

while true; do
    # Run every stage that needs no sampling; stop where sampling samples are missing.
    out=$(nxt selftrain --config "$CONFIG" --run-dir "$RUN" --stop-before-sampling 2>&1 | tee /dev/stderr)
    if ! grep -q "^paused:" <<<"$out"; then
        break   # finished: results.json, report.md in $RUN
    fi
    # One shard per array task: `--shard i/N` samples and grades every N-th task.
    srun --ntasks="$SHARDS" --cpus-per-task=8 bash -c \
        'nxt selftrain --config "'"$CONFIG"'" --run-dir "'"$RUN"'" --shard ${SLURM_PROCID}/'"$SHARDS"
    nxt selftrain merge --run-dir "$RUN"
done
