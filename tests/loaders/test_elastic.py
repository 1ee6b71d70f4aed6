"""Elastic determinism and exact mid-epoch resume of the streaming loader.

For a seed and an epoch the global sample order is fixed: with ``world_size=W``
and ``B / W`` samples per rank, global step ``s`` (the ranks' batches put
together in rank order) is exactly step ``s`` of one consumer with batch size
``B``, with or without ``DataLoader`` worker processes, on tabular, image and
sequence stores.  A ``state_dict`` taken after any batch continues with exactly
the next one, on any world size with the same global batch size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bigdl
from bigdl.errors import ParameterError
from bigdl.loaders.torch import ChunkLoader

GLOBAL = 60  # divisible by 1, 2, 3 and 4


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("elastic-images")
    pixels = np.random.default_rng(0).integers(1, 256, size=(300, 8, 8), dtype=np.uint8)
    np.save(root / "x.npy", pixels)
    return bigdl.ingest.images(root / "x.npy", store=root / "s.zarr", labels=np.arange(300) % 3, rows_per_chunk=40,
                               validation=0.1, test=0.1, progress=False)


@pytest.fixture(scope="module")
def sequence_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("elastic-series")
    bigdl.datasets.make_series_panel(4, 200, seed=2).to_csv(root / "panel.csv", index=False)
    return bigdl.ingest.sequences(root / "panel.csv", time="time", series="series", target="load", window=8,
                                  horizon=2, rows_per_chunk=96, store=root / "panel.zarr", progress=False)


@pytest.fixture(params=["tabular", "image", "sequence"])
def store(request, loader_store, image_store, sequence_store):
    return {"tabular": loader_store, "image": image_store, "sequence": sequence_store}[request.param]


def _rank_batches(loader, workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    source = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=workers) if workers else loader
    return [(x.clone(), y.clone()) for x, y in source]


def _global_steps(store, world_size: int, workers: int = 0, *, epoch: int = 0, **options):
    """Each global step as the ranks' batches concatenated in rank order; checks equal batch counts."""
    per_rank = []
    for rank in range(world_size):
        loader = ChunkLoader(store, "train", batch_size=GLOBAL // world_size, rank=rank, world_size=world_size,
                             seed=7, buffer_chunks=2, **options)
        loader.set_epoch(epoch)
        per_rank.append(_rank_batches(loader, workers))
        assert len(per_rank[-1]) == len(loader)
    assert len({len(batches) for batches in per_rank}) == 1, "every rank gets the same number of batches"
    return [(torch.cat([batches[step][0] for batches in per_rank]), torch.cat([batches[step][1] for batches in per_rank]))
            for step in range(len(per_rank[0]))]


def _assert_same_steps(left, right):
    assert len(left) == len(right)
    for step, ((x_left, y_left), (x_right, y_right)) in enumerate(zip(left, right)):
        assert torch.equal(x_left, x_right) and torch.equal(y_left, y_right), f"step {step} differs"


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-dataloader-workers"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_the_global_order_does_not_depend_on_world_size_or_workers(store, world_size, workers):
    reference = _global_steps(store, 1)
    steps = _global_steps(store, world_size, workers)
    _assert_same_steps(steps, reference)
    # every sample of the split once (the short last step is kept: it has at least world_size samples)
    assert sum(len(x) for x, _ in steps) == int(store.view.chunk_counts("train").sum())


def test_each_epoch_has_its_own_order_the_same_for_every_world_size(loader_store):
    first, second = _global_steps(loader_store, 1, epoch=0), _global_steps(loader_store, 1, epoch=1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, second))
    _assert_same_steps(_global_steps(loader_store, 3, epoch=1), second)


def test_augmentation_is_the_same_whatever_the_world_size(image_store):
    reference = _global_steps(image_store, 1, augment="crop+flip")
    _assert_same_steps(_global_steps(image_store, 3, 2, augment="crop+flip"), reference)
    plain = _global_steps(image_store, 1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(reference, plain))  # it did augment


def test_a_global_batch_size_that_does_not_divide_shares_it_nearly_equally(loader_store):
    reference = [batch for batch in ChunkLoader(loader_store, "train", batch_size=62, seed=7, buffer_chunks=2)]
    per_rank = [list(ChunkLoader(loader_store, "train", batch_size=1, global_batch_size=62, rank=rank, world_size=4,
                                 seed=7, buffer_chunks=2)) for rank in range(4)]
    assert [len(x) for x, _ in (batches[0] for batches in per_rank)] == [15, 16, 15, 16]
    steps = [torch.cat([batches[step][0] for batches in per_rank]) for step in range(len(per_rank[0]))]
    assert len(steps) == len(reference)
    for (x, _), joined in zip(reference, steps):
        assert torch.equal(x, joined)


def test_a_last_step_smaller_than_the_world_size_is_dropped(loader_store):
    n = int(loader_store.view.chunk_counts("train").sum())
    size = next(size for size in range(50, 400) if 0 < n % size < 3)
    loaders = [ChunkLoader(loader_store, "train", batch_size=1, global_batch_size=size, rank=rank, world_size=3)
               for rank in range(3)]
    assert {len(loader) for loader in loaders} == {n // size}
    assert sum(loader.n_samples for loader in loaders) == n - n % size
    assert sum(len(x) for loader in loaders for x, _ in loader) == n - n % size


# ---------------------------------------------------------------- mid-epoch resume
def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "ordered"])
def test_a_state_after_any_batch_continues_with_exactly_the_next(loader_store, shuffle):
    options = {"batch_size": 70, "seed": 3, "buffer_chunks": 3, "shuffle": shuffle}
    uninterrupted = ChunkLoader(loader_store, "train", **options)
    epochs = [list(uninterrupted), list(uninterrupted)]
    n = len(epochs[0])
    for epoch, stop in [(0, 0), (0, 1), (0, n // 2), (0, n - 1), (0, n), (1, 5)]:
        loader = ChunkLoader(loader_store, "train", **options)
        for _ in range(epoch):
            list(loader)
        taken = _take(iter(loader), stop)
        state = loader.state_dict()
        expected_epoch = epoch + 1 if stop == n else epoch
        assert state["epoch"] == expected_epoch
        assert state["sample_in_epoch"] == (0 if stop == n else sum(len(x) for x, _ in taken))
        restored = ChunkLoader(loader_store, "train", **{**options, "seed": 99})
        restored.load_state_dict(state)
        restored.set_epoch(state["epoch"])  # as the Trainer does before each epoch: the position is kept
        rest = list(restored)
        expected = epochs[expected_epoch][0 if stop == n else stop:]
        _assert_same_steps(rest, expected)
        if expected_epoch == 0:  # and the epoch after it is the uninterrupted run's next epoch
            _assert_same_steps(list(restored), epochs[1])


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
def test_resume_under_dataloader_workers_counts_the_batches_taken(loader_store):
    options = {"batch_size": 50, "seed": 5, "buffer_chunks": 2}
    reference = list(ChunkLoader(loader_store, "train", **options))
    loader = ChunkLoader(loader_store, "train", **options)
    data = iter(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2))
    taken = _take(data, 9)
    del data
    state = loader.state_dict(batches=9)
    assert state["sample_in_epoch"] == 9 * 50
    restored = ChunkLoader(loader_store, "train", **options)
    restored.load_state_dict(state)
    rest = _rank_batches(restored, workers=3)
    _assert_same_steps(taken + rest, reference)


def test_a_run_may_resume_on_another_world_size_with_the_same_global_batch(loader_store):
    reference = _global_steps(loader_store, 1)
    ranks = [ChunkLoader(loader_store, "train", batch_size=GLOBAL // 2, rank=rank, world_size=2, seed=7,
                         buffer_chunks=2) for rank in range(2)]
    iterators = [iter(loader) for loader in ranks]
    before = [_take(iterator, 4) for iterator in iterators]
    state = ranks[0].state_dict()
    assert state == ranks[1].state_dict() and state["sample_in_epoch"] == 4 * GLOBAL
    after = []
    for rank in range(3):
        loader = ChunkLoader(loader_store, "train", batch_size=1, global_batch_size=GLOBAL, rank=rank, world_size=3,
                             seed=0, buffer_chunks=2)
        loader.load_state_dict(state)
        after.append(list(loader))
    steps = [(torch.cat([b[s][0] for b in before]), torch.cat([b[s][1] for b in before])) for s in range(4)]
    steps += [(torch.cat([b[s][0] for b in after]), torch.cat([b[s][1] for b in after])) for s in range(len(after[0]))]
    _assert_same_steps(steps, reference)


def test_a_position_off_the_step_grid_is_refused(loader_store):
    loader = ChunkLoader(loader_store, "train", batch_size=64)
    with pytest.raises(ParameterError, match=r"sample 100 of epoch 0.*global batch size 64.*saved with global batch "
                                             r"size 50"):
        loader.load_state_dict({"epoch": 0, "seed": 0, "sample_in_epoch": 100, "global_batch_size": 50})


def test_an_old_state_without_a_position_starts_its_epoch(loader_store, sample_index):
    loader = ChunkLoader(loader_store, "train", batch_size=64, seed=2)
    loader.load_state_dict({"epoch": 1, "seed": 2})
    fresh = ChunkLoader(loader_store, "train", batch_size=64, seed=2)
    fresh.set_epoch(1)
    _assert_same_steps(list(loader), list(fresh))


def test_skipped_buffers_are_never_read(loader_store, monkeypatch):
    loader = ChunkLoader(loader_store, "train", batch_size=100, seed=1, buffer_chunks=3)
    n_steps = len(loader)
    state = dict(loader.state_dict(), sample_in_epoch=(n_steps - 2) * 100)
    reads = []
    original = ChunkLoader._read_chunk
    monkeypatch.setattr(ChunkLoader, "_read_chunk", lambda self, chunk, into=None: reads.append(chunk) or original(self, chunk, into))
    loader.load_state_dict(state)
    assert len(list(loader)) == 2
    assert len(reads) <= 2 * 3, "only the buffers of the last two steps are read"


# ---------------------------------------------------------------- planning an epoch reads no array
def test_planning_an_epoch_reads_no_per_sample_array(store, monkeypatch):
    from bigdl.store.kinds._base import SampleView

    reopened = bigdl.open(store.path)  # a fresh view: nothing counted yet
    read = []
    original = SampleView.read
    monkeypatch.setattr(SampleView, "read", lambda self, name, rows: read.append(name) or original(self, name, rows))
    loader = ChunkLoader(reopened, "train", batch_size=32, seed=1)
    assert len(loader) > 0 and loader.n_samples == int(store.view.chunk_counts("train").sum())
    assert read == [], "the chunk counts come from the store's attributes"
    other_window = ChunkLoader(reopened, "train", batch_size=32, window=3) if store.kind == "sequence" else None
    if other_window is not None:  # another window spec than the stored one is counted from the small arrays
        assert set(read) <= {"run", "position", "split"} and len(other_window) > 0
