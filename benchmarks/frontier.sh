#!/usr/bin/env bash
# The README's frontier: every UniConvNet variant with ImageNet-1k weights at 224 (A, P0-P2, N0-N3, T, S, B)
# against the timm peers of the shipped top-1 table (uniconvnet/speed/peers.py), in every runtime (eager fp32,
# eager bf16 autocast, onnxruntime, OpenVINO default precision and f32), measured on this machine.
#
#   bash benchmarks/frontier.sh            # CPU: results/frontier_cpu.{md,json} and frontier_cpu_<runtime>.png
#   bash benchmarks/frontier.sh cuda       # GPU (eager runtimes only): results/frontier_cuda.*
#   bash benchmarks/frontier.sh cpu --variants A N0 --peers convnext_femto efficientvit_b1 mobilenetv4_conv_medium
#   bash benchmarks/frontier.sh --smoke    # seconds: A against ConvNeXt-femto at 64x64, every runtime; writes nothing
#
# Choices (see docs/performance.md):
# - 224x224, inference batches 1 and 8, 2 threads for every runtime (what a small edge CPU gives one model).
#   Every model reparameterized; UniConvNet exported by uniconvnet.export.export_model, peers by torch.onnx.export
#   (opset 17) and OpenVINO IR converted from that ONNX.
# - one training batch for every model, 16 (training step of each variant with its eager match, peak memory of
#   every model in a fresh process); --train-batch 0 skips both.
# - 10 timed runs after 3 warm-up runs, 5 training steps: medians.
# A full CPU run takes hours on 2 cores and needs a quiet machine. The JSON is written after every loop and
# reused: run the same command again after an interruption and only what is missing is measured. Delete the JSON
# to start afresh. Extra flags come after the defaults below and so override them (the table still goes to
# results/frontier_<device>.md).
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
if [[ "${1:-}" == "--smoke" ]]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  python -m uniconvnet bench --frontier --variants A --peers convnext_femto --size 64 --batch 1 2 --runs 1 \
    --warmup 0 --train-batch 0 --threads 2 --json "$out/frontier.json" > "$out/frontier.md"
  echo "frontier.sh smoke: $(grep -c '^### ' "$out/frontier.md") runtime tables, $(ls "$out"/*.png | wc -l) plots"
  exit 0
fi
device="${1:-cpu}"
shift $(( $# > 0 ? 1 : 0 ))
mkdir -p results
python -m uniconvnet bench --frontier --device "$device" --threads 2 \
  --size 224 --batch 1 8 --train-batch 16 --runs 10 --warmup 3 --train-runs 5 \
  --json "results/frontier_${device}.json" "$@" | tee "results/frontier_${device}.md"
