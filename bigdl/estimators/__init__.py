"""Estimators on the store: out-of-core forests, XGBoost, dask-ml integration, torch estimators, search.

Module names mirror scikit-learn's and dask-ml's, so imports swap one for one.
"""

from bigdl.estimators._forest import ChunkForest, ChunkForestClassifier, ChunkForestRegressor
from bigdl.estimators._search import HyperbandSearch
from bigdl.estimators._torch import NotInitializedError, TorchClassifier, TorchRegressor
from bigdl.estimators._wrappers import Incremental, ParallelPostFit, predict_to_store
from bigdl.estimators._xgb import XGBClassifier, XGBRegressor

__all__ = ["ChunkForest", "ChunkForestClassifier", "ChunkForestRegressor", "HyperbandSearch", "Incremental",
           "NotInitializedError", "ParallelPostFit", "TorchClassifier", "TorchRegressor", "XGBClassifier",
           "XGBRegressor", "predict_to_store"]
