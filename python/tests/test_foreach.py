"""The step is a fixed number of torch calls per group, whatever the number of
tensors in it: the math is torch._foreach_* and one fused row reduction, never a
Python loop over tensors (counted with a TorchDispatchMode)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import adamp_graph.torch as agt


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def ops_per_step(cls, tensors, **group):
    torch.manual_seed(0)
    shapes = [(8, 4, 3, 3), (16, 8), (5, 7, 2)]
    params = [torch.nn.Parameter(torch.randn(shapes[i % 3])) for i in range(tensors)]
    opt = cls([{"params": params, **group}], lr=0.1)
    for _ in range(2):  # the first step allocates state and builds the layout
        for p in params:
            p.grad = torch.randn_like(p)
        with CountOps() as counter:
            opt.step()
    return counter.ops


@pytest.mark.parametrize("cls", [agt.AdamP, agt.SGDP])
@pytest.mark.parametrize("group", [
    {"projection": "channel", "axis": 0},
    {"projection": "channel", "axis": 1},
    {"projection": "layer"},
    {"projection": "runtime"},
    {"projection": "none"},
    {"projection": "runtime", "weight_decay": 0.1, "nesterov": True, "momentum": 0.9},
], ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_ops_per_step_do_not_grow_with_the_tensors(cls, group):
    if cls is agt.AdamP:
        group = {k: v for k, v in group.items() if k != "momentum"}
    few, many = ops_per_step(cls, 3, **group), ops_per_step(cls, 30, **group)
    assert few == many
    assert any("_foreach_" in op for op in few)
