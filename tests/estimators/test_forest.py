"""ChunkForest against scikit-learn's in-memory forests on the same data."""

from __future__ import annotations

import os
import pickle
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import recall_score
from sklearn.utils.estimator_checks import parametrize_with_checks

import bigdl
from bigdl.errors import ParameterError, SchemaError
from bigdl.estimators import ChunkForest, ChunkForestClassifier, ChunkForestRegressor, predict_to_store
from bigdl.estimators import _forest
from bigdl.loaders._predict import predict_blocks

from conftest import split_numpy


def test_classifier_matches_in_memory_forest(classification_store):
    ds = classification_store
    forest = ChunkForestClassifier(n_estimators=60, chunks_per_task=2, random_state=0).fit(ds)
    X_train, y_train = split_numpy(ds, "train")
    X_test, y_test = split_numpy(ds, "test")
    reference = RandomForestClassifier(n_estimators=60, random_state=0).fit(X_train, y_train)
    ours, theirs = forest.score(ds), reference.score(X_test, y_test)
    assert ours > 0.8
    assert abs(ours - theirs) < 0.04, (ours, theirs)
    assert len(forest.estimators_) == 60
    assert forest.n_groups_ == -(-ds.n_chunks // 2) and forest.chunks_per_task_ == 2
    assert list(forest.classes_) == [0, 1, 2]


def test_predictions_chunk_by_chunk_equal_the_merged_forest(classification_store):
    ds = classification_store
    forest = ChunkForest(n_estimators=12, random_state=3).fit(ds)
    predicted = forest.predict(ds, split="test")
    assert isinstance(predicted, da.Array)
    X_test, _ = split_numpy(ds, "test")
    np.testing.assert_array_equal(predicted.compute(), forest.forest_.predict(X_test))
    proba = forest.predict_proba(ds, split="test").compute()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(forest.predict(X_test), forest.forest_.predict(X_test))


def test_same_seed_same_forest(classification_store):
    first = ChunkForest(n_estimators=8, random_state=5).fit(classification_store)
    second = ChunkForest(n_estimators=8, random_state=5).fit(classification_store)
    X_test, _ = split_numpy(classification_store, "test")
    np.testing.assert_array_equal(first.predict_proba(X_test), second.predict_proba(X_test))


def test_chunks_missing_classes_are_aligned():
    """Each chunk holds two of the three classes; the merged forest knows all three."""
    rng = np.random.default_rng(0)
    pairs = [(0, 1), (1, 2), (0, 2)]
    y = np.concatenate([rng.choice(pair, size=1000) for pair in pairs])
    X = rng.normal(size=(3000, 3)).astype(np.float32)
    X[:, 0] += y * 4  # separable on feature 0
    forest = ChunkForestClassifier(n_estimators=9, chunks_per_task=1, random_state=0).fit(
        da.from_array(X, chunks=(1000, 3)), da.from_array(y, chunks=1000))
    assert list(forest.classes_) == [0, 1, 2]
    assert forest.forest_.n_classes_ == 3
    for index, tree in enumerate(forest.estimators_):
        values = tree.tree_.value[:, 0, :]
        assert values.shape[1] == 3
        absent = ({0, 1, 2} - set(pairs[index // 3])).pop()  # 3 trees per chunk, in chunk order
        assert np.all(values[:, absent] == 0), "a tree votes for a class its chunk never had"
    # Every sample is voted right by the two chunks that know its class.
    assert (forest.predict(X) == y).mean() > 0.95


def test_regressor_matches_in_memory_forest(regression_store):
    ds = regression_store
    forest = ChunkForestRegressor(n_estimators=40, chunks_per_task=2, random_state=0).fit(ds)
    X_train, y_train = split_numpy(ds, "train")
    X_test, y_test = split_numpy(ds, "test")
    reference = RandomForestRegressor(n_estimators=40, random_state=0).fit(X_train, y_train)
    assert forest.score(ds) > 0.9
    assert abs(forest.score(ds) - reference.score(X_test, y_test)) < 0.05


def test_merged_forest_pickles(classification_store, tmp_path):
    forest = ChunkForest(n_estimators=6).fit(classification_store)
    clone = pickle.loads(pickle.dumps(forest))
    X_test, _ = split_numpy(classification_store, "test")
    np.testing.assert_array_equal(clone.predict(X_test), forest.predict(X_test))


def test_errors(classification_store, regression_store):
    with pytest.raises(SchemaError, match="needs a classification store"):
        ChunkForestClassifier(n_estimators=2).fit(regression_store)
    with pytest.raises(SchemaError, match="needs a regression store"):
        ChunkForestRegressor(n_estimators=2).fit(classification_store)
    with pytest.raises(SchemaError, match="'n_estimators' parameter of ChunkForestClassifier"):
        ChunkForestClassifier(n_estimators=0).fit(classification_store)
    forest = ChunkForest(n_estimators=2).fit(classification_store)
    with pytest.raises(SchemaError, match="X has 4 features, but ChunkForest.* is expecting 6 features"):
        forest.predict(np.zeros((3, 4)))
    with pytest.raises(SchemaError, match="X has 4 features, but ChunkForest.* is expecting 6 features"):
        forest.predict(da.zeros((3, 4)))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ChunkForest().predict(np.zeros((3, 6)))


def test_runs_on_the_cluster(classification_store, cluster_client):
    with cluster_client.as_current():
        forest = ChunkForest(n_estimators=8, random_state=2).fit(classification_store)
    local = ChunkForest(n_estimators=8, random_state=2).fit(classification_store)
    X_test, _ = split_numpy(classification_store, "test")
    np.testing.assert_array_equal(forest.predict_proba(X_test), local.predict_proba(X_test))


def test_store_chunks_and_dask_blocks_give_the_same_forest(classification_store, client):
    """Store input is read chunk by chunk through the sample view; dask blocks of the same rows train the same trees."""
    ds = classification_store
    X, y = ds.arrays("train")
    X, y = X.compute(), y.compute()
    sizes = ds.view.chunk_counts("train")
    blocks = tuple(int(size) for size in sizes if size > 0)
    from_store = ChunkForest(n_estimators=9, chunks_per_task=2, random_state=5).fit(ds)
    from_blocks = ChunkForest(n_estimators=9, chunks_per_task=2, random_state=5).fit(
        da.from_array(X, chunks=(blocks, -1)), da.from_array(y, chunks=(blocks,)))
    X_test, _ = split_numpy(ds, "test")
    assert from_store.n_groups_ == from_blocks.n_groups_ == -(-len(blocks) // 2)
    np.testing.assert_array_equal(from_store.predict_proba(X_test), from_blocks.predict_proba(X_test))
    lazy = from_store.predict_proba(ds, split="test")
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), from_store.predict_proba(X_test))


@pytest.mark.parametrize("options, message", [
    ({"n_estimators": 0}, "The 'n_estimators' parameter of ChunkForestClassifier must be an int in the range "
                          "[1, inf). Got 0 instead."),
    ({"chunks_per_task": True}, "The 'chunks_per_task' parameter of ChunkForestClassifier must be an int in the "
                                "range [1, inf) or a str among {'auto'}. Got True instead."),
    ({"class_weight": "even"}, "The 'class_weight' parameter of ChunkForestClassifier must be None, a str among "
                               "{'balanced'} or an instance of 'collections.abc.Mapping'. Got 'even' instead."),
    ({"split": "training"}, "The 'split' parameter of ChunkForestClassifier must be a str among {'train', "
                            "'validation', 'test', 'all'}. Got 'training' instead."),
    # scikit-learn's own table checks the tree parameters, on the client, under this class's name
    ({"max_depth": 0}, "The 'max_depth' parameter of ChunkForestClassifier must be an int in the range [1, inf) "
                       "or None. Got 0 instead."),
])
def test_parameter_errors_are_scikit_learns_messages(classification_store, options, message):
    with pytest.raises(ParameterError) as caught:
        ChunkForestClassifier(**options).fit(classification_store)
    assert str(caught.value) == message


def test_in_memory_input_follows_scikit_learn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    forest = ChunkForestClassifier(n_estimators=5).fit(X.tolist(), y.tolist())
    assert isinstance(forest.predict(X), np.ndarray) and forest.score(X, y) > 0.9
    X[::7, 1] = np.nan  # the trees handle missing values, as scikit-learn's forest does
    assert ChunkForestRegressor(n_estimators=5).fit(X, X[:, 0]).predict(X).shape == (200,)
    with pytest.raises(ValueError, match="Unknown label type"):
        ChunkForestClassifier(n_estimators=5).fit(X, X[:, 0])


@parametrize_with_checks([ChunkForestClassifier(n_estimators=5), ChunkForestRegressor(n_estimators=5)])
def test_scikit_learn_estimator_contract(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- groups as large as memory allows
@pytest.fixture(scope="module")
def sorted_problem(tmp_path_factory):
    """12,000 rows sorted by feature 0, which drives the target, as a store; the same rows shuffled as another."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12_000, 8)).astype(np.float32)
    y = (2 * X[:, 0] + np.sin(3 * X[:, 1]) + X[:, 2] * X[:, 3] + 0.5 * rng.normal(size=len(X)) > 0).astype(np.int64)
    order = np.argsort(X[:, 0])
    X, y = X[order], y[order]
    shuffle = rng.permutation(len(y))
    directory = tmp_path_factory.mktemp("sorted")
    options = dict(rows_per_chunk=1000, test=0.25, seed=3)
    return (bigdl.store.from_arrays(X, y, store=directory / "sorted.zarr", **options),
            bigdl.store.from_arrays(X[shuffle], y[shuffle], store=directory / "shuffled.zarr", **options))


def test_a_shuffled_store_is_as_accurate_as_the_in_memory_forest(sorted_problem):
    """Tolerance: 1 point of test accuracy; the default groups hold every training row here, so it is 0."""
    sorted_store, shuffled = sorted_problem
    X_train, y_train = split_numpy(shuffled, "train")
    X_test, y_test = split_numpy(shuffled, "test")
    in_memory = RandomForestClassifier(n_estimators=40, random_state=0).fit(X_train, y_train).score(X_test, y_test)
    forest = ChunkForestClassifier(n_estimators=40, random_state=0).fit(shuffled)
    assert forest.chunks_per_task_ == shuffled.n_chunks and forest.n_groups_ == 1
    assert abs(forest.score(shuffled) - in_memory) <= 0.01, (forest.score(shuffled), in_memory)
    # One chunk per task (the old default) on the sorted rows: each tree knows one slice of feature 0
    # (measured: 0.65 against 0.90).
    per_chunk = ChunkForestClassifier(n_estimators=40, chunks_per_task=1, random_state=0).fit(sorted_store)
    assert per_chunk.score(sorted_store) < in_memory - 0.1


def _memory(task: float | None, worker: float | None = None, slots: int = 1) -> dict:
    """What ``_worker_memory`` reports, for workers of the test's choosing (None: no limit)."""
    if worker is None and task is not None:
        worker = task * slots
    return {"task": task, "worker": worker, "slots": slots, "where": "the test's workers"}


def test_auto_groups_shrink_to_the_workers_memory(classification_store, monkeypatch, caplog):
    """Planned, not run out of: with less memory per task the default makes more, smaller groups."""
    roomy = ChunkForestClassifier(n_estimators=8, random_state=0).fit(classification_store)
    monkeypatch.setattr(_forest, "_worker_memory", lambda client: _memory(task=1_000_000, worker=10**9))
    with caplog.at_level("INFO", logger="bigdl.estimators"):
        tight = ChunkForestClassifier(n_estimators=8, random_state=0).fit(classification_store)
    [message] = [record.getMessage() for record in caplog.records if record.name.startswith("bigdl.estimators")]
    assert f"8 chunks in {tight.n_groups_} group(s) of up to {tight.chunks_per_task_} (auto)" in message
    assert roomy.n_groups_ == 1
    assert 1 < tight.n_groups_ < classification_store.n_chunks
    assert tight.memory_estimate_["task"] <= 1_000_000 / 3
    assert tight.chunks_per_task_ == -(-classification_store.n_chunks // tight.n_groups_)


def test_trees_do_not_depend_on_how_they_are_shared_out_between_tasks(classification_store, monkeypatch):
    monkeypatch.setattr(_forest, "_worker_memory", lambda client: _memory(task=None, worker=None, slots=1))
    one_task = ChunkForestClassifier(n_estimators=10, chunks_per_task=4, random_state=1).fit(classification_store)
    monkeypatch.setattr(_forest, "_worker_memory", lambda client: _memory(task=None, worker=None, slots=7))
    many_tasks = ChunkForestClassifier(n_estimators=10, chunks_per_task=4, random_state=1).fit(classification_store)
    assert (one_task.n_tasks_, many_tasks.n_tasks_) == (2, 8)  # 2 groups of 5 trees: 1 task each, or 4 + 4
    X_test, _ = split_numpy(classification_store, "test")
    np.testing.assert_array_equal(one_task.predict_proba(X_test), many_tasks.predict_proba(X_test))


def test_memory_errors_name_what_to_change(classification_store, monkeypatch):
    # A chunk of ~350 training rows of 6 float32 features is planned at about 113 kB.
    monkeypatch.setattr(_forest, "_worker_memory", lambda client: _memory(task=100_000))
    with pytest.raises(SchemaError, match="one chunk of .* rows needs about .* more than 60% of .*rows_per_chunk.*"
                                          "memory_limit.*max_depth, min_samples_leaf"):
        ChunkForestClassifier(n_estimators=8).fit(classification_store)
    monkeypatch.setattr(_forest, "_worker_memory", lambda client: _memory(task=400_000))
    with pytest.raises(ParameterError, match=r"The 'chunks_per_task' parameter of ChunkForestClassifier: 8 chunks "
                                             r".* more than 60% of .*Use chunks_per_task<=2 or 'auto'"):
        ChunkForestClassifier(n_estimators=8, chunks_per_task=8).fit(classification_store)
    with pytest.raises(ParameterError, match=r"The 'n_estimators' parameter of ChunkForestClassifier: 2 trees over "
                                             r"8 chunks need groups of 4 chunks, and at most 2 fit.*n_estimators>=4"):
        ChunkForestClassifier(n_estimators=2).fit(classification_store)


def _peak_rss(pid: int) -> int | None:
    """The peak resident memory of a local process (Linux's VmHWM; None elsewhere).

    Read here, not in the worker (which would import this module), and not
    ``ru_maxrss``: a worker spawned from the test process keeps, across exec,
    the peak of the fork it started as (the test process's own size).
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except OSError:
        return None


@pytest.fixture(scope="module")
def small_workers():
    """2 worker processes of 600 MiB with 6 threads each: 100 MiB a task.

    start_local makes it the default client; the autouse ``_no_default_client``
    fixture undoes that before each test, which then makes it current itself.
    """
    client = bigdl.cluster.start_local(n_workers=2, threads_per_worker=6, memory_limit="600MiB",
                                       dashboard_address=":0", quiet=True)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


def test_the_default_fits_small_workers_where_one_group_is_refused(small_workers, tmp_path):
    """38,400 training rows of 200 features: 1 chunk per task fits, all 12 chunks in one task would not."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(48_000, 200)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 > 0.5).astype(np.int64)
    ds = bigdl.store.from_arrays(X, y, store=tmp_path / "wide.zarr", rows_per_chunk=4000, test=0.2)
    limit = 600 * 2**20
    with small_workers.as_current():
        with pytest.raises(ParameterError, match=r"The 'chunks_per_task' parameter of ChunkForestClassifier: 12 "
                                                 r"chunks .* more than 60% of 100.00 MiB.*memory_limit of 600.00 "
                                                 r"MiB over its 6 thread"):
            ChunkForestClassifier(n_estimators=6, chunks_per_task=ds.n_chunks).fit(ds)
        workers = small_workers.run(os.getpid)
        forest = ChunkForestClassifier(n_estimators=6).fit(ds)
        peaks = {address: _peak_rss(pid) for address, pid in workers.items()}
        assert small_workers.run(os.getpid) == workers  # no worker was restarted
        accuracy = forest.score(ds)
    assert 1 < forest.n_groups_ < ds.n_chunks
    assert forest.memory_estimate_["task"] <= forest.memory_estimate_["task_memory"] / 3
    assert forest.memory_estimate_["task_memory"] == limit / 6
    # Below distributed's pause threshold (80%, where a worker stops running tasks); measured: about 285 MiB,
    # of which about 230 MiB are the worker's own imports (scikit-learn, zarr, dask).
    if None not in peaks.values():
        assert max(peaks.values()) < 0.8 * limit, {address: peak / 2**20 for address, peak in peaks.items()}
    assert accuracy > 0.8


# ---------------------------------------------------------------- class weights
def test_balanced_class_weight_is_the_train_split_s_and_raises_minority_recall(imbalanced_store):
    ds = imbalanced_store
    counts = ds.class_counts("train")
    balanced = counts.sum() / (2 * counts)
    options = dict(n_estimators=30, chunks_per_task=2, min_samples_leaf=5, random_state=0)
    plain = ChunkForestClassifier(**options).fit(ds)
    weighted = ChunkForestClassifier(**options, class_weight="balanced").fit(ds)
    np.testing.assert_array_equal(weighted.class_weight_, balanced)
    # Every group's forest got the split's weights (never a balance of its own chunks).
    assert weighted.forest_.class_weight == {0: balanced[0], 1: balanced[1]}
    assert weighted.n_groups_ == ds.n_chunks // 2 and plain.class_weight_ is None
    X_test, y_test = split_numpy(ds, "test")
    # Measured: 0.02 unweighted, 0.45 balanced (92 minority test rows).
    assert recall_score(y_test, weighted.predict(X_test)) > recall_score(y_test, plain.predict(X_test)) + 0.2


def test_one_group_grows_scikit_learns_forest(imbalanced_store, monkeypatch):
    """All rows in one group: the trees are RandomForestClassifier's with the same seed and class weights."""
    from sklearn.utils.class_weight import compute_class_weight

    ds = imbalanced_store
    X_train, y_train = split_numpy(ds, "train")
    weights = dict(enumerate(compute_class_weight("balanced", classes=np.array([0, 1]), y=y_train)))
    monkeypatch.setattr(_forest, "_worker_memory", lambda client: _memory(task=None, worker=None, slots=3))
    ours = ChunkForestClassifier(n_estimators=12, chunks_per_task="auto", class_weight="balanced",
                                 random_state=4).fit(ds)
    theirs = RandomForestClassifier(n_estimators=12, class_weight=weights, random_state=4).fit(X_train, y_train)
    assert (ours.n_groups_, ours.n_tasks_) == (1, 3)
    X_test, _ = split_numpy(ds, "test")
    np.testing.assert_array_equal(ours.predict_proba(X_test), theirs.predict_proba(X_test))


def test_class_weight_of_arrays_is_keyed_by_label():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 3)).astype(np.float32)
    y = np.where(X[:, 0] > 1.0, 7, 3)
    forest = ChunkForestClassifier(n_estimators=4, class_weight={7: 5.0}, random_state=0).fit(
        da.from_array(X, chunks=200), da.from_array(y, chunks=200))
    assert forest.forest_.class_weight == {3: 1.0, 7: 5.0}
    np.testing.assert_array_equal(forest.class_weight_, [1.0, 5.0])
    theirs = RandomForestClassifier(n_estimators=4, class_weight={3: 1.0, 7: 5.0}, random_state=0).fit(X, y)
    np.testing.assert_array_equal(forest.predict_proba(X), theirs.predict_proba(X))
    with pytest.raises(ParameterError, match="class_weight names 5, which is not a class"):
        ChunkForestClassifier(n_estimators=4, class_weight={5: 2.0}).fit(X, y)


# ---------------------------------------------------------------- the forest enters a predict graph once
def test_predicting_on_a_cluster_sends_the_forest_once(classification_store, cluster_client, tmp_path):
    ds = classification_store
    forest = ChunkForest(n_estimators=50, random_state=0).fit(ds)  # 50 deep trees
    assert len(pickle.dumps(forest.forest_)) > 2**20
    X_test, y_test = split_numpy(ds, "test")
    with cluster_client.as_current(), dask.config.set({"distributed.admin.large-graph-warning-threshold": "1MB"}):
        with pytest.warns(UserWarning, match="Sending large graph"):  # the check works: a forest in the graph
            predict_blocks(forest.forest_.predict, ds, split="test").compute()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predicted = forest.predict(ds, split="test").compute()
            probabilities = forest.predict_proba(ds, split="test").compute()
            accuracy = forest.score(ds)
            metrics = forest.evaluate(ds)
            written = predict_to_store(forest, ds, tmp_path / "proba.zarr")
        future = forest._scattered[1]
        forest.predict(ds, split="test").compute()
        assert forest._scattered[1] is future  # scattered once for this client
    assert not [item for item in caught if "large graph" in str(item.message)], [str(w.message) for w in caught]
    np.testing.assert_array_equal(predicted, forest.forest_.predict(X_test))
    np.testing.assert_array_equal(probabilities, forest.forest_.predict_proba(X_test))
    np.testing.assert_allclose(split_numpy(written, "test")[0], probabilities, rtol=1e-6)
    assert accuracy == metrics["accuracy"] == forest.forest_.score(X_test, y_test)
    assert "_scattered" not in pickle.loads(pickle.dumps(forest)).__dict__
    # Without a client the graph carries the forest itself and runs anywhere.
    np.testing.assert_array_equal(forest.predict(ds, split="test").compute(scheduler="threads"), predicted)
