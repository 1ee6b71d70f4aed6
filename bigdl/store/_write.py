"""Writing a store: its empty arrays, its finishing attributes, and whole stores from arrays.

:func:`create_arrays` and :func:`finish_store` are what every writer (the
ingest pipeline, :func:`from_arrays`) uses around its chunk writes.
:func:`from_arrays` writes NumPy or dask arrays, e.g. generated data or model outputs.

The arrays are rechunked to the store's row chunks before writing, so each
dask block is exactly one Zarr chunk (misaligned parallel writes corrupt
data silently, dask #12583), and the store is written atomically like an
ingest.
"""

from __future__ import annotations

import os

import numpy as np

from bigdl.errors import SchemaError
from bigdl.store._commit import atomic_store
from bigdl.store._dataset import Dataset, open_store
from bigdl._validation import Options, check_params
from bigdl.store._format import FORMAT_VERSION, SPLIT_NAMES, TASKS, assign_split, check_split_parameters, \
    compressor, rows_per_chunk_for

__all__ = ["from_arrays", "create_arrays", "finish_store"]


def create_arrays(path: str | os.PathLike, n_samples: int, rows_per_chunk: int, *,
                  x_shape: tuple[int, ...], x_dtype="float32", y_dtype=None, compression="lz4",
                  x_dimensions=("sample", "feature"), extra_arrays: dict | None = None):
    """Create the empty arrays of a store at ``path`` (a fresh directory).

    Parameters
    ----------
    path : str or path
    n_samples : int
        Rows of every array.
    rows_per_chunk : int
        Rows per chunk (at most ``n_samples``).
    x_shape : tuple of int
        Shape of one row of ``X``.
    x_dtype : str, default "float32"
    y_dtype : str, optional
        None: no ``y`` (unlabelled data).
    compression : str, None or zarr codec, default "lz4"
    x_dimensions : tuple of str, default ("sample", "feature")
        ``X``'s dimension names (what xarray shows).
    extra_arrays : dict, optional
        Further per-sample array names and their dtypes (sequence stores keep
        ``time``, ``series``, ``position`` and ``run`` beside ``X``).

    Returns
    -------
    zarr.Group
    """
    import zarr

    from zarr.codecs import Crc32cCodec

    from bigdl.store._location import zarr_store

    group = zarr.open_group(zarr_store(os.fspath(path)), mode="a", zarr_format=3)
    codec = compressor(compression)
    # A CRC-32C of every stored chunk (zarr v3's own codec, so plain zarr and
    # xarray still read it): a byte flipped on disk fails at decode instead of
    # decompressing to wrong numbers, which Blosc-lz4 alone lets through.
    # About 12 GB/s, nothing next to the decompression.
    codecs = {"compressors": ([codec] if codec is not None else []) + [Crc32cCodec()]}
    rows_per_chunk = max(1, min(rows_per_chunk, max(n_samples, 1)))
    group.create_array("X", shape=(n_samples, *x_shape), chunks=(rows_per_chunk, *x_shape), dtype=x_dtype,
                       dimension_names=list(x_dimensions), fill_value=0, **codecs)
    if y_dtype is not None:
        group.create_array("y", shape=(n_samples,), chunks=(rows_per_chunk,), dtype=y_dtype,
                           dimension_names=["sample"], fill_value=0, **codecs)
    group.create_array("split", shape=(n_samples,), chunks=(rows_per_chunk,), dtype="uint8",
                       dimension_names=["sample"], fill_value=0, **codecs)
    group.create_array("record", shape=(n_samples,), chunks=(rows_per_chunk,), dtype="int64",
                       dimension_names=["sample"], fill_value=-1, **codecs)
    for name, dtype in (extra_arrays or {}).items():
        group.create_array(name, shape=(n_samples,), chunks=(rows_per_chunk,), dtype=dtype,
                           dimension_names=["sample"], fill_value=0, **codecs)
    return group


def finish_store(path, *, kind: str, accounting: dict, chunk_split_counts, split: dict, **attributes) -> None:
    """Write a complete store's attributes and consolidate its metadata.

    The fields every store has (format version, kind, row accounting, split
    counts per chunk and in all, split spec, creation time, bigdl version)
    are filled here; each writer passes its own (``feature_names``,
    ``preprocessing``, ``source``...).  The integrity manifest (see
    :mod:`bigdl.store._integrity`) is recorded last: the checksum of every
    chunk at its position, digests of every other attribute and of every
    array's metadata, and the reject files' checksums.  Nothing may change
    the store after this.

    Parameters
    ----------
    path : str or path
        The complete (temporary) store.
    kind : {"tabular", "image", "sequence"}
    accounting : dict
        ``read``, ``stored``, ``rejected`` and ``reasons``.
    chunk_split_counts : sequence of length-3 int arrays
        Rows of each split (train, validation, test) in each chunk, in chunk
        order: consumers plan their work from them without reading ``split``.
    split : dict
        The split spec (seed, fractions, key).
    **attributes
        The writer's own attributes (``feature_names``, ``preprocessing``, ``source``...).
    """
    import warnings
    from datetime import datetime, timezone

    import zarr

    import bigdl
    from bigdl.store._integrity import integrity_manifest

    per_chunk = np.asarray(chunk_split_counts, dtype=np.int64).reshape(-1, len(SPLIT_NAMES))
    split_counts = per_chunk.sum(axis=0)
    from bigdl.store._location import zarr_store

    group = zarr.open_group(zarr_store(os.fspath(path)), mode="r+")
    group.attrs.update({
        "format_version": FORMAT_VERSION,
        "kind": kind,
        **attributes,
        "rows": {"read": accounting["read"], "stored": accounting["stored"], "rejected": accounting["rejected"],
                 "rejected_by_reason": accounting.get("reasons", {})},
        "split_counts": {SPLIT_NAMES[code]: int(count) for code, count in enumerate(split_counts)},
        "chunk_split_counts": per_chunk.tolist(),
        "split": split,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bigdl_version": bigdl.__version__,
    })
    # Recorded last, from what was written (attributes as read back), so it covers every other attribute.
    group.attrs["integrity"] = integrity_manifest(path)
    with warnings.catch_warnings():
        # Zarr warns that consolidated metadata is not in the v3 spec yet;
        # xarray reads it and falls back cleanly where it is absent.
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(zarr_store(os.fspath(path)))



def from_arrays(X, y=None, *, store: str | os.PathLike, task: str | None = None, classes: list | None = None,
                feature_names: list[str] | None = None, validation: float = 0.0, test: float = 0.2, seed: int = 0,
                rows_per_chunk: int | None = None, compression: str = "lz4", overwrite: bool = False,
                progress: bool = False, split_codes=None, inputs=None) -> Dataset:
    """Write ``X`` (and ``y``) as a tabular store, without preprocessing.

    Parameters
    ----------
    X : array-like or dask array of shape (n, n_features)
        Stored as float32.
    y : array-like or dask array of shape (n,), optional
        Class codes (int, with ``task="classification"``) or float targets.
    store : str or path
        Where to write.
    task : {"classification", "regression"}, optional
        Default: classification for integer ``y``, regression for float ``y``.
    classes : list, optional
        Class labels in code order (default ``0 .. max(y)``, which reads ``y``).
    feature_names : list of str, optional
        Default ``x0, x1, ...``.
    validation, test, seed
        Split fractions and seed, as in :func:`bigdl.ingest.tabular` (the key
        is the row position).
    rows_per_chunk, compression, overwrite, progress
        As in :func:`bigdl.ingest.tabular`.
    split_codes : array-like of uint8, optional
        Use these split codes (e.g. another store's ``ds.split``) instead of
        assigning new ones.
    inputs : list of str or path, optional
        Stores or files that ``X`` and ``y`` are read from: ``store`` may not
        be one of them, lie inside one or contain one (replacing it would
        delete the data being read).

    Returns
    -------
    Dataset

    Raises
    ------
    ParameterError
        A parameter out of its range (a fraction, the seed, ``rows_per_chunk``,
        ``task``, ``compression``).
    SchemaError
        ``X``, ``y``, ``feature_names`` or ``split_codes`` of shapes that do not fit.
    StoreExistsError
        ``store`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> X = da.random.random((1_000_000, 32), chunks=(100_000, 32)).astype("float32")   # doctest: +SKIP
    >>> ds = bigdl.store.from_arrays(X, (X[:, 0] > 0.5).astype(int), store="work/r.zarr") # doctest: +SKIP
    """
    import dask
    import dask.array as da

    check_params("from_arrays", {"task": task}, {"task": [Options(TASKS), None]})
    check_split_parameters("from_arrays", validation=validation, test=test, seed=seed,
                           rows_per_chunk=rows_per_chunk, compression=compression)
    X = da.asarray(X)
    if X.ndim != 2:
        raise SchemaError(f"from_arrays needs X of shape (n_samples, n_features); got shape {X.shape}.")
    n, n_features = X.shape
    if y is not None:
        y = da.asarray(y)
        if y.shape != (n,):
            raise SchemaError(f"y must have shape ({n},) to match X; got {y.shape}.")
        if task is None:
            task = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
        if task == "classification":
            classes = _check_class_codes(y, classes)
    rows_per_chunk = min(rows_per_chunk or rows_per_chunk_for(n_features), max(n, 1))
    names = list(feature_names) if feature_names is not None else [f"x{index}" for index in range(n_features)]
    if len(names) != n_features:
        raise SchemaError(f"feature_names has {len(names)} names for {n_features} features.")
    with atomic_store(store, overwrite=overwrite, inputs=inputs) as temporary:
        y_dtype = None if y is None else ("int64" if task == "classification" else "float32")
        group = create_arrays(temporary, n, rows_per_chunk, x_shape=(n_features,), y_dtype=y_dtype,
                              compression=compression)
        records = da.arange(n, chunks=rows_per_chunk, dtype=np.int64)
        if split_codes is not None:
            split = da.asarray(split_codes).astype(np.uint8).rechunk(rows_per_chunk)
            if split.shape != (n,):
                raise SchemaError(f"split_codes must have shape ({n},); got {split.shape}.")
        else:
            split = records.map_blocks(_split_block, seed=seed, validation=validation, test=test,
                                       dtype=np.uint8)
        # As float32 first: a float64 beyond float32's range (1e39) is inf once stored.
        features = X.astype(np.float32).rechunk((rows_per_chunk, n_features))
        sources = [features, split, records]
        targets = [group["X"], group["split"], group["record"]]
        # Checked in the same pass as the write (the blocks are computed once), and refused once every
        # task has stopped: a task raising would leave the others writing into the temporary store.
        checks = {"X": _non_finite_rows(features, missing_allowed=True)}
        if y is not None:
            target = y.astype(y_dtype).rechunk(rows_per_chunk)
            sources.append(target)
            targets.append(group["y"])
            if y_dtype == "float32":
                checks["y"] = _non_finite_rows(target, missing_allowed=False)
        # Every block now equals one Zarr chunk: aligned, independent writes.
        stored = da.store(sources, targets, lock=False, compute=False)
        if progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                _, found = dask.compute(stored, checks)
        else:
            _, found = dask.compute(stored, checks)
        _refuse_non_finite(found)
        codes = group["split"][:]  # one byte per row
        counts = [np.bincount(codes[start:start + rows_per_chunk], minlength=3)
                  for start in range(0, max(n, 1), rows_per_chunk)]
        finish_store(
            temporary, kind="tabular", accounting={"read": n, "stored": n, "rejected": 0}, chunk_split_counts=counts,
            split={"seed": seed, "validation": validation, "test": test, "key": "record position"},
            feature_names=names, target_name=None if y is None else "y", task=task,
            class_names=classes if task == "classification" else None, source={"format": "arrays"},
            compression=compression,
        )
    return open_store(store)


def _check_class_codes(y, classes: list | None) -> list:
    """The class labels of codes ``y``: refuse fewer than two classes, and codes outside ``classes``."""
    import dask

    low, high = (int(value) for value in dask.compute(y.min(), y.max()))
    if classes is None:
        if low == high:
            raise SchemaError(f"Only one class ({low!r}) in y; classification needs at least two classes.")
        classes = list(range(high + 1))
    elif len(classes) < 2:
        raise SchemaError(f"Only one class ({list(classes)[0] if len(classes) else 'none'!r}) in classes=; "
                          "classification needs at least two classes.")
    if low < 0 or high >= len(classes):
        raise SchemaError(f"y holds class codes from {low} to {high}, but there are {len(classes)} classes "
                          f"(codes 0 to {len(classes) - 1}); pass classes= with a label for every code.")
    return list(classes)


def _non_finite_rows(array, *, missing_allowed: bool):
    """Per block of ``array``, ``[row, value]`` of its first value that is not a finite number
    (NaN counts as one unless ``missing_allowed``), or ``[-1, 0]``: a small array to compute with the write."""
    table = array if array.ndim == 2 else array[:, None]
    return table.map_blocks(_first_non_finite, missing_allowed=missing_allowed, dtype=np.float64,
                            chunks=((1,) * table.numblocks[0], (2,)))


def _first_non_finite(block: np.ndarray, *, missing_allowed: bool, block_info=None) -> np.ndarray:
    bad = np.isinf(block) if missing_allowed else ~np.isfinite(block)
    rows = np.flatnonzero(bad.any(axis=1))
    if not len(rows):
        return np.array([[-1.0, 0.0]])
    local = int(rows[0])
    start = block_info[0]["array-location"][0][0] if block_info else 0
    return np.array([[float(start + local), float(block[local][bad[local]][0])]])


def _refuse_non_finite(found: dict) -> None:
    """Refuse ``X`` holding ``inf`` (NaN is a missing value and stays) or a regression ``y`` holding
    ``inf`` or NaN, naming the first row: from_arrays stores values as given."""
    for name, rows in found.items():
        bad = rows[rows[:, 0] >= 0]
        if len(bad):
            row, value = int(bad[0, 0]), bad[0, 1]
            raise SchemaError(f"{name} holds a value that is not a finite float32 number ({value}) in row {row} "
                              "(beyond +-3.4e38 a number overflows to inf); from_arrays stores values as given, "
                              "so replace it (or drop the row) first"
                              + (" (NaN in X is kept as a missing value)." if name == "X" else "."))


def _split_block(records: np.ndarray, *, seed: int, validation: float, test: float) -> np.ndarray:
    return assign_split(records, seed, validation, test)
