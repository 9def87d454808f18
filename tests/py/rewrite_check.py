#!/usr/bin/env python3
"""Runs a step graph written by `adamp-graph rewrite` in onnxruntime for the
Rust tests (tests/rewrite_ort.rs), and prints one JSON object of raw numbers;
the Rust side applies the tolerances.

  rewrite_check.py check STEP.onnx
      onnx.checker with full_check; prints {"ok": true}.
  rewrite_check.py grads CASE.json STEP.onnx
      The check above, then one run with the case's batch: the loss and every `<p>.grad` against the
      recorded PyTorch values, and central finite differences of the loss for a
      few elements of every parameter.
  rewrite_check.py smoke MODEL.onnx STEP.onnx
      The check above, then two steps on random data: every output finite.
  rewrite_check.py train CASE.json STEP.onnx
      The check above, then K steps, feeding each `<name>.new` back as `<name>`; per step the loss and
      the parameters against the recorded PyTorch run.
  rewrite_check.py optim TRACE.json UPDATE.onnx
      The check above, then the trace's gradients through an update graph
      (`rewrite::update_graph`, one tensor named "p"); per step the parameter
      and the state, for the Rust side to compare with the trace.

Needs numpy, onnx and onnxruntime (scripts/test.sh installs them in a venv).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def load_arr(d):
    return np.asarray(d["data"], dtype=d["dtype"]).reshape(d["shape"])


def quiet():
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return so


def session(path):
    return ort.InferenceSession(path, quiet(), providers=["CPUExecutionProvider"])


def initializers(path):
    m = onnx.load(path)
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}, m


def check(*paths):
    for path in paths:
        try:
            onnx.checker.check_model(onnx.load(path), full_check=True)
        except Exception as e:
            raise SystemExit(f"{path}: {e}")
    return {"ok": True}


def open_case(case_path, step_path):
    """The full check, then the case, a session, the initializers, the model
    and the output names."""
    check(step_path)
    s = session(step_path)
    inits, m = initializers(step_path)
    return json.load(open(case_path)), s, inits, m, [o.name for o in s.get_outputs()]


def grads(case_path, step_path):
    case, s, inits, m, out_names = open_case(case_path, step_path)
    params = [o[:-5] for o in out_names if o.endswith(".grad")]
    feeds = {k: load_arr(v) for k, v in case["inputs"].items()}
    feeds["labels"] = load_arr(case["labels"])
    feeds["step"] = np.array(1, dtype=np.int64)
    for p in params:
        feeds[p] = inits[p]
    res = dict(zip(out_names, s.run(None, feeds)))
    report = {"loss": float(res["loss"]), "torch_loss": case["torch_loss"], "params": {}}
    f64 = case["dtype"] == "float64"

    # The `loss` output is float32 by contract; differences of a float64
    # model's loss read the value before that cast.
    fd_session, fd_output = s, "loss"
    if f64:
        src = next(n for n in m.graph.node if "loss" in n.output)
        fd_output = src.input[0]
        m.graph.output.append(onnx.helper.make_tensor_value_info(fd_output, onnx.TensorProto.DOUBLE, []))
        fd_session = ort.InferenceSession(m.SerializeToString(), quiet(), providers=["CPUExecutionProvider"])

    fresh = case.get("fresh_sessions", False)
    fd_bytes = m.SerializeToString() if f64 else open(step_path, "rb").read()

    def loss_at(p, flat_index, delta):
        f = dict(feeds)
        v = inits[p].copy().reshape(-1)
        v[flat_index] += delta
        f[p] = v.reshape(inits[p].shape)
        # A seeded random op draws the same values only in the first run of a session.
        sess = ort.InferenceSession(fd_bytes, quiet(), providers=["CPUExecutionProvider"]) if fresh else fd_session
        return float(sess.run([fd_output], f)[0])

    rng = np.random.default_rng(0)
    for p in params:
        g = res[p + ".grad"]
        if case["grads"] is None:
            entry = {"max_abs_err": None, "max_abs_ref": float(np.max(np.abs(g))) if g.size else 0.0, "fd": []}
        else:
            ref = load_arr(case["grads"][p])
            entry = {
                "max_abs_err": float(np.max(np.abs(g - ref))) if g.size else 0.0,
                "max_abs_ref": float(np.max(np.abs(ref))) if ref.size else 0.0,
                "fd": [],
            }
        n = g.size
        for i in rng.choice(n, size=min(n, 5), replace=False):
            x = float(inits[p].reshape(-1)[i])
            h = (1e-6 if f64 else 1e-3) * max(1.0, abs(x))
            fd = (loss_at(p, i, h) - loss_at(p, i, -h)) / (2 * h)
            entry["fd"].append([float(g.reshape(-1)[i]), fd])
        report["params"][p] = entry
    return report


def train(case_path, step_path):
    case, s, inits, m, out_names = open_case(case_path, step_path)
    in_names = [i.name for i in s.get_inputs()]
    carried = [o[:-4] for o in out_names if o.endswith(".new")]
    state = {k: inits[k] for k in carried}
    model_input = [n for n in in_names if n not in inits and n not in ("labels", "step", "lr")]
    report = {"steps": []}
    for t, st in enumerate(case["steps"]):
        feeds = dict(state)
        feeds[model_input[0]] = load_arr(st["x"])
        feeds["labels"] = load_arr(st["labels"])
        feeds["step"] = np.array(t + 1, dtype=np.int64)
        res = dict(zip(out_names, s.run(None, feeds)))
        state = {k: res[k + ".new"] for k in carried}
        entry = {"loss": float(res["loss"]), "torch_loss": st["loss"], "params": {}, "buffers": {}}
        for k, v in st["params"].items():
            ref = load_arr(v)
            entry["params"][k] = [float(np.max(np.abs(state[k] - ref))), float(np.max(np.abs(ref)))]
        for k, v in st.get("buffers", {}).items():
            ref = load_arr(v)
            entry["buffers"][k] = [float(np.max(np.abs(state[k] - ref))), float(np.max(np.abs(ref)))]
        report["steps"].append(entry)
    return report


def smoke(model_path, step_path, steps=2):
    """Two steps on random data: every output finite. The zoo stores shapes,
    not values, so every all-zero float tensor but the optimizer state gets
    values first: He-scaled normals for weights of 2+ dims, U(0.5, 1.5) for
    vectors (scales, biases, running statistics)."""
    check(step_path)
    rng = np.random.default_rng(0)
    m = onnx.load(step_path)
    state_suffixes = (".exp_avg", ".exp_avg_sq", ".momentum")
    for t in m.graph.initializer:
        v = numpy_helper.to_array(t)
        if t.name.endswith(state_suffixes) or v.dtype.kind != "f" or not v.size or np.any(v):
            continue
        if v.ndim >= 2:
            fan_in = int(np.prod(v.shape[1:]))
            v = rng.standard_normal(v.shape) * np.sqrt(2.0 / max(fan_in, 1))
        else:
            v = rng.uniform(0.5, 1.5, v.shape)
        t.CopyFrom(numpy_helper.from_array(v.astype(numpy_helper.to_array(t).dtype), t.name))
    s = ort.InferenceSession(m.SerializeToString(), quiet(), providers=["CPUExecutionProvider"])
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    out_names = [o.name for o in s.get_outputs()]
    carried = [o[:-4] for o in out_names if o.endswith(".new")]

    def concrete(shape, batch):
        # A symbolic batch dim takes a different size each step.
        return [d if isinstance(d, int) and d > 0 else (batch if k == 0 else 2) for k, d in enumerate(shape)]

    orig = session(model_path)
    state = {k: inits[k] for k in carried}
    int_labels = next(i for i in s.get_inputs() if i.name == "labels").type == "tensor(int64)"
    losses = []
    for t in range(steps):
        model_inputs = {}
        for i in orig.get_inputs():
            shape = concrete(i.shape, 2 + t)
            if "int" in i.type:
                model_inputs[i.name] = np.zeros(shape, dtype=np.int64 if "64" in i.type else np.int32)
            else:
                model_inputs[i.name] = rng.standard_normal(shape).astype(np.float64 if "double" in i.type else np.float32)
        # The output's shape (values do not matter here).
        y = orig.run(None, model_inputs)[0]
        feeds = dict(state)
        feeds.update(model_inputs)
        feeds["labels"] = np.zeros([y.shape[0]], dtype=np.int64) if int_labels else rng.standard_normal(y.shape).astype(y.dtype)
        feeds["step"] = np.array(t + 1, dtype=np.int64)
        res = dict(zip(out_names, s.run(None, feeds)))
        bad = [k for k, v in res.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
        losses.append(float(res["loss"]) if np.isfinite(res["loss"]) else str(res["loss"]))
        if bad:
            return {"losses": losses, "nonfinite": bad[:5]}
        state = {k: res[k + ".new"] for k in carried}
    return {"losses": losses, "nonfinite": [], "outputs": len(out_names)}


def optim(trace_path, update_path):
    check(update_path)
    with open(trace_path) as f:
        trace = json.load(f)
    s = session(update_path)
    names = [i.name for i in s.get_inputs()]
    state = [n for n in names if n.startswith("p.") and n != "p.grad"]
    shape = trace["shape"]
    feeds = {"p": np.asarray(trace["initial"], dtype=np.float32).reshape(shape)}
    for n in state:
        feeds[n] = np.zeros(shape, dtype=np.float32)
    lr = np.asarray(trace["defaults"]["lr"], dtype=np.float32)
    steps = []
    for t, step in enumerate(trace["steps"]):
        feeds["p.grad"] = np.asarray(step["grad"], dtype=np.float32).reshape(shape)
        out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {**feeds, "step": np.asarray(t + 1, dtype=np.int64), "lr": lr})))
        feeds["p"] = out["p.new"]
        for n in state:
            feeds[n] = out[n + ".new"]
        steps.append({"param": out["p.new"].ravel().tolist(), "state": [out[n + ".new"].ravel().tolist() for n in state]})
    return {"state": state, "steps": steps}


def command(argv):
    mode = argv[0]
    if mode == "check":
        return check(*argv[1:])
    if mode == "grads":
        return grads(argv[1], argv[2])
    if mode == "smoke":
        return smoke(argv[1], argv[2])
    if mode == "optim":
        return optim(argv[1], argv[2])
    if mode == "train":
        return train(argv[1], argv[2])
    raise SystemExit(f"unknown command {mode}")


if __name__ == "__main__":
    print(json.dumps(command(sys.argv[1:])))
