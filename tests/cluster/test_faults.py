"""Faults: a worker killed mid-ingest or mid-training, the client interrupted mid-ingest.

The killed worker is a real process of a ``LocalCluster`` (its nanny
restarts it), killed with SIGKILL at a moment chosen by watching the work on
disk and the scheduler, never by sleeping; each test also asserts that the
kill really landed while the work ran.  The interrupted client is a real
``bigdl ingest`` process (or a script on the threaded scheduler) sent SIGINT
or SIGTERM once its read pass has started.  A damaged chunk on disk is
covered in ``tests/store/test_verify.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

import bigdl
from bigdl.models import MLP
from bigdl.train import Trainer

ROWS = 300_000
INGEST = dict(target="target", categorical=["carrier"], drop=["id"], rows_per_chunk=20_000, blocksize="512KB",
              test=0.2, validation=0.1, progress=False)
ARRAYS = ["X", "y", "split", "record"]
PATIENCE = 120  # seconds: generous, the machine is shared; polls return as soon as the condition holds


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    """About 58 MB of CSV in two files: a few seconds of ingest, in over a hundred read tasks."""
    return bigdl.datasets.write_tabular_csv(tmp_path_factory.mktemp("faults-data"), ROWS, n_files=2, seed=0)


@pytest.fixture(scope="module")
def fault_client():
    """A cluster of its own (2 worker processes under nannies): its workers get killed."""
    client = bigdl.cluster.start_local(n_workers=2, threads_per_worker=1, memory_limit="1GiB",
                                       dashboard_address=":0", quiet=True)
    yield client  # the suite's autouse fixture stops it being the default client in each test
    cluster = client.cluster
    client.close()
    cluster.close()


def _wait_for(condition, what: str, timeout: float = PATIENCE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class WorkerKiller(threading.Thread):
    """Once ``ready()`` holds, SIGKILL the worker process running a task whose key starts with ``prefix``."""

    def __init__(self, client, ready, prefix: str):
        super().__init__(daemon=True)
        self.client, self.ready, self.prefix = client, ready, prefix
        self.pids = client.run(os.getpid)  # worker address -> process id
        self.work_done = threading.Event()
        self.killed: str | None = None
        self.killed_while_running = False
        self.error: BaseException | None = None

    def _running_worker(self):
        if not self.ready():
            return None
        for address, keys in self.client.processing().items():
            if address in self.pids and any(str(key).startswith(self.prefix) for key in keys):
                return address
        return None

    def run(self):
        try:
            address = _wait_for(lambda: self.work_done.is_set() or self._running_worker(), f"a {self.prefix} task")
            if address is True:  # the work ended first: reported by the test's assertions
                return
            os.kill(self.pids[address], signal.SIGKILL)
            self.killed, self.killed_while_running = address, not self.work_done.is_set()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            self.error = error

    def finish(self):
        self.work_done.set()
        self.join(PATIENCE)
        if self.error is not None:
            raise self.error
        assert self.killed is not None and self.killed_while_running, "the worker was not killed during the work"


def _temporaries(directory, store_name: str) -> list:
    return sorted(directory.glob(f".{store_name}.*"))


# ---------------------------------------------------------------- kill -9 a worker mid-ingest
def test_ingest_survives_a_killed_worker_with_identical_chunks(csv_files, fault_client, tmp_path):
    from bigdl.store import chunk_checksums

    reference = bigdl.ingest.tabular(csv_files, store=tmp_path / "reference.zarr", client=fault_client, **INGEST)

    store = tmp_path / "faulty.zarr"
    staged = lambda: any(tmp_path.glob(".faulty.zarr.tmp-*/_staging/block-*.arrow"))  # noqa: E731
    killer = WorkerKiller(fault_client, staged, "bigdl-ingest-")
    killer.start()
    try:
        faulty = bigdl.ingest.tabular(csv_files, store=store, client=fault_client, **INGEST)
    finally:
        killer.finish()

    assert faulty.row_counts == reference.row_counts and faulty.row_counts["stored"] == ROWS
    expected = chunk_checksums(reference.path, ARRAYS)
    assert sum(len(sums) for sums in expected.values()) >= 4 * 15  # 15 chunks of each array
    assert chunk_checksums(faulty.path, ARRAYS) == expected  # every chunk file, byte for byte
    assert bigdl.store.verify_store(faulty.path, progress=False).ok
    assert _temporaries(tmp_path, "faulty.zarr") == []
    # The nanny brought the killed worker back.
    _wait_for(lambda: len(fault_client.ncores()) == 2, "the nanny to bring the killed worker back")


# ---------------------------------------------------------------- kill -9 the worker running a Trainer
@pytest.fixture(scope="module")
def training_store(tmp_path_factory):
    frame = bigdl.datasets.make_tabular(4000, n_numeric=8, n_classes=3, seed=2, with_category=False)
    root = tmp_path_factory.mktemp("faults-train")
    frame.to_parquet(root / "data.parquet", index=False)
    return bigdl.ingest.tabular(root / "data.parquet", target="target", drop=["id"], store=root / "t.zarr",
                                rows_per_chunk=400, validation=0.1, test=0.1, progress=False)


def _trainer(ds, directory) -> Trainer:
    torch.manual_seed(0)
    model = MLP(ds.n_features, [64, 64], ds.n_classes)
    # Small batches: many steps per epoch, so the run lasts long enough to be killed in its middle.
    return Trainer(model, epochs=10, batch_size=16, seed=3, checkpoint_dir=str(directory), torch_threads=1,
                   progress=False)


def test_a_trainer_whose_worker_is_killed_continues_from_its_checkpoint(training_store, fault_client, tmp_path):
    ds = training_store
    uninterrupted = _trainer(ds, tmp_path / "uninterrupted")
    with fault_client.as_current():
        uninterrupted.fit(ds)

    directory = tmp_path / "interrupted"
    # The sidecar is written last: with it, the checkpoint of epoch 1 is complete.
    checkpointed = lambda: (directory / "epoch-00000.json").exists()  # noqa: E731
    killer = WorkerKiller(fault_client, checkpointed, "bigdl-train-")
    killer.start()
    interrupted = _trainer(ds, directory)
    try:
        with fault_client.as_current():
            history = interrupted.fit(ds)  # no resume=True: the rescheduled task finds its run's checkpoint
    finally:
        killer.finish()

    assert [entry["epoch"] for entry in history] == list(range(1, 11))
    # The epochs before the kill ran on the killed worker and come from the
    # checkpoint; the rest ran elsewhere after the task was rescheduled.
    assert history[0]["worker"] == killer.killed
    assert history[-1]["worker"] != killer.killed
    resumed_at = next(index for index, entry in enumerate(history) if entry["worker"] != killer.killed)
    assert 1 <= resumed_at < 10
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(interrupted.model.state_dict()[name], value, rtol=1e-6, atol=1e-7,
                                   msg=f"parameter {name}")
    for left, right in zip(history, uninterrupted.history):
        assert left["train_loss"] == pytest.approx(right["train_loss"], rel=1e-6)
    _wait_for(lambda: len(fault_client.ncores()) == 2, "the nanny to bring the killed worker back")


def test_a_trainer_killed_mid_epoch_continues_from_its_step_checkpoint(training_store, fault_client, tmp_path):
    ds = training_store
    uninterrupted = _trainer(ds, tmp_path / "uninterrupted")
    uninterrupted.checkpoint_every = 25
    with fault_client.as_current():
        uninterrupted.fit(ds)

    directory = tmp_path / "interrupted"
    # The first epoch has 200 steps: its step-25 checkpoint appears long before it ends.
    within_epoch = lambda: any(directory.glob("epoch-00000-step-*.json"))  # noqa: E731
    killer = WorkerKiller(fault_client, within_epoch, "bigdl-train-")
    killer.start()
    interrupted = _trainer(ds, directory)
    interrupted.checkpoint_every = 25
    try:
        with fault_client.as_current():
            history = interrupted.fit(ds)
    finally:
        killer.finish()
    assert [entry["epoch"] for entry in history] == list(range(1, 11))
    assert history[-1]["worker"] != killer.killed
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(interrupted.model.state_dict()[name], value, rtol=1e-6, atol=1e-7,
                                   msg=f"parameter {name}")
    for left, right in zip(history, uninterrupted.history):
        assert left["train_loss"] == pytest.approx(right["train_loss"], rel=1e-6)
    _wait_for(lambda: len(fault_client.ncores()) == 2, "the nanny to bring the killed worker back")


# ---------------------------------------------------------------- interrupting the client
THREADED_SCRIPT = textwrap.dedent("""
    import sys
    import bigdl
    try:
        bigdl.ingest.tabular(sys.argv[2:], store=sys.argv[1], target="target", categorical=["carrier"],
                             drop=["id"], rows_per_chunk=20_000, blocksize="512KB", progress=False)
    except KeyboardInterrupt:
        sys.exit(130)
""")


@pytest.mark.parametrize("how", ["cli-cluster-SIGINT", "cli-cluster-SIGTERM", "threads-SIGTERM"])
def test_an_interrupted_ingest_leaves_nothing_and_runs_again(how, csv_files, tmp_path):
    store = tmp_path / "s.zarr"
    files = [str(path) for path in csv_files]
    if how.startswith("cli"):
        command = [sys.executable, "-m", "bigdl.cli", "ingest", *files, "--store", str(store), "--target", "target",
                   "--categorical", "carrier", "--drop", "id", "--rows-per-chunk", "20000", "--blocksize", "512KB",
                   "--workers", "2", "--memory-limit", "1GiB", "--no-progress"]
    else:
        command = [sys.executable, "-c", THREADED_SCRIPT, str(store), *files]
    environment = {key: value for key, value in os.environ.items() if key != "DASK_SCHEDULER_ADDRESS"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        _wait_for(lambda: any(tmp_path.glob(".s.zarr.tmp-*/_staging/block-*.arrow")) or process.poll() is not None,
                  "the read pass to start")
        assert process.poll() is None, f"the ingest ended before it was interrupted: {process.communicate()}"
        process.send_signal(signal.SIGTERM if how.endswith("SIGTERM") else signal.SIGINT)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, (out, err)
    if how.startswith("cli"):
        assert "interrupted; nothing was written under the store's name" in err
    assert not store.exists()
    assert _temporaries(tmp_path, "s.zarr") == []  # the temporary store is gone, staged rows with it

    ds = bigdl.ingest.tabular(csv_files, store=store, target="target", categorical=["carrier"], drop=["id"],
                              rows_per_chunk=20_000, blocksize="4MB", progress=False)
    assert ds.row_counts["stored"] == ROWS
    assert bigdl.store.verify_store(store, progress=False).ok
