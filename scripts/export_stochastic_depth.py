#!/usr/bin/env python3
"""Exports torchvision EfficientNet-B0 and ConvNeXt-T as a new user would: in
training mode with stochastic depth kept in the graph, and scores the analysis.

Not run by CI. Needs the fixture venv (torch, torchvision, onnx, onnxscript) and
two adamp-graph binaries to compare (for example the last release and a new build):

    python scripts/export_stochastic_depth.py OUT_DIR [--bin NAME=PATH ...]

For each model this writes OUT_DIR/NAME.onnx (the export, stochastic depth kept,
opset 17, TorchScript exporter, the README's recipe). With --bin it prints, per
binary, the classes the analysis finds and checks every claim it makes
(channel: a random positive factor per slice; layer: x1.7; dead: a random
perturbation; joint: the whole group x1.9) on the PyTorch model in float64, with
stochastic depth off (its mask is a random per-sample factor, not a function of
the weights), as scripts/gen_zoo.py measures truth. --truth also writes the full
ground truth (every axis of every parameter; slow: about an hour per model on
2 busy cores).
"""
import argparse
import copy
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_zoo  # noqa: E402  (the zoo's randomize/calibrate/truth code)

MODELS = {"efficientnet_b0": "efficientnet_b0", "convnext_tiny": "convnext_tiny"}


def build(name):
    torch.manual_seed(0)
    model = gen_zoo.randomize(gen_zoo.torchvision_model(MODELS[name]))
    x = torch.randn(*gen_zoo.IMG)
    gen_zoo.calibrate(model, x)
    model.train()
    return model, x


def export(name, out_dir, truth):
    model, x = build(name)
    path = os.path.join(out_dir, name + ".onnx")
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    if truth:
        # Truth of the deterministic function: stochastic depth off, as the zoo does.
        t, checked = gen_zoo.torch_truth(gen_zoo.no_stochastic_depth(copy.deepcopy(model)), x, "train")
        with open(os.path.join(out_dir, name + ".truth.json"), "w") as f:
            json.dump({"model": name, "groups_checked": checked, "params": t}, f, indent=1, sort_keys=True)
    return path


def check_claims(name, report):
    """Every claim of the report, checked on the float64 model: (claims, failures)."""
    model, x = build(name)
    model = gen_zoo.no_stochastic_depth(copy.deepcopy(model)).double()
    model.train()
    # Dropout masks are random per call: check the deterministic function, as gen_zoo does.
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x = x.double()
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        base = gen_zoo.as_tuple(model(x))

        def changed(mutate):
            saved = {n: p.clone() for n, p in params.items()}
            mutate()
            out = gen_zoo.as_tuple(model(x))
            for n, p in params.items():
                p.copy_(saved[n])
            return gen_zoo.rel_change(out, base)

        claims, failures, groups = 0, [], set()
        for p in report["parameters"]:
            if p["name"] not in params:
                continue
            t = params[p["name"]]
            cls = p["class"]
            if cls == "channel":
                shape = [1] * t.dim()
                shape[p["axis"]] = t.shape[p["axis"]]
                f = torch.rand(shape, generator=g, dtype=torch.float64) * 1.5 + 0.5
                err = changed(lambda: t.mul_(f))
            elif cls == "layer":
                err = changed(lambda: t.mul_(1.7))
            elif cls == "dead":
                d = torch.randn(t.shape, generator=g, dtype=torch.float64) * (t.abs().mean() + 1.0)
                err = changed(lambda: t.add_(d))
            elif cls == "joint" and tuple(p["group"]) not in groups:
                groups.add(tuple(p["group"]))
                members = [params[n] for n in p["group"] if n in params]
                err = changed(lambda: [m.mul_(1.9) for m in members])
            else:
                continue
            claims += 1
            if err >= gen_zoo.REL_TOL_F64:
                failures.append(f"{p['name']} {cls}: output changes by {err:.2e}")
    return claims, failures


def score(name, exe, path):
    out = subprocess.run([exe, "analyze", path, "--format", "json"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    summary = report["summary"]
    claims, failures = check_claims(name, report)
    verdict = "all hold" if not failures else f"{len(failures)} FAIL: " + "; ".join(failures[:5])
    return (f"classes {summary['classes']}, {100 * summary['fraction_scale_invariant']:.1f}% of elements invariant; "
            f"{claims} claims checked in float64 PyTorch: {verdict}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--bin", action="append", default=[], help="NAME=PATH of an adamp-graph binary to score")
    ap.add_argument("--skip-export", action="store_true")
    ap.add_argument("--truth", action="store_true", help="also write the full ground truth (slow)")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    for name in MODELS:
        path = os.path.join(args.out_dir, name + ".onnx")
        if not args.skip_export:
            export(name, args.out_dir, args.truth)
        for spec in args.bin:
            label, exe = spec.split("=", 1)
            print(f"{name} [{label}]: {score(name, exe, path)}", flush=True)


if __name__ == "__main__":
    main()
