#!/usr/bin/env python3
"""Training fixtures for `adamp-graph train` (fixtures/train/, fixtures/data/).

- fixtures/train/digits_cnn.onnx: a small BatchNorm CNN for the 8x8 digits
  (scripts/gen_digits.py): Conv(1->16,3,p1)-BN-ReLU-Conv(16->32,3,p1,s2)-BN-ReLU-
  Conv(32->32,3,p1)-BN-ReLU-GlobalAvgPool-Flatten-Linear(32->10). Input `x`
  [N,1,8,8] with a symbolic batch dimension, output `logits` [N,10]. Exported
  in training mode so BatchNormalization (and its running statistics) stays.
- fixtures/train/digits_mlp.onnx: Flatten-Linear(64->64)-BN1d-ReLU-Linear(64->10),
  same input and output.
- fixtures/train/rosenbrock.onnx + fixtures/data/rosenbrock.npz: the paper's
  3-D scale-invariant Rosenbrock (AdamP paper, section 3.2 / Fig. 3, Appendix B),
  see `rosenbrock()` below for what it computes and how it differs from the paper.

Initialisation is seeded: the files are the same on every run (given the
same torch version).

Run: python scripts/gen_train.py           (a venv with torch, onnx, numpy)
"""
import os

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "train")
DATA = os.path.join(ROOT, "fixtures", "data")

# The toy's constants (Appendix B): h(a, b) = (1 - a)^2 + 300 (b - a^2)^2.
ROSEN_B = 300.0
# Scale from the unit-sphere coordinates to the Rosenbrock plane; see rosenbrock().
ROSEN_C = 3.0
# Inside the square root, so that the output's gradient is finite at the minimum.
ROSEN_EPS = 1e-12


class DigitsCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class DigitsMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64, bias=False)
        self.bn1 = nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn1(self.fc1(torch.flatten(x, 1)))))


def export(model, name):
    path = os.path.join(OUT, name)
    model.train()
    args = (torch.zeros(4, 1, 8, 8),)
    torch.onnx.export(
        model,
        args,
        path,
        dynamo=False,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
        opset_version=17,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
    )
    m = onnx.load(path)
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"{name}: {len(m.graph.initializer)} initializers, ops {ops}")
    return path


def rosenbrock():
    """The 3-D scale-invariant Rosenbrock as an ONNX graph.

    Paper (Appendix B): h(psi, phi) = (1 - psi)^2 + 300 (phi - psi^2)^2 on two
    angles of the spherical coordinates of w in R^3, scaled by c = 1.5, started
    at (c psi, c phi) = (-2, 2) on the unit sphere, minimum at (1, 1); w is
    optimised in Cartesian coordinates, so f(w) depends on w / ||w|| only.

    Here the angles are replaced by the first two coordinates of the unit
    vector, u = w_1 / ||w||, v = w_2 / ||w|| (the sines of the angles), because
    the rewrite has no gradient for Asin/Acos. u^2 + v^2 <= 1, so the scale is
    c = 3 (the paper's start (-2, 2) and minimum (1, 1) must lie in the disc
    of radius c): f(w) = (1 - 3u)^2 + 300 (3v - 9u^2)^2. The start is
    w_0 = (-2/3, 2/3, 1/3) (unit norm, (3u, 3v) = (-2, 2)); the minimum f = 0
    is at (3u, 3v) = (1, 1), i.e. every w along (1/3, 1/3, sqrt(7)/3).

    w is normalised by LpNormalization(axis=1, p=2), which the analysis knows
    as a normalizer: it proves w scale-invariant (class layer). The output is
    sqrt(f + eps) + 0 * x, broadcast to x's shape [N, 1]; with labels 0, the
    MSE loss is f(w) + eps exactly (up to float32 rounding), whatever x holds.
    """
    w0 = np.array([[-2.0, 2.0, 1.0]], dtype=np.float32) / np.float32(3.0)

    def scalar(name, value):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_t", TensorProto.FLOAT, [], [value]))

    def ints(name, values):
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

    nodes = [
        helper.make_node("LpNormalization", ["w"], ["w_unit"], axis=1, p=2),
        helper.make_node("Slice", ["w_unit", "s0", "s1", "axis1"], ["u"]),
        helper.make_node("Slice", ["w_unit", "s1", "s2", "axis1"], ["v"]),
        scalar("c", ROSEN_C),
        scalar("one", 1.0),
        scalar("b", ROSEN_B),
        scalar("eps", ROSEN_EPS),
        scalar("zero", 0.0),
        helper.make_node("Mul", ["u", "c"], ["a"]),
        helper.make_node("Mul", ["v", "c"], ["bb"]),
        helper.make_node("Sub", ["one", "a"], ["t1"]),
        helper.make_node("Mul", ["t1", "t1"], ["t1_sq"]),
        helper.make_node("Mul", ["a", "a"], ["a_sq"]),
        helper.make_node("Sub", ["bb", "a_sq"], ["t2"]),
        helper.make_node("Mul", ["t2", "t2"], ["t2_sq"]),
        helper.make_node("Mul", ["t2_sq", "b"], ["t2_b"]),
        helper.make_node("Add", ["t1_sq", "t2_b"], ["f"]),
        helper.make_node("Add", ["f", "eps"], ["f_eps"]),
        helper.make_node("Sqrt", ["f_eps"], ["root"]),
        # 0 * x: the output takes x's batch shape without depending on its values.
        helper.make_node("Mul", ["x", "zero"], ["x0"]),
        helper.make_node("Add", ["root", "x0"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "scale_invariant_rosenbrock",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[numpy_helper.from_array(w0, "w"), ints("s0", [0]), ints("s1", [1]), ints("s2", [2]), ints("axis1", [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gen_train.py")
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(OUT, "rosenbrock.onnx")
    onnx.save(model, path)
    x = np.ones((64, 1), dtype=np.float32)
    labels = np.zeros((64, 1), dtype=np.float32)
    np.savez_compressed(os.path.join(DATA, "rosenbrock.npz"), x=x, labels=labels)
    check_rosenbrock(path, w0)
    return path


def check_rosenbrock(path, w0):
    """onnxruntime computes sqrt(f(w) + eps) for every row, whatever x holds."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(5, 1)).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    want = np.sqrt(rosen_f(w0) + ROSEN_EPS)
    assert y.shape == (5, 1), y.shape
    assert np.allclose(y, want, rtol=1e-5), (y, want)
    print(f"rosenbrock.onnx: w0 = {w0.tolist()}, f(w0) = {rosen_f(w0):.6f}, onnxruntime y = {y[0, 0]:.6f} = sqrt(f + eps)")


def rosen_f(w):
    """float64 reference of the toy's f(w)."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    unit = w / np.linalg.norm(w)
    a, b = ROSEN_C * unit[0], ROSEN_C * unit[1]
    return (1.0 - a) ** 2 + ROSEN_B * (b - a * a) ** 2


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    export(DigitsCnn(), "digits_cnn.onnx")
    torch.manual_seed(1)
    export(DigitsMlp(), "digits_mlp.onnx")
    rosenbrock()


if __name__ == "__main__":
    main()
