"""dask-ml's wrappers, taught to read a store.

:class:`Incremental` and :class:`ParallelPostFit` are dask-ml's classes with
the same parameters; their ``fit``/``partial_fit``/``predict``/``score``
also accept a :class:`~bigdl.store.Dataset` (or a store path), reading the
train split to fit and the test split to score, and passing the store's
classes to ``partial_fit``.  Dask arrays and NumPy arrays work exactly as in
dask-ml.  :class:`Incremental` also resolves the wrapped estimator's
``class_weight="balanced"`` (which ``partial_fit`` refuses: one block cannot
tell the balance) into the dict of the whole training split's counts.  :func:`predict_to_store` writes predictions, chunk by chunk, into a
new store that keeps the source's split and targets.
"""

from __future__ import annotations

import numpy as np
from dask_ml import wrappers as _dask_ml

from bigdl.errors import SchemaError
from bigdl.estimators._data import as_dask_arrays, is_store
from bigdl.loaders._predict import predict_blocks
from bigdl.preprocessing._weights import resolve_class_weight

__all__ = ["Incremental", "ParallelPostFit", "predict_to_store"]


def _store_classes(dataset, fit_kwargs: dict, estimator) -> dict:
    from sklearn.base import is_classifier

    if dataset is not None and dataset.task == "classification" and "classes" not in fit_kwargs \
            and is_classifier(estimator):
        fit_kwargs = dict(fit_kwargs, classes=np.arange(dataset.n_classes))
    return fit_kwargs


def _resolved_class_weight(estimator, y, dataset, split: str, fit_kwargs: dict) -> None:
    """Give an unfitted ``estimator`` the ``class_weight`` dict its ``partial_fit`` calls can take.

    ``"balanced"`` becomes ``n_samples / (n_classes * count)`` from the
    class counts of the whole training data: the store's ``split`` counts
    (no feature is read), else one pass over ``y``.  For a store, a dict
    keyed by class names becomes one keyed by the codes its ``y`` holds.
    Other dicts, and None, are left as they are.
    """
    from collections.abc import Mapping

    weight = estimator.get_params(deep=False).get("class_weight") if hasattr(estimator, "get_params") else None
    if weight is None or (dataset is None and isinstance(weight, Mapping)):
        return
    owner = f"Incremental({type(estimator).__name__})"
    if dataset is not None:
        if dataset.task != "classification":
            return
        labels = dataset.classes if dataset.classes is not None else list(range(dataset.n_classes))
        weights = resolve_class_weight(weight, labels, dataset.class_counts(split), owner=owner)
        keys = list(range(len(labels)))
    else:
        classes, counts = _label_counts(y)
        if "classes" in fit_kwargs:  # a class of classes= absent from y has no count: resolve refuses "balanced"
            given = np.asarray(fit_kwargs["classes"])
            counts = np.array([counts[classes == label].sum() for label in given])
            classes = given
        weights = resolve_class_weight(weight, list(classes), counts, owner=owner)
        keys = [label.item() if isinstance(label, np.generic) else label for label in classes]
    estimator.set_params(class_weight={key: float(value) for key, value in zip(keys, weights)})


def _label_counts(y):
    """``(labels, counts)`` of ``y``: one pass over a dask array's blocks, or NumPy's."""
    import dask
    import dask.array as da

    if isinstance(y, da.Array):
        return tuple(np.asarray(part) for part in dask.compute(*da.unique(y, return_counts=True)))
    return np.unique(np.asarray(y), return_counts=True)


class _StoreAware:
    """Shared store handling for both wrappers (dask-ml does the rest)."""

    def _arrays(self, X, y, split):
        if is_store(X):
            X, y, dataset = as_dask_arrays(X, y, split=split)
            return X, y, dataset
        return X, y, None

    def predict(self, X, *, split: str | None = None):
        """Predictions chunk by chunk (a dask array for a store or dask input).

        For a store, ``split`` picks the rows (default: all).
        """
        if is_store(X):
            X, _, _ = as_dask_arrays(X, split=split or "all", need_y=False)
        return super().predict(X)

    def predict_proba(self, X, *, split: str | None = None):
        """Class probabilities chunk by chunk (a dask array for a store or dask input)."""
        if is_store(X):
            X, _, _ = as_dask_arrays(X, split=split or "all", need_y=False)
        return super().predict_proba(X)

    def score(self, X, y=None, compute=True):
        """The ``scoring`` metric (default: the estimator's) on a store's test split or on arrays."""
        if is_store(X):
            X, y, _ = as_dask_arrays(X, split="test")
        if _is_r2(self.scoring, self.estimator) and hasattr(X, "dask"):
            return _dask_r2(y, self.predict(X), compute=compute)
        return super().score(X, y, compute=compute)

    def evaluate(self, X, y=None, *, split: str = "test") -> dict:
        """Accuracy, balanced accuracy and ROC-AUC of a fitted classifier, chunk by chunk.

        See :func:`~bigdl.estimators.classification_metrics`; the wrapped
        estimator needs ``predict_proba``.

        Parameters
        ----------
        X : Dataset, str, dask array or array-like
            A store (its ``split`` rows) or samples.
        y : dask array or array-like, optional
            Omit with a store.
        split : str, default "test"

        Returns
        -------
        dict
            ``accuracy``, ``balanced_accuracy``, ``roc_auc``, ``n_samples``.
        """
        from bigdl.estimators._metrics import classification_metrics

        return classification_metrics(self, X, y, split=split)


def _is_r2(scoring, estimator) -> bool:
    from sklearn.base import is_regressor

    return scoring == "r2" or (scoring is None and is_regressor(estimator))


def _dask_r2(y, predicted, compute: bool = True):
    """R2 from two dask reductions.

    dask-ml's ``r2_score`` fails on dask arrays with dask >= 2025.2 ("cannot
    broadcast shape (nan,) to shape (nan,)", dask-ml #1012); this is the same
    formula without the boolean-mask assignment that breaks.
    """
    import dask

    y = y.astype("f8")
    residual = ((y - predicted.reshape(y.shape).astype("f8")) ** 2).sum()
    total = ((y - y.mean()) ** 2).sum()
    score = 1.0 - residual / total
    return float(dask.compute(score)[0]) if compute else score


class Incremental(_StoreAware, _dask_ml.Incremental):
    """dask-ml's ``Incremental`` (``partial_fit`` block by block) that also reads stores.

    Parameters
    ----------
    estimator : scikit-learn estimator with ``partial_fit``
        SGDClassifier/Regressor, MultinomialNB, MiniBatchKMeans,
        :class:`~bigdl.estimators.TorchClassifier`...  Its
        ``class_weight="balanced"`` is resolved by ``fit`` (and the first
        ``partial_fit``) from the class counts of the whole training data
        (a store's split counts, read without the features; else one pass
        over ``y``) and set, as a dict, on the clone that is fitted
        (``estimator_``); scikit-learn's ``partial_fit`` refuses
        "balanced", as one block cannot tell the balance.  A dict keyed by
        a store's class names is keyed by its codes; other dicts pass
        through.
    scoring : str or callable, optional
    shuffle_blocks : bool, default True
        Visit the blocks in a random order each pass.
    random_state : int or RandomState, optional
    assume_equal_chunks : bool, default True
    predict_meta, predict_proba_meta, transform_meta : optional
        As dask-ml's: the output meta of each method.

    Examples
    --------
    >>> model = Incremental(SGDClassifier(loss="log_loss"), scoring="accuracy")  # doctest: +SKIP
    >>> model.fit(ds)                    # train split, classes from the store  # doctest: +SKIP
    >>> model.score(ds)                  # accuracy on the test split            # doctest: +SKIP
    >>> model.evaluate(ds)               # and balanced accuracy, ROC-AUC        # doctest: +SKIP
    >>> model.predict(ds, split="test")  # dask array, chunk by chunk            # doctest: +SKIP
    """

    def fit(self, X, y=None, *, split: str = "train", **fit_kwargs):
        """One pass of ``partial_fit`` over the blocks of ``X`` (a store's ``split``, or arrays).

        Parameters
        ----------
        X : Dataset, str, dask array or array-like
            A store (read through its sample view, classes passed to
            ``partial_fit``) or arrays, as in dask-ml.
        y : dask array or array-like, optional
            Omit with a store.
        split : str, default "train"
            A store's rows to fit on.
        **fit_kwargs
            Passed to the wrapped estimator.

        Returns
        -------
        self
        """
        import sklearn.base

        X, y, dataset = self._arrays(X, y, split)
        fit_kwargs = _store_classes(dataset, fit_kwargs, self.estimator)
        # dask-ml's fit, with the clone's class weights resolved before its first partial_fit.
        estimator = sklearn.base.clone(self.estimator)
        _resolved_class_weight(estimator, y, dataset, split, fit_kwargs)
        self._fit_for_estimator(estimator, X, y, **fit_kwargs)
        return self

    def partial_fit(self, X, y=None, *, split: str = "train", **fit_kwargs):
        """Another pass over the blocks, continuing from the current state (for epochs).

        Parameters
        ----------
        X : Dataset, str, dask array or array-like
            A store (read through its sample view, classes passed to
            ``partial_fit``) or arrays, as in dask-ml.
        y : dask array or array-like, optional
            Omit with a store.
        split : str, default "train"
            A store's rows to fit on.
        **fit_kwargs
            Passed to the wrapped estimator.

        Returns
        -------
        self
        """
        import sklearn.base

        X, y, dataset = self._arrays(X, y, split)
        fit_kwargs = _store_classes(dataset, fit_kwargs, self.estimator)
        estimator = getattr(self, "estimator_", None)
        if estimator is None:  # the first call: as fit
            estimator = sklearn.base.clone(self.estimator)
            _resolved_class_weight(estimator, y, dataset, split, fit_kwargs)
        return self._fit_for_estimator(estimator, X, y, **fit_kwargs)


    def _fit_for_estimator(self, estimator, X, y, **fit_kwargs):
        # On a distributed client dask-ml's single compute() reports nothing to the caller; the
        # pass's steps go out as futures instead and the bar ticks as each block's partial_fit ends.
        import dask

        from bigdl.runtime import active_client

        client = active_client()
        if client is None or not (dask.is_dask_collection(X) or dask.is_dask_collection(y)):
            with _pass_bar(self._bar_label()):
                return super()._fit_for_estimator(estimator, X, y, **fit_kwargs)
        from dask_ml.wrappers import check_scoring, copy_learned_attributes

        check_scoring(estimator, self.scoring)
        result = _distributed_pass(client, estimator, X, y, self._bar_label(), random_state=self.random_state,
                                   shuffle_blocks=self.shuffle_blocks, assume_equal_chunks=self.assume_equal_chunks,
                                   **fit_kwargs)
        copy_learned_attributes(result, self)
        self.estimator_ = result
        return self

    def _bar_label(self) -> str:
        return f"Incremental({type(self.estimator).__name__}) pass"


def _distributed_pass(client, estimator, X, y, desc: str, **fit_kwargs):
    """One pass of dask-ml's ``partial_fit`` chain on ``client``, with a bar in the caller ticking per block.

    dask-ml builds the chain (block ``i``'s ``partial_fit`` takes the model
    left by block ``i - 1``); every step becomes a future, so the caller
    learns of each finished block through ``distributed.as_completed``.  A
    step's future is dropped once it has finished, so the workers keep only
    what the next step needs (the same as dask-ml's single compute).
    """
    import sys

    from dask.delayed import Delayed
    from dask_ml._partial import fit as partial_fit_chain
    from distributed import as_completed
    from tqdm.auto import tqdm

    from bigdl.runtime._tasks import progress_disabled

    last = partial_fit_chain(estimator, X, y, compute=False, **fit_kwargs)
    name, n_blocks = last.key[0], last.key[1] + 1
    steps = [Delayed((name, index), last.dask, layer=name) for index in range(n_blocks)]
    futures = client.compute(steps)
    final = futures[-1]
    with tqdm(total=n_blocks, desc=desc, unit="block", disable=progress_disabled(), file=sys.stderr,
              leave=False) as bar:
        for future in as_completed(futures):
            bar.update(1)
            if future.status == "error":  # every later step fails with it; result() raises it
                break
        futures.clear()
    return final.result()


class _pass_bar:
    """A tqdm bar over the tasks of one pass of ``partial_fit`` calls on Dask's local schedulers.

    dask-ml computes the pass as one graph (a block's read, then its
    ``partial_fit``, block after block); Dask's local schedulers report each
    finished task to this callback.  (On a distributed client, where these
    callbacks are not called, :func:`_distributed_pass` ticks per block.)
    Shown as :func:`~bigdl.runtime._tasks.progress_disabled` says:
    ``BIGDL_PROGRESS``, else only when stderr is a terminal.
    """

    def __init__(self, desc: str):
        self.desc = desc

    def __enter__(self):
        import sys

        from dask.callbacks import Callback
        from tqdm.auto import tqdm

        from bigdl.runtime._tasks import progress_disabled

        bar = self.bar = tqdm(desc=self.desc, unit="task", disable=progress_disabled(), file=sys.stderr,
                              leave=False, total=0)

        class _Count(Callback):
            def _start(self, dsk):
                from dask._task_spec import DataNode

                # A literal (the model the chain starts from) is not run as a task: it never ticks.
                bar.total += sum(not isinstance(node, DataNode) for node in dsk.values())
                bar.refresh()

            def _posttask(self, key, result, dsk, state, worker_id):
                bar.update(1)

        self.callback = _Count()
        self.callback.__enter__()
        return self

    def __exit__(self, *exc):
        self.callback.__exit__(*exc)
        self.bar.close()
        return False


class ParallelPostFit(_StoreAware, _dask_ml.ParallelPostFit):
    """dask-ml's ``ParallelPostFit``: fit in memory, predict and score in parallel, chunk by chunk.

    .. warning::
       ``fit`` on a store loads the whole ``split`` into memory (that is what
       the wrapped estimator needs). Use ``max_rows`` to fit on the first rows
       only, or :class:`Incremental` / :class:`~bigdl.estimators.ChunkForest`
       for data larger than memory.

    Parameters
    ----------
    estimator : scikit-learn estimator
        Fitted in memory; predicts and scores block by block.
    scoring : str or callable, optional
        As dask-ml's.
    predict_meta, predict_proba_meta, transform_meta : optional
        As dask-ml's: the output meta of each method.
    """

    def fit(self, X, y=None, *, split: str = "train", max_rows: int | None = None, **fit_kwargs):
        """Fit the wrapped estimator on a store's ``split`` (in memory) or on arrays.

        Parameters
        ----------
        X : Dataset, str, dask array or array-like
        y : dask array or array-like, optional
            Omit with a store.
        split : str, default "train"
        max_rows : int, optional
            Fit on the first rows only (bounds memory).
        **fit_kwargs
            Passed to the wrapped estimator.

        Returns
        -------
        self
        """
        import dask

        X, y, _ = self._arrays(X, y, split)
        if max_rows is not None:
            X, y = X[:max_rows], (y[:max_rows] if y is not None else None)
        if hasattr(X, "compute"):
            X, y = dask.compute(X, y)
        return super().fit(X, y, **fit_kwargs)


def predict_to_store(estimator, ds, store, *, proba: bool | None = None, overwrite: bool = False):
    """Write an estimator's outputs for every row of ``ds`` into a new store, chunk by chunk.

    The new store's ``X`` holds the outputs (class probabilities for a
    classifier with ``predict_proba`` unless ``proba=False``, else the
    predictions as one column), its ``y`` and ``split`` are the source's, so
    ``bigdl.open(store).arrays("test")`` pairs predictions with true targets.

    Parameters
    ----------
    estimator : fitted estimator
        Anything with ``predict`` (and ``predict_proba``) on NumPy blocks.
    ds : Dataset or str
        The source store.
    store : str or path
        Where to write.
    proba : bool, optional
        Write probabilities; default: when the estimator has ``predict_proba``.
    overwrite : bool, default False

    Returns
    -------
    Dataset
    """
    from bigdl.store import from_arrays, open_store

    ds = ds if not isinstance(ds, str) and not hasattr(ds, "__fspath__") else open_store(ds)
    if not ds.view.samples_are_rows:
        raise SchemaError(f"predict_to_store writes one output per stored row, and the sequence store "
                          f"{str(ds.path)!r} has one sample per window; use estimator.predict(ds, split=...) "
                          "for its forecasts.")
    from bigdl.runtime import active_client

    use_proba = hasattr(estimator, "predict_proba") if proba is None else proba
    # The estimator goes to the workers once (a forest can weigh hundreds of MB), not inside the graph.
    client = active_client()
    model = client.scatter([estimator], broadcast=True, hash=False)[0] if client is not None else estimator
    # The samples the estimator was trained on (the store's sample view), chunk by chunk.
    if use_proba:
        width = len(getattr(estimator, "classes_", ds.classes or []))
        outputs = predict_blocks("predict_proba", ds, model=model, tail=(width,), dtype=np.float32,
                                 name="bigdl-predict-proba")
        names = [f"proba={label}" for label in (ds.classes or range(width))]
    else:
        outputs = predict_blocks("predict", ds, model=model, dtype=np.float32, name="bigdl-predict")[:, None]
        names = ["prediction"]
    y = ds.y if ds.task is not None else None
    return from_arrays(outputs, y, store=store, task=ds.task, classes=ds.classes, feature_names=names,
                       split_codes=ds.split, rows_per_chunk=ds.rows_per_chunk, overwrite=overwrite,
                       inputs=[ds.path])
