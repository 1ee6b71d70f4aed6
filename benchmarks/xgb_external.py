"""XGBoost on a train split larger than each worker's memory limit: bigdl's external-memory fit vs in memory.

The data: ``--rows`` x ``--features`` float32 (3 classes, nonlinear in the
first ten features), sorted by the strongest driver as real tables come,
written with ``bigdl.store.from_arrays`` (20% test rows).  On a fresh
``start_local(n_workers=2, memory_limit=--memory-limit)`` cluster,
``bigdl.estimators.XGBClassifier`` with ``memory="auto"`` (the train split
is above a third of the workers' memory, so it trains from external memory
in one worker task, the store fed chunk by chunk) against
``xgboost.XGBClassifier(tree_method="hist")`` on the train rows held in this
process, with the same parameters; test accuracy, fit time, the peak RSS of
each worker (sampled every 50 ms) and of this process.  One run per side:
at the default size each takes minutes, and what counts is that both reach
the same accuracy while no worker holds the data.

Run ``python -m benchmarks xgb_external --help``.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import describe_machine, format_table, log, machine_info, write_results

__all__ = ["add_parser", "run", "make_store"]

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "xgb_external"


def make_store(path: Path, rows: int, features: int, seed: int = 0):
    """The benchmark's store: 3 classes, nonlinear in the first ten features, rows sorted by feature 0."""
    import bigdl

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    logit = X[:, 0] * 1.5 + np.sin(2 * X[:, 1]) + X[:, 2] * X[:, 3] + 0.5 * X[:, 4:10].sum(1)
    y = np.digitize(logit + rng.normal(scale=0.8, size=rows), [-1.0, 1.0]).astype(np.int64)
    order = np.argsort(X[:, 0], kind="stable")
    return bigdl.store.from_arrays(X[order], y[order], store=path, test=0.2, seed=seed, overwrite=True)


class _PeakRSS:
    def __init__(self, pids):
        import psutil

        self._processes = {pid: psutil.Process(pid) for pid in pids}
        self.peak = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        import psutil

        while not self._stop.wait(0.05):
            for pid, process in self._processes.items():
                try:
                    self.peak[pid] = max(self.peak[pid], process.memory_info().rss)
                except psutil.Error:
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(args: argparse.Namespace) -> int:
    import psutil
    import xgboost

    from bigdl.cluster import start_local
    from bigdl.estimators import XGBClassifier

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    log(describe_machine(info))
    started = time.perf_counter()
    ds = make_store(workdir / f"xgb-{args.rows}x{args.features}.zarr", args.rows, args.features)
    train_rows = int(ds.split_counts["train"])
    train_mib = train_rows * args.features * 4 / 2 ** 20
    log(f"store: {ds.n_samples:,} x {args.features} float32 in {time.perf_counter() - started:.0f} s; train split "
        f"{train_mib:,.0f} MiB, workers' memory limit {args.memory_limit}")
    params = dict(n_estimators=args.trees, max_depth=6, learning_rate=0.3, max_bin=256, random_state=0)
    X_test, y_test = (array.compute() for array in ds.arrays("test"))
    rows = []
    with start_local(n_workers=2, threads_per_worker=1, memory_limit=args.memory_limit) as client:
        pids = list(client.run(os.getpid).values())
        with _PeakRSS(pids) as peaks:
            started = time.perf_counter()
            model = XGBClassifier(**params).fit(ds)
            seconds = time.perf_counter() - started
        accuracy = float((model.predict(X_test) == y_test).mean())
        workers = ", ".join(f"{value / 2 ** 20:,.0f} MiB" for value in peaks.peak.values())
        rows.append([f"bigdl XGBClassifier (memory={model.memory_})", f"{accuracy:.4f}", f"{seconds:.0f}",
                     workers, "-"])
        log(f"bigdl: accuracy {accuracy:.4f} in {seconds:.0f} s, workers' peak RSS {workers}")
    X_train, y_train = (array.compute() for array in ds.arrays("train"))
    with _PeakRSS([os.getpid()]) as peaks:
        started = time.perf_counter()
        reference = xgboost.XGBClassifier(tree_method="hist", n_jobs=2, **params).fit(X_train, y_train)
        seconds = time.perf_counter() - started
    reference_accuracy = float((reference.predict(X_test) == y_test).mean())
    rows.append(["xgboost hist, train split in memory", f"{reference_accuracy:.4f}", f"{seconds:.0f}", "-",
                 f"{peaks.peak[os.getpid()] / 2 ** 20:,.0f} MiB"])
    print()
    print(f"{ds.n_samples:,} rows x {args.features} float32 (train split {train_mib:,.0f} MiB), "
          f"{args.trees} rounds of depth 6, 2 workers x {args.memory_limit}")
    print(format_table(["side", "test accuracy", "fit s", "peak RSS workers", "peak RSS this process"], rows))
    print(f"accuracy difference {abs(accuracy - reference_accuracy) * 100:.2f} points (target <= 0.5); train split "
          f"/ one worker's limit {train_mib / _mib(args.memory_limit):.2f}x")
    write_results(f"xgb_external-{args.rows}x{args.features}", {"machine": info, "rows": rows})
    return 0


def _mib(limit: str) -> float:
    from dask.utils import parse_bytes

    return parse_bytes(limit) / 2 ** 20


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``xgb_external`` subcommand."""
    parser = subparsers.add_parser("xgb_external", help="XGBoost from external memory above the workers' memory "
                                                        "limit vs in memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3_500_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--memory-limit", default="1GiB", help="per worker")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.set_defaults(func=run)
    return parser
