"""The training loop as overridable methods with callbacks (skorch's ``NeuralNet`` style).

:class:`TrainingLoop` owns one module, its optimizer and its loss, and runs
epochs of mini-batch steps.  Each step of the chain is a method a subclass
can override on its own:

``get_iterator(data, split=, training=)``
    The one place that makes the batches: by default a
    :class:`~bigdl.loaders.torch.ChunkLoader` over a store's split (shuffled
    for training, in order for evaluation), which reads through the store's
    sample view.  The torch estimators override it for NumPy and dask input.
``train_step(X, y)``
    One optimisation step on one batch; returns its loss.
``train_epoch(batches, epoch)``
    One pass over ``batches``; returns the mean loss and the sample count
    (summed over all ranks under ``DistributedDataParallel``).
``evaluation_step(X, y)``
    The outputs and targets of one batch, without gradients.

Callbacks (:class:`Callback`) are told when training and each epoch begin and
end, and after every batch; the :class:`~bigdl.train.Trainer` uses one to
put the live loss on the dashboard and takes the user's through
``callbacks=``.  They run where the loop runs: on a Dask worker by default,
so they must pickle, and what they print goes to the worker's log.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["Callback", "TrainingLoop", "target_for"]


class Callback:
    """A hook into :class:`TrainingLoop`; every method does nothing unless overridden.

    ``loop`` is the running :class:`TrainingLoop` (``loop.module``,
    ``loop.optimizer``, ``loop.history``).  Epochs count from 0 in
    :meth:`on_epoch_begin`; the ``entry`` given to :meth:`on_epoch_end` is the
    epoch's history record (``epoch`` counts from 1 there, as in
    ``Trainer.history``).  A callback may set ``loop.stop = True`` to end
    training after the current epoch.
    """

    def on_train_begin(self, loop: "TrainingLoop") -> None:
        """Before the first epoch (also after a resume).

        Parameters
        ----------
        loop : TrainingLoop
            The running loop.
        """

    def on_epoch_begin(self, loop: "TrainingLoop", epoch: int) -> None:
        """Before epoch ``epoch`` (0-based).

        Parameters
        ----------
        loop : TrainingLoop
            The running loop.
        epoch : int
        """

    def on_batch_end(self, loop: "TrainingLoop", loss: float, n_samples: int) -> None:
        """After each optimisation step, with the batch's loss and size.

        Parameters
        ----------
        loop : TrainingLoop
            The running loop.
        loss : float
            The batch's mean loss.
        n_samples : int
            The batch's size.
        """

    def on_epoch_end(self, loop: "TrainingLoop", entry: dict) -> None:
        """After each epoch (and its validation), with the epoch's history entry.

        Parameters
        ----------
        loop : TrainingLoop
            The running loop.
        entry : dict
            ``epoch`` (from 1), ``train_loss``, ``val_*`` metrics, ``seconds``...
        """

    def on_train_end(self, loop: "TrainingLoop") -> None:
        """After the last epoch, or when training stopped early.

        Parameters
        ----------
        loop : TrainingLoop
            The running loop.
        """


def target_for(output: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """``y`` as the loss takes it: class codes for classification, floats shaped like ``output`` else."""
    if task == "classification":
        return y.long()
    y = y.float()
    return y.view_as(output) if output.numel() == y.numel() else y


class TrainingLoop:
    """Epochs of mini-batch steps on one module; subclass to change a step, add callbacks to watch.

    Parameters
    ----------
    module : torch.nn.Module
        What is trained (and evaluated).
    optimizer : torch.optim.Optimizer
    criterion : callable
        ``criterion(output, target) -> loss``.
    task : {"classification", "regression"}
        How targets are cast (see :func:`target_for`).
    device : torch.device or str, optional
        Where batches go; default where they are.
    callbacks : sequence of Callback, optional
    trained : torch.nn.Module, optional
        What the steps call, when it differs from ``module``: a
        ``DistributedDataParallel`` wrapper of it.
    batch_size : int, default 256
        Batch size of the loaders :meth:`get_iterator` makes.
    seed : int, default 0
        Seed of the training loader's shuffle.
    loader_options : dict, optional
        Extra :class:`~bigdl.loaders.torch.ChunkLoader` options for the training loader.
    rank, world_size : int, default 0 and 1
        This process's shard of the training chunks under data parallelism.

    Attributes
    ----------
    history : list of dict
        One entry per finished epoch (filled by the caller of :meth:`train_epoch`).
    stop : bool
        Set by a callback to end training after the current epoch.
    epoch_loss_sum, epoch_samples, epoch_steps : float, int, int
        This rank's running totals within the current epoch (its summed
        batch losses weighted by batch size, its samples, the steps taken
        in this pass), for callbacks such as a mid-epoch checkpoint.
    loss_scale : float
        What :meth:`train_step` multiplies the loss by before ``backward``:
        under data parallelism ``len(X) * world_size / step samples``, so a
        step whose shares differ in size by one sample still averages the
        gradient over the whole step; 1 otherwise.
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer, criterion, *, task: str,
                 device=None, callbacks: Sequence[Callback] = (), trained: nn.Module | None = None,
                 batch_size: int = 256, seed: int = 0, loader_options: dict | None = None, rank: int = 0,
                 world_size: int = 1):
        self.module = module
        self.trained = trained if trained is not None else module
        self.optimizer = optimizer
        self.criterion = criterion
        self.task = task
        self.device = torch.device(device) if device is not None else None
        self.callbacks = list(callbacks)
        self.batch_size = batch_size
        self.seed = seed
        self.loader_options = dict(loader_options or {})
        self.rank, self.world_size = rank, world_size
        self.history: list[dict] = []
        self.stop = False
        self.epoch_loss_sum, self.epoch_samples, self.epoch_steps = 0.0, 0, 0
        self.loss_scale = 1.0
        self._evaluation_iterators: dict = {}

    # -- the batches ------------------------------------------------------
    def get_iterator(self, data, *, split: str = "train", training: bool = True) -> Iterable:
        """Batches ``(X, y)`` of tensors: a :class:`~bigdl.loaders.torch.ChunkLoader` over a store's ``split``.

        Training batches are shuffled (seeded, ``set_epoch`` changes the
        order), sharded by rank and take ``loader_options``; evaluation
        batches come in order, at least 1,024 samples at a time, and read the
        stored samples as they are (no augmentation).

        Parameters
        ----------
        data : Dataset or str
            The store.
        split : str, default "train"
        training : bool, default True

        Returns
        -------
        iterable of (tensor, tensor)
        """
        from bigdl.loaders.torch import ChunkLoader

        if training:
            options = {"buffer_chunks": 4, **self.loader_options}
            return ChunkLoader(data, split, batch_size=self.batch_size, shuffle=True, seed=self.seed,
                               device=self.device, rank=self.rank, world_size=self.world_size, **options)
        return ChunkLoader(data, split, batch_size=max(self.batch_size, 1024), shuffle=False, device=self.device)

    def evaluation_iterator(self, data, split: str) -> Iterable:
        """:meth:`get_iterator` for evaluating ``split``, made once per store and split and then reused.

        Only stores (a Dataset or a path) are remembered; other data gets a new iterator each time.

        Parameters
        ----------
        data : Dataset or str
        split : str

        Returns
        -------
        iterable of (tensor, tensor)
        """
        import os

        path = getattr(data, "path", data)
        if not isinstance(path, (str, os.PathLike)):
            return self.get_iterator(data, split=split, training=False)
        key = (os.fspath(path), split)
        if key not in self._evaluation_iterators:
            self._evaluation_iterators[key] = self.get_iterator(data, split=split, training=False)
        return self._evaluation_iterators[key]

    # -- the steps ----------------------------------------------------------
    def train_step(self, X: torch.Tensor, y: torch.Tensor) -> float:
        """One optimisation step on one batch.

        Parameters
        ----------
        X, y : torch.Tensor
            Samples and targets of the batch, on the loop's device.

        Returns
        -------
        float
            The batch's loss before the step.
        """
        self.optimizer.zero_grad(set_to_none=True)
        output = self.trained(X)
        loss = self.criterion(output, target_for(output, y, self.task))
        (loss * self.loss_scale if self.loss_scale != 1.0 else loss).backward()
        self.optimizer.step()
        return float(loss.detach())

    def train_epoch(self, batches: Iterable, epoch: int, *, start: tuple[float, int] = (0.0, 0)) -> tuple[float, int]:
        """One pass over ``batches``: the mean loss and the number of samples (over all ranks with DDP).

        Parameters
        ----------
        batches : iterable of (tensor, tensor)
            From :meth:`get_iterator`.
        epoch : int
            0-based; passed to the callbacks.
        start : (float, int), default (0.0, 0)
            This rank's summed loss and samples of the epoch's steps taken
            before a resume, so a resumed epoch reports the loss of the whole epoch.

        Returns
        -------
        (float, int)
        """
        self.notify("on_epoch_begin", epoch)
        self.trained.train()
        self.epoch_loss_sum, self.epoch_samples = float(start[0]), int(start[1])
        self.epoch_steps = 0
        data_parallel = self.world_size > 1
        # A ChunkLoader gives every rank the same number of batches; other
        # iterators may not, and DDP's join lets the ranks that run out first
        # shadow the others' collectives instead of hanging.
        step_samples = data_parallel and hasattr(batches, "step_samples")
        joined = self.trained.join() if data_parallel and not step_samples else contextlib.nullcontext()
        with joined:
            for X, y in batches:
                if step_samples:  # the size of the global step this batch is a share of
                    self.loss_scale = len(X) * self.world_size / batches.step_samples
                loss = self.train_step(X, y)
                self.epoch_loss_sum += loss * len(X)
                self.epoch_samples += len(X)
                self.epoch_steps += 1
                self.notify("on_batch_end", loss, len(X))
        self.loss_scale = 1.0
        total, count = self.epoch_loss_sum, self.epoch_samples
        if data_parallel:
            import torch.distributed as dist

            sums = torch.tensor([total, float(count)], dtype=torch.float64)
            dist.all_reduce(sums)
            total, count = float(sums[0]), int(sums[1])
        return total / max(count, 1), count

    @torch.no_grad()
    def evaluation_step(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The module's outputs on one batch (no gradients) and the targets as the loss takes them.

        Parameters
        ----------
        X, y : torch.Tensor

        Returns
        -------
        (torch.Tensor, torch.Tensor)
        """
        output = self.module(X)
        return output, target_for(output, y, self.task)

    # -- callbacks --------------------------------------------------------
    def notify(self, hook: str, *args) -> None:
        """Call ``hook`` on every callback, in order.

        Parameters
        ----------
        hook : str
            A :class:`Callback` method name (``"on_epoch_end"``...).
        *args
            What the hook takes after ``loop``.
        """
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)
