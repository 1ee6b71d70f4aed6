"""Gradient-boosted trees with XGBoost on a store, on dask arrays or in memory: ``XGBClassifier`` and ``XGBRegressor``.

Training goes one of two ways, chosen from sizes (``memory="auto"``) or
forced with ``memory=``.  When the training rows take under
:data:`MEMORY_FRACTION` of the workers' memory limits, ``xgboost.dask``
trains on the cluster from a ``DaskQuantileDMatrix`` over the split's dask
arrays, each worker holding its share of the chunks.  When they do not,
XGBoost's external memory is used: an ``ExtMemQuantileDMatrix`` is fed one
store chunk at a time by a ``DataIter`` (chunks without rows of the split are
skipped from ``chunk_split_counts``) inside one Dask task on a worker, which
keeps XGBoost's quantised pages on its local disk.  Without a distributed
client both run in this process; in-memory NumPy input trains plain
``xgboost`` at once.  Dask arrays (not a store) that do not fit go to
external memory in this process, one block computed at a time.  Class weights become per-sample weights, chunk by
chunk; early stopping watches the store's validation split.  Prediction runs
chunk by chunk through the one block-prediction helper
(:func:`~bigdl.loaders._predict.predict_blocks`), the booster scattered to
the workers once rather than embedded in every graph.
"""

from __future__ import annotations

import logging
import os
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xgboost
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from bigdl._validation import Interval, Options, check_estimator_params, parameter_error
from bigdl.errors import SchemaError, public_message
from bigdl.estimators._data import BlockPredictorMixin, as_dask_arrays, is_lazy, is_store
from bigdl.loaders._predict import predict_blocks
from bigdl.preprocessing._weights import CLASS_WEIGHT, resolve_class_weight, sample_weights
from bigdl.runtime import active_client, run_on_workers
from bigdl.store.kinds._base import SPLITS

__all__ = ["XGBClassifier", "XGBRegressor", "MEMORY_FRACTION"]

logger = logging.getLogger("bigdl.estimators")

#: ``memory="auto"`` trains in cluster memory when the training rows take less than this share of the
#: workers' memory limits (of this machine's available memory without a client): Dask holds the arrays,
#: XGBoost its quantised copy and its gradients besides them, and the workers run other work too.
MEMORY_FRACTION = 1 / 3

MEMORY_MODES = ("auto", "cluster", "external")

# XGBoost's names for what the estimator's own parameters set: xgb_params may not set them a second time.
_OWN_KEYS = {"n_estimators": "n_estimators", "num_boost_round": "n_estimators", "max_depth": "max_depth",
             "eta": "learning_rate", "learning_rate": "learning_rate", "tree_method": "tree_method",
             "max_bin": "max_bin", "seed": "random_state", "random_state": "random_state",
             "early_stopping_rounds": "early_stopping_rounds"}


class _XGBEstimator(BlockPredictorMixin, BaseEstimator):
    """What the classifier and the regressor share: parameters, the training paths and block prediction."""

    _constraints = {
        "n_estimators": [Interval(int, 1, None)],
        "max_depth": [Interval(int, 0, None)],
        "learning_rate": [Interval(float, 0, 1, closed="right")],
        # Both paths build quantile matrices (DaskQuantileDMatrix, ExtMemQuantileDMatrix): hist only.
        "tree_method": [Options(("hist",))],
        "max_bin": [Interval(int, 2, None)],
        "early_stopping_rounds": [Interval(int, 1, None), None],
        "random_state": [Interval(int, 0, None), None],
        "split": [Options(SPLITS)],
        "memory": [Options(MEMORY_MODES)],
        "xgb_params": [Mapping, None],
    }
    #: Keys of xgb_params reserved to the estimator besides _OWN_KEYS (the classifier's objective).
    _reserved_keys: dict = {}

    def __init__(self, n_estimators: int = 100, *, max_depth: int = 6, learning_rate: float = 0.3,
                 tree_method: str = "hist", max_bin: int = 256, early_stopping_rounds: int | None = None,
                 random_state: int | None = 0, split: str = "train", memory: str = "auto",
                 xgb_params: dict | None = None):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.tree_method = tree_method
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.split = split
        self.memory = memory
        self.xgb_params = xgb_params

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # XGBoost treats NaN as missing and learns a default direction
        return tags

    # -- parameters ----------------------------------------------------
    def _check_params(self) -> None:
        check_estimator_params(self)
        owner = type(self).__name__
        for key in self.xgb_params or {}:
            if not isinstance(key, str):
                raise parameter_error(owner, "xgb_params", self.xgb_params, "a dict of XGBoost parameter names")
            reserved = (f"set it with the {_OWN_KEYS[key]!r} parameter" if key in _OWN_KEYS
                        else self._reserved_keys.get(key))
            if reserved is not None:
                raise parameter_error(owner, "xgb_params", self.xgb_params, f"a dict without {key!r} ({reserved})")

    def _booster_params(self, n_classes: int | None) -> dict:
        params = {"tree_method": self.tree_method, "max_depth": self.max_depth, "eta": float(self.learning_rate),
                  "max_bin": self.max_bin}
        if self.random_state is not None:
            params["seed"] = self.random_state
        params.update(self._objective(n_classes))
        params.update(self.xgb_params or {})
        return params

    def _objective(self, n_classes: int | None) -> dict:
        raise NotImplementedError

    # -- fit -------------------------------------------------------------
    def fit(self, X, y=None, *, eval_set=None):
        """Train on a store's split, on dask arrays, or on in-memory arrays.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
            A store (its ``split`` samples and their targets), dask arrays
            (trained on the active distributed client, or in this process),
            or in-memory samples (checked by scikit-learn's ``validate_data``
            and trained at once in this process; ``memory`` does not apply).
        y : dask array or array-like of shape (n_samples,), optional
            Targets; omit them when ``X`` is a store.
        eval_set : list of one (X_val, y_val) pair, optional
            Validation samples for array input, watched every round and used
            by ``early_stopping_rounds``.  A store brings its own: its
            ``validation`` split (read only when ``early_stopping_rounds`` is set).

        Returns
        -------
        self

        Raises
        ------
        ParameterError
            A parameter out of its range, ``xgb_params`` setting what a named
            parameter sets, or a malformed ``eval_set``.
        SchemaError
            A store of the other task, targets that do not fit, no training
            rows, or early stopping without validation samples.

        Notes
        -----
        With ``memory="auto"`` the training rows (and the validation rows)
        are sized as stored (float32 features, the target, a weight) and
        compared with :data:`MEMORY_FRACTION` of the workers' free memory
        (their memory limits minus what their processes hold now); one line
        on the ``bigdl.estimators`` logger says which way was chosen and why.
        When an ``xgboost.dask`` fit loses a worker (xgboost.dask cannot go
        on without it), ``"auto"`` trains from external memory instead, with
        a warning.  Dask arrays (not a store) that go to
        external memory are fed to XGBoost in this process, one block at a
        time, each block computed on the active scheduler.
        """
        self._check_params()
        data = self._training_data(X, y, eval_set)
        params = self._booster_params(data.n_classes)
        rounds, stopping = self.n_estimators, self.early_stopping_rounds
        if data.in_memory:
            booster, history = _train_in_process(params, rounds, stopping, data.train, data.evals, self.max_bin)
            self.memory_ = "in-memory"
        else:
            client = active_client()
            memory = self._choose_memory(data, client)
            fitted = None
            if memory == "cluster" and client is not None:
                try:
                    fitted = _train_dask(client, params, rounds, stopping, data.train, data.evals, self.max_bin)
                except Exception as error:
                    # xgboost.dask cannot survive a worker that dies (out of memory, killed): "Resilience is
                    # not yet supported" (xgboost.dask's own error).  With memory="auto" the fit goes on from
                    # external memory, which needs one chunk in memory at a time.
                    if self.memory != "auto" or not _lost_a_worker(error):
                        raise
                    logger.warning("%s: xgboost.dask lost a worker (%s); training from external memory instead.",
                                   type(self).__name__, public_message(error, limit=200))
                    memory = "external"
            elif memory == "cluster":
                import dask

                train, evals = dask.compute(data.train, data.evals)
                fitted = _train_in_process(params, rounds, stopping, train, evals, self.max_bin)
            if fitted is None and data.dataset is not None and client is not None:
                key = f"bigdl-xgb-fit-{os.urandom(4).hex()}"
                with _CallerRounds(client, rounds) as progress:
                    fitted = run_on_workers(client, _train_external, [
                        (params, rounds, stopping, data.train_source, data.eval_source, self.max_bin,
                         progress.topic)], key=key)[0]
                    progress.drain(fitted[0].num_boosted_rounds())
            elif fitted is None:
                fitted = _train_external(params, rounds, stopping, data.train_source, data.eval_source, self.max_bin)
            booster, history = fitted
            self.memory_ = memory if memory == "external" or client is not None else "in-memory"
        self.booster_ = booster
        self.evals_result_ = {name: {metric: [float(value) for value in values] for metric, values in metrics.items()}
                              for name, metrics in history.items()}
        self.best_iteration_ = int(booster.best_iteration) if stopping is not None and data.has_evals \
            else booster.num_boosted_rounds() - 1
        return self

    def _training_data(self, X, y, eval_set) -> "_TrainingData":
        """Validate the input; sets ``n_features_in_`` (and the classifier's ``classes_``)."""
        owner = type(self).__name__
        if eval_set is not None and (not isinstance(eval_set, (list, tuple)) or len(eval_set) != 1
                                     or not isinstance(eval_set[0], (list, tuple)) or len(eval_set[0]) != 2):
            raise parameter_error(owner, "eval_set", eval_set, "None or a list of one (X_val, y_val) pair")
        if not is_lazy(X):
            return self._in_memory_data(X, y, eval_set)
        if is_store(X) and eval_set is not None:
            raise SchemaError(f"{owner}.fit: a store brings its validation split for early stopping; eval_set= "
                              "is for array input.")
        X, y, dataset = as_dask_arrays(X, y, split=self.split)
        if X.ndim != 2:
            raise SchemaError(f"{owner} needs 2-D X (samples x features); got shape {X.shape}.")
        validate_data(self, X, reset=True, skip_check_array=True)
        self._check_task(dataset, y)
        evals = None
        if dataset is not None and self.early_stopping_rounds is not None:
            evals = dataset.arrays("validation")
            if evals[0].shape[0] == 0:
                raise SchemaError(f"{owner}: early_stopping_rounds needs validation rows, and the store "
                                  f"{str(dataset.path)!r} has none; write it with validation=0.1, say.")
        elif eval_set is not None:
            Xv, yv, _ = as_dask_arrays(eval_set[0][0], eval_set[0][1], split=None)
            self._check_width(Xv.shape)
            evals = (Xv, yv)
        if self.early_stopping_rounds is not None and evals is None:
            raise SchemaError(f"{owner}: early_stopping_rounds needs validation samples: pass "
                              "eval_set=[(X_val, y_val)] with array input.")
        if not np.isnan(X.shape[0]) and X.shape[0] == 0:
            raise SchemaError(f"{owner}: no training rows (split {self.split!r} is empty).")
        y, class_weights = self._lazy_targets(dataset, y)
        if evals is not None:
            evals = (evals[0], self._encode_lazy(evals[1]))
        return _TrainingData.lazy(X, y, evals, class_weights, dataset, self.split, self._n_classes())

    def _in_memory_data(self, X, y, eval_set) -> "_TrainingData":
        X, y = validate_data(self, X, y, dtype=np.float32, ensure_all_finite="allow-nan",
                             y_numeric=isinstance(self, RegressorMixin))
        y, class_weights = self._memory_targets(y)
        evals = None
        if eval_set is not None:
            Xv, yv = eval_set[0]
            Xv = np.asarray(Xv) if not hasattr(Xv, "shape") else Xv
            self._check_width(np.shape(Xv))
            Xv = validate_data(self, Xv, reset=False, dtype=np.float32, ensure_all_finite="allow-nan")
            yv = self._encode_memory(np.asarray(yv).ravel())
            evals = (Xv, yv, sample_weights(yv, class_weights))
        if self.early_stopping_rounds is not None and evals is None:
            raise SchemaError(f"{type(self).__name__}: early_stopping_rounds needs validation samples: pass "
                              "eval_set=[(X_val, y_val)].")
        return _TrainingData(train=(X, y, sample_weights(y, class_weights)), evals=evals, in_memory=True,
                             n_classes=self._n_classes())

    # Hooks of the task (the classifier encodes labels and weighs classes; the regressor passes targets).
    def _check_task(self, dataset, y) -> None:
        """Refuse a store or lazy targets of the wrong task."""

    def _lazy_targets(self, dataset, y):
        return y, None

    def _encode_lazy(self, y):
        return y

    def _memory_targets(self, y):
        return y, None

    def _encode_memory(self, y):
        return y

    def _n_classes(self) -> int | None:
        return None

    # -- which memory --------------------------------------------------
    def _choose_memory(self, data: "_TrainingData", client) -> str:
        """``"cluster"`` or ``"external"``, from sizes or ``memory=``; logs the choice and why."""
        name = type(self).__name__
        nbytes = data.nbytes()
        budget, where = _memory_budget(client)
        size = f"{nbytes / 2 ** 20:.1f} MiB" if np.isfinite(nbytes) else "an unknown size"
        sizes = f"the training rows take {size}; {where}: {budget / 2 ** 20:.1f} MiB"
        if self.memory != "auto":
            memory, reason = self.memory, f"memory={self.memory!r} was asked for ({sizes})"
        elif not np.isfinite(nbytes):
            memory, reason = "external", f"the dask arrays' row counts are unknown ({sizes})"
        else:
            memory = "cluster" if nbytes < MEMORY_FRACTION * budget else "external"
            reason = (f"the training rows take {size}, {'under' if memory == 'cluster' else 'not under'} "
                      f"{MEMORY_FRACTION * 100:.3g}% of {where} ({budget / 2 ** 20:.1f} MiB)")
        unit = "store chunk" if data.dataset is not None else "block"
        if memory == "cluster":
            how = (f"in cluster memory (xgboost.dask on {len(_workers(client))} workers)" if client is not None
                   else "in this process's memory (no Dask client)")
        elif data.dataset is not None and client is not None:
            how = f"from external memory (ExtMemQuantileDMatrix fed one {unit} at a time, in one task on a worker)"
        else:
            how = f"from external memory (ExtMemQuantileDMatrix fed one {unit} at a time, in this process)"
        logger.info("%s trains %s: %s.", name, how, reason)
        if memory == "external" and client is not None and data.dataset is not None:
            _check_external_fits(name, data, client, self.max_bin)
        return memory

    # -- prediction, chunk by chunk --------------------------------------
    def _function(self, method: str) -> "_BoosterFunction":
        classes = getattr(self, "classes_", None)
        return _BoosterFunction(self.booster_, self.best_iteration_ + 1, method, classes)

    def _apply(self, method: str, X, *, split=None, width: int | None = None):
        check_is_fitted(self, "booster_")
        function = self._function(method)
        if not is_lazy(X):
            return function(self._in_memory_samples(X, ensure_all_finite="allow-nan"))
        X = self._lazy_samples(X, method, split)
        model = _shipped(function, active_client())
        if width is None:
            dtype = self.classes_.dtype if method == "predict" and function.classes is not None else np.float64
            return predict_blocks(model, X, dtype=dtype, name=f"bigdl-xgb-{method}")
        return predict_blocks(model, X, tail=(width,), dtype=np.float64, name=f"bigdl-xgb-{method}")

    def predict(self, X, *, split: str | None = None):
        """Predictions, chunk by chunk for a store or a dask array.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        split : str, optional
            The samples of a store to predict (default: all of them).

        Returns
        -------
        dask array or numpy.ndarray of shape (n_samples,)
            A dask array for a store or dask input, NumPy for in-memory input.
            The booster goes to the cluster once per client (scattered), so
            compute the result on the client that was active here.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        SchemaError
            ``X`` with another number of features than the training data.
        """
        return self._apply("predict", X, split=split)


class XGBClassifier(ClassifierMixin, _XGBEstimator):
    """XGBoost classifier on a store, dask arrays or in-memory arrays, in cluster or external memory.

    The objective is ``binary:logistic`` for two classes, ``multi:softprob``
    for more.  See the module for how training is placed.

    .. warning:: ``memory="cluster"`` loads the whole training split into the
       workers' memory (plus XGBoost's quantised copy); ``"auto"`` does so
       only when it takes under :data:`MEMORY_FRACTION` of it.

    Parameters
    ----------
    n_estimators : int, default 100
        Boosting rounds (trees per class).
    max_depth : int, default 6
        Maximum tree depth (0: no limit, with ``grow_policy="lossguide"`` in ``xgb_params``).
    learning_rate : float, default 0.3
        Shrinkage of each tree (XGBoost's ``eta``), in (0, 1].
    tree_method : {"hist"}, default "hist"
        The tree construction both training paths build their quantile matrices for.
    max_bin : int, default 256
        Histogram bins per feature.
    early_stopping_rounds : int or None, default None
        Stop when the validation loss has not improved for this many rounds:
        on a store's ``validation`` split, or on ``fit(eval_set=)`` for arrays.
    class_weight : None, "balanced" or dict, default None
        Per-class weights applied as per-sample weights (to the validation
        samples too); "balanced" from the train split's class counts, as in
        scikit-learn (see :func:`bigdl.preprocessing.resolve_class_weight`).
    random_state : int or None, default 0
        XGBoost's ``seed``.
    split : str, default "train"
        The store split to train on.
    memory : {"auto", "cluster", "external"}, default "auto"
        Where the training rows live while training: ``"cluster"``, in
        memory (``xgboost.dask`` on the active client, else this process);
        ``"external"``, XGBoost's external memory fed chunk by chunk;
        ``"auto"`` picks from sizes.  In-memory input ignores it.
    xgb_params : dict or None, default None
        Further XGBoost parameters (``subsample``, ``reg_lambda``,
        ``eval_metric``, ``nthread``...); not those named above, nor ``objective``.

    Attributes
    ----------
    booster_ : xgboost.Booster
        The trained booster.
    classes_ : ndarray
        The class labels; for a store its class codes ``0 .. n_classes-1``
        (``ds.classes`` are the labels).
    n_features_in_ : int
    best_iteration_ : int
        The best round with early stopping (predictions use the trees up to
        it), else the last round.
    evals_result_ : dict
        ``{"validation": {metric: [value per round]}}`` when there were
        validation samples, else empty.
    memory_ : {"cluster", "external", "in-memory"}
        How it was trained: ``xgboost.dask``, external memory, or in this
        process's memory.

    Examples
    --------
    >>> model = XGBClassifier(early_stopping_rounds=10).fit(ds)          # doctest: +SKIP
    >>> model.score(ds)                                                  # test accuracy, chunk by chunk
    """

    _constraints = {**_XGBEstimator._constraints, "class_weight": CLASS_WEIGHT}
    _reserved_keys = {"objective": "XGBClassifier sets binary:logistic or multi:softprob from the classes",
                      "num_class": "XGBClassifier sets it from the classes"}

    def __init__(self, n_estimators: int = 100, *, max_depth: int = 6, learning_rate: float = 0.3,
                 tree_method: str = "hist", max_bin: int = 256, early_stopping_rounds: int | None = None,
                 class_weight=None, random_state: int | None = 0, split: str = "train", memory: str = "auto",
                 xgb_params: dict | None = None):
        super().__init__(n_estimators, max_depth=max_depth, learning_rate=learning_rate, tree_method=tree_method,
                         max_bin=max_bin, early_stopping_rounds=early_stopping_rounds, random_state=random_state,
                         split=split, memory=memory, xgb_params=xgb_params)
        self.class_weight = class_weight

    def _objective(self, n_classes: int | None) -> dict:
        if n_classes == 2:
            return {"objective": "binary:logistic"}
        return {"objective": "multi:softprob", "num_class": n_classes}

    def _n_classes(self) -> int:
        return len(self.classes_)

    def _check_task(self, dataset, y) -> None:
        if dataset is not None and dataset.task != "classification":
            raise SchemaError(f"XGBClassifier needs a classification store; {str(dataset.path)!r} holds "
                              f"{dataset.task} targets. Use XGBRegressor.")
        if dataset is None and np.issubdtype(y.dtype, np.floating):
            raise SchemaError("XGBClassifier got float targets; use XGBRegressor for regression or pass class "
                              "labels.")

    def _check_classes(self) -> None:
        if len(self.classes_) < 2:
            raise SchemaError(f"XGBClassifier needs at least two classes in the training targets; got one class "
                              f"({self.classes_[0]!r}).")

    def _class_weights(self, counts):
        return resolve_class_weight(self.class_weight, list(self.classes_), counts, owner="XGBClassifier")

    def _lazy_targets(self, dataset, y):
        import dask
        import dask.array as da

        if dataset is not None:
            self.classes_ = np.arange(dataset.n_classes)
            self._check_classes()
            # Only "balanced" needs the counts (one pass over y and split, never X).
            balanced = isinstance(self.class_weight, str)
            counts = dataset.class_counts(self.split) if balanced else np.zeros(len(self.classes_))
            return y, self._class_weights(counts)
        classes, counts = dask.compute(*da.unique(y, return_counts=True))
        self.classes_ = classes
        self._check_classes()
        return self._encode_lazy(y), self._class_weights(counts)

    def _encode_lazy(self, y):
        if y is None:
            return y
        if np.issubdtype(self.classes_.dtype, np.integer) and np.array_equal(self.classes_,
                                                                           np.arange(len(self.classes_))):
            return y.astype(np.int64) if y.dtype != np.int64 else y
        return y.map_blocks(_encode, self.classes_, dtype=np.int64)

    def _memory_targets(self, y):
        check_classification_targets(y)  # "Unknown label type: continuous..." for regression targets
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        codes = encoder.transform(y)
        counts = np.bincount(codes, minlength=len(self.classes_))
        self._check_classes()
        return codes, self._class_weights(counts)

    def _encode_memory(self, y):
        return _encode(y, self.classes_)

    def predict_proba(self, X, *, split: str | None = None):
        """Class probabilities (columns in ``classes_`` order), chunk by chunk for a store or a dask array.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        split : str, optional
            The samples of a store (default: all of them).

        Returns
        -------
        dask array or numpy.ndarray of shape (n_samples, n_classes)

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        check_is_fitted(self, "booster_")
        return self._apply("predict_proba", X, split=split, width=len(self.classes_))

    def score(self, X, y=None, sample_weight=None, *, split: str = "test"):
        """Accuracy on a store's split (``X`` a store) or on arrays ``X``, ``y``.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Omit it for a store (its class codes are the targets).
        sample_weight : array-like of shape (n_samples,), optional
        split : str, default "test"
            The store's split to score on.

        Returns
        -------
        float
        """
        return self._score_any(X, y, sample_weight, split)

    def _score(self, y, predicted, sample_weight):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, predicted, sample_weight=sample_weight)


class XGBRegressor(RegressorMixin, _XGBEstimator):
    """XGBoost regressor on a store, dask arrays or in-memory arrays (see :class:`XGBClassifier`).

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, tree_method, max_bin, early_stopping_rounds, random_state, split, memory
        As in :class:`XGBClassifier`.
    xgb_params : dict or None, default None
        Further XGBoost parameters, ``objective`` among them (default
        ``reg:squarederror``); not those named above.

    Attributes
    ----------
    booster_ : xgboost.Booster
    n_features_in_ : int
    best_iteration_ : int
    evals_result_ : dict
    memory_ : {"cluster", "external", "in-memory"}
        As in :class:`XGBClassifier`.

    Examples
    --------
    >>> model = XGBRegressor(n_estimators=200, memory="external").fit(ds)   # doctest: +SKIP
    >>> model.score(ds)                                                     # test R2, chunk by chunk
    """

    def _objective(self, n_classes: int | None) -> dict:
        return {"objective": "reg:squarederror"}

    def _check_task(self, dataset, y) -> None:
        if dataset is not None and dataset.task != "regression":
            raise SchemaError(f"XGBRegressor needs a regression store; {str(dataset.path)!r} holds "
                              f"{dataset.task} targets. Use XGBClassifier.")

    def score(self, X, y=None, sample_weight=None, *, split: str = "test"):
        """R2 on a store's split (``X`` a store) or on arrays ``X``, ``y``.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Omit it for a store.
        sample_weight : array-like of shape (n_samples,), optional
        split : str, default "test"
            The store's split to score on.

        Returns
        -------
        float
        """
        return self._score_any(X, y, sample_weight, split)

    def _score(self, y, predicted, sample_weight):
        from sklearn.metrics import r2_score

        return r2_score(y, predicted, sample_weight=sample_weight)


# ------------------------------------------------------------------ the training data
@dataclass
class _TrainingData:
    """What fit trains on: ``(X, y, weight)`` of the training and validation samples, and their sources.

    In memory: NumPy triples.  Lazy: dask triples (for the cluster path) and
    chunk sources (for the external path), built from the same arrays.
    """

    train: tuple
    evals: tuple | None
    in_memory: bool
    n_classes: int | None = None
    dataset: object = None
    train_source: object = None
    eval_source: object = None

    @property
    def has_evals(self) -> bool:
        return self.evals is not None

    @classmethod
    def lazy(cls, X, y, evals, class_weights, dataset, split, n_classes) -> "_TrainingData":
        def weights(codes):
            if class_weights is None:
                return None
            return codes.map_blocks(sample_weights, class_weights, dtype=np.float64)

        train = (X, y, weights(y))
        evals = None if evals is None else (evals[0], evals[1], weights(evals[1]))
        if dataset is not None:
            train_source = _StoreChunks.of(dataset, split, class_weights)
            eval_source = _StoreChunks.of(dataset, "validation", class_weights) if evals is not None else None
        else:
            train_source = _DaskBlocks(*train)
            eval_source = _DaskBlocks(*evals) if evals is not None else None
        return cls(train=train, evals=evals, in_memory=False, n_classes=n_classes, dataset=dataset,
                   train_source=train_source, eval_source=eval_source)

    def nbytes(self) -> float:
        """Bytes of the training and validation samples as arrays (NaN when row counts are unknown)."""
        total = 0.0
        for X, y, weight in [self.train] + ([self.evals] if self.evals is not None else []):
            per_row = X.shape[1] * X.dtype.itemsize + y.dtype.itemsize + (8 if weight is not None else 0)
            total += X.shape[0] * per_row
        return total


def _encode(labels, classes: np.ndarray) -> np.ndarray:
    """Class codes of ``labels`` (positions in the sorted ``classes``); a label not among them is refused."""
    labels = np.asarray(labels)
    codes = np.searchsorted(classes, labels)
    known = (codes < len(classes)) & (classes[np.minimum(codes, len(classes) - 1)] == labels)
    if not known.all():
        raise SchemaError(f"The validation targets hold labels the training targets do not: "
                          f"{sorted(set(np.unique(labels[~known]).tolist()))[:5]!r}.")
    return codes.astype(np.int64)


class _StoreChunks:
    """The store chunks holding rows of ``split``, read one at a time as ``(X, y, weight)``.

    Holds only the path, so it pickles cheaply into the training task.
    """

    def __init__(self, path: str, split: str, chunks: list, class_weights):
        self.path, self.split, self.chunks, self.class_weights = path, split, chunks, class_weights
        self._dataset = None

    @classmethod
    def of(cls, dataset, split: str, class_weights) -> "_StoreChunks":
        # chunk_split_counts says which chunks hold the split: the others are never read.
        counts = dataset.view.chunk_counts(split)
        return cls(str(dataset.path), split, [int(chunk) for chunk in np.flatnonzero(counts > 0)], class_weights)

    def __len__(self) -> int:
        return len(self.chunks)

    def read(self, position: int):
        if self._dataset is None:
            from bigdl.store import open_store

            self._dataset = open_store(self.path)
        X, y = self._dataset.read_chunk(self.chunks[position], self.split)
        return X, y, sample_weights(y, self.class_weights)

    def __getstate__(self):
        return {**self.__dict__, "_dataset": None}


class _DaskBlocks:
    """The row blocks of dask ``(X, y, weight)``, computed one at a time on the active scheduler."""

    def __init__(self, X, y, weight):
        self.X, self.y, self.weight = X, y, weight

    def __len__(self) -> int:
        return self.X.numblocks[0]

    def read(self, position: int):
        import dask

        parts = [self.X.blocks[position], self.y.blocks[position]]
        if self.weight is not None:
            parts.append(self.weight.blocks[position])
        values = dask.compute(*parts)
        return values[0], values[1], values[2] if self.weight is not None else None


class _ChunkIter(xgboost.DataIter):
    """XGBoost's data iterator over a chunk source: each ``next`` hands over one chunk with rows."""

    def __init__(self, source, cache_prefix: str):
        self._source = source
        self._position = 0
        super().__init__(cache_prefix=cache_prefix)

    def next(self, input_data) -> bool:
        while self._position < len(self._source):
            X, y, weight = self._source.read(self._position)
            self._position += 1
            if len(X):  # a block of dask input may hold no rows
                input_data(data=X, label=y, weight=weight)
                return True
        return False

    def reset(self) -> None:
        self._position = 0


# ------------------------------------------------------------------ the training paths
class _RoundBar(xgboost.callback.TrainingCallback):
    """A tqdm bar over the boosting rounds, or, given a ``topic``, one event per round sent to the caller.

    In the calling process the bar shows as
    :func:`~bigdl.runtime._tasks.progress_disabled` says (``BIGDL_PROGRESS``,
    else only when stderr is a terminal).  On a worker (``xgboost.dask`` or
    external memory on the cluster) rank 0 logs each round on ``topic``, and
    :class:`_CallerRounds` ticks the caller's bar from those events.
    """

    def __init__(self, rounds: int, topic: str | None = None):
        super().__init__()
        self.rounds = rounds
        self.topic = topic
        self._bar = None

    def before_training(self, model):
        if self.topic is None:
            self._bar = _round_bar(self.rounds)
        return model

    def after_iteration(self, model, epoch, evals_log) -> bool:
        if self._bar is not None:
            self._bar.update(1)
        elif xgboost.collective.get_rank() == 0:  # one voice per job: rank 0's rounds are the job's
            from distributed import get_worker

            get_worker().log_event(self.topic, {"round": epoch + 1})
        return False

    def after_training(self, model):
        if self._bar is not None:
            self._bar.close()
        return model


def _round_bar(rounds: int):
    import sys

    from tqdm.auto import tqdm

    from bigdl.runtime._tasks import progress_disabled

    return tqdm(total=rounds, desc="XGBoost", unit="round", disable=progress_disabled(), file=sys.stderr,
                leave=False)


class _CallerRounds:
    """The caller's bar over rounds run on workers, ticked by :class:`_RoundBar`'s events on ``topic``.

    Events travel worker -> scheduler -> client in batches, so the last
    rounds may land after training returns: leaving the block waits (at most
    ``drain_seconds``) until the bar has the rounds the booster ended with.
    """

    def __init__(self, client, rounds: int, drain_seconds: float = 2.0):
        self.client, self.rounds, self.drain_seconds = client, rounds, drain_seconds
        self.topic = f"bigdl-xgb-rounds-{os.urandom(4).hex()}"
        self.done = 0

    def on_event(self, message: dict) -> None:
        # The client's event loop thread: the bar only moves forward.
        done = int(message.get("round", 0))
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def __enter__(self):
        self.bar = _round_bar(self.rounds)
        self.client.subscribe_topic(self.topic, lambda event: self.on_event(event[1]))
        return self

    def drain(self, rounds_done: int) -> None:
        import time

        deadline = time.monotonic() + self.drain_seconds
        while self.done < rounds_done and time.monotonic() < deadline:
            time.sleep(0.02)

    def __exit__(self, *exc):
        try:
            self.client.unsubscribe_topic(self.topic)
        finally:
            self.bar.close()
        return False


def _train_in_process(params, rounds, stopping, train, evals, max_bin):
    """Plain xgboost on NumPy arrays in this process."""
    X, y, weight = train
    dtrain = xgboost.QuantileDMatrix(X, y, weight=weight, max_bin=max_bin)
    watch = []
    if evals is not None:
        watch = [(xgboost.QuantileDMatrix(evals[0], evals[1], weight=evals[2], max_bin=max_bin, ref=dtrain),
                  "validation")]
    history: dict = {}
    booster = xgboost.train(params, dtrain, rounds, evals=watch, evals_result=history,
                            early_stopping_rounds=stopping, verbose_eval=False, callbacks=[_RoundBar(rounds)])
    return booster, history


def _train_dask(client, params, rounds, stopping, train, evals, max_bin):
    """xgboost.dask on the client's workers, each holding its share of the blocks."""
    import xgboost.dask as dxgb

    def matrix(triple, ref=None):
        X, y, weight = _with_rows(*triple)
        return dxgb.DaskQuantileDMatrix(client, X, y, weight=weight, max_bin=max_bin, ref=ref)

    dtrain = matrix(train)
    watch = [(matrix(evals, ref=dtrain), "validation")] if evals is not None else []
    with _CallerRounds(client, rounds) as progress:
        output = dxgb.train(client, params, dtrain, rounds, evals=watch, early_stopping_rounds=stopping,
                            verbose_eval=False, callbacks=[_RoundBar(rounds, topic=progress.topic)])
        progress.drain(output["booster"].num_boosted_rounds())
    return output["booster"], output["history"]


def _with_rows(X, y, weight):
    """The arrays without their empty row blocks (chunks that hold no rows of the split), features in one block."""
    sizes = X.chunks[0]
    if not any(np.isnan(sizes)):
        filled = [index for index, size in enumerate(sizes) if size > 0]
        if len(filled) < len(sizes):
            X, y = X.blocks[filled], y.blocks[filled]
            weight = weight.blocks[filled] if weight is not None else None
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X, y, weight


def _train_external(params, rounds, stopping, train_source, eval_source, max_bin, topic=None):
    """XGBoost's external memory, fed chunk by chunk; runs in a task on a worker or in this process.

    The quantised pages go to a temporary folder in the worker's local
    directory (else the system's), removed when training ends.  On a worker,
    ``topic`` names the event topic the caller's round bar listens to.
    """
    folder, threads = None, None
    try:
        from distributed import get_worker

        worker = get_worker()
        folder, threads = worker.local_directory, worker.state.nthreads
    except (ImportError, ValueError):
        pass
    if threads is not None and "nthread" not in params:
        params = dict(params, nthread=threads)
    with tempfile.TemporaryDirectory(prefix="bigdl-xgb-", dir=folder) as cache:
        dtrain = xgboost.ExtMemQuantileDMatrix(_ChunkIter(train_source, os.path.join(cache, "train")),
                                               max_bin=max_bin, nthread=params.get("nthread"))
        watch = []
        if eval_source is not None:
            watch = [(xgboost.ExtMemQuantileDMatrix(_ChunkIter(eval_source, os.path.join(cache, "validation")),
                                                    max_bin=max_bin, ref=dtrain, nthread=params.get("nthread")),
                      "validation")]
        history: dict = {}
        booster = xgboost.train(params, dtrain, rounds, evals=watch, evals_result=history,
                                early_stopping_rounds=stopping, verbose_eval=False,
                                callbacks=[_RoundBar(rounds, topic=topic)])
        del dtrain, watch  # the matrices remove their cache files when freed, before their folder goes
    return booster, history


def _workers(client) -> dict:
    return client.scheduler_info(n_workers=-1)["workers"]


def _memory_budget(client) -> tuple[float, str]:
    """Bytes training may be sized against, and whose they are: what the workers' limits leave free now."""
    import psutil

    if client is None:
        return float(psutil.virtual_memory().available), "this machine's available memory"
    workers = _workers(client)
    if not workers:
        raise SchemaError("The Dask cluster has no workers to train on; start some, or close the client to train "
                          "in this process.")
    # A worker without a limit may use its machine's memory: this machine's is the best guess here.  What a
    # worker process already holds (the interpreter, libraries, other results) is not free for training:
    # on 512 MiB workers that was more than half of the limit.
    headroom = []
    for info in workers.values():
        limit = float(info.get("memory_limit") or psutil.virtual_memory().total)
        used = float((info.get("metrics") or {}).get("memory") or 0)
        headroom.append(max(limit - used, 0.0))
    return sum(headroom), f"the {len(headroom)} workers' free memory (memory limits minus what they hold)"


#: Bytes per training row an external-memory fit still holds in memory, per output (class or target):
#: XGBoost keeps the gradient and the hessian (float32 each) and the margin of every row (float32).
EXTERNAL_BYTES_PER_ROW_AND_OUTPUT = 12
#: Per row whatever the outputs: the label and the weight (float32 each) and XGBoost's row bookkeeping.
EXTERNAL_BYTES_PER_ROW = 16
#: Per row and feature: the quantised features (one byte per bin index up to 256 bins, two above) sit in
#: XGBoost's page cache on disk, but the cache is memory-mapped and its pages, once read, count in the
#: worker's resident memory, which is what Dask's memory limit watches.
EXTERNAL_BYTES_PER_ROW_AND_FEATURE = 1
#: And once per fit: the chunk being fed, XGBoost's buffers and its quantile sketch.
EXTERNAL_FIXED_BYTES = 144 << 20
# Measured in process (3 classes, 20 features, 10 trees of depth 6): 196 MiB above the process's
# memory at 800,000 train rows, 303 MiB at 2,400,000 (70 bytes per row at the margin; the constants
# give 72). Without the page cache's bytes, 10.5M train rows on 1 GiB workers passed the check and
# were killed four times over (the boosting benchmark at 15x).


def external_bytes(rows: int, outputs: int, feature_bytes: int) -> int:
    """Memory an external-memory fit holds in its process: per row, per output and per feature byte, plus fixed."""
    return int(EXTERNAL_FIXED_BYTES + rows * (outputs * EXTERNAL_BYTES_PER_ROW_AND_OUTPUT + EXTERNAL_BYTES_PER_ROW
                                              + feature_bytes * EXTERNAL_BYTES_PER_ROW_AND_FEATURE))


def _check_external_fits(name: str, data: "_TrainingData", client, max_bin: int = 256) -> None:
    """Refuse, before any task runs, an external-memory fit whose per-row state cannot fit the roomiest worker.

    Measured: 7,000,000 rows of 3 classes on 512 MiB workers holding about 250 MiB each were killed
    four times over (KilledWorker) instead of training.
    """
    import psutil

    rows = sum(int(arrays[0].shape[0]) for arrays in [data.train] + ([data.evals] if data.evals is not None else []))
    outputs = max(int(data.n_classes or 1), 1) if (data.n_classes or 0) > 2 else 1
    features = int(np.prod(data.train[0].shape[1:])) * (1 if max_bin <= 256 else 2)
    needed = external_bytes(rows, outputs, features)
    free = []
    for info in _workers(client).values():
        limit = float(info.get("memory_limit") or psutil.virtual_memory().total)
        free.append(limit - float((info.get("metrics") or {}).get("memory") or 0))
    if free and needed > max(free):
        raise SchemaError(
            f"{name} cannot train from external memory on this cluster: XGBoost keeps gradients, hessians and "
            f"margins of every row in memory and maps its page cache of quantised features into it ({rows:,} rows "
            f"x {outputs} output(s) and {features} feature byte(s): about {needed / 2 ** 20:,.0f} "
            f"MiB), more than the roomiest worker has free ({max(free) / 2 ** 20:,.0f} MiB of its memory_limit). "
            "Give the workers more memory (start_local(memory_limit=...)), or train on fewer rows.")


def _lost_a_worker(error: BaseException) -> bool:
    """Whether a failed xgboost.dask fit failed because one of its workers died."""
    from distributed.scheduler import KilledWorker

    text = str(error)
    return isinstance(error, KilledWorker) or "worker" in text.lower() and (
        "died" in text or "Resilience" in text or "lost" in text.lower())


# ------------------------------------------------------------------ prediction
class _BoosterFunction:
    """A fitted booster as the callable :func:`predict_blocks` maps over blocks.

    ``method`` is ``"predict"`` or ``"predict_proba"``; ``classes`` is None
    for regression.  It pickles as the booster's model bytes.
    """

    def __init__(self, booster, iterations: int, method: str, classes=None):
        self.booster, self.iterations, self.method, self.classes = booster, iterations, method, classes

    def __call__(self, X) -> np.ndarray:
        output = self.booster.inplace_predict(X, iteration_range=(0, self.iterations))
        if self.classes is None:
            return output
        proba = output.reshape(len(X), -1)
        if proba.shape[1] == 1:  # binary:logistic gives the second class's probability
            proba = np.column_stack([1 - proba[:, 0], proba[:, 0]])
        if self.method == "predict_proba":
            return proba
        return self.classes[np.argmax(proba, axis=1)]


# booster -> {(client id, method): future of its scattered _BoosterFunction}; entries go with their booster.
_SCATTERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _shipped(function: _BoosterFunction, client):
    """``function`` as predict_blocks should embed it: on a distributed client, a future scattered once."""
    if client is None:
        return function
    per_booster = _SCATTERED.setdefault(function.booster, {})
    key = (client.id, function.method, function.iterations)
    future = per_booster.get(key)
    if future is None or future.status != "finished":
        future = client.scatter(function, broadcast=True, hash=False)
        per_booster[key] = future
    return future
