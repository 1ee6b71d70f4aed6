"""Odd values and odd names in tabular and sequence ingest (issue 13, items 6, 10, 11, 12 and 14).

Each finding is checked against a clean run on the same data: a quarantined
row leaves exactly the store of the input without it, an option that fills a
value gives exactly the store of the input with that cell missing, and an
error names the column and the fix.  Nothing is stored silently wrong.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bigdl
from bigdl.errors import ParameterError, SchemaError, SourceError
from support import make_frame, read_store, write_jsonl, write_source

N_ROWS = 600
FEATURES = dict(target="label", drop=["id", "price"], rows_per_chunk=100, blocksize="20KB", progress=False)
# (row, column): the non-finite spelling written into a text file, and what a typed column reads.
NON_FINITE = {(5, "income"): "inf", (17, "age"): "-inf", (40, "score"): "Infinity", (41, "ratio"): "1e309",
              (90, "income"): "-Infinity", (333, "score"): "-1e309"}


def _as_number(text: str) -> float:
    return float(text.replace("Infinity", "inf"))


def _reason(row: int, column: str) -> str:
    return f"column {column!r}: {str(_as_number(NON_FINITE[row, column]))!r} is not a finite number"


def _write_with_non_finite(frame: pd.DataFrame, directory, fmt: str):
    """``frame`` with the NON_FINITE cells, in ``fmt``: spelled as text in CSV, as floats elsewhere."""
    if fmt == "csv":
        text = frame.astype({column: object for _, column in NON_FINITE})
        for (row, column), spelling in NON_FINITE.items():
            text.loc[row, column] = spelling
        path = directory / "dirty.csv"
        text.to_csv(path, index=False)
        return str(path), {}
    dirty = frame.copy()
    for (row, column), spelling in NON_FINITE.items():
        dirty.loc[row, column] = _as_number(spelling)
    return write_source(dirty, directory, fmt, name="dirty")


def assert_same_state(left: dict, right: dict) -> None:
    """Two fitted states are equal up to the rounding of merging block statistics in another order."""
    def close(a, b):
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for key in a:
                close(a[key], b[key])
        elif isinstance(a, list):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                close(x, y)
        elif isinstance(a, float):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-15)
        else:
            assert a == b

    close(left, right)


def _by_record(path) -> dict:
    stored = read_store(path)
    order = np.argsort(stored["record"])
    return {name: stored[name][order] for name in ("X", "y", "record")} | {"rows": stored["rows"]}


@pytest.fixture(scope="module")
def frame():
    return make_frame(N_ROWS, seed=3)


# ---------------------------------------------------------------- sources: repeated names, SQLite cells (item 11)
def test_a_parquet_schema_with_a_repeated_column_is_refused(tmp_path):
    path = tmp_path / "repeated.parquet"
    pq.write_table(pa.table([pa.array([1.0, 2.0]), pa.array([3.0, 4.0]), pa.array(["p", "q"])],
                            names=["a", "a", "t"]), path)
    with pytest.raises(SourceError) as caught:
        bigdl.ingest.tabular(path, target="t", store=tmp_path / "s.zarr", progress=False)
    assert str(caught.value) == (f"{path}: the schema repeats column(s) ['a']; column names must be unique "
                                 "(rename the repeated columns and write the file again).")


def test_sqlite_text_in_numeric_columns_is_quarantined(tmp_path, frame):
    database = tmp_path / "odd.db"
    source, extra = write_source(frame, tmp_path, "sqlite", name="odd")
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("UPDATE data SET income = 'oops' WHERE id = 7")
        connection.execute("UPDATE data SET age = x'00ff' WHERE id = 300")  # a BLOB in a REAL column
        connection.execute("UPDATE data SET score = '12.5' WHERE id = 301")  # text that is a number: kept
    connection.close()
    ds = bigdl.ingest.tabular(source, store=tmp_path / "odd.zarr", **FEATURES, **extra)
    assert ds.row_counts["rejected_by_reason"] == {"column 'income': not a number": 1,
                                                   "column 'age': not a number": 1}
    rejects = ds.rejects()
    assert rejects[["source", "row", "reason"]].to_dict(orient="records") == [
        {"source": source, "row": 8, "reason": "column 'income': 'oops' is not a number"},
        {"source": source, "row": 301, "reason": "column 'age': \"b'\\\\x00\\\\xff'\" is not a number"}]
    assert json.loads(rejects["raw"][0])["income"] == "oops"

    fixed = frame.drop(index=[7, 300]).copy()
    fixed.loc[301, "score"] = 12.5
    clean_source, clean_extra = write_source(fixed.reset_index(drop=True), tmp_path, "sqlite", name="clean")
    clean = bigdl.ingest.tabular(clean_source, store=tmp_path / "clean.zarr", **FEATURES, **clean_extra)
    assert_same_state(ds.preprocessor.to_state(), clean.preprocessor.to_state())
    odd, reference = _by_record(ds.path), _by_record(clean.path)
    np.testing.assert_allclose(odd["X"], reference["X"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(odd["y"], reference["y"])


def test_sqlite_column_mostly_text_keeps_its_declared_numeric_type(tmp_path):
    """A REAL column is numeric however many of its sampled cells are text."""
    database = tmp_path / "t.db"
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("CREATE TABLE t (a REAL, n INTEGER, label TEXT)")
        connection.executemany("INSERT INTO t VALUES (?, ?, ?)",
                               [(float(i) if i % 2 else "oops", i if i % 5 else "five", "pq"[i // 2 % 2])
                                for i in range(20)])
    connection.close()
    ds = bigdl.ingest.tabular(f"sqlite:///{database}", table="t", target="label", store=tmp_path / "s.zarr",
                              progress=False)
    assert ds.feature_names == ["a", "n"]
    assert ds.row_counts["rejected_by_reason"] == {"column 'a': not a number": 10, "column 'n': not a number": 2}
    assert ds.row_counts["stored"] == 8


def test_sqlite_target_of_mixed_types_is_read_as_text(tmp_path):
    database = tmp_path / "t.db"
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("CREATE TABLE t (a REAL, label)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", [(float(i), [1, "one"][i % 2]) for i in range(20)])
    connection.close()
    ds = bigdl.ingest.tabular(f"sqlite:///{database}", table="t", target="label", store=tmp_path / "s.zarr",
                              progress=False)
    assert ds.classes == ["1", "one"]
    assert ds.row_counts["stored"] == 20
