"""Against the official adamp 0.3.0 on models: the runtime test is the official
optimizer; the static plan gives the same numbers wherever the official
detection agrees with it; state dicts move both ways."""
import copy
import math

import adamp
import pytest
import torch

import adamp_graph.torch as agt
from conftest import assert_close
from models import ConvBN, MixedAxes, batch


def recording(cls):
    """The official optimizer, recording per tensor which view its test projected."""

    class Recording(cls):
        decisions = {}

        def _projection(self, p, grad, perturb, delta, wd_ratio, eps):
            decided = None
            for name, view in (("channel", self._channel_view), ("layer", self._layer_view)):
                if self._cosine_similarity(grad, p.data, eps, view).max() < delta / math.sqrt(view(p.data).size(1)):
                    decided = name
                    break
            self.decisions.setdefault(id(p), []).append(decided)
            return super()._projection(p, grad, perturb, delta, wd_ratio, eps)

    Recording.decisions = {}
    return Recording


def train(model, opt, steps, seed=1, loss_fn=torch.nn.functional.cross_entropy, inputs=None):
    for s in range(steps):
        x, y = inputs(seed + s) if inputs else batch(seed + s)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()


def assert_same_params(a, b, what):
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert_close(p.detach(), q.detach(), f"{what}: {n}")


HYPER = {
    "adamp": (adamp.AdamP, agt.AdamP, dict(lr=1e-2, weight_decay=1e-2)),
    "sgdp": (adamp.SGDP, agt.SGDP, dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "sgdp-nesterov": (adamp.SGDP, agt.SGDP, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
}


@pytest.mark.parametrize("kind", HYPER)
def test_runtime_projection_is_the_official_optimizer(kind):
    official_cls, ours_cls, hp = HYPER[kind]
    ref = ConvBN()
    model = copy.deepcopy(ref)
    train(ref, official_cls(ref.parameters(), **hp), 5)
    train(model, ours_cls(model.parameters(), **hp), 5)
    assert_same_params(model, ref, kind)


@pytest.mark.parametrize("kind", HYPER)
def test_static_plan_equals_the_official_where_its_detection_agrees(kind):
    official_cls, ours_cls, hp = HYPER[kind]
    ref = ConvBN()
    model = copy.deepcopy(ref)
    x, _ = batch(0)
    plan = agt.plan_for(model, (x,), optimizer=kind.split("-")[0])
    assert plan.tensors["conv1.weight"] == {"projection": "channel", "axis": 0, "class": "channel", "onnx": ["conv1.weight"]}
    official = recording(official_cls)(ref.parameters(), **hp)
    # 4 steps: at the 5th the official test misfires on fc.weight (projects a
    # scale-variant tensor), which is what the static plan is for.
    train(ref, official, 4)
    train(model, ours_cls(plan.param_groups(model), **hp), 4)
    for (n, p) in ref.named_parameters():
        static = plan.tensors[n]["projection"]
        expected = [None if static == "none" else static] * 4
        if p.dim() > 1:
            assert official.decisions[id(p)] == expected, f"{n}: the official test decided {official.decisions[id(p)]}"
        else:
            assert static == "none", n  # the official optimizer never projects 1-D tensors
    assert_same_params(model, ref, kind)


def test_channel_along_axis_1_is_what_the_official_would_do_on_the_transpose():
    """The plan projects the raw [in, out] weight per column; the official
    optimizer sees it per column when given the transposed parameter."""
    torch.manual_seed(3)
    model = MixedAxes()
    x = torch.randn(16, 12)
    plan = agt.plan_for(model, (x,))
    assert plan.tensors["w"]["projection"] == "channel" and plan.tensors["w"]["axis"] == 1
    w = model.w.detach().clone()
    ours_p = torch.nn.Parameter(w.clone())
    ref_p = torch.nn.Parameter(w.t().contiguous())
    ours = agt.AdamP([ours_p], lr=1e-2, weight_decay=0.1, projection="channel", axis=1)
    ref = recording(adamp.AdamP)([ref_p], lr=1e-2, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        grad = torch.randn(12, 10, generator=g)
        grad -= w * (grad * w).sum(0) / (w * w).sum(0)  # orthogonal per column, as before a BatchNorm
        ours_p.grad, ref_p.grad = grad.clone(), grad.t().contiguous()
        ours.step()
        ref.step()
        w = ours_p.detach()
    assert ref.decisions[id(ref_p)] == ["channel"] * 4
    assert_close(ours_p.detach().t(), ref_p.detach(), "w")


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
def test_state_dict_moves_both_ways(kind):
    official_cls, ours_cls, hp = HYPER[kind]
    ref = ConvBN()
    ref_opt = official_cls(ref.parameters(), **hp)
    a, b = copy.deepcopy(ref), copy.deepcopy(ref)
    train(ref, ref_opt, 6)
    # ours for 3 steps, then the official optimizer from our state dict
    a_ours = ours_cls(a.parameters(), **hp)
    train(a, a_ours, 3)
    sd = a_ours.state_dict()
    a_official = official_cls(a.parameters(), **hp)
    a_official.load_state_dict(sd)
    assert a_official.state_dict()["state"].keys() == sd["state"].keys()
    for s in a_official.state_dict()["state"].values():
        assert set(s) == ({"step", "exp_avg", "exp_avg_sq"} if kind == "adamp" else {"momentum"})
    train(a, a_official, 3, seed=4)
    # the official optimizer for 3 steps, then ours from its state dict
    b_official = official_cls(b.parameters(), **hp)
    train(b, b_official, 3)
    b_ours = ours_cls(b.parameters(), **hp)
    b_ours.load_state_dict(b_official.state_dict())
    assert all(g["projection"] == "runtime" for g in b_ours.param_groups)
    train(b, b_ours, 3, seed=4)
    assert_same_params(a, ref, "ours then official")
    assert_same_params(b, ref, "official then ours")


def test_loading_the_official_state_keeps_the_plan_groups():
    model = ConvBN()
    x, _ = batch(0)
    plan = agt.plan_for(model, (x,))
    official = adamp.AdamP(plan.param_groups(model), lr=1e-3)
    train(model, official, 2)
    ours = agt.AdamP(plan.param_groups(model), lr=1e-3)
    projections = [(g["projection"], g["axis"]) for g in ours.param_groups]
    sd = official.state_dict()
    for g in sd["param_groups"]:
        g.pop("projection")
        g.pop("axis")
    ours.load_state_dict(sd)
    assert [(g["projection"], g["axis"]) for g in ours.param_groups] == projections
    assert all(isinstance(s["step"], int) and s["step"] == 2 for s in ours.state.values())


@pytest.mark.parametrize("cls", [agt.AdamP, agt.SGDP])
@pytest.mark.parametrize("projection", ["channel", "layer", "runtime"])
def test_channels_last_parameters_take_the_torch_path_and_agree(cls, projection):
    """Non-contiguous (channels_last) weights cannot go to the extension by
    address; the torch path gives the same numbers on the same gradients."""
    g = torch.Generator().manual_seed(1)
    shapes = [(8, 4, 3, 3), (6, 3, 5, 5)]
    dense = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    last = [torch.nn.Parameter(p.detach().clone().to(memory_format=torch.channels_last)) for p in dense]
    assert not last[0].is_contiguous()
    group = {"projection": projection, "axis": 0 if projection == "channel" else None}
    hp = dict(lr=1e-2, weight_decay=1e-2) | ({"momentum": 0.9} if cls is agt.SGDP else {})
    a, b = cls([{"params": dense, **group}], **hp), cls([{"params": last, **group}], **hp)
    for _ in range(3):
        for p, q in zip(dense, last):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone().to(memory_format=torch.channels_last)
        a.step()
        b.step()
    for p, q in zip(dense, last):
        assert_close(q.detach(), p.detach(), f"channels_last {projection}")
