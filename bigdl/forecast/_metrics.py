"""Forecasting figures shared by the Trainer and the statistical baselines: MASE's scale, error sums, seasons.

Numpy only (no torch): :meth:`bigdl.train.Trainer.evaluate` and
:func:`bigdl.forecast.baselines` score their forecasts with these same
functions, on the same windows, against the same per-series scales, so
their figures can be set side by side.
"""

from __future__ import annotations

import numpy as np

from bigdl._validation import QUANTILES

__all__ = ["as_times", "infer_season", "training_scales", "error_sums", "figures_from_sums", "seasonal_naive_back",
           "target_names", "as_3d", "SEASONS", "QUANTILES", "median_index", "pinball_sums"]


def as_times(values: np.ndarray, attrs: dict) -> np.ndarray:
    """Stored times as ``datetime64[ns]`` for a date/time column, as they are for numeric times.

    Parameters
    ----------
    values : numpy.ndarray
        int64 nanoseconds or float64 numbers.
    attrs : dict
        The store's attributes.

    Returns
    -------
    numpy.ndarray
    """
    if attrs.get("preprocessing", {}).get("time", {}).get("kind") == "datetime":
        return np.asarray(values, dtype=np.int64).view("datetime64[ns]")
    return np.asarray(values, dtype=np.float64)


# ------------------------------------------------------------------ honest metrics
#: The season (steps per cycle) of common grid frequencies, for MASE's seasonal-naive scale.
SEASONS = {"MS": 12, "ME": 12, "BMS": 12, "BME": 12, "QS": 4, "QE": 4, "BQS": 4, "BQE": 4, "YS": 1, "YE": 1,
           "BYS": 1, "BYE": 1, "W": 52, "B": 5, "D": 7, "h": 24, "min": 60}


def infer_season(attrs: dict) -> int:
    """The season of a store's grid: 12 for months, 4 quarters, 52 weeks, 7 days, 24 hours, 5 business days, 1 else.

    Parameters
    ----------
    attrs : dict
        The store's attributes (``preprocessing.time.frequency``).

    Returns
    -------
    int
    """
    import re

    time = attrs.get("preprocessing", {}).get("time", {})
    frequency = time.get("frequency")
    if time.get("kind") != "datetime" or not isinstance(frequency, str):
        return 1
    match = re.fullmatch(r"(\d*)([A-Za-z]+)(-\w+)?", frequency)
    if not match:
        return 1
    count, name = int(match.group(1) or 1), match.group(2)
    if name == "D" and count == 7:
        return 52
    season = SEASONS.get(name, 1)
    return max(1, season // count) if season % count == 0 else 1


def training_scales(ds, season: int) -> np.ndarray:
    """Per series and target, the in-sample seasonal-naive MAE of its training part, in original units.

    ``mean |x_t - x_{t - season}|`` over the training steps ``t`` whose
    ``t - season`` is a training step of the same series: MASE's denominator.
    One task per store chunk (with ``season`` rows before it); NaN for a
    series with no such pair or a constant training part.

    Parameters
    ----------
    ds : Dataset
        A sequence store.
    season : int

    Returns
    -------
    numpy.ndarray of shape (n_series, n_targets)
    """
    import dask

    view = ds.view
    names = ds.attrs.get("series", {}).get("names") or [""]
    parts = [dask.delayed(_chunk_scale_sums, pure=True)(view, chunk, season, len(names))
             for chunk in range(view.n_chunks)]
    sums = np.sum(dask.compute(*parts), axis=0) if parts else np.zeros((2, len(names), 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        scales = sums[0] / sums[1]
    return np.where(scales > 0, scales, np.nan)


def _chunk_scale_sums(view, chunk: int, season: int, n_series: int) -> np.ndarray:
    low, high = view.chunk_bounds(chunk)
    start = max(0, low - season)
    rows = slice(start, high)
    targets = view.windows["target_index"]
    values = view.unscale(view.read("X", rows)[:, targets].astype(np.float64), target_names(view))
    values = values.reshape(len(values), -1)
    series, split, position = (view.read(name, rows) for name in ("series", "split", "position"))
    here = np.arange(low - start, high - start)
    here = here[here >= season]
    here = here[(position[here] >= season) & (split[here] == 0) & (split[here - season] == 0)
                & (series[here] == series[here - season])]
    sums = np.zeros((2, n_series, values.shape[1]))
    np.add.at(sums[0], series[here], np.abs(values[here] - values[here - season]))
    np.add.at(sums[1], series[here], 1.0)
    return sums


def target_names(view) -> list[str]:
    """The names of a view's target channels.

    Parameters
    ----------
    view : SequenceView

    Returns
    -------
    list of str
    """
    names = view.attrs["feature_names"]
    return [names[index] for index in view.windows["target_index"]]


def as_3d(values: np.ndarray) -> np.ndarray:
    """``(n, horizon)`` or ``(n, horizon, targets)`` -> ``(n, horizon, targets)``.

    Parameters
    ----------
    values : numpy.ndarray

    Returns
    -------
    numpy.ndarray
    """
    return values[:, :, None] if values.ndim == 2 else values


def error_sums(forecasts: dict, actual: np.ndarray, scale: np.ndarray) -> dict:
    """The sums behind MSE, MAE, MASE, sMAPE and per-step MAE, per forecaster, for one batch of windows.

    One code for :meth:`Trainer.evaluate` and :func:`bigdl.forecast.baselines`:
    the sums of several batches add up (:func:`figures_from_sums`).

    Parameters
    ----------
    forecasts : dict
        Forecaster name -> forecasts ``(n, horizon, targets)`` in original units.
    actual : numpy.ndarray of shape (n, horizon, targets)
    scale : numpy.ndarray of shape (n, targets)
        Each window's MASE scale (its series' in-sample seasonal-naive MAE).

    Returns
    -------
    dict
        Forecaster name -> sums.
    """
    scale = np.asarray(scale, dtype=np.float64)[:, None, :]  # (n, 1, targets)
    n = actual.shape[0]
    sums = {}
    for name, forecast in forecasts.items():
        error = forecast - actual
        absolute = np.abs(error)
        denominator = np.abs(actual) + np.abs(forecast)
        with np.errstate(invalid="ignore", divide="ignore"):
            smape = np.where(denominator > 0, 200.0 * absolute / denominator, 0.0)
            scaled = absolute / scale
        finite = np.isfinite(scaled)
        sums[name] = {"squared": float((error ** 2).sum()), "absolute": float(absolute.sum()),
                      "smape": float(smape.sum()), "count": int(error.size),
                      "absolute_by_step": absolute.sum(axis=(0, 2)), "count_by_step": n * absolute.shape[2],
                      "mase": float(scaled[finite].sum()), "mase_count": int(finite.sum())}
    return sums


def figures_from_sums(results: list[dict], names) -> dict:
    """MSE, MAE, MASE, sMAPE and per-step MAE of each forecaster from the sums of all batches.

    Parameters
    ----------
    results : list of dict
        :func:`error_sums` of each batch.
    names : iterable of str
        The forecasters; one missing from some batch is left out.

    Returns
    -------
    dict
        Forecaster name -> ``mse``, ``mae``, ``mase``, ``smape``, ``mae_by_step``.
    """
    figures = {}
    for name in names:
        found = [result[name] for result in results if name in result]
        if not found or len(found) != len(results):
            continue
        total = {key: sum(item[key] for item in found) for key in found[0]}
        count = max(total["count"], 1)
        figures[name] = {"mse": total["squared"] / count, "mae": total["absolute"] / count,
                         "mase": total["mase"] / total["mase_count"] if total["mase_count"] else float("nan"),
                         "smape": total["smape"] / count,
                         "mae_by_step": [float(value) for value in
                                         np.asarray(total["absolute_by_step"]) / max(total["count_by_step"], 1)]}
    return figures


def seasonal_naive_back(horizon: int, season: int) -> np.ndarray:
    """For each step ``1..horizon`` ahead, how many steps before the origin the seasonal-naive value lies (<= 0).

    The value one season before the target (several seasons when the
    step is beyond one season), as an offset from the origin.

    Parameters
    ----------
    horizon, season : int

    Returns
    -------
    numpy.ndarray of int
    """
    steps = np.arange(1, horizon + 1)
    return steps - season * np.ceil(steps / season).astype(int)


def median_index(quantiles) -> int:
    """The position of the quantile nearest 0.5: a quantile forecast's point forecast.

    Parameters
    ----------
    quantiles : list of float

    Returns
    -------
    int
    """
    return int(np.argmin(np.abs(np.asarray(quantiles, dtype=np.float64) - 0.5)))


def pinball_sums(forecast: np.ndarray, actual: np.ndarray, quantiles) -> dict:
    """The sums behind the mean pinball loss and the coverage of each quantile (original units).

    Parameters
    ----------
    forecast : numpy.ndarray of shape (..., n_quantiles)
    actual : numpy.ndarray of the shape of ``forecast`` without its last axis
    quantiles : list of float

    Returns
    -------
    dict
        ``pinball`` and ``below`` (per quantile: sums of the loss and of
        ``actual <= forecast``), ``count``.
    """
    levels = np.asarray(quantiles, dtype=np.float64)
    error = actual[..., None] - forecast
    loss = np.maximum(levels * error, (levels - 1) * error)
    axes = tuple(range(loss.ndim - 1))
    return {"pinball": loss.sum(axis=axes), "below": (error <= 0).sum(axis=axes).astype(np.float64),
            "count": int(np.prod(actual.shape))}
