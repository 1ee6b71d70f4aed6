"""Fitted transforms (scikit-learn's transformer API) shared by ingest, which fits them, and the store, which keeps their state."""

from bigdl.preprocessing._tabular import TabularPreprocessor

__all__ = ["TabularPreprocessor"]
