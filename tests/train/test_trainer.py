"""Trainer: same result as a plain torch loop, checkpoint and resume, a real cluster, metrics, errors.

The in-memory references run in this process on the same tensors.  One
4-epoch run with checkpoints (``full_run``) is shared by the tests that only
read its results, to keep the module fast.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from bigdl.errors import SchemaError
from bigdl.loaders.torch import ChunkLoader
from bigdl.models import MLP
from bigdl.train import Trainer

SEED = 7
BATCH_SIZE = 64
EPOCHS = 4
COMPARED = ("epoch", "train_loss", "val_loss", "val_accuracy")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on 2 cores: torch's own thread pool only fights the loader's threads for them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def new_mlp(ds, init_seed: int = 0, hidden=(16,)) -> MLP:
    """The same initial weights for the same ``init_seed``."""
    torch.manual_seed(init_seed)
    return MLP(ds.n_features, list(hidden), ds.n_classes or 1)


def trainer(model, **options) -> Trainer:
    settings = dict(epochs=EPOCHS, batch_size=BATCH_SIZE, seed=SEED, on_cluster=False, progress=False)
    settings.update(options)
    return Trainer(model, **settings)


def in_memory(ds, split):
    X, y = (array.compute() for array in ds.arrays(split))
    return torch.from_numpy(X), torch.from_numpy(y)


def assert_same_weights(left: nn.Module | dict, right: nn.Module | dict, atol=1e-6):
    left = left.state_dict() if isinstance(left, nn.Module) else left
    right = right.state_dict() if isinstance(right, nn.Module) else right
    assert left.keys() == right.keys()
    for name in left:
        torch.testing.assert_close(left[name], right[name], rtol=1e-5, atol=atol, msg=f"parameter {name}")


def assert_same_history(left: list[dict], right: list[dict], keys=COMPARED):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), f"epoch {a['epoch']}: {key}"


@pytest.fixture(scope="module")
def full_run(classification_store, tmp_path_factory):
    """An uninterrupted 4-epoch run with a checkpoint after every epoch."""
    directory = tmp_path_factory.mktemp("full-run") / "checkpoints"
    run = trainer(new_mlp(classification_store), checkpoint_dir=str(directory))
    run.fit(classification_store)
    return run


# ---------------------------------------------------------------- same result as a plain loop
def test_fit_equals_a_plain_torch_loop_over_the_same_batches(classification_store, full_run):
    ds = classification_store
    loader = ChunkLoader(ds, "train", batch_size=BATCH_SIZE, shuffle=True, seed=SEED)
    model = new_mlp(ds)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    X_val, y_val = in_memory(ds, "validation")
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        total, count = 0.0, 0
        for X, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(X), y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(X)
            count += len(X)
        entry = full_run.history[epoch]
        assert count == ds.split_counts["train"]
        assert entry["train_loss"] == pytest.approx(total / count, rel=1e-6)
        with torch.no_grad():
            output = model(X_val)
        assert entry["val_loss"] == pytest.approx(float(criterion(output, y_val)), rel=1e-5)
        assert entry["val_accuracy"] == pytest.approx(float((output.argmax(1) == y_val).double().mean()))
    assert_same_weights(full_run.model, model)


def test_accuracy_matches_an_in_memory_shuffled_loop(classification_store):
    ds = classification_store
    epochs, lr = 10, 1e-2
    run = trainer(new_mlp(ds, 1, hidden=(32,)), epochs=epochs, lr=lr)
    run.fit(ds)
    streamed = run.evaluate(ds, "test")["accuracy"]

    model = new_mlp(ds, 1, hidden=(32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    X_train, y_train = in_memory(ds, "train")
    generator = torch.Generator().manual_seed(123)
    for _ in range(epochs):
        order = torch.randperm(len(X_train), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            rows = order[start:start + BATCH_SIZE]
            optimizer.zero_grad()
            criterion(model(X_train[rows]), y_train[rows]).backward()
            optimizer.step()
    X_test, y_test = in_memory(ds, "test")
    with torch.no_grad():
        reference = float((model(X_test).argmax(1) == y_test).double().mean())
    majority = np.bincount(y_test.numpy()).max() / len(y_test)
    assert reference > majority + 0.2  # the problem is learnt, so the comparison means something
    assert abs(streamed - reference) <= 0.02


# ---------------------------------------------------------------- history
def test_history_has_one_entry_per_epoch(classification_store, full_run):
    history = full_run.history
    assert [entry["epoch"] for entry in history] == list(range(1, EPOCHS + 1))
    for entry in history:
        assert entry["worker"] == "local"
        assert entry["train_loss"] > 0 and 0 <= entry["val_accuracy"] <= 1
        assert entry["samples_per_second"] * entry["seconds"] == pytest.approx(
            classification_store.split_counts["train"], rel=1e-6)
        assert entry["checkpoint"].endswith(f"epoch-{entry['epoch'] - 1:05d}.pt")
    assert history[-1]["train_loss"] < history[0]["train_loss"]


# ---------------------------------------------------------------- checkpoints and resume
def test_resume_continues_to_the_uninterrupted_result(classification_store, full_run, tmp_path):
    ds = classification_store
    directory = str(tmp_path / "checkpoints")
    first = trainer(new_mlp(ds), epochs=2, checkpoint_dir=directory)
    assert [entry["epoch"] for entry in first.fit(ds)] == [1, 2]
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-00000.json", "epoch-00000.pt", "epoch-00001.json", "epoch-00001.pt"]
    # A new process would start from a new model: other initial weights, which the checkpoint replaces.
    second = trainer(new_mlp(ds, init_seed=99), epochs=EPOCHS, checkpoint_dir=directory)
    history = second.fit(ds, resume=True)
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4]
    assert_same_history(history, full_run.history)
    assert_same_weights(second.model, full_run.model)


def test_resumed_history_keeps_every_checkpoint_path(classification_store, tmp_path):
    ds = classification_store
    directory = str(tmp_path / "checkpoints")
    trainer(new_mlp(ds), epochs=2, checkpoint_dir=directory).fit(ds)
    history = trainer(new_mlp(ds), epochs=3, checkpoint_dir=directory).fit(ds, resume=True)
    assert [entry.get("checkpoint", "").rsplit("/", 1)[-1] for entry in history] == [
        "epoch-00000.pt", "epoch-00001.pt", "epoch-00002.pt"]


class CrashingLoss:
    """Cross-entropy that raises on training batch number ``crash_at`` (counting from 0): a killed run."""

    def __init__(self, crash_at: int):
        self.crash_at = crash_at
        self.training_calls = 0
        self.criterion = nn.CrossEntropyLoss()

    def __call__(self, output, target):
        if torch.is_grad_enabled():  # evaluation runs under no_grad and does not count
            if self.training_calls == self.crash_at:
                raise RuntimeError("simulated crash")
            self.training_calls += 1
        return self.criterion(output, target)


def test_crash_mid_training_then_resume_equals_uninterrupted(classification_store, full_run, tmp_path):
    ds = classification_store
    batches_per_epoch = len(ChunkLoader(ds, "train", batch_size=BATCH_SIZE))
    directory = tmp_path / "checkpoints"
    crashing = trainer(new_mlp(ds), loss=CrashingLoss(crash_at=2 * batches_per_epoch), checkpoint_dir=str(directory))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit(ds)  # dies on the first batch of epoch 3
    assert sorted(path.name for path in directory.glob("*.pt")) == ["epoch-00000.pt", "epoch-00001.pt"]

    resumed = trainer(new_mlp(ds, init_seed=5), checkpoint_dir=str(directory))
    history = resumed.fit(ds, resume=True)
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4]
    assert_same_history(history, full_run.history)
    assert_same_weights(resumed.model, full_run.model)


def test_resume_after_the_last_epoch_changes_nothing(classification_store, full_run):
    again = trainer(new_mlp(classification_store, init_seed=3), checkpoint_dir=full_run.checkpoint_dir)
    history = again.fit(classification_store, resume=True)
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4]
    assert_same_weights(again.model, full_run.model, atol=0)


def test_early_stopping_stops_when_validation_loss_stalls(classification_store):
    # Learning rate 0: the validation loss never improves after the first epoch.
    run = trainer(new_mlp(classification_store), optimizer="sgd", lr=0.0, epochs=10, early_stopping=2)
    history = run.fit(classification_store)
    assert [entry["epoch"] for entry in history] == [1, 2, 3]


# ---------------------------------------------------------------- on a real cluster
@pytest.fixture(scope="module")
def dask_client():
    """A real LocalCluster (2 worker processes, 1 thread each), not left as Dask's default client."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           memory_limit="2GiB")
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_fit_on_a_cluster_worker_equals_fit_in_process(classification_store, full_run, dask_client):
    ds = classification_store
    workers = set(dask_client.scheduler_info(n_workers=-1)["workers"])
    run = Trainer(new_mlp(ds), epochs=2, batch_size=BATCH_SIZE, seed=SEED, progress=False)
    with dask_client.as_current():
        history = run.fit(ds)
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert all(entry["worker"] in workers for entry in history)
    assert_same_history(history, full_run.history[:2])
    # The in-process run's weights after epoch 2 are in its second checkpoint.
    after_two = torch.load(full_run.history[1]["checkpoint"], map_location="cpu", weights_only=True)
    assert_same_weights(run.model, after_two["model"], atol=1e-5)


def test_resume_on_a_cluster_worker(classification_store, full_run, dask_client, tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    shutil.copy(full_run.history[0]["checkpoint"], directory)  # as if the run died after epoch 1
    run = Trainer(new_mlp(classification_store, init_seed=11), epochs=EPOCHS, batch_size=BATCH_SIZE, seed=SEED,
                  progress=False, checkpoint_dir=str(directory))
    with dask_client.as_current():
        history = run.fit(classification_store, resume=True)
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4]
    assert_same_history(history, full_run.history)
    assert_same_weights(run.model, full_run.model, atol=1e-5)


# ---------------------------------------------------------------- evaluate
def test_evaluate_classification_matches_in_memory_metrics(classification_store, full_run):
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from bigdl.train._metrics import ClassificationMetrics

    ds = classification_store
    metrics = full_run.evaluate(ds, "test")
    assert set(metrics) == {"loss", "accuracy", "balanced_accuracy", "roc_auc", "n_samples"}
    X, y = in_memory(ds, "test")
    with torch.no_grad():
        output = full_run.model(X)
    assert metrics["n_samples"] == ds.split_counts["test"] == len(y)
    assert metrics["accuracy"] == pytest.approx(float((output.argmax(1) == y).double().mean()))
    assert metrics["loss"] == pytest.approx(float(nn.functional.cross_entropy(output, y)), rel=1e-5)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, output.argmax(1)), abs=1e-12)
    probabilities = torch.softmax(output.double(), dim=1).numpy()
    exact = roc_auc_score(y.numpy(), probabilities, multi_class="ovr")
    assert 0.5 < exact < 1  # a model that ranks, imperfectly: the comparison means something
    binned = ClassificationMetrics(ds.n_classes)
    binned.update(probabilities, y)
    assert abs(metrics["roc_auc"] - exact) <= binned.roc_auc_bound() <= 1e-3
    assert metrics["roc_auc"] == pytest.approx(exact, abs=1e-4)
    validation = full_run.evaluate(ds, "validation")
    last = full_run.history[-1]
    for name in ("loss", "accuracy", "balanced_accuracy", "roc_auc"):  # each epoch's validation is evaluate's
        assert validation[name] == pytest.approx(last[f"val_{name}"], rel=1e-6)


@pytest.fixture(scope="module")
def regression_run(regression_store):
    torch.manual_seed(0)
    run = trainer(MLP(regression_store.n_features, [3], 1), epochs=8, lr=2e-2, batch_size=32)
    run.fit(regression_store)
    return run


def test_evaluate_regression_gives_mse_mae_r2(regression_store, regression_run):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    ds = regression_store
    assert ds.task == "regression"
    metrics = regression_run.evaluate(ds, "test")
    assert set(metrics) == {"loss", "mse", "mae", "r2", "n_samples"}
    X, y = in_memory(ds, "test")
    with torch.no_grad():
        predicted = regression_run.model(X).reshape(-1).numpy().astype(np.float64)
    y = y.numpy().astype(np.float64)
    assert metrics["n_samples"] == len(y)
    assert metrics["mse"] == pytest.approx(mean_squared_error(y, predicted), rel=1e-5)
    assert metrics["loss"] == pytest.approx(metrics["mse"], rel=1e-5)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, predicted), rel=1e-5)
    assert metrics["r2"] == pytest.approx(r2_score(y, predicted), rel=1e-5)
    assert metrics["r2"] > 0.8
    history = regression_run.history
    assert "val_r2" in history[-1] and "val_accuracy" not in history[-1]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_evaluate_a_split_the_store_lacks(unvalidated_store):
    run = trainer(new_mlp(unvalidated_store))
    with pytest.raises(SchemaError, match="validation"):
        run.evaluate(unvalidated_store, "validation")


# ---------------------------------------------------------------- predict
def test_predict_gives_one_class_per_sample_as_in_memory(classification_store, full_run):
    import dask.array as da

    ds = classification_store
    predicted = full_run.predict(ds, split="test")
    assert isinstance(predicted, da.Array)
    assert predicted.shape == (ds.split_counts["test"],)
    X, _ = in_memory(ds, "test")
    with torch.no_grad():
        expected = full_run.model(X).argmax(1).numpy()
    values = predicted.compute()
    assert values.dtype == np.int64
    np.testing.assert_array_equal(values, expected)
    everything = full_run.predict(ds)
    assert everything.shape == (ds.n_samples,)


def test_predict_proba_rows_are_probabilities(classification_store, full_run):
    import dask.array as da

    ds = classification_store
    probabilities = full_run.predict_proba(ds, split="validation")
    assert isinstance(probabilities, da.Array)
    assert probabilities.shape == (ds.split_counts["validation"], ds.n_classes)
    values = probabilities.compute()
    assert (values >= 0).all()
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(values.argmax(1), full_run.predict(ds, split="validation").compute())
    X, _ = in_memory(ds, "validation")
    with torch.no_grad():
        expected = torch.softmax(full_run.model(X), dim=1).numpy()
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)


def test_predict_regression_gives_one_value_per_sample(regression_store, regression_run):
    predicted = regression_run.predict(regression_store, split="test")
    X, _ = in_memory(regression_store, "test")
    with torch.no_grad():
        expected = regression_run.model(X).reshape(-1).numpy()
    assert predicted.shape == (len(X),)
    np.testing.assert_allclose(predicted.compute(), expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- plots
def test_plot_history_writes_a_png(full_run, regression_run, tmp_path):
    for run, name in ((full_run, "classification.png"), (regression_run, "regression.png")):
        path = tmp_path / "plots" / name
        assert run.plot_history(path) == str(path)
        content = path.read_bytes()
        assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 1000


# ---------------------------------------------------------------- errors
def test_model_input_size_must_match_the_store(classification_store):
    ds = classification_store
    run = trainer(MLP(ds.n_features + 3, [8], ds.n_classes))
    with pytest.raises(SchemaError, match=rf"n_features={ds.n_features}"):
        run.fit(ds)


def test_regression_loss_on_a_classification_store(classification_store):
    run = trainer(new_mlp(classification_store), loss="mse")
    with pytest.raises(SchemaError, match="regression loss") as caught:
        run.fit(classification_store)
    assert "cross_entropy" in str(caught.value)


def test_classification_loss_on_a_regression_store(regression_store):
    run = trainer(MLP(regression_store.n_features, [3], 1), loss="cross_entropy")
    with pytest.raises(SchemaError, match="classification loss") as caught:
        run.fit(regression_store)
    assert "mse" in str(caught.value)


def test_output_width_must_match_the_classes(classification_store):
    ds = classification_store
    run = trainer(MLP(ds.n_features, [8], ds.n_classes + 2))
    with pytest.raises(SchemaError, match=rf"{ds.n_classes} classes") as caught:
        run.fit(ds)
    assert "out_features" in str(caught.value)


def test_resume_needs_a_checkpoint_dir(classification_store):
    with pytest.raises(SchemaError, match="checkpoint_dir"):
        trainer(new_mlp(classification_store)).fit(classification_store, resume=True)


def test_early_stopping_needs_a_validation_split(unvalidated_store):
    run = trainer(new_mlp(unvalidated_store), early_stopping=2)
    with pytest.raises(SchemaError, match="validation split"):
        run.fit(unvalidated_store)


@pytest.mark.parametrize("options,named", [
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"loss": "hinge"}, "loss"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": -1}, "batch_size"),
    ({"n_workers": 0}, "n_workers"),
])
def test_parameter_errors_name_the_parameter(classification_store, options, named):
    with pytest.raises(SchemaError, match=rf"'{named}' parameter of Trainer"):
        trainer(new_mlp(classification_store), **options).fit(classification_store)


def test_model_must_be_a_module(classification_store):
    with pytest.raises(SchemaError, match="'model' parameter"):
        trainer(lambda x: x).fit(classification_store)


@pytest.mark.parametrize("options,message", [
    ({"epochs": True}, "The 'epochs' parameter of Trainer must be an int in the range [1, inf). Got True instead."),
    ({"lr": -0.1}, "The 'lr' parameter of Trainer must be a float in the range [0.0, inf) or None. Got -0.1 instead."),
    ({"torch_threads": 0}, "The 'torch_threads' parameter of Trainer must be an int in the range [1, inf) or None. "
                           "Got 0 instead."),
    ({"on_cluster": "yes"}, "The 'on_cluster' parameter of Trainer must be an instance of 'bool' or an instance of "
                            "'numpy.bool'. Got 'yes' instead."),
])
def test_parameter_errors_in_scikit_learns_words(classification_store, options, message):
    from bigdl.errors import ParameterError

    with pytest.raises(ParameterError) as caught:
        trainer(new_mlp(classification_store), **options).fit(classification_store)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)
