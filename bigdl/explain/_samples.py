"""Bounded reads of a split for the explainers: given rows, a seeded sample, the first rows.

Explanations need a few samples in memory (a SHAP background, the rows LIME
explains, the sample LIME's quartiles come from) but never a whole split.
Positions count within a split in store order (``0`` is the split's first
sample); a read touches only the store chunks that hold the wanted rows,
found from the per-chunk split counts in the store's attributes.
"""

from __future__ import annotations

import numpy as np

from bigdl.errors import ParameterError, SchemaError

__all__ = ["read_rows", "random_rows", "first_rows"]


def read_rows(ds, split: str, positions) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples at ``positions`` of ``split`` (model inputs, as the sample view gives them), in that order.

    Parameters
    ----------
    ds : Dataset
    split : str
    positions : array-like of int
        Positions within the split, from 0.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None)
        ``X`` and ``y`` (None for an unlabelled store).

    Raises
    ------
    ParameterError
        A position outside the split.
    """
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    counts = ds.view.chunk_counts(split)
    total = int(counts.sum())
    if len(positions) and (positions.min() < 0 or positions.max() >= total):
        bad = positions[(positions < 0) | (positions >= total)][:5].tolist()
        raise ParameterError(f"Rows {bad} are outside the {split!r} split, which has {total} samples "
                             f"(positions count from 0 within the split).")
    starts = np.concatenate([[0], np.cumsum(counts)])
    chunks = np.searchsorted(starts, positions, side="right") - 1
    X = np.empty((len(positions), *ds.sample_shape), dtype=np.float32)
    y = None
    for chunk in np.unique(chunks):
        chunk_X, chunk_y = ds.read_chunk(int(chunk), split)
        where = np.flatnonzero(chunks == chunk)
        local = positions[where] - starts[chunk]
        X[where] = chunk_X[local]
        if chunk_y is not None:
            if y is None:
                y = np.empty((len(positions), *chunk_y.shape[1:]), dtype=chunk_y.dtype)
            y[where] = chunk_y[local]
    return X, y


def random_rows(ds, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` samples of ``split`` drawn without replacement by ``seed`` (all of them if fewer).

    Parameters
    ----------
    ds : Dataset
    split : str
    n : int
    seed : int

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The samples, and their positions within the split (sorted).

    Raises
    ------
    SchemaError
        The split holds no samples.
    """
    total = int(ds.view.chunk_counts(split).sum())
    if not total:
        raise SchemaError(f"The store {str(ds.path)!r} cannot give samples: {ds.view.why_empty(split)}.")
    positions = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    return read_rows(ds, split, positions)[0], positions


def first_rows(ds, split: str, limit: int | None) -> list[tuple[int, int]]:
    """``(chunk, rows)`` for the chunks holding the first ``limit`` samples of ``split`` (all when None).

    Parameters
    ----------
    ds : Dataset
    split : str
    limit : int or None

    Returns
    -------
    list of (int, int)
        Each chunk with samples of the split, and how many of them are taken.
    """
    plan, left = [], np.inf if limit is None else int(limit)
    for chunk, count in enumerate(ds.view.chunk_counts(split)):
        if left <= 0:
            break
        taken = int(min(count, left))
        if taken:
            plan.append((chunk, taken))
            left -= taken
    return plan
