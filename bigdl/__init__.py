"""bigdl: deep learning and analytics on data larger than memory, with Dask, Zarr and PyTorch.

Raw tabular files are ingested by :func:`bigdl.ingest.tabular` into a Zarr
store (the contract between ingest and every consumer); :func:`bigdl.open`
reads it back as a :class:`bigdl.store.Dataset`; :mod:`bigdl.cluster` starts or
joins the Dask cluster everything runs on.
"""

__version__ = "0.1.0"

from bigdl import cluster, datasets, errors, estimators, explain, ingest, store, train  # noqa: E402
from bigdl.store import Dataset  # noqa: E402
from bigdl.store import open_store as open  # noqa: E402,A001

__all__ = ["__version__", "open", "Dataset", "cluster", "datasets", "estimators", "explain", "ingest", "store",
           "train", "errors"]
