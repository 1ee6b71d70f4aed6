"""Classification metrics summed batch by batch in bounded memory: accuracy, balanced accuracy, ROC-AUC.

:class:`ClassificationMetrics` is what ``Trainer.evaluate`` (and so every
epoch's validation) and ``TorchClassifier.evaluate`` feed with each batch's
class probabilities; it never holds the samples.  Accuracy and balanced
accuracy come from a ``n_classes x n_classes`` confusion matrix of int64
counts, so they are exact.  ROC-AUC comes from histograms of the scores:
the exact AUC needs every score sorted (``n_samples x n_classes`` floats),
these need ``2 x n_classes x bins`` int64 counts (160 kB per class at the
default 10,000 bins; one class for a binary problem) whatever the split's size.

The histograms bin each one-vs-rest score on the log-odds scale,
``log p - log(1 - p)`` clipped to ``[-20, 20]`` (``p`` from 2e-9 to
1 - 2e-9), in ``bins`` equal bins: a monotone transform, so the AUC is that
of the probabilities, and unlike bins of ``p`` itself it keeps apart the
scores a confident model squeezes near 0 and 1.  A positive and a negative
in the same bin count as a tie (one half, as tied scores do in
``sklearn.metrics.roc_auc_score``).  That is the only approximation: the
error is at most half the fraction of positive-negative pairs sharing a bin
(:meth:`ClassificationMetrics.roc_auc_bound` reports it); against
scikit-learn on the same probabilities the tests measure it below 1e-4.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ClassificationMetrics", "binned_roc_auc", "mean_loss_weight", "ROC_BINS", "LOG_ODDS_RANGE"]

#: Score bins per class of the ROC-AUC histograms.
ROC_BINS = 10_000
#: Log-odds beyond +-this share the end bins (p below 2e-9 or above 1 - 2e-9).
LOG_ODDS_RANGE = 20.0


def _numpy(values) -> np.ndarray:
    """A torch tensor (on any device) or array-like as a NumPy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def binned_roc_auc(positives: np.ndarray, totals: np.ndarray) -> float:
    """ROC-AUC of one score from its histograms, ties within a bin counting one half.

    Parameters
    ----------
    positives : numpy.ndarray of int, shape (bins,)
        Positive samples per score bin, bins in increasing score order.
    totals : numpy.ndarray of int, shape (bins,)
        All samples per bin.

    Returns
    -------
    float
        The probability that a random positive scores above a random
        negative; NaN when there are no positives or no negatives.

    Examples
    --------
    >>> binned_roc_auc(np.array([0, 1, 1]), np.array([2, 2, 1]))  # 2.5 + 3 of 6 pairs
    0.9166666666666666
    """
    positives = np.asarray(positives, dtype=np.float64)
    negatives = np.asarray(totals, dtype=np.float64) - positives
    n_positive, n_negative = positives.sum(), negatives.sum()
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    return float((positives * (below + 0.5 * negatives)).sum() / (n_positive * n_negative))


def mean_loss_weight(criterion, target) -> float:
    """What one batch's mean loss weighs in the mean over a split.

    A class-weighted loss with ``reduction="mean"`` (``CrossEntropyLoss(weight=w)``)
    divides by the sum of its targets' weights, not by the batch size; summing
    ``loss x that`` over batches and dividing by its total gives the weighted
    mean over the whole split, as one batch holding the split would.

    Parameters
    ----------
    criterion : callable
        The loss; its ``weight`` and ``reduction`` attributes are read if it has them.
    target : torch.Tensor
        The batch's class codes (or regression targets).

    Returns
    -------
    float
        ``weight[target].sum()`` for a class-weighted mean loss, else ``len(target)``.
    """
    weight = getattr(criterion, "weight", None)
    if weight is None or getattr(criterion, "reduction", "mean") != "mean" or target.dtype.is_floating_point:
        return float(len(target))
    return float(weight[target].sum())


class ClassificationMetrics:
    """Accuracy, balanced accuracy and ROC-AUC of a classifier, summed batch by batch.

    Memory is ``n_classes ** 2`` counts for the confusion matrix plus
    ``2 x bins`` counts per scored class (one class when binary, every class
    otherwise), whatever the number of samples; see the module docstring for
    the ROC-AUC's binning and its error.

    Parameters
    ----------
    n_classes : int
        Classes, coded ``0 .. n_classes - 1``.
    bins : int, default ROC_BINS
        Score bins per class of the ROC-AUC histograms.

    Attributes
    ----------
    confusion : numpy.ndarray of int64, shape (n_classes, n_classes)
        ``confusion[true, predicted]`` counts.
    positives, totals : numpy.ndarray of int64, shape (scored classes, bins)
        The ROC-AUC histograms: samples of the class, and all samples, per
        bin of the class's score (for a binary problem only the positive
        class, code 1, is scored).

    Examples
    --------
    >>> metrics = ClassificationMetrics(2)
    >>> metrics.update(np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]), np.array([0, 0, 1]))
    >>> metrics.result()
    {'accuracy': 0.6666666666666666, 'balanced_accuracy': 0.75, 'roc_auc': 1.0}
    """

    def __init__(self, n_classes: int, *, bins: int = ROC_BINS):
        self.n_classes, self.bins = int(n_classes), int(bins)
        self.confusion = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        scored = 1 if self.n_classes == 2 else self.n_classes
        self.positives = np.zeros((scored, self.bins), dtype=np.int64)
        self.totals = np.zeros((scored, self.bins), dtype=np.int64)

    def update(self, probabilities, labels, predicted=None) -> None:
        """Add one batch.

        Parameters
        ----------
        probabilities : array-like or torch.Tensor of shape (n, n_classes)
            Class probabilities (a softmax); float64 keeps the tails apart
            best.
        labels : array-like or torch.Tensor of int, shape (n,)
            True class codes.
        predicted : array-like or torch.Tensor of int, shape (n,), optional
            Predicted codes; default the argmax of ``probabilities`` (pass
            the argmax of the logits to count exactly what ``predict`` gives).
        """
        probabilities = _numpy(probabilities).astype(np.float64, copy=False)
        labels = _numpy(labels).astype(np.int64, copy=False).reshape(-1)
        predicted = (probabilities.argmax(1) if predicted is None else
                     _numpy(predicted).astype(np.int64, copy=False).reshape(-1))
        size = self.n_classes
        self.confusion += np.bincount(labels * size + predicted, minlength=size * size).reshape(size, size)
        scores = probabilities[:, 1:2] if size == 2 else probabilities
        with np.errstate(divide="ignore", invalid="ignore"):
            log_odds = np.log(scores) - np.log1p(-scores)
        log_odds = np.nan_to_num(log_odds, nan=0.0, posinf=LOG_ODDS_RANGE, neginf=-LOG_ODDS_RANGE)
        position = (np.clip(log_odds, -LOG_ODDS_RANGE, LOG_ODDS_RANGE) + LOG_ODDS_RANGE) / (2 * LOG_ODDS_RANGE)
        index = np.minimum((position * self.bins).astype(np.int64), self.bins - 1)
        flat = index + self.bins * np.arange(index.shape[1])  # one histogram row per scored class
        cells = self.positives.size
        self.totals += np.bincount(flat.reshape(-1), minlength=cells).reshape(self.totals.shape)
        columns = np.arange(index.shape[1]) + (1 if size == 2 else 0)
        is_positive = labels[:, None] == columns[None, :]
        self.positives += np.bincount(flat[is_positive], minlength=cells).reshape(self.positives.shape)

    def merge(self, other: "ClassificationMetrics") -> "ClassificationMetrics":
        """Add another accumulator's counts (of other batches) to these.

        Parameters
        ----------
        other : ClassificationMetrics
            Of the same ``n_classes`` and ``bins``.

        Returns
        -------
        ClassificationMetrics
            ``self``.
        """
        self.confusion += other.confusion
        self.positives += other.positives
        self.totals += other.totals
        return self

    @property
    def n_samples(self) -> int:
        """Samples added so far."""
        return int(self.confusion.sum())

    def roc_auc(self) -> float:
        """ROC-AUC: of the positive class when binary, else the one-vs-rest macro average over classes.

        Returns
        -------
        float
            NaN when a scored class has no sample, or every sample, in the
            data seen (scikit-learn raises there).
        """
        return float(np.mean([binned_roc_auc(positives, totals)
                              for positives, totals in zip(self.positives, self.totals)]))

    def roc_auc_bound(self) -> float:
        """The largest error the binning can add to :meth:`roc_auc` (half the pairs that share a bin).

        Returns
        -------
        float
        """
        bounds = []
        for positives, totals in zip(self.positives.astype(np.float64), self.totals.astype(np.float64)):
            negatives = totals - positives
            pairs = positives.sum() * negatives.sum()
            bounds.append(0.5 * float((positives * negatives).sum()) / pairs if pairs else float("nan"))
        return float(np.mean(bounds))

    def result(self) -> dict:
        """The metrics of the data seen.

        Returns
        -------
        dict
            ``accuracy``; ``balanced_accuracy``: the mean recall over the
            classes present (scikit-learn's ``balanced_accuracy_score``);
            ``roc_auc`` (:meth:`roc_auc`).
        """
        total = self.confusion.sum()
        support = self.confusion.sum(axis=1)
        present = support > 0
        recall = np.diag(self.confusion)[present] / support[present]
        return {"accuracy": float(np.trace(self.confusion) / total) if total else float("nan"),
                "balanced_accuracy": float(recall.mean()) if present.any() else float("nan"),
                "roc_auc": self.roc_auc()}
