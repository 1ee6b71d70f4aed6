"""Statistical baselines of a sequence store, per series on the cluster, at the origins the network is scored at.

Naive (the last value), seasonal naive (the value one season before the
target), ETS and ARIMA forecast every window of a split, the windows
``Trainer.predict`` and ``Trainer.evaluate`` cut (one rule:
``SequenceView.starts_between``), so a network's figures and theirs are on
the same targets.  One Dask task per group of neighbouring series reads
those series' rows only (series are stored one after another), fits each
one's models on its training part and forecasts from every origin; the
panel is never loaded whole.  The figures come from the same code as
``Trainer.evaluate``'s (:mod:`bigdl.forecast._metrics`), scaled by the same
per-series in-sample seasonal-naive MAE.

ETS and ARIMA are statsmodels' state-space models
(``statsmodels.tsa.statespace.exponential_smoothing.ExponentialSmoothing``,
``statsmodels.tsa.arima.model.ARIMA``).  statsmodels rather than
statsforecast: it is already a dependency of bigdl, it needs no numba
compilation on every worker, and its state-space results can re-run the
fitted model over new observations without refitting, which is what a
forecast "re-run at each origin" is here: the parameters are fitted once on
the training part; at each origin the Kalman filter has seen the
observations up to that origin (and none after it), and the forecast is
the model's ``horizon``-step prediction from there.  The same as
``results.apply(y[:origin + 1]).forecast(horizon)`` (a test checks it),
in one filter pass per series instead of one per origin.
"""

from __future__ import annotations

import warnings

import numpy as np

from bigdl._validation import Interval, Options, Predicate, check_params
from bigdl.errors import EmptyResultError, ParameterError, SchemaError
from bigdl.forecast._metrics import (as_3d, as_times, error_sums, figures_from_sums, infer_season,
                                     seasonal_naive_back, target_names, training_scales)

__all__ = ["baselines", "MODELS"]

MODELS = ("naive", "seasonal_naive", "ets", "arima")


def _is_model_list(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(item in MODELS for item in value)


CONSTRAINTS = {
    "models": [Predicate(_is_model_list, f"a non-empty list of names among {list(MODELS)}")],
    "season": [Interval(int, 1, None), None],
    "split": [Options(("train", "validation", "test", "all"))],
    "series_per_task": [Interval(int, 1, None)],
    "ets": [dict, None],
    "arima": [dict, None],
}


def baselines(ds, models=MODELS, *, season: int | None = None, split: str = "test", ets: dict | None = None,
              arima: dict | None = None, series_per_task: int = 16, client=None) -> dict:
    """Naive, seasonal-naive, ETS and ARIMA forecasts of every window of ``split``, and their figures.

    Each series' models are fitted on its **training part** (the store's
    ``train`` split of that series); at every window origin of ``split``
    the fitted model forecasts the window's horizon from the observations
    up to the origin, with the parameters fitted on the training part (the
    state is updated with each new observation; the parameters are not
    refitted).  The windows are those of ``Trainer.predict(ds, split=...)``,
    in the same order, so ``result["forecasts"]["forecast"].sel(model="arima")``
    lines up with the network's ``forecast`` window for window.

    Parameters
    ----------
    ds : Dataset or str
        A sequence store.
    models : list of {"naive", "seasonal_naive", "ets", "arima"}, default all four
    season : int, optional
        Steps per season (default from the grid, as in ``Trainer.evaluate``:
        12 for months, 4 quarters, 52 weeks, 7 days, 24 hours, else 1).
    split : {"test", "validation", "train", "all"}, default "test"
    ets : dict, optional
        Options of statsmodels' state-space ``ExponentialSmoothing``;
        default ``{"trend": True, "damped_trend": True, "seasonal": season}``
        (no seasonal part when ``season`` is 1).  Additive components (the
        state-space form has no multiplicative ones).  The initial states
        are estimated with the parameters (statsmodels' default); do not
        pass ``initialization_method="concentrated"``: it recomputes the
        initial states from the data the model is run over, which here is
        the whole series, so the forecasts would see the test period (it is
        refused).
    arima : dict, optional
        Options of statsmodels' ``ARIMA``; default ``{"order": (1, 1, 1),
        "seasonal_order": (0, 1, 1, season)}`` (the "airline" model;
        ``(0, 0, 0, 0)`` when ``season`` is 1).  No order search: give the
        orders that suit the data.
    series_per_task : int, default 16
        Neighbouring series fitted by one Dask task.
    client : distributed.Client, optional
        Default: the current client, else Dask's threads in this process.

    Returns
    -------
    dict
        ``forecasts``: an ``xarray.Dataset`` in memory, ``forecast``
        ``(model, window, step[, target])`` and ``actual`` in original
        units, coordinates ``model``, ``series``, ``origin``, ``time`` (as
        ``Trainer.predict``'s); ``metrics``: per model ``mse``, ``mae``,
        ``mase``, ``smape``, ``mae_by_step`` and ``skill`` (``1 - mase /
        mase of seasonal naive``), from the same code and MASE scales as
        ``Trainer.evaluate``; ``season``; ``convergence_warnings`` (fits
        statsmodels warned about, per model).

    Raises
    ------
    ParameterError
        A parameter out of its range or not among its options.
    SchemaError
        Not a sequence store; a series' training part too short for a
        model (named, with statsmodels' message).
    EmptyResultError
        ``split`` has no window.

    Notes
    -----
    .. warning:: One series (all its steps) is held by a task at a time,
       and the forecasts of every window come back to the caller
       (``models x windows x horizon`` floats).

    Examples
    --------
    >>> result = bigdl.forecast.baselines(ds, season=12)                          # doctest: +SKIP
    >>> result["metrics"]["arima"]["mase"], trainer.evaluate(ds)["mase"]           # doctest: +SKIP
    """
    import dask
    import xarray as xr

    from bigdl.store._dataset import Dataset, open_store

    ds = ds if isinstance(ds, Dataset) else open_store(ds)
    models = list(models)
    check_params("baselines", {"models": models, "season": season, "split": split, "ets": ets, "arima": arima,
                               "series_per_task": series_per_task}, CONSTRAINTS)
    if ds.kind != "sequence":
        raise SchemaError(f"bigdl.forecast.baselines forecasts sequence stores; {str(ds.path)!r} is a {ds.kind} "
                          "store.")
    view = ds.view
    if not view.chunk_counts(split).sum():
        message = f"bigdl.forecast.baselines has no window to forecast in {str(ds.path)!r}: {view.why_empty(split)}."
        raise EmptyResultError(message, public=message)
    season = int(season) if season is not None else infer_season(ds.attrs)
    options = {"ets": _ets_options(ets, season), "arima": _arima_options(arima, season)}
    if options["ets"].get("initialization_method", "estimated") != "estimated":
        raise ParameterError(f"The 'ets' parameter of baselines sets initialization_method="
                             f"{options['ets']['initialization_method']!r}; only 'estimated' keeps the initial "
                             "states fitted on the training part (the others are recomputed from the series the "
                             "model is run over, test period included). Leave it out.")
    scales = training_scales(ds, season)
    codes = np.arange(len(ds.attrs.get("series", {}).get("names") or [""]))
    tasks = [dask.delayed(_group_baselines, pure=True)(view, codes[start:start + series_per_task], models, season,
                                                       split, options, scales)
             for start in range(0, len(codes), series_per_task)]
    if client is not None:
        results = client.compute(tasks, sync=True)
    else:
        results = dask.compute(*tasks)
    results = [result for result in results if result["n"]]
    forecasts = {name: np.concatenate([result["forecasts"][name] for result in results]) for name in models}
    actual = np.concatenate([result["actual"] for result in results])
    figures = figures_from_sums([result["sums"] for result in results], models)
    reference = figures.get("seasonal_naive", {}).get("mase")
    if reference is None:  # computed for the skill even when not asked for
        reference = figures_from_sums([result["reference"] for result in results], ["seasonal_naive"]).get(
            "seasonal_naive", {}).get("mase")
    for name in figures:
        figures[name]["skill"] = 1.0 - figures[name]["mase"] / reference if reference else float("nan")
    n_targets = actual.shape[2]
    squeeze = (lambda values: values[..., 0]) if n_targets == 1 else (lambda values: values)
    dims = ("window", "step", "target")[:2 + (n_targets > 1)]
    coords = {"model": models, "series": ("window", np.concatenate([result["series"] for result in results])),
              "origin": ("window", as_times(np.concatenate([result["origin"] for result in results]), ds.attrs)),
              "time": (("window", "step"), as_times(np.concatenate([result["time"] for result in results]),
                                                    ds.attrs)),
              "step": np.arange(1, actual.shape[1] + 1)}
    if n_targets > 1:
        coords["target"] = list(ds.window["targets"])
    table = xr.Dataset({"forecast": (("model", *dims), np.stack([squeeze(forecasts[name]) for name in models])),
                        "actual": (dims, squeeze(actual))}, coords=coords,
                       attrs={"store": str(ds.path), "split": split, "season": season,
                              "units": "forecast and actual: the target's original units"})
    warned = {name: sum(result["warnings"].get(name, 0) for result in results) for name in ("ets", "arima")
              if name in models}
    return {"forecasts": table, "metrics": figures, "season": season, "convergence_warnings": warned}


def _ets_options(ets: dict | None, season: int) -> dict:
    options = {"trend": True, "damped_trend": True, "seasonal": season if season > 1 else None}
    options.update(ets or {})
    return options


def _arima_options(arima: dict | None, season: int) -> dict:
    options = {"order": (1, 1, 1), "seasonal_order": (0, 1, 1, season) if season > 1 else (0, 0, 0, 0)}
    options.update(arima or {})
    return options


def fitted_model(name: str, train: np.ndarray, options: dict):
    """A statsmodels state-space model of ``name`` fitted on ``train``, with the warnings it gave.

    Parameters
    ----------
    name : {"ets", "arima"}
    train : numpy.ndarray of float64
        The training part of one series (one target channel).
    options : dict
        The model's options (see :func:`baselines`).

    Returns
    -------
    (statsmodels results, int)
        The fitted results and how many convergence warnings the fit gave.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # "no frequency information": the values are plain arrays
        if name == "ets":
            from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

            results = ExponentialSmoothing(train, **options).fit(disp=False)
        else:
            from statsmodels.tsa.arima.model import ARIMA

            results = ARIMA(train, **options).fit()
    return results, sum(issubclass(item.category, ConvergenceWarning) for item in caught)


def _group_baselines(view, codes: np.ndarray, models: list[str], season: int, split: str, options: dict,
                     scales: np.ndarray) -> dict:
    """One task: the baselines of a group of neighbouring series, at every window origin of ``split``."""
    window, horizon = int(view.windows["window"]), int(view.windows["horizon"])
    bounds = view.series_rows()[codes]
    low, high = int(bounds[:, 0].min()), int(bounds[:, 1].max())
    targets = view.windows["target_index"]
    values_all = view.unscale(view.read("X", slice(low, high))[:, targets].astype(np.float64), target_names(view))
    values_all = values_all.reshape(high - low, -1)
    times_all, split_all = view.read("time", slice(low, high)), view.read("split", slice(low, high))
    names = np.asarray(view.attrs.get("series", {}).get("names") or [""], dtype=object)
    back = seasonal_naive_back(horizon, season)
    out = {"forecasts": {name: [] for name in models}, "actual": [], "series": [], "origin": [], "time": [],
           "reference": [], "warnings": {}}
    sums = []
    for code, (start, end) in zip(codes, bounds):
        _, starts = view.starts_between(int(start), int(end), split)
        if not len(starts):
            continue
        values = values_all[start - low:end - low]
        origins = starts + window - 1  # within the series
        steps = origins[:, None] + np.arange(1, horizon + 1)[None, :]
        actual = values[steps]  # (n, horizon, targets)
        predicted = {}
        if "naive" in models:
            predicted["naive"] = np.repeat(values[origins][:, None, :], horizon, axis=1)
        seasonal = origins[:, None] + back[None, :]
        seasonal_naive = values[np.maximum(seasonal, 0)]
        seasonal_naive[seasonal < 0] = np.nan
        if "seasonal_naive" in models:
            predicted["seasonal_naive"] = seasonal_naive
        train = values[split_all[start - low:end - low] == 0]
        for name in ("ets", "arima"):
            if name in models:
                predicted[name] = _model_forecasts(name, train, values, origins, horizon, options[name],
                                                   str(names[code]), out["warnings"])
        scale = np.repeat(scales[code][None, :], len(origins), axis=0)
        sums.append(error_sums(predicted, actual, scale))
        out["reference"].append(error_sums({"seasonal_naive": seasonal_naive}, actual, scale))
        for name in models:
            out["forecasts"][name].append(predicted[name])
        out["actual"].append(actual)
        out["series"].append(np.repeat(names[code], len(origins)))
        times = times_all[start - low:end - low]
        out["origin"].append(times[origins])
        out["time"].append(times[steps])
    n = sum(len(part) for part in out["actual"])
    if not n:
        return {"n": 0}
    out["sums"] = {name: _add_sums([part[name] for part in sums]) for name in models}
    out["reference"] = {"seasonal_naive": _add_sums([part["seasonal_naive"] for part in out["reference"]])}
    out["forecasts"] = {name: np.concatenate(parts) for name, parts in out["forecasts"].items()}
    for key in ("actual", "series", "origin", "time"):
        out[key] = np.concatenate(out[key])
    out["n"] = n
    return out


def _add_sums(parts: list[dict]) -> dict:
    return {key: sum(part[key] for part in parts) for key in parts[0]}


def _model_forecasts(name: str, train: np.ndarray, values: np.ndarray, origins: np.ndarray, horizon: int,
                     options: dict, series: str, warned: dict) -> np.ndarray:
    """ETS or ARIMA fitted on ``train`` (per target channel), forecasting ``horizon`` steps from each origin."""
    result = np.empty((len(origins), horizon, values.shape[1]))
    for channel in range(values.shape[1]):
        try:
            fitted, count = fitted_model(name, train[:, channel], options)
        except (ValueError, np.linalg.LinAlgError) as error:
            raise SchemaError(f"bigdl.forecast.baselines: {name} {options} cannot be fitted on the training part "
                              f"of series {series or 'the series'!r} ({len(train)} steps): {error}. Give other "
                              f"options ({name}={{...}}), a smaller season, or leave {name!r} out of "
                              "models=.") from None
        warned[name] = warned.get(name, 0) + count
        # The fitted parameters, run over the whole series: the state at each origin has seen nothing after it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            everything = fitted.apply(values[:, channel])
            for row, origin in enumerate(origins):
                result[row, :, channel] = everything.predict(start=int(origin) + 1, end=int(origin) + horizon,
                                                             dynamic=True)
    return result
