"""Helpers shared by the tests: the generated table, its writers and the in-memory references.

Imported by ``conftest.py`` and the test modules (``tests/`` is on ``sys.path``
because it holds the root ``conftest.py``).
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pandas as pd

NUMERIC = ["income", "age", "ratio", "score"]
CATEGORICAL = ["city", "plan"]
TARGET = "label"
REGRESSION_TARGET = "price"
DROP = ["id", REGRESSION_TARGET]
N_ROWS = 3000
ROWS_PER_CHUNK = 500
BLOCKSIZE = "20KB"
FORMATS = ("csv", "csv.gz", "parquet", "jsonl", "sqlite")


def make_frame(n_rows: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """Rows of a small mixed-type table; the same arguments give the same frame."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": np.arange(n_rows, dtype=np.int64),
        "income": rng.normal(52_000, 15_000, n_rows).round(2),
        "age": rng.integers(18, 90, n_rows).astype(np.float64),
        "ratio": rng.normal(0.0, 0.001, n_rows).round(8),
        "score": rng.uniform(-5, 5, n_rows).round(4),
        "city": rng.choice(["Oslo", "Lima", "Pune", "Kyiv", "Doha"], n_rows, p=[0.4, 0.25, 0.2, 0.1, 0.05]),
        "plan": rng.choice(["basic", "plus", "pro"], n_rows),
        "label": rng.choice(["stay", "churn", "upgrade"], n_rows, p=[0.6, 0.3, 0.1]),
        "price": rng.gamma(2.0, 30.0, n_rows).round(3),
    })
    # Missing values in three numeric columns, at different rates.
    for name, rate in (("income", 0.05), ("age", 0.10), ("ratio", 0.02)):
        frame.loc[rng.random(n_rows) < rate, name] = np.nan
    return frame


def write_jsonl(frame: pd.DataFrame, path) -> None:
    """One JSON object per line with full float precision (pandas' to_json rounds)."""
    with open(path, "w", encoding="utf-8") as sink:
        for row in frame.to_dict(orient="records"):
            clean = {key: (None if isinstance(value, float) and math.isnan(value) else
                           value.item() if isinstance(value, np.generic) else value)
                     for key, value in row.items()}
            sink.write(json.dumps(clean) + "\n")


def write_source(frame: pd.DataFrame, directory, fmt: str, name: str = "data"):
    """Write ``frame`` in ``fmt``; return ``(source, extra tabular() keyword arguments)``."""
    import sqlalchemy as sa

    if fmt == "csv":
        path = directory / f"{name}.csv"
        frame.to_csv(path, index=False)
    elif fmt == "csv.gz":
        path = directory / f"{name}.csv.gz"
        with gzip.open(path, "wt", encoding="utf-8") as sink:
            frame.to_csv(sink, index=False)
    elif fmt == "parquet":
        path = directory / f"{name}.parquet"
        # Several row groups so Parquet ingest has several read tasks too.
        frame.to_parquet(path, index=False, row_group_size=ROWS_PER_CHUNK)
    elif fmt == "jsonl":
        path = directory / f"{name}.jsonl"
        write_jsonl(frame, path)
    elif fmt == "sqlite":
        database = directory / f"{name}.db"
        engine = sa.create_engine(f"sqlite:///{database}")
        try:
            frame.to_sql("data", engine, index=False)
        finally:
            engine.dispose()
        return f"sqlite:///{database}", {"table": "data"}
    else:  # pragma: no cover - a typo in a test
        raise ValueError(fmt)
    return str(path), {}


def expected_features(frame: pd.DataFrame, numeric=NUMERIC, categorical=CATEGORICAL, impute="mean"):
    """The in-memory scikit-learn reference: imputer + scaler, then one-hot over sorted categories."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts, names = [], list(numeric)
    if numeric:
        imputed = SimpleImputer(strategy=impute, keep_empty_features=True).fit_transform(
            frame[list(numeric)].astype(np.float64))
        parts.append(StandardScaler().fit_transform(imputed))
    for name in categorical:
        categories = sorted(frame[name].dropna().unique())
        encoder = OneHotEncoder(categories=[categories], sparse_output=False, handle_unknown="ignore")
        parts.append(encoder.fit_transform(frame[[name]]))
        names += [f"{name}={value}" for value in categories]
    return np.hstack(parts), names


def expected_codes(values: pd.Series) -> tuple[np.ndarray, list]:
    """Class codes of ``values`` against their sorted distinct values."""
    classes = sorted(values.unique())
    return pd.Categorical(values, categories=classes).codes.astype(np.int64), classes


def read_store(path) -> dict:
    """Every array and the main attributes of a store, read with plain zarr, rows in input order.

    Stores keep their rows shuffled (``tabular(shuffle=True)``, the default);
    sorting by ``record`` gives the input order back, whatever the shuffle.
    """
    import zarr

    group = zarr.open_group(str(path), mode="r")
    out = {name: group[name][:] for name in ("X", "y", "split", "record") if name in group}
    order = np.argsort(out["record"], kind="stable")
    out = {name: values[order] for name, values in out.items()}
    for name in ("feature_names", "class_names", "task", "rows", "split_counts"):
        out[name] = group.attrs.get(name)
    return out


def in_input_order(ds, *names: str) -> list:
    """Arrays of a store (default ``X``, ``y``) with its rows in input order (sorted by ``record``)."""
    order = np.argsort(ds.group["record"][:], kind="stable")
    return [ds.group[name][:][order] for name in (names or ("X", "y"))]


def assert_same_store(left, right, rtol=1e-6, atol=1e-6) -> None:
    """Two stores hold the same samples, targets, splits and schema (compared in input order)."""
    a, b = read_store(left), read_store(right)
    assert a["feature_names"] == b["feature_names"]
    assert a["class_names"] == b["class_names"]
    assert a["task"] == b["task"]
    assert a["rows"] == b["rows"]
    assert a["split_counts"] == b["split_counts"]
    assert a["X"].shape == b["X"].shape
    np.testing.assert_allclose(a["X"], b["X"], rtol=rtol, atol=atol)
    np.testing.assert_array_equal(a["y"], b["y"])
    np.testing.assert_array_equal(a["split"], b["split"])
    np.testing.assert_array_equal(a["record"], b["record"])


def pyplot_untouched_by(code: str) -> None:
    """Run ``code`` in a fresh interpreter; assert it imported no pyplot and left the backend setting as it was.

    Library plots draw on their own ``matplotlib.figure.Figure``: a script or
    notebook that imports bigdl keeps whatever backend it chose.
    """
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    # dict.__getitem__: the setting as stored, without resolving an automatic backend (which imports pyplot).
    script = "\n".join([
        "import sys, matplotlib",
        "before = dict.__getitem__(matplotlib.rcParams, 'backend')",
        textwrap.dedent(code),
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'",
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') is before, 'the backend was switched'",
    ])
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-3000:]
