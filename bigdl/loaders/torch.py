"""Streaming PyTorch loader over a bigdl store: the only data path into torch.

Whole Zarr chunks are read and decompressed in background threads (a bounded
queue, so memory is about ``chunk size x (prefetch + buffer_chunks)`` whatever
the store size), filtered to one split, and sliced into batches.  Shuffling
is two-level: the chunk order is permuted each epoch, then rows are permuted
inside a buffer of several chunks.  Chunks are dealt to ranks (``rank``,
``world_size``) and then to ``DataLoader`` worker processes, so data-parallel
consumers see disjoint samples.  Store kinds plug in a batch transform
(tabular: none; images: normalisation with the stored mean/std).
"""

from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as error:  # pragma: no cover - torch is a declared dependency
    raise ImportError(
        "bigdl.loaders.torch needs PyTorch: pip install torch==2.13.0 (the CPU wheel), then retry."
    ) from error

from bigdl.errors import SchemaError
from bigdl.loaders._augment import resolve_augment
from bigdl.store._dataset import Dataset, open_store
from bigdl.store._format import SPLIT_CODES
from bigdl.store._verify import read_checked

__all__ = ["ChunkLoader"]


class ChunkLoader(IterableDataset):
    """Batches ``(X, y)`` of one split of a store, streamed chunk by chunk.

    Parameters
    ----------
    store : Dataset or str or path
        The store (``bigdl.open(path)``) or its path.
    split : {"train", "validation", "test", "all"}, default "train"
    batch_size : int, default 256
    shuffle : bool, default True
        Permute chunk order and rows within a buffer of ``buffer_chunks``
        chunks each epoch; False yields the stored order exactly.
    seed : int, default 0
        Seed of the shuffles; epoch ``e`` of seed ``s`` is always the same order.
    buffer_chunks : int, default 4
        Chunks mixed together when shuffling.
    prefetch : int, default 2
        Chunks read ahead in background threads.
    drop_last : bool, default False
        Drop the last, smaller batch of an epoch.
    rank, world_size : int, default 0 and 1
        Shard: this consumer reads chunks ``rank, rank + world_size, ...`` of
        the (shuffled) chunk order; ranks see disjoint samples.
    threads : int, default 2
        Threads reading and decompressing chunks.
    transform : callable, optional
        Applied to each ``X`` batch (a torch tensor); default: the store
        kind's transform (images: to float, normalised with the stored
        mean/std; tabular: none).
    augment : str or Augment, optional
        Image stores only: random crop with zero padding and/or horizontal
        flip of each batch, before the transform (``"crop"``, ``"flip"``,
        ``"crop+flip"`` or a :class:`bigdl.loaders.Augment`); seeded by
        ``seed``, epoch, rank and worker, so runs repeat exactly.
    device : str or torch.device, optional
        Move batches there (pinned memory and non-blocking copies on CUDA).

    Notes
    -----
    Iterating the loader itself advances the epoch after each full pass.  When
    it is wrapped in a ``DataLoader`` with worker processes, each worker reads
    its own share of the chunks; call :meth:`set_epoch` before each epoch
    (as with ``DistributedSampler``) to get a new order.

    Examples
    --------
    >>> loader = ChunkLoader(bigdl.open("work/flights.zarr"), "train", batch_size=512)  # doctest: +SKIP
    >>> for X, y in loader:                                                            # doctest: +SKIP
    ...     loss = criterion(model(X), y)
    """

    def __init__(self, store, split: str = "train", *, batch_size: int = 256, shuffle: bool = True,
                 seed: int = 0, buffer_chunks: int = 4, prefetch: int = 2, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, threads: int = 2,
                 transform: Callable | None = None, device=None, augment=None, window: int | None = None,
                 horizon: int | None = None, stride: int | None = None):
        super().__init__()
        dataset = store if isinstance(store, Dataset) else open_store(store)
        if split not in SPLIT_CODES and split != "all":
            raise SchemaError(
                f"The 'split' parameter of ChunkLoader must be one of {sorted(SPLIT_CODES) + ['all']}; got {split!r}."
            )
        for name, value, minimum in (("batch_size", batch_size, 1), ("buffer_chunks", buffer_chunks, 1),
                                     ("prefetch", prefetch, 0), ("threads", threads, 1),
                                     ("world_size", world_size, 1), ("rank", rank, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise SchemaError(f"The '{name}' parameter of ChunkLoader must be an int >= {minimum}; got {value!r}.")
        if rank >= world_size:
            raise SchemaError(f"ChunkLoader: rank {rank} must be smaller than world_size {world_size}.")
        self.path = str(dataset.path)
        self.kind = dataset.kind
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_chunks = buffer_chunks
        self.prefetch = prefetch
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.threads = threads
        self.device = torch.device(device) if device is not None else None
        self.transform = transform if transform is not None else _default_transform(dataset)
        self.augment = resolve_augment(augment, dataset.kind)
        self.has_target = "y" in dataset._group
        self.task = dataset.task
        self.epoch = 0
        self.rows_per_chunk = dataset.rows_per_chunk
        self.n_rows = dataset.n_samples
        codes = dataset._read("split", slice(None))  # one byte per sample: cheap, and fixes every count
        bounds = list(range(0, self.n_rows, self.rows_per_chunk)) + [self.n_rows]
        if split == "all":
            counts = np.diff(bounds)
        else:
            wanted = codes == SPLIT_CODES[split]
            counts = np.add.reduceat(wanted, bounds[:-1]) if self.n_rows else np.zeros(0, int)
        self.chunk_counts = np.asarray(counts, dtype=np.int64)
        self._arrays = None
        self.windows = _window_spec(dataset, window=window, horizon=horizon, stride=stride)
        if self.windows is not None:
            # Samples are windows: count the valid window starts of each chunk (one pass over the
            # small per-step arrays; X is not read).
            self.has_target = True
            self.chunk_counts = np.array([int(self._window_starts(chunk)[1].sum()) for chunk in
                                          range(len(bounds) - 1)], dtype=np.int64)

    # -- epochs and state ---------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle order of ``epoch`` for the next pass."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        """What a checkpoint needs to resume the same sequence of epochs."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])

    # -- sizes --------------------------------------------------------
    def _my_chunks(self, epoch: int, worker: int = 0, n_workers: int = 1) -> np.ndarray:
        chunks = np.flatnonzero(self.chunk_counts)
        if self.shuffle:
            chunks = np.random.default_rng([self.seed, epoch, 0]).permutation(chunks)
        chunks = chunks[self.rank::self.world_size]
        return chunks[worker::n_workers]

    @property
    def n_samples(self) -> int:
        """Samples this rank yields per epoch (all worker processes together)."""
        return int(self.chunk_counts[self._my_chunks(self.epoch)].sum())

    def __len__(self) -> int:
        n = self.n_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    # -- iteration ----------------------------------------------------
    def _open(self):
        if self._arrays is None or self._arrays[0] != os.getpid():
            import zarr

            group = zarr.open_group(self.path, mode="r")
            self._arrays = (os.getpid(), group["X"], group["y"] if "y" in group else None, group["split"], group)
        return self._arrays[1:4]

    def _window_starts(self, chunk: int):
        """Rows ``[low, stop)`` a chunk's windows need (its rows and a halo from the next chunks)
        and the mask of valid window starts over them.

        A start ``i`` is valid when the window and its horizon stay inside one run (one series, no
        gap), its targets belong to the split, and its position in the series is a multiple of the
        stride.  Splits are contiguous in time within a series, so the first and last target
        steps decide.
        """
        window, horizon, stride = self.windows["window"], self.windows["horizon"], self.windows["stride"]
        span = window + horizon
        low = chunk * self.rows_per_chunk
        high = min(low + self.rows_per_chunk, self.n_rows)
        stop = min(high + span - 1, self.n_rows)
        self._open()
        group = self._arrays[4]
        run = read_checked(group["run"], slice(low, stop), store=self.path, name="run")
        position = read_checked(group["position"], slice(low, high), store=self.path, name="position")
        starts = np.arange(high - low)
        last = starts + span - 1
        valid = last < len(run)
        last = np.minimum(last, len(run) - 1)
        valid &= run[starts] == run[last]  # runs are non-decreasing: equal ends, one run
        valid &= position % stride == 0
        if self.split != "all":
            split = read_checked(group["split"], slice(low, stop), store=self.path, name="split")
            code = SPLIT_CODES[self.split]
            valid &= (split[np.minimum(starts + window, len(split) - 1)] == code) & (split[last] == code)
        mask = np.zeros(stop - low, dtype=bool)
        mask[:high - low] = valid
        return slice(low, stop), mask

    def _read_chunk(self, chunk: int):
        if self.windows is not None:
            X = self._open()[0]
            rows, mask = self._window_starts(chunk)
            return read_checked(X, rows, store=self.path, name="X"), None, mask
        X, y, split = self._open()
        low = chunk * self.rows_per_chunk
        high = min(low + self.rows_per_chunk, self.n_rows)
        rows = slice(low, high)
        mask = None
        if self.split != "all":
            mask = read_checked(split, rows, store=self.path, name="split") == SPLIT_CODES[self.split]
            if mask.all():
                mask = None
        return (read_checked(X, rows, store=self.path, name="X"),
                read_checked(y, rows, store=self.path, name="y") if y is not None else None, mask)

    def _chunks_in_order(self, chunks: np.ndarray):
        """Chunks read ahead by a thread pool, yielded in order; at most prefetch+buffer in flight."""
        # While a buffer of chunks is sliced into batches, at most `prefetch`
        # further chunks are read: memory stays prefetch + buffer_chunks chunks.
        window = self.prefetch + 1
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="bigdl-loader") as pool:
            pending: deque = deque()
            position = 0
            try:
                while position < len(chunks) or pending:
                    while position < len(chunks) and len(pending) < window:
                        pending.append(pool.submit(self._read_chunk, int(chunks[position])))
                        position += 1
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _buffers(self, chunks: np.ndarray):
        """Groups of ``buffer_chunks`` chunks (one when not shuffling), as read."""
        group = self.buffer_chunks if self.shuffle else 1
        pending = []
        for item in self._chunks_in_order(chunks):
            pending.append(item)
            if len(pending) == group:
                yield pending
                pending = []
        if pending:
            yield pending

    def _batches(self, epoch: int, worker: int, n_workers: int):
        chunks = self._my_chunks(epoch, worker, n_workers)
        rng = np.random.default_rng([self.seed, epoch, 1, self.rank, worker])
        size = self.batch_size
        carry = []
        for items in self._buffers(chunks):
            # Rows left over from the previous buffer go first, so every batch
            # but the epoch's last is full.
            x_all, y_all, rows = _concatenate(carry + items)
            if self.shuffle:
                rows = rows[rng.permutation(len(rows))]
            n = len(rows)
            full = n - n % size
            for start in range(0, full, size):
                index = rows[start:start + size]
                yield self._gather(x_all, y_all, index)
            rest = rows[full:]
            carry = [] if full == n else [self._carry(x_all, y_all, rest)]
        if carry and not self.drop_last:
            x_rest, y_rest, mask = carry[0]
            yield self._gather(x_rest, y_rest, np.flatnonzero(mask)) if mask is not None else (x_rest, y_rest)

    def _gather(self, x_all: np.ndarray, y_all, index: np.ndarray):
        """The batch of samples at ``index``: rows, or windows and their targets."""
        if self.windows is None:
            # np.take gathers rows several times faster than fancy indexing,
            # and within a few-chunk buffer the rows stay in cache.
            return np.take(x_all, index, axis=0), (np.take(y_all, index) if y_all is not None else None)
        window, horizon = self.windows["window"], self.windows["horizon"]
        # A strided view of every window (no copy); indexing it copies whole (channels, span) blocks,
        # several times faster than gathering window * batch single rows.
        spans = np.lib.stride_tricks.sliding_window_view(x_all, window + horizon, axis=0)[index]
        inputs = np.ascontiguousarray(spans[:, :, :window].transpose(0, 2, 1))
        targets = spans[:, self.windows["target_index"], window:]
        return inputs, (targets[:, 0] if targets.shape[1] == 1 else np.ascontiguousarray(targets.transpose(0, 2, 1)))

    def _carry(self, x_all: np.ndarray, y_all, rest: np.ndarray):
        """The samples at ``rest`` as a small buffer item, to go first into the next buffer."""
        if self.windows is None:
            return np.take(x_all, rest, axis=0), (np.take(y_all, rest) if y_all is not None else None), None
        # A window needs its steps, not just its start row: keep each window's span, back to back.
        span = self.windows["window"] + self.windows["horizon"]
        steps = x_all[rest[:, None] + np.arange(span)].reshape(len(rest) * span, -1)
        mask = np.zeros(len(steps), dtype=bool)
        mask[::span] = True
        return steps, None, mask

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        pin = self.device is not None and self.device.type == "cuda"
        augment_rng = np.random.default_rng([self.seed, epoch, 2, self.rank, worker])
        for x_np, y_np in self._batches(epoch, worker, n_workers):
            x = torch.from_numpy(np.ascontiguousarray(x_np))
            y = torch.from_numpy(np.ascontiguousarray(y_np)) if y_np is not None else None
            if self.augment is not None:
                x = self.augment(x, augment_rng)
            if self.transform is not None:
                x = self.transform(x)
            if self.device is not None:
                if pin:
                    x = x.pin_memory()
                    y = y.pin_memory() if y is not None else None
                x = x.to(self.device, non_blocking=pin)
                y = y.to(self.device, non_blocking=pin) if y is not None else None
            yield (x, y) if self.has_target else x
        if info is None:
            self.epoch = epoch + 1

    def __repr__(self) -> str:
        return (f"ChunkLoader({self.path!r}, split={self.split!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, rank={self.rank}/{self.world_size}, n_samples={self.n_samples})")


def _concatenate(items: list) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Join several chunks (a plain copy) and list the positions of the split's rows in the result.

    Selecting rows by position at batch time is cheaper than compressing each
    chunk to the split first (one gather instead of a masked copy and a gather).
    """
    xs = [x for x, _, _ in items]
    ys = [y for _, y, _ in items]
    x_all = xs[0] if len(xs) == 1 else np.concatenate(xs)
    y_all = None if ys[0] is None else (ys[0] if len(ys) == 1 else np.concatenate(ys))
    rows, offset = [], 0
    for x, _, mask in items:
        rows.append(np.arange(offset, offset + len(x)) if mask is None else np.flatnonzero(mask) + offset)
        offset += len(x)
    return x_all, y_all, np.concatenate(rows)


def _default_transform(dataset: Dataset) -> Callable | None:
    """The batch transform a store kind needs before a model sees it."""
    if dataset.kind == "image":
        stats = dataset.attrs.get("preprocessing", {})
        mean = torch.tensor(stats.get("mean", [0.0]), dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(stats.get("std", [1.0]), dtype=torch.float32).view(1, -1, 1, 1)
        return _Normalize(mean, std)
    return None


class _Normalize:
    """uint8 images -> float32 in [0, 1] -> (x - mean) / std, per channel (picklable)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float().div_(255.0) - self.mean) / self.std


def _window_spec(dataset: Dataset, *, window, horizon, stride) -> dict | None:
    """The windows a sequence store's samples are (the store's spec, overridden by arguments)."""
    given = {"window": window, "horizon": horizon, "stride": stride}
    if dataset.kind != "sequence":
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise SchemaError(f"ChunkLoader: {', '.join(named)} apply to sequence stores only; "
                              f"{str(dataset.path)!r} is a {dataset.kind} store.")
        return None
    spec = dict(dataset.attrs.get("window", {}))
    for name, value in given.items():
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SchemaError(f"The '{name}' parameter of ChunkLoader must be an int >= 1; got {value!r}.")
            spec[name] = value
    channels = dataset.feature_names
    spec["target_index"] = [channels.index(name) for name in spec.get("targets", channels)]
    return spec
