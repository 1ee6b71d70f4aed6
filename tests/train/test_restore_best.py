"""restore_best: training ends with the weights of the epoch of lowest validation loss, and says which.

A callback spoils the weights from the third epoch on (it adds noise before
each epoch), so the validation loss is lowest at epoch 2 and every later
epoch is worse: the last epoch's weights and the best epoch's differ, and
the test can tell which ones the Trainer kept.  Each epoch's weights are
recorded by a second callback (the loop runs in this process).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bigdl.errors import SchemaError
from bigdl.models import MLP
from bigdl.train import Callback, Trainer


class Spoil(Callback):
    """From epoch ``start`` (0-based) on, add noise to every weight before the epoch."""

    def __init__(self, start: int = 2, scale: float = 0.5):
        self.start, self.scale = start, scale

    def on_epoch_begin(self, loop, epoch: int) -> None:
        if epoch >= self.start:
            generator = torch.Generator().manual_seed(epoch)
            with torch.no_grad():
                for parameter in loop.module.parameters():
                    parameter.add_(torch.randn(parameter.shape, generator=generator) * self.scale)


class Record(Callback):
    """Each finished epoch's weights (a CPU copy), by 1-based epoch."""

    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, loop, entry: dict) -> None:
        self.weights[entry["epoch"]] = {key: value.detach().clone() for key, value in loop.module.state_dict().items()}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _trainer(ds, record: Record, **options) -> Trainer:
    torch.manual_seed(0)
    settings = dict(optimizer="adam", lr=0.01, epochs=5, batch_size=128, seed=3, on_cluster=False, progress=False,
                    callbacks=[Spoil(), record])
    settings.update(options)
    return Trainer(MLP(ds.n_features, [16], ds.n_classes), **settings)


def _same(left: dict, right: dict) -> bool:
    return all(torch.equal(left[key], right[key]) for key in left)


def test_restore_best_keeps_the_best_validation_epoch(classification_store):
    record = Record()
    run = _trainer(classification_store, record, restore_best=True)
    history = run.fit(classification_store)
    losses = [entry["val_loss"] for entry in history]
    best = int(np.argmin(losses)) + 1
    assert best < len(history)  # the spoiled epochs are worse: best and last differ
    assert run.best_epoch_ == best
    assert [entry["best"] for entry in history] == [entry["epoch"] == best for entry in history]
    assert _same(run.model.state_dict(), record.weights[best])
    assert not _same(run.model.state_dict(), record.weights[len(history)])
    assert run.evaluate(classification_store, split="validation")["loss"] == pytest.approx(losses[best - 1],
                                                                                         rel=1e-6)


def test_early_stopping_restores_the_best_epoch_by_default(classification_store):
    record = Record()
    run = _trainer(classification_store, record, epochs=10, early_stopping=2)
    history = run.fit(classification_store)
    assert len(history) < 10  # it stopped
    assert run.best_epoch_ == len(history) - 2
    assert _same(run.model.state_dict(), record.weights[run.best_epoch_])
    # restore_best=False keeps the last epoch's weights, as before
    record = Record()
    last = _trainer(classification_store, record, epochs=10, early_stopping=2, restore_best=False)
    history = last.fit(classification_store)
    assert _same(last.model.state_dict(), record.weights[len(history)])
    assert last.best_epoch_ == len(history) - 2


def test_the_best_epoch_before_a_resume_comes_from_its_checkpoint(classification_store, tmp_path):
    record = Record()
    first = _trainer(classification_store, record, epochs=3, checkpoint_dir=tmp_path, restore_best=True)
    first.fit(classification_store)
    assert first.best_epoch_ == 2
    record_after = Record()
    again = _trainer(classification_store, record_after, epochs=5, checkpoint_dir=tmp_path, restore_best=True)
    history = again.fit(classification_store, resume=True)
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4, 5] and set(record_after.weights) == {4, 5}
    assert again.best_epoch_ == 2
    assert _same(again.model.state_dict(), record.weights[2])


def test_restore_best_needs_a_validation_split(unvalidated_store):
    run = Trainer(MLP(unvalidated_store.n_features, [4], unvalidated_store.n_classes), epochs=1,
                  restore_best=True, on_cluster=False, progress=False)
    with pytest.raises(SchemaError, match="restore_best=True needs a validation split"):
        run.fit(unvalidated_store)
