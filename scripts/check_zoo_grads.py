#!/usr/bin/env python3
"""Manual check of the training-graph rewrite on the timm/transformers zoo
families (not run by CI; needs the zoo venv: torch, timm, transformers, onnx,
onnxruntime, adamp). The sibling of scripts/check_torchvision.py.

For each model: the zoo generator's constructor, weights and batch
(scripts/gen_zoo.py, seed 0), with every random op off (dropout, drop-path,
stochastic depth: the step must be deterministic to compare) and exported
with the zoo's own exporter and opset; `adamp-graph rewrite --gradients`; one
run in onnxruntime; the loss and every parameter's gradient against PyTorch
autograd in float64 (and PyTorch's own float32 run against float64, for
scale). Errors are max |g - g64| over a tensor, relative to max(max |g64| of
the tensor, 1e-3 of the model's largest gradient), as check_torchvision.py.
Image classifiers take cross-entropy, token models (logits [B, T, V]) mean
squared error against fixed random targets.

  cargo build && ADAMP_GRAPH_BIN=target/debug/adamp-graph \\
      python scripts/check_zoo_grads.py [--batch 2] [MODEL ...]

`--step` instead runs one AdamP step at the defaults (lr 1e-3, betas (0.9,
0.999), eps 1e-8, delta 0.1, wd_ratio 0.1) in onnxruntime (`rewrite` without
--gradients: the model, the loss and the update as one graph) and in PyTorch
with the official adamp 0.3.0 on the same weights and batch, and prints the
loss before and after the step for several learning rates, with the
first-order prediction of the first Adam step (sign descent: -lr * sum |g|).
`--init native|smoke|zoo` picks the weights (the library's own initialization,
the onnxruntime smoke test's, or the zoo generator's), `--labels zero` feeds
class 0 for every sample (as the smoke test does). `--mask-noise` evaluates the
graph with its random ops kept several times at fixed weights (lr 0).
`swin_wide` (a Swin at its real width, 6M parameters) exists for that study
only. Results: docs/rewrite.md.
"""
import argparse
import copy
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_zoo as G  # noqa: E402

# For the symptom study only (docs/rewrite.md): a Swin at its real width, 6M parameters.
G.ZOO.setdefault("swin_wide", (lambda: G.timm_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4,
                                                       depths=(2, 2, 2), num_heads=(3, 6, 12), num_classes=10,
                                                       drop_path_rate=0.2), (4, 3, 64, 64), "torchscript", 17, "train"))
DEFAULT = ["timm_efficientnet", "timm_convnext", "timm_convnext_dynamo", "timm_nfnet", "timm_levit", "timm_swin",
           "timm_resnet_d", "timm_dla", "timm_deit", "timm_deit_dynamo", "hf_bert", "hf_bert_dynamo",
           "hf_gpt2", "hf_llama", "hf_llama_gqa_dynamo", "hf_t5"]


def quiet():
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return so


def smoke_init(model):
    """The weights tests/py/rewrite_check.py gives the zoo's zeroed models: He-scaled
    normals for tensors of 2+ dims, U(0.5, 1.5) for vectors (scales, biases)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / max(p[0].numel(), 1)) ** 0.5)
            else:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model


def build(name, batch, init="zoo", random_ops=False):
    """The zoo model with its weights (`zoo`: the generator's; `smoke`: the onnxruntime
    smoke test's; `native`: the library's own initialization), random ops off unless
    asked, and a batch of `batch`."""
    ctor, spec, exporter, opset, _ = G.ZOO[name]
    torch.manual_seed(0)
    model = ctor()
    model = G.randomize(model) if init == "zoo" else smoke_init(model) if init == "smoke" else model
    x = G.make_inputs(spec)
    G.calibrate(model, x)
    if not random_ops:
        G.random_ops_off(model)
    model.train()
    x = tuple(t[:batch] for t in x)
    return model, x, exporter, opset


def export(model, x, exporter, opset, path):
    m = copy.deepcopy(model).train()
    if exporter == "torchscript":
        f = io.BytesIO()
        torch.onnx.export(m, x, f, dynamo=False, opset_version=opset, training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False)
        p = onnx.load_from_string(f.getvalue())
    else:
        p = torch.onnx.export(m, x, dynamo=True, opset_version=opset, external_data=False).model_proto
    onnx.save(G.strip_metadata(p), path)
    return p


def loss_of(out, labels):
    return F.cross_entropy(out, labels) if out.dim() == 2 else F.mse_loss(out, labels)


LABELS = "random"


def labels_for(model, x):
    """Random labels (classes, or normal targets for token models); with
    `--labels zero` every class label is 0, as the onnxruntime smoke test feeds."""
    with torch.no_grad():
        out = model(*x)
    g = torch.Generator().manual_seed(5)
    if out.dim() == 2:
        if LABELS == "zero":
            return torch.zeros(out.shape[0], dtype=torch.int64)
        return torch.randint(0, out.shape[1], (out.shape[0],), generator=g)
    return torch.randn(out.shape, generator=g)


def torch_grads(model, x, labels, dtype):
    mm = copy.deepcopy(model).to(dtype).train()
    xs = tuple(t.to(dtype) if t.is_floating_point() else t for t in x)
    lab = labels.to(dtype) if labels.is_floating_point() else labels
    with G.Float64Everywhere() if dtype == torch.float64 else torch.enable_grad():
        loss = loss_of(mm(*xs), lab)
        loss.backward()
    return loss.item(), {k: v.grad.double().numpy() for k, v in mm.named_parameters() if v.grad is not None}


def feeds_for(sess, onnx_model, x, labels, step):
    graph_inputs = [i.name for i in onnx_model.graph.input if i.name not in {t.name for t in onnx_model.graph.initializer}]
    feeds = {n: t.numpy() for n, t in zip(graph_inputs, x)}
    feeds["labels"] = labels.numpy().astype(np.float32) if labels.is_floating_point() else labels.numpy()
    feeds["step"] = np.array(step, dtype=np.int64)
    return feeds


def check(name, batch, tmp, binary):
    model, x, exporter, opset = build(name, batch)
    labels = labels_for(model, x)
    model_path, step_path = os.path.join(tmp, name + ".onnx"), os.path.join(tmp, name + ".step.onnx")
    p = export(model, x, exporter, opset, model_path)
    loss_kind = "cross-entropy" if labels.dtype == torch.int64 else "mse"
    subprocess.run([binary, "rewrite", model_path, "--loss", loss_kind, "--gradients", "-o", step_path], check=True,
                   capture_output=True)
    l32, g32 = torch_grads(model, x, labels, torch.float32)
    l64, g64 = torch_grads(model, x, labels, torch.float64)
    s = ort.InferenceSession(step_path, quiet(), providers=["CPUExecutionProvider"])
    res = dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds_for(s, p, x, labels, 1))))
    gmax = max(np.abs(v).max() for v in g64.values())
    err = lambda a, k: np.abs(a - g64[k]).max() / max(np.abs(g64[k]).max(), 1e-3 * gmax)
    # The dynamo exporter folds Transpose(weight) (and unit-dim Reshapes) into new
    # initializers: their gradient is the param's, transposed or reshaped.
    grads = {k: res[k + ".grad"] for k in g64 if k + ".grad" in res}
    for init, (k, how) in G.aliases(model_path, model).items():
        if k in g64 and k not in grads and init + ".grad" in res:
            gr = res[init + ".grad"]
            grads[k] = gr.T if how is True else gr.reshape(g64[k].shape)
    missing = [k for k in g64 if k not in grads]
    e_ort = max(err(grads[k], k) for k in grads)
    e_t32 = max(err(g32[k], k) for k in grads)
    common = list(grads)
    nodes = len(onnx.load(step_path, load_external_data=False).graph.node)
    return float(res["loss"]), l64, e_ort, e_t32, len(common), missing, nodes


def adamp_steps(name, batch, tmp, binary, lrs, init):
    """Loss before and after one AdamP step, onnxruntime (the rewrite) against PyTorch + adamp."""
    from adamp import AdamP

    model, x, exporter, opset = build(name, batch, init)
    labels = labels_for(model, x)
    model_path = os.path.join(tmp, name + ".onnx")
    p = export(model, x, exporter, opset, model_path)
    loss_kind = "cross-entropy" if labels.dtype == torch.int64 else "mse"
    rows = []
    for lr in lrs:
        step_path = os.path.join(tmp, f"{name}.{lr}.step.onnx")
        subprocess.run([binary, "rewrite", model_path, "--loss", loss_kind, "--optimizer", "adamp", "--lr", str(lr),
                        "-o", step_path], check=True, capture_output=True)
        s = ort.InferenceSession(step_path, quiet(), providers=["CPUExecutionProvider"])
        outs = [o.name for o in s.get_outputs()]
        r1 = dict(zip(outs, s.run(None, feeds_for(s, p, x, labels, 1))))
        feeds = feeds_for(s, p, x, labels, 2)
        feeds.update({o[:-4]: r1[o] for o in outs if o.endswith(".new")})
        r2 = dict(zip(outs, s.run(None, feeds)))
        # PyTorch, float32 as onnxruntime, the official AdamP at its defaults.
        mm = copy.deepcopy(model).train()
        opt = AdamP(mm.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, delta=0.1, wd_ratio=0.1)
        loss0 = loss_of(mm(*x), labels)
        opt.zero_grad()
        loss0.backward()
        l1 = sum(p_.grad.abs().sum().item() for p_ in mm.parameters() if p_.grad is not None)
        opt.step()
        with torch.no_grad():
            loss1 = loss_of(mm(*x), labels).item()
        rows.append((lr, float(r1["loss"]), float(r2["loss"]), loss0.item(), loss1, -lr * l1))
    return rows


def mask_noise(name, batch, tmp, binary, init, runs=8):
    """The zoo's own graph (random ops kept): the loss of several runs at the same
    weights and batch, lr 0: how much the random masks alone move it."""
    model, x, exporter, opset = build(name, batch, init, random_ops=True)
    labels = labels_for(copy.deepcopy(model).eval(), x)
    model_path, step_path = os.path.join(tmp, name + ".rand.onnx"), os.path.join(tmp, name + ".rand.step.onnx")
    p = export(model, x, exporter, opset, model_path)
    loss_kind = "cross-entropy" if labels.dtype == torch.int64 else "mse"
    subprocess.run([binary, "rewrite", model_path, "--loss", loss_kind, "--lr", "0", "-o", step_path], check=True,
                   capture_output=True)
    s = ort.InferenceSession(step_path, quiet(), providers=["CPUExecutionProvider"])
    return [float(s.run(["loss"], feeds_for(s, p, x, labels, 1))[0]) for _ in range(runs)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--step", action="store_true", help="one AdamP step against PyTorch + adamp instead")
    ap.add_argument("--lr", type=float, nargs="*", default=[1e-3, 1e-4, 1e-5])
    ap.add_argument("--init", choices=["zoo", "smoke", "native"], default="zoo")
    ap.add_argument("--mask-noise", action="store_true", help="loss spread from the random ops alone (lr 0)")
    ap.add_argument("--labels", choices=["random", "zero"], default="random")
    a = ap.parse_args()
    global LABELS
    LABELS = a.labels
    binary = os.environ.get("ADAMP_GRAPH_BIN", "target/debug/adamp-graph")
    with tempfile.TemporaryDirectory() as tmp:
        if a.mask_noise:
            for name in a.models:
                ls = mask_noise(name, a.batch, tmp, binary, a.init)
                print(f"| {name} | {a.batch} | {a.init} | {min(ls):.4f} | {max(ls):.4f} | {' '.join(f'{v:.3f}' for v in ls)} |", flush=True)
            return
        if a.step:
            print("| model | batch | lr | loss before (ORT) | after one step (ORT) | before (PyTorch + adamp) | after (PyTorch + adamp) | first-order prediction -lr·Σ|g| |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for name in a.models:
                for lr, o0, o1, t0, t1, pred in adamp_steps(name, a.batch, tmp, binary, a.lr, a.init):
                    print(f"| {name} ({a.init} init, {a.labels} labels) | {a.batch} | {lr:g} | {o0:.6f} | {o1:.6f} | {t0:.6f} | {t1:.6f} | {pred:+.3f} |", flush=True)
            return
        print("| model | params | step-graph nodes | loss (ORT) | loss (PyTorch f64) | grad error, ORT vs f64 | grad error, PyTorch f32 vs f64 |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name in a.models:
            try:
                loss, l64, e_ort, e_t32, n, missing, nodes = check(name, a.batch, tmp, binary)
            except subprocess.CalledProcessError as e:
                print(f"| {name} | rewrite failed: {e.stderr.decode().strip()[:300]} |", flush=True)
                continue
            note = f" ({len(missing)} without an initializer: {', '.join(missing)})" if missing else ""
            print(f"| {name} | {n}{note} | {nodes} | {loss:.6f} | {l64:.6f} | {e_ort:.1e} | {e_t32:.1e} |", flush=True)


if __name__ == "__main__":
    main()
