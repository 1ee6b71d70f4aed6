"""XGBClassifier and XGBRegressor against in-memory xgboost on the same rows, on both training paths.

The parity stores are sorted by a feature that drives the target, so every
chunk covers one range of it: the cluster path's workers each see a
different part of the distribution (their quantile sketches are merged) and
the external path's iterator meets the ranges one chunk at a time.
"""

from __future__ import annotations

import logging
import pickle
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import xgboost
from sklearn.utils.estimator_checks import parametrize_with_checks

import bigdl
from bigdl.errors import ParameterError, SchemaError
from bigdl.estimators import XGBClassifier, XGBRegressor
from bigdl.estimators import _xgb
from bigdl.loaders._predict import predict_blocks

from conftest import split_numpy

# Distributed XGBoost merges the workers' quantile sketches and sums their histograms, so its cut points
# and hence its trees may differ slightly from a single node's on the same rows (XGBoost's docs say as
# much for its distributed training); the external path merges one sketch per chunk. Both are held to
# within half a point of test accuracy and 0.01 of test R2 of in-memory xgboost hist.
ACCURACY_TOLERANCE = 0.005
R2_TOLERANCE = 0.01
SMALL = dict(n_estimators=100, max_depth=6, learning_rate=0.3, max_bin=256, random_state=0)


@pytest.fixture(autouse=True)
def _one_xgboost_thread():
    """One OpenMP thread for XGBoost in this process (the workers use their own thread count, one).

    OpenMP threads spin while they wait: on a busy 2-core machine a fit
    with a thread per core runs many times slower than with one.
    """
    with xgboost.config_context(nthread=1):
        yield


@pytest.fixture(scope="module")
def sorted_classification(tmp_path_factory):
    """20k rows, 10 features, two classes, sorted by an informative feature; 70/10/20 split."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=20000, n_features=10, n_informative=5, n_redundant=2, class_sep=1.2,
                               random_state=0, shuffle=False)
    order = np.argsort(X[:, 0], kind="stable")
    return bigdl.store.from_arrays(X[order].astype(np.float32), y[order].astype(np.int64),
                                   store=tmp_path_factory.mktemp("xgb") / "cls.zarr", rows_per_chunk=2000,
                                   validation=0.1, test=0.2, seed=0)


@pytest.fixture(scope="module")
def sorted_regression(tmp_path_factory):
    """20k rows, 10 features (5 informative), sorted by the strongest feature; 70/10/20 split."""
    from sklearn.datasets import make_regression

    X, y, coef = make_regression(n_samples=20000, n_features=10, n_informative=5, noise=10.0, coef=True,
                                 random_state=0)
    order = np.argsort(X[:, int(np.argmax(np.abs(coef)))], kind="stable")
    return bigdl.store.from_arrays(X[order].astype(np.float32), y[order].astype(np.float32),
                                   store=tmp_path_factory.mktemp("xgb") / "reg.zarr", rows_per_chunk=2000,
                                   validation=0.1, test=0.2, seed=0)


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """95/5 classes, sorted by an informative feature."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=12000, n_features=8, n_informative=4, weights=[0.95], flip_y=0.02,
                               class_sep=0.6, random_state=3, shuffle=False)
    order = np.argsort(X[:, 1], kind="stable")
    return bigdl.store.from_arrays(X[order].astype(np.float32), y[order].astype(np.int64),
                                   store=tmp_path_factory.mktemp("xgb") / "imbalanced.zarr", rows_per_chunk=2000,
                                   validation=0.1, test=0.2, seed=0)


# ------------------------------------------------------------------ parity with in-memory xgboost
@pytest.mark.parametrize("memory", ["cluster", "external"])
def test_classifier_matches_in_memory_xgboost(sorted_classification, cluster_client, memory, caplog):
    ds = sorted_classification
    X_train, y_train = split_numpy(ds, "train")
    X_test, y_test = split_numpy(ds, "test")
    reference = xgboost.XGBClassifier(tree_method="hist", n_jobs=1, **SMALL).fit(X_train, y_train)
    caplog.set_level(logging.INFO, logger="bigdl.estimators")
    with cluster_client.as_current():
        model = XGBClassifier(memory=memory, **SMALL).fit(ds)
        ours = model.score(ds)
    theirs = reference.score(X_test, y_test)
    print(f"classifier memory={memory}: bigdl {ours:.4f}, in-memory xgboost {theirs:.4f}")
    assert model.memory_ == memory
    assert theirs > 0.9
    assert abs(ours - theirs) <= ACCURACY_TOLERANCE, (ours, theirs)
    assert list(model.classes_) == [0, 1] and model.n_features_in_ == 10
    assert model.booster_.num_boosted_rounds() == 100 and model.best_iteration_ == 99
    where = "xgboost.dask on 2 workers" if memory == "cluster" else "in one task on a worker"
    assert any(where in record.getMessage() and f"memory={memory!r} was asked for" in record.getMessage()
               for record in caplog.records if record.name == "bigdl.estimators")


@pytest.mark.parametrize("memory", ["cluster", "external"])
def test_regressor_matches_in_memory_xgboost(sorted_regression, cluster_client, memory):
    ds = sorted_regression
    X_train, y_train = split_numpy(ds, "train")
    X_test, y_test = split_numpy(ds, "test")
    reference = xgboost.XGBRegressor(tree_method="hist", n_jobs=1, **SMALL).fit(X_train, y_train)
    with cluster_client.as_current():
        model = XGBRegressor(memory=memory, **SMALL).fit(ds)
        ours = model.score(ds)
    theirs = reference.score(X_test, y_test)
    print(f"regressor memory={memory}: bigdl {ours:.4f}, in-memory xgboost {theirs:.4f}")
    assert model.memory_ == memory
    assert theirs > 0.9
    assert abs(ours - theirs) <= R2_TOLERANCE, (ours, theirs)


def test_auto_picks_external_memory_when_the_split_does_not_fit(classification_store, cluster_client, caplog,
                                                                monkeypatch):
    caplog.set_level(logging.INFO, logger="bigdl.estimators")
    with cluster_client.as_current():
        roomy = XGBClassifier(n_estimators=5).fit(classification_store)
        monkeypatch.setattr(_xgb, "MEMORY_FRACTION", 1e-6)  # the workers' memory now holds ~2 KiB of training rows
        tight = XGBClassifier(n_estimators=5).fit(classification_store)
    assert roomy.memory_ == "cluster" and tight.memory_ == "external"
    lines = [record.getMessage() for record in caplog.records if record.name == "bigdl.estimators"]
    assert len(lines) == 2, lines
    assert "in cluster memory (xgboost.dask on 2 workers)" in lines[0] and "under 33.3% of" in lines[0]
    assert lines[1].startswith("XGBClassifier trains from external memory (ExtMemQuantileDMatrix fed one store "
                               "chunk at a time, in one task on a worker): the training rows take 0.1 MiB, not "
                               "under 0.0001% of the 2 workers' free memory (memory limits minus what they hold) ("), \
        lines[1]
    # the free memory is the limits less what the worker processes hold now
    free = float(lines[1].rsplit("(", 1)[1].split(" MiB")[0])
    workers = cluster_client.scheduler_info(n_workers=-1)["workers"].values()
    limits = sum(info["memory_limit"] for info in workers) / 2 ** 20
    held = sum(info["metrics"]["memory"] for info in workers) / 2 ** 20
    assert 0 < free < limits and abs(free - (limits - held)) < 200


def test_a_cluster_fit_that_loses_a_worker_goes_on_from_external_memory(classification_store, cluster_client,
                                                                        caplog, monkeypatch):
    def dies(*args, **kwargs):  # xgboost.dask's own words when a worker it trains on dies
        raise ValueError("Invalid worker address: tcp://127.0.0.1:1, expecting tcp://127.0.0.1:2. This is likely "
                         "caused by one of the workers died and Dask re-scheduled a different one. Resilience is "
                         "not yet supported.")

    monkeypatch.setattr(_xgb, "_train_dask", dies)
    caplog.set_level(logging.INFO, logger="bigdl.estimators")
    with cluster_client.as_current():
        model = XGBClassifier(n_estimators=5).fit(classification_store)
        reference = XGBClassifier(n_estimators=5, memory="external").fit(classification_store)
        with pytest.raises(ValueError, match="Resilience is not yet supported"):
            XGBClassifier(n_estimators=5, memory="cluster").fit(classification_store)  # asked for: no fallback
    assert model.memory_ == "external"
    assert any("xgboost.dask lost a worker" in record.getMessage() for record in caplog.records)
    np.testing.assert_array_equal(model.predict(classification_store).compute(),
                                  reference.predict(classification_store).compute())


def test_without_a_client_both_paths_train_in_this_process(classification_store, caplog):
    caplog.set_level(logging.INFO, logger="bigdl.estimators")
    in_memory = XGBClassifier(n_estimators=20).fit(classification_store)
    external = XGBClassifier(n_estimators=20, memory="external").fit(classification_store)
    assert in_memory.memory_ == "in-memory" and external.memory_ == "external"
    lines = [record.getMessage() for record in caplog.records if record.name == "bigdl.estimators"]
    assert "in this process's memory (no Dask client)" in lines[0]
    assert "one store chunk at a time, in this process" in lines[1]
    X_test, y_test = split_numpy(classification_store, "test")
    assert in_memory.score(X_test, y_test) > 0.85
    assert abs(in_memory.score(classification_store) - external.score(classification_store)) <= ACCURACY_TOLERANCE


@pytest.fixture(scope="module")
def gappy_store(tmp_path_factory):
    """8 chunks of 500 rows: chunk 2 holds only test rows, chunk 5 only validation rows."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4000, 5)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    codes = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=4000, p=[0.7, 0.1, 0.2])
    codes[1000:1500], codes[2500:3000] = 2, 1
    return bigdl.store.from_arrays(X, y, store=tmp_path_factory.mktemp("xgb") / "gappy.zarr", rows_per_chunk=500,
                                   split_codes=codes)


@pytest.mark.parametrize("memory", ["cluster", "external"])
def test_chunks_without_rows_of_the_split_are_skipped(gappy_store, cluster_client, memory, monkeypatch):
    ds = gappy_store
    assert ds.view.chunk_counts("train")[[2, 5]].tolist() == [0, 0]
    read = []
    original = _xgb._StoreChunks.read

    def watched(self, position):
        read.append((self.split, self.chunks[position]))
        return original(self, position)

    monkeypatch.setattr(_xgb._StoreChunks, "read", watched)
    X_train, y_train = split_numpy(ds, "train")
    reference = xgboost.XGBClassifier(tree_method="hist", n_estimators=30, n_jobs=1, random_state=0,
                                      early_stopping_rounds=3).fit(X_train, y_train,
                                                                   eval_set=[split_numpy(ds, "validation")],
                                                                   verbose=False)
    if memory == "cluster":  # xgboost.dask on the workers: the empty blocks are left out of its matrix
        with cluster_client.as_current():
            model = XGBClassifier(n_estimators=30, early_stopping_rounds=3, memory=memory).fit(ds)
    else:  # external memory in this process, so the reads can be watched
        model = XGBClassifier(n_estimators=30, early_stopping_rounds=3, memory=memory).fit(ds)
        assert {chunk for split, chunk in read if split == "train"} == {0, 1, 3, 4, 6, 7}
        assert {chunk for split, chunk in read if split == "validation"} == set(range(8)) - {2}
    X_test, y_test = split_numpy(ds, "test")
    assert abs(model.score(ds) - reference.score(X_test, y_test)) <= ACCURACY_TOLERANCE
    assert model.best_iteration_ <= 29


# ------------------------------------------------------------------ early stopping, class weights
@pytest.mark.parametrize("memory", ["cluster", "external"])
def test_early_stopping_on_the_validation_split(tmp_path, cluster_client, memory):
    """Noisy labels and deep, fast-learning trees overfit within a few rounds."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 6)).astype(np.float32)
    y = ((X[:, 0] + rng.normal(scale=1.5, size=6000)) > 0).astype(np.int64)
    ds = bigdl.store.from_arrays(X, y, store=tmp_path / "noisy.zarr", rows_per_chunk=1000, validation=0.2, test=0.2,
                                 seed=0)
    with cluster_client.as_current():
        model = XGBClassifier(n_estimators=200, max_depth=10, learning_rate=0.5, early_stopping_rounds=5,
                              memory=memory).fit(ds)
    losses = model.evals_result_["validation"]["logloss"]
    assert model.best_iteration_ < 200 - 5
    assert len(losses) == model.best_iteration_ + 6  # the best round, then five that did not improve on it
    assert int(np.argmin(losses)) == model.best_iteration_
    assert model.booster_.num_boosted_rounds() == len(losses)
    # Predictions use the trees up to the best round.
    X_test, _ = split_numpy(ds, "test")
    best = model.booster_.inplace_predict(X_test, iteration_range=(0, model.best_iteration_ + 1))
    np.testing.assert_allclose(model.predict_proba(X_test)[:, 1], best, rtol=1e-6)


def test_early_stopping_on_an_eval_set_of_arrays():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 4)).astype(np.float32)
    y = ((X[:, 0] + rng.normal(scale=1.5, size=3000)) > 0).astype(np.int64)
    labels = np.array(["no", "yes"])[y]
    kwargs = dict(n_estimators=200, max_depth=10, learning_rate=0.5, early_stopping_rounds=5)
    on_numpy = XGBClassifier(**kwargs).fit(X[:2400], labels[:2400], eval_set=[(X[2400:], labels[2400:])])
    on_dask = XGBClassifier(**kwargs).fit(da.from_array(X[:2400], chunks=600), da.from_array(labels[:2400], chunks=600),
                                          eval_set=[(da.from_array(X[2400:], chunks=300), labels[2400:])])
    for model in (on_numpy, on_dask):
        assert model.best_iteration_ < 195 and list(model.classes_) == ["no", "yes"]
        assert set(model.predict(X[:50])) <= {"no", "yes"}
    assert on_numpy.best_iteration_ == on_dask.best_iteration_
    np.testing.assert_allclose(on_numpy.predict_proba(X), on_dask.predict_proba(X), rtol=1e-5)
    with pytest.raises(SchemaError, match="early_stopping_rounds needs validation samples"):
        XGBClassifier(**kwargs).fit(X, labels)
    with pytest.raises(SchemaError, match="labels the training targets do not"):
        XGBClassifier(**kwargs).fit(X, labels, eval_set=[(X[:10], np.array(["maybe"] * 10))])


@pytest.mark.parametrize("memory", ["cluster", "external"])
def test_balanced_class_weight_raises_minority_recall(imbalanced, memory):
    from sklearn.metrics import recall_score
    from sklearn.utils.class_weight import compute_sample_weight

    ds = imbalanced
    X_train, y_train = split_numpy(ds, "train")
    X_test, y_test = split_numpy(ds, "test")
    assert 0.03 < y_train.mean() < 0.08
    plain = XGBClassifier(n_estimators=50, max_depth=4, memory=memory).fit(ds)
    balanced = XGBClassifier(n_estimators=50, max_depth=4, class_weight="balanced", memory=memory).fit(ds)
    recall_plain = recall_score(y_test, plain.predict(ds, split="test").compute())
    recall_balanced = recall_score(y_test, balanced.predict(ds, split="test").compute())
    assert recall_balanced > recall_plain + 0.1, (recall_plain, recall_balanced)
    # The same weights given to in-memory xgboost as sample weights: the same model (identical here; the
    # tolerance leaves room for the external path's per-chunk sketches).
    reference = xgboost.XGBClassifier(tree_method="hist", n_estimators=50, max_depth=4, learning_rate=0.3,
                                      random_state=0, n_jobs=1).fit(X_train, y_train,
                                                          sample_weight=compute_sample_weight("balanced", y_train))
    np.testing.assert_allclose(balanced.predict_proba(X_test), reference.predict_proba(X_test), atol=1e-3)
    assert abs(recall_score(y_test, reference.predict(X_test)) - recall_balanced) <= 0.01


def test_class_weight_dict_names_labels_or_codes(imbalanced):
    by_code = XGBClassifier(n_estimators=10, class_weight={1: 10.0}).fit(imbalanced)
    by_label = XGBClassifier(n_estimators=10, class_weight={"1": 10.0}).fit(imbalanced)
    X_test, _ = split_numpy(imbalanced, "test")
    np.testing.assert_array_equal(by_code.predict_proba(X_test), by_label.predict_proba(X_test))
    with pytest.raises(ParameterError, match="class_weight names 7, which is not a class"):
        XGBClassifier(n_estimators=10, class_weight={7: 2.0}).fit(imbalanced)


# ------------------------------------------------------------------ prediction
def test_predictions_agree_on_store_dask_and_numpy_without_a_large_graph(classification_store, cluster_client):
    ds = classification_store
    X_test, y_test = split_numpy(ds, "test")
    model = XGBClassifier(n_estimators=200, max_depth=8).fit(ds)  # in this process: the predictions matter here
    with cluster_client.as_current():
        function = model._function("predict_proba")
        model_bytes = len(pickle.dumps(function))
        # Below the model's size: a graph that embedded the booster would trip it.
        threshold = model_bytes // 2
        assert threshold > 100_000
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": threshold}):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                from_store = model.predict(ds, split="test").compute()
                proba_store = model.predict_proba(ds, split="test").compute()
                X_lazy = ds.arrays("test")[0]  # a dask array (not a store) whose graph holds no data
                from_dask = model.predict(X_lazy).compute()
                proba_dask = model.predict_proba(X_lazy).compute()
                score = model.score(ds)
            assert not [str(item.message) for item in caught if "large graph" in str(item.message)]
            with pytest.warns(UserWarning, match="Sending large graph"):  # the check is sharp enough to see it
                predict_blocks(function, X_lazy, tail=(3,)).compute()
        from_dask_of_numpy = model.predict(da.from_array(X_test, chunks=(300, -1))).compute()
    from_numpy, proba_numpy = model.predict(X_test), model.predict_proba(X_test)
    assert isinstance(from_numpy, np.ndarray)
    np.testing.assert_array_equal(from_store, from_numpy)
    np.testing.assert_array_equal(from_dask, from_numpy)
    np.testing.assert_array_equal(from_dask_of_numpy, from_numpy)
    np.testing.assert_allclose(proba_store, proba_numpy, rtol=1e-6)
    np.testing.assert_allclose(proba_dask, proba_numpy, rtol=1e-6)
    np.testing.assert_allclose(proba_numpy.sum(axis=1), 1.0, rtol=1e-5)
    assert score == pytest.approx(float((from_numpy == y_test).mean()))
    # Threaded scheduler (no client): the booster goes into the graph as a small callable.
    lazy = model.predict_proba(ds, split="test")
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), proba_numpy, rtol=1e-6)


def test_regressor_predicts_chunk_by_chunk_and_pickles(regression_store):
    ds = regression_store
    model = XGBRegressor(n_estimators=50).fit(ds)
    X_test, y_test = split_numpy(ds, "test")
    lazy = model.predict(ds, split="test")
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), model.predict(X_test), rtol=1e-6)
    assert model.score(ds) > 0.9 and model.score(ds, split="train") > model.score(ds)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(X_test), model.predict(X_test))
    assert model.score(X_test, y_test) == pytest.approx(model.score(ds))


def test_dask_arrays_train_like_their_store(classification_store):
    ds = classification_store
    X, y = ds.arrays("train")
    from_store = XGBClassifier(n_estimators=20).fit(ds)
    from_arrays = XGBClassifier(n_estimators=20).fit(X, y)
    external = XGBClassifier(n_estimators=20, memory="external").fit(X, y)
    X_test, _ = split_numpy(ds, "test")
    np.testing.assert_allclose(from_arrays.predict_proba(X_test), from_store.predict_proba(X_test), rtol=1e-6)
    assert external.memory_ == "external"
    assert (external.predict(X_test) == from_store.predict(X_test)).mean() > 0.98


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("options, message", [
    ({"n_estimators": 0}, "The 'n_estimators' parameter of XGBClassifier must be an int in the range [1, inf). "
                          "Got 0 instead."),
    ({"learning_rate": 0.0}, "The 'learning_rate' parameter of XGBClassifier must be a float in the range "
                             "(0.0, 1.0]. Got 0.0 instead."),
    ({"max_bin": True}, "The 'max_bin' parameter of XGBClassifier must be an int in the range [2, inf). Got True "
                        "instead."),
    ({"memory": "disk"}, "The 'memory' parameter of XGBClassifier must be a str among {'auto', 'cluster', "
                         "'external'}. Got 'disk' instead."),
    ({"tree_method": "exact"}, "The 'tree_method' parameter of XGBClassifier must be a str among {'hist'}. Got "
                               "'exact' instead."),
    ({"split": "training"}, "The 'split' parameter of XGBClassifier must be a str among {'train', 'validation', "
                            "'test', 'all'}. Got 'training' instead."),
    ({"early_stopping_rounds": 0}, "The 'early_stopping_rounds' parameter of XGBClassifier must be an int in the "
                                   "range [1, inf) or None. Got 0 instead."),
    ({"class_weight": "even"}, "The 'class_weight' parameter of XGBClassifier must be None, a str among "
                               "{'balanced'} or an instance of 'collections.abc.Mapping'. Got 'even' instead."),
    ({"xgb_params": {"eta": 0.1}}, "The 'xgb_params' parameter of XGBClassifier must be a dict without 'eta' (set "
                                   "it with the 'learning_rate' parameter). Got {'eta': 0.1} instead."),
    ({"xgb_params": {"objective": "multi:softmax"}}, "The 'xgb_params' parameter of XGBClassifier must be a dict "
                                                     "without 'objective' (XGBClassifier sets binary:logistic or "
                                                     "multi:softprob from the classes). Got {'objective': "
                                                     "'multi:softmax'} instead."),
])
def test_parameter_errors_name_the_parameter(classification_store, options, message):
    with pytest.raises(ParameterError) as caught:
        XGBClassifier(**options).fit(classification_store)
    assert str(caught.value) == message


def test_errors(classification_store, regression_store):
    with pytest.raises(SchemaError, match="needs a classification store"):
        XGBClassifier(n_estimators=2).fit(regression_store)
    with pytest.raises(SchemaError, match="needs a regression store"):
        XGBRegressor(n_estimators=2).fit(classification_store)
    with pytest.raises(SchemaError, match="has none; write it with validation="):
        XGBRegressor(n_estimators=2, early_stopping_rounds=2).fit(regression_store)
    with pytest.raises(SchemaError, match="eval_set= is for array input"):
        XGBClassifier(n_estimators=2).fit(classification_store, eval_set=[(np.zeros((2, 6)), np.zeros(2))])
    with pytest.raises(ParameterError, match="'eval_set' parameter of XGBClassifier"):
        XGBClassifier(n_estimators=2).fit(np.zeros((4, 2)), [0, 1, 0, 1], eval_set=(np.zeros((2, 2)), [0, 1]))
    with pytest.raises(SchemaError, match="got float targets"):
        XGBClassifier(n_estimators=2).fit(da.zeros((4, 2)), da.zeros(4))
    with pytest.raises(ValueError, match="one class"):
        XGBClassifier(n_estimators=2).fit(np.zeros((4, 2)), [1, 1, 1, 1])
    assert XGBRegressor(n_estimators=2, xgb_params={"objective": "reg:absoluteerror"}).fit(
        np.arange(8.0).reshape(4, 2), np.arange(4.0)).booster_.num_boosted_rounds() == 2
    model = XGBClassifier(n_estimators=2).fit(classification_store)
    with pytest.raises(SchemaError, match="X has 4 features, but XGBClassifier is expecting 6 features"):
        model.predict(np.zeros((3, 4)))
    with pytest.raises(SchemaError, match="X has 4 features, but XGBClassifier is expecting 6 features"):
        model.predict(da.zeros((3, 4)))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        XGBClassifier().predict(np.zeros((3, 6)))


# ------------------------------------------------------------------ scikit-learn's contract
@parametrize_with_checks([XGBClassifier(n_estimators=10), XGBRegressor(n_estimators=10)])
def test_scikit_learn_estimator_contract(estimator, check):
    check(estimator)


def test_an_external_fit_that_cannot_fit_any_worker_is_refused_before_it_runs(classification_store, cluster_client,
                                                                                monkeypatch):
    # the real sizes would fit; a billion bytes per row stands for rows no worker can hold
    real = _xgb.EXTERNAL_BYTES_PER_ROW
    monkeypatch.setattr(_xgb, "EXTERNAL_BYTES_PER_ROW", 10 ** 9)
    with cluster_client.as_current(), pytest.raises(SchemaError, match=r"cannot train from external memory on this "
                                                                       r"cluster: XGBoost keeps gradients.*more than "
                                                                       r"the roomiest worker has free"):
        XGBClassifier(n_estimators=2, memory="external").fit(classification_store)
    with cluster_client.as_current():  # the real per-row sizes fit the suite's workers
        monkeypatch.setattr(_xgb, "EXTERNAL_BYTES_PER_ROW", real)
        assert XGBClassifier(n_estimators=2, memory="external").fit(classification_store).memory_ == "external"


def test_the_external_memory_estimate_matches_what_a_fit_was_measured_to_hold():
    """The constants against measurements (3 classes, 20 float features, 256 bins): in process, 196 MiB above
    the process at 800,000 train rows and 303 MiB at 2,400,000; the boosting benchmark's 10.5M train rows were
    killed four times on 1 GiB workers holding about 300 MiB each, so the estimate must refuse them."""
    mib = 2 ** 20
    assert abs(_xgb.external_bytes(800_000, 3, 20) / mib - 196) < 0.25 * 196
    assert abs(_xgb.external_bytes(2_400_000, 3, 20) / mib - 303) < 0.25 * 303
    assert _xgb.external_bytes(10_499_323, 3, 20) > (1024 - 300) * mib
