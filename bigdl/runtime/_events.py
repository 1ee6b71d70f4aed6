"""bigdl's progress events: the Dask event topics and what goes on them.

Long-running bigdl work reports progress as Dask events, which the scheduler
keeps, forwards to subscribers (the caller's progress bar) and hands to its
plugins (the dashboard page, :mod:`bigdl.cluster._dashboard`).  Two topics:

``bigdl-train`` (:data:`TRAIN_TOPIC`)
    Published by the Trainer's loop on the worker (rank 0 only), one dict per
    event with ``kind`` among ``started``, ``batch``, ``epoch``, ``resumed``,
    ``finished``, ``failed``, and ``run``, ``worker``, ``time``.
``bigdl-ingest`` (:data:`INGEST_TOPIC`)
    Published by the client that runs an ingest, with ``kind`` among
    ``started``, ``progress``, ``finished``, ``failed`` and the job's figures.

This module owns the publishing side that is not the Trainer's own loop: the
throttled, smoothed per-batch loss of a training epoch and the ingest job,
which an ingest opens around its store's writing (:func:`ingest_job`) and
which then watches every :func:`bigdl.runtime._tasks.run_tasks` call.  It imports
nothing heavy: the scheduler imports it too.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from bigdl.errors import public_message

__all__ = ["TRAIN_TOPIC", "INGEST_TOPIC", "BatchLossReporter", "IngestJob", "ingest_job", "current_ingest_job"]

TRAIN_TOPIC = "bigdl-train"
INGEST_TOPIC = "bigdl-ingest"
INGEST_PREFIX = "bigdl-ingest-"


class BatchLossReporter:
    """Turn every batch's loss into a few ``batch`` events per second, with a smoothed loss.

    The smoothed loss is an exponential moving average over batches
    (``smoothing`` is the weight of the past), bias-corrected so the first
    batches are not pulled towards zero, and carried across epochs so the
    curve is continuous.  Called by the training loop on rank 0's thread.

    Parameters
    ----------
    report : callable
        Receives each event dict (the Trainer's ``report``).
    train_samples : int
        Samples in one epoch over all ranks, for the fraction of the epoch done.
    world_size : int, default 1
        Ranks; each rank sees about ``1 / world_size`` of the samples.
    interval : float, default 0.5
        Seconds between events; the first batch of every epoch is reported,
        and the epoch event carries the smoothed loss at the epoch's end.
    smoothing : float, default 0.9
    """

    def __init__(self, report: Callable[[dict], None], train_samples: int, *, world_size: int = 1,
                 interval: float = 0.5, smoothing: float = 0.9):
        self._report = report
        self._train_samples = max(int(train_samples or 0), 1)
        self._world_size = world_size
        self._interval = interval
        self._smoothing = smoothing
        self._average = 0.0
        self._n_batches = 0
        self.start_epoch(0)

    def start_epoch(self, epoch: int) -> None:
        """Reset the epoch's counters.

        Parameters
        ----------
        epoch : int
            Counts from 0.
        """
        self._epoch = epoch
        self._samples = 0
        self._started = time.perf_counter()
        self._last = -math.inf

    @property
    def smoothed_loss(self) -> float:
        if not self._n_batches:
            return math.nan
        return self._average / (1.0 - self._smoothing ** self._n_batches)

    def __call__(self, loss: float, n_samples: int) -> None:
        self._n_batches += 1
        self._average = self._smoothing * self._average + (1.0 - self._smoothing) * loss
        self._samples += n_samples
        now = time.perf_counter()
        if now - self._last < self._interval:
            return
        self._last = now
        seen = self._samples * self._world_size
        self._report({"kind": "batch", "epoch": self._epoch + 1, "batches": self._n_batches,
                      "fraction": min(1.0, seen / self._train_samples), "loss": loss,
                      "batch_loss": self.smoothed_loss,
                      "samples_per_second": seen / max(now - self._started, 1e-9)})


# ------------------------------------------------------------------ ingest jobs
_current_job: contextvars.ContextVar[IngestJob | None] = contextvars.ContextVar("bigdl_ingest_job", default=None)


def current_ingest_job() -> IngestJob | None:
    """The ingest job the calling code runs in, if any (set by :func:`ingest_job`)."""
    return _current_job.get()


@contextlib.contextmanager
def ingest_job(store, temporary, *, uncounted: tuple[str, ...] = ("_staging",)):
    """Make the code inside one ingest job that publishes its progress on the dashboard.

    ``store`` is the final store path, ``temporary`` the directory being
    written (whose size is the bytes written, leaving out the files and
    folders named in ``uncounted``: staging areas, the writer's lock).  The job publishes nothing
    until its first tasks go to a distributed client (see
    :meth:`IngestJob.stage`): ingest on Dask's local threads has no dashboard.

    Parameters
    ----------
    store : str or path
    temporary : str or path
    uncounted : tuple of str, default ("_staging",)

    Yields
    ------
    IngestJob
    """
    from bigdl.runtime._tasks import observe_tasks

    job = IngestJob(store, temporary, uncounted=uncounted)
    token = _current_job.set(job)
    try:
        with observe_tasks(job):  # every run_tasks call inside reports its stage to the job
            yield job
    except BaseException as error:
        job.fail(error)
        raise
    else:
        job.finish()
    finally:
        _current_job.reset(token)


class IngestJob:
    """One ingest's progress, published on :data:`INGEST_TOPIC` from the client.

    Rows are counted from the results of the ingest's tasks as they finish,
    by one convention every ingest kind follows: a read (or decode) task
    returns a dict with ``n_valid`` and ``n_rejected`` (rows read = their
    sum), and a write task returns the per-split row counts of the store
    chunk it wrote (a NumPy array: rows stored = its sum).  When the store is
    complete its own ``rows`` attribute replaces these running counts.  Bytes
    written are the size of the store directory, outside its staging area.

    Parameters
    ----------
    store : str or path
        The final store path (what the dashboard names the job by).
    temporary : str or path
        The directory being written.
    uncounted : tuple of str, default ("_staging",)
        Names left out of the bytes written.
    """

    #: Seconds between progress events (the last task of a stage is always reported).
    interval = 0.25

    def __init__(self, store, temporary, *, uncounted: tuple[str, ...] = ("_staging",)):
        self.id = uuid.uuid4().hex[:8]
        self.uncounted = frozenset(uncounted)
        self.store = str(store)
        self.temporary = Path(temporary)
        self.client = None
        self.rows = {"read": 0, "stored": 0, "rejected": 0}
        self.bytes_written = 0
        self.stages: dict[str, dict] = {}
        self._last = 0.0

    def stage(self, prefix: str, total: int, client) -> Callable[[Any], None] | None:
        """Start a stage of ``total`` tasks named by its task prefix; return the per-result callback.

        Parameters
        ----------
        prefix : str
            The stage's task prefix (``bigdl-ingest-read``...).
        total : int
            Tasks in the stage.
        client : distributed.Client or None

        Returns
        -------
        callable or None
            None (nothing to publish) when the tasks do not go to a
            distributed client.
        """
        if client is None or not prefix.startswith(INGEST_PREFIX):
            return None
        name = prefix[len(INGEST_PREFIX):]
        if self.client is None:
            self.client = client
            self._publish({"kind": "started", "store": self.store})
        self.stages[name] = {"done": 0, "total": total}
        self._publish(self._figures("progress"))

        def task_finished(result: Any) -> None:
            self._count(result)
            stage = self.stages[name]
            stage["done"] += 1
            now = time.monotonic()
            if stage["done"] == stage["total"] or now - self._last >= self.interval:
                self.bytes_written = _directory_bytes(self.temporary, self.uncounted)
                self._publish(self._figures("progress"))

        return task_finished

    def _count(self, result: Any) -> None:
        if isinstance(result, dict) and "n_valid" in result and "n_rejected" in result:
            self.rows["read"] += int(result["n_valid"]) + int(result["n_rejected"])
            self.rows["rejected"] += int(result["n_rejected"])
        elif type(result).__name__ == "ndarray" and getattr(result, "dtype", None) is not None \
                and result.dtype.kind in "iu":
            self.rows["stored"] += int(result.sum())

    def finish(self) -> None:
        """Publish the job's final figures (when it published anything)."""
        if self.client is None:
            return
        self.bytes_written = _directory_bytes(self.temporary, self.uncounted)
        attributes = _store_attributes(self.temporary)
        # The store's own accounting is the final word: some kinds reject rows
        # after reading (duplicate time steps) or store rows no task read (filled gaps).
        final_rows = attributes.get("rows") or {}
        self.rows.update({key: int(final_rows[key]) for key in self.rows if isinstance(final_rows.get(key), int)})
        figures = self._figures("finished")
        figures["store_kind"] = attributes.get("kind")
        self._publish(figures)

    def fail(self, error: BaseException) -> None:
        """Publish that the job failed, with :func:`bigdl.errors.public_message` of ``error`` (no data values).

        Parameters
        ----------
        error : BaseException
        """
        if self.client is None:
            return
        figures = self._figures("failed")
        figures["error"] = public_message(error)  # data values never reach the dashboard
        self._publish(figures)

    def _figures(self, kind: str) -> dict:
        return {"kind": kind, "store": self.store, "rows": dict(self.rows), "bytes_written": self.bytes_written,
                "stages": {name: dict(stage) for name, stage in self.stages.items()}}

    def _publish(self, message: dict) -> None:
        self._last = time.monotonic()
        try:
            self.client.log_event(INGEST_TOPIC, dict(message, job=self.id, time=time.time()))
        except Exception:  # progress is a view: losing it must never fail the ingest
            pass


def _directory_bytes(root: Path, uncounted: frozenset = frozenset({"_staging"})) -> int:
    """Bytes of the files under ``root``, leaving out the entries named in ``uncounted`` (at any depth)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in uncounted:
                        stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and entry.name not in uncounted:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:  # removed while walking (a task's temporary file)
                continue
    return total


def _store_attributes(root: Path) -> dict:
    """The finished store's group attributes (kind, rows...), read from its metadata; {} if unreadable."""
    import json

    try:
        attributes = json.loads((root / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return attributes if isinstance(attributes, dict) else {}
