"""AdamP and SGDP that apply the plan's projection per parameter group.

Semantics are those of the official ``adamp`` 0.3.0 package (see
``fixtures/golden/README.md``); what changes is who decides the projection:

- ``projection="channel"`` (with ``axis``): projected per slice along ``axis``,
  every step, with ``wd_ratio``; no cosine test;
- ``"layer"``: projected over the whole tensor, every step, with ``wd_ratio``;
- ``"none"``: never projected (decay multiplier 1);
- ``"runtime"`` (the default, so plain parameter lists behave like the official
  optimizers): the reference cosine test, channel view along axis 0 then layer
  view, on tensors of two or more dims.

Design (one step of one parameter group):

1. the moments and the Adam denominator are ``torch._foreach_*`` calls over all
   the group's tensors: the official elementwise ops, in the official order;
2. the projection needs, per row (a slice along the axis, or the whole tensor),
   ``p·u`` and ``p·p`` (and ``g·p``, ``g·g`` for the runtime test), with ``u`` the
   update direction (``m/denom``; SGDP's momentum). On CPU float32 tensors these
   are one call of the extension's ``row_dots`` per group (one pass over the rows,
   ``u`` computed on the fly, never stored); elsewhere ``u`` is stored and the
   sums are ``_foreach_mul`` + one ``cat`` + one ``segment_reduce``;
3. projection and decoupled decay fold into one factor per row,
   ``p ← p·(decay + step·(p·u)/(‖p‖+eps)²) − step·u``: one ``row_update`` call
   (CPU) or two foreach calls. Runtime decisions stay tensors, so nothing syncs
   with the host.

No Python code runs per tensor per step except building the lists of tensors
(as ``torch.optim`` does). Under FSDP2 the math runs on each rank's local shard;
row sums that span a sharded dim, and the runtime test's whole-tensor sums and
maxima, are all-reduced over the shard's process group (one call per kind and
group per step). Rows along the sharded dim (channel along axis 0 under
``fully_shard``) stay local.
"""
import math

import torch
from torch.optim import Optimizer

PROJECTIONS = ("channel", "layer", "runtime", "none")

try:  # torch.distributed is optional (some builds lack it)
    import torch.distributed as _dist
    from torch.distributed.tensor import DTensor as _DTensor
    from torch.distributed.tensor.placement_types import Replicate as _Replicate, Shard as _Shard
except ImportError:  # pragma: no cover - depends on the torch build
    _dist = None
    _DTensor = None


def _local(t):
    """The local shard of a DTensor (shares its storage), else the tensor."""
    if _DTensor is not None and isinstance(t, _DTensor):
        return t.to_local()
    return t


def _shard_group(p, row_dim):
    """For a DTensor parameter: (process group or None, whether the rows along
    ``row_dim`` are split across it). ``row_dim`` None means the whole tensor."""
    if _DTensor is None or not isinstance(p, _DTensor):
        return None, False
    sharded = [(i, pl.dim) for i, pl in enumerate(p.placements) if isinstance(pl, _Shard)]
    others = [pl for pl in p.placements if not isinstance(pl, (_Shard, _Replicate))]
    if others or len(sharded) > 1:
        raise NotImplementedError(
            f"parameter of shape {list(p.shape)} with placements {p.placements}: only one Shard "
            "placement (fully_shard, HSDP) and Replicate are supported"
        )
    if not sharded:
        return None, False
    mesh_dim, dim = sharded[0]
    return p.device_mesh.get_group(mesh_dim), dim != row_dim


def _check_group(group):
    """Validates a group's projection options against its tensors."""
    projection = group.get("projection", "runtime")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, not {projection!r}")
    axis = group.get("axis")
    if projection == "channel":
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"projection 'channel' needs an integer 'axis', got {axis!r}")
        for p in group["params"]:
            if not -p.dim() <= axis < p.dim():
                raise ValueError(
                    f"projection 'channel' along axis {axis} for a parameter of shape {list(p.shape)}"
                )
    elif axis is not None:
        raise ValueError(f"'axis' is only for projection 'channel', not {projection!r}")
    for key in ("delta", "wd_ratio", "eps", "lr", "weight_decay"):
        v = group.get(key)
        if isinstance(v, (int, float)) and not (math.isfinite(v) and v >= 0):
            raise ValueError(f"invalid {key}: {v}")


class _Layout:
    """Per group of tensors stepped together: which are projected, how rows are
    laid out, and what has to be reduced across processes. Built once and cached."""

    def __init__(self, group, params, locals_):
        projection = group["projection"]
        self.none, self.static, self.runtime = [], [], []
        views = {}  # index -> (row dim in the tensor or None for whole, outer, rows, inner)
        for i, (p, q) in enumerate(zip(params, locals_)):
            if projection == "none" or (projection == "runtime" and p.dim() < 2):
                self.none.append(i)
                continue
            if projection == "layer":
                dim = None
            elif projection == "channel":
                dim = group["axis"] % p.dim()
            else:
                dim = 0
            (self.static if projection != "runtime" else self.runtime).append(i)
            if dim is None:
                views[i] = (None, 1, 1, q.numel())
            else:
                shape = list(q.shape)
                views[i] = (dim, math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:]))
        self.projected = self.static + self.runtime
        self.views = [views[i] for i in self.projected]
        self.rows = [v[2] for v in self.views]
        self.first_row = [0]
        for n in self.rows:
            self.first_row.append(self.first_row[-1] + n)
        self.nrows = self.first_row[-1]
        self.nstatic_rows = self.first_row[len(self.static)]
        device = locals_[0].device if locals_ else torch.device("cpu")
        self.device = device
        # Row index of every projected tensor, to broadcast per-tensor values to rows.
        self.row_tensor = torch.repeat_interleave(
            torch.arange(len(self.projected), device=device), torch.tensor(self.rows, device=device)
        ) if self.projected else torch.zeros(0, dtype=torch.long, device=device)
        # Distributed: rows to all-reduce (they span a sharded dim), and runtime
        # tensors whose rows are local but whose whole-tensor sums are not.
        self.row_reduce, self.tensor_reduce = {}, {}
        for k, i in enumerate(self.projected):
            dim = self.views[k][0]
            pg, split = _shard_group(params[i], dim)
            if pg is None:
                continue
            if split:
                rows = range(self.first_row[k], self.first_row[k + 1])
                self.row_reduce.setdefault(pg, []).extend(rows)
            elif k >= len(self.static):
                self.tensor_reduce.setdefault(pg, []).append(k - len(self.static))
        self.row_reduce = {pg: torch.tensor(ix, device=device) for pg, ix in self.row_reduce.items()}
        self.tensor_reduce = {pg: torch.tensor(ix, device=device) for pg, ix in self.tensor_reduce.items()}
        # Runtime test thresholds use the global row length and element count.
        rt = [params[i] for i in self.runtime]
        self.channel_len = torch.tensor([p.numel() / p.shape[0] for p in rt], device=device, dtype=torch.float32)
        self.numel = torch.tensor([float(p.numel()) for p in rt], device=device, dtype=torch.float32)
        self.runtime_rows = torch.tensor(self.rows[len(self.static):], device=device, dtype=torch.long)
        self.fast = device.type == "cpu" and _native() is not None
        self.key = tuple(tuple(q.shape) for q in locals_)

        # Two per-row factor vectors, and per projected tensor a view of each
        # shaped to broadcast with it: made once, so a step adds no per-tensor ops.
        self.factors = torch.zeros(2, self.nrows, dtype=torch.float32, device=device)
        shapes = []
        for k, i in enumerate(self.projected):
            dim, _, n, _ = self.views[k]
            shape = [1] * locals_[i].dim()
            if dim is not None:
                shape[dim] = n
            shapes.append(shape)
        self.factor_views = [
            [part.view(shape) for part, shape in zip(torch.split(f, self.rows), shapes)] for f in self.factors
        ]
        self.lengths = torch.tensor([v[1] * v[3] for v in self.views for _ in range(v[2])], device=device)

    def fused(self, *lists):
        """True when the extension may read and write these lists of tensors (in
        ``projected`` order, or the runtime tail) by address: contiguous float32 on
        the CPU, with the layout's sizes."""
        if not self.fast:
            return False
        for ts in lists:
            views = self.views[len(self.views) - len(ts):]
            if not all(_host_f32(t, v) for t, v in zip(ts, views)):
                return False
        return True

    def row_dots(self, terms, subset, out, fused):
        """``out[row, k] = Σ a_k·b_k`` (or ``Σ a_k·b_k/c_k``) over each row of the
        tensors ``subset`` (consecutive indices into ``projected``), per term."""
        if not subset:
            return
        views = [self.views[k] for k in subset]
        first = self.first_row[subset[0]]
        rows = self.first_row[subset[-1] + 1] - first
        if fused:
            region = out[first:first + rows]
            _native().row_dots(
                [([a.data_ptr() for a in xs], [b.data_ptr() for b in ys],
                  None if zs is None else [c.data_ptr() for c in zs]) for xs, ys, zs in terms],
                [v[1:] for v in views],
                region.data_ptr(),
                rows,
                out.shape[1],
                torch.get_num_threads(),
            )
            return
        lengths = self.lengths[first:first + rows]
        for k, (xs, ys, zs) in enumerate(terms):
            prods = torch._foreach_mul(xs, ys if zs is None else torch._foreach_div(ys, zs))
            flat = torch.cat([
                q.reshape(v[1], v[2], v[3]).transpose(0, 1).reshape(-1) for q, v in zip(prods, views)
            ])
            out[first:first + rows, k] = torch.segment_reduce(flat.float(), "sum", lengths=lengths)

    def row_update(self, P, U, D, c, f, alpha):
        """The extension's one-pass update of the projected tensors (see
        ``row_update`` in python/src/lib.rs); ``c`` and ``f`` are row vectors."""
        _native().row_update(
            [p.data_ptr() for p in P], [u.data_ptr() for u in U],
            None if D is None else [d.data_ptr() for d in D],
            [v[1:] for v in self.views],
            None if c is None else c.data_ptr(), f.data_ptr(), self.nrows, alpha, torch.get_num_threads(),
        )


_NATIVE = []


def _host_f32(t, view):
    """True when the extension may read ``t`` by address with this row view."""
    return (t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
            and t.numel() == view[1] * view[2] * view[3])


def _native():
    """The extension module (its fused row kernels), or None when it is absent."""
    if not _NATIVE:
        try:
            from .. import _native as native
        except ImportError:  # pragma: no cover - the wheel always has it
            native = None
        _NATIVE.append(native)
    return _NATIVE[0]


def _all_reduce_rows(layout, stats):
    """Sums the rows of ``stats`` that span a sharded dim over their process group."""
    for pg, ix in layout.row_reduce.items():
        part = stats.index_select(0, ix)
        _dist.all_reduce(part, op=_dist.ReduceOp.SUM, group=pg)
        stats.index_copy_(0, ix, part)


def _closure_loss(closure):
    """The closure's loss, computed with gradients on (torch's optimizer convention), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class _ProjectedOptimizer(Optimizer):
    """What AdamP and SGDP share: group options, layouts, the projection factors."""

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        self._layouts = {}

    def add_param_group(self, param_group):
        """Adds a group; its projection options are checked against its tensors."""
        super().add_param_group(param_group)
        _check_group(self.param_groups[-1])

    def load_state_dict(self, state_dict):
        """Loads a state dict of this class or of the official ``adamp`` optimizer
        (or ``torch.optim.Adam``/``SGD`` for the moments); groups without
        projection options keep this optimizer's."""
        keep = [(g.get("projection"), g.get("axis")) for g in self.param_groups]
        super().load_state_dict(state_dict)
        for g, (projection, axis) in zip(self.param_groups, keep):
            g.setdefault("projection", projection)
            g.setdefault("axis", axis)
            _check_group(g)
        for st in self.state.values():
            if "step" in st and torch.is_tensor(st["step"]):
                st["step"] = int(st["step"].item())
        self._layouts = {}

    def _layout(self, index, group, params, locals_):
        key = (index, group["projection"], group.get("axis"), tuple(id(p) for p in params))
        layout = self._layouts.get(key)
        if layout is None or layout.key != tuple(tuple(q.shape) for q in locals_):
            layout = _Layout(group, params, locals_)
            self._layouts[key] = layout
        return layout

    def _factors(self, layout, group, P, G, U, D, wd_scale, fused):
        """Per projected row: ``c = p·u/(‖p‖+eps)²`` where projected (else 0), with
        ``u = U/D`` when ``D`` is given, and the decay factor ``1 − wd_scale·multiplier``;
        both float32 row vectors. ``P``, ``U``, ``D`` list the projected tensors,
        ``G`` the runtime ones' gradients."""
        stats = torch.zeros(layout.nrows, 4, dtype=torch.float32, device=layout.device)
        ns = len(layout.static)
        d_static, d_runtime = (None, None) if D is None else (D[:ns], D[ns:])
        layout.row_dots([(P[:ns], U[:ns], d_static), (P[:ns], P[:ns], None)], list(range(ns)), stats, fused)
        layout.row_dots(
            [(P[ns:], U[ns:], d_runtime), (P[ns:], P[ns:], None), (G, P[ns:], None), (G, G, None)],
            list(range(ns, len(layout.projected))),
            stats,
            fused,
        )
        _all_reduce_rows(layout, stats)
        eps = group["eps"]
        norm = stats[:, 1].sqrt()
        channel_c = stats[:, 0] / (norm + eps) ** 2
        projected = torch.ones(layout.nrows, dtype=torch.bool, device=layout.device)
        c = channel_c
        if layout.runtime:
            c, projected = self._runtime_decision(layout, group, stats, channel_c)
        multiplier = torch.where(projected, torch.tensor(float(group["wd_ratio"]), device=layout.device),
                                 torch.tensor(1.0, device=layout.device))
        decay = 1.0 - wd_scale * multiplier
        return c, decay

    def _runtime_decision(self, layout, group, stats, channel_c):
        """The reference cosine test for the runtime tensors, as tensors: channel
        view (rows along axis 0) first, then the layer view."""
        eps, delta = group["eps"], group["delta"]
        first = layout.nstatic_rows
        rt = stats[first:]
        counts = layout.runtime_rows
        # cosine_similarity: Σ (x / max(‖x‖, eps)) (y / max(‖y‖, eps)) per row.
        cos = (rt[:, 2] / (rt[:, 3].sqrt().clamp_min(eps) * rt[:, 1].sqrt().clamp_min(eps))).abs()
        max_cos = torch.segment_reduce(cos, "max", lengths=counts)
        whole = torch.segment_reduce(rt, "sum", lengths=counts, axis=0)
        for pg, ix in layout.tensor_reduce.items():
            part = whole.index_select(0, ix)
            _dist.all_reduce(part, op=_dist.ReduceOp.SUM, group=pg)
            whole.index_copy_(0, ix, part)
            m = max_cos.index_select(0, ix)
            _dist.all_reduce(m, op=_dist.ReduceOp.MAX, group=pg)
            max_cos.index_copy_(0, ix, m)
        channel_ok = max_cos < delta / layout.channel_len.sqrt()
        layer_cos = (whole[:, 2] / (whole[:, 3].sqrt().clamp_min(eps) * whole[:, 1].sqrt().clamp_min(eps))).abs()
        layer_ok = (layer_cos < delta / layout.numel.sqrt()) & ~channel_ok
        layer_c = whole[:, 0] / (whole[:, 1].sqrt() + eps) ** 2
        tensor_of_row = layout.row_tensor[first:] - len(layout.static)
        rt_c = torch.where(channel_ok[tensor_of_row], channel_c[first:],
                           torch.where(layer_ok[tensor_of_row], layer_c[tensor_of_row], torch.zeros_like(layer_c[tensor_of_row])))
        c = torch.cat([channel_c[:first], rt_c])
        projected = torch.cat([
            torch.ones(first, dtype=torch.bool, device=layout.device),
            (channel_ok | layer_ok)[tensor_of_row],
        ])
        # What the test decided, per runtime tensor (read by the golden replay).
        self.last_runtime_decision = (channel_ok, layer_ok)
        return c, projected

    @staticmethod
    def _row_views(layout, slot, vector):
        """Per projected tensor, its rows of ``vector`` shaped to broadcast with it
        (views of the layout's buffer ``slot``, which receives ``vector``)."""
        layout.factors[slot].copy_(vector)
        return layout.factor_views[slot]

    def _prepare(self, group, init_state):
        """The group's tensors that have a gradient, their local shards and state."""
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                init_state(state, p)
        return params


class AdamP(_ProjectedOptimizer):
    """AdamP (official ``adamp`` 0.3.0 semantics) with the projection chosen per
    group: ``projection`` in ``channel`` (with ``axis``), ``layer``, ``runtime``
    (default: the reference cosine test) or ``none``. State keys (``step``,
    ``exp_avg``, ``exp_avg_sq``) equal the official optimizer's."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 delta=0.1, wd_ratio=0.1, nesterov=False, projection="runtime", axis=None):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"invalid betas: {betas}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta,
                        wd_ratio=wd_ratio, nesterov=nesterov, projection=projection, axis=axis)
        super().__init__(params, defaults)

    @staticmethod
    def _init_state(state, p):
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure=None):
        """One AdamP step over every group; returns the closure's loss."""
        loss = _closure_loss(closure)
        for index, group in enumerate(self.param_groups):
            params = self._prepare(group, self._init_state)
            by_step = {}
            for p in params:
                by_step.setdefault(self.state[p]["step"], []).append(p)
            for step, bucket in by_step.items():
                self._update(index, group, bucket, step + 1)
        return loss

    def _update(self, index, group, params, step):
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        states = [self.state[p] for p in params]
        for st in states:
            st["step"] = step
        P = [_local(p) for p in params]
        G = [_local(p.grad) for p in params]
        M = [_local(st["exp_avg"]) for st in states]
        V = [_local(st["exp_avg_sq"]) for st in states]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        torch._foreach_mul_(M, beta1)
        torch._foreach_add_(M, G, alpha=1 - beta1)
        torch._foreach_mul_(V, beta2)
        torch._foreach_addcmul_(V, G, G, value=1 - beta2)
        U = torch._foreach_sqrt(V)
        torch._foreach_div_(U, math.sqrt(bias_correction2))
        torch._foreach_add_(U, eps)
        if group["nesterov"]:
            num = torch._foreach_mul(M, beta1)
            torch._foreach_add_(num, torch._foreach_mul(G, 1 - beta1))
        else:
            num = M
        D = U  # the denominator
        step_size = lr / bias_correction1
        wd_scale = lr * wd if wd > 0 else 0.0
        layout = self._layout(index, group, params, P)
        if layout.none:
            p_none = [P[i] for i in layout.none]
            if wd_scale:
                torch._foreach_mul_(p_none, 1 - wd_scale)
            torch._foreach_addcdiv_(p_none, [num[i] for i in layout.none], [D[i] for i in layout.none], value=-step_size)
        if layout.projected:
            p_proj = [P[i] for i in layout.projected]
            n_proj = [num[i] for i in layout.projected]
            d_proj = [D[i] for i in layout.projected]
            g_rt = [G[i] for i in layout.runtime]
            fused = layout.fused(p_proj, n_proj, d_proj, g_rt)
            if fused:
                # u = num / denom is never stored: the kernels read num and denom.
                c, decay = self._factors(layout, group, p_proj, g_rt, n_proj, d_proj, wd_scale, True)
                factor = (decay + step_size * c).contiguous()
                layout.row_update(p_proj, n_proj, d_proj, None, factor, step_size)
            else:
                u_proj = torch._foreach_div(n_proj, d_proj)
                c, decay = self._factors(layout, group, p_proj, g_rt, u_proj, None, wd_scale, False)
                factor = decay + step_size * c
                torch._foreach_mul_(p_proj, self._row_views(layout, 0, factor))
                torch._foreach_add_(p_proj, u_proj, alpha=-step_size)


class SGDP(_ProjectedOptimizer):
    """SGDP (official ``adamp`` 0.3.0 semantics, including the projection of the
    stored momentum buffer without nesterov) with the projection chosen per
    group as for :class:`AdamP`. State key ``momentum`` equals the official one."""

    def __init__(self, params, lr=0.1, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 eps=1e-8, delta=0.1, wd_ratio=0.1, projection="runtime", axis=None):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum: {momentum} (the decay divides by 1 - momentum)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs a momentum > 0 and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio,
                        projection=projection, axis=axis)
        super().__init__(params, defaults)

    @staticmethod
    def _init_state(state, p):
        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure=None):
        """One SGDP step over every group; returns the closure's loss."""
        loss = _closure_loss(closure)
        for index, group in enumerate(self.param_groups):
            params = self._prepare(group, self._init_state)
            if params:
                self._update(index, group, params)
        return loss

    def _update(self, index, group, params):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        P = [_local(p) for p in params]
        G = [_local(p.grad) for p in params]
        B = [_local(self.state[p]["momentum"]) for p in params]
        torch._foreach_mul_(B, momentum)
        torch._foreach_add_(B, G, alpha=1 - group["dampening"])
        # Without nesterov the update is the buffer itself, projected in place (as the reference).
        D = torch._foreach_add(G, torch._foreach_mul(B, momentum)) if group["nesterov"] else B
        wd_scale = lr * wd / (1 - momentum) if wd != 0 else 0.0
        layout = self._layout(index, group, params, P)
        if layout.none:
            p_none = [P[i] for i in layout.none]
            if wd_scale:
                torch._foreach_mul_(p_none, 1 - wd_scale)
            torch._foreach_add_(p_none, [D[i] for i in layout.none], alpha=-lr)
        if layout.projected:
            p_proj = [P[i] for i in layout.projected]
            d_proj = [D[i] for i in layout.projected]
            g_rt = [G[i] for i in layout.runtime]
            fused = layout.fused(p_proj, d_proj, g_rt)
            c, decay = self._factors(layout, group, p_proj, g_rt, d_proj, None, wd_scale, fused)
            if fused:
                layout.row_update(p_proj, d_proj, None, c.contiguous(), decay.contiguous(), lr)
            else:
                torch._foreach_addcmul_(d_proj, p_proj, self._row_views(layout, 0, c), value=-1.0)
                if wd_scale:
                    torch._foreach_mul_(p_proj, self._row_views(layout, 1, decay))
                torch._foreach_add_(p_proj, d_proj, alpha=-lr)
