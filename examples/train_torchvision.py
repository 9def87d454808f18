#!/usr/bin/env python3
"""Trains a torchvision ResNet-18 for a few steps with the static AdamP of
adamp_graph: the plan decides, from the exported graph, which weights are
projected (per channel, along which axis) and which are not.

Data: torchvision's FakeData (random images, nothing downloaded).

    python examples/train_torchvision.py [--steps 5] [--model resnet18] [--batch 16]
"""
import argparse

import torch
import torchvision

import adamp_graph.torch as agt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    args = ap.parse_args()
    torch.manual_seed(0)

    model = getattr(torchvision.models, args.model)(num_classes=10)
    data = torchvision.datasets.FakeData(
        size=args.steps * args.batch, image_size=(3, args.size, args.size), num_classes=10,
        transform=torchvision.transforms.ToTensor(),
    )
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch)

    # The plan: export in memory (training mode; the model's state is restored), analyse, map back.
    example, _ = next(iter(loader))
    plan = agt.plan_for(model, (example[:2],))
    print(plan)
    for group in plan.param_groups(model):
        n = sum(p.numel() for p in group["params"])
        axis = f" along axis {group['axis']}" if group["projection"] == "channel" else ""
        print(f"  {group['projection']}{axis}: {len(group['params'])} tensors, {n} elements")

    opt = agt.AdamP(plan.param_groups(model), lr=1e-3, weight_decay=1e-4)
    model.train()
    for step, (x, y) in enumerate(loader, 1):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
