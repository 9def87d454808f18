"""The golden traces of fixtures/golden/optim (official adamp 0.3.0) replayed
through adamp_graph.torch.AdamP/SGDP: with the runtime test, with the static
projection the trace's decisions show, and all cases at once in one optimizer."""
import json

import pytest
import torch

from adamp_graph.torch import SGDP, AdamP, _optim
from conftest import GOLDEN, assert_close

CASES = sorted(p for p in GOLDEN.glob("*.json") if json.loads(p.read_text())["optimizer"] in ("adamp", "sgdp"))


@pytest.fixture(autouse=True, params=["native", "torch"])
def reduction(request, monkeypatch):
    """Both implementations of the row reductions: the extension's fused one (CPU)
    and the torch ops (foreach, cat + segment_reduce) that other devices use."""
    if request.param == "torch":
        monkeypatch.setattr(_optim, "_NATIVE", [None])
    return request.param


def load(path):
    return json.loads(path.read_text())


def make(case, params, **group):
    hp = dict(case["hyperparameters"])
    if "betas" in hp:
        hp["betas"] = tuple(hp["betas"])
    cls = AdamP if case["optimizer"] == "adamp" else SGDP
    if cls is SGDP:
        hp.setdefault("lr", case["defaults"]["lr"])
    return cls(params, **hp, **group)


def state_of(case, opt, p):
    state = opt.state[p]
    return {k: state[k] for k in case["steps"][0]["state"]}


def replay(case, opt, p, check_decision):
    for t, step in enumerate(case["steps"]):
        p.grad = torch.tensor(step["grad"], dtype=torch.float32).reshape(case["shape"])
        opt.step()
        assert_close(p.detach(), step["param"], f"{case['name']} step {t + 1}: param")
        for k, v in state_of(case, opt, p).items():
            assert_close(v, step["state"][k], f"{case['name']} step {t + 1}: {k}")
        if check_decision and len(case["shape"]) > 1:
            channel, layer = (d.item() for d in opt.last_runtime_decision)
            decided = "channel" if channel else "layer" if layer else None
            assert decided == step["projected"], f"{case['name']} step {t + 1}: projected {decided}"


def test_every_golden_case_is_replayed():
    assert len(CASES) >= 8, CASES


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_runtime_test_replays_the_reference(path):
    case = load(path)
    p = torch.nn.Parameter(torch.tensor(case["initial"], dtype=torch.float32).reshape(case["shape"]))
    replay(case, make(case, [p]), p, check_decision=True)


STATIC = [p for p in CASES if len({s["projected"] for s in load(p)["steps"]}) == 1]


@pytest.mark.parametrize("path", STATIC, ids=lambda p: p.stem)
def test_static_projection_replays_the_reference_where_the_decision_agrees(path):
    case = load(path)
    decided = case["steps"][0]["projected"]
    group = {"projection": "none"} if decided is None else {"projection": decided}
    if decided == "channel":
        group["axis"] = 0
    p = torch.nn.Parameter(torch.tensor(case["initial"], dtype=torch.float32).reshape(case["shape"]))
    replay(case, make(case, [p], **group), p, check_decision=False)


@pytest.mark.parametrize("optimizer", ["adamp", "sgdp"])
def test_all_cases_in_one_optimizer(optimizer):
    """One optimizer, one group per case: the foreach path over mixed shapes and kinds."""
    cases = [load(p) for p in CASES if load(p)["optimizer"] == optimizer]
    params, groups = [], []
    for case in cases:
        p = torch.nn.Parameter(torch.tensor(case["initial"], dtype=torch.float32).reshape(case["shape"]))
        hp = dict(case["hyperparameters"])
        if "betas" in hp:
            hp["betas"] = tuple(hp["betas"])
        params.append(p)
        groups.append({"params": [p], **hp})
    cls = AdamP if optimizer == "adamp" else SGDP
    opt = cls(groups, lr=0.1) if cls is SGDP else cls(groups)
    for t in range(max(len(c["steps"]) for c in cases)):
        live = [(c, p) for c, p in zip(cases, params) if t < len(c["steps"])]
        for c, p in zip(cases, params):
            p.grad = torch.tensor(c["steps"][t]["grad"], dtype=torch.float32).reshape(c["shape"]) if t < len(c["steps"]) else None
        opt.step()
        for c, p in live:
            assert_close(p.detach(), c["steps"][t]["param"], f"{c['name']} step {t + 1}: param")
            for k, v in state_of(c, opt, p).items():
                assert_close(v, c["steps"][t]["state"][k], f"{c['name']} step {t + 1}: {k}")
