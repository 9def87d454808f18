#!/usr/bin/env python3
"""ResNet-50 with real (random-init) weights: `onnx.load` vs `adamp-graph analyze`.

Not run by CI. Writes target/bench/resnet50.onnx (about 100 MB) and prints the
median wall time of each over several runs, on the same file.

    python scripts/bench_resnet50.py [--bin target/release/adamp-graph] [--runs 7]
"""
import argparse
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "adamp-graph"))
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    out_dir = os.path.join(ROOT, "target", "bench")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "resnet50.onnx")
    if not os.path.exists(path):
        import torch
        import torchvision

        m = torchvision.models.resnet50(weights=None).train()
        torch.onnx.export(m, (torch.randn(2, 3, 224, 224),), path, dynamo=False,
                          training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    import onnx

    size = os.path.getsize(path)
    onnx.load(path)  # warm the page cache for both contenders
    t_onnx = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        onnx.load(path)
        t_onnx.append(time.perf_counter() - t0)
    t_ours = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([args.bin, "analyze", path, "--format", "json"], check=True, stdout=subprocess.DEVNULL)
        t_ours.append(time.perf_counter() - t0)
    print(f"file: {size / 1e6:.1f} MB, {args.runs} runs, median wall time")
    print(f"python onnx.load(f):                      {1e3 * statistics.median(t_onnx):8.1f} ms")
    print(f"adamp-graph analyze (process, parse+analysis+JSON): {1e3 * statistics.median(t_ours):8.1f} ms")


if __name__ == "__main__":
    main()
