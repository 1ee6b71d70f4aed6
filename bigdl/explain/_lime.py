"""LIME explanations of chosen rows, the tabular explainer fitted on out-of-core training statistics.

Tabular stores use the ``lime`` package's ``LimeTabularExplainer`` with
quartile discretisation.  Its statistics never come from the whole train
split in memory: the quartile edges of each feature come from a bounded,
seeded sample of train rows (``sample_rows``), and the per-quartile counts,
means, standard deviations and the features' minima and maxima from one
pass of tasks over the train chunks (one task per chunk returning sums);
they are handed to LIME as its ``training_data_stats``.  Image stores use
``LimeImageExplainer`` with SLIC superpixels, hiding a superpixel with
value 0 of the normalised image (the channel's mean pixel).

Each explained row is one Dask task (``num_samples`` model calls on its
perturbations), seeded by ``seed`` and the row, so a cluster gives the same
weights as threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bigdl._validation import Interval, check_params
from bigdl.errors import ParameterError, SchemaError
from bigdl.explain._samples import random_rows, read_rows
from bigdl.store._dataset import Dataset, open_store
from bigdl.store.kinds import check_split

__all__ = ["lime", "LimeExplanation", "plot_lime"]


@dataclass
class LimeExplanation:
    """LIME's local linear weights for each explained row.

    What :func:`lime` returns.

    Attributes
    ----------
    weights : pandas.DataFrame
        One line per (row, feature or superpixel): ``row`` (position in the
        split), ``label`` (the class explained, or ``"prediction"``),
        ``feature`` (name; images: ``"segment <id>"``), ``condition`` (LIME's
        description, ``"age > 0.67"``), ``weight``; largest |weight| first per row.
    rows : list of int
    split : str
    kind : str
        ``"tabular"`` or ``"image"``.
    intercept : dict
        Per row, the local model's intercept.
    score : dict
        Per row, the local model's R2 on the perturbations.
    prediction : dict
        Per row, the model's output explained (the class's probability, or the prediction).
    segments : dict
        Images: per row the superpixel id of each pixel ``(H, W)``.
    images : dict
        Images: per row the image as the model saw it ``(C, H, W)``.
    plots : list of str
        The PNGs written.
    """

    weights: pd.DataFrame
    rows: list
    split: str
    kind: str
    intercept: dict = field(default_factory=dict)
    score: dict = field(default_factory=dict)
    prediction: dict = field(default_factory=dict)
    segments: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    plots: list = field(default_factory=list)

    def mean_abs_weights(self) -> pd.DataFrame:
        """Mean |weight| per feature over the explained rows (a feature absent from a row's top counts 0).

        Returns
        -------
        pandas.DataFrame
            ``feature``, ``mean_abs_weight``, largest first.
        """
        table = self.weights.assign(abs_weight=self.weights["weight"].abs())
        sums = table.groupby("feature")["abs_weight"].sum() / max(len(self.rows), 1)
        frame = sums.rename("mean_abs_weight").reset_index()
        return frame.sort_values("mean_abs_weight", ascending=False, kind="stable").reset_index(drop=True)


def _predictor(model, ds: Dataset):
    """A picklable function LIME calls: class probabilities for classification, predictions for regression."""
    from bigdl.explain._shap import _Probabilities, model_family, torch_module
    from bigdl.train._trainer import ModulePredictor

    classify = ds.task == "classification"
    family = model_family(model)
    if family == "torch":
        return ModulePredictor(torch_module(model), classify=classify, probabilities=classify)
    if family == "forest":
        model = model.forest_  # scikit-learn's forest on NumPy directly
    if classify and not hasattr(model, "predict_proba"):
        raise SchemaError(f"LIME explains class probabilities, but a {type(model).__name__} has no predict_proba.")
    return _Probabilities(model, "predict_proba" if classify else "predict")


def lime(model, ds, rows, split: str = "test", num_features: int = 10, num_samples: int = 5000, seed: int = 0, *,
         plot_dir=None, sample_rows: int = 10000, segments: int = 40, progress: bool = True,
         client=None) -> LimeExplanation:
    """LIME weights of the model's output at the given rows of a split; optionally a PNG per row.

    Parameters
    ----------
    model : fitted estimator, ChunkForest, XGB estimator, Trainer, torch estimator or torch.nn.Module
        Classification: LIME explains the probability of each row's predicted class.
    ds : Dataset or str
        The store (read through its sample view).
    rows : int or sequence of int
        Positions within ``split`` (from 0, in store order).
    split : {"train", "validation", "test", "all"}, default "test"
    num_features : int, default 10
        Features (or superpixels) in each row's explanation.
    num_samples : int, default 5000
        Perturbations per row: model calls grow with it.
    seed : int, default 0
        The sample of train rows, and each row's perturbations (``seed + row``).
    plot_dir : str or path, optional
        Where to write ``lime_<split>_<row>.png`` per row: the weights as
        bars (tabular), the superpixels for and against the class over the
        image (images).
    sample_rows : int, default 10000
        Train rows the quartile edges are taken from (tabular); the per-quartile
        statistics use every train row, chunk by chunk.
    segments : int, default 40
        SLIC superpixels per image (images).
    progress : bool, default True
    client : distributed.Client, optional
        Default: the current client, else Dask's threaded scheduler.

    Returns
    -------
    LimeExplanation

    Raises
    ------
    ParameterError
        A parameter out of range, an unknown ``split``, a row outside the split.
    SchemaError
        A model that cannot be explained, a sequence store, an empty train split.

    Examples
    --------
    >>> result = lime(forest, ds, rows=[0, 1, 2], plot_dir="work/lime")   # doctest: +SKIP
    >>> result.weights.head()                                             # doctest: +SKIP
    """
    from bigdl.runtime._tasks import active_client, run_tasks

    check_params("lime", {"num_features": num_features, "num_samples": num_samples, "seed": seed,
                          "sample_rows": sample_rows, "segments": segments},
                 {"num_features": [Interval(int, 1, None)], "num_samples": [Interval(int, 10, None)],
                  "seed": [Interval(int, 0, None)], "sample_rows": [Interval(int, 10, None)],
                  "segments": [Interval(int, 2, None)]})
    check_split(split, owner="lime")
    ds = ds if isinstance(ds, Dataset) else open_store(ds)
    rows = [int(row) for row in np.atleast_1d(np.asarray(rows, dtype=np.int64))]
    if not rows:
        raise ParameterError("lime: rows is empty; pass the positions (within the split) of the rows to explain.")
    if ds.kind == "sequence":
        raise SchemaError("lime explains tabular rows and images; the store is a sequence store.")
    predict = _predictor(model, ds)
    X, _ = read_rows(ds, split, rows)
    client = active_client(client)
    image = len(ds.sample_shape) == 3
    if image:
        spec = {"kind": "image", "segments": segments, "num_features": num_features, "num_samples": num_samples}
    else:
        spec = _tabular_spec(ds, seed, sample_rows, client, progress)
        spec.update(num_features=num_features, num_samples=num_samples)
    spec["classification"] = ds.task == "classification"
    shipped = client.scatter(predict, broadcast=True, hash=False) if client is not None else predict
    arguments = [(spec, X[index], shipped, seed + row) for index, row in enumerate(rows)]
    results = run_tasks("bigdl-explain-lime", _explain_row, arguments, desc="LIME rows", progress=progress,
                        client=client)
    classes = ds.classes
    lines = []
    explanation = LimeExplanation(weights=pd.DataFrame(), rows=rows, split=split, kind="image" if image else "tabular")
    for index, (row, result) in enumerate(zip(rows, results)):
        label = result["label"]
        name = "prediction" if label is None else (classes[label] if classes is not None else label)
        for feature, condition, weight in result["weights"]:
            lines.append({"row": row, "label": name,
                          "feature": f"segment {feature}" if image else spec["feature_names"][feature],
                          "condition": condition, "weight": float(weight)})
        explanation.intercept[row] = result["intercept"]
        explanation.score[row] = result["score"]
        explanation.prediction[row] = result["prediction"]
        if image:
            explanation.segments[row] = result["segments"]
            explanation.images[row] = X[index]
    explanation.weights = pd.DataFrame(lines, columns=["row", "label", "feature", "condition", "weight"])
    if plot_dir is not None:
        explanation.plots = [plot_lime(explanation, row, Path(plot_dir) / f"lime_{split}_{row}.png") for row in rows]
    return explanation


# ------------------------------------------------------------------ training statistics, out of core
def _tabular_spec(ds: Dataset, seed: int, sample_rows: int, client, progress: bool) -> dict:
    """What LimeTabularExplainer is built from: quartile edges (a sample) and per-quartile sums (every train row)."""
    from bigdl.runtime._tasks import run_tasks

    sample, _ = random_rows(ds, "train", sample_rows, seed)
    edges = [np.unique(np.percentile(sample[:, feature], [25, 50, 75])) for feature in range(sample.shape[1])]
    chunks = [int(chunk) for chunk in np.flatnonzero(ds.view.chunk_counts("train"))]
    sums = run_tasks("bigdl-explain-lime-stats", _quartile_sums, [(str(ds.path), chunk, edges) for chunk in chunks],
                     desc="LIME training statistics", progress=progress, client=client)
    counts = np.sum([item["counts"] for item in sums], axis=0)
    totals = np.sum([item["sums"] for item in sums], axis=0)
    squares = np.sum([item["squares"] for item in sums], axis=0)
    minima = np.min([item["min"] for item in sums], axis=0)
    maxima = np.max([item["max"] for item in sums], axis=0)
    stats = {key: {} for key in ("means", "stds", "mins", "maxs", "bins", "feature_values", "feature_frequencies")}
    for feature, cuts in enumerate(edges):
        n_bins = len(cuts) + 1
        count = counts[feature, :n_bins]
        mean = np.divide(totals[feature, :n_bins], count, out=np.zeros(n_bins), where=count > 0)
        variance = np.divide(squares[feature, :n_bins], count, out=np.zeros(n_bins), where=count > 0) - mean ** 2
        stats["means"][feature] = mean.tolist()
        stats["stds"][feature] = (np.sqrt(np.maximum(variance, 0.0)) + 1e-11).tolist()  # as LIME's own
        stats["mins"][feature] = [float(minima[feature])] + cuts.tolist()
        stats["maxs"][feature] = cuts.tolist() + [float(maxima[feature])]
        stats["bins"][feature] = cuts.tolist()
        stats["feature_values"][feature] = list(range(n_bins))
        stats["feature_frequencies"][feature] = count.tolist()
    names = ds.feature_names if len(ds.feature_names) == sample.shape[1] else \
        [f"x{index}" for index in range(sample.shape[1])]
    # LIME takes training data only for its width and a scaler the discretised features reset: the extremes do.
    return {"kind": "tabular", "stats": stats, "extremes": np.vstack([minima, maxima]).astype(np.float64),
            "feature_names": list(names), "class_names": [str(label) for label in ds.classes or []] or None}


def _quartile_sums(path: str, chunk: int, edges: list) -> dict:
    """Counts, sums and sums of squares per feature and quartile bin, minima and maxima (runs in a Dask task)."""
    X, _ = open_store(path).read_chunk(chunk, "train")
    X = X.astype(np.float64)
    n_features = X.shape[1]
    counts, sums, squares = (np.zeros((n_features, 4)) for _ in range(3))
    for feature, cuts in enumerate(edges):
        bins = np.searchsorted(cuts, X[:, feature])  # LIME's own binning: searchsorted(edges, value)
        counts[feature, :len(cuts) + 1] = np.bincount(bins, minlength=len(cuts) + 1)
        sums[feature, :len(cuts) + 1] = np.bincount(bins, weights=X[:, feature], minlength=len(cuts) + 1)
        squares[feature, :len(cuts) + 1] = np.bincount(bins, weights=X[:, feature] ** 2, minlength=len(cuts) + 1)
    return {"counts": counts, "sums": sums, "squares": squares, "min": X.min(axis=0), "max": X.max(axis=0)}


# ------------------------------------------------------------------ one row (a Dask task)
def _explain_row(spec: dict, x: np.ndarray, predict, seed: int) -> dict:
    if spec["kind"] == "image":
        return _explain_image(spec, x, predict, seed)
    from lime.lime_tabular import LimeTabularExplainer

    explainer = LimeTabularExplainer(
        spec["extremes"], mode="classification" if spec["classification"] else "regression",
        feature_names=spec["feature_names"], class_names=spec["class_names"], discretize_continuous=True,
        training_data_stats=spec["stats"], random_state=seed)
    options = {"top_labels": 1} if spec["classification"] else {}
    result = explainer.explain_instance(np.asarray(x, dtype=np.float64), predict, num_features=spec["num_features"],
                                        num_samples=spec["num_samples"], **options)
    label = next(iter(result.local_exp))
    # as_list describes the same features in the same order as local_exp (the weights by index).
    described = [(feature, condition, weight) for (feature, weight), (condition, _) in
                 zip(result.local_exp[label], result.as_list(label=label))]
    output = np.asarray(predict(np.asarray(x, dtype=np.float32)[None]))
    return {"label": int(label) if spec["classification"] else None,
            "weights": [(int(feature), condition, float(weight)) for feature, condition, weight in described],
            "intercept": float(result.intercept[label]), "score": float(result.score),
            "prediction": float(output[0, label] if spec["classification"] else output.reshape(-1)[0])}


class _ImageFunction:
    """LIME's perturbed images ``(n, H, W, 3)`` -> the model's outputs, the images back to ``(n, C, H, W)``."""

    def __init__(self, predict, channels: int):
        self.predict, self.channels = predict, channels

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float32)
        batch = images[..., :1] if self.channels == 1 else images
        return np.asarray(self.predict(np.ascontiguousarray(np.moveaxis(batch, -1, 1))))


def _explain_image(spec: dict, x: np.ndarray, predict, seed: int) -> dict:
    from lime.lime_image import LimeImageExplainer
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    channels = x.shape[0]
    image = np.moveaxis(x, 0, -1).astype(np.float64)
    if channels == 1:
        image = np.repeat(image, 3, axis=-1)
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / max(high - low, 1e-12)  # SLIC's colour distance on [0, 1]

    def segmentation(_):
        return SegmentationAlgorithm("slic", n_segments=spec["segments"], compactness=10.0, start_label=0,
                                     channel_axis=-1)(scaled)

    function = _ImageFunction(predict, channels)
    options = {"top_labels": 1} if spec["classification"] else {"labels": (0,)}
    result = LimeImageExplainer(random_state=seed).explain_instance(
        image, function, hide_color=0.0, num_features=spec["num_features"], num_samples=spec["num_samples"],
        segmentation_fn=segmentation, random_seed=seed, batch_size=256, **options)
    label = result.top_labels[0] if spec["classification"] else next(iter(result.local_exp))
    weights = sorted(result.local_exp[label], key=lambda item: -abs(item[1]))[:spec["num_features"]]
    output = function(image[None])
    return {"label": int(label) if spec["classification"] else None,
            "weights": [(int(segment), f"superpixel {int(segment)}", float(weight)) for segment, weight in weights],
            "intercept": float(result.intercept[label]), "score": float(result.score[label])
            if isinstance(result.score, dict) else float(result.score),
            "prediction": float(output[0, label] if spec["classification"] else output.reshape(-1)[0]),
            "segments": result.segments.astype(np.int32)}


# ------------------------------------------------------------------ plots
def plot_lime(explanation: LimeExplanation, row: int, path) -> str:
    """One explained row as a PNG: the weights as bars (tabular) or the superpixels over the image (images).

    Drawn on a standalone :class:`matplotlib.figure.Figure` (no pyplot state, no backend switch).

    Parameters
    ----------
    explanation : LimeExplanation
    row : int
        One of ``explanation.rows``.
    path : str or path
        The PNG to write; missing parent folders are made.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ParameterError
        ``row`` was not explained.
    """
    from matplotlib.figure import Figure

    if row not in explanation.rows:
        raise ParameterError(f"Row {row} was not explained; the explanation has rows {explanation.rows}.")
    table = explanation.weights[explanation.weights["row"] == row]
    label = table["label"].iloc[0] if len(table) else ""
    title = f"LIME, {explanation.split} row {row}: {label} ({explanation.prediction[row]:.3g})"
    if explanation.kind == "tabular":
        shown = table.iloc[::-1]
        figure = Figure(figsize=(7, 0.35 * len(shown) + 1.3))
        axis = figure.subplots()
        axis.barh(shown["condition"], shown["weight"],
                  color=["tab:green" if value > 0 else "tab:red" for value in shown["weight"]])
        axis.set_xlabel("weight in the local linear model")
        axis.set_title(title, fontsize=10)
        axis.grid(axis="x", alpha=0.3)
    else:
        from skimage.segmentation import mark_boundaries

        image = explanation.images[row]
        image = np.moveaxis(image, 0, -1)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        segments = explanation.segments[row]
        overlay = np.zeros(segments.shape + (4,))
        for feature, weight in zip(table["feature"], table["weight"]):
            mask = segments == int(feature.split()[-1])
            overlay[mask] = (0.0, 0.8, 0.0, 0.45) if weight > 0 else (0.9, 0.0, 0.0, 0.45)
        figure = Figure(figsize=(6.4, 3.4))
        left, right = figure.subplots(1, 2)
        left.imshow(rgb)
        left.set_title("image", fontsize=9)
        right.imshow(mark_boundaries(rgb, segments, color=(1, 1, 0)))
        right.imshow(overlay)
        right.set_title("green: for, red: against", fontsize=9)
        for axis in (left, right):
            axis.axis("off")
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return str(path)
