"""Turning what estimators are given (a store, dask arrays, NumPy) into (X, y) blocks."""

from __future__ import annotations

import numpy as np

from bigdl.errors import SchemaError
from bigdl.store._dataset import Dataset, open_store

__all__ = ["as_dask_arrays", "is_store"]


def is_store(data) -> bool:
    return isinstance(data, Dataset) or (isinstance(data, str) and data.rstrip("/").endswith(".zarr"))


def as_dask_arrays(X, y=None, *, split: str | None = "train", need_y: bool = True):
    """``(X, y, dataset)`` as dask arrays with aligned row chunks.

    ``X`` may be a :class:`~bigdl.store.Dataset` (or a store path; then the
    ``split`` rows are used and ``y`` must be None), a dask array, or anything
    NumPy accepts (wrapped in one chunk).
    """
    import dask.array as da

    dataset = None
    if is_store(X) or hasattr(X, "__fspath__"):
        dataset = X if isinstance(X, Dataset) else open_store(X)
        if y is not None:
            raise SchemaError("Pass either a store (its y is used) or X and y arrays, not a store and y.")
        X, y = dataset.arrays(split or "all")
        if need_y and y is None:
            raise SchemaError(f"The store {str(dataset.path)!r} has no target; this estimator needs one.")
        return X, y, dataset
    if not isinstance(X, da.Array):
        X = np.asarray(X)
        X = da.from_array(X, chunks=(max(len(X), 1),) + X.shape[1:])
    if y is not None:
        if not isinstance(y, da.Array):
            y = da.from_array(np.asarray(y), chunks=(X.chunks[0],))
        elif y.chunks[0] != X.chunks[0]:
            y = y.rechunk((X.chunks[0],))
    elif need_y:
        raise SchemaError("y is required with array input (or pass a store, whose y is used).")
    return X, y, dataset
