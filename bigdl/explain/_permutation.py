"""Permutation importance computed out of core, one Dask task per store chunk.

For each chunk of the split, a task scores the model on the chunk as is and
with each feature's column permuted (``n_repeats`` times, seeded per chunk),
and returns only sums (correct predictions, or squared errors and target
moments).  Sums from all chunks give the metric over the whole split, so the
importance of a feature is the drop of the split's accuracy (or R2) when
that feature is shuffled.  Columns are permuted within each chunk, not
across the whole split; with chunks of many thousand rows drawn from one
distribution that is the same estimate (scikit-learn's
``permutation_importance`` permutes in memory; tests compare the two).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bigdl._validation import Interval, check_params
from bigdl.errors import SchemaError
from bigdl.store._dataset import Dataset, open_store
from bigdl.store.kinds import check_split

__all__ = ["permutation_importance", "plot_importance", "predictor_of"]


def predictor_of(model, task: str):
    """A picklable ``predict(numpy block) -> numpy`` for estimators, Trainers and torch modules.

    Parameters
    ----------
    model : fitted estimator, ChunkForest, Trainer or torch.nn.Module
    task : {"classification", "regression"}
        The store's task: a torch classifier predicts the class of largest output.

    Returns
    -------
    callable

    Raises
    ------
    SchemaError
        ``model`` has no ``predict`` and is no Trainer or torch module.
    """
    import torch

    from bigdl.train import Trainer
    from bigdl.train._trainer import ModulePredictor

    if isinstance(model, Trainer):
        model = model.model
    if isinstance(model, torch.nn.Module):  # the Trainer's own predictor: batched, CPU copy, eval mode
        return ModulePredictor(model, classify=task == "classification")
    if hasattr(model, "forest_"):  # ChunkForest: predict with the merged scikit-learn forest directly
        return model.forest_.predict
    if hasattr(model, "predict"):
        return model.predict
    raise SchemaError(f"Cannot explain a {type(model).__name__}: it needs a predict method (a fitted "
                      "estimator), or be a Trainer or torch.nn.Module.")


def permutation_importance(model, ds, *, split: str = "test", n_repeats: int = 5, random_state: int = 0,
                           progress: bool = True, client=None) -> pd.DataFrame:
    """Drop of accuracy (classification) or R2 (regression) when each feature is shuffled.

    Parameters
    ----------
    model : fitted estimator, ChunkForest, Trainer or torch.nn.Module
    ds : Dataset or str
        The store; feature names come from it.
    split : str, default "test"
    n_repeats : int, default 5
        Permutations per feature; the result has their mean and standard deviation.
    random_state : int, default 0
    progress : bool, default True
    client : distributed.Client, optional
        Default: the current client, else Dask's threaded scheduler.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``importance_mean``, ``importance_std`` (and one column
        per repeat), sorted by decreasing importance; ``attrs["baseline"]`` is
        the unpermuted score and ``attrs["metric"]`` its name.

    Raises
    ------
    ParameterError
        ``n_repeats`` below 1, a negative ``random_state`` or an unknown ``split``.
    SchemaError
        A store without a target, a model fitted on another number of
        features, or a split without rows.
    """
    from bigdl.runtime._tasks import run_tasks

    check_params("permutation_importance", {"n_repeats": n_repeats, "random_state": random_state},
                 {"n_repeats": [Interval(int, 1, None)], "random_state": [Interval(int, 0, None)]})
    check_split(split, owner="permutation_importance")
    ds = ds if isinstance(ds, Dataset) else open_store(ds)
    if ds.task is None:
        raise SchemaError("Permutation importance needs a store with a target.")
    predict = predictor_of(model, ds.task)
    n_features = ds.n_features
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and expected != n_features:
        raise SchemaError(f"The model was fitted on {expected} features but the store has {n_features}.")
    counts = ds.split_counts
    if split not in (None, "all") and not counts.get(split):
        raise SchemaError(f"The store has no {split!r} rows (splits: {counts}).")
    from bigdl.runtime._tasks import active_client

    client = active_client(client)
    if client is not None:  # send the model to the workers once, not with every task
        predict = client.scatter(predict, broadcast=True, hash=False)
    arguments = [(str(ds.path), index, split, predict, ds.task, n_repeats, random_state)
                 for index in range(ds.n_chunks)]
    sums = [item for item in run_tasks("bigdl-explain-permutation", _chunk_sums, arguments,
                                       desc="permutation importance", progress=progress, client=client)
            if item is not None]
    total = {key: np.sum([item[key] for item in sums], axis=0) for key in sums[0]}
    baseline = _metric(total, "base", ds.task)
    permuted = _metric(total, "perm", ds.task)  # shape (n_repeats, n_features)
    drops = baseline - permuted
    frame = pd.DataFrame({"feature": ds.feature_names or [f"x{i}" for i in range(n_features)],
                          "importance_mean": drops.mean(axis=0), "importance_std": drops.std(axis=0)})
    for repeat in range(n_repeats):
        frame[f"repeat_{repeat}"] = drops[repeat]
    frame = frame.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)
    frame.attrs["baseline"] = float(baseline)
    frame.attrs["metric"] = "accuracy" if ds.task == "classification" else "r2"
    return frame


def _chunk_sums(path, chunk_index, split, predict, task, n_repeats, random_state) -> dict | None:
    """Score sums of one chunk, as is and with each feature permuted (runs in a Dask task)."""
    X, y = open_store(path).read_chunk(chunk_index, split)
    if not len(X):
        return None
    rng = np.random.default_rng([random_state, chunk_index])
    n, n_features = X.shape
    stats = {"base": _stats(predict(X), y, task)}
    perm = np.zeros((n_repeats, n_features, len(stats["base"])))
    for feature in range(n_features):
        original = X[:, feature].copy()
        for repeat in range(n_repeats):
            X[:, feature] = original[rng.permutation(n)]
            perm[repeat, feature] = _stats(predict(X), y, task)
        X[:, feature] = original
    stats["perm"] = perm
    return stats


def _stats(predicted, y, task) -> np.ndarray:
    predicted = np.asarray(predicted).reshape(len(y))
    if task == "classification":
        return np.array([float((predicted == y).sum()), float(len(y))])
    error = predicted.astype(np.float64) - y
    return np.array([float((error ** 2).sum()), float(y.sum()), float((y.astype(np.float64) ** 2).sum()),
                     float(len(y))])


def _metric(total: dict, key: str, task: str):
    values = np.asarray(total[key])
    if task == "classification":
        return values[..., 0] / values[..., 1]
    sse, sum_y, sum_y2, n = (values[..., index] for index in range(4))
    variance = sum_y2 - sum_y ** 2 / n
    return 1.0 - sse / variance


def plot_importance(importance: pd.DataFrame, path, *, top: int = 20, title: str | None = None) -> str:
    """A horizontal bar chart (mean and standard deviation) of the ``top`` features as a PNG.

    Drawn on a standalone :class:`matplotlib.figure.Figure`: no pyplot
    state and no backend switch, so it runs headless and leaves the caller's
    matplotlib (a notebook's inline backend, say) as it was.

    Parameters
    ----------
    importance : pandas.DataFrame
        What :func:`permutation_importance` returned.
    path : str or path
        The PNG to write; missing parent folders are made.
    top : int, default 20
        The most important features shown.
    title : str, optional
        Default "Permutation importance".

    Returns
    -------
    str
        ``path``.
    """
    from pathlib import Path

    from matplotlib.figure import Figure

    shown = importance.head(top).iloc[::-1]
    figure = Figure(figsize=(7, 0.3 * len(shown) + 1.2))
    axis = figure.subplots()
    axis.barh(shown["feature"], shown["importance_mean"], xerr=shown["importance_std"], color="tab:blue")
    metric = importance.attrs.get("metric", "score")
    axis.set_xlabel(f"drop in {metric} when shuffled (baseline {importance.attrs.get('baseline', float('nan')):.3f})")
    axis.set_title(title or "Permutation importance")
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return str(path)
