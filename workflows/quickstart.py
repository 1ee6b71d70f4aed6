"""Quickstart: CSV files -> validated Zarr store -> an incremental classifier, on a local Dask cluster.

1. starts a local Dask cluster (worker processes) and prints the dashboard link;
2. generates a deterministic synthetic data set as CSV files (a few hundred MB by
   default; ``--rows`` makes it as large as you like, larger than memory too),
   with a few malformed rows planted to show the quarantine;
3. ingests it with ``bigdl.ingest.tabular`` (one out-of-core pass to fit
   imputation, scaling and one-hot encoding, then chunked writes);
4. prints the store summary and the first rejected rows;
5. fits ``bigdl.estimators.Incremental(SGDClassifier)`` (dask-ml's, a bar per pass) chunk by chunk on the
   train split and reports test accuracy;
6. trains a PyTorch MLP with ``bigdl.train.Trainer`` inside a task on a Dask
   worker (streaming the store's chunks), and reports test loss and accuracy.

Run it with ``./dev.sh demo`` (or ``python workflows/quickstart.py --help``).
To use an existing cluster instead, set ``DASK_SCHEDULER_ADDRESS``.  On a
cluster without a shared file system, put the store on object storage:
``--store s3://bucket/bigdl/flights.zarr`` uploads the generated CSV files to
``s3://bucket/bigdl/csv/`` first (the workers read them there) and keeps the
Trainer's checkpoints in ``s3://bucket/bigdl/checkpoints/``; credentials and
the endpoint come from ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_REGION`` (README, "Running on Kubernetes").
"""

from __future__ import annotations

import argparse
import posixpath
import time
from pathlib import Path

import bigdl


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_500_000, help="rows of synthetic data (~190 bytes each)")
    parser.add_argument("--files", type=int, default=4, help="number of CSV files")
    parser.add_argument("--workdir", default="work/quickstart",
                        help="where the generated CSV files, the store and the plot go (local)")
    parser.add_argument("--store", help="the store: a path (default WORKDIR/flights.zarr; the CSV inputs stay in "
                                        "WORKDIR/csv, which the workers must see too), or an fsspec URL such as "
                                        "s3://bucket/bigdl/flights.zarr (then the CSV inputs are uploaded beside "
                                        "it and the checkpoints go there too)")
    parser.add_argument("--workers", type=int, default=2, help="local cluster worker processes")
    parser.add_argument("--memory-limit", default="3GiB", help="memory limit per worker")
    parser.add_argument("--bad-rows", type=int, default=30, help="malformed rows planted in the CSV files")
    parser.add_argument("--epochs", type=int, default=3, help="passes of partial_fit over the train split")
    return parser.parse_args(argv)


def is_url(path: str) -> bool:
    """An fsspec URL of a remote file system (``s3://``, ``gs://``, ...), as opposed to a local path."""
    return "://" in path and not path.startswith(("file://", "local://"))


def locations(args: argparse.Namespace) -> dict:
    """Where the store, its CSV inputs and the checkpoints go: beside the store when it is a URL.

    The workers read the inputs and write the store and checkpoints, so on a
    cluster without a shared file system all three must be on the object store.
    """
    workdir = Path(args.workdir)
    if args.store is None or not is_url(args.store):
        store = Path(args.store) if args.store is not None else workdir / "flights.zarr"
        return {"store": store, "inputs": None, "checkpoints": str(workdir / "checkpoints")}
    parent = posixpath.dirname(args.store.rstrip("/"))
    return {"store": args.store, "inputs": f"{parent}/csv", "checkpoints": f"{parent}/checkpoints"}


def upload_inputs(files: list[Path], remote_dir: str) -> list[str]:
    """Copy the generated CSV files to ``remote_dir`` (an fsspec URL), once.

    A file already there with the same size is this data set from a previous
    run (the files are deterministic) and is kept; one of another size is
    someone else's file, which is never replaced.
    """
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(remote_dir)
    urls = []
    for path in files:
        target = f"{root}/{path.name}"
        url = f"{remote_dir}/{path.name}"
        if filesystem.exists(target):
            size = filesystem.size(target)
            if size != path.stat().st_size:
                raise SystemExit(f"{url} exists and is not this quickstart's input ({size:,} bytes, expected "
                                 f"{path.stat().st_size:,}); remove it or choose another --store.")
        else:
            filesystem.put_file(str(path), target)
        urls.append(url)
    return urls


def main(argv=None) -> None:
    args = parse_args(argv)
    workdir = Path(args.workdir)
    where = locations(args)
    client = bigdl.cluster.start_or_connect(n_workers=args.workers, memory_limit=args.memory_limit)

    print(f"\n[1/5] generating {args.rows:,} rows of CSV in {workdir / 'csv'} ...")
    started = time.perf_counter()
    files = bigdl.datasets.write_tabular_csv(workdir / "csv", args.rows, n_files=args.files,
                                            bad_rows=args.bad_rows, missing=0.01, seed=0)
    size_mb = sum(path.stat().st_size for path in files) / 1e6
    print(f"      {len(files)} files, {size_mb:,.0f} MB ({time.perf_counter() - started:.1f} s)")
    sources = [str(path) for path in files]
    if where["inputs"] is not None:
        started = time.perf_counter()
        sources = upload_inputs(files, where["inputs"])
        print(f"      uploaded to {where['inputs']}/ ({time.perf_counter() - started:.1f} s)")

    print(f"\n[2/5] ingesting into a Zarr store at {where['store']} (watch the task stream on the dashboard) ...")
    started = time.perf_counter()
    ds = bigdl.ingest.tabular(
        sources, target="target", store=where["store"],
        categorical=["carrier"], drop=["id"], validation=0.1, test=0.2, seed=0, overwrite=True,
    )
    seconds = time.perf_counter() - started
    print(f"      {size_mb / seconds:,.0f} MB/s ({seconds:.1f} s)\n")
    print(ds.info())
    rejects = ds.rejects()
    if len(rejects):
        print(f"\nfirst rejected rows (all {len(rejects)} are in {ds.rejects_path}):")
        for row in rejects.head(3).itertuples():
            print(f"  {Path(row.source).name} line {row.line}: {row.reason}")

    print("\n[3/5] fitting Incremental(SGDClassifier) chunk by chunk on the train split ...")
    from bigdl.estimators import Incremental  # dask-ml's, with a bar per pass on the cluster too
    from sklearn.linear_model import SGDClassifier

    X_train, y_train = ds.arrays("train")
    X_test, y_test = ds.arrays("test")
    model = Incremental(SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0), scoring="accuracy")
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.partial_fit(X_train, y_train, classes=list(range(ds.n_classes)))
        print(f"      epoch {epoch + 1}/{args.epochs}: validation accuracy "
              f"{model.score(*ds.arrays('validation')):.4f}")
    print(f"      trained in {time.perf_counter() - started:.1f} s")

    accuracy = model.score(X_test, y_test)
    print(f"      test accuracy: {accuracy:.4f} on {ds.split_counts['test']:,} rows (classes {ds.classes})")

    print("\n[4/5] training a PyTorch MLP on a Dask worker, streaming the store's chunks ...")
    import torch

    from bigdl.models import MLP
    from bigdl.train import Trainer

    torch.manual_seed(0)
    trainer = Trainer(MLP(ds.n_features, [64, 64], ds.n_classes), optimizer="adam", lr=1e-3,
                      epochs=args.epochs, batch_size=512, seed=0, checkpoint_dir=where["checkpoints"])
    for entry in trainer.fit(ds):
        print(f"      epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, validation accuracy "
              f"{entry['val_accuracy']:.4f}, {entry['samples_per_second']:,.0f} samples/s on {entry['worker']}")

    print("\n[5/5] evaluating both models on the test split ...")
    metrics = trainer.evaluate(ds, split="test")
    print(f"      Incremental(SGDClassifier): accuracy {accuracy:.4f}")
    print(f"      PyTorch MLP 28-64-64-3    : accuracy {metrics['accuracy']:.4f} (loss {metrics['loss']:.4f})")
    print(f"      learning curves: {trainer.plot_history(workdir / 'learning_curves.png')}")
    client.close()


if __name__ == "__main__":
    main()
