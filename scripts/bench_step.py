#!/usr/bin/env python3
"""One training step of torchvision ResNet-18 (batch 8, 224x224, AdamP): the
rewritten step graph in onnxruntime against PyTorch's own forward, backward
and official adamp.AdamP step, both on the CPU with the same thread count.
Not run by CI (needs torch, torchvision, adamp, onnx, onnxruntime).

  cargo build --release && ADAMP_GRAPH_BIN=target/release/adamp-graph \\
      python scripts/bench_step.py [--threads 2] [--runs 5]
"""
import argparse
import copy
import io
import os
import subprocess
import tempfile
import time

import adamp
import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
import torchvision
from onnx import numpy_helper


def median_time(f, runs):
    f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    binary = os.environ.get("ADAMP_GRAPH_BIN", "target/release/adamp-graph")
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    m = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(8, 3, 224, 224)
    labels = torch.randint(0, 10, (8,))
    state0 = copy.deepcopy(m.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        f = io.BytesIO()
        torch.onnx.export(copy.deepcopy(m).train(), (x,), f, dynamo=False, training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False, opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "N"}})
        p = onnx.load_from_string(f.getvalue())
        for init in p.graph.initializer:
            if init.name in state0:
                init.CopyFrom(numpy_helper.from_array(state0[init.name].numpy(), init.name))
        model, step = os.path.join(tmp, "r18.onnx"), os.path.join(tmp, "r18.step.onnx")
        onnx.save(p, model)
        subprocess.run([binary, "rewrite", model, "--loss", "cross-entropy", "-o", step], check=True, capture_output=True)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = a.threads
        s = ort.InferenceSession(step, so, providers=["CPUExecutionProvider"])
        feeds = {"x": x.numpy(), "labels": labels.numpy(), "step": np.array(1, dtype=np.int64)}
        t_ort = median_time(lambda: s.run(None, feeds), a.runs)
    m.train()
    opt = adamp.AdamP(m.parameters(), lr=1e-3)

    def torch_step():
        opt.zero_grad()
        F.cross_entropy(m(x), labels).backward()
        opt.step()

    t_torch = median_time(torch_step, a.runs)
    print(f"threads {a.threads}: step graph in onnxruntime {t_ort * 1e3:.0f} ms, PyTorch + adamp.AdamP {t_torch * 1e3:.0f} ms (median of {a.runs})")


if __name__ == "__main__":
    main()
