"""Data-parallel training over two Dask worker processes with torch.distributed (gloo)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import bigdl
from bigdl.errors import SchemaError
from bigdl.models import MLP
from bigdl.train import Callback, Trainer


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    frame = bigdl.datasets.make_tabular(6000, n_numeric=6, n_classes=3, seed=3, with_category=False)
    frame.to_parquet(root / "data.parquet", index=False)
    # Odd chunk counts per rank: the shards are uneven on purpose.
    return bigdl.ingest.tabular(root / "data.parquet", target="target", store=root / "s.zarr", drop=["id"],
                                rows_per_chunk=700, validation=0.1, test=0.2, progress=False)


@pytest.fixture
def client(cluster_client):
    """The session's 2-process LocalCluster, current for the test (as start_local leaves it)."""
    with cluster_client.as_current():
        yield cluster_client


def test_two_ranks_train_one_model(store, client):
    torch.manual_seed(0)
    trainer = Trainer(MLP(store.n_features, [16], store.n_classes), epochs=3, batch_size=64, n_workers=2,
                      progress=False, seed=0)
    history = trainer.fit(store)
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert all(entry["ranks"] == 2 for entry in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # Samples counted over both ranks: every train sample once per epoch.
    seconds = history[0]["seconds"]
    assert history[0]["samples_per_second"] * seconds == pytest.approx(store.split_counts["train"], rel=1e-6)
    metrics = trainer.evaluate(store, "test")
    X_test, y_test = (array.compute() for array in store.arrays("test"))
    with torch.no_grad():
        expected = (trainer.model(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean()
    assert metrics["accuracy"] == pytest.approx(expected)
    majority = np.bincount(y_test).max() / len(y_test)
    assert metrics["accuracy"] > majority + 0.1


def test_more_ranks_than_workers_is_a_clear_error(store, client):
    trainer = Trainer(MLP(store.n_features, [8], store.n_classes), epochs=1, n_workers=3, progress=False)
    with pytest.raises(SchemaError, match="n_workers=3 but the cluster has only 2 workers"):
        trainer.fit(store)


def test_data_parallel_needs_a_cluster(store):
    trainer = Trainer(MLP(store.n_features, [8], store.n_classes), epochs=1, n_workers=2, progress=False)
    with pytest.raises(SchemaError, match="needs a Dask cluster"):
        trainer.fit(store)


class KillRank(Callback):
    """SIGKILLs rank ``rank``'s worker process after step ``step`` of epoch ``epoch``, once (as the OOM killer would).

    The marker file makes it once per test: after the restart, the same step comes again.
    """

    def __init__(self, rank: int, epoch: int, step: int, marker):
        self.rank, self.epoch, self.step, self.marker = rank, epoch, step, str(marker)

    def on_epoch_begin(self, loop, epoch):
        self._epoch = epoch

    def on_batch_end(self, loop, loss, n_samples):
        import os
        import signal

        if loop.rank == self.rank and self._epoch == self.epoch and loop.epoch_steps == self.step + 1 \
                and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def _ddp_trainer(store, directory, n_workers, callbacks=(), **options) -> Trainer:
    torch.manual_seed(0)
    return Trainer(MLP(store.n_features, [16], store.n_classes), epochs=3, batch_size=60 // n_workers,
                   n_workers=n_workers, progress=False, checkpoint_dir=str(directory), checkpoint_every=5,
                   torch_threads=1, seed=2, callbacks=list(callbacks), **options)


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster of its own (start_local: 3 worker processes under nannies): workers get killed here."""
    client = bigdl.cluster.start_local(n_workers=3, threads_per_worker=1, memory_limit="1GiB",
                                       dashboard_address=":0", quiet=True)
    yield client  # the suite's autouse fixture stops it being the default client in each test
    cluster = client.cluster
    client.close()
    cluster.close()


def _wait_for_workers(client, count: int, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while len(client.scheduler_info(n_workers=-1)["workers"]) < count:
        assert time.monotonic() < deadline, f"the cluster did not get back to {count} workers"
        time.sleep(0.1)


def test_a_lost_rank_starts_again_from_its_mid_epoch_checkpoint_and_ends_as_uninterrupted(store, own_cluster,
                                                                                          tmp_path):
    """kill -9 of one of 2 ranks mid-epoch: the job restarts on 2 workers (the nanny brings one back)."""
    _wait_for_workers(own_cluster, 3)
    with own_cluster.as_current():
        reference = _ddp_trainer(store, tmp_path / "reference", 2)
        reference.fit(store)
        interrupted = _ddp_trainer(store, tmp_path / "interrupted", 2, [KillRank(1, 1, 12, tmp_path / "killed")])
        history = interrupted.fit(store)
    assert (tmp_path / "killed").exists(), "rank 1 was killed"
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert all(entry["ranks"] == 2 for entry in history)
    # gloo's all-reduce of two ranks adds in a fixed order: the same weights as the uninterrupted run
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(interrupted.model.state_dict()[name], value, rtol=1e-6, atol=1e-7)
    for left, right in zip(history, reference.history):
        assert left["train_loss"] == pytest.approx(right["train_loss"], rel=1e-6)
    _wait_for_workers(own_cluster, 3)


def test_a_job_goes_on_with_fewer_workers_at_the_same_global_batch_size(store, own_cluster, tmp_path):
    """kill -9 of one of 3 ranks, restart_wait=0: the job continues on the 2 workers left."""
    _wait_for_workers(own_cluster, 3)
    with own_cluster.as_current():
        reference = _ddp_trainer(store, tmp_path / "reference", 3)
        reference.fit(store)
        interrupted = _ddp_trainer(store, tmp_path / "interrupted", 3, [KillRank(2, 0, 30, tmp_path / "killed")],
                                   restart_wait=0)
        history = interrupted.fit(store)
    assert [entry["ranks"] for entry in history] == [2, 2, 2]  # epoch 1 ended after the restart
    # The same global steps (60 samples each) over 2 ranks instead of 3: the gradients agree to rounding
    # (float sums in another order), and Adam carries that for 3 epochs.
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(interrupted.model.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    for left, right in zip(history, reference.history):
        assert left["train_loss"] == pytest.approx(right["train_loss"], rel=1e-4)
    _wait_for_workers(own_cluster, 3)


def test_a_job_out_of_restarts_is_a_training_error_naming_the_worker_and_the_checkpoint(store, own_cluster, tmp_path):
    from bigdl.errors import TrainingError

    _wait_for_workers(own_cluster, 3)
    workers = sorted(own_cluster.scheduler_info(n_workers=-1)["workers"])
    trainer = _ddp_trainer(store, tmp_path / "ckpt", 2, [KillRank(1, 1, 3, tmp_path / "killed")], max_restarts=0)
    with own_cluster.as_current(), pytest.raises(TrainingError) as caught:
        trainer.fit(store)
    message = str(caught.value)
    assert f"lost {workers[1]} (rank 1)" in message
    assert "after 1 finished epoch(s)" in message
    assert f"continues from {tmp_path / 'ckpt'}" in message and "epoch-00000" in message
    assert "resume=True" in message and "max_restarts=0" in message
    _wait_for_workers(own_cluster, 3)
