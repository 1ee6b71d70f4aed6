"""Helpers and fixtures for estimator tests (the stores most tests share are fixtures in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest


def classification_arrays(n: int = 4000, seed: int = 0):
    """Three classes driven by features 0 and 1; feature 2 is pure noise."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=6, n_informative=3, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.5, random_state=seed, shuffle=False)
    return X.astype(np.float32), y.astype(np.int64)


def split_numpy(ds, split):
    X, y = ds.arrays(split)
    return X.compute(), y.compute()


@pytest.fixture(scope="session")
def imbalanced_store(tmp_path_factory):
    """A 95/5 binary problem: 6000 rows (about 210 minority rows to train on) in chunks of 500, 70/30 split."""
    from sklearn.datasets import make_classification

    import bigdl

    X, y = make_classification(n_samples=6000, n_features=8, n_informative=4, n_redundant=0, weights=[0.95],
                               flip_y=0, class_sep=1.2, random_state=0)
    return bigdl.store.from_arrays(X.astype(np.float32), y.astype(np.int64),
                                   store=tmp_path_factory.mktemp("est") / "imbalanced.zarr", rows_per_chunk=500,
                                   test=0.3, seed=2)
