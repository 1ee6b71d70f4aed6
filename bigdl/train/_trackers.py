"""Training trackers: TensorBoard event files and MLflow runs, as :class:`~bigdl.train.Callback` subclasses.

Both log the same figures: per epoch the train loss, the validation loss and
metrics (``val_*`` of ``Trainer.history``), samples per second and the
learning rate; the smoothed batch loss (an exponential moving average over
batches, bias-corrected, as on the dashboard) every ``batch_every`` batches;
and the run's hyperparameters.  Only figures are logged, never data values.

They run where the training loop runs: on a Dask worker by default, so
``log_dir`` (and a ``file:`` tracking URI) must be a place the worker can
write and the caller can read.  For a LocalCluster that is any local path
(workers share the caller's disk).  For a remote cluster use an fsspec URL
(``s3://bucket/runs/x``): the events are written to a local temporary
folder on the worker and copied there after every epoch.  Under data
parallelism only rank 0 logs.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

from bigdl.train._loop import Callback

__all__ = ["TensorBoardLogger", "MLflowLogger", "hyperparameters"]


def hyperparameters(loop, extra: dict | None = None) -> dict:
    """The run's hyperparameters as plain values: what the loop knows, plus ``extra``.

    Parameters
    ----------
    loop : TrainingLoop
    extra : dict, optional
        More (``epochs``, the loss's name...), given by the Trainer.

    Returns
    -------
    dict
        ``model``, ``optimizer``, ``lr``, ``batch_size``, ``seed``, ``task``,
        ``parameters`` (trainable), ``world_size``, and ``extra``'s items;
        values are str, int, float or bool.
    """
    optimizer = loop.optimizer
    values = {
        "model": type(loop.module).__name__,
        "optimizer": type(optimizer).__name__ if optimizer is not None else "none",
        "lr": float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0,
        "batch_size": int(loop.batch_size), "seed": int(loop.seed), "task": str(loop.task),
        "parameters": int(sum(parameter.numel() for parameter in loop.module.parameters()
                              if parameter.requires_grad)),
        "world_size": int(loop.world_size),
    }
    for key, value in (extra or {}).items():
        values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return values


def epoch_figures(loop, entry: dict) -> dict:
    """The numbers of one epoch's history entry, named as the trackers log them.

    Parameters
    ----------
    loop : TrainingLoop
    entry : dict
        The epoch's history entry.

    Returns
    -------
    dict
        ``train/loss``, ``train/samples_per_second``, ``train/learning_rate``
        and ``validation/<metric>`` for each ``val_<metric>``.
    """
    figures = {"train/loss": entry["train_loss"], "train/samples_per_second": entry["samples_per_second"]}
    if loop.optimizer is not None:
        figures["train/learning_rate"] = float(loop.optimizer.param_groups[0]["lr"])
    for key, value in entry.items():
        if key.startswith("val_") and isinstance(value, (int, float)) and not isinstance(value, bool):
            figures[f"validation/{key[4:]}"] = float(value)
    return figures


class _SmoothedLoss:
    """The batch loss's exponential moving average (bias-corrected), carried across epochs."""

    def __init__(self, smoothing: float = 0.9):
        self.smoothing, self.average, self.batches = smoothing, 0.0, 0

    def add(self, loss: float) -> float:
        self.batches += 1
        self.average = self.smoothing * self.average + (1.0 - self.smoothing) * loss
        return self.value

    @property
    def value(self) -> float:
        return self.average / (1.0 - self.smoothing ** self.batches) if self.batches else math.nan


class TensorBoardLogger(Callback):
    """Write TensorBoard event files (``torch.utils.tensorboard.SummaryWriter``) while training.

    ``Trainer(log_dir=...)`` adds one.  Scalars: ``train/loss``,
    ``validation/loss`` and ``validation/<metric>`` (accuracy, balanced
    accuracy, ROC-AUC or MSE, MAE, R2), ``train/samples_per_second``,
    ``train/learning_rate`` and ``train/smoothed_batch_loss`` at step =
    epoch (from 1); ``batch/smoothed_loss`` at step = batch (from 1); the
    hyperparameters in TensorBoard's HParams tab, with the last epoch's
    figures.  Runs on rank 0 only, where the loop runs (a Dask worker by
    default).

    Parameters
    ----------
    log_dir : str or path-like
        A local folder (made if missing) or an fsspec URL; see the module's
        notes for where it must be on a cluster.
    hparams : dict, optional
        Hyperparameters besides those the loop knows (:func:`hyperparameters`).
    batch_every : int, default 20
        Batches between two ``batch/smoothed_loss`` points (and the last of each epoch).

    Examples
    --------
    >>> trainer = Trainer(MLP(ds.n_features, [64], ds.n_classes), log_dir="work/runs/mlp")  # doctest: +SKIP
    >>> trainer.fit(ds)                    # then: tensorboard --logdir work/runs              # doctest: +SKIP
    """

    def __init__(self, log_dir, *, hparams: dict | None = None, batch_every: int = 20):
        self.log_dir = os.fspath(log_dir)
        self.hparams = dict(hparams or {})
        self.batch_every = batch_every
        self._writer = None

    def __getstate__(self):
        return {**self.__dict__, "_writer": None}  # a writer stays in the process that opened it

    @property
    def _remote(self) -> bool:
        return "://" in self.log_dir and not self.log_dir.startswith("file://")

    def on_train_begin(self, loop) -> None:
        """Open the writer (rank 0).

        Parameters
        ----------
        loop : TrainingLoop
        """
        if loop.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        local = tempfile.mkdtemp(prefix="bigdl-tensorboard-") if self._remote else \
            self.log_dir.removeprefix("file://")
        self._local = local
        self._writer = SummaryWriter(log_dir=local)
        self._smoothed = _SmoothedLoss()
        self._batch = 0
        self._epoch_batches = 0

    def on_epoch_begin(self, loop, epoch: int) -> None:
        """Count the epoch's batches from 0.

        Parameters
        ----------
        loop : TrainingLoop
        epoch : int
        """
        self._epoch_batches = 0

    def on_batch_end(self, loop, loss: float, n_samples: int) -> None:
        """Add the batch's loss to the moving average; write it every ``batch_every`` batches.

        Parameters
        ----------
        loop : TrainingLoop
        loss : float
        n_samples : int
        """
        if self._writer is None:
            return
        self._batch += 1
        self._epoch_batches += 1
        smoothed = self._smoothed.add(loss)
        if self._batch % self.batch_every == 0:
            self._writer.add_scalar("batch/smoothed_loss", smoothed, self._batch)

    def on_epoch_end(self, loop, entry: dict) -> None:
        """Write the epoch's figures at step ``entry["epoch"]``; flush (and copy, for a URL).

        Parameters
        ----------
        loop : TrainingLoop
        entry : dict
        """
        if self._writer is None:
            return
        step = int(entry["epoch"])
        for tag, value in epoch_figures(loop, entry).items():
            self._writer.add_scalar(tag, value, step)
        if self._batch % self.batch_every:  # the epoch's last batch, unless just written
            self._writer.add_scalar("batch/smoothed_loss", self._smoothed.value, self._batch)
        self._writer.add_scalar("train/smoothed_batch_loss", self._smoothed.value, step)
        self._last = entry
        self._writer.flush()
        self._upload()

    def on_train_end(self, loop) -> None:
        """Write the hyperparameters with the last epoch's figures; close (and copy, for a URL).

        Parameters
        ----------
        loop : TrainingLoop
        """
        if self._writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        last = getattr(self, "_last", None)
        metrics = {f"hparam/{tag}": value for tag, value in epoch_figures(loop, last).items()} if last else {}
        experiment, start, end = hparams_summary(hyperparameters(loop, self.hparams), metrics)
        writer = self._writer.file_writer
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        for tag, value in metrics.items():
            self._writer.add_scalar(tag, value, int(last["epoch"]))
        self._writer.close()
        self._writer = None
        self._upload()

    def _upload(self) -> None:
        if not self._remote:
            return
        import fsspec

        filesystem, root = fsspec.core.url_to_fs(self.log_dir)
        filesystem.makedirs(root, exist_ok=True)
        for name in os.listdir(self._local):
            filesystem.put_file(os.path.join(self._local, name), f"{root.rstrip('/')}/{name}")


class MLflowLogger(Callback):
    """Log a training run to MLflow: the same figures as :class:`TensorBoardLogger`, the parameters, the model.

    Needs the optional dependency ``mlflow`` (``pip install bigdl-dask[mlflow]``,
    which installs ``mlflow-skinny``, the tracking client).  The run starts when
    training begins and ends when it ends; figures go in with the epoch as
    step (``train_loss``, ``val_loss``, ``val_<metric>``,
    ``samples_per_second``, ``learning_rate``, ``smoothed_batch_loss``;
    ``batch_smoothed_loss`` at step = batch), and the trained module is
    logged with ``mlflow.pytorch.log_model``.  Rank 0 only, where the loop runs.

    Parameters
    ----------
    tracking_uri : str, optional
        Where runs go: a server (``http://...``), a database
        (``sqlite:///mlflow.db``) or a folder (``file:/path/mlruns``; MLflow 3
        wants ``MLFLOW_ALLOW_FILE_STORE=true`` in the environment of the
        process that logs for that).  Default: MLflow's own (``MLFLOW_TRACKING_URI``).
        On a cluster it must be reachable from the worker.
    experiment : str, default "bigdl"
        Made if missing.
    run_name : str, optional
    hparams : dict, optional
        Parameters besides those the loop knows (:func:`hyperparameters`).
    log_model : bool, default True
        Log the trained module at the end as the run's model ``model``.
    sample_shape : tuple of int, optional
        One sample's shape (``ds.sample_shape``): the model is then saved as
        a traced program (``torch.export``, with a zero input example);
        without it MLflow pickles the module (load such a model only from a
        run you trust).
    batch_every : int, default 20
        Batches between two ``batch_smoothed_loss`` points.

    Attributes
    ----------
    run_id : str or None
        The run's id, once it started (in the process running the loop).

    Examples
    --------
    >>> logger = MLflowLogger("sqlite:///work/mlflow.db", sample_shape=ds.sample_shape)  # doctest: +SKIP
    >>> Trainer(model, callbacks=[logger]).fit(ds)                                       # doctest: +SKIP
    """

    def __init__(self, tracking_uri: str | None = None, *, experiment: str = "bigdl", run_name: str | None = None,
                 hparams: dict | None = None, log_model: bool = True, sample_shape: tuple | None = None,
                 batch_every: int = 20):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.hparams = dict(hparams or {})
        self.log_model = log_model
        self.sample_shape = tuple(sample_shape) if sample_shape is not None else None
        self.batch_every = batch_every
        self.run_id = None
        self._client = None

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    def on_train_begin(self, loop) -> None:
        """Start the run and log the parameters (rank 0).

        Parameters
        ----------
        loop : TrainingLoop

        Raises
        ------
        ImportError
            mlflow is not installed (with the install hint).
        """
        if loop.rank != 0:
            return
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:  # pragma: no cover - mlflow is in the test extra
            raise ImportError("MLflowLogger needs mlflow: pip install 'bigdl-dask[mlflow]' (or mlflow-skinny).") \
                from error
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self._client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else self._client.create_experiment(self.experiment)
        run = self._client.create_run(experiment_id, run_name=self.run_name, tags={"framework": "bigdl"})
        self.run_id = run.info.run_id
        for key, value in hyperparameters(loop, self.hparams).items():
            self._client.log_param(self.run_id, key, value)
        self._smoothed = _SmoothedLoss()
        self._batch = 0

    def on_batch_end(self, loop, loss: float, n_samples: int) -> None:
        """Add the batch's loss to the moving average; log it every ``batch_every`` batches.

        Parameters
        ----------
        loop : TrainingLoop
        loss : float
        n_samples : int
        """
        if self._client is None:
            return
        self._batch += 1
        smoothed = self._smoothed.add(loss)
        if self._batch % self.batch_every == 0:
            self._client.log_metric(self.run_id, "batch_smoothed_loss", smoothed, step=self._batch)

    def on_epoch_end(self, loop, entry: dict) -> None:
        """Log the epoch's figures at step ``entry["epoch"]``.

        Parameters
        ----------
        loop : TrainingLoop
        entry : dict
        """
        if self._client is None:
            return
        from mlflow.entities import Metric

        step = int(entry["epoch"])
        names = {"train/loss": "train_loss", "train/samples_per_second": "samples_per_second",
                 "train/learning_rate": "learning_rate"}
        figures = {names.get(tag, tag.replace("validation/", "val_")): value
                   for tag, value in epoch_figures(loop, entry).items()}
        figures["smoothed_batch_loss"] = self._smoothed.value
        stamp = int(1000 * time.time())
        self._client.log_batch(self.run_id, metrics=[Metric(key, float(value), stamp, step)
                                                     for key, value in figures.items()])

    def on_train_end(self, loop) -> None:
        """Log the trained module (``log_model``) and end the run.

        Parameters
        ----------
        loop : TrainingLoop
        """
        if self._client is None:
            return
        status = "FINISHED"
        try:
            if self.log_model:
                self._log_model(loop.module)
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self._client.set_terminated(self.run_id, status=status)
            self._client = None

    def _log_model(self, module) -> None:
        import copy

        import mlflow
        import numpy as np

        module = copy.deepcopy(module).cpu().eval()
        previous = mlflow.get_tracking_uri()
        if self.tracking_uri is not None:
            mlflow.set_tracking_uri(self.tracking_uri)
        try:
            with mlflow.start_run(run_id=self.run_id):
                if self.sample_shape is not None:
                    example = np.zeros((2, *self.sample_shape), dtype=np.float32)
                    mlflow.pytorch.log_model(module, name="model", input_example=example)
                else:
                    mlflow.pytorch.log_model(module, name="model", serialization_format="pickle")
        finally:
            mlflow.set_tracking_uri(previous)
