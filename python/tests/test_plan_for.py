"""plan_for: the in-memory export, state restored, names mapped back (torchvision,
timm, tied weights, weight_norm, renamed initializers), unmapped parameters, and
the errors it and the optimizers raise."""
import copy
import warnings

import onnx
import pytest
import torch
from torch import nn

import adamp_graph
import adamp_graph.torch as agt
from adamp_graph.torch import _plan
from conftest import ZOO
from models import ConvBN, MixedAxes, Tied, TiedHeadFirst, WeightNormed, batch


def projections(plan):
    return {n: (t["projection"], t.get("axis")) for n, t in plan.tensors.items()}


def test_torchvision_resnet18_maps_every_parameter_and_matches_the_zoo_plan():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    plan = agt.plan_for(model, (torch.randn(2, 3, 32, 32),))
    assert plan.unmapped == []
    zoo = adamp_graph.plan(ZOO / "resnet18.onnx.gz")
    expected = {t["name"]: (t["projection"]["kind"], t["projection"].get("axis")) for t in zoo["tensors"]}
    assert projections(plan) == expected
    assert sum(1 for p, _ in expected.values() if p == "channel") == 20


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "shufflenet_v2_x0_5"])
def test_torchvision_models_map_every_parameter(name):
    torchvision = pytest.importorskip("torchvision")
    model = getattr(torchvision.models, name)()
    plan = agt.plan_for(model, (torch.randn(2, 3, 32, 32),))
    assert plan.unmapped == []
    assert set(plan.tensors) == {n for n, _ in model.named_parameters()}
    assert any(t["projection"] == "channel" for t in plan.tensors.values())
    agt.AdamP(plan.param_groups(model))


@pytest.mark.parametrize("name, kwargs", [
    ("resnet10t", {}),
    ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}),
])
def test_timm_models_map_every_parameter(name, kwargs):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, num_classes=10, **kwargs)
    plan = agt.plan_for(model, (torch.randn(2, 3, 32, 32),))
    assert plan.unmapped == []
    assert set(plan.tensors) == {n for n, _ in model.named_parameters()}
    agt.SGDP(plan.param_groups(model), lr=0.1)


@pytest.mark.parametrize("cls", [Tied, TiedHeadFirst])
def test_tied_weights_map_to_the_one_parameter(cls):
    model = cls()
    plan = agt.plan_for(model, (torch.randint(0, 20, (4, 5)),))
    assert plan.unmapped == []
    assert set(plan.tensors) == {n for n, _ in model.named_parameters()} and len(plan.tensors) == 3
    groups = plan.param_groups(model)
    assert sum(len(g["params"]) for g in groups) == 3


def test_weight_norm_parametrization_maps_original0_and_original1():
    model = WeightNormed()
    plan = agt.plan_for(model, (torch.randn(2, 3, 8, 8),))
    assert plan.unmapped == []
    assert plan.tensors["conv.parametrizations.weight.original1"]["projection"] == "channel"
    assert plan.tensors["conv.parametrizations.weight.original1"]["axis"] == 0
    assert plan.tensors["conv.parametrizations.weight.original0"]["projection"] == "none"


def renaming(export):
    """An exporter that renames every initializer (as exporters do for values
    they create), so only the values can tell which parameter each one is."""

    def renamed(model, example_inputs, **kwargs):
        proto = onnx.load_from_string(export(model, example_inputs, **kwargs))
        names = {}
        for i, init in enumerate(proto.graph.initializer):
            names[init.name] = f"onnx::Renamed_{i}"
            init.name = names[init.name]
        for node in proto.graph.node:
            node.input[:] = [names.get(n, n) for n in node.input]
        return proto.SerializeToString()

    return renamed


def test_renamed_initializers_map_by_value(monkeypatch):
    reference = agt.plan_for(MixedAxes(), (torch.randn(8, 12),))
    monkeypatch.setattr(_plan, "export_training", renaming(_plan.export_training))
    model = MixedAxes()
    plan = agt.plan_for(model, (torch.randn(8, 12),))
    assert plan.unmapped == []
    assert projections(plan) == projections(reference)
    assert plan.tensors["w"]["onnx"][0].startswith("onnx::Renamed_")
    assert plan.tensors["w"]["axis"] == 1


def test_identical_parameters_are_told_apart_by_the_export_values(monkeypatch):
    """Two parameters with equal values (both BatchNorm gammas start at 1) still
    map one to one, since the export runs on distinct random values."""
    monkeypatch.setattr(_plan, "export_training", renaming(_plan.export_training))
    model = ConvBN()
    assert torch.equal(model.bn1.weight, torch.ones(8))
    plan = agt.plan_for(model, (batch(0)[0],))
    assert plan.unmapped == []
    assert len({t["onnx"][0] for t in plan.tensors.values()}) == len(plan.tensors)


class Unused(ConvBN):
    def __init__(self):
        super().__init__()
        self.spare = nn.Parameter(torch.randn(4, 4))  # never used by forward


def test_unmapped_parameters_get_the_runtime_test_and_a_warning():
    model = Unused()
    with pytest.warns(agt.UnmappedParameterWarning, match="spare"):
        plan = agt.plan_for(model, (batch(0)[0],))
    assert plan.unmapped == ["spare"]
    assert plan.tensors["spare"] == {"projection": "runtime", "class": "unknown", "onnx": []}
    runtime = [g for g in plan.param_groups(model) if g["projection"] == "runtime"]
    assert [p for g in runtime for p in g["params"]] == [model.spare]


def test_plan_for_restores_parameters_buffers_modes_and_rng():
    model = nn.Sequential(ConvBN(), nn.Dropout(0.5))
    model[0].bn1.eval()  # a mixed train/eval state must come back as it was
    before = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    agt.plan_for(model, (batch(0)[0],))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_exporting_moves_batchnorm_statistics_so_restoring_is_needed():
    """The premise of the test above: a training-mode export changes running stats."""
    model = ConvBN()
    before = model.bn1.running_mean.clone()
    _plan.export_training(model, (batch(0)[0],))
    assert not torch.equal(before, model.bn1.running_mean)


class NotExportable(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return {"not", "a", "tensor"}


def test_a_model_that_does_not_export_is_an_export_error():
    model = NotExportable()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(agt.ExportError, match="NotExportable could not be exported"):
        agt.plan_for(model, (torch.randn(2, 4),))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_plan_from_another_model_is_refused():
    plan = agt.plan_for(ConvBN(), (batch(0)[0],))
    with pytest.raises(agt.PlanMismatchError, match="does not describe this MixedAxes.*not in the plan.*not in the model"):
        plan.param_groups(MixedAxes())


def test_parameters_not_in_the_plan_are_refused():
    model = ConvBN()
    plan = agt.plan_for(model, (batch(0)[0],))
    model.extra = nn.Linear(2, 2)
    with pytest.raises(agt.PlanMismatchError, match=r"2 parameters are not in the plan \(extra.bias, extra.weight\)"):
        plan.param_groups(model)


def test_a_parameter_of_another_shape_is_refused():
    model = ConvBN()
    plan = agt.plan_for(model, (batch(0)[0],))
    model.fc = nn.Linear(16, 7)
    with pytest.raises(agt.PlanMismatchError, match=r"fc.weight: shape \[7, 16\] in the model, \[5, 16\] in the plan"):
        plan.param_groups(model)


def test_frozen_parameters_are_left_out():
    model = ConvBN()
    model.fc.weight.requires_grad_(False)
    plan = agt.plan_for(model, (batch(0)[0],))
    assert "fc.weight" not in plan.tensors
    assert all(p is not model.fc.weight for g in plan.param_groups(model) for p in g["params"])


@pytest.mark.parametrize("group, message", [
    ({"projection": "diagonal"}, "projection must be one of"),
    ({"projection": "channel"}, "needs an integer 'axis'"),
    ({"projection": "channel", "axis": 4}, r"along axis 4 for a parameter of shape \[3, 4\]"),
    ({"projection": "layer", "axis": 0}, "'axis' is only for projection 'channel'"),
    ({"projection": "layer", "delta": -1.0}, "invalid delta"),
])
@pytest.mark.parametrize("cls", [agt.AdamP, agt.SGDP])
def test_bad_group_options_are_errors(cls, group, message):
    with pytest.raises(ValueError, match=message):
        cls([{"params": [nn.Parameter(torch.randn(3, 4))], **group}])


def test_bad_models_are_model_errors():
    with pytest.raises(adamp_graph.ModelError, match="not a valid ONNX model"):
        adamp_graph.analyze(b"\x08\x07garbage")
    with pytest.raises(adamp_graph.ModelError, match="no-such.onnx"):
        adamp_graph.plan("no-such.onnx")
    with pytest.raises(TypeError, match="ONNX bytes or a path"):
        adamp_graph.analyze(42)
    with pytest.raises(ValueError, match="momentum and dampening are SGD-family options; adamp takes betas"):
        adamp_graph.plan(ZOO / "resnet18.onnx.gz", momentum=0.9)
    with pytest.raises(ValueError, match='"gamma" is not a hyperparameter of sgdp'):
        adamp_graph.plan(ZOO / "resnet18.onnx.gz", "sgdp", gamma=0.9)
    with pytest.raises(ValueError, match="invalid weight_decay"):
        adamp_graph.plan(ZOO / "resnet18.onnx.gz", weight_decay=-1.0)
    with pytest.raises(ValueError, match="optimizer must be 'adamp' or 'sgdp'"):
        adamp_graph.plan(ZOO / "resnet18.onnx.gz", "adam")
    assert adamp_graph.plan(ZOO / "resnet18.onnx.gz", "sgdp", lr=0.3, momentum=0.9)["hyperparameters"]["momentum"] == 0.9
