"""Starting the embedded local cluster and connecting to an existing one."""

from __future__ import annotations

import os
import sys

from bigdl._validation import Interval, check_params
from bigdl.cluster._security import DEFAULT_TLS_DIR, TLS_DIR_ENV, resolve_security
from bigdl.errors import ClusterConnectionError

__all__ = ["start_local", "connect", "start_or_connect", "SCHEDULER_ENV", "WORKER_ENVIRONMENT",
           "SMALL_WORKER_ENVIRONMENT", "ROOMY_THREAD_MEMORY", "worker_environment"]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

#: Environment every bigdl worker process should start with (``start_local`` sets it; the Kubernetes
#: manifest and image carry it; README "Training speed" for clusters bigdl did not start).
#:
#: distributed's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``.  Setting that variable
#: also turns off glibc's sliding mmap threshold, so every allocation of 128 KiB or more (a batch of
#: 1024 x 32 float32, torch's activations) becomes a fresh ``mmap`` and page-faults in, and the heap
#: is given back to the kernel as soon as 64 KiB sit free at its top, to be faulted in again at the
#: next batch: a training loop on such a worker ran at 0.4x of the same loop in the client process.
#: The values fix glibc where its sliding threshold would end up on a busy process: allocations below
#: 32 MiB (glibc's largest mmap threshold on 64-bit) come from the heap, and up to 64 MiB of free heap
#: is kept (twice the threshold, glibc's own rule).  A 4 MiB threshold still mapped every chunk-sized
#: buffer anew: zarr reads a 16 MiB chunk into a fresh ``bytes`` and decodes through fresh buffers, and
#: faulting those in made each chunk read 2-2.5x as long as in the client (15 chunks: 0.31-0.44 s
#: against 0.12-0.23 s), which the loader's read-ahead then took from the training loop on a 2-core
#: machine.  The heap that serves them is per arena (one per thread), so these values are for workers
#: with at least :data:`ROOMY_THREAD_MEMORY` per thread; smaller ones get
#: :data:`SMALL_WORKER_ENVIRONMENT` (see :func:`worker_environment`).  ``benchmarks/training.py``
#: measures the whole loop.
WORKER_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "67108864"}

#: The environment of workers with less than :data:`ROOMY_THREAD_MEMORY` of memory limit per thread:
#: batches and activations from the heap, chunk-sized buffers still mapped and unmapped.  With
#: :data:`WORKER_ENVIRONMENT`, 600 MiB workers of 6 threads scoring a ChunkForest peaked 20-40 MiB
#: higher (456-496 MiB against 421-460) and passed distributed's pause threshold (80%, 480 MiB), once
#: for good (the suite's small-worker forest test hung in a clean-clone run).
SMALL_WORKER_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "4194304", "MALLOC_TRIM_THRESHOLD_": "33554432"}

#: Memory limit per worker thread from which a worker gets :data:`WORKER_ENVIRONMENT`.
ROOMY_THREAD_MEMORY = 2**30


def allocator_defaults(memory_per_thread: float | None) -> dict[str, str]:
    """bigdl's allocator values for a worker with ``memory_per_thread`` bytes of limit a thread (None: unknown).

    :data:`SMALL_WORKER_ENVIRONMENT` below :data:`ROOMY_THREAD_MEMORY`, else
    :data:`WORKER_ENVIRONMENT`; ``start_local``'s nanny and the Kubernetes
    manifest both choose by it.
    """
    if memory_per_thread is not None and memory_per_thread < ROOMY_THREAD_MEMORY:
        return SMALL_WORKER_ENVIRONMENT
    return WORKER_ENVIRONMENT

#: Seconds between the worker's statistical profiler's samples, where the user has not chosen: every
#: 10 ms (distributed's default) the profiler walks every thread's stack on the worker's event loop,
#: holding the GIL: about a tenth of a core per worker, busy or idle, that a training loop and its
#: loader's read threads lose on a small machine.  100 ms still fills the dashboard's Profile page.
WORKER_PROFILE_INTERVAL = "100ms"

# The variables as the user's shell gave them, before a nanny of this process wrote distributed's
# pre-spawn environment into os.environ (it does, before spawning each worker).
_ENVIRON_AT_IMPORT = {key: os.environ.get(key) for key in WORKER_ENVIRONMENT}


# How long a local cluster waits for a lost worker to come back before it gives the worker up.
# distributed's own wait, ``distributed.deploy.lost-worker-timeout`` (15 s), is meant for batch-job
# workers; a LocalCluster's workers run under nannies that restart them, and on a busy machine a
# restart (a fresh Python importing distributed) can take longer than 15 s.  When it does, the
# LocalCluster closes the nanny and stays one worker short for good.  tests/cluster/test_lost_worker.py
# shows the upstream behaviour and this fix.
LOST_WORKER_GRACE = "5 minutes"


PARAMETERS = {"n_workers": [Interval(int, 1, None)], "threads_per_worker": [Interval(int, 1, None)],
              "dashboard_address": [str, None]}


def start_local(n_workers: int | None = None, threads_per_worker: int = 1, memory_limit: str | int = "auto",
                dashboard_address: str | None = "127.0.0.1:8787", *, processes: bool = True, quiet: bool = False,
                security=None, **cluster_kwargs):
    """Start a Dask ``LocalCluster`` of worker processes and return its ``Client``.

    This is the embedded default every workflow uses; the same script runs
    against a remote cluster with :func:`connect`.  A worker that dies (killed,
    out of memory) is restarted by its nanny, and the cluster waits up to
    ``LOST_WORKER_GRACE`` (5 minutes) for it to come back, where a plain
    ``LocalCluster`` gives it up after 15 s and stays a worker short.

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
    dashboard_address : str or None, default "127.0.0.1:8787"
        Where the dashboard listens; if the port is taken, another is chosen.
        An address without a host (``":8787"``) also listens on 127.0.0.1
        only, like the scheduler and the workers: the dashboard has no
        login and shows task names, paths and logs.  Exposing it to other
        machines is explicit: ``"0.0.0.0:8787"`` (all interfaces) or a named
        interface's address.  None disables the dashboard.
    processes : bool, default True
        Workers as separate processes (as on a real cluster).
    quiet : bool, default False
        Do not print the dashboard link.
    security : bool, str, path or distributed.Security, optional
        TLS between client, scheduler and workers: ``True`` makes temporary
        self-signed certificates (held in memory, needs ``cryptography``); a
        directory holding ``ca.crt``, ``tls.crt`` and ``tls.key`` or a
        ``distributed.Security`` uses those.  The addresses become ``tls://``
        and a client without the certificates is refused.
    **cluster_kwargs
        Passed to :class:`distributed.LocalCluster`.  With a ``worker_class``
        of your own, the worker environment below is yours to set.

    Notes
    -----
    Worker processes start with :data:`WORKER_ENVIRONMENT` (glibc allocator
    settings under which a training loop on a worker runs as fast as in this
    process; see :func:`worker_environment`), and their statistical profiler
    samples every 100 ms instead of every 10 ms.  Each worker runs the
    :class:`~bigdl.cluster._trim.TrimMemory` plugin: above 60% of its memory
    limit it gives free heap pages back to the OS (``malloc_trim``), so the
    memory the allocator settings keep never pauses a worker for good.  A value you chose wins:
    the variable set in this process's environment or in dask's
    ``distributed.nanny.pre-spawn-environ`` / ``distributed.nanny.environ``,
    or ``distributed.worker.profile.interval`` set in dask's configuration.

    Returns
    -------
    distributed.Client
        Also the default client, so bigdl and dask pick it up.

    Raises
    ------
    ParameterError
        ``n_workers`` or ``threads_per_worker`` below 1, or a ``dashboard_address`` that is not a str.
    SchemaError
        A ``security`` that cannot be used (see :func:`connect`).

    Examples
    --------
    >>> client = bigdl.cluster.start_local(n_workers=2, memory_limit="2GiB")  # doctest: +SKIP
    Dask dashboard: http://127.0.0.1:8787/status
    """
    from distributed import Client

    if n_workers is None:
        n_workers = max(1, min(4, os.cpu_count() or 1))
    check_params("start_local", {"n_workers": n_workers, "threads_per_worker": threads_per_worker,
                                 "dashboard_address": dashboard_address}, PARAMETERS)
    dashboard_address = _local_dashboard(dashboard_address)
    security = resolve_security(security, owner="start_local")
    if security is not None:
        cluster_kwargs["security"] = security
    if processes and "worker_class" not in cluster_kwargs:
        cluster_kwargs["worker_class"] = _nanny_class()
    cluster = _local_cluster_class()(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=processes,
        dashboard_address=dashboard_address,
        **cluster_kwargs,
    )
    client = Client(cluster, set_as_default=True)
    if processes:
        from bigdl.cluster._trim import TrimMemory

        # Workers the nannies restart get it too: the scheduler keeps registered plugins.
        client.register_plugin(TrimMemory())
    from bigdl.cluster._dashboard import register_dashboard

    page = register_dashboard(client)  # the bigdl page on the dashboard: training and ingest progress
    if not quiet:
        print(f"Dask dashboard: {client.dashboard_link}" + (f"  bigdl jobs: {page}" if page else ""), file=sys.stderr)
    return client


_CLUSTER_CLASS = None


def _local_cluster_class():
    """distributed's ``LocalCluster``, waiting :data:`LOST_WORKER_GRACE` for a restarting worker."""
    global _CLUSTER_CLASS
    if _CLUSTER_CLASS is None:
        import dask
        from dask.utils import parse_timedelta
        from distributed import LocalCluster as _Upstream

        class LocalCluster(_Upstream):
            __doc__ = _Upstream.__doc__

            def _update_worker_status(self, op, msg):
                # SpecCluster reads the timeout here, once per lost worker, and schedules the
                # give-up on its event loop (distributed 2026.8, deploy/spec.py).
                key = "distributed.deploy.lost-worker-timeout"
                grace = max(parse_timedelta(dask.config.get(key)), parse_timedelta(LOST_WORKER_GRACE))
                with dask.config.set({key: grace}):
                    super()._update_worker_status(op, msg)

        _CLUSTER_CLASS = LocalCluster
    return _CLUSTER_CLASS


def worker_environment(memory_per_thread: float | None = None) -> dict[str, str]:
    """The environment a worker started now is given: :data:`WORKER_ENVIRONMENT`, with your own values where set.

    A value is yours when it is in this process's environment (a nanny
    started here passes it on), in dask's ``distributed.nanny.pre-spawn-environ``
    (except distributed's own default, ``MALLOC_TRIM_THRESHOLD_=65536``,
    which is what this replaces) or in ``distributed.nanny.environ``.  (A
    nanny writes its pre-spawn environment into this process's
    ``os.environ``; values found there that equal distributed's or bigdl's
    defaults, and were not there when bigdl was imported, are not yours.)

    Parameters
    ----------
    memory_per_thread : float, optional
        The worker's memory limit over its threads, in bytes.  Below
        :data:`ROOMY_THREAD_MEMORY` the defaults are
        :data:`SMALL_WORKER_ENVIRONMENT` (a worker's heap is kept per
        thread); unknown (None) or above, :data:`WORKER_ENVIRONMENT`.

    Returns
    -------
    dict of str to str
        Variable name -> value, one per key of :data:`WORKER_ENVIRONMENT`.

    Examples
    --------
    >>> sorted(bigdl.cluster.worker_environment())  # doctest: +SKIP
    ['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_']
    """
    import dask

    pre_spawn = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    after_spawn = dask.config.get("distributed.nanny.environ", default={}) or {}
    chosen = {}
    for key, ours in allocator_defaults(memory_per_thread).items():
        shipped = _shipped_default(f"distributed.nanny.pre-spawn-environ.{key}")
        defaults = {WORKER_ENVIRONMENT[key], SMALL_WORKER_ENVIRONMENT[key]} | (
            {str(shipped)} if shipped is not None else set())
        in_environ = os.environ.get(key)
        if in_environ is not None and (_ENVIRON_AT_IMPORT[key] is not None or in_environ not in defaults):
            chosen[key] = in_environ
        elif pre_spawn.get(key) is not None and str(pre_spawn[key]) != str(shipped):
            chosen[key] = str(pre_spawn[key])
        elif after_spawn.get(key) is not None:
            chosen[key] = str(after_spawn[key])
        else:
            chosen[key] = ours
    return chosen


def _shipped_default(key: str):
    """``key``'s value in the defaults libraries registered with dask (distributed.yaml), or None."""
    import dask
    import distributed  # noqa: F401 - registers distributed.yaml among dask's defaults

    value = None
    for defaults in dask.config.defaults:
        try:
            value = dask.config.get(key, config=defaults)
        except (KeyError, TypeError):
            continue
    return value


def _worker_config() -> dict:
    """Dask configuration for the worker processes: the profiler's interval, unless the user set it."""
    import dask

    key = "distributed.worker.profile.interval"
    if str(dask.config.get(key, default=None)) != str(_shipped_default(key)):
        return {}
    return {"distributed": {"worker": {"profile": {"interval": WORKER_PROFILE_INTERVAL}}}}


_NANNY_CLASS = None


def _nanny_class():
    """distributed's ``Nanny``, starting its worker with :func:`worker_environment` and :func:`_worker_config`."""
    global _NANNY_CLASS
    if _NANNY_CLASS is None:
        from dask.config import merge
        from distributed import Nanny

        class BigdlNanny(Nanny):
            __doc__ = Nanny.__doc__

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                # Read when each worker process is spawned (and respawned after a restart):
                # Nanny.pre_spawn_env goes into os.environ before the spawn, Nanny.config into
                # the worker's dask configuration (distributed 2026.8, nanny.py).
                limit = getattr(getattr(self, "memory_manager", None), "memory_limit", None)
                threads = getattr(self, "nthreads", None) or 1
                environment = worker_environment(limit / threads if limit else None)
                self.pre_spawn_env.update(environment)
                self.env.update(environment)
                self.config = merge(self.config, _worker_config())

        _NANNY_CLASS = BigdlNanny
    return _NANNY_CLASS


def _local_dashboard(address: str | None) -> str | None:
    """``address`` with 127.0.0.1 as its host when it names only a port (Dask would listen on every interface)."""
    if address is None:
        return None
    text = address.strip()
    if text.startswith(":"):
        return f"127.0.0.1{text}"
    if text.isdigit():
        return f"127.0.0.1:{text}"
    return text


def connect(address: str | None = None, *, timeout: str | float = "10s", security=None, quiet: bool = False):
    """Connect to a running Dask scheduler and return a ``Client``.

    Parameters
    ----------
    address : str, optional
        The scheduler, e.g. ``"tcp://dask-scheduler:8786"``; default: the
        ``DASK_SCHEDULER_ADDRESS`` environment variable.
    timeout : str or float, default "10s"
        How long to try before giving up.
    security : str, path or distributed.Security, optional
        TLS for clusters that require it (``tls://`` addresses): a directory
        holding ``ca.crt``, ``tls.crt`` and ``tls.key`` (where the Kubernetes
        deployment mounts its Secret: ``/etc/bigdl/tls``) or a
        ``distributed.Security``.  Default: the directory named by
        ``$BIGDL_TLS_DIR`` when that is set, else Dask's TLS configuration.
    quiet : bool, default False
        Do not print the dashboard link.

    Returns
    -------
    distributed.Client

    Raises
    ------
    ClusterConnectionError
        No address given or set, or the scheduler cannot be reached (with or without TLS).
    SchemaError
        ``security=True`` (a running cluster does not trust fresh certificates) or unusable TLS files.

    Notes
    -----
    bigdl does not set the environment of workers it did not start.  Give
    them :data:`WORKER_ENVIRONMENT` where they start (``export
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864`` before
    ``dask worker``; the image in ``cluster/`` does), or a training loop on
    them runs at about half the speed it has in process (README, "Training
    speed on a cluster").  With that environment, also register
    ``client.register_plugin(bigdl.cluster.TrimMemory())`` once, so a worker
    near its memory limit gives its free heap back instead of pausing for good.
    """
    import dask
    from distributed import Client

    address = address or os.environ.get(SCHEDULER_ENV)
    if not address:
        raise ClusterConnectionError(
            "No scheduler address: pass connect('tcp://host:8786') or set the "
            f"{SCHEDULER_ENV} environment variable (or use start_local() for a cluster on this machine)."
        )
    if security is None and os.environ.get(TLS_DIR_ENV):
        security = os.environ[TLS_DIR_ENV]
    security = resolve_security(security, owner="connect", temporary_allowed=False)
    tls_hint = (f" The scheduler uses TLS: pass security= the directory of the cluster's certificates "
                f"(e.g. {DEFAULT_TLS_DIR!r}, or set {TLS_DIR_ENV}) or a distributed.Security."
                if address.startswith("tls://") else "")
    scheduler_before = dask.config.get("scheduler", None)
    try:
        try:
            client = Client(address, timeout=timeout, security=security, set_as_default=True)
        except BaseException:
            # distributed.Client sets dask's "scheduler" option to "dask.distributed"
            # before it connects and unsets it only when the half-built client is
            # garbage collected (distributed 2026.8; no upstream issue found): after
            # a failed connect, dask.compute would look for a client that does not
            # exist.  tests/cluster/test_security.py shows it.
            dask.config.set(scheduler=scheduler_before)
            raise
    except TypeError as error:
        if "ssl_context" not in str(error):  # distributed's way of saying: no TLS settings for tls://
            raise
        raise ClusterConnectionError(f"Could not connect to {address!r}: no TLS certificates given.{tls_hint}") \
            from None
    except (OSError, TimeoutError) as error:
        raise ClusterConnectionError(
            f"Could not reach the Dask scheduler at {address!r} within {timeout} ({error}). Is it running, "
            f"and is the address (host and port 8786 by default) reachable from here?{tls_hint}"
        ) from None
    from bigdl.cluster._dashboard import register_dashboard

    page = register_dashboard(client)  # the bigdl page on the dashboard: training and ingest progress
    if not quiet:
        print(f"Connected to {address}; dashboard: {client.dashboard_link}"
              + (f"  bigdl jobs: {page}" if page else ""), file=sys.stderr)
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
