"""Classification metrics of a fitted estimator over a store's split or dask arrays, summed chunk by chunk.

:func:`classification_metrics` (the estimators' ``evaluate``) reports
accuracy, balanced accuracy and ROC-AUC in scikit-learn's meanings
(``accuracy_score``, ``balanced_accuracy_score``, ``roc_auc_score``: of the
positive class when binary, the one-vs-rest macro average otherwise).  Each
block of class probabilities is reduced, where it was predicted, to the counts
of :class:`bigdl.train._metrics.ClassificationMetrics` (the one evaluation of
a classifier: a confusion matrix and per-class score histograms); the blocks'
counts add up, so neither the features nor the probabilities of the whole
split are ever held, whatever its size.

The blocks' counts are made here (:func:`_block`, on the workers, which so
never import torch through ``bigdl.train``) and fill a ``ClassificationMetrics``
on the client, which computes the metrics.  The histograms here bin ``asinh``
of the log-odds rather than the log-odds clipped to ``[-20, 20]``: the
probabilities of an unscaled linear model crowd within ``1e-10`` of 0 or 1
and still rank (on the tests' imbalanced store two thirds of SGD's test
probabilities are below ``1e-10``: the clipped bins put them in one bin and
miss the AUC by 0.07; these bins by 5e-5).  ``asinh`` keeps the bins as fine
near ``p = 0.5`` (0.0015 of log-odds at 10,000 bins) and 0.15% of the
log-odds wide in the tails, out to +-750 (beyond float64's smallest
probability).  A forest's probabilities (multiples of ``1 / n_trees`` for
pure leaves) fall in distinct bins, so its AUC is exact.
"""

from __future__ import annotations

import numpy as np

from bigdl.errors import SchemaError

__all__ = ["classification_metrics", "LOG_ODDS_LIMIT"]

#: Log-odds are clipped to +-this: float64 probabilities end at log-odds -744 (5e-324) and +37 (1 - 1e-16).
LOG_ODDS_LIMIT = 750.0


def _counts(probabilities: np.ndarray, codes: np.ndarray, n_classes: int, bins: int) -> dict:
    """``confusion``, ``positives`` and ``totals`` of one block, as ``ClassificationMetrics`` holds them.

    The score bins are uniform in ``asinh(log-odds)`` over +-LOG_ODDS_LIMIT;
    one scored class (code 1) when binary, every class otherwise.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(codes), n_classes)
    predicted = probabilities.argmax(axis=1)
    confusion = np.bincount(codes * n_classes + predicted, minlength=n_classes * n_classes)
    scores = probabilities[:, 1:2] if n_classes == 2 else probabilities
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = np.log(scores) - np.log1p(-scores)
    log_odds = np.nan_to_num(log_odds, nan=0.0, posinf=LOG_ODDS_LIMIT, neginf=-LOG_ODDS_LIMIT)
    end = np.arcsinh(LOG_ODDS_LIMIT)
    position = (np.arcsinh(np.clip(log_odds, -LOG_ODDS_LIMIT, LOG_ODDS_LIMIT)) + end) / (2 * end)
    index = np.minimum((position * bins).astype(np.int64), bins - 1)
    scored = index.shape[1]
    flat = index + bins * np.arange(scored)  # one histogram row per scored class
    is_positive = codes[:, None] == (np.arange(scored) + (1 if n_classes == 2 else 0))[None, :]
    return {"confusion": confusion.reshape(n_classes, n_classes),
            "positives": np.bincount(flat[is_positive], minlength=scored * bins).reshape(scored, bins),
            "totals": np.bincount(flat.reshape(-1), minlength=scored * bins).reshape(scored, bins)}


def _fitted_classes(estimator) -> np.ndarray:
    """``classes_`` of an estimator, or of the one a wrapper (Incremental, a search) fitted."""
    for candidate in (estimator, getattr(estimator, "estimator_", None), getattr(estimator, "best_estimator_", None),
                      getattr(estimator, "estimator", None)):
        classes = getattr(candidate, "classes_", None)
        if classes is not None:
            return np.asarray(classes)
    raise SchemaError(f"classification_metrics needs a fitted classifier; {type(estimator).__name__} has no "
                      "classes_ (fit it first).")


def _codes(labels, classes: np.ndarray) -> np.ndarray:
    """Positions of ``labels`` in the sorted ``classes``; a label the estimator never saw is an error."""
    labels = np.asarray(labels).reshape(-1)
    codes = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    unknown = classes[codes] != labels
    if unknown.any():
        raise SchemaError(f"classification_metrics: the targets hold labels the estimator was not fitted on "
                          f"({np.unique(labels[unknown])[:5].tolist()}...); its classes are {classes.tolist()}.")
    return codes


def _block(probabilities, labels, classes: np.ndarray, bins: int) -> dict:
    """The counts of one block (runs where the block was predicted)."""
    return _counts(probabilities, _codes(labels, classes), len(classes), bins)


def _add(*parts: dict) -> dict:
    return {name: sum(part[name] for part in parts) for name in parts[0]}


def classification_metrics(estimator, X, y=None, *, split: str = "test", bins: int | None = None) -> dict:
    """Accuracy, balanced accuracy and ROC-AUC of a fitted classifier, one chunk at a time.

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba``
        A bigdl estimator (ChunkForestClassifier, XGBClassifier,
        Incremental, ParallelPostFit, TorchClassifier, HyperbandSearch),
        which predicts dask input chunk by chunk, or any scikit-learn
        classifier (its ``predict_proba`` is mapped over the blocks).
    X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        A store (its ``split`` samples and targets) or samples.
    y : dask array or array-like of shape (n_samples,), optional
        The true labels; omit them for a store.
    split : str, default "test"
        The rows of a store.
    bins : int, optional
        Score bins per class of the ROC-AUC histograms; default
        ``bigdl.train._metrics.ROC_BINS`` (10,000).

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy`` (the mean recall over the
        classes present), ``roc_auc`` (binary: of ``classes_[1]``; else
        one-vs-rest, macro average; NaN when a class has no sample) and
        ``n_samples``.  Predictions are the most probable class, as
        ``predict`` gives.

    Raises
    ------
    SchemaError
        An estimator without ``classes_`` or ``predict_proba``, targets with
        a label it was not fitted on, no targets, or no rows.

    Examples
    --------
    >>> classification_metrics(forest, ds)              # doctest: +SKIP
    {'accuracy': 0.93, 'balanced_accuracy': 0.91, 'roc_auc': 0.99, 'n_samples': 800}
    """
    import dask

    from bigdl.estimators._data import as_dask_arrays, is_lazy
    from bigdl.loaders._predict import predict_blocks
    from bigdl.train._metrics import ROC_BINS, ClassificationMetrics

    bins = ROC_BINS if bins is None else int(bins)
    classes = _fitted_classes(estimator)
    if not hasattr(estimator, "predict_proba"):
        raise SchemaError(f"classification_metrics needs predict_proba; {type(estimator).__name__} has none "
                          "(for SGDClassifier: loss='log_loss' or 'modified_huber').")
    if not is_lazy(X):
        if y is None:
            raise SchemaError("classification_metrics: y is required with array input (or pass a store).")
        counts = _block(estimator.predict_proba(X), y, classes, bins)
    else:
        X, y, _ = as_dask_arrays(X, y, split=split)
        if type(estimator).__module__.split(".")[0] in ("bigdl", "dask_ml"):
            probabilities = estimator.predict_proba(X)  # chunk by chunk, its own way
        else:
            probabilities = predict_blocks(estimator.predict_proba, X, tail=(len(classes),), dtype=np.float64,
                                           name="bigdl-metrics-proba")
        probabilities = probabilities.rechunk({1: -1})
        if y.chunks[0] != probabilities.chunks[0]:
            y = y.rechunk((probabilities.chunks[0],))
        parts = [dask.delayed(_block)(block, labels, classes, bins)
                 for block, labels in zip(probabilities.to_delayed().ravel(), y.to_delayed().ravel())]
        while len(parts) > 1:  # a tree of sums: no task adds up every block
            parts = [dask.delayed(_add)(*parts[start:start + 8]) for start in range(0, len(parts), 8)]
        (counts,) = dask.compute(parts[0])
    metrics = ClassificationMetrics(len(classes), bins=bins)
    for name, value in counts.items():
        getattr(metrics, name)[...] = value
    if not metrics.n_samples:
        raise SchemaError("classification_metrics: no rows to evaluate (an empty store split?).")
    return {**metrics.result(), "n_samples": metrics.n_samples}
