"""Every mistake a user can make raises a bigdl error that names the problem and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import (
    BigdlError,
    EmptyResultError,
    SchemaError,
    SourceError,
    SourceNotFoundError,
    StoreExistsError,
)
from support import make_frame, write_source

SMALL = make_frame(60, seed=5)


def ingest(source, store, **kwargs):
    kwargs.setdefault("target", "label")
    kwargs.setdefault("drop", ["id", "price"])
    return bigdl.ingest.tabular(source, store=store, progress=False, **kwargs)


@pytest.fixture
def small_csv(tmp_path):
    source, _ = write_source(SMALL, tmp_path, "csv", name="small")
    return source


def _no_store_left(tmp_path):
    return not any(path.name.endswith(".zarr") or ".tmp-" in path.name for path in tmp_path.iterdir())


# ---------------------------------------------------------------- sources
def test_missing_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceNotFoundError, match="does not exist") as error:
        ingest(missing, tmp_path / "s.zarr")
    assert str(missing) in str(error.value) and "check the path" in str(error.value)
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, BigdlError)
    assert _no_store_left(tmp_path)


def test_glob_matching_nothing(tmp_path, small_csv):
    pattern = str(tmp_path / "*.parquet")
    with pytest.raises(SourceNotFoundError, match="matches no file") as error:
        ingest(pattern, tmp_path / "s.zarr")
    assert pattern in str(error.value)


def test_missing_sqlite_table_lists_the_tables(tmp_path):
    source, _ = write_source(SMALL, tmp_path, "sqlite", name="db")
    with pytest.raises(SourceNotFoundError, match="has no table 'rows'") as error:
        ingest(source, tmp_path / "s.zarr", table="rows")
    assert "tables found: ['data']" in str(error.value)


def test_sql_url_without_table(tmp_path):
    source, _ = write_source(SMALL, tmp_path, "sqlite", name="db")
    with pytest.raises(SchemaError, match="needs table="):
        ingest(source, tmp_path / "s.zarr")


def test_missing_target_column_lists_the_columns(tmp_path, small_csv):
    with pytest.raises(SchemaError) as error:
        ingest(small_csv, tmp_path / "s.zarr", target="lable")
    message = str(error.value)
    assert "'lable'" in message and "columns found" in message
    for name in SMALL.columns:
        assert repr(name) in message
    assert "Did you mean 'label'?" in message
    assert _no_store_left(tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_with_another_header_names_both_files(tmp_path, fmt):
    first, _ = write_source(SMALL, tmp_path, fmt, name="a")
    second, _ = write_source(SMALL.rename(columns={"score": "points"}), tmp_path, fmt, name="b")
    with pytest.raises(SourceError) as error:
        ingest([first, second], tmp_path / "s.zarr")
    message = str(error.value)
    assert first in message and second in message
    assert "different header" in message and "lacks ['score']" in message and "adds ['points']" in message


def test_all_rows_rejected(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i / 2},\n" for i in range(40)))
    with pytest.raises(EmptyResultError) as error:
        ingest(path, tmp_path / "s.zarr", drop=None)
    message = str(error.value)
    assert "All 40 rows were rejected" in message and "40 x missing target 'label'" in message
    assert "line 2" in message
    assert _no_store_left(tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_header_only_input(tmp_path, fmt):
    source, _ = write_source(SMALL.iloc[:0], tmp_path, fmt, name="empty")
    with pytest.raises(EmptyResultError, match="holds no data rows") as error:
        ingest(source, tmp_path / "s.zarr")
    assert source in str(error.value)
    assert _no_store_left(tmp_path)


def test_empty_csv_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(SourceError, match="is empty"):
        ingest(tmp_path / "empty.csv", tmp_path / "s.zarr")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_latin1_file_needs_the_encoding(tmp_path, fmt):
    frame = pd.DataFrame({"city": ["Zürich", "Genève", "Malmö"] * 20, "n": np.arange(60.0),
                          "label": ["a", "b"] * 30})
    path = tmp_path / f"latin.{fmt}"
    if fmt == "csv":
        text = frame.to_csv(index=False)
    else:
        text = frame.to_json(orient="records", lines=True, force_ascii=False)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SourceError) as error:
        ingest(path, tmp_path / "s.zarr", drop=None)
    message = str(error.value)
    assert str(path) in message and "utf-8" in message.lower() and "encoding='latin-1'" in message
    assert isinstance(error.value, ValueError)
    assert _no_store_left(tmp_path)

    ds = ingest(path, tmp_path / "s.zarr", drop=None, encoding="latin-1")
    assert ds.feature_names == ["n", "city=Genève", "city=Malmö", "city=Zürich"]
    X = ds.X.compute()[np.argsort(ds.group["record"][:])]  # input order
    np.testing.assert_array_equal(X[:3, 1:], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


# ---------------------------------------------------------------- store path
def test_existing_store_needs_overwrite(tmp_path, small_csv):
    first = ingest(small_csv, tmp_path / "s.zarr", seed=1)
    with pytest.raises(StoreExistsError) as error:
        ingest(small_csv, tmp_path / "s.zarr", seed=2)
    assert "already exists" in str(error.value) and "overwrite=True" in str(error.value)
    assert isinstance(error.value, FileExistsError)
    assert bigdl.open(tmp_path / "s.zarr").attrs["split"]["seed"] == 1

    second = ingest(small_csv, tmp_path / "s.zarr", seed=2, overwrite=True)
    assert second.attrs["split"]["seed"] == 2 == bigdl.open(tmp_path / "s.zarr").attrs["split"]["seed"]
    assert first.n_samples == second.n_samples == len(SMALL)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.zarr", "small.csv"]


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("kwargs, words", [
    ({"test": 1.5}, ["The 'test' parameter of tabular must be a float in the range [0.0, 1.0). Got 1.5 instead."]),
    ({"validation": -0.1}, ["'validation' parameter", "-0.1"]),
    ({"validation": 0.5, "test": 0.5}, ["'validation' and 'test' parameters", "validation + test must be < 1"]),
    ({"impute": "mode"}, ["'impute' parameter", "'mean'", "'median'", "'mode'"]),
    ({"task": "ranking"}, ["'task' parameter", "'classification'", "'ranking'"]),
    ({"rows_per_chunk": 0}, ["'rows_per_chunk' parameter", "[1, inf) or None. Got 0 instead."]),
    ({"rows_per_chunk": True}, ["'rows_per_chunk' parameter", "Got True instead."]),
    ({"max_categories": 0}, ["'max_categories' parameter", "Got 0 instead."]),
    ({"seed": "7"}, ["'seed' parameter", "Got '7' instead."]),
    ({"seed": -1}, ["'seed' parameter", "Got -1 instead."]),
    ({"blocksize": 0}, ["'blocksize' parameter of tabular", "'64MiB'", "Got 0 instead."]),
    ({"blocksize": "lots"}, ["'blocksize' parameter of tabular", "Got 'lots' instead."]),
    ({"compression": "snappy"}, ["'compression' parameter", "'lz4'", "'snappy'"]),
    ({"drop": ["id", "nosuch"]}, ["['nosuch']", "drop=", "columns found"]),
    ({"drop": ["id", "prise"]}, ["['prise']", "did you mean 'price'"]),
    ({"categorical": ["colour"]}, ["['colour']", "categorical="]),
    ({"numeric": ["age"], "categorical": ["age"]}, ["both categorical= and numeric="]),
    ({"key": "ident"}, ["['ident']", "key="]),
    ({"format": "xml"}, ["'format' parameter", "'xml'"]),
    ({"task": "regression"}, ["task='regression' needs a numeric target", "task='classification'"]),
])
def test_bad_parameters(tmp_path, small_csv, kwargs, words):
    kwargs = {"drop": ["id", "price"], **kwargs}
    with pytest.raises(SchemaError) as error:
        ingest(small_csv, tmp_path / "s.zarr", **kwargs)
    message = str(error.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert isinstance(error.value, ValueError)
    assert _no_store_left(tmp_path)


def test_no_feature_left(tmp_path, small_csv):
    with pytest.raises(SchemaError, match="No feature column is left"):
        ingest(small_csv, tmp_path / "s.zarr", drop=[name for name in SMALL.columns if name != "label"])


def test_time_of_day_column_must_be_dropped(tmp_path):
    # Dates and timestamps are encoded (tests/ingest/test_dates.py); a time of day alone is not.
    frame = SMALL.assign(when=pd.date_range("2024-01-01", periods=len(SMALL), freq="min").time)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    with pytest.raises(SchemaError, match=r"Column 'when' has type time64\[us\] \(a time of day\).*drop=\['when'\]"):
        ingest(tmp_path / "d.parquet", tmp_path / "s.zarr")


def test_open_a_path_that_is_not_a_store(tmp_path):
    from bigdl.errors import StoreFormatError

    with pytest.raises(StoreFormatError, match="does not exist"):
        bigdl.open(tmp_path / "missing.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreFormatError, match="bigdl.ingest"):
        bigdl.open(tmp_path / "folder")
