"""Dask clusters: the embedded local cluster and connections to remote ones."""

from bigdl.cluster._local import SCHEDULER_ENV, connect, start_local, start_or_connect

__all__ = ["start_local", "connect", "start_or_connect", "SCHEDULER_ENV"]
