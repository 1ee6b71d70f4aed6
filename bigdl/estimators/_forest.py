"""Out-of-core random forests: one scikit-learn forest per group of chunks, merged into one.

Each Dask task reads one group of store chunks (``chunks_per_task`` of
them, so training memory is bounded by the group, not the data), fits a
scikit-learn forest with its share of the trees, and returns it.  The trees
are then concatenated into a single fitted ``RandomForestClassifier`` /
``RandomForestRegressor`` (``forest_``); for classification each tree's leaf
values are widened to the classes of the whole data set, so a chunk that
lacks a class still votes correctly.  Prediction runs chunk by chunk.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.utils import get_tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from bigdl._validation import Interval, Options, check_estimator_params
from bigdl.errors import ParameterError, SchemaError
from bigdl.estimators._data import as_dask_arrays, is_lazy
from bigdl.loaders._predict import predict_blocks
from bigdl.runtime import run_tasks
from bigdl.store.kinds._base import SPLITS

__all__ = ["ChunkForestClassifier", "ChunkForestRegressor", "ChunkForest"]


class _ChunkForest(BaseEstimator):
    _forest_class: type = RandomForestClassifier
    # The forest's own parameters; the scikit-learn forest's (max_depth...) are checked by its own table.
    _constraints = {"n_estimators": [Interval(int, 1, None)], "chunks_per_task": [Interval(int, 1, None)],
                    "random_state": [Interval(int, 0, None), None], "split": [Options(SPLITS)]}

    def __init__(self, n_estimators: int = 100, *, chunks_per_task: int = 1, max_depth: int | None = None,
                 min_samples_leaf: int = 1, max_features="sqrt", bootstrap: bool = True,
                 random_state: int | None = 0, split: str = "train"):
        self.n_estimators = n_estimators
        self.chunks_per_task = chunks_per_task
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.random_state = random_state
        self.split = split

    def _check_params(self) -> None:
        check_estimator_params(self)
        # The tree parameters are scikit-learn's: its forest checks them, here on the client rather than in
        # every Dask task, and the message names this class.
        forest = self._forest_class(**self._forest_params())
        try:
            forest._validate_params()
        except ValueError as error:
            raise ParameterError(re.sub(r"parameter of \w+ must be", f"parameter of {type(self).__name__} must be",
                                        str(error))) from None

    def _forest_params(self) -> dict:
        return {"max_depth": self.max_depth, "min_samples_leaf": self.min_samples_leaf,
                "max_features": self.max_features, "bootstrap": self.bootstrap, "n_jobs": 1}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Missing values are the scikit-learn forest's business: allowed where its trees allow them.
        tags.input_tags.allow_nan = get_tags(self._forest_class(**self._forest_params())).input_tags.allow_nan
        return tags

    def _finite(self):
        """``ensure_all_finite`` for in-memory input: NaN passes where the trees handle it, inf never."""
        return "allow-nan" if get_tags(self).input_tags.allow_nan else True

    def fit(self, X, y=None):
        """Fit on a store's split, on dask arrays chunk by chunk, or on in-memory arrays.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
            A store (its ``split`` samples and their targets are used), a
            dask array (one task per group of ``chunks_per_task`` row
            blocks), or in-memory samples (checked by scikit-learn's
            ``validate_data``, then fitted as one block).
        y : dask array or array-like of shape (n_samples,), optional
            Targets; omit them when ``X`` is a store.

        Returns
        -------
        self

        Raises
        ------
        ParameterError
            A parameter out of its range.
        SchemaError
            A store of the other task, targets that do not fit, or no training rows.
        """
        self._check_params()
        X, y, dataset = self._training_data(X, y)
        sizes = dataset.view.chunk_counts(self.split) if dataset is not None else np.asarray(X.chunks[0])
        filled = [int(chunk) for chunk in np.flatnonzero(np.asarray(sizes) > 0)]
        if not filled:
            raise SchemaError(f"{type(self).__name__}: no training rows (split {self.split!r} is empty).")
        groups = [filled[start:start + self.chunks_per_task] for start in range(0, len(filled), self.chunks_per_task)]
        if len(groups) > self.n_estimators:  # fewer trees than groups: merge groups so each fits >= 1 tree
            per = -(-len(filled) // self.n_estimators)
            groups = [filled[start:start + per] for start in range(0, len(filled), per)]
        shares = [self.n_estimators // len(groups) + (1 if index < self.n_estimators % len(groups) else 0)
                  for index in range(len(groups))]
        seeds = np.random.SeedSequence(self.random_state).generate_state(len(groups))
        params = [dict(self._forest_params(), n_estimators=share, random_state=int(seed))
                  for share, seed in zip(shares, seeds)]
        if dataset is not None:
            # Each task reads its chunks through the store's sample view: memory is bounded by the group.
            task = _fit_store_group
            arguments = [(str(dataset.path), self.split, group, self._forest_class, param)
                         for group, param in zip(groups, params)]
        else:
            task = _fit_group
            x_blocks, y_blocks = _blocks(X, y)
            arguments = [([x_blocks[chunk] for chunk in group], [y_blocks[chunk] for chunk in group],
                          self._forest_class, param) for group, param in zip(groups, params)]
        forests = run_tasks("bigdl-forest-fit", task, arguments, desc=f"{type(self).__name__} fit",
                            progress=False)
        self.n_tasks_ = len(groups)
        self.forest_ = self._merge(forests, dataset)
        self.estimators_ = self.forest_.estimators_
        return self

    def _training_data(self, X, y):
        """``(X, y, dataset)`` as dask arrays; sets ``n_features_in_`` (and ``feature_names_in_``)."""
        import dask.array as da

        if is_lazy(X):
            X, y, dataset = as_dask_arrays(X, y, split=self.split)
            if X.ndim != 2:
                raise SchemaError(f"{type(self).__name__} needs 2-D X (samples x features); got shape {X.shape}.")
            validate_data(self, X, reset=True, skip_check_array=True)
            self._check_task(dataset, y)
            return X, y, dataset
        X, y = validate_data(self, X, y, dtype=np.float32, ensure_all_finite=self._finite(),
                             y_numeric=isinstance(self, RegressorMixin))
        self._check_targets(y)
        return da.from_array(X, chunks=(len(X), X.shape[1])), da.from_array(y, chunks=(len(y),)), None

    def _check_task(self, dataset, y) -> None:
        """Refuse a store or lazy targets of the wrong task (hook of the classifier and the regressor)."""

    def _check_targets(self, y) -> None:
        """Refuse in-memory targets the task cannot learn (hook of the classifier)."""

    def _merge(self, forests, dataset):
        """One fitted scikit-learn forest from the per-task forests (hook of each subclass)."""
        raise NotImplementedError

    # -- prediction, chunk by chunk --------------------------------------
    def _apply(self, method: str, X, *, split=None, width: int | None = None):
        import dask.array as da

        check_is_fitted(self, "forest_")
        if not is_lazy(X):
            X = X if hasattr(X, "shape") else np.asarray(X)  # lists: know the width before scikit-learn's checks
            self._check_width(X.shape)
            X = validate_data(self, X, reset=False, dtype=np.float32, ensure_all_finite=self._finite())
            return getattr(self.forest_, method)(X)
        if not isinstance(X, da.Array):
            X, _, _ = as_dask_arrays(X, split=split or "all", need_y=False)
        if X.ndim != 2:
            raise SchemaError(f"{type(self).__name__}.{method} needs 2-D X (samples x features); got shape "
                              f"{X.shape}.")
        self._check_width(X.shape)
        if width is None:
            dtype = np.float64 if isinstance(self, RegressorMixin) else self.forest_.classes_.dtype
            return predict_blocks(getattr(self.forest_, method), X, dtype=dtype, name=f"bigdl-forest-{method}")
        return predict_blocks(getattr(self.forest_, method), X, tail=(width,), dtype=np.float64,
                              name=f"bigdl-forest-{method}")

    def _check_width(self, shape) -> None:
        if len(shape) == 2 and shape[1] != self.n_features_in_:
            raise SchemaError(f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                              f"{self.n_features_in_} features as input; pass the columns it was fitted on "
                              "(or fit again).")

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

        Raises
        ------
        NotFittedError
            Before ``fit``.
        SchemaError
            ``X`` with another number of features than the training data.
        """
        return self._apply("predict", X, split=split)

    def _score_any(self, X, y=None, sample_weight=None):
        from bigdl.estimators._data import is_store

        if is_store(X) or hasattr(X, "__fspath__"):
            X, y, _ = as_dask_arrays(X, split="test")
        import dask.array as da

        predicted = self.predict(X)
        if isinstance(predicted, da.Array):
            import dask

            predicted, y = dask.compute(predicted, y)
        return self._score(np.asarray(y), np.asarray(predicted), sample_weight)


class ChunkForestClassifier(ClassifierMixin, _ChunkForest):
    """Random forest classifier trained out of core, one group of store chunks per Dask task.

    Parameters
    ----------
    n_estimators : int, default 100
        Trees in the merged forest, shared out between the tasks.
    chunks_per_task : int, default 1
        Store chunks one task trains on; training memory per task is about
        this many chunks (plus the trees), whatever the data size.
    max_depth, min_samples_leaf, max_features, bootstrap
        As in :class:`sklearn.ensemble.RandomForestClassifier`.
    random_state : int or None, default 0
        Seeds every task's forest (distinct seeds per task).
    split : str, default "train"
        The split to train on when ``fit`` is given a store.

    Attributes
    ----------
    forest_ : sklearn.ensemble.RandomForestClassifier
        The merged forest (usable on its own, pickled, inspected).
    estimators_ : list of DecisionTreeClassifier
    classes_ : ndarray
        For a store: ``0 .. n_classes-1`` (its class codes; ``ds.classes`` are the labels).
    n_tasks_ : int
        How many tasks trained a part of the forest.

    Examples
    --------
    >>> forest = ChunkForestClassifier(n_estimators=100).fit(ds)      # doctest: +SKIP
    >>> forest.score(ds)                                              # test accuracy, chunk by chunk
    """

    def _check_task(self, dataset, y) -> None:
        if dataset is not None and dataset.task != "classification":
            raise SchemaError(f"ChunkForestClassifier needs a classification store; {str(dataset.path)!r} holds "
                              f"{dataset.task} targets. Use ChunkForestRegressor.")
        if dataset is None and np.issubdtype(y.dtype, np.floating):
            raise SchemaError("ChunkForestClassifier got float targets; use ChunkForestRegressor for regression "
                              "or pass class labels.")

    def _check_targets(self, y) -> None:
        check_classification_targets(y)  # "Unknown label type: continuous..." for regression targets

    def _merge(self, forests, dataset):
        if dataset is not None:
            classes = np.arange(dataset.n_classes)
        else:
            classes = np.unique(np.concatenate([forest.classes_ for forest in forests]))
        trees = [_widen_tree(tree, forest.classes_, classes) for forest in forests for tree in forest.estimators_]
        merged = RandomForestClassifier(n_estimators=len(trees), **self._forest_params())
        merged.estimators_ = trees
        merged.estimator_ = trees[0]
        merged.classes_ = classes
        merged.n_classes_ = len(classes)
        merged.n_outputs_ = 1
        merged.n_features_in_ = forests[0].n_features_in_
        self.classes_ = classes
        return merged

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
        check_is_fitted(self, "forest_")
        return self._apply("predict_proba", X, split=split, width=len(self.classes_))

    def score(self, X, y=None, sample_weight=None):
        """Accuracy on a store's test split (``X`` a store) or on arrays ``X``, ``y``.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Omit it for a store.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
        """
        return self._score_any(X, y, sample_weight)

    def _score(self, y, predicted, sample_weight):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, predicted, sample_weight=sample_weight)


class ChunkForestRegressor(RegressorMixin, _ChunkForest):
    """Random forest regressor trained out of core (see :class:`ChunkForestClassifier`).

    Parameters
    ----------
    n_estimators, chunks_per_task, max_depth, min_samples_leaf, bootstrap, random_state, split
        As in :class:`ChunkForestClassifier`.
    max_features : int, float, {"sqrt", "log2"} or None, default 1.0
        All features, as in scikit-learn's regressor.

    Attributes
    ----------
    forest_ : sklearn.ensemble.RandomForestRegressor
        The merged forest.
    estimators_ : list of DecisionTreeRegressor
    n_tasks_ : int
        How many tasks trained a part of the forest.
    """

    _forest_class = RandomForestRegressor

    def __init__(self, n_estimators: int = 100, *, chunks_per_task: int = 1, max_depth: int | None = None,
                 min_samples_leaf: int = 1, max_features=1.0, bootstrap: bool = True,
                 random_state: int | None = 0, split: str = "train"):
        super().__init__(n_estimators, chunks_per_task=chunks_per_task, max_depth=max_depth,
                         min_samples_leaf=min_samples_leaf, max_features=max_features, bootstrap=bootstrap,
                         random_state=random_state, split=split)

    def _check_task(self, dataset, y) -> None:
        if dataset is not None and dataset.task != "regression":
            raise SchemaError(f"ChunkForestRegressor needs a regression store; {str(dataset.path)!r} holds "
                              f"{dataset.task} targets. Use ChunkForestClassifier.")

    def _merge(self, forests, dataset):
        trees = [tree for forest in forests for tree in forest.estimators_]
        merged = RandomForestRegressor(n_estimators=len(trees), **self._forest_params())
        merged.estimators_ = trees
        merged.estimator_ = trees[0]
        merged.n_outputs_ = 1
        merged.n_features_in_ = forests[0].n_features_in_
        return merged

    def score(self, X, y=None, sample_weight=None):
        """R2 on a store's test split (``X`` a store) or on arrays ``X``, ``y``.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Omit it for a store.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
        """
        return self._score_any(X, y, sample_weight)

    def _score(self, y, predicted, sample_weight):
        from sklearn.metrics import r2_score

        return r2_score(y, predicted, sample_weight=sample_weight)


#: The name the architecture sketch uses: the classifier.
ChunkForest = ChunkForestClassifier


def _blocks(X, y):
    """The row blocks of dask arrays ``X``, ``y``: futures on a distributed client, else delayed objects."""
    from bigdl.runtime import active_client

    x_blocks, y_blocks = list(X.to_delayed().ravel()), list(y.to_delayed().ravel())
    client = active_client()
    if client is not None:  # submitted tasks resolve futures in their arguments, not delayed objects
        futures = client.compute(x_blocks + y_blocks)
        return futures[:len(x_blocks)], futures[len(x_blocks):]
    return x_blocks, y_blocks


def _fit_store_group(path: str, split: str, chunks: list, forest_class, params):
    from bigdl.store import open_store

    view = open_store(path).view
    parts = [view.samples(chunk, split) for chunk in chunks]
    return _fit_group([X for X, _ in parts], [y for _, y in parts], forest_class, params)


def _fit_group(x_blocks, y_blocks, forest_class, params):
    X = np.concatenate(x_blocks) if len(x_blocks) > 1 else x_blocks[0]
    y = np.concatenate(y_blocks) if len(y_blocks) > 1 else y_blocks[0]
    return forest_class(**params).fit(X, y)


def _widen_tree(tree, tree_classes: np.ndarray, classes: np.ndarray):
    """Give a fitted tree the leaf-value columns of all ``classes`` (zeros where it saw none)."""
    from sklearn.tree._tree import Tree

    if len(tree_classes) == len(classes) and np.array_equal(tree_classes, classes):
        return tree
    columns = np.searchsorted(classes, tree_classes)
    state = tree.tree_.__getstate__()
    values = state["values"]
    widened = np.zeros((values.shape[0], values.shape[1], len(classes)), dtype=values.dtype)
    widened[:, :, columns] = values[:, :, :len(tree_classes)]
    new_tree = Tree(tree.n_features_in_, np.array([len(classes)], dtype=np.intp), 1)
    new_tree.__setstate__({**state, "values": widened})
    tree.tree_ = new_tree
    # Trees inside a forest predict class positions; the forest maps them to labels.
    tree.classes_ = np.arange(len(classes), dtype=np.float64)
    tree.n_classes_ = len(classes)
    return tree
