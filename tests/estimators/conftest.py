"""Helpers for estimator tests (the small stores themselves are fixtures in tests/conftest.py)."""

from __future__ import annotations

import numpy as np


def classification_arrays(n: int = 4000, seed: int = 0):
    """Three classes driven by features 0 and 1; feature 2 is pure noise."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=6, n_informative=3, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.5, random_state=seed, shuffle=False)
    return X.astype(np.float32), y.astype(np.int64)


def split_numpy(ds, split):
    X, y = ds.arrays(split)
    return X.compute(), y.compute()
