#!/usr/bin/env python3
"""Fixtures for the training-graph rewrite (tests/rewrite_ort.rs).

fixtures/rewrite/ops/<case>.onnx + .json: one small model per op family,
exported in training mode (or built with onnx.helper for ops PyTorch does not
emit), with the inputs, labels, loss and the PyTorch autograd gradient of every
parameter. float64 where onnxruntime has double kernels for every op involved.

fixtures/rewrite/train/<case>.onnx + .json: K steps of PyTorch training with
the official adamp 0.3.0 (AdamP, SGDP) or torch.optim (Adam, AdamW, SGD): per
step the batch, the loss and the parameters after the step. Static-mode cases
replace the reference's cosine test by the plan's projection (`adamp-graph
plan`), the semantics `--detect static` promises.

Run: cargo build && ADAMP_GRAPH_BIN=target/debug/adamp-graph \
     python scripts/gen_rewrite.py          (a venv with torch, onnx, adamp)
"""
import copy
import importlib.metadata
import io
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "rewrite")
BIN = os.environ.get("ADAMP_GRAPH_BIN", os.path.join(ROOT, "target", "debug", "adamp-graph"))


def arr(t):
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": a.reshape(-1).tolist()}


def export(model, args, path, opset=17, input_names=None, dynamic=(0,)):
    """Training-mode TorchScript export; returns the ONNX model. The export runs
    a forward pass that moves BatchNorm statistics, so a copy is exported."""
    m = copy.deepcopy(model)
    m.train()
    f = io.BytesIO()
    torch.onnx.export(
        m, args, f, dynamo=False, training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False, opset_version=opset,
        input_names=input_names or ["x"], output_names=["y"],
        dynamic_axes={(input_names or ["x"])[0]: {a: ("N", "d1", "H", "W")[a] for a in dynamic}},
    )
    proto = onnx.load_from_string(f.getvalue())
    # Reset the initializers to the module's (pre-export) values.
    state = {k: v for k, v in model.state_dict().items()}
    for init in proto.graph.initializer:
        if init.name in state:
            init.CopyFrom(numpy_helper.from_array(state[init.name].detach().cpu().numpy(), init.name))
    onnx.save(proto, path)
    return proto


def loss_fn(kind, y, labels):
    if kind == "cross-entropy":
        return F.cross_entropy(y, labels)
    return F.mse_loss(y, labels)


def make_labels(kind, y, gen):
    if kind == "cross-entropy":
        return torch.randint(0, y.shape[1], (y.shape[0],), generator=gen)
    return torch.randn(y.shape, generator=gen, dtype=y.dtype)


# ---------------------------------------------------------------- op cases

class Lambda(nn.Module):
    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for k, v in params.items():
            setattr(self, k, nn.Parameter(v))

    def forward(self, x):
        return self.fn(self, x)


def op_cases():
    g = torch.Generator().manual_seed(0)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    cases = []

    def add(name, model, x, loss="mse", dtype=torch.float64, opset=17, dynamic=(0,)):
        cases.append((name, model, x, loss, dtype, opset, dynamic))

    add("gemm_relu", nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)), rn(4, 5))
    add("gemm_trans_beta", Lambda(lambda s, x: torch.addmm(s.c, x, s.w.t(), beta=0.5, alpha=2.0), w=rn(3, 5), c=rn(3)), rn(4, 5))
    add("matmul_broadcast", Lambda(lambda s, x: (x @ s.w + s.b) @ s.v + (s.u @ x.transpose(1, 2)).sum(), w=rn(4, 5), b=rn(5), v=rn(5), u=rn(4)), rn(2, 3, 4))
    add("matmul_batched_param", Lambda(lambda s, x: torch.matmul(s.w, x), w=rn(2, 1, 3, 4)), rn(3, 4, 2))
    add("conv2d_variants", nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(6, 6, 3, groups=3, dilation=2, padding=2, bias=False), nn.Tanh(),
        nn.Conv2d(6, 6, (3, 2), groups=6, padding=(1, 0), stride=(1, 2)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)), rn(2, 3, 9, 8), "cross-entropy", torch.float32)
    add("conv1d_stride", nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, padding=2), nn.Sigmoid(), nn.Flatten(), nn.Linear(4 * 5, 2)), rn(3, 2, 7), "mse", torch.float32)
    add("batchnorm2d_train", nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1)), rn(3, 2, 5, 5), "mse", torch.float32)
    add("batchnorm1d_mlp", nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.LeakyReLU(0.1), nn.Linear(6, 2)), rn(5, 4))
    add("layernorm", nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 6), nn.LayerNorm([6], elementwise_affine=False), nn.Linear(6, 2)), rn(3, 4))
    add("instancenorm_groupnorm", nn.Sequential(nn.Conv2d(2, 4, 3), nn.InstanceNorm2d(4, affine=True), nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 9, 3)), rn(2, 2, 5, 5), "mse", torch.float32)
    add("l2_normalize", Lambda(lambda s, x: F.normalize(x @ s.w, dim=1) @ s.v, w=rn(4, 6), v=rn(6, 3)), rn(5, 4))
    # nn.RMSNorm does not export before opset 23; this is its math (LLaMA style).
    add("rmsnorm_primitives", Lambda(lambda s, x: ((x @ s.w) * torch.rsqrt((x @ s.w).pow(2).mean(-1, keepdim=True) + 1e-6) * s.g) @ s.v, w=rn(4, 6), g=rn(6), v=rn(6, 2)), rn(3, 4))
    add("activations", Lambda(lambda s, x: torch.cat([F.relu6(x @ s.a * 4), torch.sigmoid(x @ s.b), torch.tanh(x @ s.c), F.softmax(x @ s.d, dim=1), F.log_softmax(x @ s.e, dim=1), F.leaky_relu(x @ s.k, 0.2)], 1), a=rn(3, 4), b=rn(3, 4), c=rn(3, 4), d=rn(3, 4), e=rn(3, 4), k=rn(3, 4)), rn(5, 3))
    add("activations_f32", Lambda(lambda s, x: torch.cat([F.gelu(x @ s.a), F.hardswish(3 * x @ s.b), F.hardsigmoid(3 * x @ s.c), F.gelu(x @ s.d, approximate="tanh")], 1), a=rn(3, 4), b=rn(3, 4), c=rn(3, 4), d=rn(3, 4)), rn(5, 3), "mse", torch.float32)
    add("pooling", Lambda(lambda s, x: torch.cat([
        F.max_pool2d(F.conv2d(x, s.w), 3, 2, 1).flatten(1),
        F.avg_pool2d(F.conv2d(x, s.v), 3, 2, 1, count_include_pad=False).flatten(1),
        F.avg_pool2d(F.conv2d(x, s.u), 2, 2, 0).flatten(1),
        F.avg_pool2d(F.conv2d(x, s.t), 3, 1, 1, count_include_pad=True).flatten(1),
        F.adaptive_avg_pool2d(F.conv2d(x, s.w), 1).flatten(1)], 1), w=rn(2, 2, 1, 1), v=rn(2, 2, 1, 1), u=rn(2, 2, 1, 1), t=rn(2, 2, 1, 1)), rn(2, 2, 6, 6), "mse", torch.float32)
    add("elementwise_broadcast", Lambda(lambda s, x: ((x * s.a + s.b) / (s.c.abs() + 1) - s.d) ** 2 + torch.sqrt(x * x + s.e ** 2) + torch.exp(x * s.a) - torch.log(s.c * s.c + 1) + torch.maximum(x, s.b) + torch.where(x > 0, s.a * x, s.d) + 1.0 / (s.e ** 2 + 1), a=rn(1, 3, 1), b=rn(3, 1), c=rn(4), d=rn(1), e=rn(2, 1, 4)), rn(2, 3, 4))
    add("layout", Lambda(lambda s, x: torch.cat([
        (x @ s.w).reshape(2, -1).flatten(0).unsqueeze(0).expand(3, -1).reshape(3, 2, -1).permute(2, 0, 1).reshape(-1, 6)[1:9:2],
        torch.stack((x @ s.w).chunk(2, dim=1), 0).sum(0).squeeze(-1).reshape(-1, 6)[:4],
        F.pad((x @ s.w).reshape(4, 6), (1, 2), value=0.5)[:, 2:8],
        F.pad((x @ s.w).reshape(1, 4, 6), (2, 1), mode="reflect").reshape(4, 9)[:, 1:7]], 0), w=rn(3, 6)), rn(4, 3))
    add("reductions", Lambda(lambda s, x: torch.stack([(x * s.a).mean(dim=(1, 2)), (x * s.b).sum(dim=1).mean(1), torch.linalg.vector_norm(x * s.c, dim=2).sum(1), (x * s.a).pow(3).sum((1, 2)), torch.sqrt((x * s.b) ** 2 + 1).mean((1, 2))], 1), a=rn(3, 4), b=rn(3, 4), c=rn(3, 4)), rn(2, 3, 4))
    add("conv_transpose", nn.Sequential(nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2), nn.ReLU(),
                                        nn.ConvTranspose2d(4, 3, (2, 3), dilation=(2, 1)), nn.Flatten(), nn.Linear(3 * 12 * 10, 3)), rn(2, 2, 5, 4), "mse", torch.float32)
    add("gather_axes", Lambda(lambda s, x: torch.cat([(x @ s.w)[:, 0], (x @ s.w)[:, -1], torch.index_select(x @ s.w, 2, torch.tensor([2, 0, 2]))[:, 1], (x @ s.w).transpose(0, 1)[1]], 1), w=rn(4, 5)), rn(3, 2, 4))
    add("opset11_layout", Lambda(lambda s, x: torch.cat([t.squeeze(1) for t in (x @ s.w).unsqueeze(1).chunk(2, dim=2)], 1).sum(1, keepdim=True) * F.softmax(x @ s.w, dim=1)[:, :1], w=rn(4, 6)), rn(3, 4), "mse", torch.float64, 11)
    add("activations_more", Lambda(lambda s, x: torch.cat([F.elu(x @ s.a, 0.7), F.selu(x @ s.b), F.celu(x @ s.c, 1.3), F.softplus(x @ s.d), F.softsign(x @ s.e), F.mish(x @ s.k), torch.sin(x @ s.a) * torch.cos(x @ s.b)], 1),
                                     a=rn(3, 4), b=rn(3, 4), c=rn(3, 4), d=rn(3, 4), e=rn(3, 4), k=rn(3, 4)), rn(5, 3), "mse", torch.float32)
    add("reductions_more", Lambda(lambda s, x: torch.cat([torch.amax(x @ s.a, dim=1), torch.amin(x @ s.b, dim=(1, 2), keepdim=True).flatten(1), torch.logsumexp(x @ s.c, dim=2).sum(1, keepdim=True),
                                                          torch.cumsum(x @ s.a, dim=1).flatten(1), (x @ s.b).repeat(1, 2, 1).flatten(1), torch.tril(x @ s.c).flatten(1), torch.triu(x @ s.a, 1).flatten(1)], 1),
                                    a=rn(4, 4), b=rn(4, 4), c=rn(4, 4)), rn(2, 3, 4), "mse", torch.float32)
    add("global_max_pool", nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(3, 2)), rn(2, 2, 5, 5), "mse", torch.float32)
    add("upsample_shuffle", nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.Upsample(scale_factor=2, mode="nearest"), nn.PixelShuffle(2), nn.Conv2d(2, 4, 2, stride=2),
                                          nn.PixelUnshuffle(2), nn.Flatten(), nn.Linear(16 * 6 * 6, 2)), rn(2, 2, 6, 6), "mse", torch.float32)
    # Height and width symbolic: the Conv and AveragePool gradients read them at run time.
    add("conv_dynamic_hw", nn.Sequential(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2, dilation=2),
                                         nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1), nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)),
        rn(2, 3, 12, 10), "cross-entropy", torch.float32, dynamic=(0, 2, 3))
    add("einsum", Lambda(lambda s, x: torch.cat([torch.einsum("bij,jk->bik", x, s.w).flatten(1), torch.einsum("bij->bj", x * s.u).flatten(1),
                                                  torch.einsum("bi,bj->bij", x.sum(2), x @ s.v).flatten(1), torch.einsum("ij,kj->k", s.w, s.a).expand(2, 5),
                                                  torch.einsum("bij,j->bi", x, s.v).flatten(1)], 1),
                         w=rn(4, 5), u=rn(3, 4), v=rn(4), a=rn(5, 5)), rn(2, 3, 4))
    # An unused Split output (zero gradient), a reversing Slice (flip), MaxPool1d.
    add("split_flip_pool1d", Lambda(lambda s, x: torch.cat([torch.split(x @ s.w, [2, 3, 1], dim=2)[1].flatten(1), torch.flip(x @ s.w, dims=[2]).flatten(1),
                                                           F.max_pool1d(x @ s.w, 2, 2).flatten(1)], 1), w=rn(4, 6)), rn(2, 3, 4))
    add("embedding_gather", None, None)  # filled below (int64 input)
    return cases


class EmbedNet(nn.Module):
    def __init__(self, vocab=12, dim=6, classes=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, idx):
        return self.fc(F.normalize(self.emb(idx), dim=1))


def helper_cases():
    """Ops PyTorch's exporter does not emit; built with onnx.helper, with a
    PyTorch function of the same math for the reference gradients."""
    g = torch.Generator().manual_seed(1)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    cases = []

    def case(name, opset, nodes, params, x, torch_fn, dtype, loss="mse", consts=()):
        cases.append((name, opset, nodes, params, x, torch_fn, dtype, loss, list(consts)))

    case("native_lp_norm", 17, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("LpNormalization", ["h"], ["n"], axis=1, p=2), helper.make_node("MatMul", ["n", "v"], ["y"])],
         {"w": rn(4, 5), "v": rn(5, 2)}, rn(3, 4), lambda p, x: F.normalize(x @ p["w"], dim=1, eps=0) @ p["v"], torch.float64)
    case("native_group_norm_op21", 21, [helper.make_node("Conv", ["x", "w"], ["h"]), helper.make_node("GroupNormalization", ["h", "s", "b"], ["y"], num_groups=2, epsilon=1e-5)],
         {"w": rn(4, 2, 1, 1), "s": rn(4), "b": rn(4)}, rn(2, 2, 3, 3), lambda p, x: F.group_norm(F.conv2d(x, p["w"]), 2, p["s"], p["b"], 1e-5), torch.float32)
    case("native_group_norm_op18", 18, [helper.make_node("Conv", ["x", "w"], ["h"]), helper.make_node("GroupNormalization", ["h", "s", "b"], ["y"], num_groups=2, epsilon=1e-5)],
         {"w": rn(4, 2, 1, 1), "s": rn(2), "b": rn(2)}, rn(2, 2, 3, 3),
         lambda p, x: F.group_norm(F.conv2d(x, p["w"]), 2, p["s"].repeat_interleave(2), p["b"].repeat_interleave(2), 1e-5), torch.float32)
    case("native_rms_norm_op23", 23, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("RMSNormalization", ["h", "s"], ["y"], axis=-1, epsilon=1e-6)],
         {"w": rn(4, 5), "s": rn(5)}, rn(3, 4), lambda p, x: F.rms_norm(x @ p["w"], (5,), p["s"], 1e-6), torch.float32)
    case("native_gelu_op20", 20, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Gelu", ["h"], ["a"]), helper.make_node("Gelu", ["h"], ["b"], approximate="tanh"), helper.make_node("Add", ["a", "b"], ["y"])],
         {"w": rn(4, 5)}, rn(3, 4), lambda p, x: F.gelu(x @ p["w"]) + F.gelu(x @ p["w"], approximate="tanh"), torch.float32)
    case("native_layer_norm_axis1", 17, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("LayerNormalization", ["h", "s", "b"], ["y"], axis=1, epsilon=1e-5)],
         {"w": rn(4, 5), "s": rn(3, 5), "b": rn(3, 5)}, rn(2, 3, 4), lambda p, x: F.layer_norm(x @ p["w"], (3, 5), p["s"], p["b"], 1e-5), torch.float64)
    # Opset 11 Softmax normalizes the input flattened to 2-D at its axis.
    case("native_softmax_op11", 11, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=1)],
         {"w": rn(4, 5)}, rn(2, 3, 4), lambda p, x: F.softmax((x @ p["w"]).reshape(x.shape[0], -1), dim=1).reshape(x.shape[0], 3, 5), torch.float64)
    def misc(p, x):
        h = x @ p["w"]
        c = torch.minimum(F.prelu(h, p["slope"]), -h)
        s1, s2 = h[:, :2], h[:, 2:]
        e = s1 + (s2 ** 2).sum(1, keepdim=True) + s1
        g = torch.gather(c, 1, torch.tensor([[0, 2], [5, 1], [3, 3]]))
        return e + g + h.abs().sum(1, keepdim=True)
    I = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.int64), name)
    case("misc_elementwise", 17, [
        helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("PRelu", ["h", "slope"], ["a"]), helper.make_node("Neg", ["h"], ["b"]),
        helper.make_node("Min", ["a", "b"], ["c"]), helper.make_node("Split", ["h", "split"], ["s1", "s2"], axis=1),
        helper.make_node("ReduceSumSquare", ["s2"], ["q"], axes=[1], keepdims=1), helper.make_node("Sum", ["s1", "q", "s1"], ["e"]),
        helper.make_node("Identity", ["e"], ["ei"]), helper.make_node("GatherElements", ["c", "idx"], ["g"], axis=1),
        helper.make_node("ReduceL1", ["h"], ["l1"], axes=[1], keepdims=1), helper.make_node("Add", ["ei", "g"], ["eg"]), helper.make_node("Add", ["eg", "l1"], ["y"])],
        {"w": rn(4, 6), "slope": rn(6)}, rn(3, 4), misc, torch.float32, consts=[I("split", [2, 4]), I("idx", [[0, 2], [5, 1], [3, 3]])])
    case("native_misc_op18", 18, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Mish", ["h"], ["m"]), helper.make_node("ThresholdedRelu", ["h"], ["t"], alpha=0.3),
                                  helper.make_node("Softsign", ["h"], ["ss"]), helper.make_node("Mean", ["m", "t", "ss"], ["mean"]),
                                  helper.make_node("CumSum", ["mean", "ax1"], ["cs"], exclusive=1, reverse=1), helper.make_node("ReduceMax", ["h", "ax1"], ["mx"], keepdims=0),
                                  helper.make_node("Unsqueeze", ["mx", "ax1"], ["mxu"]), helper.make_node("Add", ["cs", "mxu"], ["y"])],
         {"w": rn(4, 5)}, rn(3, 4),
         lambda p, x: (lambda h: (lambda mean: mean.flip(1).cumsum(1).flip(1) - mean + torch.amax(h, 1, keepdim=True))((F.mish(h) + h * (h > 0.3) + F.softsign(h)) / 3))(x @ p["w"]),
         torch.float32, consts=[I("ax1", [1])])
    case("native_global_max_pool", 17, [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("GlobalMaxPool", ["c"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
                                        helper.make_node("MatMul", ["f", "v"], ["y"])],
         {"w": rn(3, 2, 3, 3), "v": rn(3, 2)}, rn(2, 2, 5, 5), lambda p, x: F.adaptive_max_pool2d(F.conv2d(x, p["w"]), 1).flatten(1) @ p["v"], torch.float32)
    def d2s_dcr(t, bs=2):
        b, c, h, w = t.shape
        return t.reshape(b, bs, bs, c // bs ** 2, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // bs ** 2, h * bs, w * bs)

    def s2d(t, bs=2):
        b, c, h, w = t.shape
        return t.reshape(b, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4).reshape(b, c * bs * bs, h // bs, w // bs)
    case("native_depth_space", 17, [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=2, mode="DCR"),
                                    helper.make_node("Mul", ["d", "v"], ["e"]), helper.make_node("SpaceToDepth", ["e"], ["s"], blocksize=2), helper.make_node("Mul", ["s", "u"], ["y"])],
         {"w": rn(8, 2, 1, 1), "v": rn(1, 2, 6, 6), "u": rn(1, 8, 3, 3)}, rn(2, 2, 3, 3),
         lambda p, x: s2d(d2s_dcr(F.conv2d(x, p["w"])) * p["v"]) * p["u"], torch.float32)
    # Training-mode Dropout with a seed: onnxruntime draws the same mask in
    # every new session, so finite differences (a session per evaluation)
    # check the gradient through the mask. PyTorch cannot share the mask.
    case("dropout_seeded", 17, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Dropout", ["h", "ratio", "train"], ["d"], seed=7),
                                helper.make_node("MatMul", ["d", "v"], ["y"])],
         {"w": rn(4, 6), "v": rn(6, 2)}, rn(5, 4), None, torch.float32,
         consts=[numpy_helper.from_array(np.array(0.4, dtype=np.float32), "ratio"), numpy_helper.from_array(np.array(True), "train")])
    # Einsum hides the shape from static inference: broadcasting gradients
    # must then find their reduction axes from the runtime shapes.
    case("dynamic_broadcast", 17, [helper.make_node("Einsum", ["x"], ["h"], equation="ij->ij"), helper.make_node("Mul", ["h", "w"], ["m"]),
                                   helper.make_node("Add", ["m", "b"], ["a"]), helper.make_node("Mul", ["a", "c"], ["y"])],
         {"w": rn(1, 3), "b": rn(3), "c": rn(1)}, rn(4, 3), lambda p, x: (x * p["w"] + p["b"]) * p["c"], torch.float32)
    return cases


def record_op(name, onnx_path, params, x, labels, loss_kind, loss, dtype, extra=None):
    grads = {k: arr(v.grad) for k, v in params.items()}
    doc = {
        "name": name,
        "loss": loss_kind,
        "dtype": "float64" if dtype == torch.float64 else "float32",
        "inputs": {"x": arr(x)},
        "labels": arr(labels),
        "torch_loss": loss.item(),
        "grads": grads,
    }
    if extra:
        doc.update(extra)
    with open(onnx_path[:-5] + ".json", "w") as f:
        json.dump(doc, f)


def torch_case(d, gen, name, model, x, loss_kind, dtype, opset, dynamic):
    """Exports one PyTorch case and records its loss and gradients."""
    model = model.to(dtype)
    x = x.to(dtype)
    path = os.path.join(d, name + ".onnx")
    proto = export(model, (x,), path, opset=opset, dynamic=dynamic)
    inits = {i.name for i in proto.graph.initializer}
    params = {k: p for k, p in model.named_parameters()}
    missing = [k for k in params if k not in inits]
    assert not missing, f"{name}: parameters renamed by the exporter: {missing}"
    model.train()
    model.zero_grad()
    y = model(x)
    labels = make_labels(loss_kind, y, gen)
    loss = loss_fn(loss_kind, y, labels)
    loss.backward()
    record_op(name, path, params, x, labels, loss_kind, loss, dtype)
    print(name, sorted({n.op_type for n in proto.graph.node}))


def gen_extra_ops():
    """Cases added later, each with its own generators, so that writing them
    leaves every earlier case's data unchanged (`gen_rewrite.py ops_extra`)."""
    d = os.path.join(OUT, "ops")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    # ceil_mode with a partial last window, as timm's DownsampleAvg (NFNet, ResNet-D) exports it.
    torch_case(d, torch.Generator().manual_seed(12), "avg_pool_ceil_mode", Lambda(lambda s, x: torch.cat([
        F.avg_pool2d(F.conv2d(x, s.v), 2, 2, 0, ceil_mode=True, count_include_pad=False).flatten(1),
        F.avg_pool2d(F.conv2d(x, s.u), 3, 3, 0, ceil_mode=True, count_include_pad=True).flatten(1),
        F.avg_pool2d(F.conv2d(x, s.t), (3, 2), (2, 2), (1, 0), ceil_mode=True, count_include_pad=False).flatten(1)], 1),
        v=rn(2, 2, 1, 1), u=rn(2, 2, 1, 1), t=rn(2, 2, 1, 1)), rn(2, 2, 5, 5), "mse", torch.float32, 17, (0,))


def gen_ops():
    d = os.path.join(OUT, "ops")
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)  # module initializations
    gen = torch.Generator().manual_seed(7)
    for name, model, x, loss_kind, dtype, opset, dynamic in op_cases():
        if model is None:
            continue
        torch_case(d, gen, name, model, x, loss_kind, dtype, opset, dynamic)
    # Embedding (int64 input), ℓ2-normalized.
    torch.manual_seed(3)
    model = EmbedNet().double()
    idx = torch.tensor([3, 0, 11, 3, 7])
    path = os.path.join(d, "embedding_gather.onnx")
    proto = export(model, (idx,), path)
    model.zero_grad()
    y = model(idx)
    labels = make_labels("cross-entropy", y, gen)
    loss = F.cross_entropy(y, labels)
    loss.backward()
    record_op("embedding_gather", path, dict(model.named_parameters()), idx, labels, "cross-entropy", loss, torch.float64)
    print("embedding_gather", sorted({n.op_type for n in proto.graph.node}))
    for name, opset, nodes, params, x, fn, dtype, loss_kind, consts in helper_cases():
        ty = TensorProto.DOUBLE if dtype == torch.float64 else TensorProto.FLOAT
        np_dt = np.float64 if dtype == torch.float64 else np.float32
        inits = [numpy_helper.from_array(v.numpy().astype(np_dt), k) for k, v in params.items()] + consts
        if fn is None:
            # No PyTorch reference: the case is checked by finite differences alone.
            m = helper.make_model(helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", ty, ["N"] + list(x.shape[1:]))],
                                                    [helper.make_tensor_value_info("y", ty, [x.shape[0], 2])], inits),
                                  opset_imports=[helper.make_opsetid("", opset)])
            m.ir_version = 8
            onnx.checker.check_model(m, full_check=True)
            path = os.path.join(d, name + ".onnx")
            onnx.save(m, path)
            labels = torch.randn(x.shape[0], 2, generator=gen, dtype=dtype)
            doc = {"name": name, "loss": loss_kind, "dtype": "float32" if dtype == torch.float32 else "float64",
                   "inputs": {"x": arr(x.to(dtype))}, "labels": arr(labels), "torch_loss": None, "grads": None, "fresh_sessions": True}
            with open(path[:-5] + ".json", "w") as f:
                json.dump(doc, f)
            print(name, opset, "(finite differences only)")
            continue
        y_shape = list(fn(params, x).shape)
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", ty, ["N"] + list(x.shape[1:]))],
                                  [helper.make_tensor_value_info("y", ty, ["N"] + y_shape[1:])], inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 11 if opset >= 23 else (10 if opset >= 21 else (8 if opset >= 17 else 6))
        try:
            onnx.checker.check_model(m, full_check=True)
        except onnx.checker.ValidationError as e:
            # GroupNormalization-18 is marked deprecated; the rewrite expands it anyway.
            print(f"{name}: checker: {str(e).splitlines()[0]}")
        path = os.path.join(d, name + ".onnx")
        onnx.save(m, path)
        tp = {k: nn.Parameter(v.to(dtype)) for k, v in params.items()}
        xx = x.to(dtype)
        y = fn(tp, xx)
        labels = make_labels(loss_kind, y, gen)
        loss = loss_fn(loss_kind, y, labels)
        loss.backward()
        record_op(name, path, tp, xx, labels, loss_kind, loss, dtype)
        print(name, opset)


# ------------------------------------------------------------- training cases

class CnnBn(nn.Module):
    def __init__(self):
        super().__init__()
        # No bias before BatchNorm: its true gradient is 0, and Adam turns float
        # noise there into ±lr steps whose sign no two implementations share.
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MlpLn(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(6, 16)
        self.n1 = nn.LayerNorm(16)
        self.l2 = nn.Linear(16, 16)
        self.n2 = nn.LayerNorm(16)
        self.l3 = nn.Linear(16, 3)

    def forward(self, x):
        return self.l3(F.gelu(self.n2(self.l2(F.relu(self.n1(self.l1(x)))))))


class MlpCumsum(nn.Module):
    """The analysis has no rule for CumSum: `l1.weight` is `unknown`, so
    `--detect auto` runs the cosine test on it, as the reference does. It is
    layer-wise invariant (an RMS normalization follows), so the test's layer
    view projects it. (A LayerNorm would also remove the uniform shift that
    row 0 adds to every cumulative sum, leaving that row a zero gradient that
    Adam turns into noise-signed ±lr steps.)"""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(6, 16, bias=False)
        self.g1 = nn.Parameter(torch.ones(16))
        self.l2 = nn.Linear(16, 3)

    def forward(self, x):
        h = torch.cumsum(self.l1(x), dim=1)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * self.g1
        return self.l2(F.relu(h))


class MatmulBn(nn.Module):
    """A raw `[in, out]` weight before BatchNorm1d: channel-wise invariant along
    axis 1, which the static plan projects and the reference's axis-0 test
    cannot see."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(6, 16) / 6 ** 0.5)
        self.b1 = nn.BatchNorm1d(16)
        self.l2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.l2(F.relu(self.b1(x @ self.w1)))


def plan_of(onnx_path):
    out = subprocess.run([BIN, "plan", onnx_path, "--format", "json"], check=True, capture_output=True, text=True).stdout
    return {t["name"]: t["projection"] for t in json.loads(out)["tensors"]}


def static_projection(plan_by_param, auto):
    """AdamP/SGDP `_projection` replaced by the plan's projection; undecided
    tensors get the reference's cosine test under `auto`, none under `static`."""
    def _projection(self, p, grad, perturb, delta, wd_ratio, eps):
        proj = plan_by_param[p]
        if proj["kind"] == "runtime" and auto:
            return type(self)._orig_projection(self, p, grad, perturb, delta, wd_ratio, eps)
        if proj["kind"] in ("none", "runtime"):
            return perturb, 1
        dims = tuple(range(p.dim())) if proj["kind"] == "layer" else tuple(k for k in range(p.dim()) if k != proj["axis"])
        norm = torch.linalg.vector_norm(p.data, dim=dims, keepdim=True) if dims else p.data.abs()
        p_n = p.data / norm.add(eps)
        perturb -= p_n * (p_n * perturb).sum(dim=dims, keepdim=True)
        return perturb, wd_ratio
    return _projection


def make_optimizer(kind, params, hp):
    import adamp
    if kind == "adamp":
        return adamp.AdamP(params, lr=hp["lr"], betas=tuple(hp.get("betas", (0.9, 0.999))), weight_decay=hp.get("weight_decay", 0), nesterov=hp.get("nesterov", False), delta=hp.get("delta", 0.1), wd_ratio=hp.get("wd_ratio", 0.1))
    if kind == "sgdp":
        return adamp.SGDP(params, lr=hp["lr"], momentum=hp.get("momentum", 0), dampening=hp.get("dampening", 0), weight_decay=hp.get("weight_decay", 0), nesterov=hp.get("nesterov", False), delta=hp.get("delta", 0.1), wd_ratio=hp.get("wd_ratio", 0.1))
    if kind == "adam":
        return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0))
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.01))
    return torch.optim.SGD(params, lr=hp["lr"], momentum=hp.get("momentum", 0), dampening=hp.get("dampening", 0), weight_decay=hp.get("weight_decay", 0), nesterov=hp.get("nesterov", False))


def gen_train(K=5):
    import adamp
    d = os.path.join(OUT, "train")
    os.makedirs(d, exist_ok=True)
    models = {
        "cnn_bn": (CnnBn, lambda g: torch.randn(4, 3, 8, 8, generator=g), "cross-entropy"),
        "mlp_ln": (MlpLn, lambda g: torch.randn(6, 6, generator=g), "mse"),
        "embed_l2": (EmbedNet, lambda g: torch.randint(0, 12, (6,), generator=g), "cross-entropy"),
        "mlp_cumsum": (MlpCumsum, lambda g: torch.randn(6, 6, generator=g), "mse"),
        "matmul_bn": (MatmulBn, lambda g: torch.randn(8, 6, generator=g), "cross-entropy"),
    }
    configs = [
        ("cnn_bn", "adamp", "runtime", {"lr": 0.01, "weight_decay": 0.01}),
        ("cnn_bn", "adamp", "static", {"lr": 0.01, "weight_decay": 0.01}),
        ("cnn_bn", "adamp", "auto", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.01, "wd_ratio": 0.5}),
        ("cnn_bn", "sgdp", "runtime", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
        ("cnn_bn", "sgdp", "static", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
        ("cnn_bn", "adam", "static", {"lr": 0.01, "weight_decay": 1e-3}),
        ("cnn_bn", "sgd", "static", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}),
        ("mlp_ln", "adamp", "runtime", {"lr": 0.01, "weight_decay": 0.01, "nesterov": True}),
        ("mlp_ln", "sgdp", "runtime", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}),
        ("mlp_ln", "adamw", "static", {"lr": 0.01, "weight_decay": 0.05}),
        ("mlp_ln", "sgd", "static", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
        ("embed_l2", "adamp", "runtime", {"lr": 0.05}),
        ("embed_l2", "adamp", "static", {"lr": 0.05, "weight_decay": 0.1}),
        ("embed_l2", "sgdp", "auto", {"lr": 0.5, "momentum": 0.9, "nesterov": True, "delta": 0.2}),
        ("embed_l2", "sgdp", "static", {"lr": 0.5, "momentum": 0.5, "weight_decay": 0.01}),
        ("mlp_cumsum", "adamp", "auto", {"lr": 0.01, "weight_decay": 0.01}),
        ("mlp_cumsum", "sgdp", "auto", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}),
        ("matmul_bn", "adamp", "static", {"lr": 0.01, "weight_decay": 0.01}),
        ("matmul_bn", "sgdp", "static", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    ]
    exported = {}
    for mname, opt, detect, hp in configs:
        ctor, batch, loss_kind = models[mname]
        torch.manual_seed(11)
        model = ctor()
        g = torch.Generator().manual_seed(5)
        path = os.path.join(d, mname + ".onnx")
        if mname not in exported:
            export(model, (batch(torch.Generator().manual_seed(99)),), path)
            exported[mname] = plan_of(path)
        plan = exported[mname]
        params = dict(model.named_parameters())
        initial = {k: arr(v) for k, v in model.state_dict().items()}
        optim = make_optimizer(opt, model.parameters(), hp)
        if opt in ("adamp", "sgdp"):
            cls = type(optim)
            if not hasattr(cls, "_orig_projection"):
                cls._orig_projection = cls._projection
            if detect in ("static", "auto"):
                for k, p in params.items():
                    if p.dim() < 2:
                        assert plan[k]["kind"] in ("none", "runtime"), f"{mname}: 1-D {k} is projected by the plan"
                by_param = {p: plan[k] for k, p in params.items()}
                cls._projection = static_projection(by_param, detect == "auto")
            else:
                cls._projection = cls._orig_projection
        steps = []
        model.train()
        for t in range(K):
            x = batch(g)
            optim.zero_grad()
            y = model(x)
            labels = make_labels(loss_kind, y, g)
            loss = loss_fn(loss_kind, y, labels)
            loss.backward()
            optim.step()
            steps.append({
                "x": arr(x), "labels": arr(labels), "loss": loss.item(),
                "params": {k: arr(v) for k, v in params.items()},
                "buffers": {k: arr(v) for k, v in model.state_dict().items() if k.endswith("running_mean")},
            })
        if opt in ("adamp", "sgdp"):
            type(optim)._projection = type(optim)._orig_projection
        case = f"{mname}_{opt}_{detect}"
        doc = {"name": case, "model": mname + ".onnx", "loss": loss_kind, "optimizer": opt, "detect": detect,
               "hyperparameters": hp, "initial": initial, "steps": steps,
               "reference": ("adamp " + importlib.metadata.version("adamp") if opt in ("adamp", "sgdp") else "torch.optim") + ", torch " + torch.__version__}
        with open(os.path.join(d, case + ".json"), "w") as f:
            json.dump(doc, f)
        print(case, [round(s["loss"], 4) for s in steps])


if __name__ == "__main__":
    what = sys.argv[1:] or ["ops", "train"]
    if "ops" in what:
        gen_ops()
    if "ops" in what or "ops_extra" in what:
        gen_extra_ops()
    if "train" in what:
        gen_train()
