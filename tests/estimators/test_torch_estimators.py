"""TorchClassifier / TorchRegressor: scikit-learn's contract, a plain torch loop as reference, stores, dask-ml."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

import bigdl
from bigdl.errors import SchemaError
from bigdl.estimators._torch import NotInitializedError, TorchClassifier, TorchRegressor, _epoch_seed
from bigdl.models import MLP

SMALL = dict(hidden=(8,), max_epochs=10, batch_size=32, lr=0.02)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The test machine is shared: one intra-op thread, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(n_samples=300, n_features=6, n_informative=3, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.5, random_state=0)
    return X.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=200, n_features=4, noise=0.1, random_state=0)
    return X.astype(np.float32), (y / y.std()).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory, classification):
    """The classification rows as a store: 5 chunks of 60 rows, 80/20 split."""
    X, y = classification
    return bigdl.store.from_arrays(X, y, store=tmp_path_factory.mktemp("torch") / "s.zarr", rows_per_chunk=60,
                                   test=0.2)


def _weights(model) -> list[torch.Tensor]:
    return [tensor.detach().clone() for tensor in model.module_.state_dict().values()]


def _assert_same_weights(first, second) -> None:
    """``first`` an estimator or a plain module, ``second`` an estimator: equal tensors, bit for bit."""
    expected = _weights(first) if hasattr(first, "module_") else list(first.state_dict().values())
    actual = _weights(second)
    assert len(expected) == len(actual) > 0
    for a, b in zip(expected, actual):
        assert torch.equal(a, b)


def reference_fit(blocks, n_classes: int, *, hidden, epochs: int, batch_size: int, lr: float, seed: int = 0,
                  weight=None):
    """A plain torch loop: the same MLP, Adam, seeds and batch order the estimators document.

    Per epoch a generator seeded with ``SeedSequence([seed, epoch])`` permutes
    the blocks (when there are several), then each block's rows.  ``weight``:
    class weights of the cross-entropy.
    """
    weight = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    torch.manual_seed(seed)
    model = MLP(blocks[0][0].shape[1], list(hidden), n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        order = torch.randperm(len(blocks), generator=generator).tolist() if len(blocks) > 1 else [0]
        for index in order:
            X, y = (torch.from_numpy(np.asarray(part)) for part in blocks[index])
            rows = torch.randperm(len(X), generator=generator)
            for start in range(0, len(X), batch_size):
                batch = rows[start:start + batch_size]
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(X[batch].float()), y[batch].long(), weight=weight).backward()
                optimizer.step()
    return model.eval()


# ------------------------------------------------------------------ scikit-learn's contract
@parametrize_with_checks([TorchClassifier(**SMALL), TorchRegressor(**SMALL)])
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator, check", [
    (TorchRegressor(), "check_regressors_train"), (TorchClassifier(), "check_classifiers_train")])
def test_default_parameters_learn_scikit_learns_small_problems(estimator, check):
    """The defaults, not SMALL's: R2 > 0.5 (regressor) and accuracy > 0.83 (classifier) on 200-row tables."""
    from sklearn.utils import estimator_checks

    getattr(estimator_checks, check)(type(estimator).__name__, estimator)


# ------------------------------------------------------------------ training against references
def test_classifier_equals_a_plain_torch_loop(classification):
    X, y = classification
    model = TorchClassifier(hidden=(8,), max_epochs=3, batch_size=32, lr=0.01).fit(X, y)
    reference = reference_fit([(X, y)], 3, hidden=(8,), epochs=3, batch_size=32, lr=0.01)
    _assert_same_weights(reference, model)
    with torch.no_grad():
        expected = reference(torch.from_numpy(X)).argmax(1).numpy()
    np.testing.assert_array_equal(model.predict(X), expected)
    assert model.score(X, y) > 0.8  # chance is 1/3


def test_same_seed_same_weights_and_global_rng_untouched(classification):
    X, y = classification
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = TorchClassifier(**SMALL, random_state=7).fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)
    _assert_same_weights(first, TorchClassifier(**SMALL, random_state=7).fit(X, y))
    other = TorchClassifier(**SMALL, random_state=8).fit(X, y)
    assert not all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(other)))


def test_partial_fit_calls_lower_the_loss(classification):
    X, y = classification
    model = TorchClassifier(hidden=(8,), batch_size=32, lr=0.01)
    for _ in range(6):
        model.partial_fit(X, y, classes=[0, 1, 2])
    assert model.n_epochs_ == 6
    assert model.loss_curve_[-1] < 0.7 * model.loss_curve_[0]
    assert model.loss_curve_ == sorted(model.loss_curve_, reverse=True)


def test_fit_with_max_epochs_equals_as_many_partial_fits(classification):
    X, y = classification
    fitted = TorchClassifier(**dict(SMALL, max_epochs=3)).fit(X, y)
    stepped = TorchClassifier(**SMALL)
    for _ in range(3):
        stepped.partial_fit(X, y)
    _assert_same_weights(fitted, stepped)


def test_warm_start_continues_training(classification):
    X, y = classification
    model = TorchClassifier(**dict(SMALL, max_epochs=2), warm_start=True).fit(X, y)
    model.fit(X, y)
    assert model.n_epochs_ == 4
    _assert_same_weights(TorchClassifier(**dict(SMALL, max_epochs=4)).fit(X, y), model)


def test_regressor_single_and_multi_output(regression):
    X, y = regression
    model = TorchRegressor(hidden=(16,), max_epochs=30, batch_size=32, lr=0.01).fit(X, y)
    assert model.score(X, y) > 0.9
    assert model.predict(X).shape == (len(X),) and model.predict(X).dtype == np.float64
    targets = np.stack([y, -y], axis=1)
    multi = TorchRegressor(hidden=(16,), max_epochs=30, batch_size=32, lr=0.01).fit(X, targets)
    assert multi.n_outputs_ == 2 and multi.predict(X).shape == (len(X), 2)
    assert multi.score(X, targets) > 0.9
    robust = TorchRegressor(hidden=(16,), max_epochs=30, batch_size=32, lr=0.01, loss="huber").fit(X, y)
    assert isinstance(robust._criterion, nn.HuberLoss) and robust.score(X, y) > 0.8


# ------------------------------------------------------------------ stores and dask
def test_store_fit_matches_numpy_rows(store):
    """Chunk-wise training on a store against the same train rows in memory.

    Predictions are not equal: a store's rows are shuffled chunk by chunk
    (chunk order, then rows within a chunk), so its mini-batches never mix
    chunks, while NumPy input is one block shuffled as a whole.  Both reach
    the same accuracy, and the store run equals, weight for weight, the plain
    torch loop over the same chunks in the same order.
    """
    X_train, y_train = (part.compute() for part in store.arrays("train"))
    X_test, y_test = (part.compute() for part in store.arrays("test"))
    options = dict(hidden=(8,), max_epochs=6, batch_size=32, lr=0.01)
    chunked = TorchClassifier(**options).fit(store)
    in_memory = TorchClassifier(**options).fit(X_train, y_train)
    assert list(chunked.classes_) == [0, 1, 2] and chunked.n_features_in_ == 6
    assert abs(chunked.score(store) - in_memory.score(X_test, y_test)) < 0.05
    assert chunked.score(store) == pytest.approx(chunked.score(X_test, y_test))
    X_lazy, y_lazy = store.arrays("train")
    blocks = [(xb.compute(), yb.compute()) for xb, yb in zip(X_lazy.blocks, y_lazy.blocks) if xb.shape[0]]
    reference = reference_fit(blocks, 3, epochs=6, **{k: options[k] for k in ("hidden", "batch_size", "lr")})
    _assert_same_weights(reference, chunked)


def test_single_chunk_dask_array_equals_numpy(classification):
    X, y = classification
    lazy = TorchClassifier(**SMALL).fit(da.from_array(X, chunks=(len(X), 3)), da.from_array(y))
    _assert_same_weights(TorchClassifier(**SMALL).fit(X, y), lazy)


def test_predict_on_dask_and_store_is_lazy_and_chunkwise(store, classification):
    X, y = classification
    model = TorchClassifier(**SMALL).fit(X, y)
    X_lazy = da.from_array(X, chunks=(70, 6))
    for method in ("predict", "predict_proba"):
        lazy = getattr(model, method)(X_lazy)
        assert isinstance(lazy, da.Array) and lazy.numblocks[0] == 5
        np.testing.assert_allclose(lazy.compute(), getattr(model, method)(X), rtol=1e-6)
    test_rows = store.arrays("test")[0]
    predicted = model.predict(store, split="test")
    assert isinstance(predicted, da.Array)
    np.testing.assert_array_equal(predicted.compute(), model.predict(test_rows.compute()))
    regressor = TorchRegressor(**SMALL).fit(X, np.stack([y, y], axis=1).astype(np.float32))
    assert regressor.predict(X_lazy).compute().shape == (len(X), 2)


def test_store_on_a_distributed_cluster_equals_threads(store, client):
    """Blocks are read by the cluster's workers; predict ships the pickled estimator to them."""
    import dask

    options = dict(SMALL, max_epochs=2)
    model = TorchClassifier(**options).fit(store)
    predicted = model.predict(store, split="test").compute()
    with dask.config.set(scheduler="threads"):
        local = TorchClassifier(**options).fit(store)
        np.testing.assert_array_equal(predicted, local.predict(store, split="test").compute())
    _assert_same_weights(local, model)


def test_regressor_on_a_store_and_the_wrong_kind_of_store(store, regression, tmp_path):
    X, y = regression
    regression_store = bigdl.store.from_arrays(X, y, store=tmp_path / "r.zarr", rows_per_chunk=50, test=0.2)
    model = TorchRegressor(hidden=(16,), max_epochs=20, batch_size=32, lr=0.01).fit(regression_store)
    assert model.score(regression_store) > 0.8
    assert model.predict(regression_store).shape == (len(X),)
    with pytest.raises(SchemaError, match="TorchRegressor needs a regression store"):
        TorchRegressor(**SMALL).fit(store)
    with pytest.raises(SchemaError, match="TorchClassifier needs a classification store"):
        TorchClassifier(**SMALL).fit(regression_store)


def test_dask_ml_incremental_drives_partial_fit(classification):
    from dask_ml.wrappers import Incremental

    X, y = classification
    X_lazy, y_lazy = da.from_array(X, chunks=100), da.from_array(y, chunks=100)
    model = Incremental(TorchClassifier(**SMALL), scoring="accuracy", shuffle_blocks=False)
    model.fit(X_lazy, y_lazy, classes=[0, 1, 2])
    assert model.estimator_.n_epochs_ == 3  # one partial_fit per block
    for _ in range(4):
        model.partial_fit(X_lazy, y_lazy, classes=[0, 1, 2])
    assert model.estimator_.n_epochs_ == 15
    assert model.score(X_lazy, y_lazy) > 0.8
    assert isinstance(model.predict(X_lazy), da.Array)


def test_bigdl_incremental_on_a_store(store):
    model = bigdl.estimators.Incremental(TorchClassifier(**SMALL), scoring="accuracy").fit(store)
    assert list(model.estimator_.classes_) == [0, 1, 2]  # from the store, though each block is seen alone
    assert model.score(store) > 0.5


# ------------------------------------------------------------------ pickling
def test_pickle_round_trip_keeps_predictions_and_training_state(classification):
    X, y = classification
    model = TorchClassifier(**SMALL).fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(copy.classes_, model.classes_)
    assert copy.get_params() == model.get_params()
    model.partial_fit(X, y)  # the optimizer's moments came along: both continue the same way
    copy.partial_fit(X, y)
    _assert_same_weights(model, copy)
    assert not hasattr(pickle.loads(pickle.dumps(TorchClassifier())), "module_")


def test_fitted_on_cuda_loads_on_a_cpu_machine(classification):
    X, y = classification
    model = TorchClassifier(**SMALL).fit(X, y)
    model.device_ = torch.device("cuda")  # as if fitted on a GPU; its state bytes are device-tagged only by torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: see test_cuda_fit_and_pickle")
    with pytest.warns(RuntimeWarning, match="CUDA is not available here; loading it on the CPU"):
        copy = pickle.loads(pickle.dumps(model))
    assert copy.device_.type == "cpu"
    model.device_ = torch.device("cpu")
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_and_pickle(classification):
    X, y = classification
    model = TorchClassifier(**SMALL, device="cuda").fit(X, y)
    assert next(model.module_.parameters()).is_cuda
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(copy.predict_proba(X), model.predict_proba(X))
    assert model.score(X, y) > 0.8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_class_weight_fit_evaluate_and_pickle(imbalanced):
    X, y = imbalanced
    model = TorchClassifier(**SMALL, device="cuda", class_weight="balanced").fit(X, y)
    assert model._criterion.weight.is_cuda
    copy = pickle.loads(pickle.dumps(model))
    assert copy._criterion.weight.is_cuda
    assert copy.evaluate(X, y) == pytest.approx(model.evaluate(X, y))
    model.partial_fit(X, y)  # evaluate left the training criterion on the GPU


# ------------------------------------------------------------------ custom modules and optimizers
def test_module_factory_and_optimizer_factory(classification):
    import functools

    X, y = classification
    linear = TorchClassifier(nn.Linear, max_epochs=2, optimizer=functools.partial(torch.optim.SGD, lr=1.0),
                             lr=0.05).fit(X, y)
    assert isinstance(linear.module_, nn.Linear) and linear.module_.out_features == 3
    assert linear.optimizer_.param_groups[0]["lr"] == 0.05  # lr overrides the factory's rate
    mlp = TorchClassifier(MLP, module_params={"hidden": [8], "activation": "tanh"}, max_epochs=1).fit(X, y)
    assert mlp.module_.hidden == [8]
    dropout = TorchClassifier(**SMALL, module_params={"dropout": 0.2}).fit(X, y)
    _assert_same_weights(dropout, TorchClassifier(**SMALL, module_params={"dropout": 0.2}).fit(X, y))


# ------------------------------------------------------------------ errors
def test_predicting_before_fit_says_how_to_fix_it(classification):
    with pytest.raises(NotInitializedError, match="not fitted yet: call fit"):
        TorchClassifier().predict(classification[0])
    assert issubclass(NotInitializedError, NotFittedError)


def test_wrong_feature_count(classification):
    X, y = classification
    model = TorchClassifier(**SMALL).fit(X, y)
    message = "X has 3 features, but TorchClassifier is expecting 6 features as input"
    with pytest.raises(SchemaError, match=message):
        model.predict(X[:, :3])
    with pytest.raises(SchemaError, match=message):
        model.partial_fit(X[:, :3], y)
    with pytest.raises(SchemaError, match=message):
        model.predict(da.from_array(X[:, :3]))


def test_classifier_refuses_float_targets(regression):
    X, y = regression
    with pytest.raises(SchemaError, match="Unknown label type: continuous.*use TorchRegressor"):
        TorchClassifier(**SMALL).fit(X, y)
    with pytest.raises(SchemaError, match="Unknown label type"):
        TorchClassifier(**SMALL).fit(da.from_array(X, chunks=50), da.from_array(y, chunks=50))


def test_labels_unseen_by_the_first_partial_fit(classification):
    X, y = classification
    model = TorchClassifier(**SMALL).partial_fit(X[y < 2], y[y < 2])
    with pytest.raises(SchemaError, match=r"labels \[2\] that are not among classes_ \[0, 1\].*classes="):
        model.partial_fit(X, y)
    with pytest.raises(SchemaError, match="differs from the classes_"):
        model.partial_fit(X, y, classes=[0, 1, 2])


@pytest.mark.parametrize("parameters, match", [
    ({"optimizer": "adamm"}, r"'optimizer' parameter of TorchClassifier must be a str among \{'adam', 'sgd'"),
    ({"batch_size": 0}, r"^The 'batch_size' parameter of TorchClassifier must be an int in the range \[1, inf\)\. "
                        "Got 0 instead.$"),
    ({"batch_size": True}, r"'batch_size' parameter of TorchClassifier .* Got True instead"),
    ({"max_epochs": 1.5}, r"'max_epochs' parameter of TorchClassifier must be an int in the range \[1, inf\)"),
    ({"lr": -0.1}, r"'lr' parameter .* must be a float in the range \(0.0, inf\) or None. Got -0.1 instead."),
    ({"loss": "mse"}, r"'loss' parameter of TorchClassifier must be a str among \{'cross_entropy'\}"),
    ({"hidden": (8, 0)}, "'hidden' parameter .* sequence of int >= 1"),
    ({"module": nn.Linear(6, 3)}, "not a built module"),
    ({"device": "gpu0"}, "'device' parameter"),
    ({"module_params": {"hidden": [4]}}, "either as hidden= or in module_params"),
    ({"class_weight": "auto"}, r"^The 'class_weight' parameter of TorchClassifier must be None, a str among "
                               r"\{'balanced'\} or an instance of 'collections.abc.Mapping'. Got 'auto' instead.$"),
    ({"class_weight": {7: 2.0}}, r"TorchClassifier: class_weight names 7, which is not a class"),
    ({"class_weight": {0: 2.0}, "loss": lambda output, target: output.sum()}, "it takes no class weights"),
])
def test_bad_parameters_are_named(classification, parameters, match):
    X, y = classification
    model = TorchClassifier(**parameters)  # __init__ only stores them
    with pytest.raises(SchemaError, match=match):
        model.fit(X, y)


def test_factory_with_the_wrong_signature(classification):
    X, y = classification

    def build(n_in, n_out):
        return nn.Linear(n_in, n_out)

    with pytest.raises(SchemaError, match=r"calls module\(in_features=, out_features=.*build failed"):
        TorchClassifier(build).fit(X, y)


# ------------------------------------------------------------------ class weights and evaluate
@pytest.fixture(scope="module")
def imbalanced():
    """1,000 rows, about 8% of class 1, overlapping class 0."""
    X, y = make_classification(n_samples=1000, n_features=5, n_informative=3, n_redundant=0, weights=[0.92],
                               class_sep=0.6, flip_y=0, random_state=2)
    return X.astype(np.float32), y.astype(np.int64)


def test_class_weight_equals_a_weighted_plain_torch_loop(imbalanced):
    from sklearn.utils.class_weight import compute_class_weight

    X, y = imbalanced
    options = dict(hidden=(8,), max_epochs=3, batch_size=32, lr=0.01)
    model = TorchClassifier(**options, class_weight="balanced").fit(X, y)
    weight = compute_class_weight("balanced", classes=np.unique(y), y=y)
    np.testing.assert_allclose(model.class_weight_, weight, rtol=1e-12)
    reference = reference_fit([(X, y)], 2, epochs=3, weight=weight,
                              **{k: options[k] for k in ("hidden", "batch_size", "lr")})
    _assert_same_weights(reference, model)
    as_dict = TorchClassifier(**options, class_weight=dict(zip([0, 1], weight))).fit(X, y)
    _assert_same_weights(model, as_dict)
    assert TorchClassifier(**options).fit(X, y).class_weight_ is None
    assert "class_weight" in model.get_params() and "class_weight" not in TorchRegressor().get_params()


def test_balanced_class_weight_raises_minority_recall(imbalanced):
    X, y = imbalanced
    recalls = {}
    for class_weight in (None, "balanced"):
        model = TorchClassifier(hidden=(16,), max_epochs=10, batch_size=64, class_weight=class_weight).fit(X, y)
        recalls[class_weight] = np.mean(model.predict(X[y == 1]) == 1)
    assert recalls["balanced"] > recalls[None] + 0.2


def test_class_weight_on_a_store_and_in_partial_fit(store, imbalanced):
    X, y = imbalanced
    with pytest.raises(SchemaError, match="partial_fit sees one block at a time.*pass a dict"):
        TorchClassifier(**SMALL, class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    stepped = TorchClassifier(**SMALL, class_weight={1: 5.0}).partial_fit(X, y, classes=[0, 1])
    np.testing.assert_array_equal(stepped.class_weight_, [1.0, 5.0])
    from_store = TorchClassifier(**SMALL, class_weight="balanced").partial_fit(store)  # the store knows its counts
    counts = store.class_counts("train")
    np.testing.assert_allclose(from_store.class_weight_, counts.sum() / (3 * counts))
    lazy = TorchClassifier(**SMALL, class_weight="balanced").fit(da.from_array(X, chunks=300),
                                                                 da.from_array(y, chunks=300))
    counts = np.bincount(y)
    np.testing.assert_allclose(lazy.class_weight_, len(y) / (2 * counts))


def test_class_weight_survives_pickling(imbalanced):
    X, y = imbalanced
    model = TorchClassifier(**SMALL, class_weight="balanced").fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.class_weight_, model.class_weight_)
    torch.testing.assert_close(copy._criterion.weight, model._criterion.weight)
    model.partial_fit(X, y)
    copy.partial_fit(X, y)
    _assert_same_weights(model, copy)


def test_evaluate_matches_scikit_learns_metrics(classification, store):
    from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score

    X, y = classification
    model = TorchClassifier(**dict(SMALL, max_epochs=2)).fit(X, y)
    metrics = model.evaluate(X, y)
    assert set(metrics) == {"loss", "accuracy", "balanced_accuracy", "roc_auc", "n_samples"}
    probabilities = model.predict_proba(X)
    assert metrics["accuracy"] == pytest.approx(model.score(X, y))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, model.predict(X)))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr"), abs=1e-4)
    assert metrics["loss"] == pytest.approx(log_loss(y, probabilities), rel=1e-5)
    assert metrics["n_samples"] == len(y)
    # A store: its test split, block by block, as the same rows in memory; dask arrays the same.
    X_test, y_test = (part.compute() for part in store.arrays("test"))
    chunked = model.evaluate(store)
    assert chunked == pytest.approx(model.evaluate(X_test, y_test), rel=1e-6)
    lazy = model.evaluate(da.from_array(X_test, chunks=20), da.from_array(y_test, chunks=20))
    assert lazy == pytest.approx(chunked)
    with pytest.raises(NotInitializedError, match="before evaluate"):
        TorchClassifier().evaluate(X, y)


def test_evaluate_binary_with_class_weights(imbalanced):
    from sklearn.metrics import log_loss, roc_auc_score

    X, y = imbalanced
    model = TorchClassifier(**SMALL, class_weight="balanced").fit(X, y)
    metrics = model.evaluate(X, y)
    probabilities = model.predict_proba(X)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, probabilities[:, 1]), abs=1e-4)
    expected = log_loss(y, probabilities, sample_weight=model.class_weight_[y])
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
