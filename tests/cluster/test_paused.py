"""A worker paused for memory: bigdl's waits warn once, naming it, instead of hanging without a word.

The pause is real: the worker's own memory manager is told to pause above 1%
of its limit (its process is well above that), then set back, and it resumes.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from bigdl.runtime import _tasks


def _pause_above(fraction, dask_worker=None):
    dask_worker.memory_manager.memory_pause_fraction = fraction


def _status(client):
    return [worker["status"] for worker in client.scheduler_info(n_workers=-1)["workers"].values()]


@pytest.fixture
def one_worker():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="2GiB",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_paused_worker_is_named_while_the_tasks_wait_and_the_tasks_run_once_it_resumes(one_worker, monkeypatch,
                                                                                            caplog):
    monkeypatch.setattr(_tasks, "PAUSED_WARNING_AFTER", 1.0)
    monkeypatch.setattr(_tasks, "_PAUSED_POLL", 0.2)
    client = one_worker
    client.run(_pause_above, 0.01)
    assert _wait_for(lambda: _status(client) == ["paused"])
    results = {}
    worker = threading.Thread(target=lambda: results.update(
        value=_tasks.run_tasks("bigdl-test-paused", pow, [(2, 10), (3, 2)], desc="pow", progress=False,
                               client=client)))
    with caplog.at_level(logging.WARNING, logger="bigdl.runtime"):
        worker.start()
        assert _wait_for(lambda: any("has been paused" in record.message for record in caplog.records))
        assert worker.is_alive(), "nothing runs on a paused worker"
        client.run(_pause_above, 0.8)
        worker.join(timeout=60)
    assert results["value"] == [1024, 9]
    (message,) = [record.message for record in caplog.records if "has been paused" in record.message]
    address = next(iter(client.scheduler_info()["workers"]))
    assert address in message and "memory limit of 2.00 GiB" in message and "memory_limit=" in message


def test_no_warning_while_the_workers_run(one_worker, monkeypatch, caplog):
    monkeypatch.setattr(_tasks, "PAUSED_WARNING_AFTER", 0.5)
    with caplog.at_level(logging.WARNING, logger="bigdl.runtime"):
        with _tasks.warn_when_paused(one_worker, poll=0.1) as warned:
            assert one_worker.submit(time.sleep, 1.5, pure=False).result() is None
    assert warned == set() and not [record for record in caplog.records if "paused" in record.message]
