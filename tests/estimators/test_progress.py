"""Progress bars of the estimators' long steps: they tick in the caller, on threads and on a LocalCluster.

Estimators take no progress flag; ``BIGDL_PROGRESS`` turns their bars on or
off (unset: only when stderr is a terminal).  A recording tqdm replaces
``tqdm.auto.tqdm`` and keeps each bar's label, count and total when it closes.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tqdm.auto
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier

from bigdl.estimators import ChunkForestClassifier, Incremental, XGBClassifier
from bigdl.runtime._tasks import progress_disabled


@pytest.fixture
def bars(monkeypatch):
    """The bars closed during the test: ``(desc, n, total, disabled)`` each, with ``BIGDL_PROGRESS=1``."""
    closed: list[tuple] = []

    class Recording(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            self._label = kwargs.get("desc")  # a disabled bar keeps no desc of its own
            super().__init__(*args, **kwargs)

        def close(self):
            if not getattr(self, "_recorded", False):
                self._recorded = True
                closed.append((self._label, self.n, self.total, bool(self.disable)))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    monkeypatch.setenv("BIGDL_PROGRESS", "1")
    return closed


def _scheduler(name, request):
    if name == "threads":
        return contextlib.nullcontext()
    return request.getfixturevalue("cluster_client").as_current()


@pytest.mark.parametrize("value, disabled", [("1", False), ("on", False), ("0", True), ("off", True),
                                             ("", None)])
def test_bigdl_progress_decides_when_no_flag_is_given(monkeypatch, value, disabled):
    monkeypatch.setenv("BIGDL_PROGRESS", value)
    assert progress_disabled() is disabled
    assert progress_disabled(True) is False and progress_disabled(False) is True


@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_incremental_passes_tick_on_threads_and_on_a_local_cluster(classification_store, bars, scheduler, request):
    ds = classification_store
    sgd = SGDClassifier(loss="log_loss", random_state=0)
    with _scheduler(scheduler, request):
        model = Incremental(clone(sgd), shuffle_blocks=False).fit(ds)
        model.partial_fit(ds)
    passes = [bar for bar in bars if bar[0] == "Incremental(SGDClassifier) pass"]
    assert len(passes) == 2
    n_blocks = len(ds.arrays("train")[0].chunks[0])
    for _, done, total, disabled in passes:
        assert not disabled
        assert done == total and total >= n_blocks  # threads count the pass's tasks, the cluster its blocks
        if scheduler == "distributed":
            assert total == n_blocks
    # The pass on the cluster is the same chain of partial_fit calls as a loop in memory.
    reference = clone(sgd)
    X, y = ds.arrays("train")
    for _ in range(2):
        for block_x, block_y in zip(X.blocks, y.blocks):
            reference.partial_fit(block_x.compute(), block_y.compute(), classes=np.arange(3))
    np.testing.assert_allclose(model.estimator_.coef_, reference.coef_, rtol=1e-6)


def test_incremental_bar_is_off_with_bigdl_progress_0(classification_store, bars, monkeypatch, cluster_client):
    monkeypatch.setenv("BIGDL_PROGRESS", "0")
    with cluster_client.as_current():
        Incremental(SGDClassifier(random_state=0)).fit(classification_store)
    assert [bar[3] for bar in bars if bar[0].startswith("Incremental")] == [True]


@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_chunk_forest_fit_ticks_per_task(classification_store, bars, scheduler, request):
    with _scheduler(scheduler, request):
        forest = ChunkForestClassifier(n_estimators=8, chunks_per_task=2, random_state=0).fit(classification_store)
    fits = [bar for bar in bars if bar[0] == "ChunkForestClassifier fit"]
    assert fits == [("ChunkForestClassifier fit", forest.n_tasks_, forest.n_tasks_, False)]


@pytest.mark.parametrize("where", ["in-process", "cluster", "external"])
def test_xgb_rounds_tick_in_the_caller(classification_store, bars, where, request):
    params = dict(n_estimators=7, max_depth=3, random_state=0)
    if where == "in-process":
        model = XGBClassifier(**params).fit(classification_store)
    else:
        with request.getfixturevalue("cluster_client").as_current():
            model = XGBClassifier(memory=where, **params).fit(classification_store)
        assert model.memory_ == where
    rounds = [bar for bar in bars if bar[0] == "XGBoost"]
    # On the cluster the caller's bar is ticked by rank 0's events; the workers' own bars never exist.
    assert rounds == [("XGBoost", 7, 7, False)]


@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_hyperband_ticks_once_per_finished_bracket(tmp_path, bars, scheduler, request):
    import bigdl
    from bigdl.estimators import HyperbandSearch

    # A store of its own: after the XGBoost tests above ran on the shared store on the cluster, a search there
    # failed with lost dependencies (the store's arrays' keys; not yet understood, see the stop's note).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    store = bigdl.store.from_arrays(X, (X[:, 0] > 0).astype(np.int64), store=tmp_path / "h.zarr",
                                    rows_per_chunk=250, validation=0.2, test=0.1, seed=0)
    grid = {"alpha": [1e-5, 1e-4, 1e-3, 1e-2], "penalty": ["l2", "l1"]}
    with _scheduler(scheduler, request):
        search = HyperbandSearch(SGDClassifier(), grid, max_iter=9, random_state=3).fit(store)
    brackets = len(search.metadata_["brackets"])
    assert brackets >= 2
    assert [bar for bar in bars if bar[0] == "Hyperband"] == [("Hyperband", brackets, brackets, False)]
