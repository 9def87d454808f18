#!/usr/bin/env python3
"""Times the official adamp.AdamP / SGDP (and torch.optim.Adam / SGD) on CPU over
the same tensors `adamp-graph bench` uses: the trainable tensors of a plan.

Not run by CI.

    adamp-graph plan MODEL.onnx -o plan.json
    python scripts/bench_torch_adamp.py plan.json [--steps 10]
"""
import argparse
import json
import statistics
import time

import torch


def bench(make, params, steps):
    opt = make(params)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    opt.step()  # warm-up (state allocation)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plan")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    import adamp

    plan = json.load(open(args.plan))
    shapes = [t["shape"] for t in plan["tensors"]]
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
    n = sum(p.numel() for p in params)
    print(f"{plan['model']}: {len(params)} tensors, {n} elements, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, median of {args.steps} steps")
    rows = [
        ("adamp.AdamP", lambda ps: adamp.AdamP(ps, lr=1e-3, weight_decay=1e-4)),
        ("torch.optim.Adam", lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=1e-4)),
        ("adamp.SGDP", lambda ps: adamp.SGDP(ps, lr=0.1, momentum=0.9, weight_decay=1e-4)),
        ("torch.optim.SGD", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4)),
    ]
    for name, make in rows:
        print(f"{name:18s} {bench(make, params, args.steps):9.1f} ms/step")


if __name__ == "__main__":
    main()
