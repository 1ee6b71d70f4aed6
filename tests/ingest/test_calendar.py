"""Calendar grids for sequence stores: month, quarter, year, week and business-day dates round-trip exactly.

Monthly dates used to land on a "31 days" grid that rejected most rows and
invented the rest; these tests ingest each calendar frequency (given, and
inferred from the data), check that every date comes back as written with
nothing inserted, and that a grid needing too many filled steps (or a
nonsense one such as 1 ms over 60 years) is refused, fast, with the count
and the frequency the data suggest.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import SchemaError
from bigdl.preprocessing import _grid

FREQUENCIES = ["MS", "ME", "M", "QS", "Q", "QS-OCT", "YS", "Y", "W-MON", "B"]


def _write(path, dates, series=None) -> str:
    frame = pd.DataFrame({"date": pd.DatetimeIndex(dates).strftime("%Y-%m-%d"),
                          "value": np.sin(np.arange(len(dates)) / 3.0) + np.arange(len(dates)) / 50.0})
    if series is not None:
        frame["sid"] = series
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("given", [True, False], ids=["given", "inferred"])
@pytest.mark.parametrize("frequency", FREQUENCIES)
def test_calendar_dates_round_trip_exactly(tmp_path, frequency, given):
    alias = {"M": "ME", "Q": "QE", "Y": "YE"}.get(frequency, frequency)
    dates = pd.date_range("1950-01-01", periods=90, freq=alias)
    source = _write(tmp_path / "s.csv", dates)
    ds = bigdl.ingest.sequences(source, time="date", values=["value"], store=tmp_path / "s.zarr", window=6,
                                horizon=2, frequency=frequency if given else None, rows_per_chunk=32,
                                progress=False)
    stored = pd.DatetimeIndex(ds.group["time"][:].view("datetime64[ns]"))
    assert stored.equals(dates)
    assert ds.row_counts["rejected"] == 0
    assert ds.attrs["steps"] == {"observed": 90, "inserted": 0, "total": 90}
    assert ds.info()["filled_steps"] == {"": 0}
    assert ds.attrs["preprocessing"]["time"]["calendar"]
    # the stored frequency names the same grid
    assert pd.date_range(dates[0], periods=90, freq=ds.attrs["preprocessing"]["time"]["frequency"]).equals(dates)


def test_shuffled_panel_infers_month_starts_and_fills_a_missing_month(tmp_path):
    dates = pd.date_range("2001-01-01", periods=60, freq="MS")
    frames = []
    for name, drop in (("a", 17), ("b", None)):
        keep = dates if drop is None else dates.delete(drop)
        frames.append(pd.DataFrame({"date": keep.strftime("%Y-%m-%d"), "sid": name, "value": np.arange(len(keep))}))
    panel = pd.concat(frames).sample(frac=1.0, random_state=0)  # rows in no order: infer_freq cannot see it
    panel.to_csv(tmp_path / "p.csv", index=False)
    ds = bigdl.ingest.sequences(tmp_path / "p.csv", time="date", series="sid", values=["value"], blocksize=700,
                                store=tmp_path / "p.zarr", window=6, horizon=2, progress=False, scale=False)
    assert ds.attrs["preprocessing"]["time"]["frequency"] == "MS"
    assert ds.info()["filled_steps"] == {"a": 1, "b": 0}
    series = ds.group["series"][:]
    stored = pd.DatetimeIndex(ds.group["time"][:].view("datetime64[ns]"))
    assert stored[series == 0].equals(dates) and stored[series == 1].equals(dates)
    values = ds.group["X"][:, 0]
    assert values[17] == values[16] == 16  # the missing month carries the previous value (ffill)
    assert "filled steps a 1/60, b 0/60" in str(ds.info())


def test_too_many_filled_steps_are_refused_unless_allowed(tmp_path):
    dates = pd.date_range("1990-01-01", periods=100, freq="MS")
    source = _write(tmp_path / "s.csv", dates.delete(np.arange(10, 100, 10)))  # 9 of 100 months missing
    with pytest.raises(SchemaError, match=r"puts 100 steps .* holding 91 rows, so at least 9 steps \(9\.0%\) would be gap-filled, more than "
                                          r"max_filled=0\.05 allows.*raise max_filled="):
        bigdl.ingest.sequences(source, time="date", store=tmp_path / "a.zarr", progress=False)
    assert not (tmp_path / "a.zarr").exists()
    ds = bigdl.ingest.sequences(source, time="date", store=tmp_path / "b.zarr", max_filled=0.1, progress=False)
    assert ds.attrs["steps"]["inserted"] == 9 and ds.info()["filled_steps"] == {"": 9}


def test_a_fixed_step_on_monthly_dates_is_refused_with_the_likely_frequency(tmp_path):
    source = _write(tmp_path / "s.csv", pd.date_range("1950-01-01", periods=732, freq="MS"))
    with pytest.raises(SchemaError, match=r"frequency='31D' puts 718 steps .* 694 steps \(96\.7%\) would be "
                                          r"gap-filled.*The data look like frequency='MS'"):
        bigdl.ingest.sequences(source, time="date", store=tmp_path / "a.zarr", frequency="31D", progress=False)


def test_a_nonsense_grid_is_refused_before_any_allocation(tmp_path):
    source = _write(tmp_path / "s.csv", pd.date_range("1950-01-01", periods=732, freq="MS"))
    started = time.perf_counter()
    with pytest.raises(SchemaError, match=r"frequency='1ms' puts 1,922,313,600,001 steps .*"
                                          r"frequency='MS'"):
        # max_filled just below 1 still bounds the grid: 1.9e12 steps of 732 rows is beyond any fraction < 1
        bigdl.ingest.sequences(source, time="date", store=tmp_path / "a.zarr", frequency="1ms", max_filled=0.999,
                               progress=False)
    assert time.perf_counter() - started < 10  # it used to die allocating 14 TiB
    # "1MS" is pandas' month start, not one millisecond
    ds = bigdl.ingest.sequences(source, time="date", store=tmp_path / "b.zarr", frequency="1MS", progress=False)
    assert ds.attrs["steps"]["inserted"] == 0 and ds.n_samples == 732


def test_frequency_parsing_and_future_times():
    assert _grid.parse_frequency("7D") == 7 * _grid.DAY_NS
    assert _grid.parse_frequency("1h") == 3600 * 10**9
    assert _grid.parse_frequency("7 days") == 7 * _grid.DAY_NS
    assert _grid.parse_frequency("1ms") == 10**6
    assert _grid.parse_frequency("M") == "ME" and _grid.parse_frequency("Q") == "QE-DEC"
    assert _grid.parse_frequency(pd.offsets.MonthBegin()) == "MS"
    with pytest.raises(SchemaError, match="pandas offset alias"):
        _grid.parse_frequency("monthly")
    last = pd.Timestamp("2020-11-01").value
    future = pd.DatetimeIndex(_grid.future_times(last, "MS", 3).view("datetime64[ns]"))
    assert list(future.strftime("%Y-%m-%d")) == ["2020-12-01", "2021-01-01", "2021-02-01"]
    assert list(_grid.future_times(10.0, 0.5, 2)) == [10.5, 11.0]
