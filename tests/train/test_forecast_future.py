"""Trainer.forecast: forecasts past the end of each series, on the store's grid, in original units.

The reference is a hand-run of the model on the last ``window`` rows of each
series as stored (read straight from Zarr), unscaled with the stored mean
and standard deviation; the future times are pandas' next grid points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import bigdl
from bigdl.errors import ParameterError
from bigdl.models import StackedLSTM
from bigdl.train import Trainer


@pytest.fixture(scope="module")
def monthly_store(tmp_path_factory):
    """Ten years of month-start values (a trend and a yearly cycle); windows of 12 months forecasting 3."""
    root = tmp_path_factory.mktemp("forecast-monthly")
    dates = pd.date_range("1990-01-01", periods=120, freq="MS")
    values = 50 + 0.2 * np.arange(120) + 5 * np.sin(2 * np.pi * np.arange(120) / 12)
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "value": values.round(4)}).to_csv(root / "m.csv", index=False)
    return bigdl.ingest.sequences(root / "m.csv", time="date", values=["value"], store=root / "m.zarr", window=12,
                                  horizon=3, rows_per_chunk=40, progress=False)


@pytest.fixture(scope="module")
def hourly_panel(tmp_path_factory):
    """Five hourly series of (load, temperature) of different lengths; windows of 8 hours forecasting 2 of load."""
    root = tmp_path_factory.mktemp("forecast-hourly")
    frame = bigdl.datasets.make_series_panel(5, 90, seed=7)
    frame = frame[~((frame["series"] == frame["series"].iloc[0]) & (frame.index % 90 > 70))]  # one ends earlier
    frame.to_csv(root / "p.csv", index=False)
    return bigdl.ingest.sequences(root / "p.csv", time="time", series="series", target="load", window=8, horizon=2,
                                  rows_per_chunk=64, store=root / "p.zarr", progress=False)


def _trainer(ds, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    return Trainer(StackedLSTM.for_store(ds, hidden=8, layers=1, residual=True), on_cluster=False, progress=False)


def _by_hand(model, ds, code: int) -> np.ndarray:
    """The model on series ``code``'s last window as stored, unscaled: the forecast's reference."""
    start, end = ds.view.series_rows()[code]
    window = ds.window["window"]
    inputs = torch.from_numpy(np.asarray(ds.group["X"][end - window:end], dtype=np.float32))[None]
    with torch.no_grad():
        return ds.unscale(model.eval()(inputs).numpy())[0]


def test_monthly_forecast_follows_the_calendar(monthly_store):
    run = _trainer(monthly_store)
    future = run.forecast(monthly_store).compute()
    assert future.sizes == {"window": 1, "step": 3}
    assert future["origin"].to_numpy()[0] == np.datetime64("1999-12-01")
    np.testing.assert_array_equal(future["time"].to_numpy()[0],
                                  pd.date_range("2000-01-01", periods=3, freq="MS").to_numpy())
    np.testing.assert_allclose(future["forecast"].to_numpy()[0], _by_hand(run.model, monthly_store, 0),
                               rtol=1e-6, atol=1e-6)


def test_recursive_forecast_equals_feeding_the_model_by_hand(monthly_store):
    run = _trainer(monthly_store, seed=1)
    future = run.forecast(monthly_store, horizon=8).compute()
    assert future.attrs["recursive"] and future.sizes["step"] == 8
    np.testing.assert_array_equal(future["time"].to_numpy()[0],
                                  pd.date_range("2000-01-01", periods=8, freq="MS").to_numpy())
    window = np.asarray(monthly_store.group["X"][-12:], dtype=np.float32)[None]  # (1, 12, 1), scaled
    steps = []
    model = run.model.eval()
    with torch.no_grad():
        while len(steps) < 8:
            out = model(torch.from_numpy(window[:, -12:])).numpy()  # (1, 3): the next 3 months
            steps.extend(out[0].tolist())
            window = np.concatenate([window, out[:, :, None]], axis=1)
    expected = monthly_store.unscale(np.asarray(steps[:8]))
    np.testing.assert_allclose(future["forecast"].to_numpy()[0], expected, rtol=1e-5, atol=1e-5)
    # the first steps are the direct forecast
    np.testing.assert_allclose(future["forecast"].to_numpy()[0, :3], run.forecast(monthly_store)["forecast"][0],
                               rtol=1e-6)


def test_hourly_panel_forecasts_each_series_after_its_own_end(hourly_panel):
    run = _trainer(hourly_panel, seed=2)
    future = run.forecast(hourly_panel).compute()
    raw = bigdl.datasets.make_series_panel(5, 90, seed=7)
    raw["time"] = pd.to_datetime(raw["time"])
    names = hourly_panel.attrs["series"]["names"]
    assert list(future["series"].to_numpy()) == names
    stored = hourly_panel.group["time"][:].view("datetime64[ns]")
    for code, name in enumerate(names):
        end = hourly_panel.view.series_rows()[code][1]
        last = stored[end - 1]
        assert future["origin"].to_numpy()[code] == last
        np.testing.assert_array_equal(future["time"].to_numpy()[code], last + np.timedelta64(1, "h") * np.arange(1, 3))
        np.testing.assert_allclose(future["forecast"].to_numpy()[code], _by_hand(run.model, hourly_panel, code),
                                   rtol=1e-5, atol=1e-4)
    first = str(raw["series"].iloc[0])
    assert future["origin"].to_numpy()[names.index(first)] < future["origin"].to_numpy().max()  # it ended earlier
    chosen = run.forecast(hourly_panel, series=[names[3], names[1]]).compute()
    assert list(chosen["series"].to_numpy()) == [names[3], names[1]]
    np.testing.assert_allclose(chosen["forecast"].to_numpy(), future["forecast"].to_numpy()[[3, 1]], rtol=1e-6)


def test_forecast_refuses_what_it_cannot_do(hourly_panel):
    run = _trainer(hourly_panel)
    with pytest.raises(ParameterError, match=r"needs the future of the input channels \['temperature'\]"):
        run.forecast(hourly_panel, horizon=5)
    with pytest.raises(ParameterError, match="does not have: \\['nope'\\]"):
        run.forecast(hourly_panel, series=["nope"])
    with pytest.raises(ParameterError, match="horizon"):
        run.forecast(hourly_panel, horizon=0)
