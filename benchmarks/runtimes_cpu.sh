#!/usr/bin/env bash
# Deployment runtimes against eager PyTorch: UniConvNet-A, N0 and T (fuse()d) in onnxruntime, OpenVINO at its
# default precision (bfloat16 on CPUs with AMX or AVX512-BF16) and OpenVINO f32, each running our export for it,
# timed in one interleaved loop with the PyTorch models; 224x224, batches 1 and 8, 2 threads. The "vs eager"
# column of each runtime table is the issue 12 target (<= 1.0 at every batch).
# Writes results/runtimes_cpu.md and results/runtimes_cpu.json.
#
#   bash benchmarks/runtimes_cpu.sh          # the table of docs/performance.md
#   bash benchmarks/runtimes_cpu.sh --smoke  # seconds: A at 64x64, one run; writes nothing
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
if [[ "${1:-}" == "--smoke" ]]; then
  python -m uniconvnet bench --models uniconvnet_a:fused --reference uniconvnet_a:fused --size 64 --batch 1 \
    --train-batch 0 --runs 1 --warmup 0 --threads 2 > /dev/null
  echo "runtimes_cpu.sh smoke: ok"
  exit 0
fi
mkdir -p results
python -m uniconvnet bench \
  --models uniconvnet_a:fused uniconvnet_n0:fused uniconvnet_t:fused --reference uniconvnet_a:fused \
  --size 224 --batch 1 8 --train-batch 0 --runs 10 --warmup 3 --threads 2 \
  --json results/runtimes_cpu.json | tee results/runtimes_cpu.md
