"""Out-of-core random forests: one scikit-learn forest per group of chunks, merged into one.

Each Dask task reads one group of store chunks (``chunks_per_task`` of them)
and fits a share of that group's trees; the trees are then concatenated into a
single fitted ``RandomForestClassifier`` / ``RandomForestRegressor``
(``forest_``).  For classification each tree's leaf values are widened to the
classes of the whole data set, so a chunk that lacks a class still votes
correctly.  Prediction runs chunk by chunk, with the forest scattered once to
the workers rather than carried in every graph.

Memory is planned on the client before any task starts (:func:`_plan`): the
peak of one task is estimated from its rows (the data, scikit-learn's working
copies, the trees it grows and sends back) and compared with what one task may
use on a worker (its ``memory_limit`` shared by its threads).
``chunks_per_task="auto"`` takes the largest groups that fit a third of that,
and keeps the merged forest (which every worker holds to predict) within a
third of a worker's memory; a group's trees are split over several tasks when
they do not fit one, or to use every thread.  Tree ``i`` of the merged forest is
grown from the seed scikit-learn gives tree ``i`` of one forest of all trees
with the same ``random_state``, so the forest does not depend on how trees were
shared out between tasks, and one group of all rows gives scikit-learn's forest.

Class weights are resolved once, on the client, from the class counts of the
whole training split (:func:`bigdl.preprocessing.resolve_class_weight`), and
every task's forest gets the same ``{class: weight}`` dict: a group never
balances its own (possibly skewed) classes.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.utils import get_tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from bigdl._validation import Interval, Options, check_estimator_params
from bigdl.errors import ParameterError, SchemaError
from bigdl.estimators._data import BlockPredictorMixin, as_dask_arrays, is_lazy
from bigdl.loaders._predict import predict_blocks
from bigdl.preprocessing._weights import CLASS_WEIGHT, resolve_class_weight
from bigdl.runtime import active_client, run_tasks
from bigdl.store.kinds._base import SPLITS

logger = logging.getLogger(__name__)

# -- the memory model of one fitting task, measured with scikit-learn 1.9 -----------------------
# Peak RSS of RandomForestClassifier.fit on 100k-200k rows of 5-50 float32 features, 1-4 trees,
# n_jobs=1, sampled every 2 ms, against the pickled size of the fitted trees:
#: Bytes of one tree node: scikit-learn's ``Node`` struct (64 B; the pickle measured 88 B a node for
#: 3 classes), plus 8 B per class (classification) or per output (regression) for its value.
NODE_BYTES = 64
#: Nodes per training row of a fully grown classification tree (``max_depth=None``,
#: ``min_samples_leaf=1``, bootstrap): measured 0.26-0.33 on learnable 3-class data, 0.48 with random
#: 3-class labels, 0.76 with random 10-class labels.  Regression trees grow until every leaf holds one
#: distinct row: 1.26 nodes a row, the bound below.
CLASSIFIER_NODES_PER_ROW = 0.5
#: A tree has at most ``2 x distinct rows / min_samples_leaf`` nodes; a bootstrap sample holds
#: ``1 - 1/e`` (63%) distinct rows.
BOOTSTRAP_DISTINCT = 1 - math.exp(-1)
#: scikit-learn's working memory per row besides X and the trees (y as float64 and encoded, the
#: bootstrap counts and weights, the splitter's sample indices and feature values): 76-113 B measured.
FIT_BYTES_PER_ROW = 128
#: Copies of a group's rows a task holds: the chunks as read and their concatenation.
DATA_COPIES = 2
#: A task whose estimated peak is above this fraction of its share of a worker's memory is refused.
TASK_MEMORY_FRACTION = 0.6
#: ``chunks_per_task="auto"`` plans each task, and the merged forest, within this fraction (the rest is
#: the worker's own memory, the estimate's error and the other tasks' results).
AUTO_MEMORY_FRACTION = 1 / 3

__all__ = ["ChunkForestClassifier", "ChunkForestRegressor", "ChunkForest"]

_MEMORY_WARNING = """    .. warning::
       Every task holds its group of chunks in memory (twice, while they are
       joined), scikit-learn's working copies and the trees it grows; the
       trees of a fully grown forest (``max_depth=None``) take tens of bytes
       per training row each, so the merged forest can be larger than the
       data.  The client holds the merged forest, and every worker holds a
       copy while predicting.  ``chunks_per_task="auto"`` sizes the groups
       from the workers' ``memory_limit`` (this machine's memory without a
       distributed client) so that neither runs out; an explicit
       ``chunks_per_task`` that cannot fit is refused.  Bound the trees with
       ``max_depth`` or ``min_samples_leaf`` when the forest is too large.
       A dask array's blocks are all computed on the cluster first and kept
       there until the fit ends: for data larger than the cluster's memory,
       fit on a store.
"""


class _ChunkForest(BlockPredictorMixin, BaseEstimator):
    _forest_class: type = RandomForestClassifier
    # The forest's own parameters; the scikit-learn forest's (max_depth...) are checked by its own table.
    _constraints = {"n_estimators": [Interval(int, 1, None)],
                    "chunks_per_task": [Interval(int, 1, None), Options(("auto",))],
                    "random_state": [Interval(int, 0, None), None], "split": [Options(SPLITS)]}
    #: Nodes per row of a fully grown tree, where below the structural bound (see CLASSIFIER_NODES_PER_ROW).
    _nodes_per_row: float | None = None

    def __init__(self, n_estimators: int = 100, *, chunks_per_task: int | str = "auto", max_depth: int | None = None,
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

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_scattered", None)  # a future of a client: meaningless anywhere else
        return state

    def _finite(self):
        """``ensure_all_finite`` for in-memory input: NaN passes where the trees handle it, inf never."""
        return "allow-nan" if get_tags(self).input_tags.allow_nan else True

    def fit(self, X, y=None):
        """Fit on a store's split, on dask arrays chunk by chunk, or on in-memory arrays.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
            A store (its ``split`` samples and their targets are used), a
            dask array (its row blocks are the chunks grouped into tasks), or
            in-memory samples (checked by scikit-learn's ``validate_data``,
            then fitted as one block).
        y : dask array or array-like of shape (n_samples,), optional
            Targets; omit them when ``X`` is a store.

        Returns
        -------
        self

        Raises
        ------
        ParameterError
            A parameter out of its range; an explicit ``chunks_per_task``
            whose tasks would not fit a worker's memory; fewer trees than
            the groups that fit need.
        SchemaError
            A store of the other task, targets that do not fit, no training
            rows, or one chunk too large to fit a worker's memory.
        """
        self._check_params()
        self.__dict__.pop("_scattered", None)
        X, y, dataset, classes, counts = self._training_data(X, y)
        sizes = dataset.view.chunk_counts(self.split) if dataset is not None else np.asarray(X.chunks[0])
        filled = [int(chunk) for chunk in np.flatnonzero(np.asarray(sizes) > 0)]
        if not filled:
            raise SchemaError(f"{type(self).__name__}: no training rows (split {self.split!r} is empty).")
        weights = self._learn_class_weight(dataset, classes, counts)
        client = active_client()
        n_values = len(classes) if classes is not None else 1
        row_bytes = X.dtype.itemsize * int(np.prod(X.shape[1:])) + y.dtype.itemsize
        # scikit-learn fits on float32: other inputs are copied once more.
        copy_bytes = 0 if X.dtype == np.float32 else 4 * int(np.prod(X.shape[1:]))
        plan = _plan(self, [int(sizes[chunk]) for chunk in filled], row_bytes=row_bytes, copy_bytes=copy_bytes,
                     n_values=n_values, memory=_worker_memory(client))
        groups = [[filled[index] for index in group] for group in plan["groups"]]
        # One seed for the whole forest: tree i gets scikit-learn's seed of tree i (None: a fresh one per fit).
        seed = self.random_state if self.random_state is not None else \
            int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        params = dict(self._forest_params(), random_state=seed, **weights)
        if dataset is not None:
            # Each task reads its chunks through the store's sample view: memory is bounded by the group.
            task = _fit_store_group
            arguments = [(str(dataset.path), self.split, groups[group], self._forest_class, params, first, stop)
                         for group, first, stop in plan["tasks"]]
        else:
            task = _fit_group
            x_blocks, y_blocks = _blocks(X, y, client)
            arguments = [([x_blocks[chunk] for chunk in groups[group]], [y_blocks[chunk] for chunk in groups[group]],
                          self._forest_class, params, first, stop) for group, first, stop in plan["tasks"]]
        # A bar over the fit's tasks as BIGDL_PROGRESS says, else when stderr is a terminal (no progress flag).
        parts = run_tasks("bigdl-forest-fit", task, arguments, desc=f"{type(self).__name__} fit", progress=None,
                          client=client)
        self.chunks_per_task_ = plan["chunks_per_task"]
        self.n_groups_ = len(groups)
        self.n_tasks_ = len(arguments)
        self.memory_estimate_ = plan["estimate"]
        self.forest_ = self._merge(parts, classes, dict(random_state=seed, **weights))
        self.estimators_ = self.forest_.estimators_
        return self

    def _training_data(self, X, y):
        """``(X, y, dataset, classes, counts)``: dask arrays; sets ``n_features_in_`` (and ``feature_names_in_``).

        ``classes`` and their ``counts`` in the training rows are None for regression.
        """
        import dask
        import dask.array as da

        if is_lazy(X):
            X, y, dataset = as_dask_arrays(X, y, split=self.split)
            if X.ndim != 2:
                raise SchemaError(f"{type(self).__name__} needs 2-D X (samples x features); got shape {X.shape}.")
            validate_data(self, X, reset=True, skip_check_array=True)
            self._check_task(dataset, y)
            classes = counts = None
            if isinstance(self, ClassifierMixin):
                if dataset is not None:
                    classes = np.arange(dataset.n_classes)
                else:  # one pass over the targets only
                    classes, counts = dask.compute(*da.unique(y, return_counts=True))
            return X, y, dataset, classes, counts
        X, y = validate_data(self, X, y, dtype=np.float32, ensure_all_finite=self._finite(),
                             y_numeric=isinstance(self, RegressorMixin))
        self._check_targets(y)
        classes = counts = None
        if isinstance(self, ClassifierMixin):
            classes, counts = np.unique(y, return_counts=True)
        return (da.from_array(X, chunks=(len(X), X.shape[1])), da.from_array(y, chunks=(len(y),)), None, classes,
                counts)

    def _learn_class_weight(self, dataset, classes, counts) -> dict:
        """Resolve ``class_weight`` from the whole training split: what every task's forest gets (classifier hook)."""
        return {}

    def _check_task(self, dataset, y) -> None:
        """Refuse a store or lazy targets of the wrong task (hook of the classifier and the regressor)."""

    def _check_targets(self, y) -> None:
        """Refuse in-memory targets the task cannot learn (hook of the classifier)."""

    def _merge(self, parts, classes, params: dict):
        """One fitted scikit-learn forest from the tasks' ``(trees, classes, n_features)`` (hook of each subclass).

        ``params`` are the forest parameters the trees were grown with besides the tree parameters.
        """
        raise NotImplementedError

    def _tree_nodes(self, rows: int) -> float:
        """The nodes one tree grown on ``rows`` rows is planned to have."""
        leaf = self.min_samples_leaf
        leaf_rows = leaf if isinstance(leaf, numbers.Integral) else max(1, math.ceil(leaf * rows))
        bound = 2 * (BOOTSTRAP_DISTINCT if self.bootstrap else 1.0) / leaf_rows
        nodes = rows * (bound if self._nodes_per_row is None else min(self._nodes_per_row, bound))
        if self.max_depth is not None:
            nodes = min(nodes, 2.0 ** (self.max_depth + 1) - 1)
        return max(nodes, 1.0)

    # -- prediction, chunk by chunk --------------------------------------
    def _apply(self, method: str, X, *, split=None, width: int | None = None):
        check_is_fitted(self, "forest_")
        if not is_lazy(X):
            return getattr(self.forest_, method)(self._in_memory_samples(X, ensure_all_finite=self._finite()))
        X = self._lazy_samples(X, method, split)
        if width is None:
            tail, dtype = (), (np.float64 if isinstance(self, RegressorMixin) else self.forest_.classes_.dtype)
        else:
            tail, dtype = (width,), np.float64
        return predict_blocks(method, X, model=self._shared_forest(), tail=tail, dtype=dtype,
                              name=f"bigdl-forest-{method}")

    def _shared_forest(self):
        """The fitted forest as the predict graphs carry it: a future on the workers with a client, else itself.

        Scattered once per client (``broadcast``: one copy per worker), so a
        predict graph holds a key instead of the pickled trees.
        """
        client = active_client()
        if client is None:
            return self.forest_
        cached = getattr(self, "_scattered", None)
        if cached is not None and cached[0] == client.id and cached[1].status == "finished":
            return cached[1]
        # A list: scatter would share out a forest's items; hash=False: tokenizing the trees costs a pickle.
        [future] = client.scatter([self.forest_], broadcast=True, hash=False)
        self._scattered = (client.id, future)
        return future

    def predict(self, X, *, split: str | None = None):
        """Predictions, chunk by chunk for a store or a dask array.

        With a distributed client the forest is scattered to the workers once
        (and kept there while this estimator lives), so the returned dask array
        must be computed on that client.

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


class ChunkForestClassifier(ClassifierMixin, _ChunkForest):
    __doc__ = """Random forest classifier trained out of core, one group of store chunks per Dask task.

""" + _MEMORY_WARNING + """
    Parameters
    ----------
    n_estimators : int, default 100
        Trees in the merged forest, shared out between the groups.
    chunks_per_task : int or "auto", default "auto"
        Store chunks (or dask row blocks) one task trains on, at most: each
        tree sees the rows of one group of consecutive chunks, the groups as
        few and as even as this allows.  ``"auto"``: the largest
        groups whose task fits a third of a worker's memory (its
        ``memory_limit`` over its threads) and whose merged forest fits a
        third of a worker's memory; the choice is logged (logger
        ``bigdl.estimators``) and kept in ``chunks_per_task_``.  An int
        whose tasks would need more than 60% of that is refused.  Larger
        groups give each tree more rows (closer to an in-memory forest) and
        larger trees.
    max_depth, min_samples_leaf, max_features, bootstrap
        As in :class:`sklearn.ensemble.RandomForestClassifier`.
    class_weight : None, "balanced" or dict, default None
        As in scikit-learn, resolved once from the class counts of the whole
        training split (:meth:`bigdl.store.Dataset.class_counts` for a
        store): ``"balanced"`` is ``n_samples / (n_classes * count)``; a dict
        maps labels (for a store: its class names or codes) to weights,
        others weigh 1.  Every group's forest gets the same weights, never a
        balance of its own rows.
    random_state : int or None, default 0
        Seeds the forest: tree ``i`` gets the seed scikit-learn would give
        tree ``i`` of ``RandomForestClassifier(random_state=random_state)``.
    split : str, default "train"
        The split to train on when ``fit`` is given a store.

    Attributes
    ----------
    forest_ : sklearn.ensemble.RandomForestClassifier
        The merged forest (usable on its own, pickled, inspected).
    estimators_ : list of DecisionTreeClassifier
    classes_ : ndarray
        For a store: ``0 .. n_classes-1`` (its class codes; ``ds.classes`` are the labels).
    class_weight_ : ndarray of shape (n_classes,) or None
        The weight of each class of ``classes_`` (None: unweighted).
    chunks_per_task_ : int
        Chunks in the largest group, as chosen (``"auto"``) or allowed.
    n_groups_ : int
        Groups of chunks; each tree learnt from one.
    n_tasks_ : int
        How many tasks trained a part of the forest (a group's trees may be
        shared out between several).
    memory_estimate_ : dict
        The plan's estimates in bytes: ``task`` (peak of the largest task),
        ``forest`` (the merged trees), ``task_memory`` (what one task may
        use on a worker; None without a limit).

    Examples
    --------
    >>> forest = ChunkForestClassifier(n_estimators=100).fit(ds)      # doctest: +SKIP
    >>> forest.score(ds)                                              # test accuracy, chunk by chunk
    >>> forest.evaluate(ds)          # accuracy, balanced_accuracy, roc_auc on the test split
    """

    _constraints = {**_ChunkForest._constraints, "class_weight": CLASS_WEIGHT}
    _nodes_per_row = CLASSIFIER_NODES_PER_ROW

    def __init__(self, n_estimators: int = 100, *, chunks_per_task: int | str = "auto", max_depth: int | None = None,
                 min_samples_leaf: int = 1, max_features="sqrt", bootstrap: bool = True, class_weight=None,
                 random_state: int | None = 0, split: str = "train"):
        super().__init__(n_estimators, chunks_per_task=chunks_per_task, max_depth=max_depth,
                         min_samples_leaf=min_samples_leaf, max_features=max_features, bootstrap=bootstrap,
                         random_state=random_state, split=split)
        self.class_weight = class_weight

    def _check_task(self, dataset, y) -> None:
        if dataset is not None and dataset.task != "classification":
            raise SchemaError(f"ChunkForestClassifier needs a classification store; {str(dataset.path)!r} holds "
                              f"{dataset.task} targets. Use ChunkForestRegressor.")
        if dataset is None and np.issubdtype(y.dtype, np.floating):
            raise SchemaError("ChunkForestClassifier got float targets; use ChunkForestRegressor for regression "
                              "or pass class labels.")

    def _check_targets(self, y) -> None:
        check_classification_targets(y)  # "Unknown label type: continuous..." for regression targets

    def _learn_class_weight(self, dataset, classes, counts) -> dict:
        self.class_weight_ = None
        if self.class_weight is None:
            return {}
        if dataset is not None:
            labels = dataset.classes if dataset.classes is not None else list(range(dataset.n_classes))
            counts = dataset.class_counts(self.split)  # y and split only, chunk by chunk
        else:
            labels = list(classes)
        weights = resolve_class_weight(self.class_weight, labels, counts, owner=type(self).__name__)
        self.class_weight_ = weights
        if weights is None:
            return {}
        # What the tasks' targets hold: codes for a store, the labels themselves for arrays.
        keys = range(len(weights)) if dataset is not None else [_plain(label) for label in classes]
        return {"class_weight": {key: float(weight) for key, weight in zip(keys, weights)}}

    def _merge(self, parts, classes, params: dict):
        trees = [_widen_tree(tree, part_classes, classes) for part_trees, part_classes, _ in parts
                 for tree in part_trees]
        merged = RandomForestClassifier(n_estimators=len(trees), **self._forest_params(), **params)
        merged.estimators_ = trees
        merged.estimator_ = trees[0]
        merged.classes_ = classes
        merged.n_classes_ = len(classes)
        merged.n_outputs_ = 1
        merged.n_features_in_ = parts[0][2]
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

    def evaluate(self, X, y=None, *, split: str = "test") -> dict:
        """Accuracy, balanced accuracy and ROC-AUC, chunk by chunk (see :func:`classification_metrics`).

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
            A store (its ``split`` rows) or samples.
        y : dask array or array-like of shape (n_samples,), optional
            Omit it for a store.
        split : str, default "test"
            The rows of a store.

        Returns
        -------
        dict
            ``accuracy``, ``balanced_accuracy``, ``roc_auc`` (one-vs-rest
            macro average over classes when there are more than two) and
            ``n_samples``.
        """
        from bigdl.estimators._metrics import classification_metrics

        return classification_metrics(self, X, y, split=split)


class ChunkForestRegressor(RegressorMixin, _ChunkForest):
    __doc__ = """Random forest regressor trained out of core (see :class:`ChunkForestClassifier`).

""" + _MEMORY_WARNING + """
    Regression trees grow until every leaf holds one distinct row: a fully
    grown tree has about 1.3 nodes per training row (about 90 bytes), which
    the memory plan assumes.

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
    chunks_per_task_, n_groups_, n_tasks_, memory_estimate_
        As in :class:`ChunkForestClassifier`.
    """

    _forest_class = RandomForestRegressor

    def __init__(self, n_estimators: int = 100, *, chunks_per_task: int | str = "auto", max_depth: int | None = None,
                 min_samples_leaf: int = 1, max_features=1.0, bootstrap: bool = True,
                 random_state: int | None = 0, split: str = "train"):
        super().__init__(n_estimators, chunks_per_task=chunks_per_task, max_depth=max_depth,
                         min_samples_leaf=min_samples_leaf, max_features=max_features, bootstrap=bootstrap,
                         random_state=random_state, split=split)

    def _check_task(self, dataset, y) -> None:
        if dataset is not None and dataset.task != "regression":
            raise SchemaError(f"ChunkForestRegressor needs a regression store; {str(dataset.path)!r} holds "
                              f"{dataset.task} targets. Use ChunkForestClassifier.")

    def _merge(self, parts, classes, params: dict):
        trees = [tree for part_trees, _, _ in parts for tree in part_trees]
        merged = RandomForestRegressor(n_estimators=len(trees), **self._forest_params(), **params)
        merged.estimators_ = trees
        merged.estimator_ = trees[0]
        merged.n_outputs_ = 1
        merged.n_features_in_ = parts[0][2]
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


# ------------------------------------------------------------------ the memory plan
def _worker_memory(client) -> dict:
    """What one task may use: ``{"task": bytes or None, "worker": bytes or None, "slots": int, "where": str}``.

    With a client: the smallest ``memory_limit / nthreads`` over its workers
    (a task may land on any; a worker without a limit does not bound it) and
    all their threads.  Without one: this machine's memory over Dask's
    threads.
    """
    from dask.system import CPU_COUNT
    from dask.utils import format_bytes

    if client is None:
        try:
            from distributed.system import MEMORY_LIMIT
        except ImportError:  # pragma: no cover - distributed is a dependency
            MEMORY_LIMIT = 0
        total = int(MEMORY_LIMIT or 0)
        return {"task": total / CPU_COUNT if total else None, "worker": total or None, "slots": CPU_COUNT,
                "where": f"this machine's {format_bytes(total)} over {CPU_COUNT} threads" if total else "this machine"}
    workers = list(client.scheduler_info(n_workers=-1)["workers"].values())
    limits = [(int(info.get("memory_limit") or 0), max(int(info.get("nthreads") or 1), 1)) for info in workers]
    slots = max(sum(threads for _, threads in limits), 1)
    limited = [(limit, threads) for limit, threads in limits if limit > 0]
    if not limited:
        return {"task": None, "worker": None, "slots": slots, "where": "workers without a memory limit"}
    limit, threads = min(limited, key=lambda item: item[0] / item[1])
    return {"task": limit / threads, "worker": min(limit for limit, _ in limited), "slots": slots,
            "where": f"a worker's memory_limit of {format_bytes(limit)} over its {threads} thread(s)"}


def _plan(forest, sizes: list, *, row_bytes: int, copy_bytes: int, n_values: int, memory: dict) -> dict:
    """Groups of chunks and the tasks that grow their trees, sized to the workers' memory.

    ``sizes`` are the training rows of each non-empty chunk, in order.
    Returns ``groups`` (lists of positions in ``sizes``: as few consecutive
    groups of at most ``chunks_per_task`` chunks as there can be, as even as
    can be), ``tasks`` (``(group, first tree, stop tree)`` in the merged
    forest's order), ``chunks_per_task`` (the largest group's chunks) and
    ``estimate`` (bytes: ``task``, ``forest``, ``task_memory``).
    """
    from dask.utils import format_bytes

    owner = type(forest).__name__
    n_chunks, n_trees = len(sizes), forest.n_estimators
    node_bytes = NODE_BYTES + 8 * n_values
    sizes = np.asarray(sizes, dtype=np.int64)

    def layout(per: int) -> list:
        # As few groups as hold at most ``per`` chunks each, as even as can be (never 7 chunks and 1).
        return np.array_split(np.arange(n_chunks), -(-n_chunks // per))

    def group_rows(per: int) -> list:
        return [int(sizes[group].sum()) for group in layout(per)]

    def shares(n_groups: int) -> list:
        return [n_trees // n_groups + (1 if index < n_trees % n_groups else 0) for index in range(n_groups)]

    def tree_bytes(rows: int) -> float:
        return forest._tree_nodes(rows) * node_bytes

    def task_peak(rows: int, trees: int) -> float:
        # The trees of the task, one more growing (its arrays double as it grows), and the task's
        # result pickled to be sent back.
        return rows * (DATA_COPIES * row_bytes + copy_bytes + FIT_BYTES_PER_ROW) + (2 * trees + 1) * tree_bytes(rows)

    def trees_bytes(rows: list) -> float:
        return float(sum(share * tree_bytes(count) for share, count in zip(shares(len(rows)), rows)))

    def forest_bytes(per: int) -> float:
        return trees_bytes(group_rows(per))

    def fits(per: int, budget: float) -> bool:
        return task_peak(max(group_rows(per)), 1) <= budget

    task_memory = memory["task"]
    hard = TASK_MEMORY_FRACTION * task_memory if task_memory else math.inf
    soft = AUTO_MEMORY_FRACTION * task_memory if task_memory else math.inf
    forest_budget = AUTO_MEMORY_FRACTION * memory["worker"] if memory["worker"] else math.inf
    fewest = -(-n_chunks // n_trees)  # chunks per group so that every group grows at least one tree
    if not fits(1, hard):
        rows = max(sizes)
        raise SchemaError(
            f"{owner}: one chunk of {rows:,} rows needs about {format_bytes(int(task_peak(rows, 1)))} to grow one "
            f"tree (its rows twice, scikit-learn's working copies, the tree), more than "
            f"{TASK_MEMORY_FRACTION:.0%} of {format_bytes(int(task_memory))}, what one task may use "
            f"({memory['where']}). Store smaller chunks (rows_per_chunk= at ingest, or smaller row blocks of a "
            "dask array), give the workers a larger memory_limit, or grow smaller trees (max_depth, "
            "min_samples_leaf).")
    largest = max((per for per in range(1, n_chunks + 1) if fits(per, hard)), default=1)
    if forest.chunks_per_task == "auto":
        per = max((per for per in range(1, n_chunks + 1) if fits(per, soft) and forest_bytes(per) <= forest_budget),
                  default=1)
    else:
        per = min(forest.chunks_per_task, n_chunks)
        if not fits(per, hard):
            rows = max(group_rows(per))
            raise ParameterError(
                f"The 'chunks_per_task' parameter of {owner}: {per} chunks hold up to {rows:,} rows, and one task "
                f"on them needs about {format_bytes(int(task_peak(rows, 1)))}, more than "
                f"{TASK_MEMORY_FRACTION:.0%} of {format_bytes(int(task_memory))}, what one task may use "
                f"({memory['where']}). Use chunks_per_task<={largest} or 'auto', or give the workers a larger "
                "memory_limit.")
    if per < fewest:  # fewer trees than groups: larger groups, so that each grows a tree
        if not fits(fewest, hard):
            raise ParameterError(
                f"The 'n_estimators' parameter of {owner}: {n_trees} trees over {n_chunks} chunks need groups of "
                f"{fewest} chunks, and at most {largest} fit what one task may use ({memory['where']}). Use "
                f"n_estimators>={-(-n_chunks // largest)}.")
        per = fewest
    groups = [group.tolist() for group in layout(per)]
    per = max(len(group) for group in groups)
    rows = [int(sizes[group].sum()) for group in groups]
    tasks, first = [], 0
    for index, (share, count) in enumerate(zip(shares(len(groups)), rows)):
        # Trees per task: as many as fit the auto budget (at least one), and enough tasks to use every thread.
        fit_trees = share if math.isinf(soft) else max(1, int((soft - task_peak(count, 0)) // (2 * tree_bytes(count))))
        n_tasks = max(-(-share // fit_trees), min(share, -(-memory["slots"] * share // n_trees)))
        bounds = [first + share * part // n_tasks for part in range(n_tasks + 1)]
        tasks += [(index, start, stop) for start, stop in zip(bounds, bounds[1:]) if stop > start]
        first += share
    largest_task = max(task_peak(rows[group], stop - start) for group, start, stop in tasks)
    estimate = {"task": int(largest_task), "forest": int(trees_bytes(rows)),
                "task_memory": int(task_memory) if task_memory else None}
    logger.info("%s: %d chunks in %d group(s) of up to %d (%s), %d trees in %d task(s); about %s for the largest task and "
                "%s of trees, for %s", owner, n_chunks, len(groups), per,
                "auto" if forest.chunks_per_task == "auto" else "chunks_per_task", n_trees, len(tasks),
                format_bytes(estimate["task"]), format_bytes(estimate["forest"]), memory["where"])
    if estimate["forest"] > (forest_budget if memory["worker"] else math.inf):
        logger.warning("%s: the fitted forest will take about %s, held by the client and by every worker while "
                       "predicting: more than a third of %s. Grow smaller trees (max_depth, min_samples_leaf) "
                       "or fewer (n_estimators).", owner, format_bytes(estimate["forest"]), memory["where"])
    return {"groups": groups, "tasks": tasks, "chunks_per_task": per, "estimate": estimate}


# ------------------------------------------------------------------ tasks
def _plain(label):
    """A NumPy scalar label as the Python value a dict key compares equal to."""
    return label.item() if isinstance(label, np.generic) else label


def _blocks(X, y, client):
    """The row blocks of dask arrays ``X``, ``y``: futures on a distributed client, else delayed objects."""
    x_blocks, y_blocks = list(X.to_delayed().ravel()), list(y.to_delayed().ravel())
    if client is not None:  # submitted tasks resolve futures in their arguments, not delayed objects
        futures = client.compute(x_blocks + y_blocks)
        return futures[:len(x_blocks)], futures[len(x_blocks):]
    return x_blocks, y_blocks


def _fit_store_group(path: str, split: str, chunks: list, forest_class, params: dict, first: int, stop: int):
    from bigdl.store import open_store

    view = open_store(path).view
    parts = [view.samples(chunk, split) for chunk in chunks]
    x_blocks, y_blocks = [X for X, _ in parts], [y for _, y in parts]
    del parts
    return _fit_group(x_blocks, y_blocks, forest_class, params, first, stop)


def _fit_group(x_blocks: list, y_blocks: list, forest_class, params: dict, first: int, stop: int):
    """Trees ``first .. stop - 1`` of the merged forest, grown on one group's rows: ``(trees, classes, n_features)``.

    A warm-started forest told it already has ``first`` trees draws the seeds
    of those first (scikit-learn does so that warm starts match one fit), so
    tree ``i`` gets the seed it has in one forest of all the trees.
    """
    X = np.concatenate(x_blocks) if len(x_blocks) > 1 else x_blocks[0]
    y = np.concatenate(y_blocks) if len(y_blocks) > 1 else y_blocks[0]
    x_blocks.clear()  # the blocks as read: only the joined copy stays while the trees grow
    y_blocks.clear()
    forest = forest_class(**params, n_estimators=stop, warm_start=True)
    forest.estimators_ = [None] * first
    forest.fit(X, y)
    return forest.estimators_[first:], getattr(forest, "classes_", None), forest.n_features_in_


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
