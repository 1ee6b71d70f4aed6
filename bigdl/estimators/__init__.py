"""Estimators on the store: out-of-core forests, dask-ml integration, torch estimators, search."""

from bigdl.estimators._forest import ChunkForest, ChunkForestClassifier, ChunkForestRegressor

__all__ = ["ChunkForest", "ChunkForestClassifier", "ChunkForestRegressor"]
