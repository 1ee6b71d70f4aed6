"""Probabilistic forecasts: QuantileLoss, StackedLSTM(quantiles=...), and the quantile dimension of predict/forecast.

The loss is checked against the pinball formula written out in NumPy; a
model trained with it on a noisy series must order its quantiles and cover
the targets about as the quantiles say (the 10% quantile below far fewer
targets than the 90% one); the Trainer's point figures are the median's,
recomputed here from the predict table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import bigdl
from bigdl.errors import ParameterError, SchemaError
from bigdl.models import StackedLSTM
from bigdl.train import QuantileLoss, Trainer

QUANTILES = [0.1, 0.5, 0.9]


def test_quantile_loss_is_the_pinball_loss():
    rng = np.random.default_rng(0)
    forecast, target = rng.normal(size=(7, 4, 3)), rng.normal(size=(7, 4))
    error = target[..., None] - forecast
    levels = np.asarray(QUANTILES)
    expected = np.mean(np.maximum(levels * error, (levels - 1) * error))
    loss = QuantileLoss(QUANTILES)(torch.from_numpy(forecast), torch.from_numpy(target))
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    # at the median it is half the absolute error
    median = QuantileLoss([0.5])(torch.from_numpy(forecast[..., 1:2]), torch.from_numpy(target))
    assert float(median) == pytest.approx(0.5 * np.mean(np.abs(target - forecast[..., 1])), rel=1e-12)
    with pytest.raises(ParameterError, match="increasing list of floats in \\(0, 1\\)"):
        QuantileLoss([0.9, 0.1])
    with pytest.raises(ParameterError, match="quantiles"):
        QuantileLoss([0.0, 0.5])
    with pytest.raises(SchemaError, match="one value per quantile"):
        QuantileLoss(QUANTILES)(torch.zeros(7, 4, 2), torch.zeros(7, 4))


def test_stacked_lstm_gives_one_output_per_quantile():
    torch.manual_seed(0)
    model = StackedLSTM(3, hidden=8, layers=1, out_features=1, horizon=4, residual=True, target_channels=[2],
                        quantiles=QUANTILES).eval()
    window = torch.randn(5, 10, 3)
    with torch.no_grad():
        base, moved = model(window), model(window + torch.tensor([1.0, -2.0, 7.5]))
    assert base.shape == (5, 4, 3)
    torch.testing.assert_close(moved - base, torch.full_like(base, 7.5))  # every quantile moves with the level
    several = StackedLSTM(3, hidden=8, layers=1, out_features=2, horizon=4, quantiles=QUANTILES)
    assert several(window).shape == (5, 4, 2, 3)
    with pytest.raises(ParameterError, match="quantiles"):
        StackedLSTM(3, quantiles=[0.5, 1.5])


@pytest.fixture(scope="module")
def noisy_store(tmp_path_factory):
    """A daily cycle with strong noise: 1,500 hours, windows of 24 forecasting 2."""
    root = tmp_path_factory.mktemp("quantiles")
    rng = np.random.default_rng(5)
    steps = np.arange(1500)
    values = 10 + 3 * np.sin(2 * np.pi * steps / 24) + rng.normal(0, 1.0, len(steps))
    times = pd.date_range("2024-01-01", periods=len(steps), freq="h")
    pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M"), "value": values.round(4)}).to_csv(root / "n.csv",
                                                                                              index=False)
    return bigdl.ingest.sequences(root / "n.csv", time="time", values=["value"], window=24, horizon=2,
                                  rows_per_chunk=500, store=root / "n.zarr", progress=False)


def test_a_quantile_model_trains_predicts_and_forecasts_its_quantiles(noisy_store):
    torch.manual_seed(0)
    model = StackedLSTM.for_store(noisy_store, hidden=16, layers=1, quantiles=QUANTILES)
    run = Trainer(model, epochs=8, batch_size=64, lr=0.01, on_cluster=False, progress=False)
    run.fit(noisy_store)  # the default loss of a quantile model is its QuantileLoss
    table = run.predict(noisy_store, split="test").compute()
    assert table["forecast"].dims == ("window", "step", "quantile")
    assert list(table["quantile"].to_numpy()) == QUANTILES
    forecast, actual = table["forecast"].to_numpy(), table["actual"].to_numpy()
    assert (np.diff(forecast, axis=-1) > 0).mean() > 0.95  # the quantiles come in order
    below = (actual[..., None] <= forecast).mean(axis=(0, 1))
    assert below[0] < 0.3 and below[2] > 0.7 and below[0] < below[1] < below[2]
    metrics = run.evaluate(noisy_store, split="test")
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(forecast[..., 1] - actual)), rel=1e-5)
    np.testing.assert_allclose([metrics["quantiles"][q]["coverage"] for q in QUANTILES], below, rtol=1e-9)
    levels = np.asarray(QUANTILES)
    error = actual[..., None] - forecast
    pinball = np.maximum(levels * error, (levels - 1) * error).mean(axis=(0, 1))
    np.testing.assert_allclose([metrics["quantiles"][q]["pinball"] for q in QUANTILES], pinball, rtol=1e-5)
    assert metrics["skill"] > 0  # the median beats the seasonal-naive forecast on a noisy cycle
    # past the end: every quantile, and recursively (the median fed back)
    future = run.forecast(noisy_store, horizon=5).compute()
    assert future["forecast"].shape == (1, 5, 3)
    inputs = torch.from_numpy(np.asarray(noisy_store.group["X"][-24:], dtype=np.float32))[None]
    with torch.no_grad():
        first = run.model.eval()(inputs).numpy()  # (1, 2, 3)
        window = torch.cat([inputs, torch.from_numpy(first[:, :, 1:2])], dim=1)[:, -24:]
        second = run.model(window).numpy()
    np.testing.assert_allclose(future["forecast_scaled"].to_numpy()[0, :4], np.concatenate([first, second], 1)[0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(SchemaError, match="QuantileLoss"):
        Trainer(model, loss="mse", on_cluster=False, progress=False).fit(noisy_store)
