"""bigdl: deep learning and analytics on data larger than memory, with Dask, Zarr and PyTorch.

Raw tabular files are ingested by :func:`bigdl.ingest.tabular` into a Zarr
store (the contract between ingest and every consumer); :func:`bigdl.open`
reads it back as a :class:`bigdl.store.Dataset`; :mod:`bigdl.cluster` starts or
joins the Dask cluster everything runs on; :mod:`bigdl.train`,
:mod:`bigdl.estimators` and :mod:`bigdl.explain` consume stores.
"""

import importlib

__version__ = "0.1.0"

from bigdl import cluster, datasets, errors, ingest, store  # noqa: E402
from bigdl.store import Dataset  # noqa: E402
from bigdl.store import open_store as open  # noqa: E402,A001

# Subpackages that import torch or scikit-learn load on first use, so the
# CLI and ingest start quickly.
_LAZY = ("train", "estimators", "explain", "models", "loaders", "forecast")

__all__ = ["__version__", "open", "Dataset", "cluster", "datasets", "errors", "ingest", "store", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"bigdl.{name}")
    raise AttributeError(f"module 'bigdl' has no attribute {name!r}")
