#!/usr/bin/env python3
"""Training speed of `adamp-graph train` against peers, in one run.

  python scripts/bench_train.py ADAMP_GRAPH_BINARY [--steps K] [--only NAME] [--adapter A]

For each case it measures samples/s of
  - adamp-graph train on the wgpu adapter (median step time over the steps
    after the first three, from its --log),
  - onnxruntime CPU running the same step (the rewrite's ONNX step graph:
    forward, backward and the AdamP update), feeding `.new` back,
  - PyTorch eager CPU with the official adamp.AdamP,
and the ratios. Cases: the digits BatchNorm CNN (fixtures/train), ResNet-18
(torchvision, training-mode export) at batch 8 and 64x64, and two one-layer
models whose step is MatMul-only or Conv-only, reported as GFLOP/s (a step is
3 products: forward, input gradient, weight gradient). Also prints the
device-memory line of ResNet-18's step.

Needs torch, torchvision, onnx, onnxruntime, adamp (the generation venv).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(model, shape, path):
    model.train()
    torch.onnx.export(model, (torch.randn(*shape),), path, dynamo=False, training=torch.onnx.TrainingMode.TRAINING,
                      do_constant_folding=False, opset_version=17, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


class Digits(nn.Module):
    """The architecture of fixtures/train/digits_cnn.onnx (scripts/gen_train_fixtures.py)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


def cases(tmp):
    import torchvision
    torch.manual_seed(0)
    out = []
    digits = Digits()
    out.append(("digits BN CNN", digits, (32, 1, 8, 8), 10, None))
    r18 = torchvision.models.resnet18(num_classes=10)
    out.append(("ResNet-18 b8 64x64", r18, (8, 3, 64, 64), 10, None))
    mm = nn.Sequential(nn.Flatten(), nn.Linear(512, 512, bias=False))
    out.append(("MatMul 512x512x512", mm, (512, 512), 512, 3 * 2 * 512 * 512 * 512))
    conv = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.Flatten())
    out.append(("Conv 64->64 3x3 on 8x32x32", conv, (8, 64, 32, 32), 64 * 32 * 32, 3 * 2 * 8 * 64 * 32 * 32 * 64 * 9))
    return out


def run_ours(binary, model_path, data_path, steps, batch, loss, adapter, tmp):
    log = os.path.join(tmp, "log.jsonl")
    out = os.path.join(tmp, "trained.onnx")
    cmd = [binary, "train", model_path, "--data", data_path, "--loss", loss, "--batch-size", str(batch), "--steps", str(steps), "--out", out, "--log", log]
    if adapter:
        cmd += ["--adapter", adapter]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"
    rates = [json.loads(l)["samples_per_s"] for l in open(log) if '"samples_per_s"' in l]
    memory = next((l for l in r.stdout.splitlines() if l.startswith("device memory")), "")
    return statistics.median(rates[3:] or rates), memory


def run_ort(binary, model_path, batch, loss, feeds, steps, tmp):
    step = os.path.join(tmp, "step.onnx")
    r = subprocess.run([binary, "rewrite", model_path, "--loss", loss, "--output", step], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    so = ort.SessionOptions()
    s = ort.InferenceSession(step, so, providers=["CPUExecutionProvider"])
    m = onnx.load(step)
    init = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    outs = [o.name for o in s.get_outputs()]
    state = {o[:-4]: init[o[:-4]] for o in outs if o.endswith(".new") and o[:-4] in init}
    times = []
    for k in range(steps):
        f = dict(feeds)
        f["step"] = np.array(k + 1, dtype=np.int64)
        f.update(state)
        t0 = time.perf_counter()
        res = s.run(outs, f)
        times.append(time.perf_counter() - t0)
        for name, v in zip(outs, res):
            if name.endswith(".new"):
                state[name[:-4]] = v
    return batch / statistics.median(times[3:] or times)


def run_torch(model, x, y, loss, steps):
    from adamp import AdamP
    model.train()
    opt = AdamP(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss() if loss == "cross-entropy" else nn.MSELoss()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        l = lossf(model(x), y)
        l.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times[3:] or times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--only")
    ap.add_argument("--adapter")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, shape, classes, flops in cases(tmp):
            if a.only and a.only not in name:
                continue
            path = os.path.join(tmp, "model.onnx")
            export(model, shape, path)
            rng = np.random.default_rng(0)
            x = rng.standard_normal(shape).astype(np.float32)
            if flops is None:
                loss = "cross-entropy"
                labels = rng.integers(0, classes, size=(shape[0],)).astype(np.int64)
                ty = torch.from_numpy(labels)
            else:
                loss = "mse"
                labels = rng.standard_normal((shape[0], classes)).astype(np.float32)
                ty = torch.from_numpy(labels)
            data = os.path.join(tmp, "data.npz")
            np.savez(data, x=x, labels=labels)
            ours, memory = run_ours(a.binary, path, data, a.steps, shape[0], loss, a.adapter, tmp)
            theirs = run_ort(a.binary, path, shape[0], loss, {"x": x, "labels": labels}, a.steps, tmp)
            torch_rate = run_torch(model, torch.from_numpy(x), ty, loss, a.steps)
            rows.append((name, ours, theirs, torch_rate, flops, shape[0], memory))
            sys.stderr.write(f"{name}: done\n")
    print("| case | adamp-graph (samples/s) | onnxruntime CPU | PyTorch eager + AdamP | ours / ort | ours / torch | GFLOP/s ours / ort |")
    print("|---|---|---|---|---|---|---|")
    for name, ours, theirs, tr, flops, batch, memory in rows:
        if not isinstance(ours, float):
            print(f"| {name} | failed: {memory} | {theirs or 0:.1f} | {tr:.1f} | - | - | - |")
            continue
        g = f"{flops * ours / batch / 1e9:.2f} / {flops * theirs / batch / 1e9:.2f}" if flops and theirs else "-"
        ratio = f"{ours / theirs:.2f}" if theirs else "-"
        print(f"| {name} | {ours:.1f} | {theirs or 0:.1f} | {tr:.1f} | {ratio} | {ours / tr:.2f} | {g} |")
    for name, ours, _, _, _, _, memory in rows:
        if memory and "ResNet" in name:
            print(f"\n{name}: {memory}")


if __name__ == "__main__":
    main()
