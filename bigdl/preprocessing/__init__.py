"""Fitted transforms (scikit-learn's transformer API) shared by ingest, which fits them, and the store, which keeps their state."""

from bigdl.preprocessing._tabular import TabularPreprocessor
from bigdl.preprocessing._weights import resolve_class_weight, sample_weights

__all__ = ["TabularPreprocessor", "resolve_class_weight", "sample_weights"]
