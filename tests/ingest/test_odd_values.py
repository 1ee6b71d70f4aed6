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


# ---------------------------------------------------------------- item 6: non-finite numbers
@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "sqlite"])
def test_non_finite_numbers_are_quarantined_and_leave_the_clean_store(tmp_path, frame, fmt):
    source, extra = _write_with_non_finite(frame, tmp_path, fmt)
    ds = bigdl.ingest.tabular(source, store=tmp_path / "dirty.zarr", **FEATURES, **extra)
    rows = sorted({row for row, _ in NON_FINITE})
    assert ds.row_counts == {"read": N_ROWS, "stored": N_ROWS - 6, "rejected": 6, "rejected_by_reason": {
        "column 'income': not a finite number": 2, "column 'age': not a finite number": 1,
        "column 'score': not a finite number": 2, "column 'ratio': not a finite number": 1}}
    rejects = ds.rejects()
    assert rejects["row"].tolist() == [row + 1 for row in rows]
    assert rejects["reason"].tolist() == [_reason(row, column) for row, column in sorted(NON_FINITE)]
    if fmt == "csv":
        assert rejects["line"].tolist() == [row + 2 for row in rows]
        lines = (tmp_path / "dirty.csv").read_text().splitlines()
        assert rejects["raw"].tolist() == [lines[row + 1] for row in rows]

    # Exactly the store of the input without those rows: same fit, same features, same targets.
    clean_source, clean_extra = write_source(frame.drop(index=rows).reset_index(drop=True), tmp_path, fmt,
                                             name="clean")
    clean = bigdl.ingest.tabular(clean_source, store=tmp_path / "clean.zarr", **FEATURES, **clean_extra)
    assert_same_state(ds.preprocessor.to_state(), clean.preprocessor.to_state())
    dirty, reference = _by_record(ds.path), _by_record(clean.path)
    np.testing.assert_allclose(dirty["X"], reference["X"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(dirty["y"], reference["y"])
    np.testing.assert_array_equal(dirty["record"], np.setdiff1d(np.arange(N_ROWS), rows))
    assert np.isfinite(dirty["X"]).all()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_non_finite_missing_imputes_them_like_missing_values(tmp_path, frame, fmt):
    source, extra = _write_with_non_finite(frame, tmp_path, fmt)
    ds = bigdl.ingest.tabular(source, store=tmp_path / "dirty.zarr", non_finite="missing", impute="median",
                              **FEATURES, **extra)
    with_gaps = frame.copy()
    for row, column in NON_FINITE:
        with_gaps.loc[row, column] = np.nan
    clean_source, clean_extra = write_source(with_gaps, tmp_path, fmt, name="clean")
    clean = bigdl.ingest.tabular(clean_source, store=tmp_path / "clean.zarr", impute="median", **FEATURES,
                                 **clean_extra)
    assert ds.row_counts == clean.row_counts == {"read": N_ROWS, "stored": N_ROWS, "rejected": 0,
                                                 "rejected_by_reason": {}}
    dirty, reference = read_store(ds.path), read_store(clean.path)
    for name in ("X", "y", "split", "record"):
        np.testing.assert_array_equal(dirty[name], reference[name])
    assert ds.preprocessor.to_state()["non_finite"] == "missing"
    assert {key: value for key, value in ds.preprocessor.to_state().items() if key != "non_finite"} == \
        {key: value for key, value in clean.preprocessor.to_state().items() if key != "non_finite"}


@pytest.mark.parametrize("non_finite", ["reject", "missing"])
def test_a_non_finite_regression_target_is_always_quarantined(tmp_path, frame, non_finite):
    text = frame.astype({"price": object})
    text.loc[[3, 250], "price"] = ["inf", "-1e309"]
    path = tmp_path / "prices.csv"
    text.to_csv(path, index=False)
    ds = bigdl.ingest.tabular(path, target="price", drop=["id", "label"], non_finite=non_finite,
                              store=tmp_path / "s.zarr", progress=False)
    assert ds.row_counts["rejected_by_reason"] == {"target 'price': not a finite number": 2}
    assert ds.rejects()[["row", "reason"]].to_dict(orient="records") == [
        {"row": 4, "reason": "target 'price': 'inf' is not a finite number"},
        {"row": 251, "reason": "target 'price': '-inf' is not a finite number"}]
    assert np.isfinite(read_store(ds.path)["y"]).all()


def test_non_finite_spellings_in_text_cells_and_json_lines(tmp_path):
    """Text cells (a column with a word in it reads as text) and JSON's Infinity / 1e309 tokens."""
    lines = ["a,b,t"] + [f"{i},{i % 7},{'pq'[i % 2]}" for i in range(40)]
    lines[3], lines[10], lines[11] = "2,Infinity,q", "9,1e309,p", "10,oops,q"
    (tmp_path / "text.csv").write_text("\n".join(lines) + "\n")
    ds = bigdl.ingest.tabular(tmp_path / "text.csv", target="t", numeric=["b"], store=tmp_path / "t.zarr",
                              progress=False)
    assert ds.rejects()["reason"].tolist() == ["column 'b': 'Infinity' is not a finite number",
                                               "column 'b': '1e309' is not a finite number",
                                               "column 'b': 'oops' is not a number"]
    records = [json.dumps({"a": i, "b": i % 7, "t": "pq"[i % 2]}) for i in range(40)]
    records[4] = '{"a": 4, "b": Infinity, "t": "p"}'
    records[5] = '{"a": 5, "b": -1e309, "t": "q"}'
    records[6] = '{"a": 6, "b": NaN, "t": "p"}'  # NaN is a missing value, imputed
    (tmp_path / "rows.jsonl").write_text("\n".join(records) + "\n")
    ds = bigdl.ingest.tabular(tmp_path / "rows.jsonl", target="t", store=tmp_path / "j.zarr", progress=False)
    assert ds.row_counts["read"] == 40 and ds.row_counts["stored"] == 38
    assert ds.rejects()[["row", "line", "raw", "reason"]].to_dict(orient="records") == [
        {"row": 5, "line": 5, "raw": records[4], "reason": "column 'b': 'inf' is not a finite number"},
        {"row": 6, "line": 6, "raw": records[5], "reason": "column 'b': '-inf' is not a finite number"}]


def test_non_finite_parameter_is_checked(tmp_path):
    with pytest.raises(ParameterError, match=r"^The 'non_finite' parameter of tabular must be a str among "
                                             r"\{'reject', 'missing'\}\. Got 'zero' instead\.$"):
        bigdl.ingest.tabular(tmp_path / "missing.csv", target="label", non_finite="zero", store=tmp_path / "s.zarr")


# ---------------------------------------------------------------- item 10: names
@pytest.mark.parametrize("fmt", ["csv", "parquet", "sqlite"])
def test_a_column_named_like_an_internal_one_is_an_ordinary_feature(tmp_path, frame, fmt):
    renamed = frame.rename(columns={"score": "__record__", "age": "__record___"})
    source, extra = write_source(renamed, tmp_path, fmt, name="odd")
    ds = bigdl.ingest.tabular(source, store=tmp_path / "odd.zarr", **FEATURES, **extra)
    clean_source, clean_extra = write_source(frame, tmp_path, fmt, name="clean")
    clean = bigdl.ingest.tabular(clean_source, store=tmp_path / "clean.zarr", **FEATURES, **clean_extra)
    assert ds.feature_names == [{"score": "__record__", "age": "__record___"}.get(name, name)
                                for name in clean.feature_names]
    odd, reference = read_store(ds.path), read_store(clean.path)
    for name in ("X", "y", "split", "record"):
        np.testing.assert_array_equal(odd[name], reference[name])


def _refused_without_a_store(tmp_path, source, message, **options):
    with pytest.raises(SchemaError) as caught:
        bigdl.ingest.tabular(source, store=tmp_path / "s.zarr", progress=False, **options)
    assert str(caught.value) == message
    assert sorted(path.name for path in tmp_path.iterdir()) == [source.name]  # no store, no temporary


def test_a_column_named_like_a_one_hot_feature_is_refused(tmp_path):
    source = tmp_path / "names.csv"
    source.write_text("c,c=x,t\n" + "".join(f"{'xy'[i % 2]},{i},{'pq'[i % 3 % 2]}\n" for i in range(30)))
    _refused_without_a_store(
        tmp_path, source,
        "Two features would be named 'c=x': the numeric column 'c=x' and the one-hot column of value 'x' of "
        "the categorical column 'c'. Rename the column 'c=x' (or drop it: drop=['c=x']) so that every feature "
        "name is unique.", target="t")


def test_one_hot_names_that_collide_are_refused(tmp_path):
    source = tmp_path / "names.csv"
    source.write_text("a,a=b,t\n" + "".join(f"{['b=c', 'd'][i % 2]},{['c', 'e'][i % 2]},{'pq'[i % 2]}\n"
                                           for i in range(30)))
    _refused_without_a_store(
        tmp_path, source,
        "Two features would be named 'a=b=c': the one-hot column of value 'b=c' of the categorical column 'a' "
        "and the one-hot column of value 'c' of the categorical column 'a=b'. Rename the value or the column so "
        "that every feature name is unique.", target="t")


def test_a_category_named_like_the_other_column_is_refused(tmp_path):
    source = tmp_path / "names.csv"
    source.write_text("c,t\n" + "".join(f"{['__other__', 'u', 'v', 'w'][i % 4]},{'pq'[i % 2]}\n"
                                        for i in range(40)))
    _refused_without_a_store(
        tmp_path, source,
        "Two features would be named 'c=__other__': the one-hot column of value '__other__' of the categorical "
        "column 'c' and the '__other__' column of the rare values of the categorical column 'c'. Rename the "
        "value or the column so that every feature name is unique.", target="t", max_categories=2)


# ---------------------------------------------------------------- item 12: one class
@pytest.mark.parametrize(("labels", "shown"), [(["x"], "'x'"), ([1], "1"), ([True], "True")])
def test_a_single_class_target_is_refused(tmp_path, labels, shown):
    source = tmp_path / "one.csv"
    source.write_text("a,t\n" + "".join(f"{i},{labels[0]}\n" for i in range(20)))
    _refused_without_a_store(tmp_path, source, f"Only one class ({shown}) in the target column 't' of {source}; "
                                               "classification needs at least two classes.",
                             target="t", task="classification")


def test_a_target_left_with_one_class_after_rejects_is_refused(tmp_path):
    source = tmp_path / "one.csv"
    source.write_text("a,t\n" + "".join(f"{i if i % 2 else 'bad'},{'pq'[i % 2]}\n" for i in range(40)))
    _refused_without_a_store(tmp_path, source, f"Only one class ('q') in the target column 't' of {source}; "
                                               "classification needs at least two classes.",
                             target="t", numeric=["a"])


def test_two_classes_are_enough(tmp_path):
    source = tmp_path / "two.csv"
    source.write_text("a,t\n" + "".join(f"{i},{'p' if i else 'q'}\n" for i in range(20)))
    ds = bigdl.ingest.tabular(source, target="t", store=tmp_path / "s.zarr", progress=False)
    assert ds.classes == ["p", "q"]


# ---------------------------------------------------------------- tabular date/time columns
@pytest.mark.parametrize("zone", [None, "Europe/Oslo"])
def test_tabular_timestamp_columns_become_utc_parts_with_or_without_a_time_zone(tmp_path, zone):
    # Zoned timestamps are converted to UTC; naive ones are taken as UTC (tests/ingest/test_dates.py has the rest).
    times = pd.date_range("2021-01-01", periods=10, freq="h", tz=zone)
    path = tmp_path / "times.parquet"
    pd.DataFrame({"when": times, "a": np.arange(10.0), "t": list("pq" * 5)}).to_parquet(path)
    ds = bigdl.ingest.tabular(path, target="t", store=tmp_path / "s.zarr", datetime_parts=["hour", "epoch_seconds"],
                              progress=False)
    assert ds.feature_names == ["a", "when__hour", "when__epoch_seconds"]
    entry = ds.attrs["preprocessing"]["datetime"][0]
    assert (entry["converted_to_utc"], entry["taken_as_utc"]) == ((10, 0) if zone else (0, 10))
    utc = times.tz_convert("UTC") if zone else times.tz_localize("UTC")
    hours = ds.preprocessor.numeric_[1]
    assert (hours["min"], hours["max"]) == (utc.hour.min(), utc.hour.max())


# ---------------------------------------------------------------- sequences: non-finite values (item 6)
N_STEPS = 80
SEQUENCE = dict(time="day", values=["load", "temp"], rows_per_chunk=16, blocksize=600, progress=False)


def _series() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({"day": pd.date_range("2021-01-01", periods=N_STEPS, freq="D").strftime("%Y-%m-%d"),
                         "load": rng.normal(10, 2, N_STEPS).round(3), "temp": rng.normal(0, 1, N_STEPS).round(3)})


def _write_series(frame: pd.DataFrame, path, cells: dict | None = None):
    text = frame.astype(object)
    for (row, column), spelling in (cells or {}).items():
        text.loc[row, column] = spelling
    text.to_csv(path, index=False)
    return path


def _sequence_arrays(path) -> dict:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][:] for name in ("X", "time", "split", "record", "run", "position")}


SEQUENCE_CELLS = {(6, "load"): "inf", (30, "temp"): "-Infinity", (31, "load"): "1e309"}


def test_non_finite_sequence_values_are_quarantined(tmp_path):
    frame = _series()
    ds = bigdl.ingest.sequences(_write_series(frame, tmp_path / "dirty.csv", SEQUENCE_CELLS),
                                store=tmp_path / "dirty.zarr", **SEQUENCE)
    assert ds.row_counts == {"read": N_STEPS, "stored": N_STEPS - 3, "rejected": 3, "rejected_by_reason": {
        "column 'load': not a finite number": 2, "column 'temp': not a finite number": 1}}
    assert ds.rejects()[["row", "line", "reason"]].to_dict(orient="records") == [
        {"row": 7, "line": 8, "reason": "column 'load': 'inf' is not a finite number"},
        {"row": 31, "line": 32, "reason": "column 'temp': '-inf' is not a finite number"},
        {"row": 32, "line": 33, "reason": "column 'load': 'inf' is not a finite number"}]
    # The series without those rows: their steps are gaps, filled forward; the scaling is finite.
    clean = bigdl.ingest.sequences(_write_series(frame.drop(index=[6, 30, 31]), tmp_path / "clean.csv"),
                                   store=tmp_path / "clean.zarr", **SEQUENCE)
    preprocessing = ds.attrs["preprocessing"]
    assert np.isfinite(preprocessing["mean"]).all() and np.isfinite(preprocessing["std"]).all()
    np.testing.assert_allclose(preprocessing["mean"], clean.attrs["preprocessing"]["mean"], rtol=1e-12)
    np.testing.assert_allclose(preprocessing["std"], clean.attrs["preprocessing"]["std"], rtol=1e-12)
    dirty, reference = _sequence_arrays(ds.path), _sequence_arrays(clean.path)
    for name in ("X", "time", "split", "run", "position"):
        np.testing.assert_allclose(dirty[name], reference[name], rtol=1e-6)
    assert ds.attrs["steps"] == {"observed": N_STEPS - 3, "inserted": 3, "total": N_STEPS}


@pytest.mark.parametrize("gaps", ["ffill", "interpolate", "reject"])
def test_non_finite_missing_fills_sequence_values_like_gaps(tmp_path, gaps):
    frame = _series()
    ds = bigdl.ingest.sequences(_write_series(frame, tmp_path / "dirty.csv", SEQUENCE_CELLS), gaps=gaps,
                                non_finite="missing", store=tmp_path / "dirty.zarr", **SEQUENCE)
    empty = {cell: "" for cell in SEQUENCE_CELLS}
    clean = bigdl.ingest.sequences(_write_series(frame, tmp_path / "clean.csv", empty), gaps=gaps,
                                   store=tmp_path / "clean.zarr", **SEQUENCE)
    assert ds.row_counts == clean.row_counts
    if gaps == "reject":
        assert ds.row_counts["rejected_by_reason"] == {"missing value 'load' (gaps='reject')": 2,
                                                       "missing value 'temp' (gaps='reject')": 1}
    dirty, reference = _sequence_arrays(ds.path), _sequence_arrays(clean.path)
    for name, array in reference.items():
        np.testing.assert_array_equal(dirty[name], array)
    assert ds.attrs["preprocessing"]["non_finite"] == "missing"


def test_sequences_non_finite_parameter_is_checked(tmp_path):
    with pytest.raises(ParameterError, match=r"^The 'non_finite' parameter of sequences must be a str among "
                                             r"\{'reject', 'missing'\}\. Got 'zero' instead\.$"):
        bigdl.ingest.sequences(tmp_path / "missing.csv", time="t", non_finite="zero", store=tmp_path / "s.zarr")


def test_a_non_finite_numeric_time_is_quarantined(tmp_path):
    lines = ["t,v"] + [f"{i},{i % 5}" for i in range(40)]
    lines[11] = "inf,3"
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    ds = bigdl.ingest.sequences(tmp_path / "s.csv", time="t", store=tmp_path / "s.zarr", non_finite="missing",
                                progress=False)
    assert ds.rejects()[["row", "reason"]].to_dict(orient="records") == [
        {"row": 11, "reason": "time 't': 'inf' is not a finite number"}]


def test_non_finite_values_of_a_npy_series(tmp_path):
    series = np.column_stack([np.arange(50.0), np.cos(np.arange(50.0))])
    series[[4, 20], [0, 1]] = [np.inf, -np.inf]
    np.save(tmp_path / "s.npy", series)
    ds = bigdl.ingest.sequences(tmp_path / "s.npy", store=tmp_path / "s.zarr", progress=False)
    assert ds.rejects()[["row", "raw", "reason"]].to_dict(orient="records") == [
        {"row": 5, "raw": json.dumps(series[4].tolist()), "reason": "column 'x0': 'inf' is not a finite number"},
        {"row": 21, "raw": json.dumps(series[20].tolist()), "reason": "column 'x1': '-inf' is not a finite number"}]
    assert np.isfinite(ds.attrs["preprocessing"]["mean"]).all()
    filled = bigdl.ingest.sequences(tmp_path / "s.npy", store=tmp_path / "m.zarr", non_finite="missing",
                                    progress=False)
    with_gaps = series.copy()
    with_gaps[~np.isfinite(with_gaps)] = np.nan
    np.save(tmp_path / "g.npy", with_gaps)
    clean = bigdl.ingest.sequences(tmp_path / "g.npy", store=tmp_path / "g.zarr", progress=False)
    np.testing.assert_array_equal(_sequence_arrays(filled.path)["X"], _sequence_arrays(clean.path)["X"])
    assert filled.row_counts == clean.row_counts == {"read": 50, "stored": 50, "rejected": 0,
                                                     "rejected_by_reason": {}}


# ---------------------------------------------------------------- sequences: names (item 10)
def test_sequence_columns_named_like_internal_ones(tmp_path):
    frame = _series()
    odd = frame.rename(columns={"day": "__time__", "load": "__record__", "temp": "v0"}).assign(__series__="s")
    odd.to_csv(tmp_path / "odd.csv", index=False)
    ds = bigdl.ingest.sequences(tmp_path / "odd.csv", time="__time__", series="__series__",
                                values=["__record__", "v0"], store=tmp_path / "odd.zarr",
                                **{key: value for key, value in SEQUENCE.items() if key not in ("time", "values")})
    clean = bigdl.ingest.sequences(_write_series(frame, tmp_path / "clean.csv"), store=tmp_path / "clean.zarr",
                                   **SEQUENCE)
    assert ds.feature_names == ["__record__", "v0"]
    for name, array in _sequence_arrays(clean.path).items():
        np.testing.assert_array_equal(_sequence_arrays(ds.path)[name], array)


@pytest.mark.parametrize(("options", "message"), [
    (dict(values=["load", "load"]), "values= names column(s) ['load'] more than once; name each channel once."),
    (dict(values=["load", "day"]), "Column 'day' is the time column and cannot also be a value column; leave it "
                                   "out of values=."),
    (dict(values=["load", "temp"], series="temp"), "Column 'temp' is the series column and cannot also be a value "
                                                   "column; leave it out of values=."),
    (dict(values=["load"], series="day"), "Column 'day' is given as both time= and series=; the series id needs "
                                          "a column of its own."),
])
def test_a_sequence_column_with_two_roles_is_refused(tmp_path, options, message):
    path = _write_series(_series(), tmp_path / "s.csv")
    arguments = {**SEQUENCE, **options}
    with pytest.raises(SchemaError) as caught:
        bigdl.ingest.sequences(path, store=tmp_path / "s.zarr", **arguments)
    assert str(caught.value) == message


# ---------------------------------------------------------------- sequences: time zones (item 14)
def _daily_utc(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2021-03-20", periods=n, freq="D")


def _times(path) -> np.ndarray:
    return _sequence_arrays(path)["time"]


def test_time_zone_aware_and_naive_times_mix_and_become_utc(tmp_path, caplog):
    days = _daily_utc(40)
    spelled = [day.strftime("%Y-%m-%d %H:%M:%S") for day in days]
    spelled[3] = days[3].strftime("%Y-%m-%dT%H:%M:%SZ")
    spelled[4] = (days[4] + pd.Timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S+02:00")
    spelled[5] = (days[5] - pd.Timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S-0500")
    spelled[6] = days[6].strftime("%Y-%m-%d")  # a date alone, in a column of dates and times
    spelled[7] = "2021-02-30 00:00:00"  # still not a date
    values = np.arange(40.0)
    pd.DataFrame({"day": spelled, "v": values}).to_csv(tmp_path / "mixed.csv", index=False)
    with caplog.at_level(logging.INFO, logger="bigdl.ingest._sequences"):
        ds = bigdl.ingest.sequences(tmp_path / "mixed.csv", time="day", store=tmp_path / "s.zarr", progress=False)
    assert ds.row_counts["rejected_by_reason"] == {"time 'day': not a date/time": 1}
    assert ds.rejects()["reason"].tolist() == ["time 'day': '2021-02-30 00:00:00' is not a date/time"]
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("WARNING", "Time column 'day': 3 time(s) with a time zone were converted to UTC and 36 time(s) without "
                    "one were taken as UTC. If those are local times, give them an offset (or a time zone) in "
                    "the source.")]
    assert ds.attrs["preprocessing"]["time"] == {
        "column": "day", "kind": "datetime", "step": pd.Timedelta("1D").value, "frequency": "D", "calendar": False,
        "unit": "ns", "timezone": "UTC",
        "converted_to_utc": 3, "taken_as_utc": 36}
    np.testing.assert_array_equal(_times(ds.path), days.as_unit("ns").asi8)
    np.testing.assert_array_equal(pd.to_datetime(_times(ds.path)), days)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_zone_aware_times_equal_the_same_instants_in_utc(tmp_path, caplog, fmt):
    instants = _daily_utc(40).tz_localize("UTC") + pd.Timedelta(hours=23)
    local = instants.tz_convert("Europe/Oslo")  # crosses the change to summer time (2021-03-28)
    values = np.sin(np.arange(40.0))
    if fmt == "parquet":
        pd.DataFrame({"day": local, "v": values}).to_parquet(tmp_path / "local.parquet")
        pd.DataFrame({"day": instants.tz_localize(None), "v": values}).to_parquet(tmp_path / "utc.parquet")
    else:
        write_jsonl(pd.DataFrame({"day": [time.isoformat() for time in local], "v": values}), tmp_path / "local.jsonl")
        write_jsonl(pd.DataFrame({"day": [time.strftime("%Y-%m-%d %H:%M:%S") for time in instants], "v": values}),
                    tmp_path / "utc.jsonl")
    with caplog.at_level(logging.INFO, logger="bigdl.ingest._sequences"):
        ds = bigdl.ingest.sequences(tmp_path / f"local.{fmt}", time="day", store=tmp_path / "l.zarr", progress=False)
    assert [record.getMessage() for record in caplog.records] == [
        "Time column 'day': 40 time(s) with a time zone were converted to UTC."]
    reference = bigdl.ingest.sequences(tmp_path / f"utc.{fmt}", time="day", store=tmp_path / "u.zarr",
                                       progress=False)
    assert ds.row_counts == reference.row_counts == {"read": 40, "stored": 40, "rejected": 0,
                                                     "rejected_by_reason": {}}
    for name, array in _sequence_arrays(reference.path).items():
        np.testing.assert_array_equal(_sequence_arrays(ds.path)[name], array)
    assert ds.attrs["preprocessing"]["time"]["converted_to_utc"] == 40
    assert reference.attrs["preprocessing"]["time"]["taken_as_utc"] == 40
