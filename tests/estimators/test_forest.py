"""ChunkForest against scikit-learn's in-memory forests on the same data."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from bigdl.errors import ParameterError, SchemaError
from bigdl.estimators import ChunkForest, ChunkForestClassifier, ChunkForestRegressor

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
    assert forest.n_tasks_ == -(-ds.n_chunks // 2)
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
    assert from_store.n_tasks_ == from_blocks.n_tasks_ == -(-len(blocks) // 2)
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
