"""ChunkLoader: every sample once per epoch, stored order, shards, worker processes, seeds, memory bound."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from bigdl.errors import ParameterError, SchemaError
from bigdl.loaders import _buffers
from bigdl.loaders.torch import ChunkLoader

SPLITS = ("train", "validation", "test", "all")


def split_positions(ds, split) -> np.ndarray:
    return np.arange(ds.n_samples) if split == "all" else ds.indices(split)


def read_epoch(loader, index):
    """One pass: the batches as NumPy ``(X, y)`` pairs and the store positions they hold, in order."""
    batches = [(X.numpy(), y.numpy()) for X, y in loader]
    positions = np.concatenate([index.positions(X) for X, _ in batches]) if batches else np.zeros(0, int)
    targets = np.concatenate([y for _, y in batches]) if batches else np.zeros(0, int)
    # The target travels with its sample.
    np.testing.assert_array_equal(targets, index.y[positions])
    return batches, positions


# ---------------------------------------------------------------- coverage and order
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "ordered"])
@pytest.mark.parametrize("split", SPLITS)
def test_every_sample_of_the_split_once_per_epoch(loader_store, sample_index, split, shuffle):
    loader = ChunkLoader(loader_store, split, batch_size=96, shuffle=shuffle, seed=3)
    expected = split_positions(loader_store, split)
    for _ in range(2):  # two epochs: the second pass is complete too
        assert loader.n_samples == len(expected)
        _, positions = read_epoch(loader, sample_index)
        assert len(positions) == len(expected)
        np.testing.assert_array_equal(np.sort(positions), expected)


@pytest.mark.parametrize("split", SPLITS)
def test_without_shuffle_batches_follow_the_stored_order(loader_store, split):
    X_expected, y_expected = (array.compute() for array in loader_store.arrays(split))
    batches = list(ChunkLoader(loader_store, split, batch_size=128, shuffle=False))
    X = torch.cat([X for X, _ in batches]).numpy()
    y = torch.cat([y for _, y in batches]).numpy()
    np.testing.assert_array_equal(X, X_expected)
    np.testing.assert_array_equal(y, y_expected)
    assert X.dtype == np.float32 and y.dtype == np.int64


def test_shuffle_mixes_rows_across_chunks(loader_store, sample_index):
    loader = ChunkLoader(loader_store, "train", batch_size=200, shuffle=True, buffer_chunks=4, seed=0)
    batches, positions = read_epoch(loader, sample_index)
    assert not np.array_equal(positions, np.sort(positions))
    # Rows are permuted within a buffer of several chunks, not only chunk by chunk.
    first_chunks = np.unique(sample_index.positions(batches[0][0]) // loader_store.rows_per_chunk)
    assert len(first_chunks) > 1
    # ...and the chunk order itself is permuted: the first buffer is not the first chunks of the store.
    assert set(first_chunks) != set(range(len(first_chunks)))


# ---------------------------------------------------------------- sharding
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "ordered"])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_see_disjoint_shards_that_cover_the_split(loader_store, sample_index, world_size, shuffle):
    expected = split_positions(loader_store, "train")
    shards = []
    for rank in range(world_size):
        loader = ChunkLoader(loader_store, "train", batch_size=64, shuffle=shuffle, seed=5, rank=rank,
                             world_size=world_size)
        # Shards of a shuffled order differ in size from epoch to epoch; ask before the pass.
        n_samples = loader.n_samples
        _, positions = read_epoch(loader, sample_index)
        assert len(positions) == n_samples > 0
        assert len(np.unique(positions)) == len(positions)
        shards.append(set(positions.tolist()))
    for left in range(world_size):
        for right in range(left + 1, world_size):
            assert not shards[left] & shards[right], f"ranks {left} and {right} share samples"
    assert set().union(*shards) == set(expected.tolist())


# ---------------------------------------------------------------- DataLoader worker processes
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "ordered"])
def test_dataloader_worker_processes_split_the_work_without_duplicates(loader_store, sample_index, shuffle):
    loader = ChunkLoader(loader_store, "train", batch_size=100, shuffle=shuffle, seed=2)
    data_loader = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2)
    expected = split_positions(loader_store, "train")
    _, positions = read_epoch(data_loader, sample_index)
    assert len(positions) == len(expected)
    np.testing.assert_array_equal(np.sort(positions), expected)
    if shuffle:
        # set_epoch in the parent reaches the workers: a new order, the same samples.
        loader.set_epoch(1)
        _, next_positions = read_epoch(data_loader, sample_index)
        np.testing.assert_array_equal(np.sort(next_positions), expected)
        assert not np.array_equal(next_positions, positions)


def test_dataloader_workers_under_sharding(loader_store, sample_index):
    """Two ranks with two worker processes each: still every sample exactly once."""
    seen = []
    for rank in range(2):
        loader = ChunkLoader(loader_store, "test", batch_size=50, seed=4, rank=rank, world_size=2)
        _, positions = read_epoch(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2),
                                  sample_index)
        seen.append(positions)
    seen = np.concatenate(seen)
    assert len(seen) == len(np.unique(seen))
    np.testing.assert_array_equal(np.sort(seen), split_positions(loader_store, "test"))


# ---------------------------------------------------------------- seeds and epochs
def _order(loader, index):
    return read_epoch(loader, index)[1]


def test_same_seed_and_epoch_give_identical_batches(loader_store):
    first = list(ChunkLoader(loader_store, "train", batch_size=77, seed=9))
    second = list(ChunkLoader(loader_store, "train", batch_size=77, seed=9))
    assert len(first) == len(second)
    for (X1, y1), (X2, y2) in zip(first, second):
        assert torch.equal(X1, X2) and torch.equal(y1, y2)


def test_order_depends_on_seed_and_epoch(loader_store, sample_index):
    loader = ChunkLoader(loader_store, "train", batch_size=77, seed=9)
    assert loader.epoch == 0
    epoch0 = _order(loader, sample_index)
    assert loader.epoch == 1  # iterating the loader itself advances the epoch
    epoch1 = _order(loader, sample_index)
    assert loader.epoch == 2
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(np.sort(epoch0), np.sort(epoch1))

    other_seed = _order(ChunkLoader(loader_store, "train", batch_size=77, seed=10), sample_index)
    assert not np.array_equal(other_seed, epoch0)

    loader.set_epoch(0)
    np.testing.assert_array_equal(_order(loader, sample_index), epoch0)
    fresh = ChunkLoader(loader_store, "train", batch_size=77, seed=9)
    fresh.set_epoch(1)
    np.testing.assert_array_equal(_order(fresh, sample_index), epoch1)


def test_state_dict_resumes_the_sequence_of_epochs(loader_store, sample_index):
    loader = ChunkLoader(loader_store, "train", batch_size=128, seed=21)
    _order(loader, sample_index)
    state = loader.state_dict()
    expected_next = _order(loader, sample_index)
    restored = ChunkLoader(loader_store, "train", batch_size=128, seed=0)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(_order(restored, sample_index), expected_next)


# ---------------------------------------------------------------- batch sizes
@pytest.mark.parametrize("drop_last", [False, True], ids=["keep_last", "drop_last"])
@pytest.mark.parametrize("batch_size,split,rank,world_size", [
    (64, "train", 0, 1),
    (100, "validation", 0, 1),
    (333, "all", 0, 1),
    (50, "test", 1, 2),
    (10_000, "train", 0, 1),  # larger than the split: one short batch, or none with drop_last
])
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "ordered"])
def test_batches_are_full_but_the_last(loader_store, batch_size, split, rank, world_size, drop_last, shuffle):
    loader = ChunkLoader(loader_store, split, batch_size=batch_size, drop_last=drop_last, shuffle=shuffle,
                         rank=rank, world_size=world_size, seed=1)
    n = loader.n_samples
    expected_batches = len(loader)  # asked before iterating: it describes the coming epoch
    sizes = [len(X) for X, _ in loader]
    assert len(sizes) == expected_batches
    assert all(size == batch_size for size in sizes[:-1])
    if drop_last:
        assert len(sizes) == n // batch_size
        assert sum(sizes) == n - n % batch_size
        assert all(size == batch_size for size in sizes)
    else:
        assert len(sizes) == -(-n // batch_size)
        assert sum(sizes) == n
        assert 0 < sizes[-1] <= batch_size


# ---------------------------------------------------------------- bounded memory
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "ordered"])
@pytest.mark.parametrize("prefetch,buffer_chunks", [(2, 4), (1, 3), (0, 2), (0, 1)])
def test_chunks_held_never_exceed_prefetch_plus_buffer(loader_store, sample_index, monkeypatch, prefetch,
                                                       buffer_chunks, shuffle):
    """Chunks read but not yet fully handed to the consumer stay within ``prefetch + buffer_chunks``.

    Split "all" with a batch size dividing the chunk size: no rows are carried
    from one buffer to the next, so a chunk is done exactly when its last row
    has been yielded.  Reads are counted when they start (in the loader's
    threads); the consumer pauses on each batch so that read-ahead has
    happened by the time it counts.
    """
    started = []
    lock = threading.Lock()
    original = ChunkLoader._read_chunk

    def counting_read(self, chunk, into=None):
        with lock:
            started.append(chunk)
        return original(self, chunk, into)

    monkeypatch.setattr(ChunkLoader, "_read_chunk", counting_read)
    rows_per_chunk = loader_store.rows_per_chunk
    assert loader_store.n_samples % rows_per_chunk == 0
    loader = ChunkLoader(loader_store, "all", batch_size=rows_per_chunk // 4, shuffle=shuffle, seed=7,
                         prefetch=prefetch, buffer_chunks=buffer_chunks, threads=2)
    n_chunks = loader_store.n_samples // rows_per_chunk
    remaining = np.full(n_chunks, rows_per_chunk)
    most_held = 0
    for X, _ in loader:
        time.sleep(0.002)
        chunks = sample_index.positions(X.numpy()) // rows_per_chunk
        np.subtract.at(remaining, chunks, 1)
        with lock:
            read = len(started)
        most_held = max(most_held, read - int((remaining == 0).sum()))
    assert (remaining == 0).all()
    assert sorted(started) == list(range(n_chunks)), "each chunk is read exactly once per epoch"
    assert most_held <= prefetch + buffer_chunks, (
        f"{most_held} chunks held at once with prefetch={prefetch}, buffer_chunks={buffer_chunks}")


# ---------------------------------------------------------------- options
def test_transform_is_applied_to_each_batch(loader_store):
    plain = list(ChunkLoader(loader_store, "test", batch_size=256, shuffle=False))
    doubled = list(ChunkLoader(loader_store, "test", batch_size=256, shuffle=False, transform=lambda x: x * 2))
    for (X, y), (X2, y2) in zip(plain, doubled):
        assert torch.equal(X * 2, X2) and torch.equal(y, y2)


def test_device_option_moves_batches(loader_store):
    X, y = next(iter(ChunkLoader(loader_store, "test", batch_size=32, device="cpu")))
    assert X.device.type == "cpu" and y.device.type == "cpu" and X.shape == (32, loader_store.n_features)


def test_a_store_path_works_like_a_dataset(loader_store):
    by_path = list(ChunkLoader(str(loader_store.path), "validation", batch_size=200, shuffle=False))
    by_dataset = list(ChunkLoader(loader_store, "validation", batch_size=200, shuffle=False))
    assert len(by_path) == len(by_dataset)
    for (X1, _), (X2, _) in zip(by_path, by_dataset):
        assert torch.equal(X1, X2)


# ---------------------------------------------------------------- parameter errors
@pytest.mark.parametrize("options,named", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -5}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"split": "bogus"}, "split"),
    ({"split": "training"}, "split"),
    ({"rank": 2, "world_size": 2}, "rank"),
    ({"rank": 5, "world_size": 3}, "rank"),
    ({"rank": -1}, "rank"),
    ({"world_size": 0}, "world_size"),
    ({"buffer_chunks": 0}, "buffer_chunks"),
    ({"prefetch": -1}, "prefetch"),
    ({"threads": 0}, "threads"),
])
def test_parameter_errors_name_the_parameter(loader_store, options, named):
    with pytest.raises(SchemaError, match=rf"\b{named}\b") as caught:
        ChunkLoader(loader_store, **options)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "The 'batch_size' parameter of ChunkLoader must be an int in the range [1, inf). "
                        "Got 0 instead."),
    ({"prefetch": True}, "The 'prefetch' parameter of ChunkLoader must be an int in the range [0, inf) or None. "
                         "Got True instead."),
    ({"split": None}, "The 'split' parameter of ChunkLoader must be a str among {'train', 'validation', 'test', "
                      "'all'}. Got None instead."),
    ({"transform": "normalise"}, "The 'transform' parameter of ChunkLoader must be a callable or None. "
                                 "Got 'normalise' instead."),
    ({"rank": 2, "world_size": 2}, "The 'rank' parameter of ChunkLoader must be smaller than world_size (2). "
                                   "Got 2 instead."),
])
def test_parameter_errors_are_scikit_learns_messages(loader_store, options, message):
    with pytest.raises(ParameterError) as caught:
        ChunkLoader(loader_store, **options)
    assert str(caught.value) == message


# ---------------------------------------------------------------- reused decode buffers
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "ordered"])
def test_batches_kept_from_earlier_passes_are_not_overwritten(loader_store, sample_index, shuffle):
    """Chunks are decoded into arrays the loader reuses; every batch handed out is a copy of its rows."""
    loader = ChunkLoader(loader_store, "train", batch_size=128, shuffle=shuffle, seed=3, buffer_chunks=3)
    passes = [[(X.clone(), X, y) for X, y in loader] for _ in range(3)]
    assert _buffers.POOL.held_bytes() > 0, "the last pass gave its buffers back for the next one"
    for kept in passes:
        for copy, X, y in kept:
            assert torch.equal(copy, X)
            np.testing.assert_array_equal(sample_index.y[sample_index.positions(X)], y.numpy())
    fresh = [X for X, _ in ChunkLoader(loader_store, "train", batch_size=128, shuffle=shuffle, seed=3,
                                       buffer_chunks=3)]
    assert all(torch.equal(a, b) for a, (_, b, _) in zip(fresh, passes[0], strict=True))


def test_two_passes_of_one_loader_at_once_use_their_own_buffers(loader_store):
    loader = ChunkLoader(loader_store, "train", batch_size=100, shuffle=True, seed=5)
    reference = [X for X, _ in ChunkLoader(loader_store, "train", batch_size=100, shuffle=True, seed=5)]
    for (a, _), (b, _), expected in zip(iter(loader), iter(loader), reference, strict=True):
        assert torch.equal(a, expected) and torch.equal(b, expected)


def test_a_new_loader_decodes_into_the_buffers_an_earlier_one_gave_back(loader_store, monkeypatch):
    """No fresh (page-faulting) arrays for the next loader over chunks no larger; release_buffers frees them."""
    from bigdl.loaders import release_buffers

    release_buffers()
    first = ChunkLoader(loader_store, "train", batch_size=64, shuffle=True, seed=1)
    expected = [X.clone() for X, _ in first]
    held = _buffers.POOL.held_bytes()
    chunk_bytes = loader_store.rows_per_chunk * loader_store.n_features * 4
    assert held >= chunk_bytes * first.buffer_chunks * first._slot_count()
    taken = []
    original = _buffers.POOL.take

    def take(*args):
        taken.append(original(*args))
        return taken[-1]

    pool_before = [id(array) for slots in _buffers.POOL._sets for slot in slots for array in slot.values()]
    monkeypatch.setattr(_buffers.POOL, "take", take)
    second = [X for X, _ in ChunkLoader(loader_store, "train", batch_size=64, shuffle=True, seed=1)]
    assert {id(array) for slot in taken[0] for array in slot.values()} <= set(pool_before)
    assert all(torch.equal(a, b) for a, b in zip(expected, second, strict=True))
    assert release_buffers() == held and _buffers.POOL.held_bytes() == 0


def test_the_buffer_pool_keeps_the_newest_sets_only():
    pool = _buffers.BufferPool(keep=2)
    spec = {"X": ((3,), np.dtype("float32"))}
    sets = [pool.take(2, 10, spec) for _ in range(3)]
    for slots in sets:
        pool.give_back(slots)
    assert pool.held_bytes() == 2 * 2 * 10 * 3 * 4
    assert pool.take(2, 10, spec) is sets[2] and pool.take(2, 8, spec) is sets[1]
    assert pool.take(2, 10, spec) is not sets[0], "the oldest set was freed"
    pool.give_back(sets[1])
    assert pool.take(2, 11, spec) is not sets[1] and pool.take(3, 10, spec) is not sets[1]
    assert pool.take(2, 10, {"X": ((4,), np.dtype("float32"))}) is not sets[1]
    assert pool.take(2, 10, spec) is sets[1]


def test_a_pickled_loader_leaves_its_buffers_behind(loader_store):
    import pickle

    loader = ChunkLoader(loader_store, "train", batch_size=256)
    first = [X for X, _ in loader]
    copy = pickle.loads(pickle.dumps(loader))
    assert len(pickle.dumps(loader)) < 100_000, "the decode buffers stay in the process"
    copy.set_epoch(0)
    assert all(torch.equal(a, b) for a, (b, _) in zip(first, copy, strict=True))
