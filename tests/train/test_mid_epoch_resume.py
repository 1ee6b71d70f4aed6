"""Checkpoints within epochs (``checkpoint_every``) and an exact resume after a crash at any batch.

A callback raises at a chosen step (the process "crashes" after that step's
update); ``fit(resume=True)`` then continues from the newest step checkpoint
with the next batch, and the final weights and every epoch's loss equal an
uninterrupted run's exactly.
"""

from __future__ import annotations

import json

import pytest
import torch

from bigdl.errors import ParameterError, SchemaError
from bigdl.models import MLP
from bigdl.train import Callback, Trainer
from bigdl.train._checkpoint import checkpoint_to_resume, latest_checkpoint

SEED, BATCH_SIZE, EPOCHS = 5, 64, 3


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Crash(Exception):
    """What the crashing callback raises."""


class CrashAt(Callback):
    """Raises after the update of step ``step`` (0-based, counted within the epoch) of epoch ``epoch``, once."""

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step, self.fired = epoch, step, False

    def on_epoch_begin(self, loop, epoch):
        self._epoch, self._step = epoch, -1

    def on_batch_end(self, loop, loss, n_samples):
        self._step += 1
        if not self.fired and (self._epoch, self._step) == (self.epoch, self.step):
            self.fired = True
            raise Crash(f"crash at epoch {self.epoch} step {self.step}")


def _trainer(ds, directory, callbacks=(), **options) -> Trainer:
    torch.manual_seed(0)
    settings = dict(epochs=EPOCHS, batch_size=BATCH_SIZE, seed=SEED, on_cluster=False, progress=False,
                    checkpoint_dir=None if directory is None else str(directory), callbacks=list(callbacks))
    settings.update(options)
    # Dropout: the RNG state must come back too.
    return Trainer(MLP(ds.n_features, [16, 16], ds.n_classes, dropout=0.2), **settings)


@pytest.fixture(scope="module")
def uninterrupted(classification_store, tmp_path_factory):
    trainer = _trainer(classification_store, tmp_path_factory.mktemp("uninterrupted"))
    trainer.fit(classification_store)
    return trainer


def _assert_same_run(trainer, reference):
    for name, value in reference.model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), f"parameter {name} differs"
    assert [entry["epoch"] for entry in trainer.history] == list(range(1, EPOCHS + 1))
    for left, right in zip(trainer.history, reference.history):
        assert left["train_loss"] == pytest.approx(right["train_loss"], rel=1e-12)
        assert left["val_loss"] == pytest.approx(right["val_loss"], rel=1e-12)


def _steps_per_epoch(ds) -> int:
    return -(-int(ds.view.chunk_counts("train").sum()) // BATCH_SIZE)


@pytest.mark.parametrize("where", ["first", "second", "middle", "last", "next-epoch"])
def test_a_crash_at_any_batch_resumes_with_the_next_one(classification_store, uninterrupted, tmp_path, where):
    n = _steps_per_epoch(classification_store)
    epoch, step = {"first": (0, 0), "second": (0, 1), "middle": (0, n // 2), "last": (0, n - 1),
                   "next-epoch": (1, 7)}[where]
    crashing = _trainer(classification_store, tmp_path, [CrashAt(epoch, step)], checkpoint_every=1)
    with pytest.raises(Crash):
        crashing.fit(classification_store)
    latest = latest_checkpoint(str(tmp_path))
    if step == 0 and epoch == 0:
        assert latest is None  # nothing was saved before the first step ended
    elif step == n - 1:
        assert latest.endswith("-step-%08d.pt" % (n - 1))  # the step before the crash: the epoch's end was not reached
    resumed = _trainer(classification_store, tmp_path, checkpoint_every=1)
    resumed.fit(classification_store, resume=latest is not None)
    _assert_same_run(resumed, uninterrupted)


def test_only_the_newest_step_checkpoint_is_kept_beside_the_epoch_checkpoints(classification_store, tmp_path):
    trainer = _trainer(classification_store, tmp_path, [CrashAt(1, 9)], checkpoint_every=4)
    with pytest.raises(Crash):
        trainer.fit(classification_store)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["epoch-00000.json", "epoch-00000.pt", "epoch-00001-step-00000008.json",
                     "epoch-00001-step-00000008.pt"]
    sidecar = json.loads((tmp_path / "epoch-00001-step-00000008.json").read_text())
    assert sidecar["epoch"] == 1 and sidecar["step"] == 8
    # a fresh run's step checkpoints never remove this run's files
    other = _trainer(classification_store, tmp_path / "other", checkpoint_every=4)
    other.fit(classification_store)
    assert (tmp_path / "epoch-00001-step-00000008.pt").exists()
    assert not any("step" in path.name for path in (tmp_path / "other").iterdir())  # the epoch ends superseded them


def test_a_resumed_epoch_reports_the_whole_epoch(classification_store, uninterrupted, tmp_path):
    trainer = _trainer(classification_store, tmp_path, [CrashAt(1, 20)], checkpoint_every=5)
    with pytest.raises(Crash):
        trainer.fit(classification_store)
    state = checkpoint_to_resume(str(tmp_path), resume=True, run_id=None,
                                 identity=torch.load(latest_checkpoint(str(tmp_path)), weights_only=True)["identity"])[1]
    assert state["loader"]["sample_in_epoch"] == 20 * BATCH_SIZE and state["partial"]["samples"] == 20 * BATCH_SIZE
    resumed = _trainer(classification_store, tmp_path, checkpoint_every=5)
    history = resumed.fit(classification_store, resume=True)
    train_samples = classification_store.split_counts["train"]
    assert history[1]["samples_per_second"] * history[1]["seconds"] == pytest.approx(train_samples)
    _assert_same_run(resumed, uninterrupted)


def test_a_time_interval_checkpoints_too(classification_store, uninterrupted, tmp_path):
    trainer = _trainer(classification_store, tmp_path, [CrashAt(0, 30)], checkpoint_every="1ms")
    with pytest.raises(Crash):
        trainer.fit(classification_store)
    assert latest_checkpoint(str(tmp_path)).endswith("epoch-00000-step-00000030.pt")
    resumed = _trainer(classification_store, tmp_path, checkpoint_every="1ms")
    resumed.fit(classification_store, resume=True)
    _assert_same_run(resumed, uninterrupted)


@pytest.mark.parametrize("value,named", [(0, "checkpoint_every"), ("soon", "checkpoint_every"),
                                         (-1, "max_restarts"), ("later", "restart_wait")])
def test_bad_settings_name_the_parameter(classification_store, tmp_path, value, named):
    trainer = _trainer(classification_store, tmp_path, **{named: value})
    with pytest.raises(ParameterError, match=f"'{named}' parameter of Trainer"):
        trainer.fit(classification_store)


def test_checkpoint_every_needs_a_directory(classification_store):
    trainer = _trainer(classification_store, None, checkpoint_every=10)
    with pytest.raises(SchemaError, match="checkpoint_every= needs checkpoint_dir="):
        trainer.fit(classification_store)
