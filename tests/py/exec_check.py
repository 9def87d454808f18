"""onnxruntime's side of the executor tests (tests/suite/exec_zoo.rs).

  prepare MODEL OUT_DIR BATCH SEED  the model with Dropout made the identity
                                    (its randomness is the runtime's own) and
                                    seeded weights (the zoo's are zeros), as
                                    OUT_DIR/model.onnx, and seeded inputs and
                                    MSE labels for it: OUT_DIR/inputs.json
                                    (name, dtype, dims, file) and raw .bin files
  run STEP IN_DIR OUT_DIR           runs the step graph on those inputs (step 1,
                                    the lr initializer) and writes every output
                                    as raw float32 (OUT_DIR/outputs.json)

Prints a JSON object on stdout.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def session(path):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def prepare(model_path, out_dir, batch, seed):
    m = onnx.load(model_path)
    g = m.graph
    dropouts = 0
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in g.node:
        if n.op_type == "Dropout":
            # output 0 = input 0 (an unread mask output is dropped)
            for k in n.output[1:]:
                if k and k in read:
                    raise SystemExit("a Dropout mask output is read: not supported by this check")
            dropouts += 1
            n.op_type = "Identity"
            del n.input[1:]
            del n.output[1:]
            del n.attribute[:]
    # Stochastic depth draws RandomUniformLike u and keeps a sample where
    # floor(keep + u) = 1: u = 1 - 2^-24 keeps every sample, in both runtimes.
    replaced = []
    nodes = []
    for n in g.node:
        if n.op_type in ("RandomUniformLike", "RandomNormalLike"):
            value = 1.0 - 2.0 ** -24 if n.op_type == "RandomUniformLike" else 0.0
            zero, c, z = f"{n.output[0]}__zero", f"{n.output[0]}__value", f"{n.output[0]}__zeros"
            g.initializer.extend([onnx.helper.make_tensor(zero, onnx.TensorProto.FLOAT, [], [0.0]), onnx.helper.make_tensor(c, onnx.TensorProto.FLOAT, [], [value])])
            nodes += [onnx.helper.make_node("Mul", [n.input[0], zero], [z]), onnx.helper.make_node("Add", [z, c], [n.output[0]])]
            replaced.append(n.name)
        else:
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            nodes.append(copy)
    del g.node[:]
    g.node.extend(nodes)
    rng = np.random.default_rng(seed)
    # The zoo's weights are zeros (the analysis reads only structure): give
    # every float tensor of two or more elements seeded values of a trained
    # scale, so the step computes something (variances stay positive).
    for t in g.initializer:
        if t.data_type != onnx.TensorProto.FLOAT:
            continue
        x = onnx.numpy_helper.to_array(t)
        if x.size < 2:
            continue
        name = t.name.lower()
        if "running_var" in name:
            v = 1.0 + 0.1 * np.abs(rng.standard_normal(x.shape))
        elif "running_mean" in name:
            v = 0.1 * rng.standard_normal(x.shape)
        elif x.ndim == 1:
            base = 1.0 if any(k in name for k in ("weight", "gamma", "scale")) else 0.0
            v = base + 0.1 * rng.standard_normal(x.shape)
        else:
            fan_in = int(np.prod(x.shape[1:]))
            v = rng.standard_normal(x.shape) / np.sqrt(max(fan_in, 1))
        t.CopyFrom(onnx.numpy_helper.from_array(v.astype(np.float32), t.name))
    os.makedirs(out_dir, exist_ok=True)
    plain = os.path.join(out_dir, "model.onnx")
    onnx.save(m, plain)
    inits = {t.name for t in g.initializer}
    feeds = {}
    entries = []
    for i in g.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in t.shape.dim]
        if t.elem_type == onnx.TensorProto.FLOAT:
            x = rng.standard_normal(dims).astype(np.float32)
        elif t.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            # token ids: small, valid for any embedding in the zoo
            x = rng.integers(0, 8, size=dims).astype(np.int64 if t.elem_type == onnx.TensorProto.INT64 else np.int32)
        else:
            raise SystemExit(f"input {i.name}: element type {t.elem_type} not handled")
        feeds[i.name] = x
    out = session(plain).run([g.output[0].name], feeds)[0]
    feeds["labels"] = rng.standard_normal(out.shape).astype(np.float32)
    for k, (name, x) in enumerate(feeds.items()):
        f = f"in_{k}.bin"
        x.tofile(os.path.join(out_dir, f))
        entries.append({"name": name, "dtype": str(x.dtype), "dims": list(x.shape), "file": f})
    with open(os.path.join(out_dir, "inputs.json"), "w") as fh:
        json.dump(entries, fh)
    return {"dropouts": dropouts, "random": len(replaced), "inputs": len(entries)}


def run(step_path, in_dir, out_dir):
    with open(os.path.join(in_dir, "inputs.json")) as fh:
        entries = json.load(fh)
    feeds = {}
    for e in entries:
        x = np.fromfile(os.path.join(in_dir, e["file"]), dtype=e["dtype"]).reshape(e["dims"])
        feeds[e["name"]] = x
    feeds["step"] = np.array(1, dtype=np.int64)
    s = session(step_path)
    names = [o.name for o in s.get_outputs()]
    outs = s.run(names, feeds)
    os.makedirs(out_dir, exist_ok=True)
    listing = []
    for k, (name, x) in enumerate(zip(names, outs)):
        f = f"out_{k}.bin"
        np.asarray(x, dtype=np.float32).tofile(os.path.join(out_dir, f))
        listing.append({"name": name, "dims": list(np.shape(x)), "file": f})
    with open(os.path.join(out_dir, "outputs.json"), "w") as fh:
        json.dump(listing, fh)
    return {"outputs": len(listing)}


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prepare":
        r = prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "run":
        r = run(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(r))
