#!/usr/bin/env python3
"""Manual check of the training-graph rewrite on torchvision models (not run
by CI; needs torch, torchvision, onnx, onnxruntime).

For each model: export in training mode (dropout and stochastic depth set to
0 so the step is deterministic), `adamp-graph rewrite --gradients`, one run in
onnxruntime, and the loss and every parameter's gradient against PyTorch in
float64 (and PyTorch's own float32 run against float64, for scale). Errors
are max |g - g64| over a tensor, relative to max(max |g64| of the tensor,
1e-3 of the model's largest gradient).

  cargo build && ADAMP_GRAPH_BIN=target/debug/adamp-graph \\
      python scripts/check_torchvision.py [--size 64] [MODEL ...]
"""
import argparse
import copy
import io
import os
import subprocess
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from onnx import numpy_helper

DEFAULT = ["resnet18", "squeezenet1_0", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5", "mnasnet0_5",
           "densenet121", "regnet_y_400mf", "efficientnet_b0", "convnext_tiny"]


def check(name, size, seed, tmp, binary):
    torch.manual_seed(seed)
    m = getattr(torchvision.models, name)(num_classes=10)
    for mod in m.modules():
        if isinstance(mod, nn.Dropout) or type(mod).__name__ == "StochasticDepth":
            mod.p = 0.0
    x = torch.randn(2, 3, size, size)
    labels = torch.randint(0, 10, (2,))
    state0 = copy.deepcopy(m.state_dict())
    f = io.BytesIO()
    mc = copy.deepcopy(m).train()
    torch.onnx.export(mc, (x,), f, dynamo=False, training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "N"}})
    p = onnx.load_from_string(f.getvalue())
    for init in p.graph.initializer:
        if init.name in state0:
            init.CopyFrom(numpy_helper.from_array(state0[init.name].numpy(), init.name))
    model_path = os.path.join(tmp, name + ".onnx")
    step_path = os.path.join(tmp, name + ".step.onnx")
    onnx.save(p, model_path)
    subprocess.run([binary, "rewrite", model_path, "--loss", "cross-entropy", "--gradients", "-o", step_path], check=True, capture_output=True)

    def torch_grads(dtype):
        mm = copy.deepcopy(m)
        mm.load_state_dict(state0)
        mm = mm.to(dtype).train()
        loss = F.cross_entropy(mm(x.to(dtype)), labels)
        loss.backward()
        return loss.item(), {k: v.grad.double().numpy() for k, v in mm.named_parameters()}

    l32, g32 = torch_grads(torch.float32)
    l64, g64 = torch_grads(torch.float64)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(step_path, so, providers=["CPUExecutionProvider"])
    res = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"x": x.numpy(), "labels": labels.numpy(), "step": np.array(1, dtype=np.int64)})))
    gmax = max(np.abs(v).max() for v in g64.values())
    err = lambda a, k: np.abs(a - g64[k]).max() / max(np.abs(g64[k]).max(), 1e-3 * gmax)
    e_ort = max(err(res[k + ".grad"], k) for k in g64)
    e_t32 = max(err(g32[k], k) for k in g64)
    nodes = len(onnx.load(step_path, load_external_data=False).graph.node)
    return float(res["loss"]), l64, e_ort, e_t32, len(g64), nodes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    binary = os.environ.get("ADAMP_GRAPH_BIN", "target/debug/adamp-graph")
    print("| model | params | step-graph nodes | loss (ORT) | loss (PyTorch f64) | grad error, ORT vs f64 | grad error, PyTorch f32 vs f64 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            loss, l64, e_ort, e_t32, n, nodes = check(name, a.size, a.seed, tmp, binary)
            print(f"| {name} | {n} | {nodes} | {loss:.6f} | {l64:.6f} | {e_ort:.1e} | {e_t32:.1e} |", flush=True)


if __name__ == "__main__":
    main()
