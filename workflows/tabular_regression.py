"""Regression with the 2 -> 3 -> 1 MLP: plain gradient descent on MSE, streamed from a store.

Generates a smooth nonlinear regression problem (``y = 2 tanh(x1) - x2 +
0.5 x1 x2 + noise``) as Parquet files, ingests it (80/10/10 split), trains
``MLP(2, [3], 1)`` with SGD on a Dask worker, and reports test MSE / MAE / R2
next to a linear-regression baseline fitted on the same train split, then
prints predictions for a few held-out rows and saves the learning curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import bigdl
from bigdl.models import MLP
from bigdl.train import Trainer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--workdir", default="work/regression")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    client = bigdl.cluster.start_or_connect(n_workers=2, memory_limit="2GiB")

    source = workdir / "parquet"
    source.mkdir(parents=True, exist_ok=True)
    for stale in source.glob("part-*.parquet"):  # a previous run with another --rows
        stale.unlink()
    for index, start in enumerate(range(0, args.rows, 50_000)):
        bigdl.datasets.make_regression(min(50_000, args.rows - start), start=start).to_parquet(
            source / f"part-{index:03d}.parquet", index=False)
    ds = bigdl.ingest.tabular(source, target="y", store=workdir / "regression.zarr", validation=0.1, test=0.1,
                              overwrite=True)
    print(ds.info())

    torch_seed = 0
    import torch

    torch.manual_seed(torch_seed)
    trainer = Trainer(MLP(ds.n_features, [3], 1, activation="tanh"), optimizer="sgd", lr=0.1, loss="mse",
                      epochs=args.epochs, batch_size=64, seed=torch_seed)
    trainer.fit(ds)
    metrics = trainer.evaluate(ds, split="test")

    from sklearn.linear_model import LinearRegression

    X_train, y_train = (array.compute() for array in ds.arrays("train"))
    X_test, y_test = (array.compute() for array in ds.arrays("test"))
    linear = LinearRegression().fit(X_train, y_train)
    residual = linear.predict(X_test) - y_test
    baseline = {"mse": float(np.mean(residual ** 2)), "r2": float(linear.score(X_test, y_test))}

    print(f"\ntest  MLP 2-3-1: MSE {metrics['mse']:.4f}  MAE {metrics['mae']:.4f}  R2 {metrics['r2']:.4f}")
    print(f"      linear    : MSE {baseline['mse']:.4f}  R2 {baseline['r2']:.4f}  (noise variance 0.0100)")
    predictions = trainer.predict(ds, split="test")[:8].compute()
    print("\nheld-out rows (features are standardized):")
    print(pd.DataFrame({"x1": X_test[:8, 0], "x2": X_test[:8, 1], "y": y_test[:8], "predicted": predictions})
          .round(3).to_string(index=False))
    print(f"\nlearning curves: {trainer.plot_history(workdir / 'learning_curves.png')}")
    client.close()


if __name__ == "__main__":
    main()
