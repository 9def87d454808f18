#!/usr/bin/env bash
# AdamP against AdamW, and SGDP against SGD with momentum, with the same
# hyperparameters, on the digits BatchNorm CNN (fixtures/train) and on the
# paper's scale-invariant Rosenbrock toy; then the report of each comparison.
# Usage: examples/compare_optimizers.sh [path/to/adamp-graph] [out-folder]
# Writes OUT/digits.html|svg, OUT/rosenbrock.svg and the logs; prints each run's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/adamp-graph}"
OUT="${2:-target/compare}"
mkdir -p "$OUT"
digits() {
    local opt="$1"; shift
    "$BIN" train fixtures/train/digits_cnn.onnx --data fixtures/data/digits_train.npz \
        --val-data fixtures/data/digits_val.npz --loss cross-entropy --batch-size 32 --epochs 6 \
        --shuffle --seed 1 --optimizer "$opt" --metrics-every 5 --quiet \
        --out "$OUT/digits_$opt.onnx" --log "$OUT/digits_$opt.jsonl" "$@"
}
# Adam family: lr 1e-3, weight decay 1e-2 (decoupled in AdamW and AdamP)
digits adamw --lr 0.003 --weight-decay 0.01
digits adamp --lr 0.003 --weight-decay 0.01
# SGD family: lr 0.1, momentum 0.9, weight decay 1e-4
digits sgd --lr 0.1 --momentum 0.9 --weight-decay 0.0001
digits sgdp --lr 0.1 --momentum 0.9 --weight-decay 0.0001
"$BIN" report "$OUT"/digits_adamw.jsonl "$OUT"/digits_adamp.jsonl "$OUT"/digits_sgd.jsonl "$OUT"/digits_sgdp.jsonl -o "$OUT/digits.html"
"$BIN" report "$OUT"/digits_adamw.jsonl "$OUT"/digits_adamp.jsonl "$OUT"/digits_sgd.jsonl "$OUT"/digits_sgdp.jsonl -o "$OUT/digits.svg"
# The toy: f(w/|w|) on a 3-D w, SGD against SGDP (momentum 0.9)
for opt in sgd sgdp; do
    "$BIN" train fixtures/train/rosenbrock.onnx --data fixtures/data/rosenbrock.npz --loss mse --batch-size 64 \
        --steps 200 --optimizer "$opt" --lr 0.0001 --momentum 0.9 --metrics-every 1 --quiet \
        --out "$OUT/rosenbrock_$opt.onnx" --log "$OUT/rosenbrock_$opt.jsonl"
done
"$BIN" report "$OUT"/rosenbrock_sgd.jsonl "$OUT"/rosenbrock_sgdp.jsonl -o "$OUT/rosenbrock.svg"
