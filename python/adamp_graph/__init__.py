"""adamp-graph from Python: the static scale-invariance analysis and the
optimizer-state plan of an ONNX model (``analyze``, ``plan``), and, in
``adamp_graph.torch``, AdamP/SGDP optimizers for PyTorch that follow the plan.
"""
import json as _json

from ._native import ModelError, PLAN_SCHEMA, PLAN_VERSION, analyze_json as _analyze_json, plan_json as _plan_json

__all__ = ["ModelError", "PLAN_SCHEMA", "PLAN_VERSION", "analyze", "plan"]


def analyze(model):
    """The analysis of a model (ONNX bytes, plain or gzip, or a path) as the
    ``adamp-graph analyze --format json`` document; raises ``ModelError``."""
    return _json.loads(_analyze_json(model))


def plan(model, optimizer="adamp", **hyperparameters):
    """The plan (schema ``adamp-graph/plan``) of a model for ``adamp`` or
    ``sgdp``; keyword arguments override the reference defaults (``betas`` as
    a pair); raises ``ModelError`` for a bad model, ``ValueError`` for a bad option."""
    if "betas" in hyperparameters:
        hyperparameters["betas"] = list(hyperparameters["betas"])
    text = _json.dumps(hyperparameters) if hyperparameters else None
    return _json.loads(_plan_json(model, optimizer, text))
