"""Run a list of independent tasks on Dask with a progress bar.

With a distributed ``Client`` active (``bigdl.cluster.start_local`` or
``connect``) tasks go to its workers under readable keys (``bigdl-ingest-read-…``)
so the dashboard's task stream names them; without one they run on Dask's
local threaded scheduler.  Either way a tqdm bar counts finished tasks.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any, Callable, Sequence

from bigdl._events import current_ingest_job

__all__ = ["active_client", "run_tasks"]


def active_client(client=None):
    """The given client, else the current default distributed client, else None."""
    if client is not None:
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=not enabled, file=sys.stderr, leave=False)


def run_tasks(prefix: str, func: Callable, arguments: Sequence[tuple], *, desc: str, progress: bool = True,
              client=None) -> list[Any]:
    """Call ``func(*args)`` for each tuple in ``arguments``; return results in order.

    The first task error is raised in the caller with its original type and
    message after the remaining tasks are cancelled.  Inside an ingest job
    (``bigdl-ingest-*`` prefixes on a distributed client) each finished
    task's result also goes to the job, which publishes rows and bytes on the
    dashboard (see :class:`bigdl._events.IngestJob` for what results count).
    """
    if not arguments:
        return []
    client = active_client(client)
    token = uuid.uuid4().hex[:8]
    keys = [f"{prefix}-{token}-{index}" for index in range(len(arguments))]
    job = current_ingest_job()
    on_result = job.stage(prefix, len(arguments), client) if job is not None else None
    with _progress_bar(len(arguments), desc, progress) as bar:
        if client is not None:
            return _run_distributed(client, func, arguments, keys, bar, on_result)
        return _run_local(func, arguments, keys, bar)


def _run_distributed(client, func, arguments, keys, bar, on_result=None):
    from distributed import as_completed

    futures = [client.submit(func, *args, key=key, pure=False) for key, args in zip(keys, arguments)]
    try:
        # as_completed takes the default client's loop unless told: the given
        # client need not be the default one.
        for future in as_completed(futures, loop=client.loop):
            if future.status == "error":
                future.result()  # raises the task's exception in the caller
            if on_result is not None:
                on_result(future.result())
            bar.update(1)
        return [future.result() for future in futures]
    except BaseException:
        client.cancel(futures)
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
