"""Time series end to end: a real series and a generated panel -> sequence stores -> stacked LSTM forecasts.

1. the Mauna Loa CO2 weekly series shipped with statsmodels (1958-2001, 59
   missing weeks) is written as CSV and ingested with
   ``bigdl.ingest.sequences`` (gaps interpolated in time, scaled, split by time:
   the last 20% of the weeks are the test split);
2. the 3-layer stacked LSTM (64 units) forecasts the next ``horizon`` weeks from
   a 52-week window, trained on a Dask worker from windows cut at load time;
3. test MSE / MAE in ppm are reported next to a naive last-value forecast and
   a seasonal-naive one (the value 52 weeks earlier), and a forecast-vs-actual
   PNG is saved;
4. a generated panel of hourly series (larger than one store chunk, with
   missing hours) goes through the same path, with the same baselines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import bigdl


def write_co2(path: Path) -> int:
    """The statsmodels CO2 series (weekly, ppm) as CSV ``date,co2``, missing weeks as empty cells."""
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    frame.index.name = "date"
    frame.reset_index().assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return len(frame)


def write_panel(path: Path, n_series: int, length: int) -> int:
    frame = bigdl.datasets.make_series_panel(n_series, length, seed=0)
    frame.to_parquet(path, index=False)
    return len(frame)


def forecasts(trainer, ds, season: int, split: str = "test"):
    """Model, last-value and seasonal-naive forecasts of every ``split`` window, in target units."""
    import torch

    from bigdl.loaders.torch import ChunkLoader

    window = ds.window
    target = ds.feature_names.index(window["targets"][0])
    model = trainer.model.eval()
    predicted, actual, last, seasonal = [], [], [], []
    with torch.no_grad():
        for X, y in ChunkLoader(ds, split, batch_size=2048, shuffle=False):
            predicted.append(model(X).numpy())
            actual.append(y.numpy())
            last.append(np.repeat(X[:, -1:, target].numpy(), window["horizon"], axis=1))
            # The same step one season earlier: inside the window when window >= season.
            steps = window["window"] - season + np.arange(window["horizon"])
            seasonal.append(X[:, steps, target].numpy())
    return {name: ds.unscale(np.concatenate(values))
            for name, values in (("lstm", predicted), ("actual", actual), ("last value", last),
                                 ("seasonal naive", seasonal))}


def report(title: str, result: dict) -> dict:
    actual = result["actual"]
    scores = {name: (float(np.mean((values - actual) ** 2)), float(np.mean(np.abs(values - actual))))
              for name, values in result.items() if name != "actual"}
    print(f"\n{title}: {len(actual):,} test windows")
    print(f"  {'forecast':<16}{'MSE':>10}{'MAE':>10}")
    for name, (mse, mae) in scores.items():
        print(f"  {name:<16}{mse:>10.4f}{mae:>10.4f}")
    return scores


def plot_forecast(ds, result: dict, path: Path, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = result["actual"].shape[1]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for axis, step in zip(axes, (0, horizon - 1)):
        axis.plot(result["actual"][:, step], color="black", linewidth=1.2, label="actual")
        axis.plot(result["lstm"][:, step], color="tab:red", linewidth=1, label="stacked LSTM")
        axis.plot(result["last value"][:, step], color="tab:gray", linewidth=0.8, linestyle=":",
                  label="last value")
        axis.set_title(f"{title}: {step + 1} step(s) ahead")
        axis.set_xlabel("test window")
        axis.legend()
    axes[0].set_ylabel(ds.window["targets"][0])
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return str(path)


def train(ds, epochs: int, seed: int = 0):
    import torch

    from bigdl.models import StackedLSTM
    from bigdl.train import Trainer

    targets = [ds.feature_names.index(name) for name in ds.window["targets"]]
    torch.manual_seed(seed)
    model = StackedLSTM(ds.n_features, hidden=64, layers=3, out_features=len(targets), horizon=ds.window["horizon"],
                        residual=True, target_channels=targets)
    trainer = Trainer(model, optimizer="adam", lr=0.002, loss="mse", epochs=epochs, batch_size=64, seed=seed)
    trainer.fit(ds)
    return trainer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=25, help="epochs on the CO2 series")
    parser.add_argument("--panel-epochs", type=int, default=3)
    parser.add_argument("--series", type=int, default=60, help="series in the generated panel")
    parser.add_argument("--length", type=int, default=2000, help="hours per generated series")
    parser.add_argument("--workdir", default="work/sequences")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    client = bigdl.cluster.start_or_connect(n_workers=2, memory_limit="2GiB")

    # ---- the real series
    rows = write_co2(workdir / "co2.csv")
    print(f"wrote {rows} weeks of Mauna Loa CO2 to {workdir / 'co2.csv'}")
    co2 = bigdl.ingest.sequences(workdir / "co2.csv", time="date", values=["co2"], store=workdir / "co2.zarr",
                                 window=52, horizon=4, frequency="7D", gaps="interpolate", validation=0.1, test=0.2,
                                 overwrite=True)
    print(co2.info())
    trainer = train(co2, args.epochs)
    result = forecasts(trainer, co2, season=52)
    scores = report("Mauna Loa CO2 (ppm), 1-4 weeks ahead", result)
    verdict = "beats" if scores["lstm"][0] < scores["last value"][0] else "does NOT beat"
    print(f"  the stacked LSTM {verdict} the last-value forecast "
          f"(MSE {scores['lstm'][0]:.4f} vs {scores['last value'][0]:.4f})")
    print(f"forecast vs actual: {plot_forecast(co2, result, workdir / 'co2_forecast.png', 'CO2')}")
    print(f"learning curves: {trainer.plot_history(workdir / 'co2_learning_curves.png')}")

    # ---- a generated panel larger than one chunk
    rows = write_panel(workdir / "panel.parquet", args.series, args.length)
    panel = bigdl.ingest.sequences(workdir / "panel.parquet", time="time", series="series",
                                   values=["load", "temperature"], target="load", store=workdir / "panel.zarr",
                                   window=48, horizon=6, stride=4, frequency="1h", gaps="ffill", validation=0.1,
                                   test=0.2, rows_per_chunk=16_384, overwrite=True)
    print(f"\nwrote {rows:,} rows of {args.series} hourly series; {panel.n_chunks} store chunks")
    print(panel.info())
    trainer = train(panel, args.panel_epochs)
    result = forecasts(trainer, panel, season=24)
    scores = report("generated panel (load), 1-6 hours ahead", result)
    print(f"forecast vs actual: {plot_forecast(panel, result, workdir / 'panel_forecast.png', 'panel')}")
    client.close()


if __name__ == "__main__":
    main()
