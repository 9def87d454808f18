#!/usr/bin/env python3
"""Runs a step graph of a training fixture (fixtures/train/) in onnxruntime on
its data set (fixtures/data/) for the Rust tests (tests/suite/train_fixtures.rs),
and prints one JSON object of raw numbers; the Rust side judges them.

  train_fixtures_check.py STEP.onnx DATA.npz LR STEPS BATCH [PARAM ...]
      STEPS steps with learning rate LR on batches of BATCH samples taken in
      order (wrapping around), feeding each `<name>.new` back as `<name>`.
      Prints {"loss": [per step], "norms": {PARAM: [‖p‖ after each step]},
      "data": {array: {"shape", "dtype", "min", "max"}}}.

Needs numpy, onnx and onnxruntime (scripts/test.sh installs them in a venv).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    step_path, data_path, lr, steps, batch = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    params = sys.argv[6:]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(step_path, so, providers=["CPUExecutionProvider"])
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
    print(json.dumps({"loss": losses, "norms": norms, "data": summary}))


if __name__ == "__main__":
    main()
