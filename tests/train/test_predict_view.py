"""predict and predict_proba see exactly the samples fit and evaluate see, for every store kind.

The regression this guards against: ``Trainer.predict`` on an image store
fed the model raw 0-255 pixels while fit and evaluate normalised them, so the
accuracy of ``predict`` disagreed with ``evaluate`` on the same rows.  Every
path reads the store through its kind's sample view now; the reference here
is the :class:`~bigdl.loaders.torch.ChunkLoader` (what ``evaluate`` scores).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import bigdl
from bigdl.loaders.torch import ChunkLoader
from bigdl.train import Trainer


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    """scikit-learn's digits as 8x8 uint8 images (pixels 0..255), 200 images per chunk."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("predict-digits")
    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)[:, None]
    np.save(root / "digits.npy", pixels)
    return bigdl.ingest.images(root / "digits.npy", labels=digits.target, store=root / "digits.zarr",
                               validation=0.1, test=0.2, rows_per_chunk=200, progress=False)


@pytest.fixture(scope="module")
def series_store(tmp_path_factory):
    """An hourly load panel: windows of 12 steps of (load, temperature) forecasting 3 steps of load."""
    root = tmp_path_factory.mktemp("predict-series")
    bigdl.datasets.make_series_panel(6, 160, seed=4).to_csv(root / "panel.csv", index=False)
    return bigdl.ingest.sequences(root / "panel.csv", time="time", series="series", target="load", window=12,
                                  horizon=3, rows_per_chunk=128, store=root / "panel.zarr", progress=False)


def _flat_model(ds, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    width = int(np.prod(ds.sample_shape))
    out = ds.n_classes if ds.task == "classification" else int(np.prod(ds.view.target_shape) or 1)
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, out))


def _loader_outputs(model: nn.Module, ds, split: str):
    """Outputs and targets of ``model`` over the loader's ``split``, in order (evaluate's view of the data)."""
    model = model.eval()
    outputs, targets = [], []
    with torch.no_grad():
        for X, y in ChunkLoader(ds, split, batch_size=97, shuffle=False):
            outputs.append(model(X).numpy())
            targets.append(y.numpy())
    return np.concatenate(outputs), np.concatenate(targets)


def _as_current(client):
    import contextlib

    return client.as_current() if client is not None else contextlib.nullcontext()


def test_image_predict_agrees_with_evaluate(digits_store, client):
    run = Trainer(_flat_model(digits_store), epochs=8, batch_size=32, seed=1, on_cluster=False, progress=False)
    run.fit(digits_store)
    outputs, labels = _loader_outputs(run.model, digits_store, "test")
    with _as_current(client):
        codes = run.predict(digits_store, split="test").compute()
        probabilities = run.predict_proba(digits_store, split="test").compute()
    assert codes.shape == (digits_store.split_counts["test"],)
    np.testing.assert_array_equal(codes, outputs.argmax(1))
    np.testing.assert_allclose(probabilities, torch.softmax(torch.from_numpy(outputs), 1).numpy(),
                               rtol=1e-5, atol=1e-6)  # float32 softmax, same batches up to summation order
    accuracy = run.evaluate(digits_store, split="test")["accuracy"]
    assert float((codes == labels).mean()) == pytest.approx(accuracy, abs=1e-12)
    assert accuracy > 0.85  # it learned: the comparison is between two real answers


def test_image_samples_are_normalised_everywhere(digits_store):
    stored = digits_store.group["X"][:200]
    expected = digits_store.view.to_model(stored)
    X, _ = digits_store.arrays("all")
    np.testing.assert_allclose(X[:200].compute(), expected, rtol=1e-6)
    chunk, _ = digits_store.read_chunk(0)
    np.testing.assert_allclose(chunk, expected, rtol=1e-6)
    state = digits_store.attrs["preprocessing"]  # measured on the stored pixels at ingest
    mean, std = state["mean"], state["std"]
    np.testing.assert_allclose(expected, (stored / 255.0 - np.reshape(mean, (1, -1, 1, 1)))
                               / np.reshape(std, (1, -1, 1, 1)), rtol=1e-5)
    assert abs(float(np.mean(expected))) < 0.5  # centred, not 0..255


def test_sequence_predict_gives_one_forecast_per_window(series_store, client):
    model = _flat_model(series_store, seed=2)
    run = Trainer(model, epochs=1, batch_size=64, seed=1, on_cluster=False, progress=False)
    run.fit(series_store)
    outputs, _ = _loader_outputs(run.model, series_store, "test")
    with _as_current(client):
        table = run.predict(series_store, split="test").compute()
    forecast = table["forecast_scaled"].to_numpy()
    assert forecast.shape == (series_store.view.chunk_counts("test").sum(), 3) == outputs.shape
    np.testing.assert_allclose(forecast, outputs, rtol=1e-5, atol=1e-5)
    # in the target's original units, beside the actual values
    np.testing.assert_allclose(table["forecast"].to_numpy(), series_store.unscale(outputs), rtol=1e-5, atol=1e-4)
    _, targets = _loader_outputs(run.model, series_store, "test")
    np.testing.assert_allclose(table["actual"].to_numpy(), series_store.unscale(targets), rtol=1e-6, atol=1e-4)
    metrics = run.evaluate(series_store, split="test")
    assert np.mean((forecast - targets) ** 2) == pytest.approx(metrics["mse_scaled"], rel=1e-4)


def test_sequence_forecasts_carry_their_series_and_dates(series_store):
    """Each forecast's series, origin and target times, against the raw panel."""
    from bigdl.models import StackedLSTM

    torch.manual_seed(0)
    model = StackedLSTM.for_store(series_store, hidden=4, layers=1, residual=True)  # the model of the issue
    run = Trainer(model, epochs=1, batch_size=64, on_cluster=False, progress=False)
    run.fit(series_store)
    table = run.predict(series_store, split="test").compute()
    assert table["time"].dtype == np.dtype("datetime64[ns]") and table.sizes == {"window": len(table.window),
                                                                                "step": 3}
    raw = bigdl.datasets.make_series_panel(6, 160, seed=4)
    raw["time"] = pd.to_datetime(raw["time"])
    load = raw.set_index(["series", "time"])["load"]
    load = load[~load.index.duplicated(keep="last")]
    hour = np.timedelta64(1, "h")
    np.testing.assert_array_equal(table["time"].to_numpy(),
                                  table["origin"].to_numpy()[:, None] + hour * np.arange(1, 4)[None, :])
    # the actual values at (series, target time) are the panel's loads where the panel has them
    keys = pd.MultiIndex.from_arrays([np.repeat(table["series"].to_numpy(), 3), table["time"].to_numpy().ravel()])
    known = keys.isin(load.index)
    assert known.mean() > 0.9
    np.testing.assert_allclose(table["actual"].to_numpy().ravel()[known], load.loc[keys[known]].to_numpy(),
                               rtol=1e-5, atol=1e-3)
    assert set(table["series"].to_numpy()) <= set(raw["series"].astype(str))
    assert (table["origin"].to_numpy() >= raw["time"].min().to_datetime64()).all()


def test_tabular_predict_matches_the_loader_on_every_split(classification_store, client):
    run = Trainer(_flat_model(classification_store, seed=3), epochs=1, batch_size=128, seed=1, on_cluster=False,
                  progress=False)
    run.fit(classification_store)
    for split in ("train", "validation", "test"):
        outputs, labels = _loader_outputs(run.model, classification_store, split)
        with _as_current(client):
            codes = run.predict(classification_store, split=split).compute()
        np.testing.assert_array_equal(codes, outputs.argmax(1))
        if split == "test":
            accuracy = run.evaluate(classification_store, split="test")["accuracy"]
            assert float((codes == labels).mean()) == pytest.approx(accuracy, abs=1e-12)


def test_predict_of_numpy_and_dask_input_agree(classification_store):
    import dask.array as da

    run = Trainer(_flat_model(classification_store, seed=4), epochs=1, on_cluster=False, progress=False)
    run.fit(classification_store)  # the task is remembered: plain arrays then give class codes too
    X, _ = classification_store.arrays("test")
    lazy = run.predict_proba(da.from_array(X.compute(), chunks=333)).compute()
    eager = run.predict_proba(X.compute())
    assert isinstance(eager, np.ndarray) and lazy.shape == eager.shape == (len(eager), 3)
    np.testing.assert_allclose(lazy, eager, rtol=1e-6)
    assert pd.Series(run.predict(X.compute())).between(0, 2).all()
