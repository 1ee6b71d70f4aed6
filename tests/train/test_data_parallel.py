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


class KillRankOne(Callback):
    """Kills rank 1's worker process after its first epoch, as SIGKILL or the OOM killer would."""

    def on_epoch_end(self, loop, entry):
        import os
        import signal

        if loop.rank == 1 and entry["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_lost_rank_is_a_training_error_naming_the_worker_and_the_checkpoint(store, tmp_path):
    from distributed import Client, LocalCluster

    from bigdl.errors import TrainingError

    # A cluster of its own: a worker dies here.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as own:
        workers = sorted(own.scheduler_info(n_workers=-1)["workers"])
        trainer = Trainer(MLP(store.n_features, [8], store.n_classes), epochs=4, batch_size=256, n_workers=2,
                          progress=False, checkpoint_dir=str(tmp_path / "ckpt"), callbacks=[KillRankOne()])
        with own.as_current(), pytest.raises(TrainingError) as caught:
            trainer.fit(store)
    message = str(caught.value)
    assert f"lost {workers[1]} (rank 1)" in message
    assert "after 1 finished epoch(s)" in message
    assert f"continues from {tmp_path / 'ckpt'}" in message and "epoch-00000" in message
    assert "resume=True" in message
