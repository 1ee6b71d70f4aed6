"""Estimators on the store: out-of-core forests, XGBoost, dask-ml integration, torch estimators, search.

Module names mirror scikit-learn's and dask-ml's, so imports swap one for one.
Each name loads its module on first use: a Dask worker that unpickles a
ChunkForest task imports scikit-learn's forests, not torch (about 260 MB of a
worker's memory less).
"""

import importlib

# Where each public name lives.
_MODULES = {
    "ChunkForest": "_forest", "ChunkForestClassifier": "_forest", "ChunkForestRegressor": "_forest",
    "HyperbandSearch": "_search",
    "NotInitializedError": "_torch", "TorchClassifier": "_torch", "TorchRegressor": "_torch",
    "Incremental": "_wrappers", "ParallelPostFit": "_wrappers", "predict_to_store": "_wrappers",
    "XGBClassifier": "_xgb", "XGBRegressor": "_xgb",
    "classification_metrics": "_metrics",
}

__all__ = ["ChunkForest", "ChunkForestClassifier", "ChunkForestRegressor", "HyperbandSearch", "Incremental",
           "NotInitializedError", "ParallelPostFit", "TorchClassifier", "TorchRegressor", "XGBClassifier",
           "XGBRegressor", "classification_metrics", "predict_to_store"]


def __getattr__(name):
    if name in _MODULES:
        value = getattr(importlib.import_module(f"bigdl.estimators.{_MODULES[name]}"), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module 'bigdl.estimators' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
