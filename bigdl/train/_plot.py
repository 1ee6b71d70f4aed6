"""Learning-curve plots of a Trainer history.

Drawn on a standalone :class:`matplotlib.figure.Figure` and saved with its
own ``savefig``: no pyplot state and no global backend switch, so plotting
runs headless (on a worker, in CI) and leaves the caller's matplotlib as it was.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_history"]


def plot_history(history: list[dict], path) -> str:
    """Save train/validation loss and the validation metric per epoch as a PNG.

    Parameters
    ----------
    history : list of dict
        One entry per epoch, as ``Trainer.fit`` returns it: ``epoch``,
        ``train_loss`` and, with a validation split, ``val_loss`` and
        ``val_accuracy`` or ``val_r2``.
    path : str or path
        The PNG to write; missing parent folders are made.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        ``history`` is empty.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("The history is empty: call fit() first.")
    epochs = [entry["epoch"] for entry in history]
    metric = next((key for key in ("val_accuracy", "val_r2") if key in history[0]), None)
    figure = Figure(figsize=(10 if metric else 5, 3.5))
    axes = figure.subplots(1, 2 if metric else 1, squeeze=False)
    loss_axis = axes[0][0]
    loss_axis.plot(epochs, [entry["train_loss"] for entry in history], marker="o", label="train")
    if "val_loss" in history[0]:
        loss_axis.plot(epochs, [entry["val_loss"] for entry in history], marker="o", label="validation")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    loss_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if metric:
        metric_axis = axes[0][1]
        metric_axis.plot(epochs, [entry[metric] for entry in history], marker="o", color="tab:green")
        metric_axis.set_xlabel("epoch")
        metric_axis.set_ylabel(metric.replace("val_", "validation "))
        metric_axis.grid(alpha=0.3)
        metric_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return str(path)
