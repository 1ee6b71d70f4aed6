"""Dask clusters: the embedded local cluster and connections to remote ones."""

from bigdl.cluster._local import SCHEDULER_ENV, connect, start_local

__all__ = ["start_local", "connect", "SCHEDULER_ENV"]
