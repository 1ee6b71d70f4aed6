"""Class weights: ``class_weight="balanced"`` or a dict, resolved once from class counts.

Every learner that takes ``class_weight`` (ChunkForest, the XGB estimators,
the Trainer, TorchClassifier, Incremental) resolves it here from the train
split's class counts (:meth:`bigdl.store.Dataset.class_counts` for a store),
so "balanced" means the same everywhere: scikit-learn's
``n_samples / (n_classes * count)``.  A learner that sees one chunk at a time
(``partial_fit``) cannot compute "balanced" itself, so it gets the dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bigdl._validation import Options
from bigdl.errors import ParameterError

__all__ = ["resolve_class_weight", "sample_weights", "CLASS_WEIGHT"]

# The check_params entry of a ``class_weight`` parameter (a bare "balanced" is no constraint: Options is).
CLASS_WEIGHT = [None, Options(("balanced",)), Mapping]


def resolve_class_weight(class_weight, classes: Sequence, counts, *, owner: str) -> np.ndarray | None:
    """The weight of each class in code order, or None when every class weighs 1.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        ``"balanced"``: ``n_samples / (n_classes * count)`` per class, as
        scikit-learn's ``compute_class_weight``; a dict maps class labels (as
        the store names them) or class codes to weights; classes it leaves out
        weigh 1.
    classes : sequence
        The class labels in code order.
    counts : array-like of int
        Samples of each class (the train split's), in code order.
    owner : str
        The estimator or function, named in errors.

    Returns
    -------
    numpy.ndarray of float64, shape (n_classes,), or None

    Raises
    ------
    ParameterError
        Not None, "balanced" or a dict; a dict key that is not a class; a
        weight that is not a finite number above 0; "balanced" with a class
        that has no sample.

    Examples
    --------
    >>> resolve_class_weight("balanced", ["a", "b"], [30, 10], owner="f").tolist()
    [0.6666666666666666, 2.0]
    >>> resolve_class_weight({"b": 3}, ["a", "b"], [30, 10], owner="f").tolist()
    [1.0, 3.0]
    """
    if class_weight is None:
        return None
    classes = list(classes)
    counts = np.asarray(counts, dtype=np.float64)
    if isinstance(class_weight, str) and class_weight == "balanced":
        if (counts == 0).any():
            empty = [classes[code] for code in np.flatnonzero(counts == 0)]
            raise ParameterError(f"{owner}: class_weight='balanced' needs every class in the train split; "
                                 f"classes {empty!r} have no sample there. Pass a dict of weights instead.")
        return counts.sum() / (len(classes) * counts)
    if not isinstance(class_weight, Mapping):
        raise ParameterError(f"The 'class_weight' parameter of {owner} must be None, 'balanced' or a dict of "
                             f"class -> weight. Got {class_weight!r} instead.")
    weights = np.ones(len(classes), dtype=np.float64)
    by_label = {str(label): code for code, label in enumerate(classes)}
    for key, weight in class_weight.items():
        if str(key) in by_label:
            code = by_label[str(key)]
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= key < len(classes):
            code = int(key)
        else:
            raise ParameterError(f"{owner}: class_weight names {key!r}, which is not a class; the classes are "
                                 f"{classes!r} (or their codes 0..{len(classes) - 1}).")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) \
                or not np.isfinite(weight) or weight <= 0:
            raise ParameterError(f"{owner}: the class_weight of {key!r} must be a finite number above 0. "
                                 f"Got {weight!r} instead.")
        weights[code] = float(weight)
    return weights


def sample_weights(codes, weights: np.ndarray | None) -> np.ndarray | None:
    """Per-sample weights for class ``codes`` from :func:`resolve_class_weight`'s result (None stays None).

    Parameters
    ----------
    codes : array-like of int
        Class codes.
    weights : numpy.ndarray or None

    Returns
    -------
    numpy.ndarray of float64 or None
    """
    if weights is None:
        return None
    return weights[np.asarray(codes, dtype=np.int64)]
