"""Tabular ingest of date/time columns: ISO text, epoch numbers and Parquet timestamps become numeric parts in UTC.

The reference is pandas: ``pd.to_datetime(..., utc=True)`` of each cell, then
its ``year``, ``month``... A stored part, unscaled with the stored mean and
scale, must equal the reference part (or the imputed fill for a missing date).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import ParameterError, SchemaError
from bigdl.preprocessing import DEFAULT_DATETIME_PARTS
from support import in_input_order, write_jsonl

N = 240
PARTS = list(DEFAULT_DATETIME_PARTS)


def _instants(n: int = N) -> pd.DatetimeIndex:
    """Times in UTC, every 7 h 13 min from a winter date (so every hour, weekday and minute varies)."""
    return pd.date_range("2021-01-30 22:50", periods=n, freq="433min", tz="UTC")


def _frame(n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"a": rng.normal(size=n).round(4), "t": rng.choice(["p", "q"], n)})


def _unscaled(ds, feature: str) -> np.ndarray:
    """A stored numeric feature back in its own units."""
    entry = next(entry for entry in ds.preprocessor.numeric_ if entry["name"] == feature)
    column = ds.feature_names.index(feature)
    return ds.X.compute()[:, column].astype(np.float64) * entry["scale"] + entry["mean"]


def _records(ds) -> np.ndarray:
    return ds.group["record"][:]


def _reference_parts(times: pd.Series, parts=PARTS) -> dict[str, np.ndarray]:
    times = pd.to_datetime(times, utc=True).dt.tz_localize(None)
    index = pd.DatetimeIndex(times)
    out = {part: np.asarray(getattr(index, part), dtype=np.float64) for part in parts if part != "epoch_seconds"}
    if "epoch_seconds" in parts:
        out["epoch_seconds"] = (times - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()
    return out


def _assert_parts(ds, column: str, expected: pd.Series, parts=PARTS) -> None:
    """Every stored part of ``column`` equals the reference of the row's input cell (the fill where missing)."""
    rows = _records(ds)
    reference = _reference_parts(expected.iloc[rows].reset_index(drop=True), parts)
    for part in parts:
        feature = f"{column}__{part}"
        entry = next(entry for entry in ds.preprocessor.numeric_ if entry["name"] == feature)
        want = np.where(np.isnan(reference[part]), entry["fill"], reference[part])
        np.testing.assert_allclose(_unscaled(ds, feature), want, rtol=1e-6, atol=1e-3 * max(1.0, entry["scale"]),
                                   err_msg=feature)


# ---------------------------------------------------------------- ISO text, detected from the sample
def test_iso_text_with_zones_mixed_formats_missing_and_bad_dates(tmp_path, caplog):
    instants = _instants()
    cells = pd.Series(instants.strftime("%Y-%m-%d %H:%M:%S"), dtype=object)
    cells[1] = instants[1].strftime("%Y-%m-%dT%H:%M")  # ISO with T, no seconds
    cells[2] = instants[2].tz_convert("Asia/Kolkata").isoformat()  # +05:30
    cells[3] = instants[3].isoformat().replace("+00:00", "Z")
    cells[4] = instants[4].tz_convert("America/New_York").strftime("%Y-%m-%dT%H:%M:%S%z")  # -0500
    cells[5] = ""  # missing: imputed
    cells[6] = "NA"  # missing too
    cells[7] = "not a date"
    cells[8] = "2021-02-30 10:00:00"  # no such day
    cells[9] = instants[9].strftime("%Y-%m-%d")  # a date alone: midnight
    frame = _frame().assign(when=cells)
    frame.to_csv(tmp_path / "d.csv", index=False)
    with caplog.at_level("WARNING", logger="bigdl.ingest._tabular"):
        ds = bigdl.ingest.tabular(tmp_path / "d.csv", target="t", store=tmp_path / "s.zarr", progress=False)
    assert ds.feature_names == ["a"] + [f"when__{part}" for part in PARTS]
    rows = ds.row_counts
    assert (rows["read"], rows["stored"], rows["rejected"]) == (N, N - 2, 2)
    assert rows["rejected_by_reason"] == {"column 'when': not a date/time": 2}
    assert ds.rejects()["reason"].tolist() == ["column 'when': 'not a date' is not a date/time",
                                               "column 'when': '2021-02-30 10:00:00' is not a date/time"]
    assert ds.rejects()["row"].tolist() == [8, 9]
    entry = ds.attrs["preprocessing"]["datetime"][0]
    assert (entry["converted_to_utc"], entry["taken_as_utc"]) == (3, N - 2 - 2 - 3)
    assert [record.getMessage() for record in caplog.records] == [
        f"Date/time column 'when': 3 time(s) with a time zone were converted to UTC and {N - 7} time(s) without "
        "one were taken as UTC. If those are local times, give them an offset (or a time zone) in the source."]
    expected = pd.Series(instants.tz_localize(None), dtype="datetime64[us]").astype(object)
    expected[[5, 6]] = None
    expected[9] = instants[9].normalize().tz_localize(None)
    _assert_parts(ds, "when", pd.Series(pd.to_datetime(expected)))
    assert ds.info()["datetime"]["when"]["parts"] == PARTS


# ---------------------------------------------------------------- every source type gives the same store
@pytest.mark.parametrize("form", ["jsonl-text", "parquet-zoned", "parquet-naive-utc", "parquet-text"])
def test_every_form_of_the_same_instants_gives_the_same_store(tmp_path, form):
    instants = _instants()
    frame = _frame()
    text = frame.assign(when=instants.tz_convert("Europe/Oslo").strftime("%Y-%m-%dT%H:%M:%S%z"))
    text.to_csv(tmp_path / "d.csv", index=False)
    reference = bigdl.ingest.tabular(tmp_path / "d.csv", target="t", store=tmp_path / "r.zarr", progress=False)
    if form == "jsonl-text":
        write_jsonl(text, tmp_path / "d.jsonl")
        path = tmp_path / "d.jsonl"
    else:
        path = tmp_path / "d.parquet"
        values = {"parquet-zoned": instants.tz_convert("Europe/Oslo"),
                  "parquet-naive-utc": instants.tz_localize(None), "parquet-text": text["when"]}[form]
        frame.assign(when=values).to_parquet(path, index=False)
    ds = bigdl.ingest.tabular(path, target="t", store=tmp_path / "s.zarr", progress=False)
    assert ds.feature_names == reference.feature_names
    np.testing.assert_array_equal(ds.X.compute(), reference.X.compute())
    entry = ds.attrs["preprocessing"]["datetime"][0]
    assert entry["converted_to_utc"] == (0 if form == "parquet-naive-utc" else N)


def test_parquet_dates_and_out_of_range_timestamps(tmp_path):
    days = pd.Series(pd.date_range("1999-12-25", periods=N, freq="D").date)
    frame = _frame().assign(day=days)
    frame.to_parquet(tmp_path / "d.parquet", index=False)  # date32
    ds = bigdl.ingest.tabular(tmp_path / "d.parquet", target="t", store=tmp_path / "s.zarr",
                              datetime_parts=["year", "day_of_year", "epoch_seconds"], progress=False)
    _assert_parts(ds, "day", pd.Series(pd.to_datetime(days)), ["year", "day_of_year", "epoch_seconds"])

    import pyarrow as pa
    import pyarrow.parquet as pq

    seconds = (np.arange(N, dtype=np.int64) * 86_400 + 1_600_000_000)
    seconds[[3, 4]] = [253_402_300_800, -62_135_596_801]  # 10000-01-01 and one second before 0001-01-01
    table = pa.table({"a": frame["a"], "t": frame["t"], "when": pa.array(seconds, pa.timestamp("s", tz="UTC"))})
    pq.write_table(table, tmp_path / "far.parquet")
    ds = bigdl.ingest.tabular(tmp_path / "far.parquet", target="t", store=tmp_path / "far.zarr", progress=False)
    assert ds.row_counts["rejected"] == 2
    # Parquet keeps seconds as milliseconds; numpy writes the years Python's datetime cannot.
    assert ds.rejects()["reason"].tolist() == [
        "column 'when': '10000-01-01T00:00:00.000Z' is not a date/time in 0001-01-01 to 9999-12-31",
        "column 'when': '0000-12-31T23:59:59.000Z' is not a date/time in 0001-01-01 to 9999-12-31"]
    assert ds.row_counts["rejected_by_reason"] == {
        "column 'when': not a date/time in 0001-01-01 to 9999-12-31": 2}


# ---------------------------------------------------------------- epoch numbers
def test_epoch_numbers_in_seconds_and_milliseconds(tmp_path):
    instants = _instants()
    seconds = (instants - pd.Timestamp("1970-01-01", tz="UTC")).total_seconds()
    frame = _frame().assign(ts=seconds.astype(np.int64), ms=(seconds * 1000).astype(np.int64).astype(object))
    frame.loc[3, "ms"] = ""          # missing
    frame.loc[4, "ms"] = "soon"      # not a number
    frame.loc[5, "ms"] = "1e30"      # a number, but no date
    frame.loc[6, "ms"] = "-inf"
    frame.to_csv(tmp_path / "d.csv", index=False)
    ds = bigdl.ingest.tabular(tmp_path / "d.csv", target="t", store=tmp_path / "s.zarr",
                              datetime={"ts": None, "ms": "ms"}, progress=False)
    assert ds.feature_names == ["a"] + [f"ts__{part}" for part in PARTS] + [f"ms__{part}" for part in PARTS]
    assert ds.row_counts["rejected"] == 3
    assert ds.rejects()["reason"].tolist() == [
        "column 'ms': 'soon' is not a date/time",
        "column 'ms': '1e30' is not a date/time in 0001-01-01 to 9999-12-31",
        "column 'ms': '-inf' is not a date/time in 0001-01-01 to 9999-12-31"]
    expected = pd.Series(instants)
    _assert_parts(ds, "ts", expected)
    with_missing = expected.astype(object)
    with_missing[3] = None
    _assert_parts(ds, "ms", pd.Series(pd.to_datetime(with_missing, utc=True)))
    assert [entry["unit"] for entry in ds.attrs["preprocessing"]["datetime"]] == ["s", "ms"]


# ---------------------------------------------------------------- the preprocessor reproduces the store
def test_preprocessor_transform_of_new_raw_data_reproduces_the_stored_rows(tmp_path):
    instants = _instants()
    frame = _frame().assign(when=instants.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            ts=(instants - pd.Timestamp("1970-01-01", tz="UTC")).total_seconds() * 1000)
    frame.loc[5, "when"] = None
    frame.to_csv(tmp_path / "d.csv", index=False)
    ds = bigdl.ingest.tabular(tmp_path / "d.csv", target="t", store=tmp_path / "s.zarr", datetime={"ts": "ms"},
                              datetime_parts=["month", "hour", "epoch_seconds"], progress=False)
    (stored,) = in_input_order(ds, "X")  # the store keeps its rows shuffled
    state = json.loads(json.dumps(ds.attrs["preprocessing"]))
    preprocessor = bigdl.preprocessing.TabularPreprocessor.from_state(state)
    # Text as in the file, and the same instants as zone-aware pandas timestamps in another zone.
    np.testing.assert_array_equal(preprocessor.transform(frame), stored)
    zoned = frame.assign(when=pd.to_datetime(frame["when"], utc=True).dt.tz_convert("Asia/Tokyo"))
    np.testing.assert_array_equal(preprocessor.transform(zoned), stored)
    with pytest.raises(SchemaError, match=r"Column 'when' holds 1 value\(s\) that are not dates/times .*'tomorrow' "
                                          r"in row 1 first"):
        preprocessor.transform(frame.head(3).assign(when=["2021-01-01", "tomorrow", None]))


# ---------------------------------------------------------------- parameters and names
@pytest.mark.parametrize("kwargs, message", [
    (dict(datetime_parts=["year", "hours"]), r"The 'datetime_parts' parameter of tabular must be a non-empty list "
                                             r"of distinct names among \{'year', 'quarter'.*Got \['year', 'hours'\]"),
    (dict(datetime_parts=[]), r"'datetime_parts' parameter of tabular"),
    (dict(datetime_parts=["year", "year"]), r"'datetime_parts' parameter of tabular"),
    (dict(datetime={"ts": "minutes"}), r"The 'datetime' parameter of tabular must be None, a list of column names "
                                       r"or a dict of column names to an epoch unit among \{'s', 'ms', 'us', 'ns'\}"),
])
def test_parameters_are_checked(tmp_path, kwargs, message):
    _frame(20).assign(ts=np.arange(20)).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ParameterError, match=message):
        bigdl.ingest.tabular(tmp_path / "d.csv", target="t", store=tmp_path / "s.zarr", progress=False, **kwargs)


@pytest.mark.parametrize("kwargs, frame_extra, message", [
    (dict(datetime=["wen"]), {}, r"Column\(s\) \['wen'\] given in datetime= are not in the data.*'when'"),
    (dict(datetime=["when"], numeric=["when"]), {}, r"\['when'\] are given as both numeric= and datetime="),
    (dict(datetime={"when": "ms"}), {}, r"datetime=\{'when': 'ms'\} gives an epoch unit, but column 'when' holds "
                                        r"timestamps"),
    ({}, {"when__year": 1.0}, r"Two features would be named 'when__year': the numeric column 'when__year' and the "
                              r"'year' part of the date/time column 'when'. Rename the column 'when__year'"),
])
def test_conflicting_roles_and_names_are_refused(tmp_path, kwargs, frame_extra, message):
    frame = _frame(20).assign(when=_instants(20), **frame_extra)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    with pytest.raises(SchemaError, match=message):
        bigdl.ingest.tabular(tmp_path / "d.parquet", target="t", store=tmp_path / "s.zarr", progress=False, **kwargs)


def test_a_categorical_column_stays_text_when_asked(tmp_path):
    frame = _frame(40).assign(when=_instants(40).strftime("%Y-%m-%d"))
    frame.to_csv(tmp_path / "d.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = bigdl.ingest.tabular(tmp_path / "d.csv", target="t", store=tmp_path / "s.zarr", categorical=["when"],
                                  progress=False)
    assert all(name.startswith("when=") for name in ds.feature_names[1:])
