"""Ingest benchmark: CSV -> Zarr with bigdl vs a hand-written Dask pipeline vs parse-only.

Three sides read the same generated CSV files (``bigdl.datasets.write_tabular_csv``,
seed 0: ``id``, ``x00`` .. ``x19``, ``carrier``, ``target``):

``parse-only``
    ``pyarrow.csv.read_csv`` (multi-threaded) over each file in the client
    process, nothing else: the upper bound for any CSV ingest.
``dask``
    What a user writes by hand, on the cluster: ``dd.read_csv`` -> drop
    ``id`` -> dask-ml ``Categorizer`` + ``DummyEncoder`` (``carrier``) and
    ``StandardScaler`` (numeric columns) -> ``to_dask_array(lengths=True)``
    -> rechunk to ~32 MiB row chunks -> ``da.to_zarr`` (Zarr v3) of ``X``
    (float32) and ``y`` (class codes), with the same Blosc-lz4 codec as a
    bigdl store.  It does less than bigdl (no validation, quarantine of bad
    rows, train/test split or row record).
``bigdl``
    ``bigdl.ingest.tabular(files, target="target", categorical=["carrier"],
    drop=["id"], test=0.2, ...)`` on the same cluster, with its default
    ``shuffle=True`` (rows stored in a seeded random order).
``bigdl-ordered``
    The same with ``shuffle=False`` (input order kept): what the shuffle costs.

All sides alternate inside each repeat.  Before each ``dask`` and ``bigdl``
run (untimed) the previous output is removed and a fresh cluster of
the same configuration (``bigdl.cluster.start_local``, what bigdl's users get) is started with that side's imports warmed, so every
run starts from the same worker state and its peak RSS is its own
(``parse-only`` runs with no cluster up: its RSS is the client's alone).
Then scale runs repeat the comparison at several multiples of the base row
count, with the workers' memory limit below the largest data size, and
report MB/s (1 MB = 10**6 bytes of input CSV) and peak RSS at each.  The
page cache is warm (the files were just written or read); caches are not
dropped.

Run ``python -m benchmarks ingest --help``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks._harness import (
    Side,
    Summary,
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

__all__ = ["add_parser", "main", "prepare_data", "parse_only", "dask_pipeline", "bigdl_ingest"]

DEFAULT_ROWS = 1_800_000  # ~350 MB of CSV at 1x (BENCHMARKS.md's 344 MB reference)
DEFAULT_SCALES = (1, 4, 8)
DEFAULT_MEMORY_LIMIT = "1GiB"
DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "ingest"
QUICK = {"rows": 100_000, "repeats": 1, "scales": (1, 2)}
FILES_PER_SCALE = 4
DASK_CHUNK_BYTES = 32 << 20
TARGET = "target"
CATEGORICAL = ["carrier"]
DROP = ["id"]
SIDES = ("parse-only", "dask", "bigdl", "bigdl-ordered")
DASK_MODULES = ("dask.dataframe", "dask_ml.preprocessing", "zarr")  # imported on fresh workers, untimed
# The libraries each side's tasks import, imported on fresh workers before the timed run; zarr on both
# sides (bigdl imports it only in its write tasks: 0.1-0.17 s of a fresh worker's first write, timed before).
BIGDL_MODULES = ("bigdl.ingest", "pyarrow.csv", "zarr")
TARGETS = {"vs_parse": 0.5, "vs_dask": 1.5, "rss_growth": 1.3}
NOISY_OTHER_CPU = 0.10  # above this share of the machine used by others, the report warns


# ------------------------------------------------------------------ data
def prepare_data(workdir: str | os.PathLike, rows: int, scales: list[int],
                 files_per_scale: int = FILES_PER_SCALE) -> dict[int, list[Path]]:
    """Generate (or reuse) the CSV files and return the files of each scale.

    One data set of ``max(scales) * rows`` rows is written as
    ``max(scales) * files_per_scale`` equal files; scale ``s`` uses the first
    ``s * files_per_scale`` of them, which are exactly rows ``0 .. s * rows``
    of the same seed.  Files of an identical earlier call are reused.

    Parameters
    ----------
    workdir : path
        Folder for the data (``<workdir>/csv-<rows>x<max scale>``).
    rows : int
        Rows at scale 1; must be a multiple of ``files_per_scale``.
    scales : list of int
        Multiples of ``rows`` to prepare.
    files_per_scale : int, default 4
        Files per ``rows`` rows.

    Returns
    -------
    dict
        Scale -> list of CSV paths.
    """
    from bigdl.datasets import write_tabular_csv

    largest = max(scales)
    folder = Path(workdir) / f"csv-{rows}x{largest}"  # one folder per data set, so sizes do not evict each other
    started = time.perf_counter()
    paths = write_tabular_csv(folder, rows * largest, n_files=files_per_scale * largest, seed=0)
    log(f"data: {len(paths)} files, {format_bytes(total_bytes(paths))} ready in "
        f"{time.perf_counter() - started:.1f} s ({folder})")
    return {scale: paths[: scale * files_per_scale] for scale in scales}


def total_bytes(paths: list[Path]) -> int:
    """Sum of the sizes of ``paths`` in bytes."""
    return sum(os.path.getsize(path) for path in paths)


def expected_features(path: str | os.PathLike) -> int:
    """Columns of ``X`` after one-hot encoding, counted independently of the pipelines.

    Numeric columns plus the distinct values of each categorical column of
    the file (a 1x file holds every category of the generated data).
    """
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(path)
    numeric = len(table.column_names) - len(DROP) - len(CATEGORICAL) - 1
    return numeric + sum(len(pc.unique(table[name])) for name in CATEGORICAL)


# ------------------------------------------------------------------ sides
def parse_only(files: list[Path]) -> dict[str, int]:
    """Parse each file with ``pyarrow.csv.read_csv`` (multi-threaded) and discard it.

    Parameters
    ----------
    files : list of path

    Returns
    -------
    dict
        ``rows``: rows parsed.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rows = 0
    for path in files:
        table = pa_csv.read_csv(path)
        rows += table.num_rows
        del table
    pa.default_memory_pool().release_unused()
    return {"rows": rows}


def dask_pipeline(files: list[Path], store: str | os.PathLike, *, target: str = TARGET,
                  categorical: list[str] = CATEGORICAL, drop: list[str] = DROP,
                  chunk_bytes: int = DASK_CHUNK_BYTES) -> dict[str, Any]:
    """The hand-written Dask + dask-ml pipeline: CSV -> scaled, one-hot ``X`` and ``y`` in Zarr.

    Runs on the current default Dask client.

    Parameters
    ----------
    files : list of path
        Input CSV files.
    store : path
        Output Zarr v3 group (``X`` float32, ``y`` int64 class codes); must
        not exist.
    target : str
        Label column.
    categorical : list of str
        Columns to one-hot encode.
    drop : list of str
        Columns to ignore.
    chunk_bytes : int
        Uncompressed bytes of ``X`` per row chunk.

    Returns
    -------
    dict
        ``X_shape``, ``y_shape`` and ``chunk_rows`` of what was written.
    """
    import dask
    import dask.array as da
    import dask.dataframe as dd
    from dask_ml.preprocessing import Categorizer, DummyEncoder, StandardScaler

    frame = dd.read_csv([str(path) for path in files]).drop(columns=drop)
    frame = Categorizer(columns=[*categorical, target]).fit_transform(frame)  # pass 1: categories
    labels = frame[target].cat.codes.astype("int64")
    features = DummyEncoder(columns=categorical).fit_transform(frame.drop(columns=[target]))
    numeric = [name for name in features.columns if name in frame.columns and name not in categorical]
    features[numeric] = StandardScaler().fit_transform(features[numeric])  # pass 2: mean, variance
    X = features.astype("float32").to_dask_array(lengths=True)  # pass 3: partition lengths
    y = labels.to_dask_array(lengths=X.chunks[0])
    chunk_rows = max(1, chunk_bytes // (X.shape[1] * X.dtype.itemsize))
    X = X.rechunk({0: chunk_rows, 1: -1})
    y = y.rechunk({0: chunk_rows})
    codecs = _store_codecs()
    dask.compute(  # pass 4: transform and write
        da.to_zarr(X, str(store), component="X", compute=False, **codecs),
        da.to_zarr(y, str(store), component="y", compute=False, **codecs),
    )
    return {"X_shape": list(X.shape), "y_shape": list(y.shape), "chunk_rows": int(chunk_rows)}


def _store_codecs() -> dict[str, Any]:
    """The codec of a bigdl store (Blosc lz4, level 5, byte shuffle), as ``create_array`` kwargs."""
    from zarr.codecs import BloscCodec

    return {"compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]}


def bigdl_tabular() -> tuple[Callable | None, str]:
    """``bigdl.ingest.tabular`` if it can be imported, else None and the reason."""
    try:
        from bigdl.ingest import tabular
    except Exception as error:  # noqa: BLE001 - any import failure means "skip this side"
        return None, f"{type(error).__name__}: {error}"
    return tabular, ""


def bigdl_ingest(files: list[Path], store: str | os.PathLike, *, shuffle: bool = True) -> dict[str, Any]:
    """``bigdl.ingest.tabular`` on the files, on the current default Dask client.

    Parameters
    ----------
    files : list of path
        Input CSV files.
    store : path
        Output store.
    shuffle : bool, default True
        ``tabular``'s row shuffle.

    Returns
    -------
    dict
        ``n_samples`` and ``n_features`` of the store.
    """
    tabular, reason = bigdl_tabular()
    if tabular is None:
        raise ImportError(reason)
    dataset = tabular([str(path) for path in files], target=TARGET, store=str(store), categorical=CATEGORICAL,
                      drop=DROP, test=0.2, shuffle=shuffle, overwrite=True, progress=False)
    return {"n_samples": int(dataset.n_samples), "n_features": int(dataset.n_features)}


# ------------------------------------------------------------------ checks
def _check_rows(expected: int, key: str) -> Callable[[dict], None]:
    def check(info: dict) -> None:
        if info.get(key) != expected:
            raise AssertionError(f"{key} = {info.get(key)}, expected {expected}")
    return check


def _check_dask_store(store: Path, expected_rows: int, expected_features: int) -> Callable[[dict], None]:
    def check(info: dict) -> None:
        import zarr

        group = zarr.open_group(str(store), mode="r")
        X, y = group["X"], group["y"]
        if X.metadata.zarr_format != 3:
            raise AssertionError(f"X is Zarr v{X.metadata.zarr_format}, expected v3")
        if X.shape != (expected_rows, expected_features) or y.shape != (expected_rows,):
            raise AssertionError(f"X {X.shape}, y {y.shape}; expected ({expected_rows}, {expected_features})")
        sample = X[: min(1000, expected_rows)]
        if not abs(float(sample[:, 0].mean())) < 0.5:  # scaled column: mean near 0
            raise AssertionError("first feature column does not look standardized")
    return check


# ------------------------------------------------------------------ cluster
def start_cluster(n_workers: int, memory_limit: str):
    """``bigdl.cluster.start_local``: ``n_workers`` processes x 1 thread, the default client.

    The cluster a user of bigdl gets (its workers' allocator settings included); both pipelines run
    on it.  The dashboard is off so that it costs no CPU during the runs.
    """
    import logging

    import bigdl

    # The nannies live in this process; their "Restarting worker" warnings are the untimed setup.
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    return bigdl.cluster.start_local(n_workers=n_workers, threads_per_worker=1, memory_limit=memory_limit,
                                     dashboard_address=None, quiet=True)


def _import_modules(modules: tuple[str, ...]) -> int:
    """Import ``modules`` (run on a worker so imports are not timed); returns the pid."""
    import importlib

    for name in modules:
        importlib.import_module(name)
    return os.getpid()


def _quiet_shutdown_logs() -> None:
    """On a worker: silence the connection errors its shutdown may log."""
    import logging

    for name in ("distributed.worker", "distributed.comm", "distributed.core"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _remove_store(store: Path) -> None:
    shutil.rmtree(store, ignore_errors=True)
    for leftover in store.parent.glob(f".{store.name}.*"):  # temporaries of bigdl's atomic write
        shutil.rmtree(leftover, ignore_errors=True)


class FreshCluster:
    """A new ``LocalCluster`` for every run of a cluster side, so each run starts from the same state.

    Restarting the workers of one cluster instead (``Client.restart``) is
    not reliable: after a few restarts it times out and leaves a cluster
    without workers (dask/distributed#8534, still seen with 2026.8).

    Parameters
    ----------
    n_workers : int
        Worker processes (1 thread each).
    memory_limit : str
        Per-worker memory limit.
    """

    def __init__(self, n_workers: int, memory_limit: str):
        self.n_workers = n_workers
        self.memory_limit = memory_limit
        self.client = None

    def current(self):
        """The running cluster's client, or None between runs."""
        return self.client

    def close(self) -> None:
        """Close the current cluster, if any."""
        if self.client is not None:
            client, self.client = self.client, None
            cluster = client.cluster
            try:
                # A worker's last heartbeat may race the scheduler's shutdown and log a traceback.
                client.run(_quiet_shutdown_logs)
            except Exception:  # noqa: BLE001 - only cosmetic
                pass
            client.close()
            cluster.close()

    def setup(self, store: Path | None = None, modules: tuple[str, ...] = ()) -> Callable[[], None]:
        """A :class:`Side` setup: remove old output, start a fresh cluster, import ``modules`` on it.

        Each side warms only its own imports (untimed), so a worker's idle
        footprint, and so its peak RSS, is that side's: ``dask.dataframe`` +
        ``dask_ml`` alone take about 290 MiB per process with pandas 3.  With
        no ``modules`` the cluster is just closed (for client-only sides).
        """
        def setup() -> None:
            if store is not None:
                _remove_store(store)
            self.close()
            gc.collect()
            if modules:
                self.client = start_cluster(self.n_workers, self.memory_limit)
                self.client.run(_import_modules, modules)
        return setup


# ------------------------------------------------------------------ report
SIDE_COLUMNS = ["side", "median s", "spread s", "MB/s", "vs parse-only", "vs dask",
                "RSS client", "RSS sched", "RSS workers", "(idle)", "RSS total", "other CPU", "ok"]
SCALE_COLUMNS = ["scale", "MB", "side", "median s", "spread s", "MB/s", "vs parse-only", "vs dask",
                 "RSS workers", "RSS total", "other CPU"]


def _speedup(results: dict[str, Summary], side: str, baseline: str) -> float:
    """Throughput of ``side`` over ``baseline`` (ratio of median times); NaN if either is missing."""
    if side not in results or baseline not in results:
        return float("nan")
    return results[baseline].median / results[side].median


def _side_cells(results: dict[str, Summary], nbytes: int) -> list[dict[str, str]]:
    """Table cells of each side at one scale, keyed by column name."""
    nan = float("nan")
    cells = []
    for name, summary in results.items():
        rss = summary.peak_rss
        cells.append({
            "side": name, "median s": f"{summary.median:.2f}", "spread s": summary.spread(),
            "MB/s": f"{summary.rate(nbytes) / 1e6:.1f}", "MB": f"{nbytes / 1e6:.0f}",
            "vs parse-only": format_ratio(_speedup(results, name, "parse-only")),
            "vs dask": format_ratio(_speedup(results, name, "dask") if name.startswith("bigdl") else nan),
            "vs ordered": format_ratio(_speedup(results, name, "bigdl-ordered") if name == "bigdl" else nan),
            "RSS client": format_bytes(rss.get("client")),
            "RSS sched": format_bytes(rss.get("scheduler", nan)),  # absent: in the client process
            "RSS workers": format_bytes(rss.get("workers", nan)),
            "(idle)": format_bytes(summary.start_rss.get("workers", nan)),
            "RSS total": format_bytes(rss.get("total")),
            "other CPU": "-" if summary.other_cpu != summary.other_cpu else f"{summary.other_cpu:.0%}",
            "ok": f"{summary.n_ok}/{summary.n_runs}",
        })
    return cells


def _growth(by_scale: dict[int, dict[str, Summary]], side: str, role: str) -> float:
    scales = [scale for scale in sorted(by_scale) if side in by_scale[scale] and by_scale[scale][side].n_ok]
    if len(scales) < 2:
        return float("nan")
    low, high = by_scale[scales[0]][side].peak_rss.get(role), by_scale[scales[-1]][side].peak_rss.get(role)
    return high / low if low else float("nan")


def report(config: dict[str, Any], machine: dict[str, Any], by_scale: dict[int, dict[str, Summary]],
           sizes: dict[int, int], skipped: str) -> str:
    """The final text report: setup lines, then the tables (printed last).

    Parameters
    ----------
    config : dict
        Command-line settings.
    machine : dict
        From :func:`benchmarks._harness.machine_info`.
    by_scale : dict
        Scale -> side name -> :class:`Summary`.
    sizes : dict
        Scale -> input CSV bytes.
    skipped : str
        Why the bigdl side did not run ('' if it did).

    Returns
    -------
    str
    """
    base = min(by_scale)
    largest = max(by_scale)
    rows = config["rows"]
    lines = [
        "# Ingest benchmark (CSV -> Zarr)",
        f"machine: {describe_machine(machine)}",
        f"cluster: bigdl.cluster.start_local, {config['workers']} worker processes x 1 thread, memory_limit "
        f"{config['memory_limit']} per worker (scheduler and nannies in the client process); dashboard off",
        f"data: write_tabular_csv seed 0, {rows:,} rows = {sizes[base] / 1e6:.0f} MB at {base}x, "
        f"{FILES_PER_SCALE * base} files; warm page cache (caches not dropped)",
        f"runs: {config['repeats']} per side, alternating {' / '.join(config['sides'])}; "
        "a fresh cluster (untimed start, side's imports warmed) for each dask/bigdl run, none during parse-only; "
        "MB = 10**6 bytes of input CSV",
        "peak RSS: max over runs of the sampled peak (every 50 ms); workers = sum over worker processes, "
        "(idle) = their RSS when the run started",
        "other CPU: the highest share of all cores used by processes outside the benchmark during a run of that "
        "side (0% = quiet machine; more means competition and wider spreads)",
        f"command: {config['command']}",
    ]
    worker_total = config["memory_limit_bytes"] * config["workers"]
    if worker_total < sizes[largest]:
        lines.append(f"out of core: the workers' memory limits ({format_bytes(worker_total)} in all) are below the "
                     f"{largest}x data ({format_bytes(sizes[largest])})")
    else:
        lines.append(f"NOTE: the workers' memory limits ({format_bytes(worker_total)} in all) are not below the "
                     f"{largest}x data ({format_bytes(sizes[largest])}); the scale runs do not test out-of-core "
                     "behaviour.")
    if skipped:
        lines.append(f"NOTE: bigdl side skipped: {skipped}")
    busiest = max((summary.other_cpu for results in by_scale.values() for summary in results.values()
                   if summary.other_cpu == summary.other_cpu), default=0.0)
    if busiest > NOISY_OTHER_CPU:
        lines.append(f"NOTE: other processes took up to {busiest:.0%} of the CPU during runs; times and ratios are "
                     "unreliable, rerun on a quiet machine.")
    errors = [f"  {scale}x {name}: {error}" for scale, results in by_scale.items()
              for name, summary in results.items() for error in summary.errors]
    if errors:
        lines += ["FAILED RUNS:", *errors]

    base_cells = _side_cells(by_scale[base], sizes[base])
    tables = [format_table(SIDE_COLUMNS, [[cell[column] for column in SIDE_COLUMNS] for cell in base_cells],
                           title=f"\n## Sides at {base}x ({rows * base:,} rows, {sizes[base] / 1e6:.0f} MB)")]
    if largest > base:
        scale_rows = [[f"{scale}x" if column == "scale" else cell[column] for column in SCALE_COLUMNS]
                      for scale in sorted(by_scale) for cell in _side_cells(by_scale[scale], sizes[scale])]
        tables.append(format_table(
            SCALE_COLUMNS, scale_rows,
            title=f"\n## Scale runs (worker memory_limit {config['memory_limit']} x {config['workers']})"))

    target_rows = [
        target_row(f"bigdl / parse-only MB/s at {base}x", _speedup(by_scale[base], "bigdl", "parse-only"),
                   TARGETS["vs_parse"], at_least=True),
        target_row(f"bigdl / dask MB/s at {base}x", _speedup(by_scale[base], "bigdl", "dask"), TARGETS["vs_dask"],
                   at_least=True),
    ]
    if largest > base:
        growth = f"peak RSS growth {base}x->{largest}x"
        for role, label in (("total", "all processes"), ("workers", "workers")):
            target_rows.append(target_row(f"bigdl {growth}, {label}", _growth(by_scale, "bigdl", role),
                                          TARGETS["rss_growth"], at_least=False))
        for role, label in (("total", "all processes"), ("workers", "workers")):
            target_rows.append([f"dask {growth}, {label}", format_ratio(_growth(by_scale, "dask", role)), "(info)"])
    tables.append(format_table(["target", "measured", "verdict"], target_rows, title="\n## Targets"))
    return "\n".join(lines + tables)


# ------------------------------------------------------------------ CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``ingest`` subcommand.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers``.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = subparsers.add_parser(
        "ingest", help="CSV -> Zarr: bigdl vs hand-written Dask pipeline vs pyarrow parse-only",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--rows", type=int, default=None,
                        help=f"rows at 1x (default {DEFAULT_ROWS:,}, ~350 MB; rounded down to a multiple of "
                             f"{FILES_PER_SCALE})")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side and scale (default 3)")
    parser.add_argument("--scales", default=None,
                        help="comma-separated multiples of --rows (default 1,4,8); the smallest is the base")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="data and output folder; CSV files are reused between runs (default: work/benchmarks/"
                             "ingest, git-ignored)")
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT,
                        help=f"memory_limit per worker (default {DEFAULT_MEMORY_LIMIT}; keep the workers' total "
                             "below the largest data size)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, 1 thread each (default 2)")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {','.join(SIDES)}")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK['rows']:,} rows, 1 repeat, scales 1,2 (explicit options win)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where to write the JSON results (default benchmarks/results)")
    parser.set_defaults(func=main)
    return parser


def _resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    from dask.utils import parse_bytes

    quick = args.quick
    rows = args.rows if args.rows is not None else (QUICK["rows"] if quick else DEFAULT_ROWS)
    rows -= rows % FILES_PER_SCALE
    repeats = args.repeats if args.repeats is not None else (QUICK["repeats"] if quick else 3)
    if args.scales is not None:
        scales = sorted({int(value) for value in args.scales.split(",") if value.strip()})
    else:
        scales = list(QUICK["scales"] if quick else DEFAULT_SCALES)
    sides = [name.strip() for name in args.sides.split(",") if name.strip()]
    unknown = [name for name in sides if name not in SIDES]
    if unknown or rows < FILES_PER_SCALE or repeats < 1 or not scales or min(scales) < 1:
        raise SystemExit(f"bad options: rows={rows} repeats={repeats} scales={scales} unknown sides={unknown}")
    return {
        "rows": rows, "repeats": repeats, "scales": scales, "sides": sides, "quick": quick,
        "workdir": args.workdir.resolve(), "memory_limit": args.memory_limit,
        "memory_limit_bytes": parse_bytes(args.memory_limit), "workers": args.workers,
        "command": " ".join(["python -m benchmarks", *getattr(args, "argv", ["ingest"])]),
    }


def main(args: argparse.Namespace) -> int:
    """Run the ingest benchmark and print the report; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of the ``ingest`` subcommand (see :func:`add_parser`).

    Returns
    -------
    int
        0, or 1 when any run failed.
    """
    config = _resolve_config(args)
    machine = machine_info(["dask", "distributed", "dask_ml", "zarr", "pyarrow", "pandas", "numpy", "bigdl"])
    log(f"machine: {describe_machine(machine)}")
    files_by_scale = prepare_data(config["workdir"], config["rows"], config["scales"])
    sizes = {scale: total_bytes(files) for scale, files in files_by_scale.items()}
    n_features = expected_features(files_by_scale[min(sizes)][0])

    tabular, skipped = bigdl_tabular()
    if not any(name.startswith("bigdl") for name in config["sides"]):
        skipped = "not requested (--sides)"
    elif tabular is None:
        log(f"SKIPPING bigdl sides: bigdl.ingest.tabular cannot be imported ({skipped})")
        # The report lists what ran.
        config["sides"] = [name for name in config["sides"] if not name.startswith("bigdl")]

    output = config["workdir"] / "out"
    output.mkdir(parents=True, exist_ok=True)
    clusters = FreshCluster(config["workers"], config["memory_limit"])
    by_scale: dict[int, dict[str, Summary]] = {}
    raw: dict[int, dict[str, list]] = {}
    try:
        for scale, files in files_by_scale.items():
            expected = config["rows"] * scale
            dask_store, bigdl_store = output / "dask.zarr", output / "bigdl.zarr"
            candidates = {
                "parse-only": Side("parse-only", lambda files=files: parse_only(files), setup=clusters.setup(),
                                   check=_check_rows(expected, "rows")),
                "dask": Side("dask", lambda files=files: dask_pipeline(files, dask_store),
                             setup=clusters.setup(dask_store, DASK_MODULES),
                             check=_check_dask_store(dask_store, expected, n_features)),
                "bigdl": Side("bigdl", lambda files=files: bigdl_ingest(files, bigdl_store),
                              setup=clusters.setup(bigdl_store, BIGDL_MODULES),
                              check=_check_rows(expected, "n_samples")),
                "bigdl-ordered": Side("bigdl-ordered",
                                      lambda files=files: bigdl_ingest(files, bigdl_store, shuffle=False),
                                      setup=clusters.setup(bigdl_store, BIGDL_MODULES),
                                      check=_check_rows(expected, "n_samples")),
            }
            sides = [candidates[name] for name in config["sides"]]
            log(f"scale {scale}x: {expected:,} rows, {sizes[scale] / 1e6:.0f} MB, sides {[s.name for s in sides]}")
            runs = measure_alternating(sides, config["repeats"], client=clusters.current, label=f"{scale}x ")
            raw[scale] = runs
            by_scale[scale] = {name: summarize(side_runs) for name, side_runs in runs.items()}
            for store in (dask_store, bigdl_store):
                _remove_store(store)
    finally:
        clusters.close()

    text = report(config, machine, by_scale, sizes, skipped)
    path = write_results("ingest", {
        "config": config, "machine": machine, "sizes_bytes": sizes, "bigdl_skipped": skipped,
        "summaries": by_scale, "runs": raw, "report": text,
    }, args.results_dir)
    log(f"results written to {path}")
    print(text, flush=True)
    failed = any(summary.errors for results in by_scale.values() for summary in results.values())
    return 1 if failed else 0
