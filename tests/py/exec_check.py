"""onnxruntime's side of the executor tests (tests/suite/exec_zoo.rs).

  prepare MODEL OUT_DIR BATCH SEED  the model with Dropout made the identity
                                    (its randomness is the runtime's own) and
                                    seeded weights (the zoo's are zeros), as
                                    OUT_DIR/model.onnx, and seeded inputs and
                                    MSE labels for it: OUT_DIR/inputs.json
                                    (name, dtype, dims, file) and raw .bin files
  run STEP IN_DIR OUT_DIR [DECISIONS]
                                    runs the step graph on those inputs (step 1,
                                    the lr initializer) and writes every output
                                    as raw float32 (OUT_DIR/outputs.json).
                                    DECISIONS (a folder with decisions.json:
                                    name, dtype, dims, file) holds the other
                                    runtime's kink decisions: the results of
                                    float comparisons (ReLU, Clip and ReLU6
                                    gradients) and MaxPool's Indices. They are
                                    fed in place of onnxruntime's own, so both
                                    runtimes differentiate the same branch of
                                    each kink; every decision that differs from
                                    onnxruntime's own must be a near tie in
                                    onnxruntime's forward values (within
                                    TIE_TOL of the compared tensor's largest
                                    magnitude), or it is reported.

Prints a JSON object on stdout.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def session(model):
    """An onnxruntime session for a model file's path or a serialized model."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


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


# Two float32 runtimes that sum in different orders agree on a forward value to
# a few ulps of the tensor's scale per layer; a decision may differ only where
# the compared values are that close.
TIE_TOL = 1e-4

COMPARISONS = ("Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal")


def substitute(m, decisions_dir):
    """Feeds the decisions in decisions.json as graph inputs in place of the
    nodes' own; returns (decisions, the values the tie check needs)."""
    with open(os.path.join(decisions_dir, "decisions.json")) as fh:
        decisions = json.load(fh)
    g = m.graph
    # element types of the compared values (a comparison may read integers)
    inferred = onnx.shape_inference.infer_shapes(m).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.value_info) + list(inferred.output) + list(inferred.input)}
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    # initializers and inputs are read directly, not as outputs
    known = {t.name for t in g.initializer} | {i.name for i in g.input}
    checks = []
    for d in decisions:
        name = d["name"]
        n = producer.get(name)
        if n is None:
            raise SystemExit(f"decision '{name}': no node of the step graph computes it")
        own = name + "__onnxruntime"
        n.output[list(n.output).index(name)] = own
        elem = onnx.TensorProto.BOOL if d["dtype"] == "bool" else onnx.TensorProto.INT64
        g.output.append(onnx.helper.make_tensor_value_info(own, elem, None))
        g.input.append(onnx.helper.make_tensor_value_info(name, elem, d["dims"]))
        if n.op_type in COMPARISONS:
            compared = [n.input[0], n.input[1]]
        elif n.op_type == "MaxPool":
            compared = [n.input[0]]
        else:
            raise SystemExit(f"decision '{name}' comes from a {n.op_type} node: not a comparison or MaxPool")
        for c in compared:
            if c not in outputs and c not in known:
                g.output.append(onnx.helper.make_tensor_value_info(c, types.get(c) or onnx.TensorProto.FLOAT, None))
                outputs.add(c)
        checks.append((d, n.op_type, compared, own))
    feeds = {}
    for d in decisions:
        x = np.fromfile(os.path.join(decisions_dir, d["file"]), dtype=np.uint8 if d["dtype"] == "bool" else np.int64)
        feeds[d["name"]] = (x != 0 if d["dtype"] == "bool" else x).reshape(d["dims"])
    return feeds, checks


def ties(checks, values):
    """Counts the decisions that differ from onnxruntime's own and describes
    those that are not near ties."""
    flipped, far = 0, []
    for d, op, compared, own in checks:
        ours = values[d["name"]]
        theirs = values[own]
        diff = np.nonzero(np.asarray(ours).ravel() != np.asarray(theirs).ravel())[0]
        flipped += len(diff)
        if len(diff) == 0:
            continue
        if op == "MaxPool":
            x = np.asarray(values[compared[0]], dtype=np.float64)
            scale = max(np.abs(x).max(), 1e-30)
            flat = x.ravel()
            gap = np.abs(flat[np.asarray(ours).ravel()[diff]] - flat[np.asarray(theirs).ravel()[diff]])
        else:
            a, b = (np.broadcast_to(np.asarray(values[c], dtype=np.float64), np.shape(theirs)).ravel() for c in compared)
            scale = max(np.abs(a).max(), np.abs(b).max(), 1e-30)
            gap = np.abs(a[diff] - b[diff])
        worst = gap.max() / scale
        if worst > TIE_TOL:
            far.append(f"{d['name']} ({op}): {len(diff)} decisions differ, one {worst:.1e} of the scale from a tie")
    return flipped, far


def run(step_path, in_dir, out_dir, decisions_dir=None):
    with open(os.path.join(in_dir, "inputs.json")) as fh:
        entries = json.load(fh)
    feeds = {}
    for e in entries:
        x = np.fromfile(os.path.join(in_dir, e["file"]), dtype=e["dtype"]).reshape(e["dims"])
        feeds[e["name"]] = x
    feeds["step"] = np.array(1, dtype=np.int64)
    m = onnx.load(step_path)
    # the step's own outputs are written; what the tie check adds is not
    written = [o.name for o in m.graph.output]
    checks = []
    if decisions_dir:
        more, checks = substitute(m, decisions_dir)
        feeds.update(more)
    s = session(m.SerializeToString())
    names = [o.name for o in s.get_outputs()]
    values = dict(zip(names, s.run(names, feeds)))
    os.makedirs(out_dir, exist_ok=True)
    listing = []
    for k, name in enumerate(written):
        f = f"out_{k}.bin"
        np.asarray(values[name], dtype=np.float32).tofile(os.path.join(out_dir, f))
        listing.append({"name": name, "dims": list(np.shape(values[name])), "file": f})
    with open(os.path.join(out_dir, "outputs.json"), "w") as fh:
        json.dump(listing, fh)
    result = {"outputs": len(listing)}
    if decisions_dir:
        values.update(feeds)
        # compared constants that are initializers
        inits = {t.name: t for t in m.graph.initializer}
        for _, _, compared, _ in checks:
            for c in compared:
                if c not in values and c in inits:
                    values[c] = onnx.numpy_helper.to_array(inits[c])
        flipped, far = ties(checks, values)
        result.update({"decisions": int(sum(np.size(feeds[d["name"]]) for d, *_ in checks)), "flipped": int(flipped), "not_ties": far})
    return result


def command(argv):
    cmd = argv[0]
    if cmd == "prepare":
        return prepare(argv[1], argv[2], int(argv[3]), int(argv[4]))
    if cmd == "run":
        return run(argv[1], argv[2], argv[3], argv[4] if len(argv) > 4 else None)
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    print(json.dumps(command(sys.argv[1:])))
