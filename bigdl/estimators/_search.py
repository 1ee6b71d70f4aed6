"""Hyperband search over estimators with ``partial_fit``, each model trained chunk by chunk on a Dask worker.

:class:`HyperbandSearch` runs Hyperband (Li et al. 2018): several brackets of
successive halving that start many models on a few ``partial_fit`` calls and
give the calls saved on poor models to the promising ones.  Each model lives on
a worker as the result of a chain of tasks, one ``partial_fit`` over one
training chunk per task, ending in a scoring task on the validation rows; the
driver only moves scores.  Without a distributed client the same graphs run on
Dask's threaded scheduler.  This module is bigdl's own implementation rather
than a wrapper of ``dask_ml.model_selection.HyperbandSearchCV``: with
distributed 2026.x that class and ``IncrementalSearchCV`` fail on an ordinary
synchronous client with "Attempting to use an asynchronous Client in a
synchronous context of `dask.compute`" (dask-ml issue #1016), and owning the
loop also keeps memory per model to one chunk and the search deterministic on
any scheduler.  The brackets follow dask-ml's formulas, so budgets compare.
"""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterSampler
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, column_or_1d

from bigdl._validation import HasMethods, Hidden, Interval, Options, Predicate, check_estimator_params, \
    parameter_error
from bigdl.errors import ParameterError, SchemaError
from bigdl.estimators._data import as_dask_arrays, is_store
from bigdl.loaders._predict import predict_blocks
from bigdl.runtime import active_client, task_runner
from bigdl.store.kinds._base import SPLITS

__all__ = ["HyperbandSearch"]

#: Share of the training blocks (or rows, for one-block input) held out for
#: scoring when there are no validation rows.
HOLDOUT_FRACTION = 0.1


class HyperbandSearch(MetaEstimatorMixin, BaseEstimator):
    """Hyperband hyperparameter search for estimators with ``partial_fit``, out of core on Dask.

    Hyperband (Li et al. 2018) runs brackets ``s = s_max .. 0`` of successive
    halving, with ``s_max = floor(log_eta(max_iter))`` and ``eta`` the
    ``aggressiveness``.  Bracket ``s`` samples ``n = ceil((s_max + 1) / (s + 1)
    * eta**s)`` parameter settings and trains each for ``r = max_iter // eta**s``
    ``partial_fit`` calls; then, for ``k = 1 .. s``, the best ``n // eta**k``
    (by validation score) continue to ``r * eta**k`` calls.  These are
    dask-ml's formulas (so budgets compare with ``HyperbandSearchCV``), except
    that ``s_max`` is computed in integers: dask-ml's floating-point logarithm
    drops the top bracket for ``max_iter`` = 243, 729 with ``eta=3`` or 1000
    with ``eta=10``.

    One ``partial_fit`` call is one pass of ``partial_fit`` over one chunk of
    the training data, cycling over the chunks in order, so a model holds one
    chunk at a time.  Each model lives on a Dask worker as the end of a chain
    of tasks (``partial_fit`` on chunk ``i`` of a copy of the model from the
    previous task); scoring tasks run on the workers too, and the driver only
    receives scores.  All brackets run at once; the decisions of a bracket
    depend on its own scores only, so the result does not depend on timing.
    Without a distributed client the same task graphs run on Dask's threaded
    scheduler in this process.

    Parameters
    ----------
    estimator : scikit-learn estimator with ``partial_fit``
        Cloned for every parameter setting.  If it has a ``random_state``
        parameter left at None (and not searched), each model gets a seed
        drawn from ``random_state`` so the search is reproducible.
    parameters : dict
        Parameter names to lists of values or to distributions with ``rvs``
        (``scipy.stats``), sampled by :class:`sklearn.model_selection.ParameterSampler`.
        Each bracket samples on its own; a grid of lists smaller than a
        bracket's ``n`` is used whole in that bracket.
    max_iter : int, default 81
        The most ``partial_fit`` calls (chunks) any model gets: the ``R`` of
        Hyperband.  Needs ``max_iter >= aggressiveness``.
    aggressiveness : int, default 3
        The ``eta`` of Hyperband: each halving keeps one model in ``eta``.
    random_state : int, RandomState or None, default 0
        Seeds the parameter sampling and the models' own seeds.
    scoring : str, callable or None, default None
        As in scikit-learn; None uses ``estimator.score``.  Higher is better.
    patience : int or None, default None
        If set, models are scored at least every ``patience`` calls and one
        stops training when no score in its last ``patience`` calls beat the
        first score of that window (it keeps competing with its last score).
    split : str, default "train"
        The store split to train on when ``fit`` is given a store.
    validation_split : str or None, default "validation"
        The store split scored after each training step.  If the store has no
        such rows (or None is given), the last ``HOLDOUT_FRACTION`` (10 %) of
        the training chunks are held out for scoring instead, as for arrays
        (of the rows, if there is a single chunk).
    refit : bool, default True
        Keep the best model as ``best_estimator_``: the model itself as
        trained by the search (with the calls its bracket gave it, listed in
        ``cv_results_``), not a fresh fit; ``predict`` and ``score`` use it.

    Attributes
    ----------
    cv_results_ : dict of arrays
        One entry per model: ``model_id``, ``bracket``, ``params``,
        ``param_<name>``, ``test_score`` (last validation score),
        ``partial_fit_calls``, ``stopped_early`` and ``rank_test_score``.
    best_index_, best_params_, best_score_ : int, dict, float
        The model with the highest last validation score (ties: more calls,
        then the lower ``model_id``).
    best_estimator_ : estimator
        With ``refit=True``: that model, fetched from its worker.
    n_iter_ : int
        The ``partial_fit`` calls the best model had.
    classes_ : ndarray
        For classifiers: the classes given to the first ``partial_fit``.
    n_features_in_ : int
    history_ : list of dict
        One record per model per scoring: ``model_id``, ``bracket``,
        ``partial_fit_calls``, ``score``, sorted by model and calls.
    n_models_ : int
        Parameter settings trained.
    metadata_ : dict
        What was done: ``partial_fit_calls`` in all, ``n_models``, and per
        bracket its ``n_models``, ``planned_models``, ``initial_calls``,
        ``rungs`` (``[models kept, calls]``) and ``partial_fit_calls``.
    scorer_ : callable
    validation_ : str
        Where the validation rows came from (a split, held-out chunks or rows).

    See Also
    --------
    sklearn.model_selection.GridSearchCV : the exhaustive, in-memory reference.

    Notes
    -----
    ``fit_params`` go to every ``partial_fit`` call.  For classifiers the
    first call also gets ``classes``: ``0 .. n_classes - 1`` for a store (its
    class codes), ``np.unique(y)`` (computed once) for arrays, unless
    ``fit_params`` has ``classes``.

    .. warning::
       The validation rows are loaded whole, once, and every scoring task
       reads them (the scorer needs all rows together); keep the validation
       split to what fits comfortably in a worker's memory.  Training reads one
       chunk per task whatever the data size.

    Each ``partial_fit`` task trains a copy of its input model (as dask-ml
    does), since a task must not change its input, so a step briefly holds
    two copies of one model.  Models are kept only while they are still in
    a bracket, plus the best one that has left.  Held-out rows (no
    validation split) are the *last* chunks or rows: shuffle sorted data
    first.  ``X`` must be 2-D and dense.

    References
    ----------
    L. Li, K. Jamieson, G. DeSalvo, A. Rostamizadeh and A. Talwalkar,
    "Hyperband: A Novel Bandit-Based Approach to Hyperparameter Optimization",
    JMLR 18 (2018).

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from sklearn.linear_model import SGDClassifier
    >>> search = HyperbandSearch(SGDClassifier(), {"alpha": loguniform(1e-6, 1e-1),
    ...                                            "loss": ["hinge", "log_loss"]}, max_iter=27)
    >>> search.fit(ds)                                       # doctest: +SKIP
    >>> search.best_params_, search.metadata_["partial_fit_calls"]   # doctest: +SKIP
    >>> search.score(ds)                                     # test split   # doctest: +SKIP
    """

    _constraints = {
        # A class has the methods too (unbound): only an instance can be cloned and trained.
        "estimator": [Predicate(lambda estimator: not isinstance(estimator, type)
                                and HasMethods(["partial_fit", "get_params"]).is_satisfied_by(estimator),
                                "a scikit-learn estimator with partial_fit (SGDClassifier(), SGDRegressor(), "
                                "MLPClassifier(), MiniBatchKMeans()...; use sklearn's GridSearchCV or "
                                "HalvingGridSearchCV for estimators without it)")],
        "max_iter": [Interval(int, 1, None)],
        "aggressiveness": [Interval(int, 2, None)],
        "patience": [Interval(int, 1, None), None, Hidden(Options([False]))],  # False: as None
        "split": [Options(SPLITS)],
        "validation_split": [Options(SPLITS), None],
        "refit": ["boolean"],
    }

    def __init__(self, estimator, parameters, *, max_iter: int = 81, aggressiveness: int = 3, random_state=0,
                 scoring=None, patience: int | None = None, split: str = "train",
                 validation_split: str | None = "validation", refit: bool = True):
        self.estimator = estimator
        self.parameters = parameters
        self.max_iter = max_iter
        self.aggressiveness = aggressiveness
        self.random_state = random_state
        self.scoring = scoring
        self.patience = patience
        self.split = split
        self.validation_split = validation_split
        self.refit = refit

    def __sklearn_tags__(self):
        # A classifier search is a classifier (as for GridSearchCV), so scikit-learn stratifies and scores it so.
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = copy.deepcopy(inner.classifier_tags)
        tags.regressor_tags = copy.deepcopy(inner.regressor_tags)
        return tags

    # -- validation ----------------------------------------------------
    def _check_params(self) -> None:
        name = type(self).__name__
        check_estimator_params(self)
        if self.max_iter < self.aggressiveness:
            raise ParameterError(
                f"The 'max_iter' parameter of {name} ({self.max_iter}) is smaller than 'aggressiveness' "
                f"({self.aggressiveness}): Hyperband would train a single model, searching nothing. Raise "
                f"max_iter to at least {self.aggressiveness} or lower aggressiveness.")
        self._check_parameters()

    def _check_parameters(self) -> None:
        """The search space: names the estimator has, each with values to draw from."""
        name = type(self).__name__
        if not isinstance(self.parameters, dict) or not self.parameters:
            raise parameter_error(name, "parameters", self.parameters,
                                  "a non-empty dict of parameter names to lists or scipy.stats distributions, "
                                  "e.g. {'alpha': [1e-4, 1e-3, 1e-2]}")
        known = self.estimator.get_params(deep=True)
        for key, values in self.parameters.items():
            if key not in known:
                raise ParameterError(
                    f"The 'parameters' parameter of {name} names {key!r}, which "
                    f"{type(self.estimator).__name__} does not have; valid names: {sorted(known)}.")
            if hasattr(values, "rvs"):
                continue
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
                raise ParameterError(
                    f"The 'parameters' parameter of {name} must map {key!r} to a non-empty list of values or a "
                    f"distribution with rvs. Got {values!r} instead.")

    # -- planning --------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """The planned budget, before fitting: calls and models per bracket.

        Assumes every bracket can sample its ``n`` settings (a small grid of
        lists gives fewer) and no ``patience`` stops; ``metadata_`` holds
        what a fit really did.
        """
        self._check_params()
        brackets = _plan(self.max_iter, self.aggressiveness)
        return {"partial_fit_calls": sum(item["partial_fit_calls"] for item in brackets),
                "n_models": sum(item["n_models"] for item in brackets), "max_iter": self.max_iter,
                "aggressiveness": self.aggressiveness, "brackets": brackets}

    def _sample(self, rng) -> list[tuple[int, dict, int | None]]:
        """``(bracket, parameters, model seed)`` for every model, bracket by bracket (s_max first)."""
        grid_size = None
        if not any(hasattr(values, "rvs") for values in self.parameters.values()):
            grid_size = math.prod(len(values) for values in self.parameters.values())
        seeded = ("random_state" in self.estimator.get_params() and self.estimator.get_params()["random_state"]
                  is None and "random_state" not in self.parameters)
        models = []
        for bracket, n_models, _ in _bracket_sizes(self.max_iter, self.aggressiveness):
            n_sampled = n_models if grid_size is None else min(n_models, grid_size)
            sampler = ParameterSampler(self.parameters, n_sampled, random_state=rng.randint(np.iinfo(np.int32).max))
            for params in sampler:
                seed = int(rng.randint(np.iinfo(np.int32).max)) if seeded else None
                models.append((bracket, params, seed))
        return models

    # -- fitting ---------------------------------------------------------
    def fit(self, X, y=None, **fit_params):
        """Search: train the sampled models bracket by bracket and keep the best.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like
            A store (its ``split`` rows train, its ``validation_split`` rows
            score) or the training samples.
        y : dask array or array-like, optional
            Targets, with array ``X`` only.  The last ``HOLDOUT_FRACTION`` of
            the chunks (or rows, for a single chunk) are held out to score.
        **fit_params
            Passed to every ``partial_fit`` call (``classes`` to the first only).

        Returns
        -------
        self
        """
        self._check_params()
        runner = task_runner()
        data = _search_data(X, y, split=self.split, validation_split=self.validation_split, runner=runner,
                            classifier=is_classifier(self.estimator))
        first_params = dict(fit_params)
        if is_classifier(self.estimator):
            first_params.setdefault("classes", data.classes)
            self.classes_ = np.asarray(first_params["classes"])
        self.scorer_ = check_scoring(self.estimator, scoring=self.scoring)
        rng = check_random_state(self.random_state)
        settings = self._sample(rng)
        models = [clone(self.estimator).set_params(**params, **({} if seed is None else {"random_state": seed}))
                  for _, params, seed in settings]
        brackets = []
        for bracket, n_models, initial_calls in _bracket_sizes(self.max_iter, self.aggressiveness):
            ids = [index for index, setting in enumerate(settings) if setting[0] == bracket]
            brackets.append(_Bracket(bracket, n_models, initial_calls, self.aggressiveness, ids))
        run = _HyperbandRun(runner, data, models, brackets, scorer=self.scorer_, first_params=first_params,
                            fit_params=dict(fit_params), patience=self.patience or None, keep_best=self.refit)
        run.run()
        self._store_results(run, settings, data)
        if self.refit:
            self.best_estimator_ = runner.fetch(run.best_handle)
        return self

    def _store_results(self, run: "_HyperbandRun", settings: list, data: "_SearchData") -> None:
        n = len(settings)
        ranks = sorted(range(n), key=lambda model: run.rank_key(model), reverse=True)
        results = {
            "model_id": np.arange(n),
            "bracket": np.array([bracket for bracket, _, _ in settings]),
            "params": _object_array([params for _, params, _ in settings]),
            "test_score": np.array([run.scores[model] for model in range(n)], dtype=np.float64),
            "partial_fit_calls": np.array([run.calls[model] for model in range(n)]),
            "stopped_early": np.array([model in run.stopped for model in range(n)]),
            "rank_test_score": np.empty(n, dtype=np.int64),
        }
        results["rank_test_score"][ranks] = np.arange(1, n + 1)
        for name in sorted(self.parameters):  # masked arrays, as in scikit-learn's searches
            results[f"param_{name}"] = np.ma.MaskedArray(_object_array([params[name] for _, params, _ in settings]),
                                                         mask=False)
        self.cv_results_ = results
        self.best_index_ = int(ranks[0])
        self.best_params_ = dict(settings[self.best_index_][1])
        self.best_score_ = float(run.scores[self.best_index_])
        self.n_iter_ = int(run.calls[self.best_index_])
        self.history_ = sorted(run.history, key=lambda record: (record["model_id"], record["partial_fit_calls"]))
        self.n_models_ = n
        self.n_features_in_ = data.n_features
        self.validation_ = data.description
        brackets = _plan(self.max_iter, self.aggressiveness)
        for item in brackets:
            models = [model for model, (bracket, _, _) in enumerate(settings) if bracket == item["bracket"]]
            item.update(planned_models=item["n_models"], n_models=len(models),
                        partial_fit_calls=int(sum(run.calls[model] for model in models)))
        self.metadata_ = {"partial_fit_calls": int(sum(run.calls.values())), "n_models": n,
                          "max_iter": self.max_iter, "aggressiveness": self.aggressiveness, "brackets": brackets}

    # -- using the best model -----------------------------------------------
    def predict(self, X, *, split: str | None = None):
        """Predictions of ``best_estimator_``, chunk by chunk (``map_blocks``) for a store or a dask array.

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        split : str, optional
            The samples of a store (default: all of them).

        Returns
        -------
        dask array or numpy.ndarray of shape (n_samples,)

        Raises
        ------
        NotFittedError
            Before ``fit`` (or after ``fit`` with ``refit=False``).
        """
        return self._delegate("predict", X, split)

    @available_if(lambda self: hasattr(getattr(self, "best_estimator_", self.estimator), "predict_proba"))
    def predict_proba(self, X, *, split: str | None = None):
        """Class probabilities of ``best_estimator_``, chunk by chunk for a store or a dask array.

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
        return self._delegate("predict_proba", X, split)

    def score(self, X, y=None, *, split: str = "test"):
        """``scorer_`` of ``best_estimator_`` on a store's ``split`` rows or on arrays ``X``, ``y``.

        The rows are loaded whole (the scorer needs them together).

        Parameters
        ----------
        X : Dataset, store path, dask array or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Omit it for a store.
        split : str, default "test"
            The samples of a store.

        Returns
        -------
        float

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        import dask.array as da

        check_is_fitted(self, "best_estimator_")
        if is_store(X) or isinstance(X, da.Array):
            X, y, _ = as_dask_arrays(X, y, split=split)
            X, y = _compute(active_client(), (X, y))
        return float(self.scorer_(self.best_estimator_, X, y))

    def _delegate(self, method: str, X, split: str | None):
        import dask.array as da

        check_is_fitted(self, "best_estimator_")
        model = self.best_estimator_
        if is_store(X):
            X, _, _ = as_dask_arrays(X, split=split or "all", need_y=False)
        if not isinstance(X, da.Array):
            return getattr(model, method)(X)
        if X.ndim != 2:
            raise SchemaError(f"{type(self).__name__}.{method} needs 2-D X (samples x features); got shape {X.shape}.")
        if method == "predict":
            dtype = model.classes_.dtype if hasattr(model, "classes_") else np.float64
            return predict_blocks(model.predict, X, dtype=dtype, name="bigdl-search-predict")
        return predict_blocks(getattr(model, method), X, tail=(len(model.classes_),), dtype=np.float64,
                              name=f"bigdl-search-{method}")


# ------------------------------------------------------------------ brackets
def _bracket_sizes(max_iter: int, eta: int) -> list[tuple[int, int, int]]:
    """``(s, n, r)`` for brackets ``s = s_max .. 0``: models sampled and their first calls.

    dask-ml's formulas in integer arithmetic (``s_max`` is the largest ``s``
    with ``eta**s <= max_iter``).
    """
    s_max = 0
    while eta ** (s_max + 1) <= max_iter:
        s_max += 1
    return [(s, -(-((s_max + 1) * eta ** s) // (s + 1)), max_iter // eta ** s) for s in range(s_max, -1, -1)]


def _plan(max_iter: int, eta: int) -> list[dict]:
    """Per bracket: models, first calls, rungs and the calls they add up to (no patience stops)."""
    plan = []
    for bracket, n_models, initial_calls in _bracket_sizes(max_iter, eta):
        rungs = _rungs(bracket, n_models, initial_calls, eta)
        plan.append({"bracket": bracket, "n_models": n_models, "initial_calls": initial_calls,
                     "rungs": [list(rung) for rung in rungs], "partial_fit_calls": _rung_calls(rungs)})
    return plan


def _rungs(bracket: int, n_models: int, initial_calls: int, eta: int) -> list[tuple[int, int]]:
    """``(models kept, calls each)`` at rungs ``k = 0 .. bracket`` of one successive halving."""
    return [(n_models // eta ** k, initial_calls * eta ** k) for k in range(bracket + 1)]


def _rung_calls(rungs: list[tuple[int, int]]) -> int:
    """Total calls of a successive halving: models leaving at rung ``k`` had that rung's calls."""
    kept = [count for count, _ in rungs[1:]] + [0]
    return sum((count - after) * calls for (count, calls), after in zip(rungs, kept))


@dataclass
class _Bracket:
    """One successive halving: its models and the rung they train towards."""

    index: int
    n_models: int
    initial_calls: int
    aggressiveness: int
    model_ids: list[int]
    rung: int = 0
    survivors: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.survivors = list(self.model_ids)

    @property
    def rungs(self) -> list[tuple[int, int]]:
        return _rungs(self.index, self.n_models, self.initial_calls, self.aggressiveness)

    def next_targets(self, calls: dict, stopped: set, rank_key, patience: int | None) -> tuple[dict, list]:
        """``({model: calls to train to}, [models leaving])``; no targets once the bracket is done."""
        leaving = []
        while True:
            rung_calls = self.rungs[self.rung][1]
            pending = [model for model in self.survivors if calls[model] < rung_calls and model not in stopped]
            if pending:
                step = patience or rung_calls
                return {model: min(rung_calls, calls[model] + step) for model in pending}, leaving
            if self.rung + 1 == len(self.rungs):
                leaving += self.survivors
                self.survivors = []
                return {}, leaving
            self.rung += 1
            ranked = sorted(self.survivors, key=rank_key, reverse=True)
            keep = self.rungs[self.rung][0]
            self.survivors, leaving = sorted(ranked[:keep]), leaving + ranked[keep:]


# ------------------------------------------------------------------ the search loop
class _HyperbandRun:
    """The state of one fit: model handles, calls, scores; submits each bracket's next rung.

    Handles are futures on a cluster and fitted estimators on the threaded
    path.  Only the models still in a bracket and the best model that left
    one are kept, so cluster memory holds at most those.
    """

    def __init__(self, runner, data, models: list, brackets: list, *, scorer, first_params: dict, fit_params: dict,
                 patience: int | None, keep_best: bool):
        self.runner, self.data, self.brackets = runner, data, brackets
        self.handles = dict(enumerate(models))
        self.calls = {model: 0 for model in self.handles}
        self.scores = {model: -np.inf for model in self.handles}
        self.stopped: set[int] = set()
        self.history: list[dict] = []
        self.best_handle, self._best_left = None, None
        self._bracket_of = {model: bracket.index for bracket in brackets for model in bracket.model_ids}
        self._scorer, self._first_params, self._fit_params = scorer, first_params, fit_params
        self._patience, self._keep_best = patience, keep_best
        self._token = uuid.uuid4().hex[:8]
        self._round = 0

    def rank_key(self, model: int):
        score = self.scores[model]
        return (score if np.isfinite(score) else -np.inf, self.calls[model], -model)

    def run(self) -> None:
        import sys

        from tqdm.auto import tqdm

        from bigdl.runtime._tasks import progress_disabled

        # One tick per finished bracket (shown as BIGDL_PROGRESS says); the postfix counts the training jobs.
        bar = tqdm(total=len(self.brackets), desc="Hyperband", unit="bracket", disable=progress_disabled(),
                   file=sys.stderr, leave=False)
        finished, jobs = set(), 0

        def tick(bracket) -> None:
            if not bracket.survivors and bracket.index not in finished:
                finished.add(bracket.index)
                bar.update(1)

        try:
            for bracket in self.brackets:
                self._advance(bracket)
                tick(bracket)
            while self.runner.pending():
                (bracket, targets), handles, scores = self.runner.next_done()
                for (model, target), handle, score in zip(targets.items(), handles, scores):
                    self._record(model, target, handle, score)
                self._advance(bracket)
                jobs += 1
                bar.set_postfix({"jobs": jobs}, refresh=False)
                tick(bracket)
        finally:
            bar.close()
            self.runner.close()
        # Every model has left its bracket by now; the best of them is the only one kept.
        self.best_handle = self.handles.get(self._best_left)

    def _record(self, model: int, calls: int, handle, score: float) -> None:
        self.handles[model], self.calls[model], self.scores[model] = handle, calls, float(score)
        self.history.append({"model_id": model, "bracket": self._bracket_of[model], "partial_fit_calls": calls,
                             "score": float(score)})
        if self._patience and _plateaued([(item["partial_fit_calls"], item["score"]) for item in self.history
                                          if item["model_id"] == model], self._patience):
            self.stopped.add(model)

    def _advance(self, bracket: "_Bracket") -> None:
        targets, leaving = bracket.next_targets(self.calls, self.stopped, self.rank_key, self._patience)
        for model in leaving:
            self._leave(model)
        if not targets:
            return
        models, scores = [], []
        for model, target in targets.items():
            trained, score = self._chain(model, target)
            models.append(trained)
            scores.append(score)
        self._round += 1
        import dask

        # The scores come back to this process; the trained models stay where they were computed.
        self.runner.start((bracket, targets), [*models, dask.delayed(_as_floats)(scores)],
                          key=f"bigdl-search-scores-{self._token}-{self._round}")

    def _leave(self, model: int) -> None:
        """A model leaves its bracket: keep its handle only while it is the best that left."""
        if self._keep_best and (self._best_left is None or self.rank_key(model) > self.rank_key(self._best_left)):
            if self._best_left is not None:
                self.handles.pop(self._best_left, None)
            self._best_left = model
            return
        self.handles.pop(model, None)

    def _chain(self, model: int, target: int):
        """Delayed tasks training ``model`` from its calls so far to ``target``, then scoring it."""
        import dask

        trained = self.handles[model]
        blocks = self.data.blocks
        for call in range(self.calls[model], target):
            X_block, y_block = blocks[call % len(blocks)]
            params = self._first_params if call == 0 else self._fit_params
            trained = dask.delayed(_partial_fit_step)(
                trained, X_block, y_block, params, dask_key_name=f"bigdl-search-fit-{self._token}-{model}-{call + 1}")
        score = dask.delayed(_score_step)(trained, *self.data.validation, self._scorer,
                                          dask_key_name=f"bigdl-search-score-{self._token}-{model}-{target}")
        return trained, score


def _plateaued(records: list[tuple[int, float]], patience: int) -> bool:
    """True when no score of the last ``patience`` calls beat the first score of that window."""
    calls = records[-1][0]
    window = [score for recorded, score in records if calls - recorded <= patience]
    return calls >= patience and len(window) >= 2 and max(window[1:]) <= window[0]


def _partial_fit_step(model, X, y, fit_params: dict):
    """One ``partial_fit`` call on one chunk, on a copy: a task must not change its input."""
    model = copy.deepcopy(model)
    model.partial_fit(X, y, **fit_params)
    return model


def _score_step(model, X, y, scorer) -> float:
    return float(scorer(model, X, y))


def _as_floats(scores) -> list[float]:
    return [float(score) for score in scores]


def _compute(client, collections) -> tuple:
    """Compute dask collections into memory here: on ``client`` if given, else on the threaded scheduler."""
    import dask

    if client is None:
        return dask.compute(*collections, scheduler="threads")
    return tuple(future.result() for future in client.compute(list(collections), optimize_graph=False))


# ------------------------------------------------------------------ data
@dataclass
class _SearchData:
    """Training chunks (delayed reads, in-memory arrays or futures), the validation pair, classes."""

    blocks: list
    validation: tuple
    classes: np.ndarray | None
    description: str
    n_features: int


def _search_data(X, y, *, split: str, validation_split: str | None, runner, classifier: bool) -> _SearchData:
    import dask
    import dask.array as da

    in_memory = not (is_store(X) or isinstance(X, da.Array))
    if issparse(X):
        raise SchemaError("HyperbandSearch does not support sparse input (a scipy.sparse matrix or array); pass "
                          "dense arrays, or a store.")
    if in_memory and y is not None and not isinstance(y, da.Array):
        y = column_or_1d(y, warn=True)
    X, y, dataset = as_dask_arrays(X, y, split=split)
    if X.ndim != 2:
        raise SchemaError(f"HyperbandSearch needs 2-D X (samples x features); got shape {X.shape}. Reshape your "
                          "data, e.g. X.reshape(-1, 1) for a single feature.")
    if X.shape[0] == 0:
        raise SchemaError(f"HyperbandSearch: no training rows (split {split!r} is empty).")
    classes = None
    if classifier and dataset is not None:
        if dataset.task != "classification":
            raise SchemaError(f"HyperbandSearch got a classifier and the store {str(dataset.path)!r}, which holds "
                              f"{dataset.task} targets; search a regressor instead.")
        classes = np.arange(dataset.n_classes)
    elif classifier:
        classes = np.unique(_compute(None if in_memory else runner.client, (da.unique(y),))[0])
    X_val = None
    if dataset is not None and validation_split is not None:
        X_val, y_val = dataset.arrays(validation_split)
        description = f"the store's {validation_split!r} split"
    if X_val is None or X_val.shape[0] == 0:
        X, y, X_val, y_val, description = _hold_out(X, y)
    X_blocks, y_blocks = X.to_delayed(optimize_graph=False).ravel(), y.to_delayed(optimize_graph=False).ravel()
    blocks = [(x_block, y_block) for x_block, y_block, size in zip(X_blocks, y_blocks, X.chunks[0]) if size > 0]
    if in_memory:
        # Already in memory: slice here and send each chunk to the cluster once, not with every task graph.
        arrays = runner.place(dask.compute(*[item for pair in blocks for item in pair], scheduler="sync"))
        blocks = list(zip(arrays[0::2], arrays[1::2]))
    return _SearchData(blocks, runner.persist((X_val, y_val)), classes, description, int(X.shape[1]))


def _hold_out(X, y):
    """Split off the last ``HOLDOUT_FRACTION`` of the chunks (or of the rows, for one chunk) to score on."""
    sizes = np.asarray(X.chunks[0])
    filled = np.flatnonzero(sizes > 0)
    if len(filled) >= 2:
        n_held = max(1, round(HOLDOUT_FRACTION * len(filled)))
        cut = int(sizes[: filled[-n_held]].sum())
        description = f"the last {n_held} of {len(filled)} training chunks"
    else:
        n_rows = int(sizes.sum())
        if n_rows < 2:
            raise SchemaError(f"HyperbandSearch needs at least 2 training rows to hold some out for scoring; "
                              f"got n_samples={n_rows}. Pass more data or a store with validation rows.")
        # Two rows at least where possible: r2 and other scores are undefined on one.
        cut = n_rows - min(n_rows - 1, max(2, round(HOLDOUT_FRACTION * n_rows)))
        description = f"the last {n_rows - cut} of {n_rows} training rows"
    return X[:cut], y[:cut], X[cut:], y[cut:], description


def _object_array(values: list) -> np.ndarray:
    """A 1-D object array, even of tuples (which ``np.array`` would turn into a 2-D array)."""
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        array[index] = value
    return array

