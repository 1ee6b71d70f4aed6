"""A loader or a training run with no samples is a clear error, never an epoch of nothing at loss 0.0."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from torch import nn

import bigdl
from bigdl.errors import EmptyResultError
from bigdl.loaders.torch import ChunkLoader
from bigdl.train import Trainer


@pytest.fixture
def short_series(tmp_path):
    """Five steps stored with window=16: no window fits."""
    pd.DataFrame({"t": np.arange(5), "v": np.arange(5.0)}).to_csv(tmp_path / "s.csv", index=False)
    return bigdl.ingest.sequences(tmp_path / "s.csv", time="t", values=["v"], window=16, horizon=1,
                                  store=tmp_path / "s.zarr", progress=False)


def test_windows_longer_than_every_series(short_series):
    why = re.escape("window=16 + horizon=1 needs 17 steps and the longest series has 5")
    with pytest.raises(EmptyResultError, match=f"ChunkLoader has nothing to load .*{why}"):
        ChunkLoader(short_series, "train")
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    with pytest.raises(EmptyResultError, match=f"Trainer has nothing to train on .*{why}"):
        Trainer(model, epochs=2, on_cluster=False, progress=False).fit(short_series)
    # A window that fits is the way out the message gives.
    assert ChunkLoader(short_series, "train", window=2).n_samples > 0


def test_an_empty_split_names_the_split_and_the_counts(tmp_path):
    frame = pd.DataFrame({"a": np.arange(50.0), "y": np.arange(50) % 2})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = bigdl.ingest.tabular(tmp_path / "t.csv", target="y", store=tmp_path / "t.zarr", validation=0.0, test=0.2,
                              progress=False)
    with pytest.raises(EmptyResultError, match=r"no 'validation' samples \(samples per split: .*'validation': 0"):
        ChunkLoader(ds, "validation")
