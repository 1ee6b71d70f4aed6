"""The embedded LocalCluster, connecting to a scheduler, and ingest running on real worker processes."""

from __future__ import annotations

import os
import socket
import time

import pytest

import bigdl
from bigdl.cluster import SCHEDULER_ENV
from bigdl.errors import ClusterConnectionError, SchemaError
from support import assert_same_store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- start_local
def test_start_local_gives_worker_processes(cluster_client):
    workers = cluster_client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert [worker["nthreads"] for worker in workers.values()] == [1, 1]
    pids = cluster_client.run(os.getpid)
    assert len(set(pids.values())) == 2
    assert os.getpid() not in pids.values()


def test_start_local_workers_get_the_worker_environment(cluster_client):
    """glibc's allocator settings under which training runs at full speed, and the slower profiler (issue 14.1)."""
    keys = sorted(bigdl.cluster.WORKER_ENVIRONMENT)
    seen = cluster_client.run(lambda: ({key: os.environ.get(key) for key in keys},
                                       __import__("dask").config.get("distributed.worker.profile.interval")))
    assert list(seen.values()) == [(bigdl.cluster.WORKER_ENVIRONMENT, "100ms")] * 2


def _without_users_values(monkeypatch):
    from bigdl.cluster import _local

    for key in bigdl.cluster.WORKER_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
        monkeypatch.setitem(_local._ENVIRON_AT_IMPORT, key, None)


def test_worker_environment_replaces_distributeds_trim_default(monkeypatch):
    _without_users_values(monkeypatch)
    assert bigdl.cluster.worker_environment() == bigdl.cluster.WORKER_ENVIRONMENT
    # A nanny of this process wrote distributed's default into os.environ before spawning: not the user's.
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert bigdl.cluster.worker_environment() == bigdl.cluster.WORKER_ENVIRONMENT


def test_workers_with_little_memory_a_thread_keep_less_heap(monkeypatch):
    """Below ROOMY_THREAD_MEMORY a thread, chunk-sized buffers stay mapped (a 600 MiB, 6-thread worker paused)."""
    _without_users_values(monkeypatch)
    roomy, small = bigdl.cluster.WORKER_ENVIRONMENT, bigdl.cluster.SMALL_WORKER_ENVIRONMENT
    assert int(small["MALLOC_MMAP_THRESHOLD_"]) < int(roomy["MALLOC_MMAP_THRESHOLD_"])
    assert bigdl.cluster.worker_environment(100 * 2**20) == small
    assert bigdl.cluster.worker_environment(bigdl.cluster.ROOMY_THREAD_MEMORY) == roomy
    assert bigdl.cluster.worker_environment(None) == roomy
    # The other variant, left in os.environ by a nanny of this process, is bigdl's, not the user's.
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", roomy["MALLOC_MMAP_THRESHOLD_"])
    assert bigdl.cluster.worker_environment(100 * 2**20) == small
    client = bigdl.cluster.start_local(n_workers=1, threads_per_worker=6, memory_limit="600MiB",
                                       dashboard_address=None, quiet=True)
    try:
        seen = client.run(lambda: {key: os.environ.get(key) for key in small})
        assert list(seen.values()) == [small]
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


def test_worker_environment_keeps_the_users_values(monkeypatch):
    import dask

    _without_users_values(monkeypatch)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert bigdl.cluster.worker_environment()["MALLOC_MMAP_THRESHOLD_"] == "1048576"
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 0}):
        assert bigdl.cluster.worker_environment()["MALLOC_TRIM_THRESHOLD_"] == "0"
    with dask.config.set({"distributed.nanny.environ": {"MALLOC_TRIM_THRESHOLD_": 1}}):
        assert bigdl.cluster.worker_environment()["MALLOC_TRIM_THRESHOLD_"] == "1"
    # Exported before bigdl was imported, even at distributed's default: the user's.
    from bigdl.cluster import _local

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setitem(_local._ENVIRON_AT_IMPORT, "MALLOC_TRIM_THRESHOLD_", "65536")
    assert bigdl.cluster.worker_environment()["MALLOC_TRIM_THRESHOLD_"] == "65536"


def test_the_guidance_for_other_clusters_gives_the_same_values():
    """README's and connect()'s advice for workers bigdl did not start names WORKER_ENVIRONMENT's values."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for key, value in bigdl.cluster.WORKER_ENVIRONMENT.items():
        assert f"{key}={value}" in readme
        assert f"{key}={value}" in bigdl.cluster.connect.__doc__
    assert "DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL=100ms" in readme


def test_start_local_keeps_a_profile_interval_the_user_set():
    import dask

    from bigdl.cluster._local import _worker_config

    assert _worker_config() == {"distributed": {"worker": {"profile": {"interval": "100ms"}}}}
    with dask.config.set({"distributed.worker.profile.interval": "20ms"}):
        assert _worker_config() == {}


def test_start_local_makes_a_default_client_and_prints_the_dashboard(capsys, tmp_path, sources, ingest_kwargs):
    from distributed import default_client, get_task_stream

    client = bigdl.cluster.start_local(n_workers=1, processes=False, dashboard_address=":0")
    try:
        assert default_client() is client
        assert "Dask dashboard: http" in capsys.readouterr().err
        # With no client= given, ingest goes to the default client.
        source, extra = sources["parquet"]
        with get_task_stream(client=client) as stream:
            bigdl.ingest.tabular(source, store=tmp_path / "s.zarr", **ingest_kwargs, **extra)
        assert any(str(task["key"]).startswith("bigdl-ingest-write") for task in stream.data)
    finally:
        client.close()
        client.cluster.close()


@pytest.mark.parametrize("kwargs", [{"n_workers": 0}, {"n_workers": 1.5}, {"threads_per_worker": 0}])
def test_start_local_rejects_bad_sizes(kwargs):
    with pytest.raises(SchemaError, match=r"parameter of start_local must be an int in the range \[1, inf\)\. Got "):
        bigdl.cluster.start_local(quiet=True, **kwargs)


# ---------------------------------------------------------------- ingest on the cluster
def test_ingest_on_worker_processes_equals_the_threaded_ingest(tmp_path, cluster_client, sources, ingest_kwargs):
    from distributed import get_task_stream

    source, extra = sources["csv"]
    threaded = bigdl.ingest.tabular(source, store=tmp_path / "threads.zarr", **ingest_kwargs, **extra)
    with cluster_client.as_current(), get_task_stream(client=cluster_client) as stream:
        distributed = bigdl.ingest.tabular(source, store=tmp_path / "cluster.zarr", **ingest_kwargs, **extra)
    keys = [str(task["key"]) for task in stream.data]
    n_read = len(bigdl.ingest.sources.plan_sources(source, blocksize=20_000).blocks)
    assert sum(key.startswith("bigdl-ingest-read-") for key in keys) == n_read > 1
    assert sum(key.startswith("bigdl-ingest-write-") for key in keys) == threaded.info()["chunks"]["n_chunks"] > 1
    assert len({task["worker"] for task in stream.data}) == 2  # both worker processes took part
    assert_same_store(distributed.path, threaded.path)


def test_ingest_with_an_explicit_client_that_is_not_the_default(tmp_path, cluster_client, sources, ingest_kwargs):
    # client= must be enough on its own: a script may hold several clients, or
    # one made with set_as_default=False.
    from distributed import get_task_stream

    source, extra = sources["csv"]
    with get_task_stream(client=cluster_client) as stream:
        ds = bigdl.ingest.tabular(source, store=tmp_path / "s.zarr", client=cluster_client, **ingest_kwargs,
                                  **extra)
    assert ds.n_samples == 3000
    assert any(str(task["key"]).startswith("bigdl-ingest-read-") for task in stream.data)


def test_task_error_on_a_worker_reaches_the_caller(tmp_path, cluster_client):
    # A file that passes planning but fails in a read task: a bad byte after the sampled head.
    path = tmp_path / "late.csv"
    lines = ["a,city,label"] + [f"{i},Oslo,{'xy'[i % 2]}" for i in range(90_000)] + ["1,Z\xfcrich,x"]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    assert path.stat().st_size > (1 << 20)
    with cluster_client.as_current(), pytest.raises(bigdl.errors.SourceError, match="encoding='latin-1'"):
        bigdl.ingest.tabular(path, target="label", store=tmp_path / "s.zarr", blocksize="256KB", progress=False)
    assert sorted(item.name for item in tmp_path.iterdir()) == ["late.csv"]


# ---------------------------------------------------------------- connect
def test_connect_without_an_address(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    with pytest.raises(ClusterConnectionError) as error:
        bigdl.cluster.connect()
    message = str(error.value)
    assert "No scheduler address" in message
    assert SCHEDULER_ENV in message and "start_local()" in message and "tcp://" in message
    assert isinstance(error.value, ConnectionError)


def test_connect_uses_the_environment_variable(monkeypatch, cluster_client, capsys):
    from distributed import default_client

    address = cluster_client.scheduler.address
    monkeypatch.setenv(SCHEDULER_ENV, address)
    client = bigdl.cluster.connect()
    try:
        assert client.scheduler.address == address
        assert len(client.scheduler_info()["workers"]) == 2
        assert default_client() is client
        assert f"Connected to {address}" in capsys.readouterr().err
    finally:
        client.close()


def test_connect_to_a_closed_port_fails_fast():
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.perf_counter()
    with pytest.raises(ClusterConnectionError) as error:
        bigdl.cluster.connect(address, timeout="1s", quiet=True)
    assert time.perf_counter() - started < 15
    message = str(error.value)
    assert address in message and "Is it running" in message
