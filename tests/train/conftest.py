"""Small stores for the Trainer's tests: classification, regression, and one without a validation split.

Chunks are a few hundred rows so every epoch streams many chunks and the
block shuffle, the split masks and the carry-over between buffers all take
part in training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def classification_store(tmp_path_factory):
    """6,000 rows of a learnable 3-class problem (6 numeric features), 500 rows per chunk."""
    import bigdl

    root = tmp_path_factory.mktemp("train-classification")
    frame = bigdl.datasets.make_tabular(6000, n_numeric=6, n_classes=3, seed=3, with_category=False)
    frame.to_parquet(root / "data.parquet", index=False)
    return bigdl.ingest.tabular(root / "data.parquet", target="target", store=root / "c.zarr", drop=["id"],
                                rows_per_chunk=500, validation=0.1, test=0.25, progress=False)


@pytest.fixture(scope="session")
def regression_store(tmp_path_factory):
    """3,000 rows of ``y = 2 x1 - 3 x2 + noise`` (a float target), 300 rows per chunk."""
    import bigdl

    root = tmp_path_factory.mktemp("train-regression")
    rng = np.random.default_rng(8)
    x1 = rng.normal(10.0, 5.0, 3000)
    x2 = rng.uniform(-3.0, 3.0, 3000)
    frame = pd.DataFrame({"x1": x1.round(5), "x2": x2.round(5),
                          "y": (0.4 * x1 - 1.5 * x2 + rng.normal(0, 0.3, 3000)).round(5)})
    frame.to_csv(root / "data.csv", index=False)
    return bigdl.ingest.tabular(root / "data.csv", target="y", task="regression", store=root / "r.zarr",
                                rows_per_chunk=300, validation=0.1, test=0.2, progress=False)


@pytest.fixture(scope="session")
def unvalidated_store(tmp_path_factory):
    """A classification store with train and test splits only."""
    import bigdl

    root = tmp_path_factory.mktemp("train-no-validation")
    frame = bigdl.datasets.make_tabular(1500, n_numeric=4, n_classes=2, seed=5, with_category=False)
    frame.to_parquet(root / "data.parquet", index=False)
    return bigdl.ingest.tabular(root / "data.parquet", target="target", store=root / "n.zarr", drop=["id"],
                                rows_per_chunk=400, validation=0.0, test=0.2, progress=False)
