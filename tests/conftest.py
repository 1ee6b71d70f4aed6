"""Shared fixtures: one small generated table in every input format, and the clusters to run on.

The data is one deterministic pandas frame (numeric columns on very different
scales with missing values, two categorical columns, a class target and a
float target), written once per session as CSV, gzip CSV, Parquet, JSON lines
and a SQLite table, so tests can compare every reader against pandas and
scikit-learn on exactly the same rows.

The distributed cluster (2 worker processes, 1 thread each) is started once
per session and is *not* left as Dask's default client: tests on the local
threaded path must not be sent to it silently.
"""

from __future__ import annotations

import pytest

from support import BLOCKSIZE, DROP, FORMATS, ROWS_PER_CHUNK, TARGET, make_frame, write_source


# ---------------------------------------------------------------- data fixtures
@pytest.fixture(scope="session")
def frame():
    return make_frame()


@pytest.fixture(scope="session")
def sources(tmp_path_factory, frame) -> dict:
    """``{format: (source, extra kwargs)}`` for the same frame in every input format."""
    directory = tmp_path_factory.mktemp("sources")
    return {fmt: write_source(frame, directory, fmt) for fmt in FORMATS}


@pytest.fixture
def ingest_kwargs() -> dict:
    """Small chunks and blocks, so every ingest has several read and write tasks."""
    return dict(target=TARGET, drop=list(DROP), rows_per_chunk=ROWS_PER_CHUNK, blocksize=BLOCKSIZE,
                progress=False)


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory, sources):
    """One CSV ingest on the threaded scheduler, shared by read-only tests."""
    import bigdl

    store = tmp_path_factory.mktemp("reference") / "reference.zarr"
    source, extra = sources["csv"]
    _forget_default_client()
    return bigdl.ingest.tabular(source, store=store, target=TARGET, drop=list(DROP),
                                rows_per_chunk=ROWS_PER_CHUNK, blocksize=BLOCKSIZE, validation=0.1, test=0.2,
                                progress=False, **extra)


# ---------------------------------------------------------------- clusters
def _forget_default_client(client=None) -> None:
    """Stop ``client`` (or any client) from being Dask's default, without closing it.

    ``start_local`` and ``connect`` make their client the default, as users
    want; tests of the threaded path must not be routed to it.
    """
    from distributed.client import _del_global_client, _get_global_client

    clients = [client] if client is not None else []
    current = _get_global_client()
    while current is not None and current not in clients:
        clients.append(current)
        _del_global_client(current)
        current = _get_global_client()
    for item in clients:
        _del_global_client(item)
        if getattr(item, "_set_as_default", False):
            item._set_as_default = False
            config = getattr(item, "_set_config", None)
            if config is not None:
                with config:  # leaving it restores the dask config from before the client
                    pass


@pytest.fixture(scope="session")
def cluster_client():
    """A real LocalCluster: 2 worker processes with 1 thread each, started once.

    2 GiB each: once the explanation tests have run torch, captum, shap and
    xgboost on them, each worker process holds about 850 MiB of libraries and
    their caches, which with 1 GiB is past Dask's pause threshold (80%); a
    paused worker runs nothing, and the next test waited for it until the
    timeout (seen in a clean-clone CI run, in tests/ingest/test_images.py).
    """
    import bigdl

    client = bigdl.cluster.start_local(n_workers=2, threads_per_worker=1, memory_limit="2GiB",
                                       dashboard_address=":0", quiet=True)
    _forget_default_client(client)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


@pytest.fixture(params=["threads", "distributed"])
def client(request):
    """Where ingest runs: None (Dask's threaded scheduler) or the session's LocalCluster client.

    The cluster client is made current for the test, as ``start_local`` leaves
    it in a user's session.
    """
    if request.param == "threads":
        yield None
        return
    cluster_client = request.getfixturevalue("cluster_client")
    with cluster_client.as_current():
        yield cluster_client


@pytest.fixture(autouse=True)
def _no_default_client():
    """Every test starts and ends without a default distributed client."""
    from bigdl.runtime._tasks import active_client

    _forget_default_client()
    assert active_client() is None
    yield
    _forget_default_client()


# ---------------------------------------------------------------- stores for consumers
@pytest.fixture(scope="session")
def classification_store(tmp_path_factory):
    """3 classes, 6 features (3 informative), 4000 rows in chunks of 500, 70/10/20 split."""
    import numpy as np
    from sklearn.datasets import make_classification

    import bigdl

    X, y = make_classification(n_samples=4000, n_features=6, n_informative=3, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.5, random_state=0, shuffle=True)
    return bigdl.store.from_arrays(X.astype(np.float32), y.astype(np.int64),
                                   store=tmp_path_factory.mktemp("est") / "cls.zarr", rows_per_chunk=500,
                                   validation=0.1, test=0.2, seed=1)


@pytest.fixture(scope="session")
def regression_store(tmp_path_factory):
    """y = 3 x0 - 2 x1 + 0.5 x2^2 + noise, 3000 rows in chunks of 500, 80/20 split."""
    import numpy as np

    import bigdl

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4)).astype(np.float32)
    y = (3 * X[:, 0] - 2 * X[:, 1] + 0.5 * X[:, 2] ** 2 + rng.normal(scale=0.1, size=3000)).astype(np.float32)
    return bigdl.store.from_arrays(X, y, store=tmp_path_factory.mktemp("est") / "reg.zarr", rows_per_chunk=500,
                                   test=0.2, seed=1)
