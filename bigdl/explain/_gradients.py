"""Gradient attributions for torch models, through captum (PyTorch's interpretability library).

captum implements integrated gradients (with its completeness check, the
convergence delta) and saliency maps well; bigdl only feeds it store data
and plots the results with the store's feature names.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bigdl._validation import Interval, check_params
from bigdl.errors import SchemaError
from bigdl.store._dataset import Dataset, open_store
from bigdl.store.kinds import check_split

__all__ = ["integrated_gradients", "saliency", "attributions", "plot_saliency"]


def _module(model):
    import torch

    from bigdl.train import Trainer

    module = model.model if isinstance(model, Trainer) else model
    if not isinstance(module, torch.nn.Module):
        raise SchemaError(f"Gradient attributions need a torch model (nn.Module or Trainer); got {type(model).__name__}. "
                          "Use bigdl.explain.permutation_importance for other estimators.")
    return module.cpu().eval()


def _targets(module, inputs, target):
    import torch

    if target is not None:
        return torch.as_tensor(target, dtype=torch.long) if not isinstance(target, int) else target
    with torch.no_grad():
        output = module(inputs)
    if output.ndim == 2 and output.shape[1] > 1:
        return output.argmax(1)  # explain the predicted class
    return None


def integrated_gradients(model, X, *, target=None, baseline=None, n_steps: int = 50,
                         return_delta: bool = False):
    """Integrated-gradients attributions of each input value (same shape as ``X``).

    Parameters
    ----------
    model : torch.nn.Module or Trainer
    X : array-like or tensor
        Samples as the model takes them (for images: normalised float tensors).
    target : int or array of int, optional
        The output (class) to explain; default: each sample's predicted class
        (regression models with one output need none).
    baseline : array-like, optional
        The reference input; default zeros (the mean of standardized features).
    n_steps : int, default 50
    return_delta : bool, default False
        Also return captum's convergence delta per sample (attributions should
        sum to ``f(x) - f(baseline)``; the delta is the gap).

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        The attributions, shaped as ``X``; with ``return_delta``, also the
        convergence delta of each sample.

    Raises
    ------
    ParameterError
        ``n_steps`` below 1.
    SchemaError
        ``model`` is not a torch model.
    """
    import torch
    from captum.attr import IntegratedGradients

    check_params("integrated_gradients", {"n_steps": n_steps}, {"n_steps": [Interval(int, 1, None)]})
    module = _module(model)
    inputs = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    baselines = None if baseline is None else torch.as_tensor(np.asarray(baseline), dtype=torch.float32)
    explainer = IntegratedGradients(module)
    result = explainer.attribute(inputs, baselines=baselines, target=_targets(module, inputs, target),
                                 n_steps=n_steps, return_convergence_delta=return_delta)
    if return_delta:
        attributions, delta = result
        return attributions.detach().numpy(), delta.detach().numpy()
    return result.detach().numpy()


def saliency(model, X, *, target=None) -> np.ndarray:
    """Absolute input gradients of the target output (saliency maps), same shape as ``X``.

    Parameters
    ----------
    model : torch.nn.Module or Trainer
    X : array-like or tensor
        Samples as the model takes them.
    target : int or array of int, optional
        The output (class) to explain; default: each sample's predicted class.

    Returns
    -------
    numpy.ndarray
        Shaped as ``X``, >= 0.

    Raises
    ------
    SchemaError
        ``model`` is not a torch model.
    """
    import torch
    from captum.attr import Saliency

    module = _module(model)
    inputs = torch.as_tensor(np.asarray(X), dtype=torch.float32).requires_grad_(True)
    return Saliency(module).attribute(inputs, target=_targets(module, inputs, target), abs=True).detach().numpy()


def attributions(model, ds, *, split: str = "test", n_samples: int = 2000, n_steps: int = 50) -> pd.DataFrame:
    """Mean absolute integrated-gradients attribution per feature over up to ``n_samples`` rows of a split.

    Rows are read chunk by chunk until ``n_samples`` are collected.

    Parameters
    ----------
    model : torch.nn.Module or Trainer
    ds : Dataset or str
        The store; feature names come from it.
    split : {"train", "validation", "test", "all"}, default "test"
    n_samples : int, default 2000
        At most this many samples are explained.
    n_steps : int, default 50
        Integration steps of :func:`integrated_gradients`.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``mean_abs_attribution``, ``std_abs_attribution``, sorted decreasing.

    Raises
    ------
    ParameterError
        ``n_samples`` or ``n_steps`` below 1, or an unknown ``split``.
    SchemaError
        ``model`` is not a torch model, or the split has no rows.
    """
    check_params("attributions", {"n_samples": n_samples, "n_steps": n_steps},
                 {"n_samples": [Interval(int, 1, None)], "n_steps": [Interval(int, 1, None)]})
    check_split(split, owner="attributions")
    ds = ds if isinstance(ds, Dataset) else open_store(ds)
    parts, collected = [], 0
    for index in range(ds.n_chunks):
        X, _ = ds.read_chunk(index, split)
        parts.append(X[: n_samples - collected])
        collected += len(parts[-1])
        if collected >= n_samples:
            break
    if not collected:
        raise SchemaError(f"The store has no {split!r} rows to explain.")
    values = np.abs(integrated_gradients(model, np.concatenate(parts), n_steps=n_steps))
    values = values.reshape(len(values), -1)
    names = ds.feature_names if len(ds.feature_names) == values.shape[1] else \
        [f"x{index}" for index in range(values.shape[1])]
    frame = pd.DataFrame({"feature": names, "mean_abs_attribution": values.mean(axis=0),
                          "std_abs_attribution": values.std(axis=0)})
    return frame.sort_values("mean_abs_attribution", ascending=False, kind="stable").reset_index(drop=True)


def plot_saliency(images, maps, path, *, titles: list[str] | None = None) -> str:
    """Images (first row) over their attribution heat maps (second row), as a PNG.

    Drawn on a standalone :class:`matplotlib.figure.Figure` (no pyplot state,
    no backend switch).

    Parameters
    ----------
    images : array-like of shape (n, C, H, W)
        The images, as the model saw them or as stored.
    maps : array-like of shape (n, C, H, W) or (n, H, W)
        Their attributions (:func:`saliency`, :func:`integrated_gradients`);
        absolute values are shown, the maximum over channels.
    path : str or path
        The PNG to write; missing parent folders are made.
    titles : list of str, optional
        One per image.

    Returns
    -------
    str
        ``path``.
    """
    from pathlib import Path

    from matplotlib.figure import Figure

    images, maps = np.asarray(images), np.abs(np.asarray(maps))
    count = len(images)
    figure = Figure(figsize=(1.8 * count, 3.8))
    axes = figure.subplots(2, count, squeeze=False)
    for column in range(count):
        image = images[column]
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
        heat = maps[column].max(axis=0) if maps[column].ndim == 3 else maps[column]
        axes[0][column].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[1][column].imshow(heat, cmap="inferno")
        if titles:
            axes[0][column].set_title(titles[column], fontsize=9)
        for row in (0, 1):
            axes[row][column].axis("off")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return str(path)
