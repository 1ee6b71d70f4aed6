"""A real multi-process cluster started from the command line, as Kubernetes pods start it.

One ``dask scheduler`` and two ``dask worker`` commands (each its own process
group, under its nanny, as in two worker pods) on 127.0.0.1; the test
connects with :func:`bigdl.cluster.connect` and runs ingest, training and an
estimator end to end on them, checking each against the same work done in
this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier

import bigdl
from bigdl.estimators import Incremental
from bigdl.models import MLP
from bigdl.train import Trainer
from support import assert_same_store

PATIENCE = 120  # seconds for processes to come up: generous, the machine is shared


def _dask(*arguments: str) -> list[str]:
    # `python -m dask` is the `dask` command of the interpreter running the tests.
    return [sys.executable, "-m", "dask", *arguments]


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each process group (nanny and worker), then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def command_line_cluster(tmp_path_factory):
    """The scheduler's address and the two worker commands' processes; always stopped at the end."""
    folder = tmp_path_factory.mktemp("cli-cluster")
    scheduler_file = folder / "scheduler.json"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(__file__) + "/..",
                                                                             os.environ.get("PYTHONPATH")])))
    environment.pop("DASK_SCHEDULER_ADDRESS", None)
    processes: list[subprocess.Popen] = []

    def start(arguments: list[str], log_name: str) -> subprocess.Popen:
        log = open(folder / log_name, "w")
        process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=folder,
                                   start_new_session=True)  # its own process group, stopped as one
        processes.append(process)
        return process

    try:
        # Port 0 and a scheduler file: no port picked here can be taken by someone else meanwhile.
        start(_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file)), "scheduler.log")
        deadline = time.monotonic() + PATIENCE
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline or processes[0].poll() is not None:
                pytest.fail(f"dask scheduler did not start: {(folder / 'scheduler.log').read_text()}")
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for index in range(2):
            start(_dask("worker", address, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
                        "--memory-limit", "1GiB", "--no-dashboard", "--name", f"pod-{index}"), f"worker-{index}.log")
        yield address, processes
    finally:
        _stop(processes)


def test_ingest_training_and_an_estimator_on_command_line_processes(command_line_cluster, sources, tmp_path,
                                                                   ingest_kwargs):
    from distributed import get_task_stream

    address, processes = command_line_cluster
    source, extra = sources["csv"]
    options = dict(ingest_kwargs, validation=0.1, test=0.2, **extra)
    threaded = bigdl.ingest.tabular(source, store=tmp_path / "local.zarr", **options)  # no client yet

    client = bigdl.cluster.connect(address, timeout="60s", quiet=True)
    try:
        client.wait_for_workers(2, timeout=PATIENCE)
        workers = client.scheduler_info()["workers"]
        assert sorted(info["name"] for info in workers.values()) == ["pod-0", "pod-1"]
        # The workers are the command's processes (children of the nannies we started), not this one.
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids

        # Ingest (connect made the client the default): the same store as on the threaded scheduler.
        with get_task_stream(client=client) as stream:
            ds = bigdl.ingest.tabular(source, store=tmp_path / "cluster.zarr", **options)
        assert {task["worker"] for task in stream.data} == set(workers)  # both pods took part
        assert_same_store(ds.path, threaded.path)

        # Training on a worker process: the same weights as the same loop in this process.
        remote = _trainer(ds, on_cluster=True)
        history = remote.fit(ds)
        assert {entry["worker"] for entry in history} <= set(workers)
        here = _trainer(ds, on_cluster=False)
        here.fit(ds)
        for name, value in here.model.state_dict().items():
            torch.testing.assert_close(remote.model.state_dict()[name], value, rtol=1e-6, atol=1e-7)

        # Data-parallel training over both pods (torch.distributed between the two processes).
        parallel = _trainer(ds, on_cluster=True, n_workers=2)
        parallel_history = parallel.fit(ds)
        assert parallel_history[-1]["ranks"] == 2 and np.isfinite(parallel_history[-1]["train_loss"])

        # An estimator: Incremental SGD on the store equals the partial_fit loop over the same chunks.
        sgd = SGDClassifier(loss="log_loss", random_state=0)
        with get_task_stream(client=client) as stream:
            model = Incremental(clone(sgd), shuffle_blocks=False, scoring="accuracy").fit(ds)
        assert stream.data and {task["worker"] for task in stream.data} <= set(workers)
        reference = clone(sgd)
        X, y = ds.arrays("train")
        for block_x, block_y in zip(X.blocks, y.blocks):
            reference.partial_fit(block_x.compute(scheduler="threads"), block_y.compute(scheduler="threads"),
                                  classes=np.arange(ds.n_classes))
        np.testing.assert_allclose(model.estimator_.coef_, reference.coef_, rtol=1e-6)
    finally:
        client.close()
    assert all(process.poll() is None for process in processes)  # nothing crashed along the way


def _trainer(ds, **options) -> Trainer:
    torch.manual_seed(0)
    model = MLP(ds.n_features, [16], ds.n_classes)
    return Trainer(model, epochs=2, batch_size=64, seed=1, torch_threads=1, progress=False, **options)
