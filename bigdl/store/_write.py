"""Writing a store from arrays (NumPy or dask), e.g. generated data or model outputs.

The arrays are rechunked to the store's row chunks before writing, so each
dask block is exactly one Zarr chunk (misaligned parallel writes corrupt
data silently, dask #12583), and the store is written atomically like an
ingest.
"""

from __future__ import annotations

import os

import numpy as np

from bigdl.errors import SchemaError
from bigdl.store._dataset import Dataset, open_store
from bigdl.store._format import (
    assign_split,
    atomic_store,
    check_split_parameters,
    create_arrays,
    finish_store,
    rows_per_chunk_for,
)

__all__ = ["from_arrays"]


def from_arrays(X, y=None, *, store: str | os.PathLike, task: str | None = None, classes: list | None = None,
                feature_names: list[str] | None = None, validation: float = 0.0, test: float = 0.2, seed: int = 0,
                rows_per_chunk: int | None = None, compression: str = "lz4", overwrite: bool = False,
                progress: bool = False, split_codes=None) -> Dataset:
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

    Returns
    -------
    Dataset

    Examples
    --------
    >>> X = da.random.random((1_000_000, 32), chunks=(100_000, 32)).astype("float32")   # doctest: +SKIP
    >>> ds = bigdl.store.from_arrays(X, (X[:, 0] > 0.5).astype(int), store="work/r.zarr") # doctest: +SKIP
    """
    import dask
    import dask.array as da

    check_split_parameters("from_arrays", validation=validation, test=test, seed=seed,
                           rows_per_chunk=rows_per_chunk)
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
        if task == "classification" and classes is None:
            classes = list(range(int(y.max().compute()) + 1))
    chunk_rows = min(rows_per_chunk or rows_per_chunk_for(n_features), max(n, 1))
    names = list(feature_names) if feature_names is not None else [f"x{index}" for index in range(n_features)]
    if len(names) != n_features:
        raise SchemaError(f"feature_names has {len(names)} names for {n_features} features.")
    with atomic_store(store, overwrite=overwrite) as temporary:
        y_dtype = None if y is None else ("int64" if task == "classification" else "float32")
        group = create_arrays(temporary, n, chunk_rows, x_shape=(n_features,), y_dtype=y_dtype,
                              compression=compression)
        records = da.arange(n, chunks=chunk_rows, dtype=np.int64)
        if split_codes is not None:
            split = da.asarray(split_codes).astype(np.uint8).rechunk(chunk_rows)
            if split.shape != (n,):
                raise SchemaError(f"split_codes must have shape ({n},); got {split.shape}.")
        else:
            split = records.map_blocks(_split_block, seed=seed, validation=validation, test=test,
                                       dtype=np.uint8)
        sources = [X.astype(np.float32).rechunk((chunk_rows, n_features)), split, records]
        targets = [group["X"], group["split"], group["record"]]
        if y is not None:
            sources.append(y.astype(y_dtype).rechunk(chunk_rows))
            targets.append(group["y"])
        # Every block now equals one Zarr chunk: aligned, independent writes.
        stored = da.store(sources, targets, lock=False, compute=False)
        if progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                dask.compute(stored)
        else:
            dask.compute(stored)
        counts = np.bincount(group["split"][:], minlength=3)
        finish_store(
            temporary, kind="tabular", accounting={"read": n, "stored": n, "rejected": 0}, split_counts=counts,
            split={"seed": seed, "validation": validation, "test": test, "key": "record position"},
            feature_names=names, target_name=None if y is None else "y", task=task,
            class_names=classes if task == "classification" else None, source={"format": "arrays"},
            compression=compression,
        )
    return open_store(store)


def _split_block(records: np.ndarray, *, seed: int, validation: float, test: float) -> np.ndarray:
    return assign_split(records, seed, validation, test)
