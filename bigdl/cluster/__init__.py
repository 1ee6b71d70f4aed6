"""Dask clusters: the embedded local cluster and connections to remote ones."""

from bigdl.cluster._kubernetes import client_constraints, manifest_yaml, render_manifest, scheduler_address
from bigdl.cluster._local import (
    ROOMY_THREAD_MEMORY,
    SCHEDULER_ENV,
    SMALL_WORKER_ENVIRONMENT,
    WORKER_ENVIRONMENT,
    connect,
    start_local,
    start_or_connect,
    worker_environment,
)
from bigdl.cluster._security import DEFAULT_TLS_DIR, TLS_DIR_ENV, security_from_directory

__all__ = ["start_local", "connect", "start_or_connect", "SCHEDULER_ENV", "register_dashboard", "security_from_directory",
           "DEFAULT_TLS_DIR", "TLS_DIR_ENV", "render_manifest", "manifest_yaml", "scheduler_address",
           "client_constraints", "WORKER_ENVIRONMENT", "SMALL_WORKER_ENVIRONMENT", "ROOMY_THREAD_MEMORY",
           "worker_environment", "TrimMemory"]


def __getattr__(name):
    # The dashboard plugin subclasses distributed's SchedulerPlugin: importing
    # it loads distributed, so it loads on first use, not with ``import bigdl``.
    if name == "register_dashboard":
        from bigdl.cluster._dashboard import register_dashboard

        return register_dashboard
    if name == "TrimMemory":  # a distributed WorkerPlugin: the same lazy import
        from bigdl.cluster._trim import TrimMemory

        return TrimMemory
    raise AttributeError(f"module 'bigdl.cluster' has no attribute {name!r}")
