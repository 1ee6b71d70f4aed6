"""Fitted transforms (scikit-learn's transformer API) shared by ingest, which fits them, and the store, which keeps their state."""

from bigdl.preprocessing._dates import DATETIME_PARTS, DEFAULT_DATETIME_PARTS, EPOCH_UNITS
from bigdl.preprocessing._tabular import (CATEGORICAL_ENCODINGS, MAX_CATEGORIES_BOUND, TARGET_FOLDS,
                                          TARGET_PRIOR_WEIGHT, TabularPreprocessor)
from bigdl.preprocessing._weights import resolve_class_weight, sample_weights

__all__ = ["TabularPreprocessor", "resolve_class_weight", "sample_weights", "DATETIME_PARTS", "DEFAULT_DATETIME_PARTS",
           "EPOCH_UNITS", "CATEGORICAL_ENCODINGS", "MAX_CATEGORIES_BOUND", "TARGET_FOLDS", "TARGET_PRIOR_WEIGHT"]
