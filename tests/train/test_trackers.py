"""Training trackers: TensorBoard event files read back equal the Trainer's history; MLflow runs in a file store."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bigdl.errors import ParameterError
from bigdl.models import MLP
from bigdl.train import MLflowLogger, TensorBoardLogger, Trainer


def _scalars(log_dir) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def _trainer(store, **options):
    torch.manual_seed(0)
    return Trainer(MLP(store.n_features, [16], store.n_classes), epochs=3, batch_size=128, lr=1e-2,
                   progress=False, **options)


def test_log_dir_writes_event_files_equal_to_the_history(classification_store, tmp_path):
    trainer = _trainer(classification_store, on_cluster=False, log_dir=tmp_path / "runs")
    history = trainer.fit(classification_store)
    scalars = _scalars(tmp_path / "runs")
    for tag, key in [("train/loss", "train_loss"), ("validation/loss", "val_loss"),
                     ("validation/accuracy", "val_accuracy"), ("validation/roc_auc", "val_roc_auc"),
                     ("train/samples_per_second", "samples_per_second")]:
        assert [step for step, _ in scalars[tag]] == [1, 2, 3], tag
        np.testing.assert_allclose([value for _, value in scalars[tag]], [entry[key] for entry in history],
                                   rtol=1e-6, err_msg=tag)
    assert [value for _, value in scalars["train/learning_rate"]] == pytest.approx([1e-2] * 3)
    smoothed = [value for _, value in scalars["train/smoothed_batch_loss"]]
    assert len(smoothed) == 3 and all(math.isfinite(value) for value in smoothed)
    # The smoothed loss follows the epoch losses (within the spread of batches in an epoch).
    assert abs(smoothed[-1] - history[-1]["train_loss"]) < 0.25
    batches = scalars["batch/smoothed_loss"]
    assert len(batches) >= 3 and [step for step, _ in batches] == sorted(step for step, _ in batches)
    assert scalars["hparam/validation/accuracy"][0][1] == pytest.approx(history[-1]["val_accuracy"], rel=1e-6)


def test_hyperparameters_reach_the_hparams_plugin(classification_store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _trainer(classification_store, on_cluster=False, log_dir=tmp_path / "runs", optimizer="sgd").fit(
        classification_store)
    accumulator = EventAccumulator(str(tmp_path / "runs"))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {key: value for key, value in start.session_start_info.hparams.items()}
    assert hparams["optimizer"].string_value == "SGD"
    assert hparams["lr"].number_value == pytest.approx(1e-2)
    assert hparams["batch_size"].number_value == 128 and hparams["epochs"].number_value == 3
    assert hparams["loss"].string_value == "cross_entropy"


def test_event_files_from_a_cluster_worker_reach_the_caller(classification_store, tmp_path, cluster_client):
    """On a LocalCluster the loop runs in a worker process; it writes log_dir on the caller's disk."""
    with cluster_client.as_current():
        trainer = _trainer(classification_store, log_dir=tmp_path / "cluster-runs")
        history = trainer.fit(classification_store)
    assert history[0]["worker"] != "local"
    scalars = _scalars(tmp_path / "cluster-runs")
    np.testing.assert_allclose([value for _, value in scalars["train/loss"]],
                               [entry["train_loss"] for entry in history], rtol=1e-6)


def test_a_url_log_dir_is_copied_after_every_epoch(classification_store, tmp_path):
    """An fsspec URL: events go to a local folder first and are copied to the URL (memory:// here)."""
    import fsspec

    trainer = _trainer(classification_store, on_cluster=False, log_dir="memory://bigdl-test/runs")
    history = trainer.fit(classification_store)
    filesystem = fsspec.filesystem("memory")
    files = filesystem.ls("/bigdl-test/runs", detail=False)
    assert files and all("tfevents" in name for name in files)
    local = tmp_path / "copied"
    local.mkdir()
    for name in files:
        filesystem.get_file(name, str(local / name.rsplit("/", 1)[-1]))
    assert len(_scalars(local)["train/loss"]) == len(history)


def test_a_wrong_log_dir_is_refused(classification_store):
    with pytest.raises(ParameterError, match="log_dir"):
        _trainer(classification_store, on_cluster=False, log_dir=3).fit(classification_store)


def test_mlflow_logger_logs_the_figures_and_the_model(classification_store, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses folders unless told
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = (tmp_path / "mlruns").as_uri()
    logger = MLflowLogger(uri, experiment="tests", run_name="mlp", sample_shape=classification_store.sample_shape,
                          hparams={"note": "trackers"})
    trainer = _trainer(classification_store, on_cluster=False, callbacks=[logger])
    history = trainer.fit(classification_store)
    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "mlp"
    assert run.data.params["optimizer"] == "Adam" and run.data.params["note"] == "trackers"
    assert run.data.params["batch_size"] == "128"
    for key, entry_key in [("train_loss", "train_loss"), ("val_loss", "val_loss"), ("val_accuracy", "val_accuracy"),
                           ("samples_per_second", "samples_per_second")]:
        metrics = sorted(client.get_metric_history(logger.run_id, key), key=lambda metric: metric.step)
        assert [metric.step for metric in metrics] == [1, 2, 3]
        np.testing.assert_allclose([metric.value for metric in metrics], [entry[entry_key] for entry in history],
                                   rtol=1e-6)
    assert len(client.get_metric_history(logger.run_id, "smoothed_batch_loss")) == 3
    # The final model: the trained weights, predicting as the trainer does (logged in this run, by this test).
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # runs:/ resolves against the current tracking store
    try:
        model = mlflow.pytorch.load_model(f"runs:/{logger.run_id}/model")
    finally:
        mlflow.set_tracking_uri(previous)
    X = torch.zeros((4, classification_store.n_features))
    X[:, 0] = torch.linspace(-2, 2, 4)
    with torch.no_grad():
        np.testing.assert_allclose(model(X).numpy(), trainer.model(X).numpy(), rtol=1e-5, atol=1e-6)


def test_trackers_pickle_without_their_writers(tmp_path):
    import pickle

    logger = TensorBoardLogger(tmp_path / "runs", batch_every=5)
    logger._writer = object()  # a writer of another process must not travel
    copy = pickle.loads(pickle.dumps(logger))
    assert copy._writer is None and copy.log_dir == str(tmp_path / "runs") and copy.batch_every == 5
