#!/usr/bin/env python3
"""The digits data set for `adamp-graph train` (fixtures/data/).

scikit-learn ships 1,797 8x8 grey-level digit images (10 classes, values
0..16) inside its package: `sklearn.datasets.load_digits` reads them from
disk, nothing is downloaded. This script converts them once into

- fixtures/data/digits.npz        all 1,797 samples
- fixtures/data/digits_train.npz  1,437 samples (a fixed seeded split)
- fixtures/data/digits_val.npz    360 samples (the rest)

each with `x` float32 [N, 1, 8, 8] scaled to [0, 1] (divided by 16) and
`labels` int64 [N], the array names `train --data` expects for a model whose
input is `x` and whose loss is cross-entropy.

Run: python scripts/gen_digits.py          (a venv with numpy and scikit-learn)
"""
import os

import numpy as np
from sklearn.datasets import load_digits

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "fixtures", "data")
SEED = 0
N_VAL = 360


def save(name, x, labels):
    # Compressed: the arrays are mostly zeros and small integers over 16.
    np.savez_compressed(os.path.join(OUT, name), x=x, labels=labels)


def main():
    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    assert x.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    os.makedirs(OUT, exist_ok=True)
    save("digits.npz", x, labels)
    # A fixed permutation from a seeded generator: the split is the same on every run.
    order = np.random.default_rng(SEED).permutation(len(labels))
    val, train = np.sort(order[:N_VAL]), np.sort(order[N_VAL:])
    save("digits_train.npz", x[train], labels[train])
    save("digits_val.npz", x[val], labels[val])
    counts = np.bincount(labels[val], minlength=10)
    print(f"digits: {len(labels)} samples; train {len(train)}, val {len(val)} (val per class {counts.tolist()})")


if __name__ == "__main__":
    main()
