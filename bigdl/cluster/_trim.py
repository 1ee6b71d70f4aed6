"""Give free heap memory back to the OS when a worker nears its memory limit (``malloc_trim``).

:data:`bigdl.cluster.WORKER_ENVIRONMENT` raises glibc's trim threshold so a
training loop does not pay for pages given back and faulted in again at every
batch.  The price is free memory a worker process keeps, in each of its malloc
arenas (one per thread, up to 8 per core), and free memory below a live
allocation is never trimmed at all, whatever the threshold.  Dask pauses a
worker whose process memory passes ``distributed.worker.memory.pause`` (80%)
and never trims it, so a worker holding only free memory stays paused and a
computation waits for ever (seen with 600 MiB workers of 6 threads).  This
plugin checks the worker's memory every second and, above ``fraction`` of its
limit, calls glibc's ``malloc_trim(0)``, which returns every free page (the
remedy distributed's documentation gives, "Manually trim memory"), so Dask's
own monitor then sees the real use and resumes the worker.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from distributed import WorkerPlugin

__all__ = ["TrimMemory", "malloc_trim"]


def malloc_trim() -> bool:
    """Return free heap pages to the OS (glibc's ``malloc_trim(0)``); False where there is no glibc.

    Returns
    -------
    bool
        Whether memory was released (as glibc reports it), False also off glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        return False


class TrimMemory(WorkerPlugin):
    """A Dask worker plugin: ``malloc_trim`` when the process holds more than ``fraction`` of the memory limit.

    Parameters
    ----------
    fraction : float, default 0.6
        Of the worker's ``memory_limit``; below distributed's spill (70%) and
        pause (80%) thresholds, so trimming comes first.
    interval : float, default 1.0
        Seconds between checks.

    Attributes
    ----------
    trims : int
        How many times this worker trimmed (on the worker's copy of the plugin).
    """

    name = "bigdl-trim-memory"

    def __init__(self, fraction: float = 0.6, interval: float = 1.0):
        self.fraction = float(fraction)
        self.interval = float(interval)
        self.trims = 0

    def setup(self, worker) -> None:
        """Start the periodic check on the worker's event loop.

        Parameters
        ----------
        worker : distributed.Worker
        """
        from tornado.ioloop import PeriodicCallback

        self._worker = worker
        callback = PeriodicCallback(self.check, self.interval * 1000)
        worker.periodic_callbacks[self.name] = callback
        callback.start()

    def check(self) -> None:
        """Trim if the worker's process memory is above ``fraction`` of its limit."""
        worker = self._worker
        limit = getattr(worker.memory_manager, "memory_limit", None)
        if not limit:
            return
        if worker.monitor.get_process_memory() > self.fraction * limit and malloc_trim():
            self.trims += 1

    def teardown(self, worker) -> None:
        """Stop the periodic check.

        Parameters
        ----------
        worker : distributed.Worker
        """
        callback = worker.periodic_callbacks.pop(self.name, None)
        if callback is not None:
            callback.stop()
