"""Property: whatever small table is written, reading the store gives back the same data.

"The same data" means the store holds exactly what scikit-learn computes in
memory from the table (imputed and scaled numbers, one-hot categories, class
codes), every input row once and in order, whatever the chunking and the
number of read blocks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bigdl
from support import expected_codes, expected_features, read_store

# Numbers on a 1e-3 grid: exact in CSV text and far from the rounding residue
# of a constant column (that case has its own test in tests/preprocessing/test_tabular_preprocessing.py).
number = st.integers(-10**6, 10**6).map(lambda value: value / 1000)
maybe_number = st.one_of(st.none(), number)


@st.composite
def tables(draw):
    n_rows = draw(st.integers(2, 40))
    n_numeric = draw(st.integers(0, 3))
    n_categorical = draw(st.integers(0 if n_numeric else 1, 2))
    columns = {}
    for index in range(n_numeric):
        values = draw(st.lists(maybe_number, min_size=n_rows, max_size=n_rows))
        # At least two distinct observed values, or the column is constant
        # (or empty) and scaling is degenerate.
        observed = [value for value in values if value is not None]
        if len(set(observed)) < 2:
            values = [float(row) for row in range(n_rows)]
            if n_rows > 1:
                values[0] = None
        columns[f"n{index}"] = pd.array(values, dtype="Float64")
    for index in range(n_categorical):
        columns[f"c{index}"] = draw(st.lists(st.sampled_from(["a", "bb", "c c", "dé"]), min_size=n_rows,
                                             max_size=n_rows))
    # At least two classes: a classification target with one class is refused.
    targets = draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=n_rows, max_size=n_rows))
    if len(set(targets)) < 2:
        targets[draw(st.integers(0, n_rows - 1))] = "z" if targets[0] != "z" else "x"
    columns["t"] = targets
    return pd.DataFrame(columns)


def _write(frame: pd.DataFrame, directory: Path, fmt: str, row_group_size: int) -> Path:
    if fmt == "parquet":
        path = directory / "d.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    else:
        path = directory / "d.csv"
        frame.to_csv(path, index=False)
    return path


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(frame=tables(), fmt=st.sampled_from(["parquet", "csv"]), rows_per_chunk=st.integers(1, 16),
       row_group_size=st.integers(1, 16), impute=st.sampled_from(["mean", "median"]), seed=st.integers(0, 2**31))
def test_store_gives_back_the_table(tmp_path, frame, fmt, rows_per_chunk, row_group_size, impute, seed):
    numeric = [name for name in frame.columns if name.startswith("n")]
    categorical = [name for name in frame.columns if name.startswith("c")]
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        directory = Path(directory)
        path = _write(frame, directory, fmt, row_group_size)
        ds = bigdl.ingest.tabular(path, target="t", store=directory / "s.zarr", numeric=numeric,
                                  categorical=categorical, impute=impute, rows_per_chunk=rows_per_chunk,
                                  blocksize=1 if fmt == "parquet" else 64, validation=0.2, test=0.2, seed=seed,
                                  progress=False)
        stored = read_store(ds.path)
        reopened = bigdl.open(ds.path)

    reference = frame.astype({name: np.float64 for name in numeric})
    X_expected, names = expected_features(reference, numeric=numeric, categorical=categorical, impute=impute)
    y_expected, classes = expected_codes(frame["t"])
    assert reopened.feature_names == names
    assert reopened.classes == classes
    assert stored["X"].shape == (len(frame), len(names))
    np.testing.assert_allclose(stored["X"], X_expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(stored["y"], y_expected)
    np.testing.assert_array_equal(stored["record"], np.arange(len(frame)))
    assert stored["rows"] == {"read": len(frame), "stored": len(frame), "rejected": 0, "rejected_by_reason": {}}
    counts = np.bincount(stored["split"], minlength=3)
    assert stored["split_counts"] == {"train": counts[0], "validation": counts[1], "test": counts[2]}
