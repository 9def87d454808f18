#!/usr/bin/env python3
"""Times one optimizer step over ResNet-50's parameters on the CPU, in one run:
adamp_graph.torch.AdamP with the static plan against torch.optim.Adam(foreach=True)
and the official adamp.AdamP; adamp_graph.torch.SGDP against
torch.optim.SGD(foreach=True) and the official adamp.SGDP. Steps of all
optimizers are interleaved round by round, so load on the machine hits them alike.

Not run by CI (docs/benchmarks.md has the figures).

    python scripts/bench_torch_static.py [--rounds 15] [--threads N]
"""
import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import adamp
    import torchvision

    import adamp_graph.torch as agt

    model = torchvision.models.resnet50()
    plan = agt.plan_for(model, (torch.randn(2, 3, 64, 64),))
    counts = {}
    for t in plan.tensors.values():
        counts[t["projection"]] = counts.get(t["projection"], 0) + 1
    n = sum(p.numel() for p in model.parameters())
    print(f"ResNet-50: {len(plan.tensors)} tensors, {n} elements, plan {counts}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.rounds} interleaved steps each, ms per step")

    def setup(make, static):
        torch.manual_seed(0)
        twin = torchvision.models.resnet50()
        for p in twin.parameters():
            p.grad = torch.randn_like(p) * 1e-2
        opt = make(plan.param_groups(twin) if static else twin.parameters())
        opt.step()  # state allocation
        return opt

    rows = [
        ("adamp_graph AdamP, static plan", "adam", lambda ps: agt.AdamP(ps, lr=1e-3, weight_decay=1e-4), True),
        ("torch.optim.Adam(foreach=True)", "adam", lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=1e-4, foreach=True), False),
        ("adamp.AdamP (official 0.3.0)", "adam", lambda ps: adamp.AdamP(ps, lr=1e-3, weight_decay=1e-4), False),
        ("adamp_graph SGDP, static plan", "sgd", lambda ps: agt.SGDP(ps, lr=0.1, momentum=0.9, weight_decay=1e-4), True),
        ("torch.optim.SGD(foreach=True)", "sgd", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True), False),
        ("adamp.SGDP (official 0.3.0)", "sgd", lambda ps: adamp.SGDP(ps, lr=0.1, momentum=0.9, weight_decay=1e-4), False),
    ]
    opts = [setup(make, static) for _, _, make, static in rows]
    times = [[] for _ in rows]
    for _ in range(args.rounds):
        for i, opt in enumerate(opts):
            t0 = time.perf_counter()
            opt.step()
            times[i].append(time.perf_counter() - t0)
    medians = [1e3 * statistics.median(t) for t in times]
    fastest = [1e3 * min(t) for t in times]
    torch_rows = [i for i, (name, _, _, _) in enumerate(rows) if name.startswith("torch.")]
    base = {rows[i][1]: (medians[i], fastest[i]) for i in torch_rows}
    print(f"{'':34s} {'median':>8s}  {'ratio':>5s}   {'min':>8s}  {'ratio':>5s}")
    for (name, family, _, _), med, low in zip(rows, medians, fastest):
        print(f"{name:34s} {med:8.1f}  {med / base[family][0]:5.2f}x  {low:8.1f}  {low / base[family][1]:5.2f}x")


if __name__ == "__main__":
    main()
