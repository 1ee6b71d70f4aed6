"""Streaming PyTorch loader over a bigdl store: the only data path into torch.

Whole Zarr chunks are read and decompressed in background threads, side by
side into a few reused buffer arrays (bounded read-ahead, so memory is about
``chunk size x (prefetch + buffer_chunks)``, rounded up to whole buffers,
whatever the store size), filtered to one split, and sliced into batches.  Shuffling
is two-level: the chunk order is permuted each epoch, then the samples of
each buffer of several chunks are permuted by a generator of that buffer's
own.  That fixes one global order per seed and epoch; global step ``s`` is
the next ``global_batch_size`` samples of it, and each rank takes its share
of every step, each ``DataLoader`` worker process every n-th step.  So the
order does not depend on the world size or the worker processes ("elastic
determinism", as in mosaicml-streaming), every rank gets the same number of
batches, and a position in the epoch (``state_dict``) is all a resume needs:
the buffers before it are skipped unread.  Store kinds plug in a batch
transform (tabular: none; images: normalisation with the stored mean/std).
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
from bigdl.errors import EmptyResultError, ParameterError, SchemaError
from bigdl.loaders._augment import resolve_augment
from bigdl.loaders._buffers import POOL as _BUFFER_POOL
from bigdl.store._dataset import Dataset, open_store
from bigdl.store.kinds._base import SPLITS

__all__ = ["ChunkLoader"]

PARAMETERS = {"split": [Options(SPLITS)], "batch_size": [Interval(int, 1, None)],
              "buffer_chunks": [Interval(int, 1, None)], "prefetch": [Interval(int, 0, None), None],
              "threads": [Interval(int, 1, None)], "world_size": [Interval(int, 1, None)],
              "rank": [Interval(int, 0, None)], "transform": [callable, None],
              "read_ahead_bytes": [Interval(int, 1, None), None]}


class ChunkLoader(IterableDataset):
    """Batches ``(X, y)`` of one split of a store, streamed chunk by chunk.

    Parameters
    ----------
    store : Dataset or str or path
        The store (``bigdl.open(path)``) or its path.
    split : {"train", "validation", "test", "all"}, default "train"
    batch_size : int, default 256
    shuffle : bool, default True
        Permute chunk order and samples within a buffer of ``buffer_chunks``
        chunks each epoch; False yields the stored order exactly.
    seed : int, default 0
        Seed of the shuffles; epoch ``e`` of seed ``s`` is always the same order.
    buffer_chunks : int, default 4
        Chunks mixed together when shuffling.
    prefetch : int, optional
        Chunks read ahead in background threads while a buffer is sliced;
        default ``buffer_chunks`` (the next buffer, so it is ready when the
        current one ends).  Chunks are decoded into a few arrays the loader
        reuses (the buffer being sliced, and the next ones as far as the
        read-ahead reaches; image and tabular stores), so memory is about
        chunk size x ``buffer_chunks`` x (1 + ceil(prefetch / buffer_chunks))
        in shuffled order, chunk size x (1 + prefetch) in stored order.
    read_ahead_bytes : int, optional
        A bound in bytes on what is read ahead: at most this many bytes of
        chunks (uncompressed ``X``) are in flight or waiting beyond the buffer,
        so ``prefetch`` is lowered to fit (one chunk at least).  On object
        storage each chunk read is a few requests; more ``threads`` keep more
        of them in flight to hide each request's latency.
    drop_last : bool, default False
        Drop the last, smaller batch of an epoch.
    rank, world_size : int, default 0 and 1
        Data parallelism: each global step of ``global_batch_size`` samples
        is cut into ``world_size`` near-equal shares and this consumer takes
        share ``rank``; ranks see disjoint samples, the same number of
        batches, and together exactly the steps a single consumer would see.
        Each rank reads the chunks (a rank's share of a buffer is spread over
        all of its chunks), so reading costs ``world_size`` times what one
        consumer's does; decompression is cheap next to a training step.
    threads : int, default 2
        Threads reading and decompressing chunks (requests in flight on
        object storage).  A read that fails with a transient error (a
        timeout, a 5xx answer) is sent again with exponential backoff; a
        permanent one (403, 404) is raised at once as
        :class:`~bigdl.errors.ObjectStoreError` naming the URL and the cause.
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
    metadata : bool, default False
        Sequence stores only: yield ``(X, y, meta)``, where ``meta`` holds
        each window's ``series`` (code into ``ds.attrs["series"]["names"]``),
        ``origin`` (the time of its last input step) and ``target_time``
        ``(batch, horizon)``, as int64 tensors (ns since 1970 UTC for dates;
        float64 for numeric times).
    global_batch_size : int, optional
        Samples of one step of all ranks together; default ``batch_size *
        world_size``.  Give it to keep the steps of a run that continues on
        another number of ranks (a rank then gets ``global_batch_size /
        world_size`` samples, rounded down or up).  With ``world_size > 1``
        a last step smaller than ``world_size`` samples is dropped.

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
    Iterating the loader itself advances the epoch after each full pass and
    keeps track of the position within it (:meth:`state_dict`).  When it is
    wrapped in a ``DataLoader`` with worker processes, worker ``k`` of ``n``
    yields steps ``k, k + n, ...``, which the ``DataLoader`` hands out in step
    order; call :meth:`set_epoch` before each epoch (as with
    ``DistributedSampler``) to get a new order, and give
    :meth:`state_dict` the number of batches taken.  The order, the
    augmentation and the resume position are the same whatever the number
    of worker processes.

    Examples
    --------
    >>> loader = ChunkLoader(bigdl.open("work/flights.zarr"), "train", batch_size=512)  # doctest: +SKIP
    >>> for X, y in loader:                                                            # doctest: +SKIP
    ...     loss = criterion(model(X), y)
    """

    def __init__(self, store, split: str = "train", *, batch_size: int = 256, shuffle: bool = True,
                 seed: int = 0, buffer_chunks: int = 4, prefetch: int | None = None,
                 read_ahead_bytes: int | None = None, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, threads: int = 2,
                 transform: Callable | None = None, device=None, augment=None, window: int | None = None,
                 horizon: int | None = None, stride: int | None = None, global_batch_size: int | None = None,
                 metadata: bool = False):
        super().__init__()
        dataset = store if isinstance(store, Dataset) else open_store(store)
        check_params("ChunkLoader", {"split": split, "batch_size": batch_size, "buffer_chunks": buffer_chunks,
                                     "prefetch": prefetch, "threads": threads, "world_size": world_size,
                                     "rank": rank, "transform": transform, "read_ahead_bytes": read_ahead_bytes},
                     PARAMETERS)
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
        X = dataset.group["X"]
        #: Bytes of one chunk of X, uncompressed: the unit of read-ahead.
        self.chunk_bytes = int(dataset.rows_per_chunk * np.prod(X.shape[1:], dtype=np.int64) * X.dtype.itemsize)
        self.read_ahead_bytes = read_ahead_bytes
        prefetch = buffer_chunks if prefetch is None else prefetch
        if read_ahead_bytes is not None:
            prefetch = max(1, min(prefetch, read_ahead_bytes // max(self.chunk_bytes, 1)))
        self.prefetch = prefetch
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.threads = threads
        self.device = torch.device(device) if device is not None else None
        self.transform = transform
        # The store kind decides what a sample is (rows, windows) and what a model sees (normalised images).
        self.view = dataset.view.with_windows(window=window, horizon=horizon, stride=stride, owner="ChunkLoader")
        if metadata:
            if not hasattr(self.view, "with_metadata"):
                raise SchemaError(f"ChunkLoader(metadata=True) gives windows' series and times: it applies to "
                                  f"sequence stores only, and {self.path!r} is a {self.kind} store.")
            self.view = self.view.with_metadata()
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
        if global_batch_size is not None:
            check_params("ChunkLoader", {"global_batch_size": global_batch_size},
                         {"global_batch_size": [Interval(int, world_size, None)]})
        #: Samples of one step of all ranks together.
        self.global_batch_size = int(global_batch_size) if global_batch_size is not None else batch_size * world_size
        self.step_samples = self.global_batch_size
        self._start_sample = self._position = 0

    # -- epochs and state ---------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle order of ``epoch`` for the next pass.

        A position restored by :meth:`load_state_dict` is kept when ``epoch``
        is the restored epoch, so ``set_epoch`` before each epoch (as with
        ``DistributedSampler``) resumes mid-epoch; any other epoch starts at
        its first batch.

        Parameters
        ----------
        epoch : int
        """
        epoch = int(epoch)
        if epoch != self.epoch:
            self._start_sample = 0
        self.epoch = epoch
        self._position = self._start_sample

    def state_dict(self, batches: int | None = None) -> dict:
        """Where the sequence of epochs stands: enough to continue with exactly the next batch.

        Parameters
        ----------
        batches : int, optional
            Batches taken from this loader, or from a ``DataLoader`` around
            it, since the current pass over the epoch began.  Needed only
            with ``DataLoader`` worker processes, whose copies of the loader
            cannot tell this one how far they got; iterating the loader itself
            keeps count.

        Returns
        -------
        dict
            ``epoch``, ``seed``, ``sample_in_epoch`` (samples of the epoch
            consumed by all ranks together, a multiple of the global batch
            size), ``global_batch_size`` and ``world_size`` (for the record:
            another world size may resume with the same global batch size).
        """
        position = self._position
        if batches is not None:
            check_params("ChunkLoader.state_dict", {"batches": batches}, {"batches": [Interval(int, 0, None)]})
            steps = self._step_sizes()
            first = self._first_step(self._start_sample)
            position = int(steps[:min(first + batches, len(steps))].sum())
        epoch = self.epoch
        if position and position >= self._epoch_total():  # a finished pass: the next epoch, from its start
            epoch, position = epoch + 1, 0
        return {"epoch": epoch, "seed": self.seed, "sample_in_epoch": int(position),
                "global_batch_size": self.global_batch_size, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`: the same seed, at its epoch and position in it.

        Parameters
        ----------
        state : dict
            ``epoch`` and ``seed``, and ``sample_in_epoch`` (0 when absent,
            as in checkpoints written at epoch ends by earlier versions).

        Raises
        ------
        ParameterError
            ``sample_in_epoch`` does not fall at a step boundary of this
            loader's global batch size (it was saved with another one).
        """
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])
        start = int(state.get("sample_in_epoch", 0))
        if start:
            ends = np.cumsum(self._step_sizes())
            if start not in ends and start < self._epoch_total():
                raise ParameterError(
                    f"ChunkLoader cannot resume at sample {start:,} of epoch {self.epoch}: it is not where a "
                    f"step of its global batch size {self.global_batch_size:,} ends (the state was saved with "
                    f"global batch size {state.get('global_batch_size')}). Resume with the batch size and "
                    "world size whose product is the saved global batch size.")
        self._start_sample = start
        self._position = start

    # -- the epoch's order ----------------------------------------------
    def _epoch_total(self) -> int:
        """Samples of the split in an epoch (before drop_last)."""
        return int(self.chunk_counts.sum())

    def _step_sizes(self) -> np.ndarray:
        """Samples of each global step of an epoch (all ranks together)."""
        total, size = self._epoch_total(), self.global_batch_size
        full, rest = divmod(total, size)
        # A short last step is kept unless drop_last, or unless some rank would get no sample of it.
        keep = rest and not self.drop_last and rest >= self.world_size
        return np.array([size] * full + ([rest] if keep else []), dtype=np.int64)

    def _first_step(self, sample: int) -> int:
        """The step that starts at global position ``sample`` (steps after the end for a finished epoch)."""
        ends = np.cumsum(self._step_sizes())
        return int(np.searchsorted(ends, sample, side="right"))

    def _buffers(self, epoch: int) -> list[np.ndarray]:
        """The epoch's chunks in reading order, grouped into shuffle buffers (one chunk each in order)."""
        chunks = np.flatnonzero(self.chunk_counts)
        if not self.shuffle:
            return [chunks[i:i + 1] for i in range(len(chunks))]
        chunks = np.random.default_rng([self.seed, epoch, 0]).permutation(chunks)
        return [chunks[i:i + self.buffer_chunks] for i in range(0, len(chunks), self.buffer_chunks)]

    def _share(self, size: int) -> tuple[int, int]:
        """This rank's positions ``[low, high)`` within a global step of ``size`` samples."""
        return (self.rank * size) // self.world_size, ((self.rank + 1) * size) // self.world_size

    @property
    def n_samples(self) -> int:
        """Samples this rank yields per epoch (all worker processes together)."""
        return int(sum(high - low for low, high in map(self._share, self._step_sizes())))

    def __len__(self) -> int:
        """Batches per epoch: the same on every rank."""
        return len(self._step_sizes())

    # -- iteration ----------------------------------------------------
    def _read_chunk(self, chunk: int, into: dict | None = None):
        from bigdl.store._location import with_retries

        if into is None:
            return with_retries(lambda: self.view.read_chunk(chunk, self.split), url=self.view.path,
                                what=f"chunk {chunk}")
        # A retried read decodes into the same part of the buffer again.
        return with_retries(lambda: self.view.read_chunk(chunk, self.split, into=into), url=self.view.path,
                            what=f"chunk {chunk}")

    def _slot_count(self) -> int:
        """Buffer slots decoded into: the one being sliced, and those the read-ahead reaches."""
        per_buffer = self.buffer_chunks if self.shuffle else 1
        return 1 + -(-self.prefetch // per_buffer)

    def _take_slots(self, rows: int) -> list[dict]:
        """Arrays to decode the buffers into, ``rows`` stored rows each, from the process's pool when it has some.

        A fresh array is a fresh ``mmap`` whose pages the kernel must zero and
        fault in on first touch: a quarter of a 1M-row epoch on a bare machine,
        and on a virtual machine that hands freed memory back to its host (a
        Firecracker guest here) 70 ms per 16 MiB chunk, more than decoding it.
        So a pass gives its arrays back to a pool shared by every loader of the
        process (see :func:`release_buffers`), and the next pass, of this loader
        or of a new one over chunks no larger, decodes into memory already
        touched.
        """
        spec = {"X": self.view.array("X")}
        if self.has_target:
            spec["y"] = self.view.array("y")
        return _BUFFER_POOL.take(self._slot_count(), rows, {name: (array.shape[1:], np.dtype(array.dtype))
                                                            for name, array in spec.items()})

    def _reads(self, plan: list, ends: list[int]):
        """The chunks of ``plan`` read by a thread pool, yielded in order, never more than ``prefetch`` ahead.

        ``plan`` holds ``(buffer position, chunk, into)``; ``ends[j]`` is the
        plan index after buffer ``j``'s last chunk.  While buffer ``j`` is
        being sliced, reads reach at most ``prefetch`` chunks past its end
        (and never into a slot still being sliced); all of buffer ``j`` is
        asked for as soon as its first chunk is, so the first batch comes
        sooner.
        """
        slots = self._slot_count()
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="bigdl-loader") as pool:
            pending: deque = deque()
            position = 0
            try:
                for index, (current, _, _) in enumerate(plan):
                    limit = ends[current] + self.prefetch
                    while position < min(limit, len(plan)) and plan[position][0] < current + slots:
                        _, chunk, into = plan[position]
                        pending.append(pool.submit(self._read_chunk, int(chunk), into))
                        position += 1
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _batches(self, epoch: int, worker: int, n_workers: int, first: int):
        """``(step, step size, low, X, y, meta)`` of this rank's share of steps ``first, first + n_workers...``.

        The epoch's global order is the chunks' shuffled order, cut into
        buffers of ``buffer_chunks`` chunks whose samples are permuted by a
        generator of their own; global step ``s`` is positions
        ``s * G .. (s + 1) * G`` of that order (``G`` the global batch size)
        and rank ``r`` takes its ``r``-th share of each step.  None of it
        depends on the world size or on DataLoader workers, and buffers
        before ``first`` or holding none of this worker's samples are never read.
        """
        buffers = self._buffers(epoch)
        offsets = np.concatenate([[0], np.cumsum([self.chunk_counts[chunks].sum() for chunks in buffers])])
        sizes = self._step_sizes()
        starts = np.concatenate([[0], np.cumsum(sizes)])
        wanted = []  # (step, its size, my share's first offset in it, global [begin, end))
        for step in range(first + worker, len(sizes), n_workers):
            low, high = self._share(int(sizes[step]))
            if high > low:
                wanted.append((step, int(sizes[step]), low, int(starts[step]) + low, int(starts[step]) + high))
        if not wanted:
            return
        needed = sorted({int(buffer) for _, _, _, begin, end in wanted
                         for buffer in range(np.searchsorted(offsets, begin, side="right") - 1,
                                             np.searchsorted(offsets, end - 1, side="right"))})
        # Where the store kind allows, a buffer's chunks are decoded side by side into one of a few reused
        # arrays (slots): no copy to join them, no fresh memory per read.
        stored = {int(chunk): np.subtract(*self.view.chunk_bounds(int(chunk))[::-1])
                  for buffer in needed for chunk in buffers[buffer]}
        slots = None
        if self.view.reads_into:
            slots = self._take_slots(max(sum(stored[int(chunk)] for chunk in buffers[buffer]) for buffer in needed))
        plan, ends = [], []
        for position, buffer in enumerate(needed):
            at = 0
            for chunk in buffers[buffer]:
                into = None
                if slots is not None:
                    slot = slots[position % len(slots)]
                    into = {name: array[at:at + stored[int(chunk)]] for name, array in slot.items()}
                plan.append((position, int(chunk), into))
                at += stored[int(chunk)]
            ends.append(len(plan))
        reads = self._reads(plan, ends)
        try:
            yield from self._cut(buffers, needed, offsets, wanted, reads, epoch, slots)
        finally:
            reads.close()  # a consumer that stops early cancels the reads in flight
            if slots is not None:
                _BUFFER_POOL.give_back(slots)

    def _cut(self, buffers, needed, offsets, wanted, reads, epoch: int, slots):
        view, pieces, at, reused = self.view, [], 0, {}
        for position, buffer in enumerate(needed):
            chunks = [next(reads) for _ in buffers[buffer]]
            if slots is None:
                # Each buffer is joined into the same arrays: the batches gathered from the last one are copies.
                x_all, y_all, rows = view.join(chunks, out=reused)
            else:  # decoded side by side into the slot already
                slot, stored, rows = slots[position % len(slots)], 0, []
                for piece in chunks:
                    rows.append(piece[2] + stored)
                    stored += len(piece[0])
                rows = np.concatenate(rows) if len(rows) > 1 else rows[0]
                x_all = slot["X"][:stored]
                y_all = slot["y"][:stored] if "y" in slot else None
            if self.shuffle:
                rows = rows[np.random.default_rng([self.seed, epoch, 1, buffer]).permutation(len(rows))]
            low, high = int(offsets[buffer]), int(offsets[buffer + 1])
            while at < len(wanted):
                step, size, share, begin, end = wanted[at]
                if begin >= high:
                    break
                # Within a few-chunk buffer the rows stay in cache; np.take gathers them (a copy: the slot
                # is decoded into again while the batch is used).
                pieces.append(view.gather(x_all, y_all, rows[max(begin, low) - low:min(end, high) - low]))
                if end > high:  # the rest of this batch is in the next buffer
                    break
                x = pieces[0][0] if len(pieces) == 1 else np.concatenate([piece[0] for piece in pieces])
                y = pieces[0][1] if len(pieces) == 1 or pieces[0][1] is None else np.concatenate(
                    [piece[1] for piece in pieces])
                meta = None  # a sequence view's windows' series and times (metadata=True)
                if len(pieces[0]) > 2:
                    meta = pieces[0][2] if len(pieces) == 1 else {
                        key: np.concatenate([piece[2][key] for piece in pieces]) for key in pieces[0][2]}
                pieces = []
                at += 1
                yield step, size, share, x, y, meta

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        ends = np.cumsum(self._step_sizes())
        first = self._first_step(self._start_sample)
        pin = self.device is not None and self.device.type == "cuda"
        for step, size, share, x_np, y_np, meta in self._batches(epoch, worker, n_workers, first):
            if self.augment is not None:  # on the stored pixels, so padding is black
                rng = np.random.default_rng([self.seed, epoch, 2, step])
                x_np = self.augment(torch.from_numpy(np.ascontiguousarray(x_np)), rng, of=size, at=share).numpy()
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
            self.step_samples = size  # the global step's size: DDP losses are weighed by it
            if info is None:
                self._position = int(ends[step])  # set before the yield: consumed once the caller has it
            if meta is not None:
                yield x, y, {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in meta.items()}
            else:
                yield (x, y) if self.has_target else x
        if info is None:
            self.epoch = epoch + 1
            self._start_sample = self._position = 0

    def __repr__(self) -> str:
        return (f"ChunkLoader({self.path!r}, split={self.split!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, rank={self.rank}/{self.world_size}, n_samples={self.n_samples})")
