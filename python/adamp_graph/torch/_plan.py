"""``plan_for``: export a model in memory, analyse it, and map the plan back onto
``model.named_parameters()``."""
import io
import json
import warnings

import torch

from .. import _native


class ExportError(RuntimeError):
    """The model could not be exported to ONNX with the training-mode recipe."""


class PlanMismatchError(ValueError):
    """A plan was applied to a model whose parameters it does not describe."""


class UnmappedParameterWarning(UserWarning):
    """Parameters that no ONNX initializer maps to; they get the runtime test."""


def _unique_tensors(model):
    seen, out = set(), []
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


class _Saved:
    """The model's parameters, buffers, train/eval flags and the RNG state, put back on exit.

    A training-mode export runs forward passes: BatchNorm's running statistics
    move and dropout draws random numbers."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.tensors = [(t, t.detach().clone()) for t in _unique_tensors(self.model)]
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for t, saved in self.tensors:
                t.copy_(saved)
        for m, training in self.modes:
            m.training = training
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        return False


def export_training(model, example_inputs, **kwargs):
    """The model as ONNX bytes, exported with the training-mode recipe (TorchScript
    exporter, ``TrainingMode.TRAINING``, no constant folding). The caller restores state."""
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    buffer = io.BytesIO()
    options = dict(dynamo=False, training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                   export_params=True)
    options.update(kwargs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, buffer, **options)
    except Exception as e:
        raise ExportError(
            f"{type(model).__name__} could not be exported to ONNX in training mode "
            f"(torch.onnx.export(..., dynamo=False, training=TrainingMode.TRAINING, "
            f"do_constant_folding=False)): {type(e).__name__}: {e}"
        ) from e
    return buffer.getvalue()


class TorchPlan:
    """The plan of one model, keyed by ``model.named_parameters()`` names.

    ``tensors[name]`` has ``projection`` (``channel``, ``layer``, ``none`` or
    ``runtime``), ``axis`` (for ``channel``), ``class`` (the analysis class, or
    ``unknown`` for a parameter the export did not show) and ``onnx`` (the
    initializer names it came from). ``plan`` is the raw plan document,
    ``analysis`` the analysis, ``unmapped`` the parameters given the runtime test
    because no initializer maps to them."""

    def __init__(self, tensors, shapes, plan, analysis, unmapped, model_name):
        self.tensors = tensors
        self.shapes = shapes
        self.plan = plan
        self.analysis = analysis
        self.unmapped = unmapped
        self.model_name = model_name

    def __repr__(self):
        counts = {}
        for t in self.tensors.values():
            counts[t["projection"]] = counts.get(t["projection"], 0) + 1
        return f"TorchPlan({self.model_name}: {len(self.tensors)} parameters, {counts})"

    def param_groups(self, model, **options):
        """Parameter groups for :class:`AdamP`/:class:`SGDP`: one per projection
        (and axis), each with ``projection``, ``axis`` and ``params``; keyword
        options are copied into every group. Raises ``PlanMismatchError`` when the
        model's trainable parameters are not exactly the plan's."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        names = {n for n, _ in named}
        not_in_plan = [n for n in names if n not in self.tensors]
        not_in_model = [n for n in self.tensors if n not in names]
        if not_in_plan or not_in_model:
            parts = []
            if not_in_plan:
                parts.append(f"{len(not_in_plan)} parameters are not in the plan ({', '.join(sorted(not_in_plan)[:5])})")
            if not_in_model:
                parts.append(f"{len(not_in_model)} planned parameters are not in the model ({', '.join(sorted(not_in_model)[:5])})")
            raise PlanMismatchError(
                f"the plan of {self.model_name} does not describe this {type(model).__name__}: "
                + "; ".join(parts) + ". Make the plan with plan_for(model, example_inputs) on this model."
            )
        groups = {}
        for n, p in named:
            if list(p.shape) != self.shapes[n]:
                raise PlanMismatchError(
                    f"parameter {n}: shape {list(p.shape)} in the model, {self.shapes[n]} in the plan of {self.model_name}"
                )
            t = self.tensors[n]
            key = (t["projection"], t.get("axis"))
            groups.setdefault(key, []).append(p)
        order = {"channel": 0, "layer": 1, "runtime": 2, "none": 3}
        out = []
        for (projection, axis), params in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1] or 0)):
            out.append({**options, "params": params, "projection": projection, "axis": axis})
        return out


def plan_for(model, example_inputs, optimizer="adamp", **export_options):
    """The static plan of ``model`` for ``optimizer`` (``adamp`` or ``sgdp``).

    Exports the model in memory in training mode (its parameters, buffers,
    train/eval flags and RNG state are restored afterwards), analyses the graph,
    and maps every ONNX initializer back to a parameter: by name (any alias of a
    tied weight; parametrizations such as weight_norm's ``original0/original1``),
    else by value (the export runs with distinct random parameter values, so a
    renamed initializer equals exactly one parameter). A trainable parameter that
    no initializer maps to, or that two initializers hold, is ``unknown``: it gets
    the runtime test, and an ``UnmappedParameterWarning`` names it."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"plan_for needs a torch.nn.Module, not {type(model).__name__}")
    params = list(model.named_parameters())  # one name per tensor (tied weights once)
    aliases = {n: p for n, p in model.named_parameters(remove_duplicate=False)}
    with _Saved(model):
        generator = torch.Generator().manual_seed(0x5CA1E)
        filled = {}
        with torch.no_grad():
            for _, p in params:
                values = torch.rand(p.shape, generator=generator, dtype=torch.float64) + 0.5
                p.copy_(values.to(p.dtype))
                filled[id(p)] = p.detach().cpu().numpy().copy()
        model_bytes = export_training(model, example_inputs, **export_options)
    plan = json.loads(_native.plan_json(model_bytes, optimizer, None))
    analysis = json.loads(_native.analyze_json(model_bytes))
    for w in analysis.get("warnings", []):
        warnings.warn(f"adamp-graph ({w['code']}): {w['message']}", stacklevel=2)

    initializers = {t.name: t for t in onnx.load_from_string(model_bytes).graph.initializer}
    by_value = {}
    for n, p in params:
        by_value.setdefault((tuple(p.shape), filled[id(p)].reshape(-1)[:4].tobytes()), []).append(p)
    owner = {}  # id(param) -> plan tensors mapped to it
    for t in plan["tensors"]:
        p = aliases.get(t["name"])
        if p is None or list(p.shape) != t["shape"]:
            p = None
            init = initializers.get(t["name"])
            if init is not None:
                array = numpy_helper.to_array(init)
                key = (tuple(array.shape), np.ascontiguousarray(array).reshape(-1)[:4].tobytes())
                candidates = [q for q in by_value.get(key, []) if np.array_equal(filled[id(q)], array)]
                p = candidates[0] if len(candidates) == 1 else None
        if p is not None:
            owner.setdefault(id(p), []).append(t)
    tensors, shapes, unmapped = {}, {}, []
    for n, p in params:
        if not p.requires_grad:
            continue
        shapes[n] = list(p.shape)
        mapped = owner.get(id(p), [])
        if len(mapped) == 1:
            t = mapped[0]
            entry = {"projection": t["projection"]["kind"], "class": t["class"], "onnx": [t["name"]]}
            if entry["projection"] == "channel":
                entry["axis"] = t["projection"]["axis"]
        else:
            # Not in the export, or held by several initializers (scaling the
            # parameter scales all of them; the analysis scaled each alone).
            entry = {"projection": "runtime", "class": "unknown", "onnx": [t["name"] for t in mapped]}
            unmapped.append(n)
        tensors[n] = entry
    if unmapped:
        warnings.warn(
            f"adamp-graph: {len(unmapped)} parameters of {type(model).__name__} could not be mapped to the "
            f"ONNX export and get the runtime cosine test: {', '.join(unmapped[:10])}"
            + (" ..." if len(unmapped) > 10 else ""),
            UnmappedParameterWarning,
            stacklevel=2,
        )
    return TorchPlan(tensors, shapes, plan, analysis, unmapped, type(model).__name__)

