"""Turning what estimators are given (a store, dask arrays, NumPy) into (X, y) blocks."""

from __future__ import annotations

import numpy as np

from bigdl.errors import SchemaError
from bigdl.loaders._predict import as_samples, is_store

__all__ = ["as_dask_arrays", "is_store", "is_lazy"]


def is_lazy(X) -> bool:
    """Whether ``X`` is trained on and predicted chunk by chunk: a store, a store path or a dask array.

    Anything else is in memory, and goes through scikit-learn's ``validate_data``.

    Parameters
    ----------
    X : object

    Returns
    -------
    bool
    """
    import dask.array as da

    return is_store(X) or hasattr(X, "__fspath__") or isinstance(X, da.Array)


def as_dask_arrays(X, y=None, *, split: str | None = "train", need_y: bool = True):
    """``(X, y, dataset)`` as dask arrays with aligned row chunks.

    Parameters
    ----------
    X : Dataset, store path, dask array or array-like
        A store (its ``split`` samples, through its sample view), a dask
        array, or anything NumPy accepts (wrapped in one chunk).
    y : dask array or array-like, optional
        Targets of array ``X``; must be None for a store.
    split : str or None, default "train"
        The samples of a store.
    need_y : bool, default True
        Refuse array ``X`` without ``y``, and a store without targets.

    Returns
    -------
    (dask.array.Array, dask.array.Array or None, Dataset or None)
        ``y`` rechunked to ``X``'s rows; the dataset when ``X`` is a store.

    Raises
    ------
    SchemaError
        A store together with ``y``, or no targets where they are needed.
    """
    import dask.array as da

    if is_store(X):
        if y is not None:
            raise SchemaError("Pass either a store (its y is used) or X and y arrays, not a store and y.")
        return as_samples(X, split, need_y=need_y)
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
    return X, y, None
