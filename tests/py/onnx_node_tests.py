#!/usr/bin/env python3
"""Prints the folder that holds the ONNX backend node tests.

    python tests/py/onnx_node_tests.py CACHE_DIR

Each test is a folder NAME/ with model.onnx and test_data_set_0/input_J.pb,
output_J.pb (TensorProto), the layout of onnx/backend/test/data/node. When the
installed onnx package ships that folder it is printed as is. Otherwise the
tests are written from the package's own case definitions
(onnx.backend.test.case.node, what `backend-test-tools generate-data` runs)
into CACHE_DIR/<onnx version>/, once; only tensor-typed inputs and outputs get
a .pb (sequence, map and optional values are left out, and the Rust side
reports such outputs as unsupported).
"""
import os
import shutil
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def as_tensor(value, name):
    if isinstance(value, TensorProto):
        return value
    return numpy_helper.from_array(np.asarray(value), name)


def generate(out):
    import onnx.backend.test.case.node as node_cases

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".node-tests-")
    for case in node_cases.collect_testcases(None):
        if case.kind != "node" or case.model is None or not case.data_sets:
            continue
        folder = os.path.join(tmp, case.name)
        data = os.path.join(folder, "test_data_set_0")
        os.makedirs(data)
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        graph = case.model.graph
        for kind, values, infos in (("input", inputs, graph.input), ("output", outputs, graph.output)):
            for j, (value, info) in enumerate(zip(values, infos)):
                if not info.type.HasField("tensor_type"):
                    continue
                with open(os.path.join(data, f"{kind}_{j}.pb"), "wb") as f:
                    f.write(as_tensor(value, info.name).SerializeToString())
    try:
        os.rename(tmp, out)
    except OSError:
        # Another run finished first: keep its copy.
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    shipped = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if os.path.isdir(shipped) and os.listdir(shipped):
        print(shipped)
        return
    out = os.path.join(os.path.abspath(sys.argv[1]), onnx.__version__)
    if not os.path.isdir(out):
        import warnings

        warnings.simplefilter("ignore")
        generate(out)
    print(out)


if __name__ == "__main__":
    main()
