#!/usr/bin/env bash
# The README's CPU table: UniConvNet-T (fast path, fused, and the faithful plain path) against timm's ConvNeXt-T,
# 224x224, float32, 2 threads, in one run (interleaved, so that other load on the machine slows all alike).
# Writes results/cpu_2threads.md (tables and profiles) and results/cpu_2threads.json (everything).
set -euo pipefail
cd "$(dirname "$0")"
uniconvnet bench \
  --models uniconvnet_t uniconvnet_t:fused uniconvnet_t:plain convnext_tiny \
  --reference convnext_tiny --size 224 --batch 1 8 --train-batch 16 \
  --runs 10 --warmup 3 --train-runs 5 --threads 2 --profile \
  --json results/cpu_2threads.json | tee results/cpu_2threads.md
