"""One block-prediction helper for every predict, predict_proba and score path (dask-ml's ``ParallelPostFit`` style).

:func:`predict_blocks` branches on its input: a store (or its path) is read
through the store kind's sample view (so a model always sees the samples it
was trained on: normalised images, windows), a dask array is mapped block by
block, anything else is called directly.  The model enters the graph once,
as one delayed object every block depends on.  Blocks with no rows (a split absent
from a chunk) give empty outputs without calling the model.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["predict_blocks", "as_samples", "is_store"]


def is_store(data) -> bool:
    """A :class:`~bigdl.store.Dataset`, a path object, or a string path ending in ``.zarr``."""
    from bigdl.store import Dataset

    return isinstance(data, Dataset) or hasattr(data, "__fspath__") or (
        isinstance(data, str) and data.rstrip("/").endswith(".zarr"))


def as_samples(data, split: str | None = None, *, need_y: bool = False):
    """``(X, y, dataset)``: a store's ``split`` samples as dask arrays (the sample view), or ``data`` as given."""
    from bigdl.errors import SchemaError
    from bigdl.store import Dataset, open_store

    if not is_store(data):
        return data, None, None
    dataset = data if isinstance(data, Dataset) else open_store(data)
    X, y = dataset.arrays(split or "all")
    if need_y and y is None:
        raise SchemaError(f"The store {str(dataset.path)!r} has no target; this needs one: ingest with target=<column>.")
    return X, y, dataset


def predict_blocks(function: Callable, data, *, model=None, split: str | None = None, tail: tuple = (),
                   dtype=np.float64, name: str = "bigdl-predict"):
    """``function`` applied to the samples of ``data``, block by block when it is lazy.

    Parameters
    ----------
    function : callable or str
        ``function(X_block) -> outputs`` on NumPy samples, or, when ``model``
        is given, ``function(model, X_block)`` or the name of the model's
        method to call (``"predict_proba"``); must pickle (a bound method of
        a fitted estimator, a small callable object).
    data : Dataset, store path, dask array or array-like
        A store's ``split`` samples (its sample view), a dask array (one
        output block per row block), or in-memory data (called at once).
    model : object or distributed.Future, optional
        The first argument of ``function``.  A ``Future`` (from
        ``client.scatter(model, broadcast=True)``) keeps a large model out of
        the task graph: the graph holds its key, every worker keeps one copy,
        and the result must be computed on that future's client.
    split : str, optional
        The store's split; default all samples.
    tail : tuple of int, default ()
        Per-sample output shape (``()``: one value per sample).
    dtype : numpy dtype, default float64
        Output dtype (declared as the dask meta).
    name : str
        Prefix of the output's dask keys.

    Returns
    -------
    dask array or NumPy array
        Lazy for store and dask input: chunks follow the input's row chunks.
    """
    import dask
    import dask.array as da

    X, _, _ = as_samples(data, split)
    if not isinstance(X, da.Array):
        if model is None:
            return function(X)
        return _call(model.result() if _is_future(model) else model, function, X)
    if X.ndim > 1 and X.numblocks[1:] != (1,) * (X.ndim - 1):
        X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    tail = tuple(int(size) for size in tail)
    # The model enters the graph once, as one task every block depends on; the
    # caller scatters it (model=future) only where it knows the client, so
    # without one the graph stays computable on any scheduler.
    if model is None:
        model, function = dask.delayed(function, pure=True), None
    else:
        model = dask.delayed(model, pure=True)  # of a future: only its key
    layout = {}
    drop = list(range(1, X.ndim))
    if tail:
        layout["chunks"] = (X.chunks[0],) + tuple((size,) for size in tail)
        extra = len(tail) - (X.ndim - 1)
        if extra > 0:
            layout["new_axis"] = list(range(X.ndim, X.ndim + extra))
        elif extra < 0:
            layout["drop_axis"] = list(range(1 + len(tail), X.ndim))
    elif drop:
        layout["drop_axis"] = drop
    return X.map_blocks(_apply, model, function=function, tail=tail, out_dtype=np.dtype(dtype), dtype=dtype,
                        meta=np.empty((0,) * (1 + len(tail)), dtype=dtype), name=f"{name}-{_token(X, function)}",
                        **layout)


def _call(model, function, block):
    return getattr(model, function)(block) if isinstance(function, str) else function(model, block)


def _is_future(value) -> bool:
    try:
        from distributed import Future
    except ImportError:  # pragma: no cover - distributed is a dependency
        return False
    return isinstance(value, Future)


def _token(X, function) -> str:
    import uuid

    # Unique per call: a key that named the input and the model's id could be
    # reused by a later model at the same address while old results are held.
    return uuid.uuid4().hex


def _apply(block: np.ndarray, model, *, function, tail: tuple, out_dtype) -> np.ndarray:
    if len(block) == 0:  # a chunk without rows of the split: estimators refuse empty input
        return np.empty((0,) + tail, dtype=out_dtype)
    output = np.asarray(model(block) if function is None else _call(model, function, block))
    return output.astype(out_dtype, copy=False).reshape((len(block),) + tail)
