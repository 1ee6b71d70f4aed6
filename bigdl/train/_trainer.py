"""Incremental PyTorch training from a store, on a Dask worker or in process.

``fit`` -> ``_run`` (devices, threads, process group) -> ``_loop`` (resume,
epochs, validation, checkpoints, events), which drives a
:class:`~bigdl.train.TrainingLoop` (its ``get_iterator``, ``train_step`` and
``train_epoch`` methods, and callbacks) wherever the store's chunks can be
read: by default inside one Dask task on a worker of the current cluster
(the task streams chunks itself through :class:`bigdl.loaders.torch.ChunkLoader`),
or in the calling process with ``on_cluster=False``.  Each epoch ends with a
checkpoint (model, optimizer, RNG and loader state, history) and a Dask
event on the topic ``bigdl-train`` that the caller's progress bar (and the
dashboard) listen to; ``checkpoint_every`` adds checkpoints within epochs.
``fit(resume=True)`` continues from the last checkpoint, at the next batch,
and ends with the same weights as an uninterrupted run.  A data-parallel job
that loses a worker starts again from its last checkpoint on the workers it
has, with the same global batch size (the loader's order does not depend on
the world size).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
import uuid
from typing import Callable

import numpy as np
import torch
from torch import nn

from bigdl._validation import Interval, Options, Predicate, check_params
from bigdl.errors import EmptyResultError, ParameterError, SchemaError, TrainingError, public_message
from bigdl.forecast._metrics import median_index
from bigdl.preprocessing._weights import CLASS_WEIGHT, resolve_class_weight
from bigdl.runtime import TRAIN_TOPIC, BatchLossReporter
from bigdl.store._dataset import Dataset, open_store
from bigdl.train._checkpoint import checkpoint_path, checkpoint_to_resume, run_identity, save_checkpoint
from bigdl.train._loop import Callback, TrainingLoop, target_for as _target_for
from bigdl.train._metrics import ClassificationMetrics, mean_loss_weight

__all__ = ["Trainer", "EVENT_TOPIC"]

EVENT_TOPIC = TRAIN_TOPIC  # one name for the workers, the dashboard and the callers
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adadelta": torch.optim.Adadelta,
              "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2, "adadelta": 1.0, "rmsprop": 1e-3}
CLASSIFICATION_LOSSES = {"cross_entropy": nn.CrossEntropyLoss}
REGRESSION_LOSSES = {"mse": nn.MSELoss, "l1": nn.L1Loss, "huber": nn.HuberLoss}
#: Losses that take class weights (``weight=``, one per class, for class-code targets).
WEIGHTED_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)


def _is_callback_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, Callback) for item in value)


def _is_loop_class(value) -> bool:
    return isinstance(value, type) and issubclass(value, TrainingLoop)


def _is_duration(value) -> bool:
    from dask.utils import parse_timedelta

    if not isinstance(value, str):
        return False
    try:
        return parse_timedelta(value) > 0
    except (ValueError, KeyError, TypeError):
        return False


#: What each Trainer parameter accepts (checked when ``fit`` or ``evaluate`` starts; ``__init__`` only stores).
TRAINER_CONSTRAINTS = {
    "model": [nn.Module],
    "optimizer": [Options(OPTIMIZERS), callable],
    "lr": [Interval(float, 0, None), None],  # 0 freezes the weights (a test stalls training that way)
    "loss": [Options([*CLASSIFICATION_LOSSES, *REGRESSION_LOSSES]), callable, None],
    "epochs": [Interval(int, 1, None)],
    "batch_size": [Interval(int, 1, None)],
    "device": [str, torch.device],
    "checkpoint_dir": [str, os.PathLike, None],
    "log_dir": [str, os.PathLike, None],
    "early_stopping": [Interval(int, 1, None), None],
    "restore_best": ["boolean", None],
    "seed": [Interval(int, 0, None)],
    "on_cluster": ["boolean"],
    "n_workers": [Interval(int, 1, None)],
    "torch_threads": [Interval(int, 1, None), None],
    "progress": ["boolean"],
    "loader_options": [dict, None],
    "callbacks": [Predicate(_is_callback_list, "a list of bigdl.train.Callback instances"), None],
    "loop_class": [Predicate(_is_loop_class, "a subclass of bigdl.train.TrainingLoop"), None],
    "class_weight": CLASS_WEIGHT,
    "checkpoint_every": [Interval(int, 1, None), Predicate(_is_duration, "a duration such as '30s' or '5 minutes'"),
                         None],
    "max_restarts": [Interval(int, 0, None)],
    "restart_wait": [Interval(float, 0, None), Predicate(_is_duration, "a duration such as '30s'")],
}


class Trainer:
    """Train a ``torch.nn.Module`` on a store, streaming its chunks.

    Parameters
    ----------
    model : torch.nn.Module
        E.g. ``bigdl.models.MLP(ds.n_features, [64, 64], ds.n_classes)``.
    optimizer : {"adam", "sgd", "adadelta", "adamw", "rmsprop"} or callable, default "adam"
        A name, or a factory ``f(parameters) -> torch.optim.Optimizer``.
    lr : float, optional
        Learning rate (default per optimizer: adam 1e-3, sgd 1e-2, adadelta 1.0).
    loss : {"cross_entropy", "mse", "l1", "huber"} or callable, optional
        Default: ``cross_entropy`` for classification stores, ``mse`` for regression.
    epochs : int, default 10
    batch_size : int, default 256
    device : str, default "auto"
        ``"auto"`` uses CUDA when the machine running the loop has it.
    checkpoint_dir : str, optional
        Local path or fsspec URL; a checkpoint is written after every epoch
        (``epoch-NNNNN.pt``, with a JSON sidecar naming its run).
    checkpoint_every : int or str, optional
        Also checkpoint within epochs: every this many steps (an int), or
        when this much time has passed since the last checkpoint (a duration
        such as ``"30s"`` or ``"10 minutes"``).  Only the newest of these is
        kept (``epoch-NNNNN-step-NNNNNNNN.pt``); a resume continues with the
        next batch, loader position and shuffle included, and ends with the
        weights of an uninterrupted run.  Needs ``checkpoint_dir``.  Under
        data parallelism a time is checked on rank 0 every 16 steps.
    log_dir : str, optional
        Write TensorBoard event files there (a :class:`~bigdl.train.TensorBoardLogger`):
        train and validation loss, the metrics, samples/s and the learning rate
        per epoch, the smoothed batch loss, the hyperparameters.  Local path or
        fsspec URL, written from where the loop runs (a worker): any local path
        serves a LocalCluster; a remote cluster needs a URL the caller can read.
    early_stopping : int, optional
        Stop when the validation loss has not improved for this many epochs
        (needs a validation split).
    restore_best : bool, optional
        End with the weights of the epoch of lowest validation loss, not the
        last epoch's (a CPU copy of its ``state_dict`` is kept while
        training; after a resume, the best epoch's checkpoint is read when
        it came before the resume).  Default: True with ``early_stopping``,
        else False; True without early stopping trains every epoch and
        keeps the best.  Needs a validation split.  :attr:`best_epoch_` and
        the history's ``best`` flag say which epoch it was.  Checkpoints
        still hold each epoch's own weights, so a resume continues training
        from the last one.  Tabular, image and sequence stores alike.
    seed : int, default 0
        Seeds weights' updates order: data order and dropout.  The same seed,
        store, initial weights and settings give bitwise the same weights in
        process and on any worker, whatever the worker's allocator settings,
        as long as ``torch_threads`` and the device type match (see the
        README, "Same seed, same weights").  The caller's torch generators
        are left as they were.
    on_cluster : bool, default True
        Run the loop as a task on a worker of the current Dask cluster (when a
        client exists); False runs it in this process.
    n_workers : int, default 1
        Data-parallel training on this many Dask workers: one task per worker,
        joined with ``torch.distributed`` (gloo on CPU, nccl on GPU) and
        ``DistributedDataParallel``.  A step is ``batch_size * n_workers``
        samples of the loader's global order, shared among the ranks (each
        gets the same number of batches), so the steps are those of one
        process with that batch size.
    max_restarts : int, default 3
        Data parallelism: how many times a job that lost a worker starts
        again (from its last checkpoint, or from the start without
        ``checkpoint_dir``) before :class:`~bigdl.errors.TrainingError` ends it.
    restart_wait : float or str, default "60s"
        Data parallelism: after a loss, how long to wait for the cluster to
        have ``n_workers`` workers again (a nanny restarting the worker, or
        a replacement); after that the job goes on with the workers there
        are, at the same global batch size.
    torch_threads : int, optional
        Intra-op threads torch uses while training.  Default: one core fewer
        than the machine has (at most what torch would use anyway), leaving a
        core to the loader's read threads; torch's spinning threads competing
        with them made small models ten times slower on 2 cores.  Dask
        workers start with one thread (``OMP_NUM_THREADS=1``), so on a
        cluster this is usually 1, and in process too on a 2-core machine.
        The number of threads can change the floating-point results (how
        convolutions and large reductions are split): to get the same
        weights in process and on a worker, give both the same value.
    progress : bool, default True
        Show a progress bar (one tick per epoch) in the caller.
    loader_options : dict, optional
        Extra :class:`~bigdl.loaders.torch.ChunkLoader` options (``buffer_chunks``, ``prefetch``...)
        for the training loader only: ``{"augment": "crop+flip"}`` augments training batches, while
        validation and :meth:`evaluate` always read the stored images as they are.
    callbacks : list of bigdl.train.Callback, optional
        Told when training and each epoch begin and end, and after every
        batch (see :class:`~bigdl.train.Callback`); one may set
        ``loop.stop = True`` to end training after the epoch.  They run
        where the loop runs (a Dask worker by default), so they must pickle;
        changes they make there do not come back to this process.
    loop_class : type, optional
        A :class:`~bigdl.train.TrainingLoop` subclass to train with (to
        override ``train_step``, ``get_iterator``...); it must be importable
        on the workers.
    class_weight : None, "balanced" or dict, optional
        Classification stores only: weigh each class's samples in the loss,
        as ``torch.nn.CrossEntropyLoss(weight=...)``.  ``"balanced"`` is
        ``n_train / (n_classes * count)`` from the train split's class counts
        (:meth:`~bigdl.store.Dataset.class_counts`, one read of ``y``); a dict
        maps class labels (or codes) to weights, others weigh 1 (see
        :func:`bigdl.preprocessing.resolve_class_weight`).  The weights are
        resolved when ``fit`` starts, travel to the worker with the run and
        are part of its checkpoint identity (a resume with other weights is
        refused).  With a ``loss`` of your own it needs a
        ``torch.nn.CrossEntropyLoss`` or ``NLLLoss`` instance without a
        ``weight`` of its own (a copy of it gets the weights); any other
        callable is refused, as are regression stores.  The validation and
        :meth:`evaluate` losses are then the class-weighted mean too.

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` and the metrics
        (``val_accuracy``, ``val_balanced_accuracy``, ``val_roc_auc``, or
        ``val_mse``, ``val_mae``, ``val_r2``) when there is a validation
        split, ``samples_per_second``, ``seconds``, ``worker``, ``checkpoint``.
    class_weight_ : numpy.ndarray of shape (n_classes,) or None
        The class weights the last ``fit`` trained with, in class-code order
        (None: unweighted).
    best_epoch_ : int or None
        The epoch (1-based, as in :attr:`history`) of lowest validation loss
        in the last ``fit``, whose weights the model holds when
        ``restore_best`` is on; None without a validation split.

    Examples
    --------
    >>> trainer = Trainer(MLP(ds.n_features, [64, 64], ds.n_classes), epochs=5)  # doctest: +SKIP
    >>> trainer.fit(ds)                                                          # doctest: +SKIP
    >>> trainer.evaluate(ds, split="test")                                       # doctest: +SKIP
    {'loss': 0.21, 'accuracy': 0.93, 'balanced_accuracy': 0.93, 'roc_auc': 0.99, 'n_samples': 20077}
    """

    def __init__(self, model: nn.Module, *, optimizer="adam", lr: float | None = None, loss=None,
                 epochs: int = 10, batch_size: int = 256, device: str = "auto", checkpoint_dir: str | None = None,
                 early_stopping: int | None = None, restore_best: bool | None = None, seed: int = 0,
                 on_cluster: bool = True,
                 n_workers: int = 1, torch_threads: int | None = None, progress: bool = True,
                 loader_options: dict | None = None, callbacks: list | None = None, loop_class: type | None = None,
                 class_weight=None, checkpoint_every: int | str | None = None, max_restarts: int = 3,
                 restart_wait: float | str = "60s", log_dir: str | None = None):
        self.model = model
        self.optimizer = optimizer
        self.lr = lr
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.early_stopping = early_stopping
        self.restore_best = restore_best
        self.seed = seed
        self.on_cluster = on_cluster
        self.n_workers = n_workers
        self.torch_threads = torch_threads
        self.progress = progress
        self.loader_options = loader_options
        self.callbacks = callbacks
        self.loop_class = loop_class
        self.class_weight = class_weight
        self.checkpoint_every = checkpoint_every
        self.max_restarts = max_restarts
        self.restart_wait = restart_wait
        self.log_dir = log_dir
        self.history: list[dict] = []

    # ------------------------------------------------------------ fit
    def fit(self, ds, *, resume: bool = False) -> list[dict]:
        """Train on the ``train`` split of ``ds`` (a Dataset or store path); return the history.

        Parameters
        ----------
        ds : Dataset or str
            The store; its sample view gives the samples (rows, normalised
            images, windows), its validation split the per-epoch metrics.
        resume : bool, default False
            Continue after the last checkpoint in ``checkpoint_dir`` (nothing
            happens if it already covers ``epochs``); the checkpoint must be
            this run's (same model, optimizer, store, seed), else a
            :class:`~bigdl.errors.CheckpointError` says what differs.

        Returns
        -------
        list of dict
            :attr:`history`.

        Raises
        ------
        SchemaError
            Parameters that do not fit the store (loss, shapes, classes).
        EmptyResultError
            The store has no training samples (and why).
        TrainingError
            A data-parallel job lost workers more than ``max_restarts`` times,
            or no worker was left to go on with.

        On a cluster, when the worker running the loop dies (killed, out of
        memory), Dask reschedules the task on another worker (up to
        ``distributed.scheduler.allowed-failures`` times, 3 by default) and,
        with ``checkpoint_dir`` set, it continues from this run's last
        checkpoint: the weights equal an uninterrupted run's.  A
        data-parallel job (its tasks are pinned to their workers) starts
        again on the workers there are, up to ``max_restarts`` times, and
        continues the same global order from its last checkpoint.
        """
        ds = ds if isinstance(ds, Dataset) else open_store(ds)
        spec = self._spec(ds)
        if resume and not self.checkpoint_dir:
            raise SchemaError("fit(resume=True) needs checkpoint_dir= to find the last checkpoint.")
        if self.checkpoint_every is not None and not self.checkpoint_dir:
            raise SchemaError("checkpoint_every= needs checkpoint_dir= to write the checkpoints to.")
        client = self._client()
        run_id = uuid.uuid4().hex[:8]
        bar = _EpochBar(self.epochs, enabled=self.progress)
        try:
            if self.n_workers > 1:
                if client is None:
                    raise SchemaError("n_workers > 1 needs a Dask cluster: start one with bigdl.cluster.start_local() "
                                      "or connect(), and leave on_cluster=True.")
                result = self._fit_data_parallel(client, spec, str(ds.path), resume, run_id, bar)
            elif client is not None:
                result = self._fit_on_cluster(client, spec, str(ds.path), resume, run_id, bar)
            else:
                # The loop seeds torch's generators: forked, the caller's stay as they were (as with a
                # worker's), so the next model built here gets the same initial weights either way.
                cuda = range(torch.cuda.device_count()) if _device(self.device).type == "cuda" else []
                with torch.random.fork_rng(devices=cuda):
                    result = _run(spec, str(ds.path), resume, run_id, bar.update)
        finally:
            bar.close()
        self.model.load_state_dict(result["model"])
        self.history = result["history"]
        self.best_epoch_ = result.get("best_epoch")
        self.task_ = ds.task  # predict on plain arrays then knows to give class codes
        self.class_weight_ = None if spec["class_weight"] is None else np.asarray(spec["class_weight"])
        return self.history

    def _client(self):
        if not self.on_cluster:
            return None
        from bigdl.runtime import active_client

        return active_client()

    def _fit_on_cluster(self, client, spec, path, resume, run_id, bar):
        from bigdl.runtime import run_on_workers

        return run_on_workers(client, _run_on_worker, [(spec, path, resume, run_id)], key=f"bigdl-train-{run_id}",
                              topic=f"{EVENT_TOPIC}-{run_id}", on_event=bar.update)[0]

    def _fit_data_parallel(self, client, spec, path, resume, run_id, bar):
        from dask.utils import parse_timedelta

        from bigdl.runtime import run_on_workers

        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if len(workers) < self.n_workers:
            raise SchemaError(f"n_workers={self.n_workers} but the cluster has only {len(workers)} workers; "
                              "start more workers or lower n_workers.")
        # The step stays batch_size * n_workers samples whatever the number of ranks after a restart.
        spec = dict(spec, loader_options={**spec["loader_options"],
                                          "global_batch_size": self.batch_size * self.n_workers})
        chosen, losses = workers[:self.n_workers], []
        for attempt in range(self.max_restarts + 1):
            host = chosen[0].split("://", 1)[-1].rsplit(":", 1)[0]
            port = client.run(_free_port, workers=[chosen[0]])[chosen[0]]
            world = {"world_size": len(chosen), "init_method": f"tcp://{host}:{port}"}
            # After a restart the run's own checkpoint is found by its run id (as a rescheduled task does).
            calls = [(dict(spec, world=dict(world, rank=rank)), path, resume and attempt == 0, run_id)
                     for rank in range(len(chosen))]
            try:
                results = run_on_workers(client, _run_on_worker, calls, key=f"bigdl-train-{run_id}-{attempt}",
                                         topic=f"{EVENT_TOPIC}-{run_id}", on_event=bar.update, workers=chosen)
                return results[0]
            except Exception as error:
                lost = _lost_workers(client, chosen, patience=10.0 if _collective_failed(error) else 0.0)
                if not lost:
                    raise
                losses.append(_lost_message(lost, chosen, self.checkpoint_dir, bar.epochs_done))
                if attempt == self.max_restarts:
                    raise TrainingError(f"{losses[-1]} It started again {self.max_restarts} time(s) (max_restarts="
                                        f"{self.max_restarts}) and lost a worker each time.") from error
                chosen = _workers_after_loss(client, self.n_workers, lost,
                                             parse_timedelta(self.restart_wait, default="seconds"))
                if not chosen:
                    raise TrainingError(f"{losses[-1]} No worker was left to go on with after waiting "
                                        f"{self.restart_wait} (restart_wait=).") from error
                print(f"bigdl: {losses[-1].split(';')[0]}; starting again on {len(chosen)} worker(s) from "
                      f"{_latest(self.checkpoint_dir) or 'the start'}.", file=sys.stderr)
        raise AssertionError("unreachable")  # pragma: no cover

    def _spec(self, ds: Dataset) -> dict:
        """Validate parameters against the store; everything the loop needs, picklable."""
        check_params("Trainer", {name: getattr(self, name) for name in TRAINER_CONSTRAINTS}, TRAINER_CONSTRAINTS)
        if ds.task is None:
            raise SchemaError(f"The store {str(ds.path)!r} has no target, so there is nothing to train on.")
        loss = self._loss_for(ds)
        if isinstance(loss, str):
            if loss in CLASSIFICATION_LOSSES and ds.task != "classification":
                raise SchemaError(f"loss={loss!r} is a classification loss but the store {str(ds.path)!r} holds "
                                  "regression targets; use loss='mse' (or 'l1', 'huber').")
            if loss in REGRESSION_LOSSES and ds.task != "regression":
                raise SchemaError(f"loss={loss!r} is a regression loss but the store {str(ds.path)!r} holds "
                                  f"classification targets ({ds.n_classes} classes); use loss='cross_entropy'.")
        if not ds.view.chunk_counts("train").sum():
            message = f"Trainer has nothing to train on in the store {str(ds.path)!r}: {ds.view.why_empty('train')}."
            raise EmptyResultError(message, public=message)
        _check_model_shapes(self.model, ds)
        if self.early_stopping is not None and not ds.split_counts.get("validation"):
            raise SchemaError("early_stopping needs a validation split: ingest with validation=0.1 (for example).")
        restore_best = self.early_stopping is not None if self.restore_best is None else bool(self.restore_best)
        if restore_best and self.restore_best and not ds.split_counts.get("validation"):
            raise SchemaError("restore_best=True needs a validation split to tell the best epoch: ingest with "
                              "validation=0.1 (for example).")
        class_weight = self._class_weights(ds, loss)
        return {
            "model": self.model, "optimizer": self.optimizer, "lr": self.lr, "loss": loss,
            "epochs": self.epochs, "batch_size": self.batch_size, "device": self.device,
            "checkpoint_dir": os.fspath(self.checkpoint_dir) if self.checkpoint_dir is not None else None,
            "early_stopping": self.early_stopping, "restore_best": restore_best, "seed": self.seed,
            "task": ds.task, "loader_options": dict(self.loader_options or {}), "world": None,
            "torch_threads": self.torch_threads, "callbacks": list(self.callbacks or ()) + self._trackers(loss),
            "loop_class": self.loop_class or TrainingLoop,
            # Plain floats: the weights travel with the spec to the worker and into the checkpoint identity.
            "class_weight": None if class_weight is None else [float(weight) for weight in class_weight],
            "checkpoint_every": self.checkpoint_every,
        }

    def _loss_for(self, ds: Dataset):
        """The loss to train with: the given one, else by task (a quantile model: its QuantileLoss)."""
        quantiles = getattr(self.model, "quantiles", None)
        if quantiles is None:
            return self.loss or ("cross_entropy" if ds.task == "classification" else "mse")
        from bigdl.train._quantile import QuantileLoss

        if self.loss is None:
            return QuantileLoss(quantiles)
        if not isinstance(self.loss, QuantileLoss) or list(self.loss.quantiles) != list(quantiles):
            raise SchemaError(f"The model forecasts the quantiles {quantiles}, so it trains with "
                              f"QuantileLoss({quantiles}); got loss={self.loss!r}. Leave loss=None (the default) "
                              "or pass that QuantileLoss.")
        return self.loss

    def _quantiles(self) -> list[float] | None:
        """The quantiles the model forecasts (a last output axis), or None for point forecasts."""
        return getattr(self.model, "quantiles", None) or getattr(self.loss, "quantiles", None)

    def _trackers(self, loss) -> list:
        """The TensorBoard logger of ``log_dir`` (none without it)."""
        if self.log_dir is None:
            return []
        from bigdl.train._trackers import TensorBoardLogger

        named = {"epochs": self.epochs, "loss": loss if isinstance(loss, str) else type(loss).__name__,
                 "class_weight": str(self.class_weight), "n_workers": self.n_workers}
        return [TensorBoardLogger(self.log_dir, hparams=named)]

    def _class_weights(self, ds: Dataset, loss) -> np.ndarray | None:
        """``class_weight`` resolved against the store's classes (and train counts, for "balanced")."""
        if self.class_weight is None:
            return None
        if ds.task != "classification":
            raise ParameterError(f"The 'class_weight' parameter of Trainer weighs classes, but the store "
                                 f"{str(ds.path)!r} holds regression targets; leave class_weight=None.")
        balanced = isinstance(self.class_weight, str)
        counts = ds.class_counts("train") if balanced else np.zeros(ds.n_classes, dtype=np.int64)
        weights = resolve_class_weight(self.class_weight, ds.classes, counts, owner="Trainer")
        _loss_function(loss, weights, owner="Trainer")  # refuses a loss that cannot take them, before any work
        return weights

    # ------------------------------------------------------------ evaluate / predict
    def evaluate(self, ds, split: str = "test", *, season: int | None = None) -> dict:
        """Loss and metrics of the model on one split: accuracy, balanced accuracy, ROC-AUC, or MSE / MAE / R2.

        One pass over the split in batches; memory does not grow with it (the
        classification metrics are counts: see
        :class:`bigdl.train._metrics.ClassificationMetrics`).

        Parameters
        ----------
        ds : Dataset or str
        split : str, default "test"
        season : int, optional
            Sequence stores: steps per season for the seasonal-naive baseline
            and MASE's scale (default from the grid: 12 for months, 4 for
            quarters, 52 for weeks, 7 for days, 24 for hours, else 1).

        Returns
        -------
        dict
            ``loss`` (the training loss, class-weighted when ``class_weight``
            is set) and, for classification, ``accuracy``,
            ``balanced_accuracy`` (mean recall over the classes present) and
            ``roc_auc`` (of the positive class's probability when binary,
            else one-vs-rest macro over the softmax probabilities; binned,
            within about 1e-4 of the exact value, NaN when a class is absent
            from the split), or for regression ``mse``, ``mae``, ``r2`` (over
            every target value); and ``n_samples``.

            For a sequence store the figures are a forecaster's, in the
            target's **original units**: ``mse``, ``mae``, ``mase``,
            ``smape`` (percent), ``mae_by_step``, ``season``, the same for
            the ``baselines`` ``naive`` (last value) and ``seasonal_naive``
            on the same windows, and ``skill`` (``1 - mase /
            baselines["seasonal_naive"]["mase"]``); see
            :func:`bigdl.train._forecast.forecast_metrics`.  The scaled-unit
            figures are ``mse_scaled``, ``mae_scaled``, ``r2_scaled`` (and
            ``loss``, which is in scaled units; so are the history's
            ``val_*`` figures).
        """
        ds = ds if isinstance(ds, Dataset) else open_store(ds)
        spec = self._spec(ds)
        device = _device(self.device)
        criterion = _loss_function(spec["loss"], spec["class_weight"], owner="Trainer", device=device)
        loop = TrainingLoop(self.model.to(device), None, criterion, task=spec["task"],
                            device=device, batch_size=spec["batch_size"])
        result = _evaluate(loop, ds, split)
        if ds.kind != "sequence":
            return result
        from bigdl.train._forecast import forecast_metrics

        check_params("Trainer.evaluate", {"season": season}, {"season": [Interval(int, 1, None), None]})
        scaled = {f"{name}_scaled": result.pop(name) for name in ("mse", "mae", "r2")}
        predictor = ModulePredictor(self.model, classify=False)
        return {"loss": result["loss"], **forecast_metrics(predictor, ds, split, season, quantiles=self._quantiles()),
                **scaled,
                "n_samples": result["n_samples"]}

    def predict(self, data, *, split: str | None = None):
        """Model outputs chunk by chunk: a dask array in (or a store's samples), a dask array out.

        Classification gives class codes (``ds.classes[code]`` is the label);
        use :meth:`predict_proba` for probabilities.  NumPy arrays and tensors
        are predicted directly and give NumPy arrays.

        Parameters
        ----------
        data : Dataset, str, dask array, ndarray or tensor
            A store is read through its sample view, like :meth:`fit` and
            :meth:`evaluate`: normalised images, windows of sequences.
        split : str, optional
            A store's split; default all samples.

        Returns
        -------
        dask array, ndarray or xarray.Dataset
            One output (or class code) per sample.  For a sequence store, a
            lazy ``xarray.Dataset`` of one forecast per window: ``forecast``
            and ``actual`` in the target's **original units**
            (``forecast_scaled`` as the model gave it), with coordinates
            ``series``, ``origin`` (the time of the window's last input
            step) and ``time`` (each step's target time); dimensions
            ``window``, ``step`` (and ``target`` for several targets).  See
            :func:`bigdl.train._forecast.sequence_forecasts`.
        """
        return self._predict(data, split, probabilities=False)

    def forecast(self, ds, horizon: int | None = None, series=None, *, future: dict | None = None):
        """Forecasts past the end of each series of a sequence store, with their future timestamps.

        Each series' last ``window`` steps (whose next steps are not in the
        store) go through the model; the forecasts are given the grid times
        that follow the series' last time (month starts after a month-start
        series, the next hours of an hourly one), in the target's
        **original units**.  One Dask task per group of neighbouring series
        (each reads its series' last windows only); the result is lazy.

        Parameters
        ----------
        ds : Dataset or str
            A sequence store.
        horizon : int, optional
            Steps to forecast; default the store's (the model's) horizon.  A
            shorter one keeps the first steps; a longer one is forecast
            **recursively**: the model forecasts its horizon, its forecasts
            take the place of the targets' next steps, and it forecasts again
            from the last ``window`` steps, until ``horizon`` steps are
            forecast.  That needs every input channel to be a target (the
            future of another channel is unknown): otherwise it is refused.
        series : str or list of str, optional
            The series to forecast (names, as in ``ds.attrs["series"]["names"]``);
            default all.
        future : dict, optional
            For a store with ``known_future`` channels: each one's future
            values in original units, an array ``(n_series, model horizon)``
            (the series in the order forecast).  Calendar features need
            nothing: they come from the future times.  A window with a
            decoder part is not forecast recursively (``horizon`` at most
            the model's).

        Returns
        -------
        xarray.Dataset
            The layout of :meth:`predict`'s (dimensions ``window``, one per
            series, ``step`` and, with several targets, ``target``):
            ``forecast`` (original units) and ``forecast_scaled``;
            coordinates ``series``, ``origin`` (the series' last observed
            time) and ``time`` (the forecast steps' times).  Attribute
            ``recursive`` says whether the forecasts were fed back.

        Raises
        ------
        ParameterError
            A horizon that is not an int >= 1, a series the store does not
            have, or a recursive horizon on a store whose inputs include
            channels that are not forecast.
        SchemaError
            Not a sequence store, or (when computed) a series whose last
            ``window`` steps hold a gap or that is shorter than a window.

        Examples
        --------
        >>> future = trainer.forecast(ds, horizon=24).compute()               # doctest: +SKIP
        >>> future["forecast"].sel(window=0).to_series()                      # doctest: +SKIP
        """
        from bigdl.train._forecast import future_forecasts

        ds = ds if isinstance(ds, Dataset) else open_store(ds)
        if ds.kind != "sequence":
            raise SchemaError(f"Trainer.forecast forecasts past the end of sequence stores; {str(ds.path)!r} is a "
                              f"{ds.kind} store (use predict).")
        check_params("Trainer.forecast", {"horizon": horizon, "series": series, "future": future},
                     {"horizon": [Interval(int, 1, None), None], "series": [str, list, None],
                      "future": [dict, None]})
        self._check_store_model(ds)
        view = ds.view
        model_horizon = int(view.windows["horizon"])
        horizon = model_horizon if horizon is None else int(horizon)
        channels, targets = list(ds.feature_names), list(ds.window["targets"])
        if horizon > model_horizon and set(channels) - set(targets) and not view.decoder:
            others = [name for name in channels if name not in targets]
            raise ParameterError(
                f"The 'horizon' parameter of Trainer.forecast is {horizon}, longer than the model's horizon "
                f"{model_horizon}: forecasting it recursively needs the future of the input channels {others}, "
                f"which the model does not forecast. Use horizon <= {model_horizon}, or train a model whose "
                f"targets are every channel (ingest with target={channels}) or whose horizon is {horizon}.")
        codes = self._series_codes(ds, series)
        known = self._known_future(ds, future, len(codes), horizon)
        return future_forecasts(ModulePredictor(self.model, classify=False), ds, horizon, codes,
                                quantiles=self._quantiles(), known=known)

    @staticmethod
    def _known_future(ds: Dataset, future: dict | None, n_series: int, horizon: int) -> dict | None:
        """``future=`` checked against the store's known-future channels: arrays ``(n_series, model horizon)``."""
        view = ds.view
        if not view.decoder:
            if future:
                raise ParameterError(f"The 'future' parameter of Trainer.forecast gives {sorted(future)}, but the "
                                     f"store {str(ds.path)!r} has no known_future channels; leave it out.")
            return None
        model_horizon = int(view.windows["horizon"])
        if horizon > model_horizon:
            raise ParameterError(f"The 'horizon' parameter of Trainer.forecast is {horizon}, but windows with a "
                                 f"decoder part (known_future / calendar) are forecast at most {model_horizon} steps "
                                 "ahead (no recursion); use a smaller horizon.")
        wanted = list(view.windows.get("known_future") or ())
        future = dict(future or {})
        if sorted(future) != sorted(wanted):
            raise ParameterError(f"The 'future' parameter of Trainer.forecast must give the future values of the "
                                 f"known_future channels {wanted}; got {sorted(future)}.")
        arrays = {}
        for name in wanted:
            values = np.asarray(future[name], dtype=np.float64)
            if values.shape != (n_series, model_horizon) or not np.isfinite(values).all():
                raise ParameterError(f"future[{name!r}] of Trainer.forecast must be finite numbers of shape "
                                     f"({n_series}, {model_horizon}) (series forecast, model horizon); got shape "
                                     f"{values.shape}.")
            arrays[name] = values
        return arrays

    @staticmethod
    def _series_codes(ds: Dataset, series) -> np.ndarray:
        """The codes of the series named by ``series`` (all of them for None)."""
        names = [str(name) for name in ds.attrs.get("series", {}).get("names") or [""]]
        if series is None:
            return np.arange(len(names), dtype=np.int64)
        wanted = [series] if isinstance(series, str) else list(series)
        index = {name: code for code, name in enumerate(names)}
        missing = [name for name in wanted if str(name) not in index]
        if missing or not wanted:
            raise ParameterError(f"The 'series' parameter of Trainer.forecast names series the store "
                                 f"{str(ds.path)!r} does not have: {missing[:5] or wanted!r}. Its series are "
                                 f"{names[:5]}{' ...' if len(names) > 5 else ''} (ds.attrs['series']['names']).")
        return np.asarray([index[str(name)] for name in wanted], dtype=np.int64)

    def predict_proba(self, data, *, split: str | None = None):
        """Class probabilities (softmax of the outputs), chunk by chunk.

        Parameters
        ----------
        data : Dataset, str, dask array, ndarray or tensor
            As in :meth:`predict`.
        split : str, optional

        Returns
        -------
        dask array or ndarray of shape (n_samples, n_classes)
        """
        return self._predict(data, split, probabilities=True)

    def _predict(self, data, split, probabilities):
        from bigdl.loaders._predict import as_samples, predict_blocks

        X, _, ds = as_samples(data, split)
        classify = self._task_of(ds if ds is not None else X) == "classification"
        predictor = ModulePredictor(self.model, classify=classify, probabilities=probabilities)
        if ds is not None and ds.kind == "sequence" and not probabilities:
            from bigdl.train._forecast import sequence_forecasts

            self._check_store_model(ds)
            return sequence_forecasts(predictor, ds, split or "all", quantiles=self._quantiles())
        if ds is None and not hasattr(X, "dask"):
            return predictor(np.asarray(X))
        if classify and not probabilities:
            tail, dtype = (), np.int64
        else:
            sample_shape = ds.sample_shape if ds is not None else X.shape[1:]
            width = _output_shape(predictor.module, sample_shape)
            tail, dtype = (width if width != (1,) else ()), np.float32
        return predict_blocks(predictor, X, tail=tail, dtype=dtype, name="bigdl-predict")

    def _check_store_model(self, ds: Dataset) -> None:
        """The model fits the store's windows (shapes, residual target channels): fail before any task runs."""
        _check_model_shapes(self.model, ds)

    def _task_of(self, data) -> str | None:
        if isinstance(data, Dataset):
            return data.task
        if getattr(self, "task_", None) is not None:
            return self.task_
        loss = self.loss
        if loss is None:
            out = getattr(self.model, "out_features", None) or getattr(self.model, "n_classes", None)
            return "classification" if out and out > 1 else "regression"
        return "classification" if loss in CLASSIFICATION_LOSSES else "regression"

    def plot_history(self, path) -> str:
        """Save the learning curves (train/validation loss and the metric per epoch) as a PNG.

        Parameters
        ----------
        path : str or path
            Where to write the PNG.

        Returns
        -------
        str
            The path written.
        """
        from bigdl.train._plot import plot_history

        return plot_history(self.history, path)

    def __repr__(self) -> str:
        return (f"Trainer(model={type(self.model).__name__}, optimizer={self.optimizer!r}, epochs={self.epochs}, "
                f"batch_size={self.batch_size})")


# ------------------------------------------------------------------ the loop
def _run_on_worker(spec: dict, path: str, resume: bool, run_id: str) -> dict:
    from distributed import get_worker

    worker = get_worker()
    topic = f"{EVENT_TOPIC}-{run_id}"

    rank = (spec.get("world") or {}).get("rank", 0)

    def report(message: dict) -> None:
        if rank != 0:  # one voice per job; rank 0's figures are the job's
            return
        message = dict(message, worker=worker.address, run=run_id, time=time.time())
        worker.log_event([topic, EVENT_TOPIC], message)

    try:
        result = _run(spec, path, resume, run_id, report, worker_name=worker.address)
    except BaseException as error:  # the dashboard shows the job failed, and why
        report({"kind": "failed", "error": public_message(error, limit=1000)})  # no data values on the dashboard
        raise
    report({"kind": "finished", "epoch": len(result["history"])})
    return result


def _run(spec: dict, path: str, resume: bool, run_id: str, report: Callable[[dict], None],
         worker_name: str = "local") -> dict:
    ds = open_store(path)
    device = _device(spec["device"])
    torch.manual_seed(spec["seed"])
    world = spec.get("world")
    rank, world_size = (world["rank"], world["world_size"]) if world else (0, 1)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(_torch_threads(spec.get("torch_threads")))
    model = spec["model"].to(device)
    trained = model
    if world:
        import datetime

        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=world["init_method"],
                                rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=10))
        trained = nn.parallel.DistributedDataParallel(model)
    try:
        return _loop(spec, ds, model, trained, device, rank, world_size, resume, report, worker_name, run_id)
    finally:
        torch.set_num_threads(threads_before)
        if world:
            import torch.distributed as dist

            dist.destroy_process_group()


def _loop(spec, ds, model, trained, device, rank, world_size, resume, report, worker_name, run_id=None) -> dict:
    optimizer = _optimizer(spec["optimizer"], spec["lr"], trained)
    batches = BatchLossReporter(report, ds.split_counts.get("train"), world_size=world_size)
    criterion = _loss_function(spec["loss"], spec.get("class_weight"), owner="Trainer", device=device)
    loop = spec.get("loop_class", TrainingLoop)(
        model, optimizer, criterion, task=spec["task"], device=device,
                        callbacks=[_LiveLoss(batches), *spec.get("callbacks", ())], trained=trained,
                        batch_size=spec["batch_size"], seed=spec["seed"], loader_options=spec["loader_options"],
                        rank=rank, world_size=world_size)
    loader = loop.get_iterator(ds, split="train", training=True)
    start_epoch, partial = 0, None
    identity = run_identity(model, optimizer, ds, seed=spec["seed"], batch_size=spec["batch_size"],
                            class_weight=spec.get("class_weight"))
    # A task that finds a checkpoint of its own run is a rescheduled attempt
    # (its worker died): it carries on from there, like resume=True.
    found = checkpoint_to_resume(spec["checkpoint_dir"], resume=resume, run_id=run_id,
                                 identity=identity) if spec["checkpoint_dir"] else None
    if found is not None:
        latest, state = found
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        loader.load_state_dict(state["loader"])
        loop.history = state["history"]
        # An epoch's end saves the loader at the next epoch's start; a step checkpoint at its position.
        start_epoch = int(state["loader"]["epoch"]) if "loader" in state else state["epoch"] + 1
        partial = state.get("partial")
        # "epoch": the last finished epoch (0-based), as the progress bar and the dashboard count
        report({"kind": "resumed", "epoch": len(loop.history) - 1, "checkpoint": latest})
    history = loop.history
    has_validation = bool(ds.split_counts.get("validation"))
    report({"kind": "started", "epochs": spec["epochs"], "model": type(model).__name__, "store": str(ds.path),
            "task": spec["task"], "train_samples": ds.split_counts.get("train"), "batch_size": spec["batch_size"],
            "ranks": world_size})
    best, since_best = math.inf, 0
    best_epoch, best_weights = None, None  # the best epoch's weights: a CPU copy (restore_best)
    for entry in history:
        if entry.get("val_loss") is not None and entry["val_loss"] < best:
            best, since_best, best_epoch = entry["val_loss"], 0, entry["epoch"]
        elif entry.get("val_loss") is not None:
            since_best += 1
    if spec.get("checkpoint_every") is not None:
        loop.callbacks.append(_StepCheckpoints(spec, loader, identity, run_id, rank, world_size))
    loop.notify("on_train_begin")
    for epoch in range(start_epoch, spec["epochs"]):
        if loop.stop or (spec["early_stopping"] is not None and since_best >= spec["early_stopping"]):
            break
        started = time.perf_counter()
        loader.set_epoch(epoch)
        start, before = (0.0, 0), 0.0
        if partial is not None and epoch == start_epoch:
            # rank 0 carries the steps taken before the resume (summed over the ranks of that run)
            start = (partial["loss_sum"], partial["samples"]) if rank == 0 else (0.0, 0)
            before = float(partial["seconds"])
        train_loss, n_seen = loop.train_epoch(loader, epoch, start=start)
        seconds = time.perf_counter() - started + before
        entry = {"epoch": epoch + 1, "train_loss": train_loss, "samples_per_second": n_seen / max(seconds, 1e-9),
                 "seconds": seconds, "worker": worker_name}
        if world_size > 1:
            entry["ranks"] = world_size
        if has_validation:
            metrics = _evaluate(loop, ds, "validation")
            entry.update({f"val_{name}": value for name, value in metrics.items() if name != "n_samples"})
            if metrics["loss"] < best:
                best, since_best, best_epoch = metrics["loss"], 0, epoch + 1
                if spec.get("restore_best"):
                    best_weights = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
            else:
                since_best += 1
        history.append(entry)
        if spec["checkpoint_dir"] and rank == 0:
            loader.set_epoch(epoch + 1)
            # The path goes into the history before the history is saved in it.
            entry["checkpoint"] = checkpoint_path(spec["checkpoint_dir"], epoch)
            save_checkpoint(spec["checkpoint_dir"], epoch, {
                "epoch": epoch, "run": run_id, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "loader": loader.state_dict(), "history": history,
                "identity": identity,
            })
        loop.notify("on_epoch_end", entry)
        report({"kind": "epoch", "epochs": spec["epochs"], **entry, "batch_loss": batches.smoothed_loss})
    for entry in history:  # which epoch was best, once it is known
        if "val_loss" in entry:
            entry["best"] = entry["epoch"] == best_epoch
    if spec.get("restore_best") and best_epoch is not None:
        _restore_best(model, best_weights, best_epoch, history, device)
    loop.notify("on_train_end")
    return {"model": {key: value.cpu() for key, value in model.state_dict().items()}, "history": history,
            "best_epoch": best_epoch}


def _restore_best(model, best_weights, best_epoch: int, history: list[dict], device) -> None:
    """Load the best epoch's weights: the copy kept in this run, else (it came before a resume) its checkpoint."""
    if best_weights is None:
        from bigdl.train._checkpoint import load_checkpoint

        path = next((entry.get("checkpoint") for entry in history if entry["epoch"] == best_epoch), None)
        if path is None:
            raise TrainingError(f"restore_best: the best epoch ({best_epoch}) came before this resume and has no "
                                "checkpoint to read its weights from.")
        best_weights = load_checkpoint(path)["model"]
    model.load_state_dict({key: value.to(device) for key, value in best_weights.items()})


class _StepCheckpoints(Callback):
    """Checkpoints within epochs: every N steps, or when T seconds have passed (``checkpoint_every``).

    All ranks take part (they add up the epoch's running loss); rank 0 writes.
    Under data parallelism a time is checked on rank 0 and broadcast every
    ``CHECK_EVERY`` steps, so every rank agrees on the step.
    """

    CHECK_EVERY = 16

    def __init__(self, spec: dict, loader, identity: dict, run_id: str | None, rank: int, world_size: int):
        from dask.utils import parse_timedelta

        every = spec["checkpoint_every"]
        self.steps = every if isinstance(every, int) else None
        self.seconds = None if self.steps is not None else parse_timedelta(every)
        self.spec, self.loader, self.identity, self.run_id = spec, loader, identity, run_id
        self.rank, self.world_size = rank, world_size
        self._since, self._last, self._started = 0, time.monotonic(), time.perf_counter()

    def on_epoch_begin(self, loop, epoch: int) -> None:
        self._epoch, self._started = epoch, time.perf_counter()
        self._seconds_before = 0.0

    def _due(self, state: dict) -> bool:
        if self.steps is not None:  # steps of the epoch, so a resumed run checkpoints where the first one did
            return (state["sample_in_epoch"] // state["global_batch_size"]) % self.steps == 0
        self._since += 1
        if self.world_size == 1:
            return time.monotonic() - self._last >= self.seconds
        if self._since % self.CHECK_EVERY:
            return False
        import torch.distributed as dist

        flag = torch.tensor([float(time.monotonic() - self._last >= self.seconds)])
        dist.broadcast(flag, src=0)  # rank 0's clock decides for all
        return bool(flag[0])

    def on_batch_end(self, loop, loss: float, n_samples: int) -> None:
        state = self.loader.state_dict()
        if state["epoch"] != self._epoch or not self._due(state):  # the epoch's last step: its end checkpoint follows
            return
        self._since, self._last = 0, time.monotonic()
        totals = torch.tensor([loop.epoch_loss_sum, float(loop.epoch_samples)], dtype=torch.float64)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(totals)
        if self.rank != 0:
            return
        step = state["sample_in_epoch"] // state["global_batch_size"]
        save_checkpoint(self.spec["checkpoint_dir"], self._epoch, {
            "epoch": self._epoch, "run": self.run_id, "model": loop.module.state_dict(),
            "optimizer": loop.optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "loader": state,
            "history": loop.history, "identity": self.identity,
            "partial": {"loss_sum": float(totals[0]), "samples": int(totals[1]),
                        "seconds": time.perf_counter() - self._started},
        }, step=step)


class _LiveLoss(Callback):
    """Puts the smoothed batch loss on the dashboard (the ``batch`` events of the train topic)."""

    def __init__(self, reporter: BatchLossReporter):
        self.reporter = reporter

    def on_epoch_begin(self, loop, epoch: int) -> None:
        self.reporter.start_epoch(epoch)

    def on_batch_end(self, loop, loss: float, n_samples: int) -> None:
        self.reporter(loss, n_samples)


def _evaluate(loop: TrainingLoop, ds: Dataset, split: str) -> dict:
    """Loss and metrics of ``loop.module`` on ``split``: see :meth:`Trainer.evaluate`."""
    if not ds.split_counts.get(split):
        raise SchemaError(f"The store {str(ds.path)!r} has no {split!r} rows (splits: {ds.split_counts}).")
    model = loop.module
    was_training = model.training
    model.eval()
    classify = loop.task == "classification"
    quantiles = getattr(loop.criterion, "quantiles", None)
    total_loss, loss_weight, count = 0.0, 0.0, 0
    metrics = ClassificationMetrics(ds.n_classes) if classify else None
    sum_y = sum_y2 = sum_err2 = sum_abs = 0.0
    n_values = 0  # target values: a sample holds several for multi-step or multi-output targets
    with torch.no_grad():
        for X, y in loop.evaluation_iterator(ds, split):
            output, target = loop.evaluation_step(X, y)
            weight = mean_loss_weight(loop.criterion, target)
            total_loss += float(loop.criterion(output, target)) * weight
            loss_weight += weight
            count += len(X)
            if classify:
                # float64 softmax: the ROC-AUC histograms keep scores near 0 and 1 apart.
                metrics.update(torch.softmax(output.double(), dim=1), target, predicted=output.argmax(1))
            else:
                if quantiles and output.dim() == target.dim() + 1:  # a quantile forecast: its median is the point
                    output = output[..., median_index(quantiles)]
                error = (output.reshape(-1) - target.reshape(-1)).double()
                values = target.reshape(-1).double()
                sum_err2 += float((error ** 2).sum())
                sum_abs += float(error.abs().sum())
                sum_y += float(values.sum())
                sum_y2 += float((values ** 2).sum())
                n_values += values.numel()
    model.train(was_training)
    result = {"loss": total_loss / loss_weight if loss_weight else 0.0}
    if classify:
        result.update(metrics.result())
    else:
        variance = sum_y2 - sum_y ** 2 / max(n_values, 1)
        result.update({"mse": sum_err2 / max(n_values, 1), "mae": sum_abs / max(n_values, 1),
                       "r2": 1.0 - sum_err2 / variance if variance > 0 else float("nan")})
    result["n_samples"] = count
    return result


class ModulePredictor:
    """A picklable ``predict(numpy samples) -> numpy`` for a torch module (a CPU copy, in eval mode).

    Classification gives class codes (or softmax probabilities); regression
    the outputs, one value per sample squeezed to 1-D.  Rows go through the
    module in batches of ``batch_rows`` so activations stay bounded.
    """

    batch_rows = 8192

    def __init__(self, module: nn.Module, *, classify: bool, probabilities: bool = False):
        self.module = copy.deepcopy(module).cpu().eval()
        self.classify, self.probabilities = classify, probabilities

    def __call__(self, block: np.ndarray) -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(block), self.batch_rows):
                batch = torch.from_numpy(np.ascontiguousarray(block[start:start + self.batch_rows], dtype=np.float32))
                outputs.append(self.module(batch))
        output = torch.cat(outputs) if outputs else torch.empty(0)
        if self.classify:
            if self.probabilities:
                return torch.softmax(output, dim=1).numpy().astype(np.float32)
            return output.argmax(1).numpy().astype(np.int64)
        output = output.numpy().astype(np.float32)
        return output.reshape(len(block)) if output.ndim == 2 and output.shape[1] == 1 else output


def _dry_run(model, sample_shape) -> torch.Tensor:
    """The model's outputs for two zero samples of ``sample_shape`` (in eval mode, no gradients)."""
    with torch.no_grad():
        was_training = model.training
        model.eval()
        try:
            return model(torch.zeros((2, *sample_shape), dtype=torch.float32))
        finally:
            model.train(was_training)


def _output_shape(model, sample_shape) -> tuple:
    """Per-sample output shape of ``model`` (``(1,)`` for a scalar per sample)."""
    return tuple(int(size) for size in _dry_run(model, sample_shape).shape[1:]) or (1,)


# ------------------------------------------------------------------ helpers
def _lost_workers(client, chosen: list[str], patience: float = 0.0) -> list[str]:
    """The workers of a data-parallel job that are no longer in the cluster (their addresses left it).

    A surviving rank's collective fails the moment its peer's socket closes,
    which can be before the scheduler has noticed the death: ``patience``
    seconds are given for the loss to show.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            alive = set(client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # the scheduler itself is gone: every worker is lost to this job
            return list(chosen)
        lost = [address for address in chosen if address not in alive]
        if lost or time.monotonic() >= deadline:
            return lost
        time.sleep(0.1)


def _collective_failed(error: BaseException) -> bool:
    """Whether ``error`` is torch.distributed's word that a peer went away (gloo/NCCL socket errors)."""
    text = f"{type(error).__name__} {error}"
    return any(word in text for word in ("gloo", "NCCL", "DistBackendError", "Connection reset", "Connection closed"))


def _latest(checkpoint_dir: str | None) -> str | None:
    from bigdl.train._checkpoint import latest_checkpoint

    return latest_checkpoint(checkpoint_dir) if checkpoint_dir else None


def _workers_after_loss(client, wanted: int, lost: list[str], wait: float) -> list[str]:
    """The workers to start again on: ``wanted`` of them as soon as there are, else those there are after ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            alive = sorted(address for address in client.scheduler_info(n_workers=-1)["workers"]
                           if address not in lost)
        except Exception:  # the scheduler itself is gone
            return []
        if len(alive) >= wanted or time.monotonic() >= deadline:
            return alive[:wanted]
        time.sleep(0.2)


def _lost_message(lost: list[str], chosen: list[str], checkpoint_dir: str | None, epochs_done: int) -> str:
    ranks = ", ".join(f"{address} (rank {chosen.index(address)})" for address in lost)
    message = (f"Data-parallel training over {len(chosen)} workers lost {ranks} after {epochs_done} finished "
               "epoch(s); torch.distributed cannot go on without every rank.")
    latest = _latest(checkpoint_dir)
    if latest is not None:
        return f"{message} Resume with fit(ds, resume=True): it continues from {latest}."
    if checkpoint_dir:
        return f"{message} No checkpoint was written yet in {checkpoint_dir}: fit again."
    return f"{message} Set checkpoint_dir= to be able to resume after such a loss; fit again."


def _free_port() -> int:
    """A free TCP port on the machine running this (rank 0's worker), for torch.distributed."""
    import socket

    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _torch_threads(requested: int | None) -> int:
    import os

    if requested is not None:  # checked by the Trainer (TRAINER_CONSTRAINTS)
        return int(requested)
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1))


def _device(name) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _optimizer(choice, lr, model) -> torch.optim.Optimizer:
    if callable(choice) and not isinstance(choice, str):
        return choice(model.parameters())
    return OPTIMIZERS[choice](model.parameters(), lr=lr if lr is not None else DEFAULT_LR[choice])


def _loss_function(loss, class_weight=None, *, owner: str = "Trainer", device=None):
    """The criterion for ``loss`` (a name or a callable), weighing classes by ``class_weight`` when given.

    A named loss is built with ``weight=``; a ``CrossEntropyLoss`` or
    ``NLLLoss`` instance without weights of its own is copied and given
    them (the caller's object is left as it is); anything else cannot take
    class weights and is refused.  The weights are a float32 tensor on ``device``.
    """
    if class_weight is None:
        if callable(loss) and not isinstance(loss, str):
            return loss
        factory = CLASSIFICATION_LOSSES.get(loss) or REGRESSION_LOSSES[loss]
        return factory()
    weight = torch.as_tensor(np.asarray(class_weight, dtype=np.float32), device=device)
    if isinstance(loss, str) and loss in CLASSIFICATION_LOSSES:
        return CLASSIFICATION_LOSSES[loss](weight=weight)
    if isinstance(loss, WEIGHTED_LOSSES) and loss.weight is None:
        weighted = copy.deepcopy(loss)
        weighted.weight = weight  # the registered buffer: it moves with .to(device)
        return weighted
    has_own = isinstance(loss, WEIGHTED_LOSSES)
    reason = "it has weight= of its own" if has_own else "it takes no class weights"
    raise ParameterError(
        f"{owner}: class_weight cannot be applied to the loss {loss!r}: {reason}. Use loss='cross_entropy' (the "
        "default), or a torch.nn.CrossEntropyLoss / NLLLoss instance without weight= (it gets a copy with the "
        "weights), or weigh the classes inside your loss and leave class_weight=None."
    )


def _check_model_shapes(model: nn.Module, ds: Dataset) -> None:
    """Run the model on two zero samples shaped like the store's, to fail early and clearly.

    A model with a ``check_store(ds)`` method (``StackedLSTM``) checks the store itself too.
    """
    if callable(getattr(model, "check_store", None)):
        model.check_store(ds)
    sample_shape = ds.sample_shape
    try:
        output = _dry_run(model, sample_shape)
    except RuntimeError as error:
        expected = getattr(model, "in_features", None)
        detail = f"the model expects {expected} inputs" if expected else f"the model fails on it ({error})"
        raise SchemaError(
            f"The store {str(ds.path)!r} has samples of shape {sample_shape} (n_features={ds.n_features}) but "
            f"{detail}; build the model with in_features=ds.n_features."
        ) from None
    if ds.task == "classification":
        width = output.shape[1] if output.ndim > 1 else 1
        if width != ds.n_classes:
            raise SchemaError(
                f"The model outputs {width} values per sample but the store has {ds.n_classes} classes "
                f"{ds.classes}; build it with out_features=ds.n_classes."
            )


class _EpochBar:
    """The caller's progress bar, fed by epoch events (from a worker or in process)."""

    def __init__(self, epochs: int, enabled: bool):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=epochs, desc="train", unit="epoch", disable=not enabled, file=sys.stderr)
        self.epochs_done = 0

    def update(self, message: dict) -> None:
        if message.get("kind") == "resumed":
            self._bar.n = self.epochs_done = message["epoch"] + 1
            self._bar.refresh()
            return
        if message.get("kind") == "batch":  # live figures of the running epoch
            self._bar.set_postfix({"loss": f"{message['batch_loss']:.4f}",
                                   "samples/s": f"{message['samples_per_second']:,.0f}"})
            return
        if message.get("kind") != "epoch":
            return
        postfix = {"loss": f"{message['train_loss']:.4f}", "samples/s": f"{message['samples_per_second']:,.0f}"}
        for key in ("val_loss", "val_accuracy", "val_r2"):
            if key in message:
                postfix[key] = f"{message[key]:.4f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.n = self.epochs_done = message["epoch"]
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
