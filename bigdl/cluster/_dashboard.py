"""The bigdl page on the Dask dashboard, its JSON endpoints and its Prometheus metrics.

:class:`DashboardPlugin` is a scheduler plugin: registered once per
scheduler (by :func:`register_dashboard`, which ``start_local`` and
``connect`` call, or by the preload ``--preload bigdl.cluster._dashboard``),
it listens to bigdl's Dask events (:mod:`bigdl.runtime._events`: the Trainer's
``bigdl-train`` and the ingest's ``bigdl-ingest``), keeps each job's state in
a :class:`JobBoard`, and serves, on the scheduler's own web server (the port
of ``/status``):

- ``/bigdl``: a self-contained page (inline JS and SVG, nothing from the
  network) that polls ``/bigdl/jobs.json`` every second: per training job its
  loss curves, metric, samples/s, epoch, ETA, worker and checkpoints; per
  ingest job its rows read/stored/rejected and bytes written;
- ``/bigdl/jobs.json``: the whole state the page draws;
- ``/bigdl/metrics.json``: the same figures as the ``bigdl_*`` series added
  to the scheduler's Prometheus endpoint ``/metrics``.

Everything but :func:`register_dashboard` runs in the scheduler's process,
on its event loop.  The distributed internals it needs are in
:mod:`bigdl.cluster._distributed_api`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import weakref
from collections import OrderedDict

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado import web

from bigdl.runtime._events import INGEST_TOPIC, TRAIN_TOPIC

__all__ = ["DashboardPlugin", "JobBoard", "register_dashboard", "dashboard_page_link", "PLUGIN_NAME", "PAGE"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "bigdl-dashboard"
PAGE = "bigdl"
METRIC_NAMES = ("accuracy", "r2")


# ------------------------------------------------------------------ job state
class JobBoard:
    """The state of bigdl's training and ingest jobs on one scheduler, built from their events.

    Parameters
    ----------
    max_jobs : int, default 100
        Jobs kept; the oldest finished ones are dropped first.
    max_batch_points : int, default 1000
        Smoothed batch-loss points kept per training job; beyond that every
        other point is dropped, so the curve keeps its shape at any length.
    """

    def __init__(self, max_jobs: int = 100, max_batch_points: int = 1000):
        self.max_jobs = max_jobs
        self.max_batch_points = max_batch_points
        self.jobs: OrderedDict[str, dict] = OrderedDict()

    # ---------------------------------------------------------- events
    def on_event(self, topic: str, message, now: float | None = None) -> None:
        """Fold one event into the state; messages that are not bigdl's are ignored."""
        if not isinstance(message, dict) or "kind" not in message:
            return
        now = time.time() if now is None else now
        if topic == TRAIN_TOPIC and "run" in message:
            self._train_event(message, now)
        elif topic == INGEST_TOPIC and "job" in message:
            self._ingest_event(message, now)

    def _job(self, job_id: str, kind: str, now: float) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            job = {"id": job_id, "type": kind, "state": "running", "started": now, "updated": now,
                   "finished": None, "error": None}
            if kind == "train":
                job.update({"worker": None, "ranks": 1, "model": None, "store": None, "task": None, "epochs": None,
                            "epoch": 0, "first_epoch": 0, "train_samples": None, "batch_size": None,
                            "fraction": 0.0, "batch_loss": None, "samples_per_second": None, "history": [],
                            "batches": [], "checkpoints": []})
            else:
                job.update({"store": None, "store_kind": None, "rows": {"read": 0, "stored": 0, "rejected": 0},
                            "bytes_written": 0, "stages": {}})
            self.jobs[job_id] = job
            self._trim()
        job["updated"] = now
        return job

    def _train_event(self, message: dict, now: float) -> None:
        job = self._job(message["run"], "train", now)
        kind = message["kind"]
        job["worker"] = message.get("worker", job["worker"])
        if kind == "started":
            for key in ("ranks", "model", "store", "task", "epochs", "train_samples", "batch_size"):
                if key in message:
                    job[key] = message[key]
        elif kind == "resumed":
            job["epoch"] = job["first_epoch"] = message["epoch"] + 1
            job["started"] = now
        elif kind == "batch":
            job["fraction"] = float(message.get("fraction", 0.0))
            job["batch_loss"] = message.get("batch_loss")
            job["samples_per_second"] = message.get("samples_per_second")
            self._batch_point(job, message["epoch"] - 1 + job["fraction"], message.get("batch_loss"))
        elif kind == "epoch":
            entry = {key: value for key, value in message.items()
                     if key not in ("kind", "run", "time", "epochs", "batch_loss")}
            job["history"].append(entry)
            job["epoch"] = message["epoch"]
            job["epochs"] = message.get("epochs", job["epochs"])
            job["fraction"] = 0.0
            job["samples_per_second"] = message.get("samples_per_second")
            if message.get("batch_loss") is not None:
                job["batch_loss"] = message["batch_loss"]
                self._batch_point(job, message["epoch"], message["batch_loss"])
            if message.get("checkpoint"):
                job["checkpoints"].append({"epoch": message["epoch"], "path": message["checkpoint"],
                                           "time": message.get("time", now)})
        elif kind == "finished":
            job["state"], job["finished"] = "finished", now
        elif kind == "failed":
            job["state"], job["finished"], job["error"] = "failed", now, message.get("error")

    def _batch_point(self, job: dict, x: float, loss) -> None:
        job["batches"].append([x, loss])
        if len(job["batches"]) > self.max_batch_points:
            job["batches"] = job["batches"][::2]

    def _ingest_event(self, message: dict, now: float) -> None:
        job = self._job(message["job"], "ingest", now)
        for key in ("store", "rows", "bytes_written", "stages", "store_kind"):
            if key in message:
                job[key] = message[key]
        if message["kind"] in ("finished", "failed"):
            job["state"], job["finished"] = message["kind"], now
            job["error"] = message.get("error")

    def _trim(self) -> None:
        while len(self.jobs) > self.max_jobs:
            done = next((key for key, job in self.jobs.items() if job["state"] != "running"), None)
            self.jobs.pop(done if done is not None else next(iter(self.jobs)))

    # ---------------------------------------------------------- views
    def snapshot(self, now: float | None = None) -> dict:
        """Every job with what the page shows (elapsed time, progress and ETA computed now)."""
        now = time.time() if now is None else now
        jobs = []
        for job in self.jobs.values():
            view = dict(job)
            end = job["finished"] or now
            view["elapsed"] = max(0.0, end - job["started"])
            if job["type"] == "train":
                view["progress"], view["eta"] = _train_progress(job, view["elapsed"])
                view["metric"] = next((name for name in METRIC_NAMES
                                       if job["history"] and f"val_{name}" in job["history"][-1]), None)
            jobs.append(view)
        return {"time": now, "jobs": jobs}

    def metrics(self, now: float | None = None) -> list[dict]:
        """The ``bigdl_*`` figures, each ``{"name", "type", "help", "labels", "value"}``.

        The Prometheus endpoint and ``/bigdl/metrics.json`` both come from here.
        """
        rows: list[dict] = []

        def add(name, kind, text, labels, value):
            if value is not None:
                rows.append({"name": name, "type": kind, "help": text, "labels": labels, "value": float(value)})

        states = {("train", state): 0 for state in ("running", "finished", "failed")}
        states.update({("ingest", state): 0 for state in ("running", "finished", "failed")})
        for view in self.snapshot(now)["jobs"]:
            states[(view["type"], view["state"])] += 1
            job = {"job": view["id"]}
            if view["type"] == "train":
                last = view["history"][-1] if view["history"] else {}
                add("bigdl_train_info", "gauge", "A training job (value 1), its worker, model and store.",
                    {**job, "worker": str(view["worker"]), "model": str(view["model"]), "store": str(view["store"]),
                     "state": view["state"]}, 1)
                add("bigdl_train_epoch", "gauge", "Epochs finished.", job, view["epoch"])
                add("bigdl_train_epochs", "gauge", "Epochs planned.", job, view["epochs"])
                add("bigdl_train_loss", "gauge", "Training loss of the last finished epoch.", job,
                    last.get("train_loss"))
                add("bigdl_train_batch_loss", "gauge", "Smoothed training loss of the latest batches.", job,
                    view["batch_loss"])
                add("bigdl_train_validation_loss", "gauge", "Validation loss after the last finished epoch.", job,
                    last.get("val_loss"))
                for name in METRIC_NAMES:
                    add(f"bigdl_train_validation_{name}", "gauge", f"Validation {name} after the last finished epoch.",
                        job, last.get(f"val_{name}"))
                add("bigdl_train_samples_per_second", "gauge",
                    "Training samples per second (the last epoch's, or the running epoch's so far).", job,
                    view["samples_per_second"])
                add("bigdl_train_progress", "gauge", "Fraction of the planned epochs done.", job, view["progress"])
                add("bigdl_train_eta_seconds", "gauge", "Estimated seconds until the job ends.", job, view["eta"])
                add("bigdl_train_elapsed_seconds", "gauge", "Seconds since the job (re)started.", job,
                    view["elapsed"])
                add("bigdl_train_checkpoints_total", "counter", "Checkpoints written.", job, len(view["checkpoints"]))
            else:
                add("bigdl_ingest_info", "gauge", "An ingest job (value 1) and its store.",
                    {**job, "store": str(view["store"]), "state": view["state"]}, 1)
                for status in ("read", "stored", "rejected"):
                    add("bigdl_ingest_rows_total", "counter", "Rows (or files) read, stored and rejected.",
                        {**job, "status": status}, view["rows"].get(status, 0))
                add("bigdl_ingest_bytes_written_total", "counter", "Bytes written to the store.", job,
                    view["bytes_written"])
                for stage, counts in view["stages"].items():
                    add("bigdl_ingest_tasks_done_total", "counter", "Tasks of an ingest stage finished.",
                        {**job, "stage": stage}, counts["done"])
                    add("bigdl_ingest_tasks", "gauge", "Tasks of an ingest stage.", {**job, "stage": stage},
                        counts["total"])
                add("bigdl_ingest_elapsed_seconds", "gauge", "Seconds since the job started.", job, view["elapsed"])
        for (kind, state), count in states.items():
            add(f"bigdl_{kind}_jobs", "gauge", f"{kind.title()} jobs known to the scheduler, by state.",
                {"state": state}, count)
        return rows


def _train_progress(job: dict, elapsed: float) -> tuple[float | None, float | None]:
    """Fraction of the planned epochs done, and the seconds left at the pace since the (re)start."""
    epochs = job["epochs"]
    if not epochs:
        return None, None
    if job["state"] == "finished":
        return 1.0, 0.0
    done = min(1.0, (job["epoch"] + job["fraction"]) / epochs)
    done_here = done - job["first_epoch"] / epochs
    if job["state"] != "running" or done_here <= 0:
        return done, None
    return done, elapsed * (1.0 - done) / done_here


# ------------------------------------------------------------------ JSON
def _finite(value):
    """JSON for browsers: NaN and infinities (an undefined R2) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    try:  # NumPy scalars and the like
        return _finite(value.item())
    except AttributeError:
        return str(value)


def to_json(value) -> str:
    return json.dumps(_finite(value), allow_nan=False)


# ------------------------------------------------------------------ HTTP
class _Handler(web.RequestHandler):
    def initialize(self, scheduler):
        self.scheduler = scheduler

    def _board(self) -> JobBoard | None:
        plugin = self.scheduler.plugins.get(PLUGIN_NAME)
        return getattr(plugin, "board", None)

    def _json(self, value) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(to_json(value))


class PageHandler(_Handler):
    def get(self):
        from bigdl.cluster._distributed_api import navigation_pages
        from bigdl.cluster._page import render_page

        if self._board() is None:
            raise web.HTTPError(404, "the bigdl dashboard plugin is not registered on this scheduler")
        if self.request.path.endswith("/"):  # the page's links are relative to /bigdl
            self.redirect(self.request.path.rstrip("/"))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        pages = [page for page in navigation_pages(self.scheduler) if page != PAGE]
        self.write(render_page(pages))


class JobsHandler(_Handler):
    def get(self):
        board = self._board()
        if board is None:
            raise web.HTTPError(404)
        self._json(board.snapshot())


class MetricsHandler(_Handler):
    def get(self):
        board = self._board()
        if board is None:
            raise web.HTTPError(404)
        self._json({"time": time.time(), "metrics": board.metrics()})


def _routes(scheduler, prefix: str) -> list[tuple]:
    base = prefix.rstrip("/") + "/" + PAGE
    kwargs = {"scheduler": scheduler}
    return [(base + "/?", PageHandler, kwargs), (base + "/jobs.json", JobsHandler, kwargs),
            (base + "/metrics.json", MetricsHandler, kwargs)]


# ------------------------------------------------------------------ Prometheus
# One collector per process, reading every live board: prometheus_client's
# registry is global and refuses two collectors of the same series.
_boards: weakref.WeakSet = weakref.WeakSet()
_collector = None


class _Collector:
    def describe(self):
        return []  # names vary with the jobs; nothing to check at registration

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        # Several schedulers in one process (a notebook, a test session) share
        # this registry: series of the same name and labels (the per-state job
        # counts) are summed, never emitted twice (which scrapers reject).
        rows: dict[str, dict] = {}
        for board in list(_boards):
            for row in board.metrics():
                family = rows.setdefault(row["name"], {"row": row, "values": {}})
                values = tuple(str(value) for value in row["labels"].values())
                family["values"][values] = family["values"].get(values, 0.0) + row["value"]
        for name, family in rows.items():
            first = family["row"]
            kind = CounterMetricFamily if first["type"] == "counter" else GaugeMetricFamily
            metric = kind(name, first["help"], labels=list(first["labels"]))
            for values, value in family["values"].items():
                metric.add_metric(list(values), value)
            yield metric


def _register_collector() -> None:
    global _collector
    if _collector is not None:
        return
    try:
        import prometheus_client
    except ImportError:  # distributed's /metrics says Prometheus is not available either
        logger.warning("bigdl dashboard: prometheus_client is not installed; no bigdl series on /metrics.")
        return
    _collector = _Collector()
    prometheus_client.REGISTRY.register(_collector)


# ------------------------------------------------------------------ the plugin
class DashboardPlugin(SchedulerPlugin):
    """Scheduler plugin behind the bigdl page, its JSON endpoints and its Prometheus series.

    Its ``name`` makes registering it twice harmless (the second is ignored);
    hooks run in the scheduler's process, on its event loop.
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self):
        self.board = None

    async def start(self, scheduler) -> None:
        """Add the page and endpoints to the scheduler's web server, the nav link and the collector."""
        from bigdl.cluster._distributed_api import add_http_routes, add_navigation_page, http_prefix

        if self.board is None:
            self.board = JobBoard()
        _boards.add(self.board)
        add_http_routes(scheduler, _routes(scheduler, http_prefix(scheduler)))
        try:
            add_navigation_page(scheduler, PAGE)
        except Exception as error:  # the page works without the link; say why it is missing
            logger.warning("bigdl dashboard: no link in the dashboard's navigation (%s).", error)
        _register_collector()

    def log_event(self, topic: str, msg) -> None:
        if self.board is not None and topic in (TRAIN_TOPIC, INGEST_TOPIC):
            self.board.on_event(topic, msg)


async def dask_setup(scheduler) -> None:
    """Preload hook: ``dask scheduler --preload bigdl.cluster._dashboard`` serves the page from the start."""
    await scheduler.register_scheduler_plugin(DashboardPlugin(), name=PLUGIN_NAME, idempotent=True)


# ------------------------------------------------------------------ client side
def dashboard_page_link(client) -> str | None:
    """The bigdl page's URL next to the client's dashboard link (None without a dashboard)."""
    link = getattr(client, "dashboard_link", None)
    if not link:
        return None
    base = link[: -len("status")] if link.endswith("/status") else link.rstrip("/") + "/"
    return base + PAGE


def register_dashboard(client=None, *, quiet: bool = True) -> str | None:
    """Serve the bigdl page and metrics on the client's scheduler (idempotent); return the page's URL.

    ``start_local`` and ``connect`` call it.  The scheduler must be able to
    import bigdl (true for a LocalCluster and the bigdl image); when it
    cannot, a warning says so and nothing else changes.

    Parameters
    ----------
    client : distributed.Client, optional
        Default: the current client.
    quiet : bool, default True
        False prints the page's link.

    Returns
    -------
    str or None
        E.g. ``"http://127.0.0.1:8787/bigdl"``; None if the scheduler has no
        dashboard or the plugin could not be registered.

    Examples
    --------
    >>> bigdl.cluster.register_dashboard(client)          # doctest: +SKIP
    'http://127.0.0.1:8787/bigdl'
    """
    import warnings

    from bigdl.runtime._tasks import active_client
    from bigdl.errors import ClusterConnectionError

    client = active_client(client)
    if client is None:
        raise ClusterConnectionError("register_dashboard needs a Dask client: start one with "
                                     "bigdl.cluster.start_local() or connect().")
    try:
        client.register_plugin(DashboardPlugin(), name=PLUGIN_NAME)
    except Exception as error:
        warnings.warn(f"The bigdl dashboard page could not be added to the scheduler ({type(error).__name__}: "
                      f"{error}); the scheduler must be able to import bigdl (install it in the scheduler's "
                      "image). Training and ingest work without it.", RuntimeWarning, stacklevel=2)
        return None
    link = dashboard_page_link(client)
    if link and not quiet:
        print(f"bigdl jobs: {link}", file=sys.stderr)
    return link
