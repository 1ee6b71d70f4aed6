"""Estimators on a store vs their in-memory references, in the same run.

* ``Incremental(SGDClassifier)`` over the store (dask-ml, chunk by chunk on the
  cluster) vs a plain ``for`` loop of ``partial_fit`` over the same chunks held
  in memory (same batch size = chunk size, same order): time ratio and accuracy;
* ``ChunkForest(n_estimators=100)`` vs an in-memory
  ``RandomForestClassifier(n_estimators=100, n_jobs=2)`` at growing data
  sizes, the workers' memory limit below the largest training set: time,
  accuracy, peak RSS (the in-memory side runs in this process);
* ``HyperbandSearch`` vs an exhaustive ``GridSearchCV`` over the same grid of
  SGDClassifier settings (same train rows, scored on the same test rows):
  time and test accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._harness import (
    Side,
    describe_machine,
    format_bytes,
    format_table,
    log,
    machine_info,
    measure_alternating,
    summarize,
    target_row,
    write_results,
)

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "estimators"


def make_store(path: Path, rows: int, seed: int = 0):
    """A learnable 3-class problem with 20 features (nonlinear enough for forests), reused if present.

    Chunks of 25,000 rows (2 MB), so even the smallest size has several chunks
    for the forest's tasks.
    """
    import dask.array as da

    import bigdl

    if path.exists():
        ds = bigdl.open(path)
        if ds.n_samples == rows:
            return ds
    state = da.random.RandomState(seed)
    X = state.normal(size=(rows, 20), chunks=(250_000, 20)).astype(np.float32)
    weights = np.random.default_rng(seed).normal(size=(20, 3)).astype(np.float32)
    logits = X @ weights + 1.5 * da.sin(2 * X[:, :3]) @ weights[:3]
    y = logits.argmax(axis=1).astype(np.int64)
    return bigdl.store.from_arrays(X, y, store=path, test=0.2, validation=0.1, overwrite=True,
                                   rows_per_chunk=25_000)


def _cluster(workers: int, memory_limit: str):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                           dashboard_address=":0", processes=True)
    return Client(cluster)


def incremental_sides(ds, client):
    from sklearn.linear_model import SGDClassifier

    from bigdl.estimators import Incremental

    X_train, y_train = ds.arrays("train")
    blocks = [(x.compute(), y.compute()) for x, y in zip(X_train.blocks, y_train.blocks)]
    X_test, y_test = (array.compute() for array in ds.arrays("test"))
    classes = np.arange(ds.n_classes)

    def store_side():
        model = Incremental(SGDClassifier(loss="log_loss", random_state=0), shuffle_blocks=False,
                            scoring="accuracy").fit(ds)
        return {"accuracy": model.score(ds)}

    def memory_side():
        model = SGDClassifier(loss="log_loss", random_state=0)
        for x, y in blocks:
            model.partial_fit(x, y, classes=classes)
        return {"accuracy": model.score(X_test, y_test)}

    return [Side("incremental-store", store_side), Side("partial_fit-memory", memory_side)]


def forest_sides(ds, n_estimators: int):
    from sklearn.ensemble import RandomForestClassifier

    from bigdl.estimators import ChunkForest

    X_test, y_test = (array.compute() for array in ds.arrays("test"))

    def chunk_forest():
        forest = ChunkForest(n_estimators=n_estimators, max_depth=20, random_state=0).fit(ds)
        return {"accuracy": forest.score(X_test, y_test)}

    def memory_forest():
        X, y = (array.compute() for array in ds.arrays("train"))
        forest = RandomForestClassifier(n_estimators=n_estimators, max_depth=20, random_state=0, n_jobs=2).fit(X, y)
        return {"accuracy": forest.score(X_test, y_test)}

    return [Side("chunkforest", chunk_forest), Side("randomforest-memory", memory_forest)]


def search_sides(ds):
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    from bigdl.estimators import HyperbandSearch

    grid = {"alpha": np.logspace(-6, -1, 9).tolist(), "loss": ["hinge", "log_loss", "modified_huber"],
            "penalty": ["l2", "l1"]}
    X_test, y_test = (array.compute() for array in ds.arrays("test"))

    def hyperband():
        search = HyperbandSearch(SGDClassifier(random_state=0, tol=None, max_iter=5), grid, max_iter=27,
                                 random_state=0).fit(ds)
        return {"accuracy": search.score(X_test, y_test), "best": str(search.best_params_)}

    def grid_search():
        X_train, y_train = (array.compute() for array in ds.arrays("train"))
        X_val, y_val = (array.compute() for array in ds.arrays("validation"))
        X = np.concatenate([X_train, X_val])
        y = np.concatenate([y_train, y_val])
        fold = np.r_[np.full(len(X_train), -1), np.zeros(len(X_val))]
        search = GridSearchCV(SGDClassifier(random_state=0, tol=None, max_iter=5), grid,
                              cv=PredefinedSplit(fold), n_jobs=2, refit=False).fit(X, y)
        best = SGDClassifier(random_state=0, tol=None, max_iter=5, **search.best_params_).fit(X_train, y_train)
        return {"accuracy": best.score(X_test, y_test), "best": str(search.best_params_)}

    return [Side("hyperband", hyperband), Side("gridsearch-memory", grid_search)]


def _table_rows(summary, runs):
    rows = []
    for name, item in summary.items():
        accuracy = np.median([run.info.get("accuracy", np.nan) for run in runs[name] if run.error is None] or [np.nan])
        rows.append([name, f"{item.median:.2f}", item.spread(), f"{accuracy:.4f}",
                     format_bytes(item.peak_rss.get("client", 0)), format_bytes(item.peak_rss.get("workers", 0)),
                     format_bytes(item.peak_rss.get("total", 0))])
    return rows


def _accuracy(runs, name):
    values = [run.info.get("accuracy", np.nan) for run in runs[name] if run.error is None]
    return float(np.median(values)) if values else float("nan")


def run(args) -> int:
    info = machine_info(["dask", "distributed", "dask_ml", "sklearn", "zarr"])
    repeats = 1 if args.quick else args.repeats
    base = 100_000 if args.quick else args.rows
    scales = [1, 2] if args.quick else [int(item) for item in args.scales.split(",")]
    headers = ["side", "median s", "spread s", "test accuracy", "RSS client", "RSS workers", "RSS total"]
    tables, ratios, payload = [], [], {"machine": info}
    workdir = Path(args.workdir)
    client = _cluster(args.workers, args.memory_limit)
    try:
        ds = make_store(workdir / f"est-{base}.zarr", base)
        log(f"store: {ds.n_samples:,} x {ds.n_features}, chunks of {ds.rows_per_chunk:,} rows")
        runs = measure_alternating(incremental_sides(ds, client), repeats, client=client, label="incremental: ")
        summary = {name: summarize(items) for name, items in runs.items()}
        tables.append(format_table(headers, _table_rows(summary, runs),
                                   title=f"Incremental(SGDClassifier), one pass over {ds.split_counts['train']:,} rows"))
        ratios.append(["incremental store / partial_fit loop in memory (time)",
                       f"{summary['incremental-store'].median / summary['partial_fit-memory'].median:.2f}x", "info"])
        payload["incremental"] = summary

        forest_rows = []
        for scale in scales:
            ds_scale = make_store(workdir / f"est-{base * scale}.zarr", base * scale)
            runs = measure_alternating(forest_sides(ds_scale, args.trees), repeats, client=client,
                                       label=f"forest {scale}x: ")
            summary = {name: summarize(items) for name, items in runs.items()}
            for row in _table_rows(summary, runs):
                forest_rows.append([f"{scale}x ({ds_scale.split_counts['train']:,} train rows)"] + row)
            gap = _accuracy(runs, "randomforest-memory") - _accuracy(runs, "chunkforest")
            ratios.append(target_row(f"forest accuracy gap at {scale}x (memory - chunk), points",
                                     100 * gap, 1.0, at_least=False))
            payload[f"forest_{scale}x"] = summary
        tables.append(format_table(["data"] + headers, forest_rows,
                                   title=f"ChunkForest vs RandomForestClassifier, {args.trees} trees, max_depth 20, "
                                         f"workers' memory limit {args.memory_limit} each"))

        runs = measure_alternating(search_sides(ds), repeats, client=client, label="search: ")
        summary = {name: summarize(items) for name, items in runs.items()}
        tables.append(format_table(headers, _table_rows(summary, runs),
                                   title="HyperbandSearch (max_iter=27) vs GridSearchCV, 54 SGDClassifier settings"))
        ratios.append(target_row("hyperband time / grid search time", summary["hyperband"].median
                                 / summary["gridsearch-memory"].median, 1 / 3, at_least=False))
        gap = 100 * (_accuracy(runs, "gridsearch-memory") - _accuracy(runs, "hyperband"))
        ratios.append(target_row("search accuracy gap (grid - hyperband), points", gap, 1.0, at_least=False))
        payload["search"] = summary
    finally:
        client.close()
        client.cluster.close()
    print()
    print(f"Machine: {describe_machine(info)}; LocalCluster {args.workers} workers x 1 thread; warm page cache; "
          f"{repeats} alternating runs per side")
    for table in tables:
        print()
        print(table)
    print()
    print(format_table(["comparison", "measured", "verdict"], ratios, title="Ratios (same run)"))
    log(f"results written to {write_results('estimators', payload)}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``estimators`` subcommand."""
    parser = subparsers.add_parser("estimators", help="Incremental, ChunkForest and HyperbandSearch vs in-memory "
                                                      "references", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows at 1x (20 float32 features)")
    parser.add_argument("--scales", default="1,2,4", help="forest data sizes as multiples of --rows")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB", help="per worker")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--quick", action="store_true", help="100k rows, scales 1,2, one run (smoke test)")
    parser.set_defaults(func=run)
    return parser
