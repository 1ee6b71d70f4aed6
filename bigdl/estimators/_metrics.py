"""Classification metrics of a fitted estimator over a store's split or dask arrays, summed chunk by chunk.

:func:`classification_metrics` reports accuracy, balanced accuracy and ROC-AUC
in scikit-learn's meanings (``accuracy_score``, ``balanced_accuracy_score``,
``roc_auc_score``: of the positive class when binary, the one-vs-rest macro
average otherwise).  Each block of class probabilities is reduced, where it
was predicted, to counts (:func:`block_counts`): a ``n_classes x n_classes``
confusion matrix (exact accuracies) and, per scored class, a histogram of
its score over ``bins`` bins of ``asinh`` of the log-odds
``log p - log(1 - p)``.  The counts of all blocks add up (:func:`add_counts`)
and give the metrics (:func:`metrics_from_counts`), so neither the features
nor the probabilities of the whole split are ever held, whatever its size.

Both transforms are monotone, so the AUC is that of the probabilities; a
positive and a negative in one bin count as a tie (one half, as tied scores in
``roc_auc_score``), the only approximation: at most half the share of
positive-negative pairs that share a bin.  ``asinh`` keeps the bins fine near
``p = 0.5`` (0.0015 of log-odds at the default 10,000 bins) and 0.15% of the
log-odds wide in the tails, where an unscaled linear model's probabilities
crowd within ``1e-10`` of 0 or 1 and still rank; the log-odds are clipped to
``+-750``, beyond float64's smallest probability.  A forest's probabilities
(multiples of ``1 / n_trees`` for pure leaves) fall in distinct bins, so its
AUC is exact.
"""

from __future__ import annotations

import numpy as np

from bigdl.errors import SchemaError

__all__ = ["classification_metrics", "block_counts", "add_counts", "metrics_from_counts", "ROC_BINS",
           "LOG_ODDS_RANGE"]

#: Score bins per class of the ROC-AUC histograms (2 x 8 bytes x bins per class: 160 kB).
ROC_BINS = 10_000
#: Log-odds are clipped to +-this: float64 probabilities end at log-odds -744 (5e-324) and +37 (1 - 1e-16).
LOG_ODDS_RANGE = 750.0


def block_counts(probabilities: np.ndarray, codes: np.ndarray, n_classes: int, bins: int = ROC_BINS) -> dict:
    """The counts one block of predictions adds: ``confusion``, ``positives`` and ``totals``.

    Parameters
    ----------
    probabilities : numpy.ndarray of shape (n, n_classes)
        Class probabilities, columns in class-code order.
    codes : numpy.ndarray of int, shape (n,)
        True class codes ``0 .. n_classes - 1``.
    n_classes : int
    bins : int, default ROC_BINS

    Returns
    -------
    dict
        ``confusion`` (int64, ``[true, predicted]``), ``positives`` and
        ``totals`` (int64, ``(scored classes, bins)``: samples of the class,
        and all samples, per bin of its score, bins uniform in
        ``asinh(log-odds)``; one scored class, code 1, when binary).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(codes), n_classes)
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    predicted = probabilities.argmax(axis=1)
    confusion = np.bincount(codes * n_classes + predicted, minlength=n_classes * n_classes)
    scores = probabilities[:, 1:2] if n_classes == 2 else probabilities
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = np.log(scores) - np.log1p(-scores)
    log_odds = np.nan_to_num(log_odds, nan=0.0, posinf=LOG_ODDS_RANGE, neginf=-LOG_ODDS_RANGE)
    end = np.arcsinh(LOG_ODDS_RANGE)
    position = (np.arcsinh(np.clip(log_odds, -LOG_ODDS_RANGE, LOG_ODDS_RANGE)) + end) / (2 * end)
    index = np.minimum((position * bins).astype(np.int64), bins - 1)
    scored = index.shape[1]
    flat = index + bins * np.arange(scored)  # one histogram row per scored class
    is_positive = codes[:, None] == (np.arange(scored) + (1 if n_classes == 2 else 0))[None, :]
    return {"confusion": confusion.reshape(n_classes, n_classes),
            "totals": np.bincount(flat.reshape(-1), minlength=scored * bins).reshape(scored, bins),
            "positives": np.bincount(flat[is_positive], minlength=scored * bins).reshape(scored, bins)}


def add_counts(*parts: dict) -> dict:
    """The sum of several blocks' :func:`block_counts`.

    Parameters
    ----------
    *parts : dict

    Returns
    -------
    dict
    """
    return {name: sum(part[name] for part in parts) for name in parts[0]}


def _roc_auc(positives: np.ndarray, totals: np.ndarray) -> float:
    positives = positives.astype(np.float64)
    negatives = totals.astype(np.float64) - positives
    n_positive, n_negative = positives.sum(), negatives.sum()
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    return float((positives * (below + 0.5 * negatives)).sum() / (n_positive * n_negative))


def metrics_from_counts(counts: dict) -> dict:
    """Accuracy, balanced accuracy and ROC-AUC from summed :func:`block_counts`.

    Parameters
    ----------
    counts : dict

    Returns
    -------
    dict
        ``accuracy``; ``balanced_accuracy`` (the mean recall over the classes
        present, as ``balanced_accuracy_score``); ``roc_auc`` (NaN when a
        scored class has no sample, or every sample: scikit-learn raises
        there); ``n_samples``.
    """
    confusion = counts["confusion"]
    total = int(confusion.sum())
    support = confusion.sum(axis=1)
    present = support > 0
    recall = np.diag(confusion)[present] / support[present]
    roc_auc = float(np.mean([_roc_auc(positives, totals)
                             for positives, totals in zip(counts["positives"], counts["totals"])]))
    return {"accuracy": float(np.trace(confusion) / total) if total else float("nan"),
            "balanced_accuracy": float(recall.mean()) if present.any() else float("nan"),
            "roc_auc": roc_auc, "n_samples": total}


def _fitted_classes(estimator) -> np.ndarray:
    """``classes_`` of an estimator, or of the one a wrapper (Incremental, a search) fitted."""
    for candidate in (estimator, getattr(estimator, "estimator_", None), getattr(estimator, "best_estimator_", None),
                      getattr(estimator, "estimator", None)):
        classes = getattr(candidate, "classes_", None)
        if classes is not None:
            return np.asarray(classes)
    raise SchemaError(f"classification_metrics needs a fitted classifier; {type(estimator).__name__} has no "
                      "classes_ (fit it first).")


def _codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Positions of ``labels`` in the sorted ``classes``; a label the estimator never saw is an error."""
    labels = np.asarray(labels).reshape(-1)
    codes = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    unknown = classes[codes] != labels
    if unknown.any():
        raise SchemaError(f"classification_metrics: the targets hold labels the estimator was not fitted on "
                          f"({np.unique(labels[unknown])[:5].tolist()}...); its classes are {classes.tolist()}.")
    return codes


def _block(probabilities, labels, classes, bins):
    return block_counts(probabilities, _codes(labels, classes), len(classes), bins)


def classification_metrics(estimator, X, y=None, *, split: str = "test", bins: int = ROC_BINS) -> dict:
    """Accuracy, balanced accuracy and ROC-AUC of a fitted classifier, one chunk at a time.

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba``
        A bigdl estimator (ChunkForestClassifier, Incremental,
        ParallelPostFit, TorchClassifier, HyperbandSearch), which predicts
        dask input chunk by chunk, or any scikit-learn classifier (its
        ``predict_proba`` is mapped over the blocks).
    X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        A store (its ``split`` samples and targets) or samples.
    y : dask array or array-like of shape (n_samples,), optional
        The true labels; omit them for a store.
    split : str, default "test"
        The rows of a store.
    bins : int, default ROC_BINS
        Score bins per class of the ROC-AUC histograms.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``roc_auc`` (binary: of
        ``classes_[1]``; else one-vs-rest, macro average) and ``n_samples``.
        Predictions are the most probable class, as ``predict`` gives.

    Raises
    ------
    SchemaError
        An estimator without ``classes_`` or ``predict_proba``, targets with
        a label it was not fitted on, or no targets.

    Examples
    --------
    >>> classification_metrics(forest, ds)              # doctest: +SKIP
    {'accuracy': 0.93, 'balanced_accuracy': 0.91, 'roc_auc': 0.99, 'n_samples': 800}
    """
    import dask

    from bigdl.estimators._data import as_dask_arrays, is_lazy
    from bigdl.loaders._predict import predict_blocks

    classes = _fitted_classes(estimator)
    if not hasattr(estimator, "predict_proba"):
        raise SchemaError(f"classification_metrics needs predict_proba; {type(estimator).__name__} has none "
                          "(for SGDClassifier: loss='log_loss' or 'modified_huber').")
    if not is_lazy(X):
        labels = np.asarray(y) if y is not None else None
        if labels is None:
            raise SchemaError("classification_metrics: y is required with array input (or pass a store).")
        return metrics_from_counts(_block(estimator.predict_proba(X), labels, classes, bins))
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
        parts = [dask.delayed(add_counts)(*parts[start:start + 8]) for start in range(0, len(parts), 8)]
    (counts,) = dask.compute(parts[0])
    return metrics_from_counts(counts)
