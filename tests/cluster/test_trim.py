"""start_local's workers give free heap memory back before Dask would pause them for it (TrimMemory)."""

from __future__ import annotations

import time

import bigdl
from bigdl.cluster._trim import TrimMemory


def _hold_free_heap_memory(megabytes: int) -> int:
    """Free ``megabytes`` of 1 MiB heap blocks under a live one: free memory no trim threshold returns."""
    import builtins

    blocks = [bytearray(2 ** 20) for _ in range(megabytes)]
    builtins._bigdl_test_pin = bytearray(100_000)  # above the freed blocks, so they are not the heap's top
    del blocks
    import psutil

    return psutil.Process().memory_info().rss


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _trims(dask_worker) -> int:
    return dask_worker.plugins[TrimMemory.name].trims


def test_a_worker_holding_free_memory_above_the_fraction_trims_it():
    client = bigdl.cluster.start_local(n_workers=1, threads_per_worker=1, memory_limit="600MiB",
                                       dashboard_address=None, quiet=True)
    try:
        worker = next(iter(client.scheduler_info(n_workers=-1)["workers"]))
        before = client.run(_rss)[worker]
        held = client.submit(_hold_free_heap_memory, 300, pure=False).result()
        assert held > before + 200 * 2 ** 20, "the freed blocks were kept by the allocator"
        deadline = time.monotonic() + 30
        while client.run(_rss)[worker] > before + 100 * 2 ** 20:
            assert time.monotonic() < deadline, "the worker never gave the free memory back"
            time.sleep(0.2)
        assert client.run(_trims)[worker] >= 1
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
