"""Turning what estimators are given (a store, dask arrays, NumPy) into (X, y) blocks."""

from __future__ import annotations

import numpy as np

from bigdl.errors import SchemaError
from bigdl.loaders._predict import as_samples, is_store

__all__ = ["as_dask_arrays", "is_store", "is_lazy", "BlockPredictorMixin"]


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


class BlockPredictorMixin:
    """What the estimators predicting chunk by chunk share (ChunkForest, the XGB estimators).

    Checks of the input's width and shape, in-memory input through
    scikit-learn's ``validate_data``, lazy input (a store, a path, dask
    arrays) turned into one dask block per store chunk, and ``score`` on a
    store's split or on arrays.  A subclass sets ``n_features_in_`` when
    fitted and implements ``predict`` and ``_score(y, predicted, sample_weight)``.
    """

    def _check_width(self, shape) -> None:
        if len(shape) == 2 and shape[1] != self.n_features_in_:
            raise SchemaError(f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                              f"{self.n_features_in_} features as input; pass the columns it was fitted on "
                              "(or fit again).")

    def _in_memory_samples(self, X, *, ensure_all_finite):
        from sklearn.utils.validation import validate_data

        X = X if hasattr(X, "shape") else np.asarray(X)  # lists: know the width before scikit-learn's checks
        self._check_width(np.shape(X))
        return validate_data(self, X, reset=False, dtype=np.float32, ensure_all_finite=ensure_all_finite)

    def _lazy_samples(self, X, method: str, split: str | None):
        import dask.array as da

        if not isinstance(X, da.Array):
            X, _, _ = as_dask_arrays(X, split=split or "all", need_y=False)
        if X.ndim != 2:
            raise SchemaError(f"{type(self).__name__}.{method} needs 2-D X (samples x features); got shape "
                              f"{X.shape}.")
        self._check_width(X.shape)
        return X

    def _score_any(self, X, y=None, sample_weight=None, split: str = "test"):
        import dask
        import dask.array as da

        if is_store(X) or hasattr(X, "__fspath__"):
            X, y, _ = as_dask_arrays(X, split=split)
        predicted = self.predict(X)
        if isinstance(predicted, da.Array) or isinstance(y, da.Array):
            predicted, y = dask.compute(predicted, y)
        return self._score(np.asarray(y), np.asarray(predicted), sample_weight)

    def _score(self, y, predicted, sample_weight):
        raise NotImplementedError
