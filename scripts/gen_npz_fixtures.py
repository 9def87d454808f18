#!/usr/bin/env python3
"""Writes the small .npz fixtures under fixtures/data/test/ that the npz reader's
unit tests (src/data/npz.rs) read.

They are committed; rerun only to change them (needs numpy):

    python scripts/gen_npz_fixtures.py

The tests pin the values written here, so keep the two in step.
"""
import io
import os
import warnings
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "data", "test")


def basic_arrays():
    """One array per dtype the reader supports, plus a scalar and an empty one."""
    return {
        "x": np.arange(12, dtype=np.float32).reshape(3, 4) / 4,
        "labels": np.array([0, 2, 1], dtype=np.int64),
        "f64": np.array([[1.5, -2.25], [1e300, -0.0]], dtype=np.float64),
        "f16": np.array([0.5, -1.0, 65504.0], dtype=np.float16),
        "i32": np.array([-7, 2147483647], dtype=np.int32),
        "i16": np.array([-32768, 5], dtype=np.int16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([0, 255, 7], dtype=np.uint8),
        "u16": np.array([65535], dtype=np.uint16),
        "u32": np.array([4000000000], dtype=np.uint32),
        "u64": np.array([2**63 + 1], dtype=np.uint64),
        "mask": np.array([True, False, True, True]),
        "scalar": np.float32(3.25),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def npy_bytes(array, version):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    np.savez(os.path.join(OUT, "basic.npz"), **basic_arrays())

    # Deflated entries; `big` is long enough to compress well.
    np.savez_compressed(
        os.path.join(OUT, "compressed.npz"),
        big=np.tile(np.arange(8, dtype=np.float32), 64).reshape(64, 8),
        labels=np.array([3, 1, 4, 1, 5], dtype=np.int64),
    )

    # Fortran order and big-endian data, both converted by the reader.
    np.savez(
        os.path.join(OUT, "layout.npz"),
        fortran=np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4)),
        bigend=np.arange(6, dtype=">i4").reshape(2, 3),
        bigf64=np.array([1.5, -3.0], dtype=">f8"),
    )

    # Float labels: integral ones convert to int64, the others do not.
    np.savez(
        os.path.join(OUT, "float_labels.npz"),
        integral=np.array([0.0, 2.0, 1.0], dtype=np.float32),
        fractional=np.array([0.0, 0.5], dtype=np.float64),
    )

    # dtypes the reader refuses: unicode strings and a structured record.
    np.savez(
        os.path.join(OUT, "unsupported.npz"),
        text=np.array(["a", "bc"]),
        record=np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]),
    )

    # The .npy format versions 2.0 and 3.0 (numpy writes 1.0 unless told).
    with zipfile.ZipFile(os.path.join(OUT, "versions.npz"), "w") as zf:
        zf.writestr("v2.npy", npy_bytes(np.array([1.0, 2.0], dtype=np.float32), (2, 0)))
        zf.writestr("v3.npy", npy_bytes(np.array([[5, 6]], dtype=np.int64), (3, 0)))

    # Two entries with one name.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(os.path.join(OUT, "duplicate.npz"), "w") as zf:
            zf.writestr("a.npy", npy_bytes(np.array([1], dtype=np.int64), (1, 0)))
            zf.writestr("a.npy", npy_bytes(np.array([2], dtype=np.int64), (1, 0)))


if __name__ == "__main__":
    main()
