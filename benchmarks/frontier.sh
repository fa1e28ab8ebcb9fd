#!/usr/bin/env bash
# The README's frontier: every UniConvNet variant with ImageNet-1k weights at 224 (A, P0-P2, N0-N3, T, S, B)
# against the timm peers of the shipped top-1 table (uniconvnet/speed/peers.py), measured on this machine.
#
#   bash benchmarks/frontier.sh            # CPU: results/frontier_cpu.{md,json} and frontier_cpu_{latency,memory}.png
#   bash benchmarks/frontier.sh cuda       # GPU: results/frontier_cuda.*
#   bash benchmarks/frontier.sh cpu --variants A N0 T --peers convnext_femto convnext_tiny convnext_base
#
# Choices (see docs/performance.md):
# - 224x224 float32, inference batches 1 and 8, 2 threads on the CPU (the issue's setting; what a small edge CPU
#   gives one model). UniConvNet is fuse()d for inference; peers run as timm builds them.
# - one training batch for every model, 16: one batch keeps every training ratio and the memory plot comparable,
#   and 16 should keep the biggest models (UniConvNet-B, ConvFormer-B36) within 24 GB of RAM (estimated; a
#   model that does not fit is logged and skipped, the rest goes on).
# - 10 timed runs after 3 warm-up runs, 5 training steps: medians.
# A full CPU run takes an hour or more on 2 cores. The JSON is written after every step and reused: run the same
# command again after an interruption and only what is missing is measured. Delete the JSON to start afresh.
# Extra flags come after the defaults below and so override them (the table still goes to results/frontier_<device>.md).
set -euo pipefail
cd "$(dirname "$0")"
device="${1:-cpu}"
shift $(( $# > 0 ? 1 : 0 ))
mkdir -p results
export PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
python -m uniconvnet bench --frontier --device "$device" --threads 2 \
  --size 224 --batch 1 8 --train-batch 16 --runs 10 --warmup 3 --train-runs 5 \
  --json "results/frontier_${device}.json" "$@" | tee "results/frontier_${device}.md"
