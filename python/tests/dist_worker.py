"""Workers of the distributed tests (spawned; importable by the children)."""
import os

import torch
import torch.distributed as dist
from torch import nn

import adamp_graph.torch as agt

STEPS = 4
BATCH = 8


class Net(nn.Module):
    """One tensor per projection kind, with dims that shard unevenly over 2 ranks:

    - ``conv.parametrizations.weight.original1`` [7, 3, 3, 3]: weight_norm, channel along axis 0;
    - ``w`` [6, 5]: ℓ2-normalized per column, channel along axis 1;
    - ``mix.weight`` [5, 5] before LayerNorm: layer;
    - ``gate`` [1, 5]: layer, one row, so one rank's shard is empty;
    - ``probe.weight`` [3, 5]: the runtime test;
    - the rest: none."""

    def __init__(self):
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 7, 3, padding=1))
        self.proj = nn.Linear(7, 6)
        self.w = nn.Parameter(torch.randn(6, 5))
        self.mix = nn.Linear(5, 5, bias=False)
        self.ln = nn.LayerNorm(5)
        self.gate = nn.Parameter(torch.randn(1, 5))
        self.probe = nn.Linear(5, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        h = torch.tanh(self.proj(h)) @ (self.w / self.w.norm(dim=0, keepdim=True))
        h = self.ln(self.mix(h)) * (self.gate / self.gate.norm())
        return self.probe(torch.relu(h))


def groups(model, **options):
    named = dict(model.named_parameters())
    kinds = {
        "conv.parametrizations.weight.original1": {"projection": "channel", "axis": 0},
        "w": {"projection": "channel", "axis": 1},
        "mix.weight": {"projection": "layer"},
        "gate": {"projection": "layer"},
        "probe.weight": {"projection": "runtime"},
    }
    out = [{"params": [named[n]], **k, **options} for n, k in kinds.items()]
    out.append({"params": [p for n, p in named.items() if n not in kinds], "projection": "none", **options})
    return out


def make_optimizer(name, model):
    if name == "adamp":
        return agt.AdamP(groups(model), lr=3e-2, weight_decay=1e-2)
    return agt.SGDP(groups(model), lr=0.1, momentum=0.9, weight_decay=1e-3)


def data(step):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(BATCH, 3, 6, 6, generator=g), torch.randint(0, 3, (BATCH,), generator=g)


def train(model, opt, rank=0, world=1):
    for step in range(STEPS):
        x, y = data(step)
        part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[part]), y[part]).backward()
        opt.step()


def reference(name):
    torch.manual_seed(0)
    model = Net()
    train(model, make_optimizer(name, model))
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _init(rank, world, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)


def ddp(rank, world, port, name, out):
    _init(rank, world, port)
    try:
        torch.manual_seed(0)
        model = Net()
        wrapped = nn.parallel.DistributedDataParallel(model)
        train(wrapped, make_optimizer(name, model), rank, world)
        if rank == 0:
            torch.save({n: p.detach() for n, p in model.named_parameters()}, out)
        # Both ranks leave together: a rank tearing gloo down while its peer
        # still talks to the store (rank 0's) aborts the peer.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def fsdp(rank, world, port, name, out):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    _init(rank, world, port)
    try:
        torch.manual_seed(0)
        model = Net()
        mesh = init_device_mesh("cpu", (world,))
        fully_shard(model, mesh=mesh)
        opt = make_optimizer(name, model)
        train(model, opt, rank, world)
        full = {n: p.full_tensor().detach() for n, p in model.named_parameters()}
        state = {n: {k: v.full_tensor() for k, v in opt.state[p].items() if torch.is_tensor(v)}
                 for n, p in model.named_parameters()}
        if rank == 0:
            torch.save({"params": full, "state": state}, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()
