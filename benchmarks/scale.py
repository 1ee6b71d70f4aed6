"""Scale benchmark: ingest and training throughput on 1 and 2 workers, and the limits behind them.

Four measurements, each side run ``--repeats`` times, alternating:

``ingest``
    ``bigdl.ingest.tabular`` over the ingest benchmark's generated CSV
    (``benchmarks.ingest.prepare_data``, seed 0) on a fresh ``LocalCluster``
    of 1, then 2 worker processes x 1 thread (untimed start, imports warmed).
    The task stream splits each run into its read pass, the fit on the client
    between the passes, and the write pass, and gives each pass's parallel
    efficiency (task seconds / (pass wall time x workers)).
``train``
    ``bigdl.train.Trainer`` for one epoch of an MLP 32-64-64-4 (Adam, batch
    1024, torch on one thread per process) over a ``from_arrays`` store of
    ``--train-rows`` x 32 float32, with ``n_workers=1`` and ``n_workers=2``
    (data-parallel: DDP over gloo, each rank streaming half the chunks), on
    one 2-worker cluster.  Samples/s counts the train split over the
    epoch's wall time inside the task (what the history reports).
``scheduler``
    Round trips of no-op tasks (``client.map`` + ``gather``): the tasks per
    second one scheduler sustains, whatever the work.
``disk``
    Sequential write of 512 MiB with ``fsync``: the storage rate every
    worker's output shares on this machine.

Run ``python -m benchmarks scale --help``; about 2-3 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    write_results,
)
from benchmarks.ingest import BIGDL_MODULES, FreshCluster, _check_rows, bigdl_ingest, prepare_data, total_bytes

__all__ = ["add_parser", "main", "ingest_stages", "disk_write_rate", "scheduler_rate"]

DEFAULT_ROWS = 1_200_000  # ~234 MB of CSV
DEFAULT_TRAIN_ROWS = 2_000_000  # x 32 float32 = 244 MiB of X
DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "scale"
MEMORY_LIMIT = "2GiB"
NOOP_TASKS = 2000
FILES = 8


# ------------------------------------------------------------------ CPU
class CoresUsed:
    """CPU seconds of the workers and of this process (client + scheduler) over a block, as cores.

    Tells how much of the machine a side really used: a "1 worker" run whose
    process also keeps a second core busy (loader threads, the scheduler)
    cannot be sped up twofold by a second worker on a 2-core machine.
    """

    def __init__(self, client):
        self.pids = sorted(set(client.run(os.getpid).values()) - {os.getpid()})

    @staticmethod
    def _cpu(pids) -> float:
        import psutil

        total = 0.0
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def __enter__(self) -> "CoresUsed":
        self._started = time.perf_counter()
        self._workers, self._client = self._cpu(self.pids), self._cpu([os.getpid()])
        return self

    def __exit__(self, *exc_info) -> None:
        wall = max(time.perf_counter() - self._started, 1e-9)
        self.workers = (self._cpu(self.pids) - self._workers) / wall
        self.client = (self._cpu([os.getpid()]) - self._client) / wall


# ------------------------------------------------------------------ ingest
def ingest_stages(stream: list[dict], seconds: float, n_workers: int) -> dict[str, float]:
    """Split one ingest's wall time into its passes from the Dask task stream.

    Parameters
    ----------
    stream : list of dict
        ``get_task_stream().data`` of the run.
    seconds : float
        The run's wall time.
    n_workers : int

    Returns
    -------
    dict
        ``read_s``, ``write_s`` (first task start to last task end of each
        pass), ``between_s`` (the client's fit and array creation between
        them), ``other_s`` (the rest: planning, attributes, rename) and
        ``read_efficiency`` / ``write_efficiency`` (task compute seconds over
        pass wall time x workers; 1.0 = every worker busy all along).
    """
    passes = {}
    for name in ("read", "write"):
        tasks = [task for task in stream if str(task["key"]).startswith(f"bigdl-ingest-{name}-")]
        if not tasks:
            continue
        starts = [min(part["start"] for part in task["startstops"]) for task in tasks]
        stops = [max(part["stop"] for part in task["startstops"]) for task in tasks]
        compute = sum(part["stop"] - part["start"] for task in tasks for part in task["startstops"]
                      if part["action"] == "compute")
        wall = max(stops) - min(starts)
        passes[name] = {"start": min(starts), "stop": max(stops), "wall": wall, "compute": compute,
                        "tasks": len(tasks)}
    result: dict[str, float] = {}
    for name, item in passes.items():
        result[f"{name}_s"] = item["wall"]
        result[f"{name}_tasks"] = item["tasks"]
        result[f"{name}_efficiency"] = item["compute"] / max(item["wall"] * n_workers, 1e-9)
    if "read" in passes and "write" in passes:
        result["between_s"] = passes["write"]["start"] - passes["read"]["stop"]
    result["other_s"] = seconds - sum(result.get(key, 0.0) for key in ("read_s", "write_s", "between_s"))
    return result


def _ingest_side(name: str, n_workers: int, files: list[Path], store: Path, rows: int,
                 clusters: list[FreshCluster]) -> Side:
    """One side of the ingest comparison; its setup closes every cluster in ``clusters``, then starts its own."""
    cluster = FreshCluster(n_workers, MEMORY_LIMIT)
    clusters.append(cluster)
    start = cluster.setup(store, BIGDL_MODULES)

    def setup() -> None:
        for other in clusters:  # only the measured side's processes may exist during its run
            other.close()
        start()

    def run() -> dict:
        from distributed import get_task_stream

        started = time.perf_counter()
        with CoresUsed(cluster.current()) as cores, get_task_stream(client=cluster.current()) as stream:
            info = bigdl_ingest(files, store)
        info.update(ingest_stages(stream.data, time.perf_counter() - started, n_workers))
        info.update(workers_cores=cores.workers, client_cores=cores.client)
        return info

    return Side(name, run, setup=setup, check=_check_rows(rows, "n_samples"))


# ------------------------------------------------------------------ training
def make_training_store(path: Path, rows: int, features: int = 32):
    """A deterministic learnable 4-class store (reused when it exists), as the loader benchmark's."""
    from benchmarks.loader import make_store

    return make_store(path, rows, features)


def _train_side(name: str, ds, n_workers: int, client) -> Side:
    def run() -> dict:
        import torch

        from bigdl.models import MLP
        from bigdl.train import Trainer

        torch.manual_seed(0)
        trainer = Trainer(MLP(ds.n_features, [64, 64], ds.n_classes), epochs=1, batch_size=1024, seed=0,
                          torch_threads=1, n_workers=n_workers, progress=False)
        with CoresUsed(client) as cores:
            history = trainer.fit(ds)
        entry = history[-1]
        return {"samples_per_second": entry["samples_per_second"], "epoch_s": entry["seconds"],
                "train_loss": entry["train_loss"], "ranks": entry.get("ranks", 1),
                "workers_cores": cores.workers, "client_cores": cores.client}

    return Side(name, run)


# ------------------------------------------------------------------ limits
def _noop(value):
    return value


def scheduler_rate(client, n_tasks: int = NOOP_TASKS, repeats: int = 3) -> list[float]:
    """Tasks per second of ``n_tasks`` no-op round trips (submit, run, gather), per repeat."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        futures = client.map(_noop, range(n_tasks), pure=False)
        client.gather(futures)
        rates.append(n_tasks / (time.perf_counter() - started))
        del futures
    return rates


def disk_write_rate(directory: Path, nbytes: int = 512 << 20, repeats: int = 3) -> list[float]:
    """Bytes per second of a sequential write with fsync, per repeat (the file is removed)."""
    block = os.urandom(8 << 20)
    path = directory / "disk-write-probe.bin"
    rates = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            with open(path, "wb") as sink:
                for _ in range(nbytes // len(block)):
                    sink.write(block)
                sink.flush()
                os.fsync(sink.fileno())
            rates.append(nbytes / (time.perf_counter() - started))
            path.unlink()
    finally:
        path.unlink(missing_ok=True)
    return rates


# ------------------------------------------------------------------ report
def _median_info(runs, key: str) -> float:
    values = [run.info[key] for run in runs if run.error is None and key in run.info]
    return statistics.median(values) if values else float("nan")


def _cores(runs) -> str:
    return f"{_median_info(runs, 'workers_cores'):.2f}+{_median_info(runs, 'client_cores'):.2f}"


def report(config: dict, machine: dict, ingest: dict, train: dict, limits: dict) -> str:
    """The text report: setup lines, then the tables."""
    csv_bytes = config["csv_bytes"]
    lines = [
        "# Scale benchmark: 1 vs 2 workers",
        f"machine: {describe_machine(machine)}",
        f"ingest: {config['rows']:,} rows, {csv_bytes / 1e6:.0f} MB of CSV, blocksize 64MiB (the default); "
        f"fresh LocalCluster per run, workers x 1 thread, memory_limit {MEMORY_LIMIT}",
        f"train: {config['train_rows']:,} x 32 float32 store, MLP 32-64-64-4, Adam, batch 1024, 1 epoch, torch 1 "
        "thread per process, one 2-worker cluster",
        f"runs: {config['repeats']} per side, alternating; command: {config['command']}",
    ]
    busiest = max([summary.other_cpu for summary in list(ingest["summary"].values())
                   + list(train["summary"].values()) if summary.other_cpu == summary.other_cpu] or [0.0])
    if busiest > 0.10:
        lines.append(f"NOTE: other processes took up to {busiest:.0%} of the CPU during runs: noisy machine.")
    rows = []
    one = ingest["summary"].get("ingest-1w")
    for name, summary in ingest["summary"].items():
        runs = ingest["runs"][name]
        rows.append([name, f"{summary.median:.2f}", summary.spread(), f"{summary.rate(csv_bytes) / 1e6:.1f}",
                     format_ratio(one.median / summary.median if one else float("nan")),
                     f"{_median_info(runs, 'read_s'):.2f} ({_median_info(runs, 'read_efficiency'):.0%})",
                     f"{_median_info(runs, 'between_s'):.2f}",
                     f"{_median_info(runs, 'write_s'):.2f} ({_median_info(runs, 'write_efficiency'):.0%})",
                     f"{_median_info(runs, 'other_s'):.2f}", _cores(runs),
                     format_bytes(summary.peak_rss.get("workers", float("nan"))), f"{summary.other_cpu:.0%}"])
    tables = [format_table(["side", "median s", "spread s", "MB/s", "vs 1 worker", "read pass s (eff.)",
                            "fit between s", "write pass s (eff.)", "rest s", "cores: workers+client",
                            "RSS workers", "other CPU"],
                           rows, title="\n## Ingest (CSV -> Zarr)")]
    rows = []
    one = train["runs"].get("train-1w")
    base_rate = _median_info(one, "samples_per_second") if one else float("nan")
    for name, summary in train["summary"].items():
        runs = train["runs"][name]
        rate = _median_info(runs, "samples_per_second")
        rates = [run.info["samples_per_second"] for run in runs if run.error is None]
        rows.append([name, f"{rate:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}" if rates else "-",
                     format_ratio(rate / base_rate), f"{_median_info(runs, 'epoch_s'):.2f}",
                     f"{summary.median:.2f}", _cores(runs), format_bytes(summary.peak_rss.get("workers", float("nan"))),
                     f"{summary.other_cpu:.0%}"])
    tables.append(format_table(["side", "samples/s", "spread", "vs 1 worker", "epoch s (in task)",
                                "fit() wall s", "cores: workers+client", "RSS workers", "other CPU"], rows,
                               title="\n## Training (Trainer, one epoch)"))
    tables.append(format_table(["limit", "median", "spread"], [
        ["scheduler: no-op task round trips/s", f"{statistics.median(limits['tasks_per_s']):,.0f}",
         f"{min(limits['tasks_per_s']):,.0f}-{max(limits['tasks_per_s']):,.0f}"],
        ["disk: sequential write with fsync, MB/s", f"{statistics.median(limits['disk_bytes_per_s']) / 1e6:,.0f}",
         f"{min(limits['disk_bytes_per_s']) / 1e6:,.0f}-{max(limits['disk_bytes_per_s']) / 1e6:,.0f}"],
        ["ingest: store bytes written per input MB", f"{limits['store_per_input']:.2f}", "-"],
    ], title="\n## Limits"))
    return "\n".join(lines + tables)


# ------------------------------------------------------------------ CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``scale`` subcommand."""
    parser = subparsers.add_parser("scale", help="ingest and training throughput on 1 and 2 workers; scheduler "
                                                 "and disk limits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"CSV rows (default {DEFAULT_ROWS:,})")
    parser.add_argument("--train-rows", type=int, default=DEFAULT_TRAIN_ROWS,
                        help=f"rows of the training store (default {DEFAULT_TRAIN_ROWS:,})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--quick", action="store_true", help="200k CSV rows, 400k training rows, 1 repeat")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the scale benchmark and print the report; returns 0, or 1 when a run failed."""
    rows = 200_000 if args.quick else args.rows
    rows -= rows % FILES
    train_rows = 400_000 if args.quick else args.train_rows
    repeats = 1 if args.quick else args.repeats
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    machine = machine_info(["dask", "distributed", "torch", "zarr", "bigdl"])
    log(f"machine: {describe_machine(machine)}")
    # 8 files: 8 read tasks, enough to share between workers at the default 64 MiB blocksize.
    files = prepare_data(workdir, rows - rows % FILES, [1], files_per_scale=FILES)[1]
    config: dict[str, Any] = {"rows": rows, "train_rows": train_rows, "repeats": repeats,
                              "csv_bytes": total_bytes(files),
                              "command": " ".join(["python -m benchmarks", *getattr(args, "argv", ["scale"])])}

    store = workdir / "ingest.zarr"
    clusters: list[FreshCluster] = []
    sides = [_ingest_side(f"ingest-{n}w", n, files, store, rows, clusters) for n in (1, 2)]
    ingest_runs = measure_alternating(sides, repeats, client=lambda: next(
        (cluster.current() for cluster in clusters if cluster.current() is not None), None), label="scale: ")
    for cluster in clusters:
        cluster.close()
    import bigdl

    store_per_input = bigdl.open(store).size_on_disk() / config["csv_bytes"]
    ingest = {"runs": ingest_runs, "summary": {name: summarize(runs) for name, runs in ingest_runs.items()}}

    ds = make_training_store(workdir / f"train-{train_rows}x32.zarr", train_rows)
    training_cluster = FreshCluster(2, MEMORY_LIMIT)
    training_cluster.setup(None, ("bigdl.train", "torch"))()
    try:
        client = training_cluster.current()
        sides = [_train_side(f"train-{n}w", ds, n, client) for n in (1, 2)]
        train_runs = measure_alternating(sides, repeats, client=client, label="scale: ")
        log("scheduler: no-op task round trips ...")
        tasks_per_s = scheduler_rate(client)
    finally:
        training_cluster.close()
    train = {"runs": train_runs, "summary": {name: summarize(runs) for name, runs in train_runs.items()}}
    log("disk: sequential write ...")
    limits = {"tasks_per_s": tasks_per_s, "disk_bytes_per_s": disk_write_rate(workdir),
              "store_per_input": store_per_input}

    text = report(config, machine, ingest, train, limits)
    path = write_results("scale", {"config": config, "machine": machine, "ingest": ingest, "train": train,
                                   "limits": limits})
    print(text)
    log(f"results written to {path}")
    failed = any(summary.errors for part in (ingest, train) for summary in part["summary"].values())
    return 1 if failed else 0
