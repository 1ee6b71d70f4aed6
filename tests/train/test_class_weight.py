"""Trainer(class_weight=): the weighted loss equals a plain torch loop's, lifts minority recall, travels and resumes.

The store is a 95/5 binary problem whose minority class overlaps the
majority: unweighted, the MLP learns to predict the majority only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bigdl
from bigdl.errors import CheckpointError, ParameterError
from bigdl.loaders.torch import ChunkLoader
from bigdl.models import MLP
from bigdl.preprocessing import resolve_class_weight
from bigdl.train import Trainer

SEED, BATCH_SIZE = 7, 64


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def imbalanced_store(tmp_path_factory):
    """6,000 rows, 5% of class 1 (shifted by 1.5 in two of four features), 500 rows per chunk, 60/10/30."""
    rng = np.random.default_rng(0)
    y = (rng.random(6000) < 0.05).astype(np.int64)
    X = rng.normal(size=(6000, 4)).astype(np.float32)
    X[y == 1, :2] += 1.5
    return bigdl.store.from_arrays(X, y, store=tmp_path_factory.mktemp("imbalanced") / "i.zarr",
                                   rows_per_chunk=500, validation=0.1, test=0.3, seed=0)


def new_trainer(ds, **options) -> Trainer:
    torch.manual_seed(0)
    settings = dict(epochs=2, batch_size=BATCH_SIZE, seed=SEED, on_cluster=False, progress=False)
    settings.update(options)
    return Trainer(MLP(ds.n_features, [16], ds.n_classes), **settings)


def balanced_weights(ds) -> np.ndarray:
    """scikit-learn's "balanced" weights of the train split's labels: the reference."""
    from sklearn.utils.class_weight import compute_class_weight

    y_train = ds.arrays("train")[1].compute()
    return compute_class_weight("balanced", classes=np.arange(ds.n_classes), y=y_train)


@pytest.fixture(scope="module")
def weighted_run(imbalanced_store):
    run = new_trainer(imbalanced_store, class_weight="balanced")
    run.fit(imbalanced_store)
    return run


def test_weighted_fit_equals_a_plain_torch_loop_with_weighted_cross_entropy(imbalanced_store, weighted_run):
    ds = imbalanced_store
    weight = balanced_weights(ds)
    np.testing.assert_allclose(weighted_run.class_weight_, weight, rtol=1e-12)
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
    loader = ChunkLoader(ds, "train", batch_size=BATCH_SIZE, shuffle=True, seed=SEED)  # the Trainer's batches
    torch.manual_seed(0)
    model = MLP(ds.n_features, [16], ds.n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    X_val, y_val = (torch.from_numpy(part.compute()) for part in ds.arrays("validation"))
    for epoch, entry in enumerate(weighted_run.history):
        loader.set_epoch(epoch)
        total, count = 0.0, 0
        for X, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(X), y)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * len(X), count + len(X)
        assert entry["train_loss"] == pytest.approx(total / count, rel=1e-6, abs=1e-7)
        with torch.no_grad():  # the validation loss is the weighted mean over the whole split
            assert entry["val_loss"] == pytest.approx(float(criterion(model(X_val), y_val)), rel=1e-5)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(weighted_run.model.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)


def test_balanced_weights_raise_minority_recall(imbalanced_store):
    ds = imbalanced_store
    y_test = ds.arrays("test")[1].compute()
    found = {}
    for class_weight in (None, "balanced"):
        run = new_trainer(ds, epochs=5, class_weight=class_weight)
        run.fit(ds)
        predicted = run.predict(ds, split="test").compute()
        found[class_weight] = (np.mean(predicted[y_test == 1] == 1), run.evaluate(ds, "test"))
    (plain_recall, plain), (weighted_recall, weighted) = found[None], found["balanced"]
    # Measured: minority recall 0.00 unweighted, 0.87 balanced; balanced accuracy 0.50 -> 0.85.
    assert plain_recall < 0.2 and weighted_recall > 0.7
    assert weighted["balanced_accuracy"] > plain["balanced_accuracy"] + 0.2
    assert plain["accuracy"] > weighted["accuracy"]  # what the weights trade away on a 95/5 split


def test_evaluate_gives_the_weighted_mean_loss(imbalanced_store, weighted_run):
    from sklearn.metrics import log_loss

    ds = imbalanced_store
    metrics = weighted_run.evaluate(ds, "test")
    X, y = (part.compute() for part in ds.arrays("test"))
    with torch.no_grad():
        probabilities = torch.softmax(weighted_run.model(torch.from_numpy(X)).double(), dim=1).numpy()
    expected = log_loss(y, probabilities, sample_weight=weighted_run.class_weight_[y])
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)


def test_dict_weights_by_label_or_code(imbalanced_store):
    ds = imbalanced_store
    run = new_trainer(ds, epochs=1, class_weight={1: 4.0})
    run.fit(ds)
    np.testing.assert_array_equal(run.class_weight_, [1.0, 4.0])
    by_label = new_trainer(ds, epochs=1, class_weight={"1": 4.0})  # the store's label of class 1 is 1
    by_label.fit(ds)
    np.testing.assert_array_equal(by_label.class_weight_, [1.0, 4.0])
    assert by_label.history[0]["train_loss"] == run.history[0]["train_loss"]


def test_a_cross_entropy_instance_gets_a_weighted_copy(imbalanced_store):
    ds = imbalanced_store
    mine = nn.CrossEntropyLoss(label_smoothing=0.1)
    run = new_trainer(ds, epochs=1, loss=mine, class_weight="balanced")
    run.fit(ds)
    assert mine.weight is None  # the caller's object is left as it was
    unweighted = new_trainer(ds, epochs=1, loss=nn.CrossEntropyLoss(label_smoothing=0.1))
    unweighted.fit(ds)
    assert run.history[0]["train_loss"] != pytest.approx(unweighted.history[0]["train_loss"])


@pytest.mark.parametrize("options, match", [
    ({"class_weight": "balance"}, r"^The 'class_weight' parameter of Trainer must be None, a str among "
                                  r"\{'balanced'\} or an instance of 'collections.abc.Mapping'. Got 'balance' "
                                  r"instead.$"),
    ({"class_weight": {"cat": 2.0}}, r"class_weight names 'cat', which is not a class"),
    ({"class_weight": {1: -1.0}}, r"must be a finite number above 0"),
    ({"class_weight": "balanced", "loss": lambda output, target: output.sum()},
     r"class_weight cannot be applied to the loss .*it takes no class weights.*loss='cross_entropy'"),
    ({"class_weight": {1: 2.0}, "loss": nn.CrossEntropyLoss(weight=torch.ones(2))},
     r"it has weight= of its own"),
])
def test_class_weight_errors(imbalanced_store, options, match):
    with pytest.raises(ParameterError, match=match):
        new_trainer(imbalanced_store, **options).fit(imbalanced_store)


def test_class_weight_on_a_regression_store(regression_store):
    run = Trainer(MLP(regression_store.n_features, [3], 1), epochs=1, on_cluster=False, progress=False,
                  class_weight="balanced")
    with pytest.raises(ParameterError, match="holds regression targets; leave class_weight=None"):
        run.fit(regression_store)


def test_resume_refuses_other_class_weights(imbalanced_store, tmp_path):
    ds, directory = imbalanced_store, str(tmp_path / "checkpoints")
    new_trainer(ds, epochs=1, checkpoint_dir=directory).fit(ds)
    balanced = balanced_weights(ds)
    with pytest.raises(CheckpointError, match=r"the class weights are None in the checkpoint, \[0\.52"):
        new_trainer(ds, checkpoint_dir=directory, class_weight="balanced").fit(ds, resume=True)
    # The same weights given as a dict are the same run.
    directory = str(tmp_path / "again")
    new_trainer(ds, epochs=1, checkpoint_dir=directory, class_weight="balanced").fit(ds)
    history = new_trainer(ds, checkpoint_dir=directory, class_weight=dict(enumerate(balanced))).fit(ds, resume=True)
    assert [entry["epoch"] for entry in history] == [1, 2]


def test_the_weights_travel_to_the_worker(imbalanced_store, weighted_run, cluster_client):
    run = new_trainer(imbalanced_store, epochs=1, class_weight="balanced", on_cluster=True)
    with cluster_client.as_current():
        history = run.fit(imbalanced_store)
    workers = set(cluster_client.scheduler_info(n_workers=-1)["workers"])
    assert len(history) == 1 and history[0]["worker"] in workers
    np.testing.assert_array_equal(run.class_weight_, weighted_run.class_weight_)
    for mine, reference in zip(history, weighted_run.history):
        assert mine["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-5)
        assert mine["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-5)


def test_resolve_is_the_one_meaning_of_balanced(imbalanced_store, weighted_run):
    ds = imbalanced_store
    expected = resolve_class_weight("balanced", ds.classes, ds.class_counts("train"), owner="test")
    np.testing.assert_array_equal(weighted_run.class_weight_, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_class_weight_on_cuda(imbalanced_store, weighted_run):
    run = new_trainer(imbalanced_store, class_weight="balanced", device="cuda")
    history = run.fit(imbalanced_store)
    assert history[-1]["train_loss"] == pytest.approx(weighted_run.history[-1]["train_loss"], rel=1e-3)
    assert run.evaluate(imbalanced_store, "test")["balanced_accuracy"] == pytest.approx(
        weighted_run.evaluate(imbalanced_store, "test")["balanced_accuracy"], abs=0.02)
