"""The training loop's methods and callbacks: what a Trainer user can hook into or override."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bigdl.errors import SchemaError
from bigdl.loaders.torch import ChunkLoader
from bigdl.train import Callback, Trainer, TrainingLoop


def _mlp(ds, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(ds.n_features, 16), nn.ReLU(), nn.Linear(16, ds.n_classes))


class Recorder(Callback):
    """Records every hook call (in process: ``on_cluster=False``)."""

    def __init__(self):
        self.calls, self.batch_samples, self.entries = [], 0, []

    def on_train_begin(self, loop):
        self.calls.append("train_begin")

    def on_epoch_begin(self, loop, epoch):
        self.calls.append(f"epoch_begin {epoch}")

    def on_batch_end(self, loop, loss, n_samples):
        assert np.isfinite(loss)
        self.batch_samples += n_samples

    def on_epoch_end(self, loop, entry):
        self.calls.append(f"epoch_end {entry['epoch']}")
        self.entries.append(dict(entry))

    def on_train_end(self, loop):
        self.calls.append("train_end")


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, loop, entry):
        if entry["epoch"] >= self.epochs:
            loop.stop = True


class FrozenLoop(TrainingLoop):
    """A loop whose steps compute the loss and change nothing."""

    def train_step(self, X, y):
        with torch.no_grad():
            return float(self.criterion(self.trained(X), y.long()))


def test_callbacks_see_every_epoch_and_batch(classification_store):
    recorder = Recorder()
    run = Trainer(_mlp(classification_store), epochs=3, batch_size=128, on_cluster=False, progress=False,
                  callbacks=[recorder])
    history = run.fit(classification_store)
    assert recorder.calls == ["train_begin", "epoch_begin 0", "epoch_end 1", "epoch_begin 1", "epoch_end 2",
                              "epoch_begin 2", "epoch_end 3", "train_end"]
    assert recorder.batch_samples == 3 * classification_store.split_counts["train"]
    assert [entry["val_loss"] for entry in recorder.entries] == [entry["val_loss"] for entry in history]


def test_a_callback_stops_training_on_the_cluster(classification_store, cluster_client):
    with cluster_client.as_current():
        run = Trainer(_mlp(classification_store), epochs=6, batch_size=256, progress=False,
                      callbacks=[StopAfter(2)])
        history = run.fit(classification_store)
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert history[0]["worker"].startswith("tcp://127.0.0.1")  # it ran on a worker, callbacks and all


def test_an_overridden_step_is_the_one_that_runs(classification_store, client):
    model = _mlp(classification_store)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    run = Trainer(model, epochs=2, batch_size=256, progress=False, loop_class=FrozenLoop)
    if client is not None:
        with client.as_current():
            history = run.fit(classification_store)
    else:
        history = run.fit(classification_store)
    for name, value in run.model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert history[0]["train_loss"] == pytest.approx(history[1]["train_loss"], rel=1e-6)


def test_the_loop_on_its_own_equals_the_trainer(classification_store):
    """A script can drive TrainingLoop itself: same loader, same steps, same weights as Trainer(on_cluster=False)."""
    ds = classification_store
    run = Trainer(_mlp(ds, seed=4), epochs=2, batch_size=128, seed=9, on_cluster=False, progress=False)
    run.fit(ds)

    torch.manual_seed(9)  # the Trainer seeds torch with its seed before the loop
    model = _mlp(ds, seed=4)
    torch.manual_seed(9)
    loop = TrainingLoop(model, torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss(),
                        task="classification", batch_size=128, seed=9)
    loader = loop.get_iterator(ds, split="train", training=True)
    assert isinstance(loader, ChunkLoader) and loader.shuffle
    for epoch in range(2):
        loader.set_epoch(epoch)
        loop.train_epoch(loader, epoch)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, run.model.state_dict()[name], rtol=1e-5, atol=1e-6)
    evaluation = loop.get_iterator(ds, split="test", training=False)
    assert not evaluation.shuffle and evaluation.batch_size == 1024


def test_bad_callbacks_and_loop_classes_are_named(classification_store):
    with pytest.raises(SchemaError, match="'callbacks' parameter of Trainer"):
        Trainer(_mlp(classification_store), callbacks=[print], on_cluster=False).fit(classification_store)
    with pytest.raises(SchemaError, match="'loop_class' parameter of Trainer"):
        Trainer(_mlp(classification_store), loop_class=dict, on_cluster=False).fit(classification_store)
