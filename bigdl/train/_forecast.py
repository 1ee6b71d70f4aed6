"""Forecasts of a sequence store with their dates: what ``Trainer.predict`` and ``Trainer.forecast`` return.

Each window's forecast is lined up with its series, its origin (the time of
its last input step) and the times of its targets, in the store's original
units (``SequenceView.unscale``), one Dask task per store chunk, read
through the sequence view with its metadata (the same windows the loader
cuts).  The result is a lazy ``xarray.Dataset``: nothing is computed until
asked, and a chunk's forecasts never wait for another chunk's.
"""

from __future__ import annotations

import numpy as np

from bigdl.forecast._metrics import (SEASONS, as_3d, as_times, error_sums, figures_from_sums, infer_season,
                                    median_index, pinball_sums, seasonal_naive_back, target_names, training_scales)

__all__ = ["sequence_forecasts", "future_forecasts", "recursive_forecast", "forecast_metrics", "unscale_outputs",
           "SEASONS", "as_times",
           "infer_season", "training_scales", "error_sums", "figures_from_sums", "seasonal_naive_back"]


def unscale_outputs(view, scaled: np.ndarray, quantiles=None) -> np.ndarray:
    """Model outputs in the targets' original units; a quantile forecast's last axis is the quantiles.

    Parameters
    ----------
    view : SequenceView
    scaled : numpy.ndarray
    quantiles : list of float, optional

    Returns
    -------
    numpy.ndarray of float64
    """
    if not quantiles:
        return view.unscale(scaled)
    return np.moveaxis(view.unscale(np.moveaxis(np.asarray(scaled, dtype=np.float64), -1, 0)), 0, -1)


def _chunk_forecasts(view, predictor, chunk: int, split: str, quantiles=None) -> dict:
    """One chunk's windows: forecasts and actual values (original and scaled units), series, origin, times."""
    X, meta, starts = view.read_chunk(chunk, split)
    inputs, targets, where = view.gather(X, meta, starts)
    target_shape = (len(starts), *view.target_shape, *([len(quantiles)] if quantiles else []))
    if len(starts):
        scaled = np.asarray(predictor(view.to_model(inputs)), dtype=np.float64).reshape(target_shape)
    else:
        scaled = np.zeros(target_shape)
    names = np.asarray(view.attrs.get("series", {}).get("names") or [""], dtype=object)
    return {"forecast": unscale_outputs(view, scaled, quantiles),
            "actual": view.unscale(np.asarray(targets, dtype=np.float64)),
            "forecast_scaled": scaled.astype(np.float32), "series": names[where["series"]],
            "origin": as_times(where["origin"], view.attrs), "time": as_times(where["target_time"], view.attrs)}


def sequence_forecasts(predictor, ds, split: str = "all", quantiles=None):
    """The forecasts of every window of ``split``, lined up with their series and times, lazily.

    Parameters
    ----------
    predictor : callable
        ``predictor(windows) -> outputs`` on NumPy windows (scaled, as the
        model saw them in training); must pickle.
    ds : Dataset
        A sequence store.
    split : {"train", "validation", "test", "all"}, default "all"
    quantiles : list of float, optional
        The model forecasts these quantiles (a last output axis).

    Returns
    -------
    xarray.Dataset
        Dimensions ``window`` and ``step`` (and ``target`` with several
        targets; ``forecast`` has a ``quantile`` dimension last for a
        quantile model); ``forecast`` and ``actual`` in the target's original units,
        ``forecast_scaled`` as the model gave it; coordinates ``series``
        (name), ``origin`` (time of the window's last input step) and
        ``time`` (``(window, step)``: each forecast's target time).  Dask
        arrays, one block per store chunk.
    """
    import dask
    import dask.array as da
    import xarray as xr

    view = ds.view.with_metadata()
    counts = view.chunk_counts(split)
    time_dtype = as_times(np.zeros(0), ds.attrs).dtype
    target_shape = tuple(view.target_shape)
    output_shape = (*target_shape, *([len(quantiles)] if quantiles else []))
    shapes = {"forecast": (output_shape, np.float64), "actual": (target_shape, np.float64),
              "forecast_scaled": (output_shape, np.float32), "series": ((), object), "origin": ((), time_dtype),
              "time": (target_shape[:1], time_dtype)}
    predictor = dask.delayed(predictor, pure=True)
    parts: dict[str, list] = {name: [] for name in shapes}
    for chunk, count in enumerate(counts):
        if not count:
            continue
        result = dask.delayed(_chunk_forecasts, pure=True)(view, predictor, chunk, split, quantiles)
        for name, (tail, dtype) in shapes.items():
            parts[name].append(da.from_delayed(result[name], shape=(int(count), *tail), dtype=dtype))
    arrays = {name: (da.concatenate(pieces) if pieces else da.zeros((0, *shapes[name][0]), dtype=shapes[name][1]))
              for name, pieces in parts.items()}
    dims = ("window", "step", "target")[:1 + len(target_shape)]
    output_dims = (*dims, *(["quantile"] if quantiles else []))
    coords = {"series": ("window", arrays["series"]), "origin": ("window", arrays["origin"]),
              "time": (("window", "step"), arrays["time"]), "step": np.arange(1, target_shape[0] + 1)}
    if len(target_shape) > 1:
        coords["target"] = list(ds.window["targets"])
    if quantiles:
        coords["quantile"] = list(quantiles)
    return xr.Dataset({"forecast": (output_dims, arrays["forecast"]), "actual": (dims, arrays["actual"]),
                       "forecast_scaled": (output_dims, arrays["forecast_scaled"])},
                      coords=coords, attrs={"store": str(ds.path), "split": split,
                                            "units": "forecast and actual: the target's original units"})


# ------------------------------------------------------------------ past the end
def recursive_forecast(predictor, inputs: np.ndarray, horizon: int, model_horizon: int,
                       target_index: list[int], quantiles=None) -> np.ndarray:
    """Forecast ``horizon`` steps from scaled windows, feeding the model's own forecasts back beyond its horizon.

    Each round forecasts ``model_horizon`` steps from the last ``window``
    steps; the forecasts take the place of the target channels of the next
    steps, and the next round starts from there (every channel must be a
    target: the caller checks).

    Parameters
    ----------
    predictor : callable
        ``predictor(windows) -> outputs`` on scaled windows ``(n, window, channels)``.
    inputs : numpy.ndarray of shape (n, window, channels)
    horizon, model_horizon : int
    target_index : list of int
        The channel of each model output.
    quantiles : list of float, optional
        A quantile model's quantiles: the quantile nearest 0.5 is fed back.

    Returns
    -------
    numpy.ndarray of shape (n, horizon, n_targets) or (n, horizon, n_targets, n_quantiles), scaled
    """
    n, window, _ = inputs.shape
    rounds, history = [], np.asarray(inputs, dtype=np.float32)
    done = 0
    shape = (n, model_horizon, len(target_index), len(quantiles) if quantiles else 1)
    while done < horizon:
        outputs = np.asarray(predictor(history[:, -window:]), dtype=np.float32).reshape(shape)
        rounds.append(outputs if quantiles else outputs[..., 0])
        done += model_horizon
        if done < horizon:
            steps = np.zeros((n, model_horizon, history.shape[2]), dtype=np.float32)
            steps[:, :, target_index] = outputs[..., median_index(quantiles) if quantiles else 0]
            history = np.concatenate([history[:, -window:], steps], axis=1)
    return np.concatenate(rounds, axis=1)[:, :horizon]


def _series_forecasts(view, predictor, codes: np.ndarray, horizon: int, quantiles=None, known=None) -> dict:
    """One group of series: the forecast from each one's last window, with its future times."""
    inputs, last, usable = view.last_windows(codes)
    names = np.asarray(view.attrs.get("series", {}).get("names") or [""], dtype=object)
    if not usable.all():
        from bigdl.errors import SchemaError

        window = view.windows["window"]
        short = [str(names[code]) or "the series" for code in codes[~usable]][:5]
        raise SchemaError(f"Trainer.forecast needs the last {window} steps of each series without a gap, but "
                          f"{short} (of {int((~usable).sum())} such series) end with fewer; leave them out "
                          "with series=[...].")
    model_horizon, targets = int(view.windows["horizon"]), list(view.windows["target_index"])
    times = np.stack([view.future_times(value, horizon) for value in last]) if len(codes) else np.zeros((0, horizon))
    if view.decoder:  # the future's known channels and calendar in the decoder part (horizon <= the model's)
        full = np.stack([view.future_times(value, model_horizon) for value in last]) if len(codes) else np.zeros(
            (0, model_horizon), dtype=np.int64)
        inputs = view.future_window(inputs, full, known)
    scaled = recursive_forecast(predictor, inputs, horizon, model_horizon, targets, quantiles)
    shape = (len(codes), horizon) if len(targets) == 1 else (len(codes), horizon, len(targets))
    scaled = scaled.reshape((*shape, *([len(quantiles)] if quantiles else [])))
    return {"forecast": unscale_outputs(view, scaled.astype(np.float64), quantiles), "forecast_scaled": scaled,
            "series": names[codes], "origin": as_times(last, view.attrs), "time": as_times(times, view.attrs)}


def future_forecasts(predictor, ds, horizon: int, codes: np.ndarray, series_per_task: int = 256, quantiles=None,
                     known: dict | None = None):
    """Forecasts past the end of each series in ``codes``, from its last window, lazily.

    Parameters
    ----------
    predictor : callable
        ``predictor(windows) -> outputs`` on scaled NumPy windows; must pickle.
    ds : Dataset
        A sequence store.
    horizon : int
        Steps to forecast (beyond the model's horizon: recursively, see
        :func:`recursive_forecast`).
    codes : numpy.ndarray of int
        The series (codes, in store order).
    series_per_task : int, default 256
        Neighbouring series read and forecast by one Dask task.
    quantiles : list of float, optional
        The model forecasts these quantiles (a last output axis).
    known : dict, optional
        Known-future channels' values ``(len(codes), model horizon)`` in
        original units, for a store whose windows have a decoder part.

    Returns
    -------
    xarray.Dataset
        The layout of :func:`sequence_forecasts` without ``actual``: one
        ``window`` per series (its last ``window`` steps), ``origin`` its
        last observed time, ``time`` the ``horizon`` grid times after it.
    """
    import dask
    import dask.array as da
    import xarray as xr

    view = ds.view
    time_dtype = as_times(np.zeros(0), ds.attrs).dtype
    n_targets = len(view.windows["target_index"])
    tail = (horizon,) if n_targets == 1 else (horizon, n_targets)
    dims = ("window", "step", "target")[:1 + len(tail)] + (("quantile",) if quantiles else ())
    tail = (*tail, *([len(quantiles)] if quantiles else []))
    shapes = {"forecast": (tail, np.float64), "forecast_scaled": (tail, np.float32), "series": ((), object),
              "origin": ((), time_dtype), "time": ((horizon,), time_dtype)}
    predictor = dask.delayed(predictor, pure=True)
    parts: dict[str, list] = {name: [] for name in shapes}
    codes = np.asarray(codes, dtype=np.int64)
    for start in range(0, len(codes), series_per_task):
        group = codes[start:start + series_per_task]
        part = None if not known else {name: values[start:start + series_per_task] for name, values in known.items()}
        result = dask.delayed(_series_forecasts, pure=True)(view, predictor, group, horizon, quantiles, part)
        for name, (shape, dtype) in shapes.items():
            parts[name].append(da.from_delayed(result[name], shape=(len(group), *shape), dtype=dtype))
    arrays = {name: da.concatenate(pieces) for name, pieces in parts.items()}
    coords = {"series": ("window", arrays["series"]), "origin": ("window", arrays["origin"]),
              "time": (("window", "step"), arrays["time"]), "step": np.arange(1, horizon + 1)}
    if n_targets > 1:
        coords["target"] = list(ds.window["targets"])
    if quantiles:
        coords["quantile"] = list(quantiles)
    return xr.Dataset({name: (dims, arrays[name]) for name in ("forecast", "forecast_scaled")}, coords=coords,
                      attrs={"store": str(ds.path), "split": "future", "units": "forecast: the target's original "
                             "units", "recursive": bool(horizon > view.windows["horizon"])})


def _chunk_metric_sums(view, predictor, chunk: int, split: str, season: int, scales: np.ndarray,
                       quantiles=None) -> dict:
    """One chunk's error sums for the model and the naive and seasonal-naive baselines, in original units."""
    X, meta, starts = view.read_chunk(chunk, split)
    inputs, targets, where = view.gather(X, meta, starts)
    n, window, horizon = len(starts), view.windows["window"], view.windows["horizon"]
    actual = as_3d(view.unscale(np.asarray(targets, dtype=np.float64)).reshape((n, *view.target_shape)))
    history = as_3d(view.unscale(inputs[:, :window, view.windows["target_index"]].astype(np.float64),
                                  target_names(view)).reshape(n, window, -1))
    forecasts = {}
    probabilistic = None
    if n:
        shape = (n, *view.target_shape, *([len(quantiles)] if quantiles else []))
        outputs = unscale_outputs(view, np.asarray(predictor(view.to_model(inputs)), dtype=np.float64).reshape(shape),
                                  quantiles)
        if quantiles:
            probabilistic = pinball_sums(outputs, actual.reshape(outputs.shape[:-1]), quantiles)
            outputs = outputs[..., median_index(quantiles)]
        forecasts["model"] = as_3d(outputs)
    else:
        forecasts["model"] = np.zeros_like(actual)
    forecasts["naive"] = np.repeat(history[:, -1:, :], horizon, axis=1)
    back = window - 1 + seasonal_naive_back(horizon, season)  # one season before each target
    if (back >= 0).all():
        forecasts["seasonal_naive"] = history[:, back, :]
    sums = error_sums(forecasts, actual, scales[where["series"]])
    if quantiles:
        sums["quantiles"] = probabilistic or {"pinball": np.zeros(len(quantiles)), "below": np.zeros(len(quantiles)),
                                              "count": 0}
    return sums


def forecast_metrics(predictor, ds, split: str, season: int | None = None, quantiles=None) -> dict:
    """MSE, MAE, MASE, sMAPE and per-step MAE in original units, beside the naive and seasonal-naive baselines.

    Parameters
    ----------
    predictor : callable
        ``predictor(windows) -> outputs`` on scaled NumPy windows.
    ds : Dataset
        A sequence store.
    split : str
    season : int, optional
        Steps per season for the seasonal-naive forecast and MASE's scale
        (default :func:`infer_season` of the store's grid).
    quantiles : list of float, optional
        The model forecasts these quantiles (a last output axis): its point
        figures are those of the quantile nearest 0.5, and ``quantiles``
        reports, per quantile, the mean ``pinball`` loss (original units)
        and the ``coverage`` (the fraction of actual values at or below
        it: near the quantile itself when it is calibrated).

    Returns
    -------
    dict
        ``mse``, ``mae``, ``mase``, ``smape`` (percent, 0-200),
        ``mae_by_step`` (list, one per horizon step), ``season``,
        ``baselines`` (``naive`` and, when the window reaches one season
        back, ``seasonal_naive``: the same figures) and ``skill``
        (``1 - mase / mase of seasonal naive``; NaN without it).  MASE
        divides each absolute error by its series' in-sample
        seasonal-naive MAE over the training part
        (:func:`training_scales`); series whose scale is 0 or undefined are
        left out of it (``mase_series_left_out`` counts them).
    """
    import dask

    season = int(season) if season is not None else infer_season(ds.attrs)
    scales = training_scales(ds, season)
    view = ds.view.with_metadata()
    parts = [dask.delayed(_chunk_metric_sums, pure=True)(view, predictor, chunk, split, season, scales, quantiles)
             for chunk, count in enumerate(view.chunk_counts(split)) if count]
    results = dask.compute(*parts)
    figures = figures_from_sums(results, ("model", "naive", "seasonal_naive"))
    result = dict(figures["model"])
    result["season"] = season
    result["baselines"] = {name: figures[name] for name in ("naive", "seasonal_naive") if name in figures}
    reference = figures.get("seasonal_naive", {}).get("mase")
    result["skill"] = 1.0 - result["mase"] / reference if reference else float("nan")
    result["mase_series_left_out"] = int(np.isnan(scales).any(axis=1).sum())
    if quantiles:
        count = max(sum(part["quantiles"]["count"] for part in results), 1)
        pinball = sum(part["quantiles"]["pinball"] for part in results) / count
        below = sum(part["quantiles"]["below"] for part in results) / count
        result["quantiles"] = {float(level): {"pinball": float(loss), "coverage": float(share)}
                               for level, loss, share in zip(quantiles, pinball, below)}
    return result
