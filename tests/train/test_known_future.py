"""Known-future covariates: windows with a decoder part (known channels, calendar features), trained and forecast.

The windows are checked against the raw panel (the future temperatures
where the loads are hidden, the hour of each target step), and the
forecast past the end against the model run by hand on a window built
here from the stored rows and the future values given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import bigdl
from bigdl.errors import ParameterError, SchemaError
from bigdl.loaders.torch import ChunkLoader
from bigdl.models import StackedLSTM
from bigdl.train import Trainer

WINDOW, HORIZON = 12, 3


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    root = tmp_path_factory.mktemp("known-future")
    frame = bigdl.datasets.make_series_panel(3, 200, missing=0.0, seed=2)
    frame.to_csv(root / "p.csv", index=False)
    ds = bigdl.ingest.sequences(root / "p.csv", time="time", series="series", target="load", window=WINDOW,
                                horizon=HORIZON, known_future=["temperature"], calendar=["hour"], rows_per_chunk=128,
                                store=root / "p.zarr", progress=False)
    return ds, frame


def test_windows_carry_the_known_future_and_the_calendar(panel):
    ds, frame = panel
    assert ds.sample_shape == (WINDOW + HORIZON, 2 + 2 + 1)
    X, y, meta = next(iter(ChunkLoader(ds, "train", batch_size=16, shuffle=False, metadata=True)))
    X, y = X.numpy(), y.numpy()
    state = ds.attrs["preprocessing"]
    indexed = frame.assign(time=pd.to_datetime(frame["time"])).set_index(["series", "time"])
    temperature, load = indexed["temperature"], indexed["load"]
    names = np.asarray(ds.attrs["series"]["names"])
    times = meta["target_time"].numpy().view("datetime64[ns]")
    for row in range(len(X)):
        keys = pd.MultiIndex.from_arrays([np.repeat(names[meta["series"].numpy()[row]], HORIZON), times[row]])
        expected = (temperature.loc[keys].to_numpy() - state["mean"][1]) / state["std"][1]
        np.testing.assert_allclose(X[row, WINDOW:, 1], expected, rtol=1e-5, atol=1e-5)  # the known future
        # the targets are the loads of those steps, which the inputs hide
        np.testing.assert_allclose(y[row], (load.loc[keys].to_numpy() - state["mean"][0]) / state["std"][0],
                                   rtol=1e-5, atol=1e-5)
        hours = pd.DatetimeIndex(times[row]).hour.to_numpy()
        np.testing.assert_allclose(X[row, WINDOW:, 2], np.sin(2 * np.pi * hours / 24), atol=1e-6)
        np.testing.assert_allclose(X[row, WINDOW:, 3], np.cos(2 * np.pi * hours / 24), atol=1e-6)
    assert (X[:, WINDOW:, 0] == 0).all()  # the load of the decoder steps is hidden: it is the target
    assert (X[:, :WINDOW, 4] == 0).all() and (X[:, WINDOW:, 4] == 1).all()
    assert y.shape == (len(X), HORIZON)


def test_a_decoder_model_trains_and_forecasts_with_the_given_future(panel):
    ds, _ = panel
    torch.manual_seed(0)
    model = StackedLSTM.for_store(ds, hidden=8, layers=1, residual=True)
    assert model.decoder == {"values": [0, 1], "known": [1]}
    run = Trainer(model, epochs=2, batch_size=64, on_cluster=False, progress=False)
    run.fit(ds)
    assert np.isfinite(run.evaluate(ds, split="test")["mase"])
    table = run.predict(ds, split="test").compute()
    assert table["forecast"].shape == (table.sizes["window"], HORIZON)
    future_temperature = np.full((3, HORIZON), 17.0)
    future = run.forecast(ds, future={"temperature": future_temperature}).compute()
    # by hand: the last 12 stored rows, the future temperature scaled, the hours of the next 3 steps
    state = ds.attrs["preprocessing"]
    start, end = ds.view.series_rows()[1]
    rows = np.asarray(ds.group["X"][end - WINDOW:end], dtype=np.float32)
    last = ds.group["time"][end - 1:end].view("datetime64[ns]")[0]
    hours = pd.DatetimeIndex(np.concatenate([ds.group["time"][end - WINDOW:end].view("datetime64[ns]"),
                                             last + np.timedelta64(1, "h") * np.arange(1, HORIZON + 1)])).hour
    window = np.zeros((WINDOW + HORIZON, 5), dtype=np.float32)
    window[:WINDOW, :2] = rows
    window[WINDOW:, 1] = (17.0 - state["mean"][1]) / state["std"][1]
    window[:, 2], window[:, 3] = np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24)
    window[WINDOW:, 4] = 1.0
    with torch.no_grad():
        expected = ds.unscale(run.model.eval()(torch.from_numpy(window)[None]).numpy())[0]
    np.testing.assert_allclose(future["forecast"].to_numpy()[1], expected, rtol=1e-5, atol=1e-5)
    warmer = run.forecast(ds, future={"temperature": future_temperature + 10}).compute()
    assert not np.allclose(warmer["forecast"].to_numpy(), future["forecast"].to_numpy())  # the decoder reads it
    with pytest.raises(ParameterError, match=r"known_future channels \['temperature'\]"):
        run.forecast(ds)
    with pytest.raises(ParameterError, match=r"shape \(3, 3\)"):
        run.forecast(ds, future={"temperature": np.zeros((3, 2))})
    with pytest.raises(ParameterError, match="no recursion"):
        run.forecast(ds, horizon=5, future={"temperature": future_temperature})


def test_ingest_refuses_a_known_future_target(tmp_path):
    bigdl.datasets.make_series_panel(1, 50, seed=1).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(SchemaError, match="known_future= names the target"):
        bigdl.ingest.sequences(tmp_path / "p.csv", time="time", series="series", target="load",
                               known_future=["load"], store=tmp_path / "p.zarr", progress=False)
    with pytest.raises(ParameterError, match="calendar features are"):
        bigdl.ingest.sequences(tmp_path / "p.csv", time="time", series="series", target="load",
                               calendar=["minute"], store=tmp_path / "p.zarr", progress=False)
