"""Checkpoints run no code, a fresh fit reads none, and a resume refuses another run's checkpoint.

Reproductions of issue 13, items 3 and 4: ``fit()`` unpickled the newest
checkpoint on every call (a planted pickle ran code even with
``resume=False``; a garbage file broke every fresh fit), and two runs
sharing a checkpoint directory mixed silently.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from bigdl.errors import BigdlError, CheckpointError
from bigdl.models import MLP
from bigdl.train import Trainer
from bigdl.train._checkpoint import identity_differences, load_checkpoint, read_sidecar, sidecar_path

SEED, BATCH_SIZE = 7, 64


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _trainer(ds, directory, *, epochs=2, hidden=(16,), **options) -> Trainer:
    torch.manual_seed(0)
    settings = dict(epochs=epochs, batch_size=BATCH_SIZE, seed=SEED, on_cluster=False, progress=False,
                    checkpoint_dir=str(directory))
    settings.update(options)
    return Trainer(MLP(ds.n_features, list(hidden), ds.n_classes), **settings)


class WritesMarker:
    """A pickle that writes a marker file when it is loaded: what an attacker would plant."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(directory, epoch, marker):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"epoch-{epoch:05d}.pt"
    with open(path, "wb") as handle:
        pickle.dump({"epoch": epoch, "model": WritesMarker(marker)}, handle)
    return path


# ---------------------------------------------------------------- no code runs, a fresh fit reads nothing
def test_a_planted_pickle_never_runs_with_resume_false(unvalidated_store, tmp_path):
    """Issue 13.3: fit() loaded the newest checkpoint, so a planted pickle ran even with resume=False."""
    directory, marker = tmp_path / "checkpoints", tmp_path / "pwned"
    _plant(directory, 99, marker)
    history = _trainer(unvalidated_store, directory).fit(unvalidated_store)
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert not marker.exists()


def test_a_planted_pickle_never_runs_with_resume_true(unvalidated_store, tmp_path):
    directory, marker = tmp_path / "checkpoints", tmp_path / "pwned"
    planted = _plant(directory, 99, marker)
    with pytest.raises(CheckpointError) as error:
        _trainer(unvalidated_store, directory).fit(unvalidated_store, resume=True)
    message = str(error.value)
    assert repr(str(planted)) in message and "damaged or not a bigdl checkpoint" in message
    assert "weights_only=True, so nothing in the file was run" in message
    assert isinstance(error.value, BigdlError) and isinstance(error.value, ValueError)
    assert not marker.exists()


def test_load_checkpoint_refuses_a_pickle_that_would_run_code(tmp_path):
    """What a forged sidecar claiming the run would lead to: a weights_only load, which refuses the pickle."""
    marker = tmp_path / "pwned"
    planted = _plant(tmp_path, 0, marker)
    with pytest.raises(CheckpointError, match="Unsupported global|weights_only"):
        load_checkpoint(str(planted))
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"\x80\x04K\x01."])
def test_garbage_checkpoint_does_not_break_a_fresh_fit(unvalidated_store, tmp_path, content):
    """Issue 13.3: a garbage epoch-NNNNN.pt made every fresh fit fail with UnpicklingError."""
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "epoch-00042.pt").write_bytes(content)
    (directory / "epoch-00042.json").write_bytes(b"{broken")
    history = _trainer(unvalidated_store, directory).fit(unvalidated_store)
    assert [entry["epoch"] for entry in history] == [1, 2]
    with pytest.raises(CheckpointError, match="epoch-00042.pt"):
        _trainer(unvalidated_store, directory).fit(unvalidated_store, resume=True)


def test_every_checkpoint_loads_with_weights_only_and_has_a_sidecar(unvalidated_store, tmp_path):
    run = _trainer(unvalidated_store, tmp_path / "checkpoints")
    history = run.fit(unvalidated_store)
    for entry in history:
        state = torch.load(entry["checkpoint"], map_location="cpu", weights_only=True)
        assert state["torch_rng"].dtype == torch.uint8 and state["history"][-1]["epoch"] == entry["epoch"]
        sidecar = read_sidecar(entry["checkpoint"])
        assert sidecar == json.loads(open(sidecar_path(entry["checkpoint"])).read())
        assert sidecar["run"] == state["run"] and sidecar["identity"] == state["identity"]
        assert sidecar["checkpoint"] == os.path.basename(entry["checkpoint"])
    assert state["identity"]["model"]["class"] == "MLP" and state["identity"]["seed"] == SEED


# ---------------------------------------------------------------- another run's checkpoint is refused
@pytest.mark.parametrize("change, words", [
    ({"seed": SEED + 1}, [f"seed is {SEED} in the checkpoint, {SEED + 1} here"]),
    ({"hidden": (8,)}, ["the model's parameters differ", "[16, 4] there, [8, 4] here"]),
    ({"batch_size": 32}, ["batch_size is 64 in the checkpoint, 32 here"]),
    ({"optimizer": "sgd"}, ["the optimizer is Adam lr=0.001 in the checkpoint, SGD"]),
])
def test_resume_refuses_the_checkpoint_of_another_run(unvalidated_store, tmp_path, change, words):
    """Issue 13.4: run B resumed from run A's checkpoints in the same directory and returned A's history."""
    ds, directory = unvalidated_store, tmp_path / "checkpoints"
    run_a = _trainer(ds, directory, epochs=5)
    run_a.fit(ds)
    run_b = _trainer(ds, directory, epochs=2, **change)
    run_b.fit(ds)
    run_b.epochs = 3
    with pytest.raises(CheckpointError) as error:
        run_b.fit(ds, resume=True)
    message = str(error.value)
    assert "epoch-00004.pt" in message and "belongs to another run" in message
    for word in words:
        assert word in message
    assert "use another checkpoint_dir" in message


def test_resume_refuses_a_checkpoint_of_another_store(unvalidated_store, tmp_path):
    directory = tmp_path / "checkpoints"
    _trainer(unvalidated_store, directory, epochs=1).fit(unvalidated_store)
    with pytest.raises(CheckpointError, match="the store is .*n.zarr.* in the checkpoint, .*c.zarr.* here"):
        Trainer(MLP(unvalidated_store.n_features, [16], unvalidated_store.n_classes), epochs=2,
                batch_size=BATCH_SIZE, seed=SEED, on_cluster=False, progress=False, checkpoint_dir=str(directory),
                ).fit(_same_shape_store(unvalidated_store, tmp_path), resume=True)


def _same_shape_store(unvalidated_store, tmp_path):
    """Another store with the same features and classes as ``unvalidated_store``, under the name c.zarr."""
    import bigdl

    X, y = (array.compute() for array in unvalidated_store.arrays("train"))
    return bigdl.store.from_arrays(X, y, store=tmp_path / "c.zarr", test=0.2)


def test_resume_of_the_same_run_still_continues(unvalidated_store, tmp_path):
    ds, directory = unvalidated_store, tmp_path / "checkpoints"
    _trainer(ds, directory, epochs=2).fit(ds)
    history = _trainer(ds, directory, epochs=3).fit(ds, resume=True)
    assert [entry["epoch"] for entry in history] == [1, 2, 3]


def test_identity_differences_name_each_difference():
    base = {"model": {"class": "MLP", "parameters": {"w": [2, 3]}}, "optimizer": {"class": "Adam", "lr": 0.001},
            "store": {"path": "/s.zarr", "created": "2024"}, "seed": 0, "batch_size": 8}
    assert identity_differences(base, base) == []
    other = dict(base, model={"class": "LSTM", "parameters": {}}, seed=1)
    assert identity_differences(base, other) == ["the model is a MLP in the checkpoint, a LSTM here",
                                                 "seed is 0 in the checkpoint, 1 here"]


def test_identity_differences_survive_a_malformed_identity():
    current = {"model": {"class": "MLP", "parameters": {"w": [2, 3]}}, "optimizer": {"class": "Adam", "lr": 0.001},
               "store": {"path": "/s.zarr", "created": "2024"}, "seed": 0, "batch_size": 8}
    differences = identity_differences({"model": [1], "optimizer": "x", "parameters": 3}, current)
    assert differences[0] == "the model is a None in the checkpoint, a MLP here" and len(differences) == 5
