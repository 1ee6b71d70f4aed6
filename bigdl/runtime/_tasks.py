"""Running bigdl's work on Dask: independent tasks with a progress bar, long single tasks, task graphs.

Every layer that computes on the cluster goes through this module:

* :func:`run_tasks` runs a list of independent calls (ingest passes,
  ChunkForest's fits, permutation importance, ``verify``) with a progress bar;
* :func:`run_on_workers` runs one long call, or one per worker, with the
  caller subscribed to an event topic meanwhile (the Trainer's loop);
* :func:`task_runner` gives a runner of task graphs whose results come back
  as they finish (Hyperband's brackets).

With a distributed ``Client`` active (``bigdl.cluster.start_local`` or
``connect``) tasks go to its workers under readable keys (``bigdl-ingest-read-…``)
so the dashboard's task stream names them; without one they run on Dask's
local threaded scheduler.  What watches the tasks of a job (the ingest job
of :mod:`bigdl.runtime._events`) plugs in with :func:`observe_tasks`, so this
module knows nothing of any job.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import uuid
from collections import deque
from typing import Any, Callable, Sequence

__all__ = ["active_client", "run_tasks", "observe_tasks", "run_on_workers", "task_runner", "progress_disabled",
           "warn_when_paused"]

_observer: contextvars.ContextVar = contextvars.ContextVar("bigdl_task_observer", default=None)


@contextlib.contextmanager
def observe_tasks(observer):
    """Let ``observer`` watch every :func:`run_tasks` call made inside the block.

    ``observer.stage(prefix, n_tasks, client)`` is called at the start of each
    call and returns None or a callback that receives each finished task's
    result (in the caller's thread).

    Parameters
    ----------
    observer : object with a ``stage`` method
        An :class:`~bigdl.runtime.IngestJob`, say.

    Yields
    ------
    observer
    """
    token = _observer.set(observer)
    try:
        yield observer
    finally:
        _observer.reset(token)


def active_client(client=None):
    """The given client, else the current default distributed client, else None.

    Parameters
    ----------
    client : distributed.Client, optional

    Returns
    -------
    distributed.Client or None
        None means Dask's local threaded scheduler.
    """
    if client is not None:
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def progress_disabled(enabled: bool | None = None) -> bool | None:
    """tqdm's ``disable`` for a bar that ``enabled`` asks for (None: decide by ``BIGDL_PROGRESS``, else the terminal).

    Estimators' fits take no progress flag (a parameter would change their
    ``get_params``), so for them the environment variable ``BIGDL_PROGRESS``
    decides: ``1`` (or true/yes/on) always shows the bars, ``0`` (or
    false/no/off) never does; unset, a bar shows only when stderr is a
    terminal (tqdm's own rule).

    Parameters
    ----------
    enabled : bool or None, default None
        An explicit choice wins over the environment.

    Returns
    -------
    bool or None
        The value for ``tqdm(disable=...)``; None lets tqdm check the terminal.
    """
    if enabled is not None:
        return not enabled
    setting = os.environ.get("BIGDL_PROGRESS", "").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        return False
    if setting in ("0", "false", "no", "off"):
        return True
    return None


def _progress_bar(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=progress_disabled(enabled), file=sys.stderr,
                leave=False)


def run_tasks(prefix: str, func: Callable, arguments: Sequence[tuple], *, desc: str, progress: bool | None = True,
              client=None) -> list[Any]:
    """Call ``func(*args)`` for each tuple in ``arguments``; return results in order.

    The first task error is raised in the caller with its original type and
    message after the remaining tasks are cancelled.  Inside an ingest job
    (``bigdl-ingest-*`` prefixes on a distributed client) each finished
    task's result also goes to the job, which publishes rows and bytes on the
    dashboard (see :class:`bigdl.runtime._events.IngestJob` for what results count).

    Parameters
    ----------
    prefix : str
        Start of every task's key (``bigdl-<layer>-<stage>``), shown on the dashboard.
    func : callable
        Runs in a worker (or a local thread); must be importable there.
    arguments : sequence of tuple
        One tuple of positional arguments per task.
    desc : str
        The progress bar's label.
    progress : bool or None, default True
        None: as :func:`progress_disabled` (``BIGDL_PROGRESS``, else only when stderr is a terminal).
    client : distributed.Client, optional
        Default: the current client, else Dask's threaded scheduler.

    Returns
    -------
    list
        The results, in the order of ``arguments``.
    """
    if not arguments:
        return []
    client = active_client(client)
    token = uuid.uuid4().hex[:8]
    keys = [f"{prefix}-{token}-{index}" for index in range(len(arguments))]
    observer = _observer.get()
    on_result = observer.stage(prefix, len(arguments), client) if observer is not None else None
    with _progress_bar(len(arguments), desc, progress) as bar:
        if client is not None:
            return _run_distributed(client, func, arguments, keys, bar, on_result)
        return _run_local(func, arguments, keys, bar)


# ------------------------------------------------------------------ workers paused for memory
#: Seconds a worker may stay paused while bigdl waits on it before the caller is warned, and between looks.
PAUSED_WARNING_AFTER = 30.0
_PAUSED_POLL = 5.0

logger = logging.getLogger("bigdl.runtime")


@contextlib.contextmanager
def warn_when_paused(client, *, after: float | None = None, poll: float | None = None):
    """While the block waits on ``client``'s workers, warn once per worker that stays paused for memory.

    Dask pauses a worker whose process memory passes
    ``distributed.worker.memory.pause`` (80%) of its limit and resumes it
    once memory falls back; memory held by the libraries a task imported, or
    by data the task keeps, never falls back, and the job then waits for
    ever with no word.  A thread looks at the scheduler every ``poll``
    seconds; a worker paused for ``after`` seconds gets one warning on the
    ``bigdl.runtime`` logger naming it, its memory and limit, and what to
    change.  Sizes and addresses only, never data.

    Parameters
    ----------
    client : distributed.Client
    after : float, optional
        Default :data:`PAUSED_WARNING_AFTER`.
    poll : float, optional
        Default 5 seconds (or ``after``, when smaller).
    """
    import threading
    import time

    after = PAUSED_WARNING_AFTER if after is None else after
    poll = min(_PAUSED_POLL, after) if poll is None else poll
    stop = threading.Event()
    since: dict[str, float] = {}
    warned: set[str] = set()

    def watch() -> None:
        while not stop.wait(poll):
            try:
                workers = client.scheduler_info(n_workers=-1)["workers"]
            except Exception:  # noqa: BLE001 - the cluster is closing; the waiting caller sees why
                return
            now = time.monotonic()
            for address, worker in workers.items():
                if worker.get("status") != "paused":
                    since.pop(address, None)
                    continue
                since.setdefault(address, now)
                if now - since[address] >= after and address not in warned:
                    warned.add(address)
                    logger.warning(paused_message(address, worker, now - since[address]))

    thread = threading.Thread(target=watch, name="bigdl-paused-workers", daemon=True)
    thread.start()
    try:
        yield warned
    finally:
        stop.set()
        thread.join(timeout=poll + 5)


def paused_message(address: str, worker: dict, seconds: float) -> str:
    """What a worker paused for memory means and what to change (sizes only)."""
    import dask

    memory = worker.get("metrics", {}).get("memory") or 0
    limit = worker.get("memory_limit") or 0
    pause = dask.config.get("distributed.worker.memory.pause")
    share = f" ({memory / limit:.0%} of its memory limit of {_gib(limit)})" if limit else ""
    threshold = f"{pause:.0%}" if isinstance(pause, (int, float)) else "its pause threshold"
    return (f"Worker {address} has been paused for {seconds:.0f} s: its process uses {_gib(memory)}{share}, above "
            f"Dask's pause threshold ({threshold}), so it starts no task and the job waits for it. If that memory "
            "is held by libraries or data the tasks keep, it is never freed and the job never ends: stop it and "
            "give the workers more memory (start_local(memory_limit=...) or the worker resources on "
            "Kubernetes), fewer threads per worker, or smaller chunks.")


def _gib(size: float) -> str:
    return f"{size / 2 ** 30:.2f} GiB"


def _run_distributed(client, func, arguments, keys, bar, on_result=None):
    with warn_when_paused(client):
        return _run_distributed_watched(client, func, arguments, keys, bar, on_result)


def _run_distributed_watched(client, func, arguments, keys, bar, on_result=None):
    from distributed import as_completed

    futures = [client.submit(func, *args, key=key, pure=False) for key, args in zip(keys, arguments)]
    position = {key: index for index, key in enumerate(keys)}
    results: list = [None] * len(futures)
    try:
        # as_completed takes the default client's loop unless told: the given
        # client need not be the default one.
        for future in as_completed(futures, loop=client.loop):
            if future.status == "error":
                future.result()  # raises the task's exception in the caller
            index = position[future.key]
            results[index] = future.result()
            # Fetched: the worker's copy goes (a large result, a forest, held
            # there until the last task ends would add up on the workers).
            futures[index] = None
            if on_result is not None:
                on_result(results[index])
            bar.update(1)
        return results
    except BaseException:
        client.cancel([future for future in futures if future is not None])
        # Cancelling does not stop a task already running, and these tasks
        # write into a temporary store the caller deletes next: return only
        # once none of them runs any more (or after a minute of trying).
        _wait_until_stopped(client, set(keys))
        raise


def _executing_keys(keys: set, dask_worker=None) -> list:
    """The keys among ``keys`` this worker is running now (runs on each worker)."""
    return [task.key for task in dask_worker.state.executing if task.key in keys]


def _wait_until_stopped(client, keys: set, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = client.run(_executing_keys, keys, on_error="return")
        except Exception:  # noqa: BLE001 - the cluster itself is going away: nothing left to wait for
            return
        if not any(isinstance(items, list) and items for items in running.values()):
            return
        time.sleep(0.05)


def _run_local(func, arguments, keys, bar):
    import dask
    from dask.callbacks import Callback

    class _Count(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            bar.update(1)

    from concurrent.futures import ThreadPoolExecutor

    from dask.system import CPU_COUNT

    tasks = [dask.delayed(func, pure=False)(*args, dask_key_name=key) for key, args in zip(keys, arguments)]
    # A pool of our own: on an error or an interrupt (Ctrl-C, SIGTERM) dask
    # returns at once while tasks still run; they write into a temporary
    # store the caller deletes next, so wait for them before going on.
    pool = ThreadPoolExecutor(CPU_COUNT, thread_name_prefix="bigdl-task")
    try:
        with _Count():
            return list(dask.compute(*tasks, scheduler="threads", pool=pool))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ long calls on workers
def run_on_workers(client, func: Callable, calls: Sequence[tuple], *, key: str, topic: str | None = None,
                   on_event: Callable[[dict], None] | None = None, workers: Sequence[str] | None = None) -> list:
    """Run ``func(*args)`` once per tuple in ``calls`` as long tasks on ``client``'s workers; return the results.

    The caller is subscribed to the event topic ``topic`` while the tasks run,
    and ``on_event`` receives each message (in the client's event loop
    thread).  With ``workers`` (one address per call), task ``i`` is pinned
    to ``workers[i]`` and never moved; without, the scheduler places the
    single task and reschedules it on another worker if its worker dies
    (``distributed.scheduler.allowed-failures`` times).

    Parameters
    ----------
    client : distributed.Client
    func : callable
    calls : sequence of tuple
        Positional arguments of each task.
    key : str
        Task key (``-rank<i>`` appended when several).
    topic : str, optional
    on_event : callable, optional
    workers : sequence of str, optional

    Returns
    -------
    list
        One result per call; the first failure is raised in the caller.
    """
    if topic is not None and on_event is not None:
        client.subscribe_topic(topic, lambda event: on_event(event[1]))
    try:
        futures = []
        for index, args in enumerate(calls):
            options = {"key": key if len(calls) == 1 else f"{key}-rank{index}", "pure": False, "retries": 0}
            if workers is not None:
                options.update(workers=[workers[index]], allow_other_workers=False)
            futures.append(client.submit(func, *args, **options))
        try:
            with warn_when_paused(client):
                return client.gather(futures)
        except BaseException:
            # A pinned task whose worker died waits for that worker for ever: stop them all.
            client.cancel(futures)
            raise
    finally:
        if topic is not None and on_event is not None:
            client.unsubscribe_topic(topic)


# ------------------------------------------------------------------ graphs whose results arrive as they finish
def task_runner(client=None):
    """A runner of task graphs: on ``client``'s cluster (futures stay there), else on local threads.

    ``runner.start(tag, collections, key=)`` computes a list of delayed
    objects whose *last* one is small (a score); ``runner.next_done()``
    returns ``(tag, handles, last result)`` of the earliest finished start;
    ``runner.fetch(handle)`` brings one result into this process;
    ``runner.place(values)`` puts in-memory values where tasks can use them
    and ``runner.persist(collections)`` computes collections there.

    Parameters
    ----------
    client : distributed.Client, optional
        Default: the current client, else local threads.

    Returns
    -------
    runner
    """
    client = active_client(client)
    return _ClusterRunner(client) if client is not None else _ThreadedRunner()


class _ThreadedRunner:
    """No distributed client: each graph runs at once on Dask's threaded scheduler, in this process."""

    client = None

    def __init__(self):
        self._done: deque = deque()

    def place(self, values) -> list:
        return list(values)

    def persist(self, collections) -> tuple:
        import dask

        return dask.compute(*collections, scheduler="threads")

    def start(self, tag, collections: list, *, key: str) -> None:
        import dask

        results = dask.compute(*collections, scheduler="threads")
        self._done.append((tag, list(results[:-1]), results[-1]))

    def pending(self) -> bool:
        return bool(self._done)

    def next_done(self):
        return self._done.popleft()

    def fetch(self, handle):
        return handle

    def close(self) -> None:
        self._done.clear()


class _ClusterRunner:
    """A distributed client: results stay on the workers as futures; only the last one of each start comes back.

    Graphs go unoptimised: tasks shared by many submissions (chunk reads)
    must be described the same way by each of them (optimising each
    submission fuses them differently, which the scheduler warns can
    deadlock, dask #9888).  The scheduler still runs only the tasks needed.
    """

    def __init__(self, client):
        from distributed import as_completed

        self.client = client
        self._pending: dict = {}
        # as_completed takes the default client's loop unless told; the client need not be the default.
        self._completed = as_completed(loop=client.loop)

    def place(self, values) -> list:
        return self.client.scatter(list(values))

    def persist(self, collections) -> tuple:
        return tuple(future.result() for future in self.client.compute(list(collections), optimize_graph=False))

    def start(self, tag, collections: list, *, key: str) -> None:
        import dask

        *handles, last = collections
        futures = self.client.compute([*handles, dask.delayed(_identity)(last, dask_key_name=key)],
                                      optimize_graph=False)
        self._pending[futures[-1]] = (tag, futures[:-1])
        self._completed.add(futures[-1])

    def pending(self) -> bool:
        return bool(self._pending)

    def next_done(self):
        future = next(self._completed)
        tag, handles = self._pending.pop(future)
        return tag, handles, future.result()  # raises a failed task's error here

    def fetch(self, handle):
        return handle.result() if handle is not None else None

    def close(self) -> None:
        for future, (_, handles) in self._pending.items():
            self.client.cancel([future, *handles])
        self._pending.clear()


def _identity(value):
    return value
