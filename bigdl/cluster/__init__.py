"""Dask clusters: the embedded local cluster and connections to remote ones."""

from bigdl.cluster._local import SCHEDULER_ENV, connect, start_local, start_or_connect
from bigdl.cluster._security import DEFAULT_TLS_DIR, TLS_DIR_ENV, security_from_directory

__all__ = ["start_local", "connect", "start_or_connect", "SCHEDULER_ENV", "security_from_directory",
           "DEFAULT_TLS_DIR", "TLS_DIR_ENV"]
