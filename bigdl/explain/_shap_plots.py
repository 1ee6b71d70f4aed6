"""Plots of SHAP values: shap's summary (beeswarm, bar), a waterfall per row, heat maps over images.

Everything draws on a standalone :class:`matplotlib.figure.Figure`: shap's
``beeswarm`` and ``bar`` take its axes (``ax=``), so pyplot's state and the
backend stay as the caller had them (shap imports pyplot, but no pyplot
figure is made and no backend is chosen).  shap's waterfall draws through
pyplot's current figure only, so the waterfall here is drawn on the
standalone figure the same way (bars from the base value to the output).
Only the rows plotted are computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigdl._validation import Interval, Options, check_params
from bigdl.errors import ParameterError

__all__ = ["plot_shap_summary", "plot_shap_waterfall", "plot_shap_images"]


def _save(figure, path) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return str(path)


def plot_shap_summary(explanation, path, *, kind: str = "beeswarm", max_display: int = 20, rows: int = 1000,
                      output: int | None = None) -> str:
    """shap's summary plot of an explanation's first ``rows`` samples, as a PNG.

    Parameters
    ----------
    explanation : ShapExplanation
        What :func:`shap_values` returned.
    path : str or path
        The PNG to write; missing parent folders are made.
    kind : {"beeswarm", "bar"}, default "beeswarm"
        ``shap.plots.beeswarm`` (each sample's value per feature, coloured
        by the feature's value) or ``shap.plots.bar`` (mean |SHAP|).
    max_display : int, default 20
        Features shown (the rest summed into one row).
    rows : int, default 1000
        Samples plotted (computed now; the bar uses the same rows).
    output : int, optional
        The output of a multi-output model (default the last: a binary
        classifier's positive class).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ParameterError
        An unknown ``kind``, or ``max_display`` / ``rows`` below 1.
    """
    import shap
    from matplotlib.figure import Figure

    check_params("plot_shap_summary", {"kind": kind, "max_display": max_display, "rows": rows},
                 {"kind": [Options(("beeswarm", "bar"))], "max_display": [Interval(int, 1, None)],
                  "rows": [Interval(int, 1, None)]})
    shown = explanation.to_shap(slice(0, rows), output=output)
    n_features = min(max_display, shown.values.shape[1])
    figure = Figure(figsize=(8, 0.4 * n_features + 1.5))
    axis = figure.subplots()
    if kind == "beeswarm":
        shap.plots.beeswarm(shown, max_display=max_display, ax=axis, show=False, plot_size=None)
    else:
        shap.plots.bar(shown, max_display=max_display, ax=axis, show=False)
    axis.set_title(f"SHAP ({explanation.method}): {shown.output_names}", fontsize=10)
    return _save(figure, path)


def plot_shap_waterfall(explanation, row: int, path, *, output: int | None = None, max_display: int = 10) -> str:
    """How one sample's SHAP values add up from the base value to the model's output (a waterfall), as a PNG.

    Parameters
    ----------
    explanation : ShapExplanation
    row : int
        The sample's position among the explained samples.
    path : str or path
        The PNG to write.
    output : int, optional
        The output of a multi-output model (default the last).
    max_display : int, default 10
        Features with the largest |SHAP| shown; the others as one bar.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ParameterError
        ``row`` outside the explained samples, ``max_display`` below 1.
    """
    from matplotlib.figure import Figure

    check_params("plot_shap_waterfall", {"row": row, "max_display": max_display},
                 {"row": [Interval(int, 0, None)], "max_display": [Interval(int, 1, None)]})
    if row >= explanation.n_samples:
        raise ParameterError(f"row={row} but the explanation has {explanation.n_samples} samples.")
    shown = explanation.to_shap(slice(row, row + 1), output=output)
    values, data, base = shown.values[0], shown.data[0], float(shown.base_values[0])
    order = np.argsort(-np.abs(values))
    top = order[:max_display]
    labels = [f"{explanation.feature_names[index]} = {data[index]:.3g}" for index in top]
    contributions = list(values[top])
    if len(order) > max_display:
        labels.append(f"{len(order) - max_display} other features")
        contributions.append(float(values[order[max_display:]].sum()))
    # Drawn bottom up: the smallest contribution first, the largest ends at f(x).
    labels, contributions = labels[::-1], contributions[::-1]
    start = base + np.concatenate([[0.0], np.cumsum(contributions)[:-1]])
    figure = Figure(figsize=(8, 0.4 * len(labels) + 1.5))
    axis = figure.subplots()
    colours = ["#ff0051" if value > 0 else "#008bfb" for value in contributions]
    axis.barh(range(len(labels)), contributions, left=start, color=colours)
    for position, (value, left) in enumerate(zip(contributions, start)):
        axis.text(left + value, position, f" {value:+.3g}", va="center", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=9)
    axis.axvline(base, color="grey", linestyle="--", linewidth=0.8)
    total = base + float(np.sum(values))
    axis.axvline(total, color="black", linewidth=0.8)
    axis.set_xlabel(f"E[f(x)] = {base:.3g}  ->  f(x) = {total:.3g}   ({shown.output_names})")
    axis.set_title(f"SHAP waterfall of sample {row} ({explanation.method})", fontsize=10)
    return _save(figure, path)


def plot_shap_images(explanation, path, *, rows: int = 8, output: int | None = None) -> str:
    """Images (first row) and their SHAP heat maps (second row: summed over channels, red up, blue down), as a PNG.

    Parameters
    ----------
    explanation : ShapExplanation
        Of an image store (samples ``(C, H, W)``).
    path : str or path
        The PNG to write.
    rows : int, default 8
        The first ``rows`` explained images.
    output : int, optional
        The output explained; default each image's largest output (its
        predicted class).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ParameterError
        Not an image explanation, or ``rows`` below 1.
    """
    from matplotlib.figure import Figure

    check_params("plot_shap_images", {"rows": rows}, {"rows": [Interval(int, 1, None)]})
    if len(explanation.sample_shape) != 3:
        raise ParameterError(f"plot_shap_images needs an explanation of images (C, H, W); this one has samples "
                             f"of shape {explanation.sample_shape}: use plot_shap_summary.")
    count = min(rows, explanation.n_samples)
    import dask

    values, images = dask.compute(explanation.values[:count], explanation.data[:count])
    if explanation.n_outputs > 1:
        chosen = np.full(count, output) if output is not None else \
            np.argmax(explanation.outputs(slice(0, count)), axis=1)
        values = values[np.arange(count), ..., chosen] if values.ndim == 5 else values
        values = np.stack([values[index] for index in range(count)])
        titles = [explanation.output_names[int(index)] for index in chosen]
    else:
        titles = [explanation.output_names[0]] * count
    heat = values.sum(axis=1)  # over channels
    limit = float(np.abs(heat).max()) or 1.0
    figure = Figure(figsize=(1.9 * count, 4.2))
    axes = figure.subplots(2, count, squeeze=False)
    for column in range(count):
        image = images[column]
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
        if image.ndim == 3:
            image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
        axes[0][column].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[0][column].set_title(titles[column].replace("logit of class ", "class "), fontsize=8)
        gray = image if image.ndim == 2 else image.mean(axis=-1)
        axes[1][column].imshow(gray, cmap="gray", alpha=0.35)
        axes[1][column].imshow(heat[column], cmap="bwr", vmin=-limit, vmax=limit, alpha=0.75)
        for line in (0, 1):
            axes[line][column].axis("off")
    figure.suptitle(f"SHAP ({explanation.method}) per pixel, summed over channels", fontsize=10)
    return _save(figure, path)
