"""Starting the embedded local cluster and connecting to an existing one."""

from __future__ import annotations

import os
import sys

from bigdl.errors import ClusterConnectionError, SchemaError

__all__ = ["start_local", "connect", "start_or_connect", "SCHEDULER_ENV"]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def start_local(n_workers: int | None = None, threads_per_worker: int = 1, memory_limit: str | int = "auto",
                dashboard_address: str | None = ":8787", *, processes: bool = True, quiet: bool = False,
                **cluster_kwargs):
    """Start a Dask ``LocalCluster`` of worker processes and return its ``Client``.

    This is the embedded default every workflow uses; the same script runs
    against a remote cluster with :func:`connect`.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes; default: one per core, at most 4.
    threads_per_worker : int, default 1
        Threads in each worker (ingest and training tasks release the GIL in
        their heavy parts, but one thread per process keeps memory predictable).
    memory_limit : str or int, default "auto"
        Per-worker memory limit (``"2GiB"``; ``"auto"`` splits the machine's
        memory between workers).  Workers spill to disk, then pause, near it.
    dashboard_address : str or None, default ":8787"
        Where the dashboard listens; if the port is taken, another is chosen.
        None disables the dashboard.
    processes : bool, default True
        Workers as separate processes (as on a real cluster).
    quiet : bool, default False
        Do not print the dashboard link.
    **cluster_kwargs
        Passed to :class:`distributed.LocalCluster`.

    Returns
    -------
    distributed.Client
        Also the default client, so bigdl and dask pick it up.

    Examples
    --------
    >>> client = bigdl.cluster.start_local(n_workers=2, memory_limit="2GiB")  # doctest: +SKIP
    Dask dashboard: http://127.0.0.1:8787/status
    """
    from distributed import Client, LocalCluster

    if n_workers is None:
        n_workers = max(1, min(4, os.cpu_count() or 1))
    if not isinstance(n_workers, int) or n_workers < 1:
        raise SchemaError(f"The 'n_workers' parameter of start_local must be a positive int; got {n_workers!r}.")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise SchemaError(
            f"The 'threads_per_worker' parameter of start_local must be a positive int; got {threads_per_worker!r}."
        )
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=processes,
        dashboard_address=dashboard_address,
        **cluster_kwargs,
    )
    client = Client(cluster, set_as_default=True)
    if not quiet:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
    return client


def connect(address: str | None = None, *, timeout: str | float = "10s", security=None, quiet: bool = False):
    """Connect to a running Dask scheduler and return a ``Client``.

    Parameters
    ----------
    address : str, optional
        The scheduler, e.g. ``"tcp://dask-scheduler:8786"``; default: the
        ``DASK_SCHEDULER_ADDRESS`` environment variable.
    timeout : str or float, default "10s"
        How long to try before giving up.
    security : distributed.Security, optional
        TLS settings for clusters that require them.
    quiet : bool, default False
        Do not print the dashboard link.

    Returns
    -------
    distributed.Client
    """
    from distributed import Client

    address = address or os.environ.get(SCHEDULER_ENV)
    if not address:
        raise ClusterConnectionError(
            "No scheduler address: pass connect('tcp://host:8786') or set the "
            f"{SCHEDULER_ENV} environment variable (or use start_local() for a cluster on this machine)."
        )
    try:
        client = Client(address, timeout=timeout, security=security, set_as_default=True)
    except (OSError, TimeoutError) as error:
        raise ClusterConnectionError(
            f"Could not reach the Dask scheduler at {address!r} within {timeout} ({error}). Is it running, "
            "and is the address (host and port 8786 by default) reachable from here?"
        ) from None
    if not quiet:
        print(f"Connected to {address}; dashboard: {client.dashboard_link}", file=sys.stderr)
    return client


def start_or_connect(**local_options):
    """Connect to ``$DASK_SCHEDULER_ADDRESS`` when it is set, else start a local cluster.

    What every workflow calls, so one script runs on a laptop and, with the
    variable set, on a remote (e.g. Kubernetes) cluster unchanged.

    Parameters
    ----------
    **local_options
        Passed to :func:`start_local` (``n_workers``, ``memory_limit``, ...) when no address is set.

    Returns
    -------
    distributed.Client
    """
    if os.environ.get(SCHEDULER_ENV):
        return connect()
    return start_local(**local_options)
