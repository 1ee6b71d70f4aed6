"""Shared benchmark machinery: alternating timed runs, peak RSS, summaries, tables.

Every benchmark follows the rules of ``BENCHMARKS.md``: each side is measured
at least three times, the sides alternate inside every repeat (a, b, c, a, b,
c, ...), results are reported as median and spread (min-max), and the peak
RSS of every process involved (client, scheduler, workers) is sampled while
each run is in progress, together with the CPU that *other* processes took
meanwhile (so a noisy neighbour shows in the table instead of silently
widening the spread).  The pieces here are independent of what is being
measured so that ``ingest``, ``loader``, ``train``, ... share them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil

__all__ = [
    "PeakRSS",
    "Run",
    "Side",
    "Summary",
    "describe_machine",
    "format_bytes",
    "format_ratio",
    "format_table",
    "log",
    "machine_info",
    "measure_alternating",
    "summarize",
    "target_row",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    """Print a progress line to stderr (stdout is kept for the final table).

    Parameters
    ----------
    message : str
        The line to print.
    """
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ machine
def machine_info(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Describe the machine and the versions of ``packages``.

    Parameters
    ----------
    packages : sequence of str
        Importable module names whose ``__version__`` to report; a module
        that cannot be imported is reported as ``"not installed"``.

    Returns
    -------
    dict
        ``cores`` (logical), ``physical_cores``, ``ram_bytes``, ``python``,
        ``platform``, ``load_1min`` (the load average now: above ~0.5 other
        processes compete for the cores) and ``versions`` (name -> version).
    """
    import importlib

    versions = {}
    for name in packages:
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "unknown")
        except ImportError:
            versions[name] = "not installed"
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_1min": os.getloadavg()[0],
        "versions": versions,
    }


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the report from a :func:`machine_info` dict.

    Parameters
    ----------
    info : dict
        As returned by :func:`machine_info`.

    Returns
    -------
    str
    """
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    return (f"{info['cores']} cores ({info['physical_cores']} physical), {format_bytes(info['ram_bytes'])} RAM, "
            f"load average {info['load_1min']:.2f} at start, Python {info['python']}; {versions}")


# ------------------------------------------------------------------ memory
class PeakRSS:
    """Sample, in a background thread, the RSS of the client, scheduler and workers.

    Use as a context manager around one run.  Each sample reads the resident
    set size of every process; per role the peak over samples is kept
    (``workers`` is the sum over worker processes at one instant), as is the
    peak of the sum over all distinct processes (``total``).  With a
    ``LocalCluster`` the scheduler (and the nannies) live in the client
    process; the scheduler is then reported as part of the client and
    :attr:`scheduler_in_client` is True.  The first sample, taken on entry,
    is kept in :attr:`start` (the idle footprint the peak includes).

    It also measures how busy the machine was with *other* processes (a
    concurrent test run, another benchmark): :attr:`other_cpu` is the CPU
    time used outside the sampled processes during the run, as a fraction
    of all cores (0 = the run had the machine to itself).

    Parameters
    ----------
    client : distributed.Client, optional
        Where to find the scheduler and worker processes (via
        ``client.run_on_scheduler(os.getpid)`` and ``client.run(os.getpid)``).
        Without one only the current process is sampled.
    interval : float, default 0.05
        Seconds between samples.

    Examples
    --------
    >>> with PeakRSS(client) as rss:                    # doctest: +SKIP
    ...     work()
    >>> rss.peaks["workers"]                            # doctest: +SKIP
    """

    def __init__(self, client=None, interval: float = 0.05):
        self.client = client
        self.interval = interval
        self.scheduler_in_client = False
        self.peaks: dict[str, int] = {}
        self.start: dict[str, int] = {}
        self.other_cpu = float("nan")
        self._processes: dict[int, psutil.Process] = {}
        self._cpu_start: dict[int, float] = {}
        self._roles: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stale = False

    # -- process discovery
    def _resolve(self) -> None:
        me = os.getpid()
        roles = {"client": [me], "scheduler": [], "workers": []}
        if self.client is not None:
            scheduler = self.client.run_on_scheduler(os.getpid)
            self.scheduler_in_client = scheduler == me
            if not self.scheduler_in_client:
                roles["scheduler"] = [scheduler]
            roles["workers"] = sorted(set(self.client.run(os.getpid).values()) - {me})
        self._roles = roles
        self._stale = False

    def _rss(self, pid: int) -> int:
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
                self._cpu_start[pid] = _cpu_seconds(process)
            return process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._processes.pop(pid, None)
            self._stale = True  # a worker was restarted (e.g. killed at its memory limit)
            return 0

    def sample(self) -> None:
        """Take one sample now and update the peaks."""
        if self._stale and self.client is not None:
            try:
                self._resolve()
            except Exception:  # the cluster may be busy restarting; try again next time
                pass
        seen: dict[int, int] = {}
        for role, pids in self._roles.items():
            if not pids:  # e.g. no cluster, or the scheduler runs in the client process
                continue
            value = 0
            for pid in pids:
                if pid not in seen:
                    seen[pid] = self._rss(pid)
                value += seen[pid]
            self.peaks[role] = max(self.peaks.get(role, 0), value)
        self.peaks["total"] = max(self.peaks.get("total", 0), sum(seen.values()))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _own_cpu(self) -> float:
        total = 0.0
        for pid, process in list(self._processes.items()):
            try:
                total += _cpu_seconds(process) - self._cpu_start[pid]
            except psutil.Error:
                pass
        return total

    def __enter__(self) -> "PeakRSS":
        self._resolve()
        self.peaks = {}
        self.sample()
        self.start = dict(self.peaks)
        self._own_start = self._own_cpu()
        self._machine_start = _busy_cpu_seconds()
        self._wall_start = time.perf_counter()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        wall = time.perf_counter() - self._wall_start
        busy = _busy_cpu_seconds() - self._machine_start
        own = self._own_cpu() - self._own_start
        if wall > 0:
            self.other_cpu = max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent not idle, over all cores."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


# ------------------------------------------------------------------ timing
@dataclass
class Run:
    """One timed run of one side.

    Attributes
    ----------
    seconds : float
        Wall-clock time of the measured call (NaN if it failed).
    peak_rss : dict
        Peak RSS in bytes per role (``client``, ``scheduler``, ``workers``,
        ``total``).
    start_rss : dict
        RSS per role just before the run started.
    other_cpu : float
        CPU used by other processes during the run, as a fraction of all
        cores (see :class:`PeakRSS`).
    info : dict
        Whatever the measured call returned (shapes, counts, ...).
    error : str or None
        The exception, if the run failed.
    """

    seconds: float
    peak_rss: dict[str, int]
    start_rss: dict[str, int] = field(default_factory=dict)
    other_cpu: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Side:
    """One contender of a comparison.

    Attributes
    ----------
    name : str
        Short label used in tables and JSON.
    run : callable
        The measured call; it may return a dict of facts about the result.
    setup : callable, optional
        Untimed preparation before every run (remove old output, restart
        workers, ...).
    check : callable, optional
        Untimed verification of the returned dict; raises on a wrong result.
    """

    name: str
    run: Callable[[], dict | None]
    setup: Callable[[], None] | None = None
    check: Callable[[dict], None] | None = None


def measure_alternating(sides: Sequence[Side], repeats: int, *, client=None, label: str = "",
                        interval: float = 0.05) -> dict[str, list[Run]]:
    """Run every side ``repeats`` times, alternating the sides inside each repeat.

    The order is ``a, b, c, a, b, c, ...``.  Each run is timed with
    :func:`time.perf_counter` and wrapped in a :class:`PeakRSS`.  A failing run
    is recorded (``seconds`` NaN, ``error`` set) and the others go on; so is
    a run whose setup fails.

    Parameters
    ----------
    sides : sequence of Side
        The contenders, in the order they run within a repeat.
    repeats : int
        Runs per side (BENCHMARKS.md asks for at least 3).
    client : distributed.Client or callable, optional
        Passed to :class:`PeakRSS` to find the scheduler and workers; a
        function returning the current client (or None) when the sides'
        setups start a fresh cluster for each run.
    label : str, optional
        Prefix for the progress lines.
    interval : float, default 0.05
        RSS sampling interval in seconds.

    Returns
    -------
    dict
        Side name -> list of :class:`Run`, in run order.
    """
    runs: dict[str, list[Run]] = {side.name: [] for side in sides}
    for repeat in range(repeats):
        for side in sides:
            info: dict | None = None
            error = None
            try:
                if side.setup is not None:
                    side.setup()
            except Exception as exc:  # noqa: BLE001 - recorded and reported
                error = f"setup failed: {type(exc).__name__}: {exc}"
            current = client() if callable(client) and not hasattr(client, "run_on_scheduler") else client
            sampler = PeakRSS(current if error is None else None, interval=interval)
            with sampler:
                started = time.perf_counter()
                if error is None:
                    try:
                        info = side.run() or {}
                    except Exception as exc:  # noqa: BLE001 - recorded and reported
                        error = f"{type(exc).__name__}: {exc}"
                seconds = time.perf_counter() - started
            if error is None and side.check is not None:
                try:
                    side.check(info)
                except Exception as exc:  # noqa: BLE001
                    error = f"check failed: {type(exc).__name__}: {exc}"
            run = Run(seconds=float("nan") if error else seconds, peak_rss=dict(sampler.peaks),
                      start_rss=dict(sampler.start), other_cpu=sampler.other_cpu, info=info or {}, error=error)
            runs[side.name].append(run)
            status = f"FAILED {error}" if error else f"{seconds:.2f} s"
            log(f"{label}{side.name} run {repeat + 1}/{repeats}: {status}, "
                f"peak RSS {format_bytes(sampler.peaks.get('total', 0))} (all processes), "
                f"other processes' CPU {sampler.other_cpu:.0%}")
    return runs


@dataclass
class Summary:
    """Median and spread of a side's runs.

    Attributes
    ----------
    median, low, high : float
        Median, minimum and maximum seconds over the successful runs (NaN if
        none succeeded).
    n_ok, n_runs : int
        Successful and total runs.
    peak_rss : dict
        Per role, the highest peak RSS over all runs, in bytes.
    start_rss : dict
        Per role, the highest RSS at the start of a run (idle footprint).
    other_cpu : float
        The highest share of the machine's CPU used by other processes
        during a run (0 = quiet machine; see :class:`PeakRSS`).
    errors : list of str
        Messages of the failed runs.
    """

    median: float
    low: float
    high: float
    n_ok: int
    n_runs: int
    peak_rss: dict[str, int]
    start_rss: dict[str, int]
    other_cpu: float
    errors: list[str]

    def rate(self, amount: float) -> float:
        """``amount`` per median second (e.g. bytes/s); NaN without a median."""
        return amount / self.median if self.median == self.median and self.median > 0 else float("nan")

    def spread(self, digits: int = 2) -> str:
        """``"low-high"`` seconds as text."""
        if self.n_ok == 0:
            return "-"
        return f"{self.low:.{digits}f}-{self.high:.{digits}f}"


def summarize(runs: Sequence[Run]) -> Summary:
    """Median, min-max and peak RSS of a list of runs.

    Parameters
    ----------
    runs : sequence of Run

    Returns
    -------
    Summary
    """
    ok = [run.seconds for run in runs if run.error is None]
    nan = float("nan")
    def highest(attribute: str) -> dict[str, int]:
        roles = sorted({role for run in runs for role in getattr(run, attribute)})
        return {role: max(getattr(run, attribute).get(role, 0) for run in runs) for role in roles}

    return Summary(
        median=statistics.median(ok) if ok else nan,
        low=min(ok) if ok else nan,
        high=max(ok) if ok else nan,
        n_ok=len(ok),
        n_runs=len(runs),
        peak_rss=highest("peak_rss"),
        start_rss=highest("start_rss"),
        other_cpu=max((run.other_cpu for run in runs if run.other_cpu == run.other_cpu), default=nan),
        errors=[run.error for run in runs if run.error],
    )


# ------------------------------------------------------------------ output
def format_bytes(value: float) -> str:
    """Bytes as ``"123 MiB"`` / ``"1.23 GiB"`` (``"-"`` for missing values).

    Parameters
    ----------
    value : float
        A number of bytes.

    Returns
    -------
    str
    """
    if value is None or value != value:
        return "-"
    if value >= 1 << 30:
        return f"{value / (1 << 30):.2f} GiB"
    return f"{value / (1 << 20):.0f} MiB"


def format_ratio(value: float) -> str:
    """A ratio as ``"1.23x"`` (``"-"`` when undefined)."""
    return "-" if value is None or value != value else f"{value:.2f}x"


def target_row(name: str, value: float, threshold: float, *, at_least: bool) -> list[str]:
    """A table row ``[target, measured, pass/miss]`` for a ratio target.

    Parameters
    ----------
    name : str
        What is compared, e.g. ``"bigdl / parse-only"``.
    value : float
        The measured ratio (NaN when a side is missing).
    threshold : float
        The target.
    at_least : bool
        True for ``value >= threshold``, False for ``value <= threshold``.

    Returns
    -------
    list of str
    """
    wanted = f"{name} {'>=' if at_least else '<='} {threshold:g}x"
    if value is None or value != value:
        verdict = "n/a"
    else:
        verdict = "pass" if (value >= threshold if at_least else value <= threshold) else "MISS"
    return [wanted, format_ratio(value), verdict]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """A plain-text table (Markdown pipe syntax, so it can be pasted into the README).

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequences
        Cells are converted with ``str``; numbers-looking cells are right-aligned.
    title : str, optional
        A line printed above the table.

    Returns
    -------
    str
    """
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def numeric(text: str) -> bool:
        return bool(text) and (text[0].isdigit() or text[0] in "-+.") and text != "-"

    def line(row: Sequence[str], header: bool = False) -> str:
        parts = [cell.rjust(width) if not header and numeric(cell) else cell.ljust(width)
                 for cell, width in zip(row, widths)]
        return "| " + " | ".join(parts) + " |"

    out = [title] if title else []
    out.append(line(headers, header=True))
    out.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def write_results(name: str, payload: dict[str, Any], directory: str | os.PathLike | None = None) -> Path:
    """Write ``payload`` as JSON to ``benchmarks/results/<name>-<UTC time>.json``.

    Dataclasses (``Run``, ``Summary``) are converted to dicts and NaN to null.

    Parameters
    ----------
    name : str
        Benchmark name, the file name's prefix.
    payload : dict
        The results.
    directory : path, optional
        Default: ``benchmarks/results`` (git-ignored).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    directory = Path(directory) if directory is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"

    def plain(value):
        if hasattr(value, "__dataclass_fields__"):
            return plain(asdict(value))
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, Path):
            return str(value)
        return value

    path.write_text(json.dumps(plain(payload), indent=2) + "\n")
    return path
