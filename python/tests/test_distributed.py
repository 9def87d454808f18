"""DDP and FSDP2 (fully_shard) with 2 gloo CPU processes give the parameters of
one process on the whole batch (float32 tolerance)."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import adamp_graph.torch as agt
import dist_worker
from conftest import assert_close, free_port

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")

# Workers are forked from one forkserver that has imported torch and the worker
# module once, instead of each spawned worker importing torch again (2-3 s each).
mp.set_forkserver_preload(["dist_worker"])


def run_workers(fn, *args):
    """`fn(rank, 2, port, *args)` in two processes; raises when one fails."""
    mp.start_processes(fn, args=(2, free_port(), *args), nprocs=2, join=True, start_method="forkserver")


def test_the_test_net_plans_as_the_groups_say():
    """The worker's hand-made groups are what the analysis proves (runtime aside)."""
    model = dist_worker.Net()
    plan = agt.plan_for(model, (dist_worker.data(0)[0],))
    for g in dist_worker.groups(model):
        names = [n for n, p in model.named_parameters() if any(p is q for q in g["params"])]
        for n in names:
            if g["projection"] in ("channel", "layer"):
                assert plan.tensors[n]["projection"] == g["projection"], n
                assert plan.tensors[n].get("axis") == g.get("axis"), n


@pytest.mark.parametrize("name", ["adamp", "sgdp"])
def test_ddp_two_processes_equal_one(name, tmp_path):
    out = tmp_path / "ddp.pt"
    run_workers(dist_worker.ddp, name, str(out))
    got = torch.load(out)
    for n, p in dist_worker.reference(name).items():
        assert_close(got[n], p, f"DDP {name}: {n}")


@pytest.mark.parametrize("name", ["adamp", "sgdp"])
def test_fsdp2_two_shards_equal_unsharded(name, tmp_path):
    out = tmp_path / "fsdp.pt"
    run_workers(dist_worker.fsdp, name, str(out))
    got = torch.load(out)
    torch.manual_seed(0)
    model = dist_worker.Net()
    opt = dist_worker.make_optimizer(name, model)
    dist_worker.train(model, opt)
    for n, p in model.named_parameters():
        assert_close(got["params"][n], p.detach(), f"FSDP2 {name}: {n}")
        for k, v in opt.state[p].items():
            if torch.is_tensor(v):
                assert_close(got["state"][n][k], v, f"FSDP2 {name}: {n} {k}")
