"""Training benchmark: the same model trained in memory, by the Trainer in process and on the default cluster.

Sides, alternating inside every repeat, at each ``--rows`` size (stores of
``rows`` x 32 float32, Blosc-lz4, 20% test rows, so 80% of them train):

``torch-in-memory``
    A plain torch loop over the train split held as two tensors in this
    process: ``torch.randperm`` once per epoch, then ``X[perm[i:i+b]]``
    (BENCHMARKS.md's in-memory shuffled baseline).
``trainer-in-process``
    ``Trainer(..., on_cluster=False)``: the loop in this process, fed by
    ``ChunkLoader`` from the store.
``trainer-fresh-process``
    The same in a fresh Python process for every run (started untimed
    where possible: the epochs' time is measured inside it), so this side,
    like the cluster's, pays what a first fit pays in a new process: a
    cold buffer pool, first-touch page faults, torch's first steps.  The
    in-process side above runs warm after its first run.
``trainer-cluster-fresh-client``
    A fresh Python process per run that starts a default ``start_local()``
    (untimed) and fits on it: a script's first fit on its own cluster.  The
    ``trainer-cluster`` side below runs its fit from this benchmark's
    process, which has trained in process before (see the README: a cluster
    fit there was slower after an in-process fit in the client).
``trainer-cluster``
    ``Trainer.fit`` on a fresh ``bigdl.cluster.start_local()`` with its
    defaults (the side that counts: what every user runs).
``trainer-dask-defaults``
    The same on a plain ``distributed.LocalCluster`` of as many workers with
    distributed's own worker settings (``MALLOC_TRIM_THRESHOLD_=65536``, the
    10 ms profiler): what ``start_local`` gave before it set the workers'
    environment.

Every side trains an MLP 32-64-64-4 with Adam, batch 1024, for ``--epochs``
epochs, from the same initial weights (seeded), with torch on the Trainer's
default number of threads (the plain side uses the same number).  Samples/s
is the train split times the epochs over the epochs' wall time inside the
loop (the Trainer's history; what the plain loop times likewise); fit() wall
s adds the start of the task and the transfer of the weights.  Clusters are
started before the timed run (untimed) and closed after it.  Each Trainer
side's final weights are compared with the in-process side's
(``torch.equal``): the "same weights" column.

Run ``python -m benchmarks training --help``; about 6 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    Side,
    describe_machine,
    format_bytes,
    format_ratio,
    format_table,
    log,
    machine_info,
    measure_alternating,
    summarize,
    target_row,
    write_results,
)

__all__ = ["add_parser", "main", "plain_torch_epochs", "weights_digest"]

DEFAULT_ROWS = "500000,2000000"  # 400k and 1.6M train rows
DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "training"
BATCH_SIZE = 1024
FEATURES = 32
SIDES = ("torch-in-memory", "trainer-in-process", "trainer-fresh-process", "trainer-cluster",
         "trainer-cluster-fresh-client", "trainer-dask-defaults")
TARGET = 0.9  # the default cluster's samples/s over the in-process Trainer's
FRESH_SIDES = ("trainer-fresh-process", "trainer-cluster-fresh-client")  # each run in a child process
# This process's environment before any cluster started: a nanny writes its workers' variables (distributed's
# MALLOC_TRIM_THRESHOLD_=65536, bigdl's allocator settings) into os.environ, and a fresh process must not inherit them.
_ENVIRONMENT_AT_START = dict(os.environ)


def _model():
    import torch

    from bigdl.models import MLP

    torch.manual_seed(0)  # every side starts from the same weights
    return MLP(FEATURES, [64, 64], 4)


def weights_digest(state_dict) -> str:
    """A short hash of a state dict's tensors (names, dtypes, shapes and bytes): equal digests, equal weights.

    Parameters
    ----------
    state_dict : dict of str to torch.Tensor

    Returns
    -------
    str
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def plain_torch_epochs(X, y, epochs: int, batch_size: int, threads: int) -> dict:
    """Train :func:`_model` on in-memory tensors: ``randperm`` per epoch, then ``X[perm[i:i+b]]`` batches.

    Parameters
    ----------
    X, y : torch.Tensor
        The whole train split.
    epochs, batch_size, threads : int

    Returns
    -------
    dict
        ``samples_per_second``, ``epoch_s`` (list), ``train_loss`` and ``weights`` (digest).
    """
    import torch

    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    seconds, loss_sum = [], 0.0
    try:
        for _ in range(epochs):
            started = time.perf_counter()
            perm = torch.randperm(len(X), generator=generator)
            loss_sum, count = 0.0, 0
            for start in range(0, len(X), batch_size):
                index = perm[start:start + batch_size]
                xb, yb = X[index], y[index]
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(xb), yb)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(xb)
                count += len(xb)
            seconds.append(time.perf_counter() - started)
            loss_sum /= max(count, 1)
    finally:
        torch.set_num_threads(before)
    return {"samples_per_second": len(X) * epochs / sum(seconds), "epoch_s": seconds, "train_loss": loss_sum,
            "weights": weights_digest(model.state_dict()), "torch_threads": threads}


class Clusters:
    """The cluster a side runs on: started by its setup (untimed), closed by the next side's setup."""

    def __init__(self):
        self.client = None
        self.environment = None

    def current(self):
        return self.client

    def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            cluster = client.cluster
            client.close()
            cluster.close()

    def start(self, kind: str | None):
        def setup() -> None:
            import gc

            self.close()
            gc.collect()
            if kind == "bigdl":
                import bigdl

                self.client = bigdl.cluster.start_local(quiet=True, dashboard_address=None)
            elif kind == "dask":
                from distributed import Client, LocalCluster

                # An earlier start_local's nannies wrote bigdl's values into this process's environment,
                # which a plain nanny would pass on: distributed's defaults need them gone.
                for key in bigdl_worker_environment():
                    os.environ.pop(key, None)

                # What start_local passes, less the worker environment and profiler interval it adds.
                n_workers = max(1, min(4, os.cpu_count() or 1))
                self.client = Client(LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None), set_as_default=True)
            self.environment = None
            if self.client is not None:
                self.client.run(_warm_imports)
                self.environment = sorted({tuple(sorted(found.items()))
                                           for found in self.client.run(_allocator_environment).values()})
        return setup


def bigdl_worker_environment() -> dict:
    from bigdl.cluster import WORKER_ENVIRONMENT

    return WORKER_ENVIRONMENT


def _allocator_environment() -> dict:
    """On a worker: its glibc allocator variables and profiler interval."""
    import dask

    found = {key: os.environ.get(key) for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    found["profile interval"] = dask.config.get("distributed.worker.profile.interval")
    return found


def _warm_imports() -> int:
    """On a worker: import what the training task needs (untimed)."""
    import bigdl.train  # noqa: F401
    import torch  # noqa: F401

    return os.getpid()


def _trainer_side(name: str, ds, epochs: int, clusters: Clusters, kind: str | None) -> Side:
    def run() -> dict:
        from bigdl.train import Trainer

        trainer = Trainer(_model(), epochs=epochs, batch_size=BATCH_SIZE, seed=0, progress=False,
                          on_cluster=kind is not None)
        history = trainer.fit(ds)
        return {**_trainer_info(trainer, history, ds, epochs), "worker_environment": clusters.environment}

    return Side(name, run, setup=clusters.start(kind))


def _trainer_info(trainer, history, ds, epochs: int) -> dict:
    seconds = [entry["seconds"] for entry in history]
    return {"samples_per_second": ds.split_counts["train"] * epochs / sum(seconds), "epoch_s": seconds,
            "train_loss": history[-1]["train_loss"], "weights": weights_digest(trainer.model.state_dict())}


def _worker_peak_rss() -> int:
    """On a worker: its process's peak RSS in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fit_in_this_process(path: str, epochs: int, on_cluster: bool = False) -> dict:
    """In a fresh process: one fit, its figures and this process's peak RSS.

    ``trainer-fresh-process`` fits in this process; ``trainer-cluster-fresh-client``
    starts a default ``start_local()`` here first (untimed, like the cluster
    sides' setup: workers started, ``torch`` and ``bigdl.train`` imported on
    them) and fits on it: a script's first ``fit`` on its own cluster.
    """
    import bigdl
    from bigdl.train import Trainer

    ds = bigdl.open(path)
    client = None
    if on_cluster:
        client = bigdl.cluster.start_local(quiet=True, dashboard_address=None)
        client.run(_warm_imports)
    try:
        trainer = Trainer(_model(), epochs=epochs, batch_size=BATCH_SIZE, seed=0, progress=False,
                          on_cluster=on_cluster)
        started = time.perf_counter()
        history = trainer.fit(ds)
        fit_s = time.perf_counter() - started
        workers = max(client.run(_worker_peak_rss).values()) if client is not None else None
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**_trainer_info(trainer, history, ds, epochs), "fit_s": fit_s, "worker_peak_rss": workers,
            "process_peak_rss": usage.ru_maxrss * 1024, "process_cpu_s": usage.ru_utime + usage.ru_stime}


def _fresh_process_side(name: str, ds, epochs: int, clusters: Clusters, on_cluster: bool = False) -> Side:
    root = Path(__file__).resolve().parents[1]

    def run() -> dict:
        code = ("import json, sys; from benchmarks.training import fit_in_this_process; print('RESULT ' + "
                f"json.dumps(fit_in_this_process({str(ds.path)!r}, {epochs}, on_cluster={on_cluster})))")
        path = os.pathsep.join(filter(None, [str(root), _ENVIRONMENT_AT_START.get("PYTHONPATH")]))
        environment = dict(_ENVIRONMENT_AT_START, PYTHONPATH=path)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                              env=environment, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            raise RuntimeError(f"the fresh process failed (exit {done.returncode}): {done.stderr[-2000:]}")
        return json.loads(lines[-1][len("RESULT "):])

    return Side(name, run, setup=clusters.start(None))


def _plain_side(ds, epochs: int, clusters: Clusters, threads: int) -> Side:
    tensors: dict[str, Any] = {}

    def setup() -> None:
        import numpy as np
        import torch

        clusters.start(None)()
        if not tensors:  # read once, untimed: the in-memory side holds the split in RAM
            import dask

            X, y = ds.arrays("train")
            X, y = dask.compute(X, y, scheduler="threads")
            tensors["X"] = torch.from_numpy(np.ascontiguousarray(X))
            tensors["y"] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    def run() -> dict:
        return plain_torch_epochs(tensors["X"], tensors["y"], epochs, BATCH_SIZE, threads)

    return Side("torch-in-memory", run, setup=setup)


# ------------------------------------------------------------------ report
def _median(runs, key: str) -> float:
    values = [run.info[key] for run in runs if run.error is None and key in run.info]
    return statistics.median(values) if values else float("nan")


def report(config: dict, machine: dict, sizes: dict) -> str:
    """The text report: setup lines, one table per size, the targets."""
    lines = [
        "# Training benchmark: plain torch in memory vs Trainer in process vs Trainer on the default cluster",
        f"machine: {describe_machine(machine)}",
        f"MLP 32-64-64-4, Adam lr 1e-3, batch {BATCH_SIZE}, {config['epochs']} epochs, torch threads "
        f"{config['torch_threads']} (the Trainer's default here), seed 0, the same initial weights on every side",
        f"runs: {config['repeats']} per side, alternating; command: {config['command']}",
    ]
    tables, targets = [], []
    for rows, part in sizes.items():
        summaries, runs = part["summary"], part["runs"]
        base = _median(runs["trainer-in-process"], "samples_per_second") if "trainer-in-process" in runs \
            else float("nan")
        plain = _median(runs["torch-in-memory"], "samples_per_second") if "torch-in-memory" in runs \
            else float("nan")
        reference = next((run.info.get("weights") for run in runs.get("trainer-in-process", [])
                          if run.error is None), None)
        fresh = _median(runs["trainer-fresh-process"], "samples_per_second") \
            if "trainer-fresh-process" in runs else float("nan")
        table = []
        for name, summary in summaries.items():
            side_runs = runs[name]
            good = [run for run in side_runs if run.error is None]
            rates = [run.info["samples_per_second"] for run in good]
            rate = _median(side_runs, "samples_per_second")
            digests = {run.info.get("weights") for run in good}
            same = "-" if name == "torch-in-memory" or not digests else (
                "yes" if digests == {reference} else f"no ({len(digests)} digests)")
            loss = _median(side_runs, "train_loss")
            first = statistics.median(run.info["epoch_s"][0] for run in good) if good else float("nan")
            later = statistics.median(statistics.mean(run.info["epoch_s"][1:]) for run in good) \
                if good and len(good[0].info["epoch_s"]) > 1 else float("nan")
            wall, client_rss, other = summary.median, summary.peak_rss.get("client", float("nan")), summary.other_cpu
            workers_rss = summary.peak_rss.get("workers", float("nan"))
            if name in FRESH_SIDES and good:
                # The fit ran in a child process: its own fit() time and peak RSS; its CPU is not "other".
                wall = statistics.median(run.info["fit_s"] for run in good)
                client_rss = max(run.info["process_peak_rss"] for run in good)
                cores = os.cpu_count() or 1
                other = statistics.median(max(0.0, run.other_cpu - run.info["process_cpu_s"] / (run.seconds * cores))
                                          for run in good)
                if good[0].info.get("worker_peak_rss"):
                    workers_rss = max(run.info["worker_peak_rss"] for run in good)
                    other = float("nan")  # its workers' CPU is outside the sampled processes
            table.append([name, f"{rate:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}" if rates else "-",
                          format_ratio(rate / base), format_ratio(rate / fresh), format_ratio(rate / plain),
                          f"{first:.3f}", f"{later:.3f}", f"{wall:.2f}", f"{loss:.7f}", same,
                          format_bytes(client_rss),
                          format_bytes(workers_rss), "-" if other != other else f"{other:.0%}"])
            if name == "trainer-cluster":
                targets.append(target_row(f"{part['n_train']:,} train rows: default cluster / in process",
                                          rate / base, TARGET, at_least=True))
            if name == "trainer-cluster-fresh-client" and fresh == fresh:
                targets.append(target_row(f"{part['n_train']:,} train rows: a fresh script's default cluster / "
                                          "in a fresh process", rate / fresh, TARGET, at_least=True))
        n_train = part["n_train"]
        for name in ("trainer-cluster", "trainer-dask-defaults"):
            found = next((run.info.get("worker_environment") for run in runs.get(name, []) if run.error is None), None)
            if found:
                lines.append(f"{name} workers ({rows:,} rows): " + "; ".join(
                    ", ".join(f"{key}={value}" for key, value in environment) for environment in found))
        tables.append(format_table(
            ["side", "samples/s", "spread", "vs in-process", "vs fresh process", "vs torch in memory",
             "first epoch s", "later epochs s", "fit() wall s",
             "final train loss", "same weights", "peak RSS client", "peak RSS workers", "other CPU"],
            table, title=f"\n## {n_train:,} train rows ({rows:,} x {FEATURES} float32 store)"))
    if targets:
        tables.append(format_table(["target", "measured", "result"], targets, title="\n## Targets"))
    return "\n".join(lines + tables)


# ------------------------------------------------------------------ CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``training`` subcommand."""
    parser = subparsers.add_parser("training", help="plain torch in memory vs Trainer in process vs Trainer on "
                                                    "the default start_local() cluster")
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"store sizes in rows, comma-separated (default "
                                                             f"{DEFAULT_ROWS}; 80%% of the rows train)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {','.join(SIDES)}")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the stores are written")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, save JSON; exit status 1 if a run failed."""
    from benchmarks.loader import make_store
    from bigdl.train._trainer import _torch_threads

    sides = [name for name in args.sides.split(",") if name]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        raise SystemExit(f"unknown sides {unknown}; choose among {', '.join(SIDES)}")
    threads = _torch_threads(None)
    config = {"rows": [int(value) for value in args.rows.split(",")], "epochs": args.epochs,
              "repeats": args.repeats, "sides": sides, "torch_threads": threads,
              "command": "python -m benchmarks " + " ".join(getattr(args, "argv", ["training"]))}
    machine = machine_info(["torch", "dask", "distributed", "zarr", "numpy"])
    log(f"training benchmark on {describe_machine(machine)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    clusters = Clusters()
    sizes: dict[int, dict] = {}
    try:
        for rows in config["rows"]:
            ds = make_store(args.workdir / f"train-{rows}x{FEATURES}.zarr", rows, FEATURES)
            choices = {"torch-in-memory": lambda: _plain_side(ds, args.epochs, clusters, threads),
                       "trainer-in-process": lambda: _trainer_side("trainer-in-process", ds, args.epochs,
                                                                   clusters, None),
                       "trainer-fresh-process": lambda: _fresh_process_side("trainer-fresh-process", ds,
                                                                            args.epochs, clusters),
                       "trainer-cluster-fresh-client": lambda: _fresh_process_side(
                           "trainer-cluster-fresh-client", ds, args.epochs, clusters, on_cluster=True),
                       "trainer-cluster": lambda: _trainer_side("trainer-cluster", ds, args.epochs, clusters,
                                                                "bigdl"),
                       "trainer-dask-defaults": lambda: _trainer_side("trainer-dask-defaults", ds, args.epochs,
                                                                      clusters, "dask")}
            runs = measure_alternating([choices[name]() for name in sides], args.repeats,
                                       client=clusters.current, label=f"training {rows:,}: ")
            clusters.close()
            sizes[rows] = {"runs": runs, "summary": {name: summarize(side) for name, side in runs.items()},
                           "n_train": ds.split_counts["train"]}
    finally:
        clusters.close()
    text = report(config, machine, sizes)
    path = write_results("training", {"config": config, "machine": machine, "sizes": sizes})
    print(text)
    log(f"results saved to {path}")
    return 1 if any(summary.errors for part in sizes.values() for summary in part["summary"].values()) else 0
