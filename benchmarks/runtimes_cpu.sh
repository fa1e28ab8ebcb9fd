#!/usr/bin/env bash
# Deployment runtimes against eager PyTorch: UniConvNet-A, N0 and T (fuse()d) in onnxruntime and OpenVINO, both
# running our ONNX export, timed in one interleaved loop with the PyTorch models; 224x224, float32, batches 1
# and 8, 2 threads. The "vs eager" column of each runtime table is the issue 12 target (<= 1.0 at every batch).
# Writes results/runtimes_cpu.md and results/runtimes_cpu.json.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p results
export PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
python -m uniconvnet bench \
  --models uniconvnet_a:fused uniconvnet_n0:fused uniconvnet_t:fused --reference uniconvnet_a:fused \
  --size 224 --batch 1 8 --train-batch 0 --runs 10 --warmup 3 --threads 2 \
  --json results/runtimes_cpu.json | tee results/runtimes_cpu.md
