"""What every store kind's sample view shares: chunk bounds, split selection, dask arrays of samples.

A *sample view* answers "what does a model see?" for one store: the shape of
one sample, how many samples of a split each chunk holds, how one chunk is
read (whole Zarr chunks only) and cut into samples, and how stored values
become model inputs (images: float pixels normalised with the stored
mean/std).  Every consumer (the streaming loader, the Trainer, estimators,
explanations, ``predict_to_store``) reads through it, so a sample is the
same thing everywhere.  Views hold the store's path and attributes only, so
they pickle cheaply into Dask tasks and DataLoader workers; each process
opens the Zarr arrays once.
"""

from __future__ import annotations

import os

import numpy as np

from bigdl._validation import Options, check_params
from bigdl.errors import SchemaError
from bigdl.store._format import SPLIT_CODES
from bigdl.store._integrity import Manifest
from bigdl.store._verify import read_checked

__all__ = ["SampleView", "check_split"]

SPLITS = (*SPLIT_CODES, "all")


def check_split(split, owner: str = "Dataset") -> str:
    """The split a ``split=`` parameter names.

    Parameters
    ----------
    split : {"train", "validation", "test", "all"} or None
        None means ``"all"``.
    owner : str, default "Dataset"
        The function or class the parameter belongs to, named in the message.

    Returns
    -------
    str
        ``split``, or ``"all"`` for None.

    Raises
    ------
    ParameterError
        ``split`` names no split.
    """
    check_params(owner, {"split": split}, {"split": [Options(SPLITS), None]})
    return "all" if split is None else split


class SampleView:
    """The samples of one store as a model sees them (a base class: one subclass per store kind).

    Parameters
    ----------
    path : str
        The store.
    attrs : dict
        Its group attributes.
    n_rows : int
        Stored rows (first axis of ``X``).
    rows_per_chunk : int
        Rows per Zarr chunk.
    stored_shape : tuple of int
        Shape of one stored row of ``X``.
    has_target : bool
        Whether the store has ``y`` (sequence stores: whether windows have targets).
    """

    kind: str = ""
    #: One sample per stored row (False for sequence windows): outputs can sit beside the store's rows.
    samples_are_rows: bool = True
    #: Whether geometric augmentation (crop, flip) applies to the stored samples.
    augmentable: bool = False

    def __init__(self, path: str, attrs: dict, *, n_rows: int, rows_per_chunk: int, stored_shape: tuple,
                 has_target: bool):
        self.path = str(path)
        self.attrs = attrs
        self.n_rows = int(n_rows)
        self.rows_per_chunk = int(rows_per_chunk)
        self.stored_shape = tuple(int(size) for size in stored_shape)
        self.has_target = bool(has_target)
        self._arrays = None
        self._manifest = None

    # -- what a sample is ----------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one model input."""
        return self.stored_shape

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The shape of one sample's target (``()`` for one value)."""
        return ()

    @property
    def target_dtype(self):
        """The dtype of targets: int64 class codes, else float32 values."""
        return np.int64 if self.attrs.get("task") == "classification" else np.float32

    def to_model(self, X: np.ndarray) -> np.ndarray:
        """Stored values of a batch -> the float32 inputs a model takes (the identity for float rows).

        Parameters
        ----------
        X : numpy.ndarray
            Stored samples.

        Returns
        -------
        numpy.ndarray of float32
        """
        return np.asarray(X, dtype=np.float32)

    # -- chunks -----------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        """Chunks along the stored rows."""
        return -(-self.n_rows // self.rows_per_chunk) if self.n_rows else 0

    def chunk_bounds(self, chunk: int) -> tuple[int, int]:
        """Stored rows ``[low, high)`` of one chunk.

        Parameters
        ----------
        chunk : int

        Returns
        -------
        (int, int)

        Raises
        ------
        SchemaError
            No such chunk.
        """
        if not 0 <= chunk < self.n_chunks:
            raise SchemaError(f"Chunk {chunk} does not exist; the store {self.path!r} has {self.n_chunks} chunks.")
        low = chunk * self.rows_per_chunk
        return low, min(low + self.rows_per_chunk, self.n_rows)

    def array(self, name: str):
        """The zarr array ``name`` of the store, opened once per process.

        Parameters
        ----------
        name : str

        Returns
        -------
        zarr.Array
        """
        if self._arrays is None or self._arrays[0] != os.getpid():
            import zarr

            from bigdl.store._location import zarr_store

            self._arrays = (os.getpid(), zarr.open_group(zarr_store(self.path, read_only=True), mode="r"), {})
        group, opened = self._arrays[1], self._arrays[2]
        if name not in opened:
            opened[name] = group[name]
        return opened[name]

    @property
    def manifest(self) -> Manifest | None:
        """The store's integrity manifest, decoded once per process (None for a format-1 store without one)."""
        if self._manifest is None and self.attrs.get("integrity") is not None:
            self._manifest = Manifest.from_attrs(self.path, self.attrs)
        return self._manifest

    def read(self, name: str, rows: slice, out: np.ndarray | None = None) -> np.ndarray:
        """Rows of one stored array, each chunk checked against the manifest first.

        A missing, misplaced or damaged chunk raises StoreCorruptedError naming
        it (the check costs one 4-byte read per chunk; zarr's crc32c codec
        checks the bytes while decoding).

        Parameters
        ----------
        name : str
        rows : slice
        out : numpy.ndarray, optional
            A C-contiguous array of ``rows``' shape and the array's dtype to
            decode into, returned (see :func:`~bigdl.store._verify.read_checked`).

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        StoreCorruptedError
            A missing, misplaced or damaged chunk, named.
        """
        return read_checked(self.array(name), rows, store=self.path, name=name, manifest=self.manifest, out=out)

    def chunk_counts(self, split: str = "all") -> np.ndarray:
        """Samples of ``split`` in each chunk, from the store's attributes (no array is read).

        Parameters
        ----------
        split : {"train", "validation", "test", "all"}, default "all"

        Returns
        -------
        numpy.ndarray of int64, shape (n_chunks,)

        Raises
        ------
        ParameterError
            ``split`` names no split.
        """
        split = check_split(split)
        sizes = np.array([high - low for low, high in map(self.chunk_bounds, range(self.n_chunks))], dtype=np.int64)
        if split == "all":
            return sizes
        per_chunk = self.attrs.get("chunk_split_counts")
        if per_chunk is not None and len(per_chunk) == self.n_chunks:
            return np.asarray(per_chunk, dtype=np.int64).reshape(-1, len(SPLIT_CODES))[:, SPLIT_CODES[split]]
        # Stores written before the per-chunk counts were recorded: one pass over the 1-byte split array.
        codes = self.read("split", slice(None)) == SPLIT_CODES[split]
        bounds = [low for low, _ in map(self.chunk_bounds, range(self.n_chunks))]
        return np.add.reduceat(codes, bounds).astype(np.int64) if self.n_chunks else sizes

    #: Whether :meth:`read_chunk` can decode into arrays it is given (``into=``): a chunk's samples are its
    #: stored rows, so the loader decodes the chunks of a shuffle buffer side by side into one reused array.
    reads_into = True

    def read_chunk(self, chunk: int, split: str = "all", into: dict | None = None):
        """One whole chunk as stored, with the positions of ``split``'s samples in it.

        The loader gathers batches from several of these; :meth:`gather` turns
        positions into samples.

        Parameters
        ----------
        chunk : int
        split : {"train", "validation", "test", "all"}, default "all"
        into : dict, optional
            ``{"X": array, "y": array}`` of the chunk's stored rows' shape and
            the stored dtypes (``"y"`` only for labelled stores), decoded into
            and returned instead of fresh arrays (only where :attr:`reads_into`).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None, numpy.ndarray)
            ``X``, ``y`` (None for unlabelled stores) and ``rows``.

        Raises
        ------
        ParameterError
            ``split`` names no split.
        SchemaError
            No such chunk.
        """
        split = check_split(split)
        low, high = self.chunk_bounds(chunk)
        rows = slice(low, high)
        into = into or {}
        X = self.read("X", rows, out=into.get("X"))
        y = self.read("y", rows, out=into.get("y")) if self.has_target else None
        if split == "all":
            return X, y, np.arange(high - low)
        mask = self.read("split", rows) == SPLIT_CODES[split]
        return X, y, np.flatnonzero(mask)

    def gather(self, X: np.ndarray, y, index: np.ndarray):
        """The samples at positions ``index`` of a read chunk (or of chunks joined by :meth:`join`), as stored.

        Parameters
        ----------
        X : numpy.ndarray
        y : numpy.ndarray or None
        index : numpy.ndarray of int

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None)
        """
        # np.take gathers rows several times faster than fancy indexing.
        return np.take(X, index, axis=0), (np.take(y, index) if y is not None else None)

    def join(self, pieces: list, out: dict | None = None):
        """Several ``(X, y, rows)`` pieces as one (a copy), rows renumbered.

        Parameters
        ----------
        pieces : list of tuple
        out : dict, optional
            Arrays to copy into, reused from one call to the next (the loader
            passes the same dict for every buffer of an epoch): a fresh
            allocation of a buffer of chunks is a fresh ``mmap`` whose pages
            the kernel must zero and fault in each time.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None, numpy.ndarray)
        """
        if len(pieces) == 1:
            return pieces[0]
        X = _concatenate([piece[0] for piece in pieces], out, "X")
        y = None if pieces[0][1] is None else _concatenate([piece[1] for piece in pieces], out, "y")
        rows, offset = [], 0
        for piece in pieces:
            rows.append(piece[2] + offset)
            offset += len(piece[0])
        return X, y, np.concatenate(rows)

    # -- samples as NumPy and dask ------------------------------------------
    def samples(self, chunk: int, split: str = "all"):
        """One chunk's samples of ``split`` as model inputs.

        Parameters
        ----------
        chunk : int
        split : {"train", "validation", "test", "all"}, default "all"

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None)
            ``X`` as float32 model inputs and ``y`` (None if unlabelled).
        """
        X, y, rows = self.read_chunk(chunk, split)
        X, y = self.gather(X, y, rows)
        return self.to_model(X), y

    def arrays(self, split: str = "all"):
        """Lazy dask ``(X, y)`` of ``split``'s samples as model inputs, one block per store chunk.

        Computing a block reads that whole chunk once (``X`` and ``y`` of a
        block share the read).

        Parameters
        ----------
        split : {"train", "validation", "test", "all"}, default "all"

        Returns
        -------
        (dask.array.Array, dask.array.Array or None)
            ``y`` is None for unlabelled stores.

        Raises
        ------
        ParameterError
            ``split`` names no split.
        """
        import dask
        import dask.array as da
        from dask.base import tokenize

        split = check_split(split)
        counts = self.chunk_counts(split)
        token = tokenize(self.path, self.attrs.get("created"), self.attrs.get("integrity"), split, self._token())
        xs, ys = [], []
        for chunk, count in enumerate(counts):
            part = dask.delayed(_samples, pure=True)(self, chunk, split, dask_key_name=f"bigdl-samples-{token}-{chunk}")
            xs.append(da.from_delayed(part[0], shape=(int(count), *self.sample_shape), dtype=np.float32,
                                      name=f"bigdl-X-{token}-{chunk}"))
            if self.has_target:
                ys.append(da.from_delayed(part[1], shape=(int(count), *self.target_shape), dtype=self.target_dtype,
                                          name=f"bigdl-y-{token}-{chunk}"))
        if not xs:
            empty = da.zeros((0, *self.sample_shape), dtype=np.float32)
            return empty, (da.zeros((0, *self.target_shape), dtype=self.target_dtype) if self.has_target else None)
        X = da.concatenate(xs) if len(xs) > 1 else xs[0]
        y = (da.concatenate(ys) if len(ys) > 1 else ys[0]) if ys else None
        return X, y

    def _token(self):
        """What else (beyond the store and split) changes the samples: a kind's options."""
        return None

    # -- kind-specific extras --------------------------------------------
    def why_empty(self, split: str) -> str:
        """Why ``split`` has no samples, for the error of a consumer that needs some.

        Parameters
        ----------
        split : str

        Returns
        -------
        str
        """
        counts = self.attrs.get("split_counts", {})
        return f"it has no {split!r} samples (samples per split: {counts}); ingest with a larger {split} fraction" \
            if split != "all" else "it holds no samples"

    def info_lines(self) -> list[str]:
        """Lines this kind adds to ``Dataset.info()``.

        Returns
        -------
        list of str
        """
        return []

    def info_values(self) -> dict:
        """Values this kind adds to ``Dataset.info().to_dict()`` (tabular stores: how categories were encoded).

        Returns
        -------
        dict
        """
        return {}

    def unscale(self, values, channels=None):
        """Undo the store's scaling of values (sequence stores; see :meth:`SequenceView.unscale`).

        Parameters
        ----------
        values : array-like
        channels : list of str, optional

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        SchemaError
            The store is not a sequence store.
        """
        raise SchemaError(f"unscale() applies to sequence stores; {self.path!r} is a {self.kind} store.")

    @property
    def preprocessor(self):
        """The fitted tabular preprocessor (tabular stores; others raise SchemaError)."""
        raise SchemaError(f"The store {self.path!r} records no tabular preprocessing state.")

    def with_windows(self, *, window=None, horizon=None, stride=None, owner: str = "with_windows") -> "SampleView":
        """This view with another window spec (sequence stores); elsewhere only all-None is accepted.

        Parameters
        ----------
        window, horizon, stride : int, optional
            Override the store's window spec; None keeps it.
        owner : str, default "with_windows"
            Who asks (``"ChunkLoader"``), named in errors.

        Returns
        -------
        SampleView

        Raises
        ------
        ParameterError
            A value that is not an int >= 1 (sequence stores).
        SchemaError
            A window spec for a store that is not a sequence store.
        """
        named = [name for name, value in (("window", window), ("horizon", horizon), ("stride", stride))
                 if value is not None]
        if named:
            raise SchemaError(f"{', '.join(named)} apply to sequence stores only; {self.path!r} is a "
                              f"{self.kind} store.")
        return self

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None  # opened arrays stay in their process
        state["_manifest"] = None  # decoded again where it is used
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, sample_shape={self.sample_shape})"


def _samples(view: SampleView, chunk: int, split: str):
    return view.samples(chunk, split)


def _concatenate(parts: list, out: dict | None, name: str) -> np.ndarray:
    """``np.concatenate(parts)``, into ``out[name]`` (grown when too small) when ``out`` is given."""
    if out is None:
        return np.concatenate(parts)
    n = sum(len(part) for part in parts)
    held = out.get(name)
    if held is None or len(held) < n or held.shape[1:] != parts[0].shape[1:] or held.dtype != parts[0].dtype:
        held = out[name] = np.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
    return np.concatenate(parts, out=held[:n])
