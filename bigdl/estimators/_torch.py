"""PyTorch networks behind the scikit-learn estimator contract, in memory or chunk by chunk.

:class:`TorchClassifier` and :class:`TorchRegressor` share one base,
``_TorchEstimator``, which owns the training chain (as in skorch's
``net.py``): ``fit`` -> ``_initialize`` (build ``module_``, ``optimizer_``
and the loss from ``n_features_in_`` and the targets) -> ``max_epochs`` x
``_run_epoch`` (one shuffled pass over the data, run by the Trainer's
:class:`~bigdl.train.TrainingLoop`: its ``train_epoch`` and ``train_step``,
with this module's batch order as ``get_iterator``).  ``partial_fit`` is one epoch on the data it is given, after an
``_initialize`` on the first call, so ``dask_ml.wrappers.Incremental`` and
:class:`bigdl.estimators.Incremental` can drive it block by block.

NumPy input is validated with scikit-learn's own checks and trained as one
block.  A store :class:`~bigdl.store.Dataset` (its ``train`` split) or dask
arrays are trained chunk by chunk: one block is computed at a time, so memory
is bounded by the chunk size, not the data size; ``predict`` on them returns a
dask array built with ``map_blocks`` (as dask-ml's ``ParallelPostFit``).

Shuffling, the one rule both kinds of input follow: each epoch draws a seed
from ``SeedSequence([seed, epoch])``; a ``torch.Generator`` with that seed
permutes the order of the blocks (when there are several) and then the rows
of each block, which are cut into mini-batches of ``batch_size`` (the last
batch of a block may be smaller).  NumPy input is a single block, so its
order is one permutation of all rows, as in a plain torch loop.  Weights are
initialised under ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``
so the caller's global RNG state is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import io
import numbers
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d, validate_data
from torch import nn

from bigdl._validation import Hidden, Interval, Options, Predicate, check_estimator_params
from bigdl.errors import BigdlError, ParameterError, SchemaError
from bigdl.estimators._data import as_dask_arrays, is_store
from bigdl.loaders._predict import predict_blocks
from bigdl.models import MLP
from bigdl.preprocessing._weights import CLASS_WEIGHT, resolve_class_weight
from bigdl.train._loop import TrainingLoop
from bigdl.train._metrics import ClassificationMetrics, mean_loss_weight
from bigdl.train._trainer import (CLASSIFICATION_LOSSES, OPTIMIZERS, REGRESSION_LOSSES, _device, _loss_function,
                                  _optimizer)

__all__ = ["TorchClassifier", "TorchRegressor", "NotInitializedError"]

#: Rows per forward pass when predicting, so activations of large inputs stay bounded.
PREDICT_BATCH_ROWS = 8192


class NotInitializedError(BigdlError, NotFittedError):
    """A torch estimator was asked to predict before ``fit`` or ``partial_fit`` built its module.

    A :class:`sklearn.exceptions.NotFittedError` (so also ``ValueError`` and
    ``AttributeError``), as skorch's error of the same name.
    """


# ------------------------------------------------------------------ parameter table
def _is_int(value, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value >= low


def _is_factory(value) -> bool:
    return callable(value) and not isinstance(value, (str, nn.Module))


def _is_device(value) -> bool:
    if isinstance(value, torch.device) or value == "auto":
        return True
    try:
        torch.device(value)
    except (RuntimeError, TypeError):
        return False
    return True


#: What the parameters shared by both estimators accept (``loss`` depends on the task: see ``_check_params``).
_CONSTRAINTS = {
    "module": [Predicate(_is_factory, "None or a factory called as module(in_features=..., out_features=..., "
                                      "**module_params) that returns a torch.nn.Module (e.g. bigdl.models.MLP); "
                                      "pass the class or a function, not a built module, so that fit can build "
                                      "fresh weights"), Hidden(None)],
    "module_params": [Mapping, None],
    "hidden": [Predicate(lambda value: isinstance(value, Sequence) and not isinstance(value, str)
                         and all(_is_int(width, 1) for width in value),
                         "a sequence of int >= 1 (the hidden layer widths of the default MLP)")],
    "optimizer": [Options(OPTIMIZERS), Predicate(_is_factory, "a callable f(parameters) -> torch.optim.Optimizer")],
    "lr": [Interval(float, 0, None, closed="neither"), None],
    "batch_size": [Interval(int, 1, None)],
    "max_epochs": [Interval(int, 1, None)],
    "random_state": [Interval(int, 0, None), np.random.RandomState, None],
    "device": [Predicate(_is_device, "'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device")],
    "warm_start": ["boolean"],
}

_PARAMETERS_DOC = """
    Parameters
    ----------
    module : callable, optional
        A factory ``module(in_features=n_features_in_, out_features=n_outputs_,
        **module_params) -> torch.nn.Module``, called by ``fit`` (e.g. the
        :class:`bigdl.models.MLP` class itself, or ``torch.nn.Linear``).
        Default: ``MLP(n_features_in_, hidden, n_outputs_)``.
    module_params : dict, optional
        Extra keyword arguments for ``module`` (for the default MLP:
        ``activation``, ``dropout``).
    hidden : tuple of int, default (64, 64)
        Hidden layer widths of the default MLP; unused when ``module`` is given.
    optimizer : {"adam", "sgd", "adadelta", "adamw", "rmsprop"} or callable, default "adam"
        A name, or a factory ``f(parameters) -> torch.optim.Optimizer`` such as
        ``functools.partial(torch.optim.SGD, momentum=0.9)``.
    lr : float, optional
        Learning rate; default per optimizer name (adam and adamw 1e-2,
        rmsprop 1e-3, sgd 1e-2, adadelta 1.0).  Adam's rate is ten times the
        Trainer's: these estimators default to 10 epochs of batches of 256,
        few steps on a small table (scikit-learn's ``check_regressors_train``
        asks for R2 > 0.5 on 200 rows; 1e-3 reached 0.13-0.25, 1e-2 reaches
        0.80-0.83).  Given with a factory, it overrides the factory's rate.
    loss : str or callable, optional
        LOSSES, or a callable ``loss(output, target) -> scalar tensor`` (a
        loss module instance or class, or a function).  Default DEFAULT_LOSS.
    batch_size : int, default 256
        Rows per optimisation step.
    max_epochs : int, default 10
        Passes over the data in ``fit`` (``partial_fit`` makes one).
    random_state : int, RandomState or None, default 0
        Seeds the weights and every epoch's shuffle (and dropout); the same
        value gives the same fitted weights.
    device : str or torch.device, default "cpu"
        Where the module trains and predicts ("auto": CUDA when available).
    warm_start : bool, default False
        When True, ``fit`` on a fitted estimator continues from its weights
        instead of building a new module.
"""


def _parameters_doc(losses: str, default_loss: str) -> str:
    """The shared Parameters section, with one task's loss names."""
    return _PARAMETERS_DOC.replace("LOSSES", losses).replace("DEFAULT_LOSS", default_loss)


# ------------------------------------------------------------------ the data
def _is_lazy(X) -> bool:
    """A store, a store path or a dask array: trained and predicted chunk by chunk."""
    import dask.array as da

    return is_store(X) or hasattr(X, "__fspath__") or isinstance(X, da.Array)


class _TrainingData:
    """The training rows as ``(X, y)`` blocks; a lazy block is computed only when it is trained on.

    ``X`` and ``y`` are the whole arrays (NumPy, or dask for lazy input);
    ``dataset`` the store they came from, if any.
    """

    def __init__(self, X, y, dataset=None):
        self.X, self.y, self.dataset = X, y, dataset
        self.lazy = not isinstance(X, np.ndarray)
        if not self.lazy:
            self._blocks = [(X, y)]
            return
        x_blocks = X.to_delayed().ravel()
        y_blocks = y.to_delayed().ravel()
        sizes = X.chunks[0]
        # Store splits leave chunks with no rows of the split: nothing to train on there.
        self._blocks = [(xb, yb) for xb, yb, size in zip(x_blocks, y_blocks, sizes) if not size == 0]

    def __len__(self) -> int:
        return len(self._blocks)

    def block(self, index: int):
        """Block ``index`` as NumPy ``(X, y)``; reads one chunk of each for lazy input."""
        import dask

        X, y = self._blocks[index]
        return dask.compute(X, y) if self.lazy else (X, y)


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    # torch.from_numpy warns on read-only arrays (memmaps): copy those once.
    array = np.asarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _seed_of(random_state) -> int:
    if _is_int(random_state, 0):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of an estimator seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed torch's global RNG (CPU, and ``device`` if CUDA) inside, and restore the caller's state after."""
    cuda = device.type == "cuda"
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seed)
        yield


def _dumps(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _loads(data: bytes, device: torch.device):
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


#: Default learning rates of the estimators (see ``lr`` in the class docstring); other names use the Trainer's.
ESTIMATOR_LR = {"adam": 1e-2, "adamw": 1e-2}


# ------------------------------------------------------------------ the loop of one epoch
class _BlockLoop(TrainingLoop):
    """The Trainer's loop on an estimator's module, with the estimators' batch order.

    :meth:`get_iterator` is the one shuffle rule of the module docstring:
    the blocks in a seeded random order (when there are several), the rows
    of each block permuted by the same generator and cut into batches of
    ``batch_size``.  Lazy blocks are computed (and checked) one at a time.
    """

    def __init__(self, estimator: "_TorchEstimator", generator: torch.Generator):
        super().__init__(estimator.module_, estimator.optimizer_, estimator._criterion, task=estimator._task,
                         device=estimator.device_, batch_size=estimator.batch_size)
        self.estimator = estimator
        self.generator = generator

    def get_iterator(self, data, *, split: str = "train", training: bool = True):
        generator = self.generator
        order = torch.randperm(len(data), generator=generator).tolist() if len(data) > 1 else range(len(data))
        for index in order:
            X_block, y_block = data.block(index)
            X_block, target = self.estimator._block_tensors(X_block, y_block, validated=not data.lazy)
            rows = torch.randperm(len(X_block), generator=generator)
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start:start + self.batch_size]
                yield X_block[batch].to(self.device), target[batch].to(self.device)


# ------------------------------------------------------------------ the shared base
class _TorchEstimator(BaseEstimator):
    """What both torch estimators share: parameters, the training chain, prediction, pickling.

    Subclasses say which store task they accept (``_task``), their losses,
    their score metric, and implement the task hooks: how targets are
    checked, learnt and encoded as tensors, and what predictions look like.
    The steps ``_initialize`` and ``_run_epoch`` can be overridden one at a
    time; an epoch runs the Trainer's :class:`~bigdl.train.TrainingLoop`
    (``_loop_class``, whose ``train_step`` and ``get_iterator`` a subclass
    can override in turn).
    """

    _task: str  # the store task accepted: "classification" or "regression"
    _losses: dict  # loss names accepted
    _default_loss: str
    _metric = None  # score(y, predicted, sample_weight=)
    _loop_class = _BlockLoop  # the training loop of one epoch
    _task_constraints: dict = {}  # parameters only one task has (TorchClassifier's class_weight)

    def __init__(self, module=None, *, module_params=None, hidden=(64, 64), optimizer="adam", lr=None, loss=None,
                 batch_size=256, max_epochs=10, random_state=0, device="cpu", warm_start=False):
        self.module = module
        self.module_params = module_params
        self.hidden = hidden
        self.optimizer = optimizer
        self.lr = lr
        self.loss = loss
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.random_state = random_state
        self.device = device
        self.warm_start = warm_start

    # -- parameters ---------------------------------------------------
    def _check_params(self) -> None:
        loss = [Options(self._losses), Predicate(lambda value: _is_factory(value) or isinstance(value, nn.Module),
                                                 "a callable loss(output, target)"), None]
        check_estimator_params(self, {**_CONSTRAINTS, **self._task_constraints, "loss": loss})
        if self.module is None and self.module_params and "hidden" in self.module_params:
            raise SchemaError(f"{type(self).__name__}: give the default MLP's widths either as hidden= or in "
                              "module_params, not both.")

    # -- the training chain -------------------------------------------
    def fit(self, X, y=None):
        """Build a new module and train it for ``max_epochs`` shuffled epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array or Dataset
            Training rows.  A store :class:`~bigdl.store.Dataset` (or its path)
            trains on its ``train`` split with its targets, chunk by chunk, as
            does a dask array.
        y : array-like or dask array, optional
            Targets; omit them when ``X`` is a store.

        Returns
        -------
        self
        """
        self._check_params()
        warm = bool(self.warm_start) and self.__sklearn_is_fitted__()
        data = self._prepare(X, y, reset=not warm)
        for _ in range(self.max_epochs):
            self._run_epoch(data)
        return self

    def _partial_fit(self, X, y, classes=None):
        self._check_params()
        data = self._prepare(X, y, reset=not self.__sklearn_is_fitted__(), classes=classes, partial=True)
        self._run_epoch(data)
        return self

    def _prepare(self, X, y, *, reset: bool, classes=None, partial: bool = False) -> _TrainingData:
        """Validate the training data; on ``reset`` learn the targets (and class weights) and build the module."""
        data = self._training_data(X, y, reset=reset)
        if reset:
            self._learn_targets(data, classes)
            self._learn_class_weight(data, partial=partial)
            self._initialize()
        else:
            self._check_classes(classes)
        return data

    def _initialize(self) -> None:
        """Build ``module_``, ``optimizer_`` and the loss from ``n_features_in_`` and ``n_outputs_``."""
        self._seed = _seed_of(self.random_state)
        self.device_ = self._resolve_device()
        self.module_ = self._build_module()
        self.optimizer_ = self._build_optimizer()
        self._criterion = self._build_loss()
        self.n_epochs_ = 0
        self.loss_curve_ = []

    def _run_epoch(self, data: _TrainingData) -> float:
        """One shuffled pass over ``data`` (see the module docstring for the order); returns the mean loss."""
        seed = _epoch_seed(self._seed, self.n_epochs_)
        loop = self._loop_class(self, torch.Generator().manual_seed(seed))
        try:
            with _seeded(seed, self.device_):  # dropout draws from the global RNG
                mean, count = loop.train_epoch(loop.get_iterator(data), self.n_epochs_)
        finally:
            self.module_.eval()
        if count == 0:
            raise SchemaError(f"{type(self).__name__}: no training rows (an empty store split?).")
        self.n_epochs_ += 1
        self.loss_curve_.append(mean)
        return mean

    # -- building the pieces --------------------------------------------
    def _resolve_device(self) -> torch.device:
        device = _device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SchemaError(f"The 'device' parameter of {type(self).__name__} is {self.device!r} but "
                              "torch.cuda.is_available() is False; use device='cpu' or 'auto'.")
        return device

    def _build_module(self) -> nn.Module:
        if self.module is None:
            factory, params = MLP, {"hidden": list(self.hidden)}
        else:
            factory, params = self.module, {}
        params.update(self.module_params or {})
        name = getattr(factory, "__name__", repr(factory))
        with _seeded(self._seed, self.device_):
            try:
                module = factory(in_features=self.n_features_in_, out_features=self.n_outputs_, **params)
            except TypeError as error:
                raise SchemaError(f"{type(self).__name__} calls module(in_features=, out_features=, "
                                  f"**module_params); {name} failed: {error}.") from None
        if not isinstance(module, nn.Module):
            raise SchemaError(f"The 'module' factory of {type(self).__name__} must return a torch.nn.Module; "
                              f"{name} returned {type(module).__name__}.")
        return module.to(self.device_).eval()

    def _build_optimizer(self) -> torch.optim.Optimizer:
        lr = self.lr if self.lr is not None or not isinstance(self.optimizer, str) else ESTIMATOR_LR.get(self.optimizer)
        optimizer = _optimizer(self.optimizer, lr, self.module_)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise SchemaError(f"The 'optimizer' factory of {type(self).__name__} must return a "
                              f"torch.optim.Optimizer; got {type(optimizer).__name__}.")
        if self.lr is not None and not isinstance(self.optimizer, str):
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        return optimizer

    def _build_loss(self):
        loss = self._default_loss if self.loss is None else self.loss
        loss = loss() if isinstance(loss, type) else loss
        return _loss_function(loss, getattr(self, "class_weight_", None), owner=type(self).__name__,
                              device=self.device_)

    # -- validation -----------------------------------------------------
    def _training_data(self, X, y, *, reset: bool) -> _TrainingData:
        if not _is_lazy(X):
            X, y = self._validate_arrays(X, y, reset=reset)
            return _TrainingData(X, y)
        X, y, dataset = as_dask_arrays(X, y, split="train")
        if dataset is not None and dataset.task != self._task:
            raise SchemaError(f"{type(self).__name__} needs a {self._task} store; {str(dataset.path)!r} holds "
                              f"{dataset.task} targets.")
        X = self._validate_lazy(X, reset=reset)
        if y.ndim == 2 and y.numblocks[1] > 1:
            y = y.rechunk({1: -1})
        return _TrainingData(X, y, dataset)

    def _check_width(self, X) -> None:
        shape = getattr(X, "shape", ())
        if len(shape) == 2 and shape[1] != self.n_features_in_:
            raise SchemaError(f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                              f"{self.n_features_in_} features as input; pass the columns it was fitted on "
                              "(or fit again).")

    def _validate_arrays(self, X, y=None, *, reset: bool, need_y: bool = True):
        """scikit-learn's checks on in-memory input; the width check is a SchemaError."""
        if not hasattr(X, "shape"):  # lists: know the width before scikit-learn's checks
            X = np.asarray(X)
        if not reset:
            self._check_width(X)
        if not need_y:
            return validate_data(self, X, reset=reset, dtype=np.float32)
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, multi_output=self._task == "regression",
                             y_numeric=self._task == "regression")
        self._check_targets(y)
        return X, y

    def _validate_lazy(self, X, *, reset: bool):
        if X.ndim != 2:
            raise SchemaError(f"{type(self).__name__} needs 2-D X (samples x features); got shape {X.shape}.")
        if not reset:
            self._check_width(X)
        validate_data(self, X, reset=reset, skip_check_array=True)  # n_features_in_, feature names
        return X.rechunk({1: -1}) if X.numblocks[1] > 1 else X

    def _block_tensors(self, X, y, *, validated: bool):
        """One block as ``(X, target)`` tensors on the CPU; lazy blocks are checked here, as they arrive."""
        if not validated:
            X = check_array(X, dtype=np.float32, input_name="X")
            y = self._check_block_targets(y)
        return _as_tensor(X), self._encode_targets(y)

    # -- the task hooks, implemented by TorchClassifier and TorchRegressor
    def _check_targets(self, y) -> None:
        """Refuse in-memory targets (or a lazy ``y``'s distinct values) the task cannot learn."""
        raise NotImplementedError

    def _check_block_targets(self, y):
        """Validate the targets of one lazily computed block; return them as NumPy."""
        raise NotImplementedError

    def _learn_targets(self, data: _TrainingData, classes) -> None:
        """Set ``n_outputs_`` (and ``classes_``) from the first training data."""
        raise NotImplementedError

    def _learn_class_weight(self, data: _TrainingData, *, partial: bool) -> None:
        """Set ``class_weight_`` from the first training data (classifiers only)."""

    def _check_classes(self, classes) -> None:
        """Refuse a later ``classes=`` that disagrees with the fitted ones."""

    def _encode_targets(self, y) -> torch.Tensor:
        """Targets of one block as the tensor the loss takes."""
        raise NotImplementedError

    def _output_shape(self, method: str) -> tuple:
        """Per-row output shape of ``method`` (``()`` for one value per row)."""
        raise NotImplementedError

    def _output_dtype(self, method: str):
        return np.float64

    # -- prediction -----------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "module_")

    def _check_fitted(self, method: str) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotInitializedError(f"This {type(self).__name__} is not fitted yet: call fit (or partial_fit) "
                                      f"with training data before {method}.")

    def _apply(self, method: str, X, split: str | None):
        """``method`` on NumPy input, or a dask array of it, block by block, for a store or dask input."""
        self._check_fitted(method)
        if not _is_lazy(X):
            X = self._validate_arrays(X, reset=False, need_y=False)
            return getattr(self, f"_{method}_array")(X)
        X, _, _ = as_dask_arrays(X, split=split or "all", need_y=False)
        if X.ndim != 2:
            raise SchemaError(f"{type(self).__name__} needs 2-D X (samples x features); got shape {X.shape}.")
        self._check_width(X)
        return predict_blocks(getattr(self, method), X, tail=self._output_shape(method),
                              dtype=self._output_dtype(method), name=f"bigdl-torch-{method}")

    def _forward(self, X: np.ndarray) -> np.ndarray:
        """The module's outputs for validated rows, as float64 of shape (n_samples, n_outputs)."""
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(X), PREDICT_BATCH_ROWS):
                batch = _as_tensor(X[start:start + PREDICT_BATCH_ROWS]).to(self.device_)
                outputs.append(self.module_(batch).reshape(len(batch), -1).double().cpu())
        return torch.cat(outputs).numpy()

    def _score(self, X, y, sample_weight):
        if _is_lazy(X):
            import dask

            X, y, _ = as_dask_arrays(X, y, split="test")
            predicted, y = dask.compute(self.predict(X), y)
        else:
            predicted = self.predict(X)
        return float(self._metric(y, predicted, sample_weight=sample_weight))

    # -- pickling: the module's and optimizer's state, not the objects ---
    def __getstate__(self):
        state = dict(super().__getstate__())
        if "module_" in state:
            state["module_"] = _dumps(self.module_.state_dict())
            state["optimizer_"] = _dumps(self.optimizer_.state_dict())
            state.pop("_criterion", None)  # rebuilt on load: class weights are a tensor on device_
        return state

    def __setstate__(self, state):
        state = dict(state)
        module_state, optimizer_state = state.pop("module_", None), state.pop("optimizer_", None)
        super().__setstate__(state)
        if module_state is None:
            return
        if self.device_.type == "cuda" and not torch.cuda.is_available():
            warnings.warn(f"This {type(self).__name__} was fitted on {self.device_} but CUDA is not available "
                          "here; loading it on the CPU.", RuntimeWarning, stacklevel=2)
            self.device_ = torch.device("cpu")
        self.module_ = self._build_module()
        self.module_.load_state_dict(_loads(module_state, self.device_))
        self.optimizer_ = self._build_optimizer()
        self.optimizer_.load_state_dict(_loads(optimizer_state, self.device_))
        self._criterion = self._build_loss()


# ------------------------------------------------------------------ the task classes
class TorchClassifier(ClassifierMixin, _TorchEstimator):
    __doc__ = """A PyTorch network as a scikit-learn classifier (cross-entropy on the logits).

    Fits NumPy arrays in memory, or a store / dask arrays chunk by chunk; has
    ``partial_fit`` for ``Incremental``.  The module outputs one logit per
    class; ``predict_proba`` is their softmax.
    """ + _parameters_doc('"cross_entropy"', '"cross_entropy"') + """\
    class_weight : None, "balanced" or dict, default None
        Weigh each class's rows in the loss (``CrossEntropyLoss(weight=...)``).
        ``"balanced"``: ``n_samples / (n_classes * count)`` from the training
        labels (a store's train split counts, read once); a dict maps labels
        (or, for a store, its class names or codes) to weights, others weigh 1
        (see :func:`bigdl.preprocessing.resolve_class_weight`).  Resolved
        when the module is built (``fit``, or the first ``partial_fit``).
        ``partial_fit`` on arrays sees one block at a time and refuses
        ``"balanced"`` (as scikit-learn's estimators do): pass the dict.
        A custom ``loss`` must be a ``CrossEntropyLoss`` or ``NLLLoss``
        (class or instance, without weights of its own) to take them.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, sorted (for a store: its class codes ``0 .. n_classes-1``).
    class_weight_ : ndarray of shape (n_classes,) or None
        The weight of each class of ``classes_`` in the loss (None: unweighted).
    n_features_in_ : int
    n_outputs_ : int
        Outputs of the module (``len(classes_)``).
    module_ : torch.nn.Module
        The fitted network (in eval mode between training steps).
    optimizer_ : torch.optim.Optimizer
    device_ : torch.device
    n_epochs_ : int
        Passes over data so far (``fit`` epochs and ``partial_fit`` calls).
    loss_curve_ : list of float
        Mean training loss of each pass.

    Notes
    -----
    It passes scikit-learn's ``parametrize_with_checks`` with no expected
    failure.  Pickling stores the module's and the optimizer's state dicts;
    unpickling builds the module again with ``module`` (which must therefore
    be importable) and loads them.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=300, random_state=0)
    >>> model = TorchClassifier(hidden=(16,), max_epochs=20, lr=0.01).fit(X, y)
    >>> model.predict_proba(X[:2]).shape
    (2, 2)
    >>> model.fit(ds).score(ds)     # a store: train split, then test accuracy  # doctest: +SKIP
    """

    _task = "classification"
    _losses = CLASSIFICATION_LOSSES
    _default_loss = "cross_entropy"
    _metric = staticmethod(accuracy_score)
    _task_constraints = {"class_weight": CLASS_WEIGHT}

    def __init__(self, module=None, *, module_params=None, hidden=(64, 64), optimizer="adam", lr=None, loss=None,
                 batch_size=256, max_epochs=10, random_state=0, device="cpu", warm_start=False, class_weight=None):
        super().__init__(module, module_params=module_params, hidden=hidden, optimizer=optimizer, lr=lr, loss=loss,
                         batch_size=batch_size, max_epochs=max_epochs, random_state=random_state, device=device,
                         warm_start=warm_start)
        self.class_weight = class_weight

    def partial_fit(self, X, y=None, classes=None):
        """One shuffled epoch over ``X, y``; the first call builds the module.

        Parameters
        ----------
        X, y
            As in :meth:`fit`.
        classes : array-like, optional
            Every label the estimator will see.  Needed on the first call
            when ``y`` of that call does not show all of them (as when
            ``Incremental`` passes one block at a time); a store gives its
            classes itself.

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, classes)

    def predict(self, X, *, split: str | None = None):
        """Class labels: NumPy for NumPy input, a dask array (block by block) for a store or dask input.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array or Dataset
            Rows to predict; a store (or its path) is read through its sample
            view, chunk by chunk.
        split : str, optional
            A store's split ("train", "validation", "test"); default all rows.

        Returns
        -------
        ndarray or dask array of shape (n_samples,)
            Labels from ``classes_``.
        """
        return self._apply("predict", X, split)

    def predict_proba(self, X, *, split: str | None = None):
        """Class probabilities (softmax of the logits), columns in ``classes_`` order.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array or Dataset
            Rows to predict; a store (or its path) is read through its sample
            view, chunk by chunk.
        split : str, optional
            A store's split ("train", "validation", "test"); default all rows.

        Returns
        -------
        ndarray or dask array of shape (n_samples, n_classes)
        """
        return self._apply("predict_proba", X, split)

    def score(self, X, y=None, sample_weight=None):
        """Accuracy on ``X, y``, or on a store's test split when ``X`` is a store.

        Parameters
        ----------
        X : array-like, dask array or Dataset
            Rows; a store is scored on its test split (and gives its own targets).
        y : array-like, optional
            Targets; omit them when ``X`` is a store.
        sample_weight : array-like, optional

        Returns
        -------
        float
        """
        return self._score(X, y, sample_weight)

    def evaluate(self, X, y=None) -> dict:
        """Loss, accuracy, balanced accuracy and ROC-AUC on ``X, y``, or on a store's test split.

        One pass over the rows, a block at a time for a store or dask input;
        memory holds one block and the counts of
        :class:`bigdl.train._metrics.ClassificationMetrics` (a confusion matrix
        and score histograms), not the predictions.  :meth:`score` stays the
        accuracy (scikit-learn's contract).

        Parameters
        ----------
        X : array-like, dask array or Dataset
            Rows; a store is evaluated on its test split (and gives its own targets).
        y : array-like or dask array, optional
            Labels; omit them when ``X`` is a store.

        Returns
        -------
        dict
            ``loss`` (the training loss, class-weighted when ``class_weight``
            is set), ``accuracy``, ``balanced_accuracy`` (mean recall over the
            classes present), ``roc_auc`` (of the probability of
            ``classes_[1]`` when binary, else one-vs-rest macro; binned, within
            about 1e-4 of the exact value; NaN when a class is absent) and
            ``n_samples``.
        """
        self._check_fitted("evaluate")
        if _is_lazy(X):
            X, y, _ = as_dask_arrays(X, y, split="test")
            if X.ndim != 2:
                raise SchemaError(f"{type(self).__name__} needs 2-D X (samples x features); got shape {X.shape}.")
            self._check_width(X)
            data = _TrainingData(self._validate_lazy(X, reset=False), y)
        else:
            X, y = self._validate_arrays(X, y, reset=False)
            data = _TrainingData(X, y)
        metrics = ClassificationMetrics(len(self.classes_))
        total_loss, loss_weight = 0.0, 0.0
        # A CPU copy: the logits come back to the CPU, the training criterion's class weights stay on device_.
        criterion = (copy.deepcopy(self._criterion).cpu() if isinstance(self._criterion, nn.Module)
                     else self._criterion)
        for index in range(len(data)):
            X_block, y_block = data.block(index)
            X_block, target = self._block_tensors(X_block, y_block, validated=not data.lazy)
            logits = torch.from_numpy(self._forward(X_block.numpy()))
            with torch.no_grad():
                loss = float(criterion(logits.float(), target))
            weight = mean_loss_weight(criterion, target)
            total_loss, loss_weight = total_loss + loss * weight, loss_weight + weight
            metrics.update(torch.softmax(logits, dim=1), target, predicted=logits.argmax(1))
        if not metrics.n_samples:
            raise SchemaError(f"{type(self).__name__}.evaluate: no rows to evaluate (an empty store split?).")
        return {"loss": total_loss / loss_weight if loss_weight else 0.0, **metrics.result(),
                "n_samples": metrics.n_samples}

    def _learn_class_weight(self, data: _TrainingData, *, partial: bool) -> None:
        if self.class_weight is None:
            self.class_weight_ = None
            return
        name = type(self).__name__
        labels = list(data.dataset.classes) if data.dataset is not None else list(self.classes_)
        counts = np.zeros(len(self.classes_), dtype=np.int64)  # a dict needs no counts
        if isinstance(self.class_weight, str):  # "balanced": the training labels' counts
            if data.dataset is not None:
                counts = data.dataset.class_counts("train")
            elif partial:
                raise ParameterError(
                    f"{name}.partial_fit sees one block at a time, so it cannot compute class_weight='balanced'; "
                    "pass a dict of weights (bigdl.preprocessing.resolve_class_weight('balanced', classes, counts, "
                    f"owner='{name}') computes them from the class counts), or fit on the whole data or a store.")
            elif data.lazy:
                import dask
                import dask.array as da

                values, found = dask.compute(*da.unique(data.y, return_counts=True))  # one more read of y
                counts[np.searchsorted(self.classes_, values)] = found
            else:
                counts = np.bincount(np.searchsorted(self.classes_, data.y), minlength=len(self.classes_))
        self.class_weight_ = resolve_class_weight(self.class_weight, labels, counts, owner=name)

    def _check_targets(self, y) -> None:
        try:
            check_classification_targets(y)
        except ValueError as error:
            raise SchemaError(f"{error} {type(self).__name__} needs class labels; use TorchRegressor for "
                              "continuous targets.") from None

    def _check_block_targets(self, y):
        return column_or_1d(y)

    def _learn_targets(self, data: _TrainingData, classes) -> None:
        if classes is not None:
            found = np.unique(np.asarray(classes))
        elif data.dataset is not None:
            found = np.arange(data.dataset.n_classes)
        elif data.lazy:
            import dask.array as da

            found = np.unique(da.unique(data.y).compute())  # one read of y, bounded by the distinct labels
        else:
            found = np.unique(data.y)
        self._check_targets(found)
        self.classes_ = found
        self.n_outputs_ = len(found)

    def _check_classes(self, classes) -> None:
        if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise SchemaError(f"classes={list(classes)!r} differs from the classes_ {list(self.classes_)!r} of the "
                              f"first partial_fit call of {type(self).__name__}; pass the same classes (or none).")

    def _encode_targets(self, y) -> torch.Tensor:
        y = np.asarray(y)
        codes = np.searchsorted(self.classes_, y)
        unseen = self.classes_[np.minimum(codes, len(self.classes_) - 1)] != y
        if unseen.any():
            raise SchemaError(f"y has labels {np.unique(y[unseen])[:10].tolist()} that are not among classes_ "
                              f"{self.classes_.tolist()} of {type(self).__name__}; pass every label with classes= "
                              "on the first partial_fit call.")
        return torch.from_numpy(codes.astype(np.int64))

    def _output_shape(self, method: str) -> tuple:
        return () if method == "predict" else (self.n_outputs_,)

    def _output_dtype(self, method: str):
        return self.classes_.dtype if method == "predict" else np.float64

    def _predict_array(self, X):
        return self.classes_[np.argmax(self._forward(X), axis=1)]

    def _predict_proba_array(self, X):
        return torch.softmax(torch.from_numpy(self._forward(X)), dim=1).numpy()


class TorchRegressor(RegressorMixin, _TorchEstimator):
    __doc__ = """A PyTorch network as a scikit-learn regressor (one output per target column).

    Fits NumPy arrays in memory, or a store / dask arrays chunk by chunk; has
    ``partial_fit`` for ``Incremental``.  ``y`` may be 2-D (multi-output);
    predictions have the shape ``y`` had, as float64.
    """ + _parameters_doc('"mse", "l1" or "huber"', '"mse"') + """
    Attributes
    ----------
    n_features_in_ : int
    n_outputs_ : int
        Target columns (1 for 1-D ``y``).
    module_, optimizer_, device_, n_epochs_, loss_curve_
        As in :class:`TorchClassifier`.

    Notes
    -----
    It passes scikit-learn's ``parametrize_with_checks`` with no expected
    failure.  Targets are not scaled: standardise ``y`` when its values are
    large, as for any network.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> X, y = make_regression(n_samples=300, n_features=4, noise=0.1, random_state=0)
    >>> model = TorchRegressor(hidden=(16,), max_epochs=30, lr=0.01).fit(X, y / y.std())
    >>> model.predict(X[:3]).shape
    (3,)
    """

    _task = "regression"
    _losses = REGRESSION_LOSSES
    _default_loss = "mse"
    _metric = staticmethod(r2_score)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def partial_fit(self, X, y=None):
        """One shuffled epoch over ``X, y`` (as in :meth:`fit`); the first call builds the module.

        Parameters
        ----------
        X, y
            As in :meth:`fit`.

        Returns
        -------
        self
        """
        return self._partial_fit(X, y)

    def predict(self, X, *, split: str | None = None):
        """Predictions (float64): NumPy for NumPy input, a dask array for a store or dask input.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), dask array or Dataset
            Rows to predict; a store (or its path) is read through its sample
            view, chunk by chunk.
        split : str, optional
            A store's split ("train", "validation", "test"); default all rows.

        Returns
        -------
        ndarray or dask array of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._apply("predict", X, split)

    def score(self, X, y=None, sample_weight=None):
        """R2 on ``X, y``, or on a store's test split when ``X`` is a store.

        Parameters
        ----------
        X : array-like, dask array or Dataset
            Rows; a store is scored on its test split (and gives its own targets).
        y : array-like, optional
            Targets; omit them when ``X`` is a store.
        sample_weight : array-like, optional

        Returns
        -------
        float
        """
        return self._score(X, y, sample_weight)

    def _output_shape(self, method: str) -> tuple:
        return () if self._y_ndim == 1 else (self.n_outputs_,)

    def _check_targets(self, y) -> None:
        pass  # validate_data(y_numeric=True) has checked them

    def _check_block_targets(self, y):
        return check_array(y, ensure_2d=False, dtype=np.float32, input_name="y")

    def _learn_targets(self, data: _TrainingData, classes) -> None:
        self._y_ndim = data.y.ndim
        self.n_outputs_ = 1 if data.y.ndim == 1 else int(data.y.shape[1])

    def _encode_targets(self, y) -> torch.Tensor:
        y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
        if y.shape[1] != self.n_outputs_:
            raise SchemaError(f"y has {y.shape[1]} target columns, but {type(self).__name__} was fitted with "
                              f"{self.n_outputs_}; pass the same targets (or fit again).")
        return torch.from_numpy(y)

    def _predict_array(self, X):
        output = self._forward(X)
        return output.reshape(len(X)) if self._y_ndim == 1 else output
