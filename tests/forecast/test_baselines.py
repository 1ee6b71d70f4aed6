"""bigdl.forecast.baselines equals statsmodels run in memory, at the origins Trainer.predict forecasts from.

The reference is written here without the library's window code: each
series' test origins are counted from the split fractions, its models are
fitted on its first (training) steps, and each origin's forecast is
``results.apply(y[:origin + 1]).forecast(horizon)``, the plain "update the
state with the new observations, keep the parameters" of statsmodels.  The
library filters each series once instead, which must give the same numbers
(to 1e-6 relative: the same data, the same fitted parameters, the Kalman
filter's arithmetic in another order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import ParameterError, SchemaError

WINDOW, HORIZON, SEASON, LENGTH = 24, 6, 12, 96


@pytest.fixture(scope="module")
def monthly_panel(tmp_path_factory):
    """Three monthly series (trend, yearly cycle, noise) of 96 months; the last quarter of each is the test split."""
    root = tmp_path_factory.mktemp("baselines")
    rng = np.random.default_rng(3)
    dates = pd.date_range("2000-01-01", periods=LENGTH, freq="MS")
    frames = []
    for index, name in enumerate(["a", "b", "c"]):
        steps = np.arange(LENGTH)
        values = (20 + 5 * index + (0.05 + 0.05 * index) * steps + (2 + index) * np.sin(2 * np.pi * steps / 12)
                  + rng.normal(0, 0.4, LENGTH))
        frames.append(pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "sid": name, "value": values.round(4)}))
    pd.concat(frames).to_csv(root / "panel.csv", index=False)
    return bigdl.ingest.sequences(root / "panel.csv", time="date", series="sid", values=["value"], window=WINDOW,
                                  horizon=HORIZON, validation=0.1, test=0.25, rows_per_chunk=100,
                                  store=root / "panel.zarr", progress=False)


def _series_values(ds) -> dict:
    """Each series' values in original units, as the store holds them (the data every model sees)."""
    values = ds.unscale(np.asarray(ds.group["X"][:, 0], dtype=np.float64))
    codes = np.asarray(ds.group["series"][:])
    return {name: values[codes == code] for code, name in enumerate(ds.attrs["series"]["names"])}


def _test_origins(n: int) -> np.ndarray:
    """Origins whose window lies in the series and whose targets all lie in the test split (its last quarter)."""
    test_start = n - int(round(n * 0.25))
    return np.array([origin for origin in range(WINDOW - 1, n - HORIZON)
                     if origin + 1 >= test_start and origin + HORIZON <= n - 1])


def _in_memory(values: np.ndarray, model: str) -> np.ndarray:
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    n = len(values)
    train = values[:n - int(round(n * 0.25)) - int(round(n * 0.1))]
    if model == "arima":
        fitted = ARIMA(train, order=(1, 1, 1), seasonal_order=(0, 1, 1, SEASON)).fit()
    else:
        fitted = ExponentialSmoothing(train, trend=True, damped_trend=True, seasonal=SEASON).fit(disp=False)
    return np.array([fitted.apply(values[:origin + 1]).forecast(HORIZON) for origin in _test_origins(n)])


@pytest.mark.filterwarnings("ignore::UserWarning")  # statsmodels' convergence notes on the reference fits
def test_baselines_equal_statsmodels_in_memory(monthly_panel, client):
    result = bigdl.forecast.baselines(monthly_panel, season=SEASON, series_per_task=2)  # two tasks
    table = result["forecasts"]
    values = _series_values(monthly_panel)
    assert list(table["model"].to_numpy()) == ["naive", "seasonal_naive", "ets", "arima"]
    row = 0
    for name, series in values.items():
        origins = _test_origins(len(series))
        rows = slice(row, row + len(origins))
        assert (table["series"].to_numpy()[rows] == name).all()
        steps = origins[:, None] + np.arange(1, HORIZON + 1)
        np.testing.assert_array_equal(table["actual"].to_numpy()[rows], series[steps])
        forecast = table["forecast"].to_numpy()
        np.testing.assert_array_equal(forecast[0, rows], np.repeat(series[origins][:, None], HORIZON, axis=1))
        np.testing.assert_array_equal(forecast[1, rows], series[steps - SEASON])  # horizon <= season
        for index, model in ((2, "ets"), (3, "arima")):
            np.testing.assert_allclose(forecast[index, rows], _in_memory(series, model), rtol=1e-6, atol=1e-6)
        row += len(origins)
    assert row == table.sizes["window"]
    # MASE by hand: each absolute error over its series' in-sample seasonal-naive MAE of the training part
    errors, scales = [], []
    for name, series in values.items():
        n = len(series)
        train = series[:n - int(round(n * 0.25)) - int(round(n * 0.1))]
        scale = np.mean(np.abs(train[SEASON:] - train[:-SEASON]))
        rows = table["series"].to_numpy() == name
        errors.append(np.abs(table["forecast"].to_numpy()[3, rows] - table["actual"].to_numpy()[rows]).ravel())
        scales.append(np.full(errors[-1].shape, scale))
    mase = float(np.mean(np.concatenate(errors) / np.concatenate(scales)))
    metrics = result["metrics"]
    assert metrics["arima"]["mase"] == pytest.approx(mase, rel=1e-9)
    assert metrics["arima"]["skill"] == pytest.approx(1 - mase / metrics["seasonal_naive"]["mase"], rel=1e-9)
    assert metrics["seasonal_naive"]["skill"] == 0.0
    assert metrics["arima"]["mase"] < metrics["naive"]["mase"]  # a real model on a seasonal series


def test_baselines_line_up_with_the_networks_windows(monthly_panel):
    import torch

    from bigdl.models import StackedLSTM
    from bigdl.train import Trainer

    torch.manual_seed(0)
    run = Trainer(StackedLSTM.for_store(monthly_panel, hidden=4, layers=1), on_cluster=False, progress=False)
    predicted = run.predict(monthly_panel, split="test").compute()
    result = bigdl.forecast.baselines(monthly_panel, models=["naive", "seasonal_naive"])
    table = result["forecasts"]
    assert result["season"] == SEASON  # inferred from the month-start grid
    for name in ("series", "origin", "time"):
        np.testing.assert_array_equal(table[name].to_numpy(), predicted[name].to_numpy())
    np.testing.assert_allclose(table["actual"].to_numpy(), predicted["actual"].to_numpy(), rtol=1e-12)
    # the seasonal-naive figures are evaluate's, on the same windows and scales
    evaluated = run.evaluate(monthly_panel, split="test")
    for model in ("naive", "seasonal_naive"):
        for figure in ("mse", "mae", "mase", "smape"):
            assert result["metrics"][model][figure] == pytest.approx(evaluated["baselines"][model][figure], rel=1e-9)


def test_baselines_refuse_what_they_cannot_do(monthly_panel, tmp_path):
    with pytest.raises(ParameterError, match="models"):
        bigdl.forecast.baselines(monthly_panel, models=["prophet"])
    with pytest.raises(ParameterError, match="initialization_method='concentrated'"):
        bigdl.forecast.baselines(monthly_panel, models=["ets"], ets={"initialization_method": "concentrated"})
    with pytest.raises(SchemaError, match="cannot be fitted on the training part of series 'a'"):
        bigdl.forecast.baselines(monthly_panel, models=["arima"],
                                 arima={"order": (1, 1, 1), "seasonal_order": (1, 1, 1, 1)})



def test_a_forecast_sees_nothing_after_its_origin(monthly_panel, tmp_path):
    """Three late test months of series 'a' jump by 5: no forecast from an origin before them changes."""
    frame = pd.read_csv(_panel_csv(monthly_panel))
    rows = frame.index[frame["sid"] == "a"][-10:-7]  # inputs of the last test windows
    frame.loc[rows, "value"] += 5.0
    frame.to_csv(tmp_path / "changed.csv", index=False)
    changed = bigdl.ingest.sequences(tmp_path / "changed.csv", time="date", series="sid", values=["value"],
                                     window=WINDOW, horizon=HORIZON, validation=0.1, test=0.25, rows_per_chunk=100,
                                     store=tmp_path / "changed.zarr", progress=False)
    before = bigdl.forecast.baselines(monthly_panel, models=["ets", "arima"], season=SEASON)["forecasts"]
    after = bigdl.forecast.baselines(changed, models=["ets", "arima"], season=SEASON)["forecasts"]
    first_changed = pd.Timestamp(frame.loc[rows[0], "date"]).to_datetime64()
    untouched = ((before["series"] != "a") | (before["origin"] < first_changed)).to_numpy()
    assert 0 < (~untouched).sum() < len(untouched)
    np.testing.assert_allclose(after["forecast"].to_numpy()[:, untouched], before["forecast"].to_numpy()[:, untouched],
                               rtol=1e-9)
    assert not np.allclose(after["forecast"].to_numpy()[:, ~untouched], before["forecast"].to_numpy()[:, ~untouched])


def _panel_csv(ds):
    return ds.path.parent / "panel.csv"
