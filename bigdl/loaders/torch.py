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

from bigdl._validation import Interval, Options, check_params
from bigdl.errors import EmptyResultError, ParameterError
from bigdl.loaders._augment import resolve_augment
from bigdl.store._dataset import Dataset, open_store
from bigdl.store.kinds._base import SPLITS

__all__ = ["ChunkLoader"]

PARAMETERS = {"split": [Options(SPLITS)], "batch_size": [Interval(int, 1, None)],
              "buffer_chunks": [Interval(int, 1, None)], "prefetch": [Interval(int, 0, None)],
              "threads": [Interval(int, 1, None)], "world_size": [Interval(int, 1, None)],
              "rank": [Interval(int, 0, None)], "transform": [callable, None]}


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
        Applied to each ``X`` batch (a torch tensor) after the store kind's
        own view (images are always float pixels normalised with the stored
        mean/std first; see :attr:`bigdl.store.Dataset.view`).
    augment : str or Augment, optional
        Image stores only: random crop with zero padding and/or horizontal
        flip of each batch, before the transform (``"crop"``, ``"flip"``,
        ``"crop+flip"`` or a :class:`bigdl.loaders.Augment`); seeded by
        ``seed``, epoch, rank and worker, so runs repeat exactly.
    device : str or torch.device, optional
        Move batches there (pinned memory and non-blocking copies on CUDA).
    window, horizon, stride : int, optional
        Sequence stores only: override the store's window spec (input steps,
        forecast steps, steps between window starts); None keeps it.

    Raises
    ------
    ParameterError
        A parameter out of its range (``batch_size``, ``rank``...) or an unknown ``split``.
    SchemaError
        Windows or augmentation asked of a store of another kind.
    EmptyResultError
        The split holds no samples.

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
        check_params("ChunkLoader", {"split": split, "batch_size": batch_size, "buffer_chunks": buffer_chunks,
                                     "prefetch": prefetch, "threads": threads, "world_size": world_size,
                                     "rank": rank, "transform": transform}, PARAMETERS)
        if rank >= world_size:
            raise ParameterError(f"The 'rank' parameter of ChunkLoader must be smaller than world_size "
                                 f"({world_size}). Got {rank!r} instead.")
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
        self.transform = transform
        # The store kind decides what a sample is (rows, windows) and what a model sees (normalised images).
        self.view = dataset.view.with_windows(window=window, horizon=horizon, stride=stride, owner="ChunkLoader")
        self.augment = resolve_augment(augment, self.view)
        self.has_target = self.view.has_target
        self.task = dataset.task
        self.epoch = 0
        self.rows_per_chunk = dataset.rows_per_chunk
        self.n_rows = dataset.n_samples
        self.chunk_counts = np.asarray(self.view.chunk_counts(split), dtype=np.int64)
        if not self.chunk_counts.sum():
            message = f"ChunkLoader has nothing to load from the store {self.path!r}: {self.view.why_empty(split)}."
            raise EmptyResultError(message, public=message)  # counts and sizes only: the dashboard may show it
        self.windows = getattr(self.view, "windows", None)

    # -- epochs and state ---------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle order of ``epoch`` for the next pass.

        Parameters
        ----------
        epoch : int
        """
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        """What a checkpoint needs to resume the same sequence of epochs.

        Returns
        -------
        dict
            ``epoch`` and ``seed``.
        """
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`: the same seed, at its epoch.

        Parameters
        ----------
        state : dict
            ``epoch`` and ``seed``.
        """
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
    def _read_chunk(self, chunk: int):
        return self.view.read_chunk(chunk, self.split)

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
        view = self.view
        carry = []
        for items in self._buffers(chunks):
            # Samples left over from the previous buffer go first, so every batch
            # but the epoch's last is full.  Within a few-chunk buffer the rows stay in cache.
            x_all, y_all, rows = view.join(carry + items)
            if self.shuffle:
                rows = rows[rng.permutation(len(rows))]
            n = len(rows)
            full = n - n % size
            for start in range(0, full, size):
                yield view.gather(x_all, y_all, rows[start:start + size])
            carry = [] if full == n else [view.carry(x_all, y_all, rows[full:])]
        if carry and not self.drop_last:
            x_rest, y_rest, rows = carry[0]
            yield view.gather(x_rest, y_rest, rows)

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        pin = self.device is not None and self.device.type == "cuda"
        augment_rng = np.random.default_rng([self.seed, epoch, 2, self.rank, worker])
        for x_np, y_np in self._batches(epoch, worker, n_workers):
            if self.augment is not None:  # on the stored pixels, so padding is black
                x_np = self.augment(torch.from_numpy(np.ascontiguousarray(x_np)), augment_rng).numpy()
            x = torch.from_numpy(np.ascontiguousarray(self.view.to_model(x_np)))
            y = torch.from_numpy(np.ascontiguousarray(y_np)) if y_np is not None else None
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
