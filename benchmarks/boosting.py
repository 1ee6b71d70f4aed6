"""Tabular learners on a store ingested from a sorted table vs what a user would run in memory.

The data: a 3-class problem with 20 float features (nonlinear), written as
Parquet files **sorted by the feature that drives the target most**, as real
tables come sorted (by date, by customer); ingested once per size with
``bigdl.ingest.tabular`` (its default ``shuffle=True``; the ingest is untimed
here, ``benchmarks ingest`` times it).  On the same train rows, scored on
the same test rows:

* ``bigdl-xgb``: ``bigdl.estimators.XGBClassifier`` on the store (xgboost.dask
  when the train split fits the workers, external memory otherwise: the
  report says which);
* ``bigdl-chunkforest``: ``ChunkForestClassifier(n_estimators)`` on the store;
* ``xgboost-memory``: ``xgboost.XGBClassifier(tree_method="hist")`` on the
  train rows in this process;
* ``hgb-memory``: scikit-learn ``HistGradientBoostingClassifier``;
* ``randomforest-memory``: ``RandomForestClassifier(n_estimators, n_jobs=2)``
  (skipped above ``--rf-max-rows``: hours on 2 cores).

At 1x ``chunkforest-unshuffled`` also runs on the same table ingested with
``shuffle=False``: what a per-chunk learner gives on a sorted store.  Sides
alternate; each run reports test accuracy, balanced accuracy, time and the
peak RSS of every process.  Run with ``--scales 1,8 --memory-limit 1GiB`` to
put the largest train split above one worker's memory limit.
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
    write_results,
)

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "boosting"
N_FEATURES = 20
ROWS_PER_FILE = 500_000


def write_sorted_table(folder: Path, rows: int, seed: int = 0) -> list[Path]:
    """Parquet files of ``rows`` rows sorted by ``x00`` (the strongest driver of ``target``); reused if present."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = folder / "DONE"
    if done.exists():
        return sorted(folder.glob("part-*.parquet"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("part-*.parquet"):  # an interrupted earlier write of this benchmark: only its files
        stale.unlink()
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
    weights = rng.normal(size=(N_FEATURES, 3)).astype(np.float32)
    weights[0] = [3.0, 0.0, -3.0]  # x00 drives the target most
    logits = X @ weights + 1.5 * np.sin(2 * X[:, :3]) @ weights[:3]
    y = logits.argmax(axis=1)
    order = np.argsort(X[:, 0], kind="stable")
    X, y = X[order], y[order]
    paths = []
    for number, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        stop = min(start + ROWS_PER_FILE, rows)
        columns = {f"x{index:02d}": X[start:stop, index] for index in range(N_FEATURES)}
        columns["target"] = np.array(["abc"[code] for code in y[start:stop]])
        path = folder / f"part-{number:04d}.parquet"
        pq.write_table(pa.table(columns), path, row_group_size=100_000)
        paths.append(path)
    done.touch()
    return paths


def ingest(files: list[Path], store: Path, *, shuffle: bool):
    import bigdl

    if store.exists():
        ds = bigdl.open(store)
        if ds.attrs.get("row_order", {}).get("shuffled") == shuffle:
            return ds
    return bigdl.ingest.tabular([str(path) for path in files], target="target", store=store, test=0.2,
                                validation=0.1, shuffle=shuffle, overwrite=True, progress=False)


def _scores(y_true, probabilities) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    predicted = np.asarray(probabilities).argmax(axis=1)
    return {"accuracy": float(accuracy_score(y_true, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted))}


def sides(ds, *, trees: int, rf_max_rows: int, unshuffled=None) -> list[Side]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    from bigdl.estimators import ChunkForestClassifier

    # Read here, not gathered on one worker: a whole split may not fit a worker.
    X_test, y_test = (array.compute(scheduler="threads") for array in ds.arrays("test"))
    n_train = ds.split_counts["train"]

    def train_rows():
        return tuple(array.compute(scheduler="threads") for array in ds.arrays("train"))

    def chunk_forest(store):
        def run():
            forest = ChunkForestClassifier(n_estimators=trees, random_state=0).fit(store)
            return _scores(y_test, forest.predict_proba(X_test))
        return run

    def memory(model_factory):
        def run():
            X, y = train_rows()
            return _scores(y_test, model_factory().fit(X, y).predict_proba(X_test))
        return run

    result = []
    try:
        from bigdl.estimators import XGBClassifier
    except ImportError:
        log("bigdl.estimators.XGBClassifier not importable: bigdl-xgb skipped")
    else:
        def bigdl_xgb():
            model = XGBClassifier(n_estimators=trees, random_state=0).fit(ds)
            return {**_scores(y_test, model.predict_proba(X_test)), "path": getattr(model, "memory_", "?")}
        result.append(Side("bigdl-xgb", bigdl_xgb))
    result.append(Side("bigdl-chunkforest", chunk_forest(ds)))
    if unshuffled is not None:
        result.append(Side("chunkforest-unshuffled", chunk_forest(unshuffled)))
    try:
        import xgboost
    except ImportError:
        log("xgboost not importable: xgboost-memory skipped")
    else:
        result.append(Side("xgboost-memory", memory(lambda: xgboost.XGBClassifier(
            n_estimators=trees, tree_method="hist", random_state=0, n_jobs=2))))
    result.append(Side("hgb-memory", memory(lambda: HistGradientBoostingClassifier(max_iter=trees, random_state=0))))
    if n_train <= rf_max_rows:
        result.append(Side("randomforest-memory", memory(lambda: RandomForestClassifier(
            n_estimators=trees, random_state=0, n_jobs=2))))
    return result


def _median(runs, name, key):
    values = [run.info.get(key, np.nan) for run in runs.get(name, []) if run.error is None]
    return float(np.median(values)) if values else float("nan")


def run(args) -> int:
    from distributed import Client, LocalCluster

    info = machine_info(["dask", "distributed", "sklearn", "xgboost", "zarr"])
    scales = [int(item) for item in args.scales.split(",")]
    workdir = Path(args.workdir)
    headers = ["data", "side", "median s", "spread s", "test accuracy", "balanced acc.", "RSS client",
               "RSS workers", "RSS total", "notes"]
    rows, verdicts, payload = [], [], {"machine": info, "config": vars(args) | {"func": None}}
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit,
                           dashboard_address=":0", processes=True)
    client = Client(cluster)
    try:
        for scale in scales:
            n_rows = args.rows * scale
            files = write_sorted_table(workdir / f"table-{n_rows}", n_rows)
            ds = ingest(files, workdir / f"shuffled-{n_rows}.zarr", shuffle=True)
            wants_unshuffled = not args.sides or "chunkforest-unshuffled" in args.sides
            unshuffled = ingest(files, workdir / f"sorted-{n_rows}.zarr", shuffle=False) \
                if scale == scales[0] and wants_unshuffled else None
            train_bytes = ds.split_counts["train"] * (N_FEATURES * 4 + 8)
            label = f"{scale}x ({ds.split_counts['train']:,} train rows, {train_bytes / 2**20:,.0f} MiB)"
            log(f"{label}: store of {ds.n_samples:,} rows in {ds.n_chunks} chunks")
            chosen = [side for side in sides(ds, trees=args.trees, rf_max_rows=args.rf_max_rows,
                                             unshuffled=unshuffled) if not args.sides or side.name in args.sides]
            runs = measure_alternating(chosen, args.repeats, client=client, label=f"{scale}x ")
            summary = {name: summarize(items) for name, items in runs.items()}
            for name, item in summary.items():
                notes = "; ".join(str(run.info["path"]) for run in runs[name][:1] if run.error is None
                                  and "path" in run.info) or ("; ".join({str(run.error) for run in runs[name]
                                                                         if run.error}) or "")
                rows.append([label, name, f"{item.median:.2f}", item.spread(),
                             f"{_median(runs, name, 'accuracy'):.4f}", f"{_median(runs, name, 'balanced_accuracy'):.4f}",
                             format_bytes(item.peak_rss.get("client", 0)), format_bytes(item.peak_rss.get("workers", 0)),
                             format_bytes(item.peak_rss.get("total", 0)), notes[:60]])
            for side, reference, threshold in (("bigdl-xgb", "xgboost-memory", 0.5),
                                               ("bigdl-chunkforest", "randomforest-memory", 1.0)):
                if side in runs and reference in runs:
                    gap = 100 * (_median(runs, reference, "accuracy") - _median(runs, side, "accuracy"))
                    verdicts.append([f"{scale}x: accuracy of {reference} - {side} <= {threshold} points",
                                     f"{gap:.2f} points", "pass" if gap <= threshold else "MISS"])
            payload[f"{scale}x"] = summary
    finally:
        client.close()
        cluster.close()
    print()
    print(f"Machine: {describe_machine(info)}; LocalCluster {args.workers} workers x 1 thread, memory limit "
          f"{args.memory_limit} each; {args.repeats} alternating run(s) per side; {args.trees} trees/rounds")
    print()
    print(format_table(headers, rows, title="Sorted table, shuffled store: test accuracy, time, peak RSS"))
    print()
    print(format_table(["comparison", "measured", "verdict"], verdicts, title="Targets (same run)"))
    log(f"results written to {write_results('boosting', payload)}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``boosting`` subcommand."""
    parser = subparsers.add_parser("boosting", help="XGB and ChunkForest on a store from a sorted table vs in-memory "
                                                    "xgboost, HistGradientBoosting and RandomForest",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows at 1x (20 float features, 3 classes)")
    parser.add_argument("--scales", default="1,8", help="data sizes as multiples of --rows")
    parser.add_argument("--trees", type=int, default=100, help="trees of the forests, boosting rounds")
    parser.add_argument("--rf-max-rows", type=int, default=1_000_000, help="largest train split the in-memory "
                                                                           "RandomForest runs on")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sides", type=lambda text: [name for name in text.split(",") if name], default=[],
                        help="only these sides, separated by commas (default all), e.g. bigdl-xgb,xgboost-memory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB", help="per worker")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.set_defaults(func=run)
    return parser
