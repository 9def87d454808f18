#!/usr/bin/env bash
# Training speed on the GPU at hand, in one call: `train` against onnxruntime
# CPU and PyTorch eager CPU (AdamP) for the digits BN CNN, ResNet-18 at batch 8
# and 64x64, and the MatMul/Conv one-layer steps (GFLOP/s), plus ResNet-18's
# device memory. Needs a Python with torch, torchvision, onnx, onnxruntime and
# adamp (PYTHON, default python3). Usage:
#   scripts/gpu_train_targets.sh [path/to/adamp-graph] [adapter]
# Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/adamp-graph}"
ADAPTER="${2:-}"
PY="${PYTHON:-python3}"
if [ -n "$ADAPTER" ]; then
    exec "$PY" scripts/bench_train.py "$BIN" --adapter "$ADAPTER"
fi
exec "$PY" scripts/bench_train.py "$BIN"
