"""adamp-graph for PyTorch: ``plan_for(model, example_inputs)`` decides statically
which parameters are scale-invariant, and ``AdamP``/``SGDP`` apply that plan
(projection per channel along any axis, per layer, the runtime cosine test for
what the analysis could not decide, or none)."""
from ._optim import PROJECTIONS, AdamP, SGDP
from ._plan import ExportError, PlanMismatchError, TorchPlan, UnmappedParameterWarning, plan_for

__all__ = ["PROJECTIONS", "AdamP", "SGDP", "ExportError", "PlanMismatchError", "TorchPlan",
           "UnmappedParameterWarning", "plan_for"]
