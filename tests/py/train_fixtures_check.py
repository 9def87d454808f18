#!/usr/bin/env python3
"""Runs the training fixtures (fixtures/train/) in onnxruntime for the Rust
tests (tests/suite/train_fixtures.rs, train_cli.rs) and prints one JSON object
of raw numbers; the Rust side judges them. The tests call it through
tests/py/serve.py (one process per test thread).

  train_fixtures_check.py train STEP.onnx DATA.npz LR STEPS BATCH [PARAM ...]
      STEPS steps of the step graph with learning rate LR on batches of BATCH
      samples taken in order (wrapping around), feeding each `<name>.new` back
      as `<name>`. Prints {"loss": [per step], "norms": {PARAM: [‖p‖ after each
      step]}, "data": {array: {"shape", "dtype", "min", "max"}}}.
  train_fixtures_check.py accuracy MODEL.onnx DATA.npz N
      The model (input `x`) on the first N samples: {"finite": bool,
      "accuracy": fraction of argmax equal to `labels`}.

Needs numpy, onnx and onnxruntime (scripts/test.sh installs them in a venv).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def train(step_path, data_path, lr, steps, batch, params):
    lr, steps, batch = float(lr), int(steps), int(batch)
    sess = session(step_path)
    model = onnx.load(step_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # The graph's inputs, not the session's: onnxruntime leaves out those backed by an initializer.
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in sess.get_outputs()]
    state = {n: inits[n] for n in inputs if n in inits and n != "lr"}
    data = dict(np.load(data_path))
    n = len(data["labels"])
    losses, norms = [], {p: [] for p in params}
    for t in range(1, steps + 1):
        start = ((t - 1) * batch) % n
        idx = np.arange(start, start + batch) % n
        feed = dict(state)
        for k, v in data.items():
            if k in inputs or k == "labels":
                feed[k] = v[idx]
        feed["step"] = np.array(t, dtype=np.int64)
        feed["lr"] = np.array(lr, dtype=np.float32)
        out = dict(zip(outputs, sess.run(None, feed)))
        for name in outputs:
            if name.endswith(".new"):
                state[name[: -len(".new")]] = out[name]
        losses.append(float(out["loss"]))
        for p in params:
            norms[p].append(float(np.linalg.norm(state[p].astype(np.float64))))
    summary = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "min": float(v.min()), "max": float(v.max())} for k, v in data.items()}
    return {"loss": losses, "norms": norms, "data": summary}


def accuracy(model_path, data_path, n):
    sess = session(model_path)
    data = np.load(data_path)
    n = int(n)
    y = sess.run(None, {"x": data["x"][:n]})[0]
    return {"finite": bool(np.isfinite(y).all()), "accuracy": float((y.argmax(1) == data["labels"][:n]).mean())}


def command(argv):
    mode = argv[0]
    if mode == "train":
        return train(argv[1], argv[2], argv[3], argv[4], argv[5], argv[6:])
    if mode == "accuracy":
        return accuracy(argv[1], argv[2], argv[3])
    raise SystemExit(f"unknown command {mode}")


if __name__ == "__main__":
    print(json.dumps(command(sys.argv[1:])))
