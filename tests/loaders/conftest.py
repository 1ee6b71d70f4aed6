"""A small store whose samples can be told apart, for the streaming loader's tests.

One numeric feature, ``rid``, is the row's position in the input: after
standardisation its values are still distinct, so any batch row can be traced
back to the store position it came from (:class:`SampleIndex`).  Chunks are
small (400 rows of 6,000, so 15 chunks) and every split is present in every
chunk, which exercises the split masks, the carry-over between buffers and the
sharding of chunks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

N_ROWS = 6000
ROWS_PER_CHUNK = 400


@pytest.fixture(scope="session")
def loader_store(tmp_path_factory):
    import bigdl

    root = tmp_path_factory.mktemp("loader-store")
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({
        "rid": np.arange(N_ROWS, dtype=np.int64),
        "a": rng.normal(size=N_ROWS).round(6),
        "b": rng.uniform(-100, 100, size=N_ROWS).round(4),
        "target": rng.choice(["no", "maybe", "yes"], N_ROWS),
    })
    frame.to_csv(root / "rows.csv", index=False)
    return bigdl.ingest.tabular(root / "rows.csv", target="target", store=root / "rows.zarr",
                                rows_per_chunk=ROWS_PER_CHUNK, validation=0.1, test=0.2, progress=False)


class SampleIndex:
    """Maps loader output rows back to store positions through the ``rid`` feature."""

    def __init__(self, ds):
        assert ds.feature_names[0] == "rid"
        self.X = ds.X.compute()
        self.y = ds.y.compute()
        key = self.X[:, 0]
        self._order = np.argsort(key, kind="stable")
        self._sorted = key[self._order]
        assert len(np.unique(self._sorted)) == len(key), "rid must identify samples"

    def positions(self, X) -> np.ndarray:
        """Store positions of the rows of ``X`` (a batch, tensor or array); checks rows are unchanged."""
        X = np.asarray(X)
        found = np.searchsorted(self._sorted, X[:, 0])
        found = np.clip(found, 0, len(self._sorted) - 1)
        positions = self._order[found]
        np.testing.assert_array_equal(self.X[positions], X)
        return positions


@pytest.fixture(scope="session")
def sample_index(loader_store) -> SampleIndex:
    return SampleIndex(loader_store)
