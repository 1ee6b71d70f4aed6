"""Loader augmentation: crops and flips equal a numpy reference, repeat exactly, and never reach evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import zarr

import bigdl
from bigdl.errors import SchemaError
from bigdl.loaders import Augment
from bigdl.loaders.torch import ChunkLoader

N, SIZE = 240, 10


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("augment")
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 256, size=(N, SIZE, SIZE), dtype=np.uint8)
    np.save(root / "x.npy", pixels)
    return bigdl.ingest.images(root / "x.npy", store=root / "s.zarr", labels=np.arange(N) % 3, rows_per_chunk=50,
                               validation=0.2, test=0.2, progress=False)


def _reference(x: np.ndarray, crop: int, flip: bool, rng: np.random.Generator) -> np.ndarray:
    """Per image, with the same draws as Augment: zero-pad, cut at (top, left), maybe mirror."""
    n, _, height, width = x.shape
    out = x
    if crop:
        top, left = rng.integers(0, 2 * crop + 1, size=n), rng.integers(0, 2 * crop + 1, size=n)
        padded = np.pad(x, ((0, 0), (0, 0), (crop, crop), (crop, crop)))
        out = np.stack([padded[i, :, top[i]:top[i] + height, left[i]:left[i] + width] for i in range(n)])
    if flip:
        mirrored = rng.random(n) < 0.5
        out = np.where(mirrored[:, None, None, None], out[..., ::-1], out)
    return out


@pytest.mark.parametrize("crop,flip", [(3, True), (2, False), (0, True), (0, False)])
def test_augment_equals_numpy_reference(crop, flip):
    x = np.random.default_rng(1).integers(0, 256, size=(64, 3, 9, 7), dtype=np.uint8)
    got = Augment(crop=crop, flip=flip)(torch.from_numpy(x), np.random.default_rng(5)).numpy()
    np.testing.assert_array_equal(got, _reference(x, crop, flip, np.random.default_rng(5)))
    assert got.dtype == np.uint8
    if crop or flip:
        assert (got != x).any()


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_augments_reproducibly_and_keeps_labels(image_store):
    plain = ChunkLoader(image_store, "train", batch_size=32, seed=3, transform=torch.nn.Identity())
    augmented = ChunkLoader(image_store, "train", batch_size=32, seed=3, transform=torch.nn.Identity(),
                            augment="crop+flip")
    assert augmented.augment == Augment(crop=4, flip=True)
    first, again = _batches(augmented), None
    augmented.set_epoch(0)
    again = _batches(augmented)
    reference = _batches(plain)
    for (xa, ya), (xb, yb), (xp, yp) in zip(first, again, reference):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ya, yp)  # augmentation never reorders samples or labels
    # each augmented image is the plain one shifted by up to 4 pixels with black fill, maybe mirrored:
    # augmentation works on the stored pixels, then both are normalised the same way
    black = image_store.view.to_model(np.zeros((1, 1, SIZE, SIZE), dtype=np.uint8))[0, 0, 0, 0]
    for step, ((xa, _), (xp, _)) in enumerate(zip(first, reference)):
        rng = np.random.default_rng([3, 0, 2, step])  # one generator per step of the epoch
        shifted = _reference(xp.numpy() - black, 4, True, rng) + black
        np.testing.assert_allclose(xa.numpy(), shifted, rtol=0, atol=1e-6)
    changed = sum(int((xa != xp).flatten(1).any(1).sum()) for (xa, _), (xp, _) in zip(first, reference))
    assert changed > 0.8 * sum(len(x) for x, _ in first)
    augmented.set_epoch(1)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, _batches(augmented)))


def test_augment_composes_with_normalisation_in_dataloader_workers(image_store):
    stats = image_store.attrs["preprocessing"]
    loader = ChunkLoader(image_store, "train", batch_size=16, seed=1, augment="flip")
    runs = []
    for _ in range(2):
        data = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2)
        runs.append(_batches(data))
    assert len(runs[0]) == len(runs[1]) and all(torch.equal(a[0], b[0]) for a, b in zip(*runs))
    x = torch.cat([x for x, _ in runs[0]])
    assert x.dtype == torch.float32 and len(x) == image_store.split_counts["train"]
    raw = x * stats["std"][0] + stats["mean"][0]
    np.testing.assert_allclose((raw * 255).numpy(), (raw * 255).round().numpy(), atol=1e-3)
    stored = zarr.open_group(str(image_store.path), mode="r")
    train = stored["X"][:][stored["split"][:] == 0]
    # flips only: the multiset of pixel rows of every image is kept, so the totals match the stored split
    assert abs(float(raw.sum() * 255) - float(train.astype(np.float64).sum())) < 1e-2 * train.size


def test_trainer_augments_the_train_split_only(image_store, monkeypatch):
    from bigdl.loaders import _augment
    from bigdl.models import CNN
    from bigdl.train import Trainer

    calls = []
    original = _augment.Augment.__call__

    def counted(self, x, rng, **share):
        calls.append(len(x))
        return original(self, x, rng, **share)

    monkeypatch.setattr(_augment.Augment, "__call__", counted)
    trainer = Trainer(CNN(1, 3, (SIZE, SIZE)), epochs=2, batch_size=32, on_cluster=False, progress=False,
                      loader_options={"augment": "crop+flip"})
    history = trainer.fit(image_store)
    n_train = image_store.split_counts["train"]
    assert sum(calls) == 2 * n_train and len(calls) == 2 * math.ceil(n_train / 32)
    assert all("val_loss" in entry for entry in history)  # validation ran, without augmentation
    calls.clear()
    trainer.evaluate(image_store, split="test")
    assert calls == []


def test_augment_errors(image_store, loader_store):
    with pytest.raises(SchemaError, match="'crop', 'flip' or 'crop\\+flip'"):
        ChunkLoader(image_store, augment="rotate")
    with pytest.raises(SchemaError, match="applies to image stores"):
        ChunkLoader(loader_store, augment="flip")
    with pytest.raises(SchemaError, match="'crop' parameter of Augment"):
        Augment(crop=-1)
    with pytest.raises(SchemaError, match="must be None"):
        ChunkLoader(image_store, augment=3)
