"""10-class classification with the 100 -> 64 -> 64 -> 10 MLP (Adam, cross entropy) from CSV files.

Generates a 10-class problem with 100 numeric features as CSV, ingests it
(80/10/10 split), trains the MLP on a Dask worker with Adam, evaluates on
the test split, and saves the learning curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bigdl
from bigdl.models import MLP
from bigdl.train import Trainer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workdir", default="work/classification")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    client = bigdl.cluster.start_or_connect(n_workers=2, memory_limit="3GiB")

    files = bigdl.datasets.write_tabular_csv(workdir / "csv", args.rows, n_files=4, n_numeric=100, n_classes=10,
                                            with_category=False, seed=1)
    ds = bigdl.ingest.tabular([str(path) for path in files], target="target", store=workdir / "classes.zarr",
                              drop=["id"], validation=0.1, test=0.1, overwrite=True)
    print(ds.info())

    import torch

    torch.manual_seed(0)
    trainer = Trainer(MLP(ds.n_features, [64, 64], ds.n_classes), optimizer="adam", lr=1e-3,
                      loss="cross_entropy", epochs=args.epochs, batch_size=256, seed=0,
                      checkpoint_dir=str(workdir / "checkpoints"))
    for entry in trainer.fit(ds):
        print(f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}  validation loss "
              f"{entry['val_loss']:.4f}  accuracy {entry['val_accuracy']:.4f}  "
              f"({entry['samples_per_second']:,.0f} samples/s on {entry['worker']})")
    metrics = trainer.evaluate(ds, split="test")
    print(f"\ntest: loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f} on {metrics['n_samples']:,} rows")
    print(f"learning curves: {trainer.plot_history(workdir / 'learning_curves.png')}")
    client.close()


if __name__ == "__main__":
    main()
