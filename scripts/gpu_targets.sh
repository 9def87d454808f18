#!/usr/bin/env bash
# Checks the optimizer speed targets on the GPU at hand:
#   AdamP/SGDP static <= 1.10x their baseline, runtime <= 1.25x,
#   and >= 50% of copy bandwidth, over ResNet-50's trainable tensors.
# Usage: scripts/gpu_targets.sh [path/to/adamp-graph] [model]
# Prints one JSON line per run, then a verdict table. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/adamp-graph}"
MODEL="${2:-fixtures/zoo/resnet50.onnx.gz}"
out=$(mktemp)
for run in "adamp static" "adamp runtime" "sgdp static" "sgdp runtime" "adamp auto" "sgdp auto"; do
    set -- $run
    "$BIN" bench "$MODEL" --optimizer "$1" --detect "$2" --steps 30 --warmup 5 --format json | tr -d '\n' >> "$out"
    echo >> "$out"
done
cat "$out"
python3 - "$out" <<'PY'
import json, sys
limit = {"static": 1.10, "runtime": 1.25, "auto": 1.10}
print(f"{'optimizer':9} {'detect':8} {'ms/step':>9} {'ratio':>6} {'limit':>6} {'copy%':>6}  verdict")
for line in open(sys.argv[1]):
    r = json.loads(line)
    share = 100 * r["gbps"] / r["copy_gbps"]
    ok = r["ratio"] <= limit[r["detect"]] and share >= 50
    print(f"{r['optimizer']:9} {r['detect']:8} {r['ms_per_step']:9.3f} {r['ratio']:6.2f} {limit[r['detect']]:6.2f} {share:5.0f}%  {'ok' if ok else 'MISSED'}")
PY
