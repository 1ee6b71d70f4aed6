"""The regular time grid of a sequence store: a fixed step, or a calendar frequency (pandas offset alias).

A grid is either a fixed step (an int of nanoseconds for dates, a float for
numeric times; grid points ``origin + k * step``) or a calendar frequency,
kept as its pandas alias (``"MS"``, ``"QS-JAN"``, ``"YE-DEC"``, ``"W-MON"``,
``"B"``...), whose points are those of ``pandas.date_range(origin, ...,
freq=alias)``: month starts are not a fixed number of nanoseconds apart.
Ingest puts rows on the grid with these functions; the store kind uses them
to give forecasts their future timestamps, so both agree on what "the next
step" is.  Times are nanoseconds since 1970 UTC (naive), so a ``"D"`` day is
always 24 hours.
"""

from __future__ import annotations

import datetime
import math
import re

import numpy as np
import pandas as pd

__all__ = ["parse_frequency", "is_calendar", "grid_points", "grid_index", "grid_bound", "grid_times", "consecutive",
           "step_text", "future_times", "nominal_step_ns", "infer_step", "estimate_steps"]

DAY_NS = 86_400 * 10**9
# Aliases pandas 2.2 deprecated and pandas 3 refuses: the period-end spellings mean the same thing.
_OLD_ALIASES = {"M": "ME", "Q": "QE", "Y": "YE", "A": "YE", "BM": "BME", "BQ": "BQE", "BA": "BYE", "BY": "BYE",
                "SM": "SME", "CBM": "CBME"}


def _modern_alias(text: str) -> str:
    """``"M"`` -> ``"ME"``, ``"2Q-DEC"`` -> ``"2QE-DEC"``: the old period-end aliases pandas 3 no longer reads."""
    match = re.fullmatch(r"\s*(\d*)\s*([A-Za-z]+)(-[A-Za-z]{3})?\s*", text)
    if not match:
        return text
    count, name, anchor = match.groups()
    name = _OLD_ALIASES.get(name, name)
    return f"{count}{name}{anchor or ''}"


def parse_frequency(frequency, *, owner: str = "sequences", parameter: str = "frequency"):
    """A ``frequency=`` for a date/time column as a grid step: int nanoseconds (fixed) or a calendar alias.

    Parameters
    ----------
    frequency : str, pandas offset, pandas.Timedelta or datetime.timedelta
        A pandas offset alias (``"MS"``, ``"M"``/``"ME"``, ``"QS"``, ``"Q"``,
        ``"YS"``, ``"W-MON"``, ``"B"``, ``"7D"``, ``"1h"``, ``"1ms"``...) or a
        fixed time delta (``"7 days"``).  Case matters as in pandas:
        ``"MS"`` is month start, ``"ms"`` a millisecond.
    owner, parameter : str
        Named in the error.

    Returns
    -------
    int or str
        Nanoseconds for a fixed step (ticks such as ``"h"`` and days
        ``"D"``), else the calendar alias (``offset.freqstr``).

    Raises
    ------
    ParameterError
        Neither an offset alias nor a positive time delta.
    """
    from bigdl._validation import parameter_error

    allowed = ("a pandas offset alias such as 'MS', 'ME', 'QS', 'QE', 'YS', 'W-MON', 'B', '7D' or '1h', or a "
               "positive fixed time delta, for a date/time column")
    offset = None
    if isinstance(frequency, pd.offsets.BaseOffset):
        offset = frequency
    elif isinstance(frequency, (pd.Timedelta, datetime.timedelta, np.timedelta64)):
        step = pd.Timedelta(frequency).value
        if step > 0:
            return int(step)
        raise parameter_error(owner, parameter, frequency, allowed)
    elif isinstance(frequency, str):
        try:
            offset = pd.tseries.frequencies.to_offset(_modern_alias(frequency))
        except (ValueError, TypeError):
            try:
                step = pd.Timedelta(frequency).value
            except (ValueError, TypeError):
                raise parameter_error(owner, parameter, frequency, allowed) from None
            if step > 0:
                return int(step)
            raise parameter_error(owner, parameter, frequency, allowed) from None
    else:
        raise parameter_error(owner, parameter, frequency, allowed)
    if offset.n <= 0:
        raise parameter_error(owner, parameter, frequency, allowed)
    if isinstance(offset, pd.offsets.Tick):
        return int(offset.nanos)
    if isinstance(offset, pd.offsets.Day):  # naive UTC times: a day is 24 hours
        return int(offset.n) * DAY_NS
    return offset.freqstr


def is_calendar(step) -> bool:
    """Whether ``step`` is a calendar frequency (an alias) rather than a fixed step.

    Parameters
    ----------
    step : int, float or str

    Returns
    -------
    bool
    """
    return isinstance(step, str)


def _offset(step: str):
    return pd.tseries.frequencies.to_offset(step)


def grid_points(origin, end, step) -> np.ndarray:
    """The grid points from ``origin`` (rolled forward onto the calendar) to ``end`` inclusive, as int64 ns.

    Parameters
    ----------
    origin, end : int
        Nanoseconds.
    step : str
        A calendar alias.

    Returns
    -------
    numpy.ndarray of int64
    """
    if int(end) < int(origin):
        return np.empty(0, dtype=np.int64)
    points = pd.date_range(pd.Timestamp(int(origin)), pd.Timestamp(int(end)), freq=step)
    return np.asarray(points.asi8, dtype=np.int64)


def grid_index(times: np.ndarray, origin, step):
    """Grid index of each time and whether it lies on the grid of ``origin`` and ``step``.

    Parameters
    ----------
    times : numpy.ndarray
    origin : int or float
        The series' first time.
    step : int, float or str

    Returns
    -------
    (numpy.ndarray of int64, numpy.ndarray of bool)
    """
    if is_calendar(step):
        times = np.asarray(times, dtype=np.int64)
        if not len(times):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        points = grid_points(origin, times.max(), step)
        index = np.searchsorted(points, times, side="left")
        on_grid = index < len(points)
        on_grid[on_grid] = points[index[on_grid]] == times[on_grid]
        return index.astype(np.int64), on_grid
    if isinstance(step, (int, np.integer)):
        offset = np.asarray(times).astype(np.int64) - np.int64(origin)
        return offset // step, offset % step == 0
    position = (times - origin) / step
    nearest = np.round(position)
    return nearest.astype(np.int64), np.abs(position - nearest) < 1e-6


def grid_bound(value, origin, step, rounding) -> int:
    """``rounding((value - origin) / step)``: the grid index at or before (floor) or after (ceil) ``value``.

    Parameters
    ----------
    value, origin : int or float
    step : int, float or str
    rounding : numpy.floor or numpy.ceil

    Returns
    -------
    int
    """
    if is_calendar(step):
        points = grid_points(origin, value, step)
        if rounding is np.floor:
            return len(points) - 1
        return len(points) - 1 if len(points) and points[-1] == int(value) else len(points)
    if isinstance(step, (int, np.integer)):
        offset = int(value) - int(origin)
        return offset // int(step) if rounding is np.floor else -((-offset) // int(step))
    position = (value - origin) / step
    nearest = round(position)
    return int(nearest) if abs(position - nearest) < 1e-6 else int(rounding(position))


def grid_times(origin, index: np.ndarray, step) -> np.ndarray:
    """The times of grid indices ``index`` (consecutive, from ``index[0]``).

    Parameters
    ----------
    origin : int or float
    index : numpy.ndarray of int64
    step : int, float or str

    Returns
    -------
    numpy.ndarray
    """
    if is_calendar(step):
        if not len(index):
            return np.empty(0, dtype=np.int64)
        start = pd.Timestamp(int(origin))
        points = pd.date_range(start, periods=int(index[-1]) + 1, freq=step).asi8
        return np.asarray(points, dtype=np.int64)[index]
    if isinstance(step, (int, np.integer)):
        return np.int64(origin) + index * np.int64(step)
    return origin + index.astype(np.float64) * step


def consecutive(earlier, later, step) -> bool:
    """Whether ``later`` is the grid step right after ``earlier``.

    Parameters
    ----------
    earlier, later : int or float
    step : int, float or str

    Returns
    -------
    bool
    """
    if is_calendar(step):
        return int(later) == future_times(earlier, step, 1)[0]
    if isinstance(step, (int, np.integer)):
        return int(later) - int(earlier) == int(step)
    return abs((later - earlier) - step) < 1e-6 * step


def future_times(last, step, count: int) -> np.ndarray:
    """The ``count`` grid times after ``last``.

    Parameters
    ----------
    last : int or float
        A time on the grid (ns for dates).
    step : int, float or str
    count : int

    Returns
    -------
    numpy.ndarray (int64 ns for dates, float64 for numbers)
    """
    if is_calendar(step):
        points = pd.date_range(pd.Timestamp(int(last)), periods=count + 1, freq=step).asi8
        return np.asarray(points[1:] if points[0] == int(last) else points[:count], dtype=np.int64)
    if isinstance(step, (int, np.integer)):
        return np.int64(last) + np.arange(1, count + 1, dtype=np.int64) * np.int64(step)
    return float(last) + np.arange(1, count + 1, dtype=np.float64) * float(step)


def step_text(step, time_kind: str = "datetime") -> str:
    """A step for messages: ``"31 days 00:00:00"``, ``"MS"``, ``"0.5"``.

    Parameters
    ----------
    step : int, float or str
    time_kind : {"datetime", "number"}

    Returns
    -------
    str
    """
    if is_calendar(step):
        return repr(step)
    return str(pd.Timedelta(int(step))) if time_kind == "datetime" else f"{step:g}"


def nominal_step_ns(step) -> float:
    """A step's typical length in nanoseconds (a calendar month: its average), for counting steps.

    Parameters
    ----------
    step : int or str

    Returns
    -------
    float
    """
    if not is_calendar(step):
        return float(step)
    reference = pd.Timestamp("2000-01-01")
    # 40 steps from a fixed date: exact enough for counts, and never 0.
    later = pd.date_range(reference, periods=41, freq=step)
    return float(later[-1].value - later[0].value) / 40.0


def estimate_steps(low, high, step) -> tuple[float, bool]:
    """How many grid points lie in ``[low, high]``, without building more than a million of them.

    Parameters
    ----------
    low, high : int or float
    step : int, float or str

    Returns
    -------
    (float, bool)
        The count and whether it is exact (fixed steps, and calendar grids of
        up to a million points; beyond, from the step's typical length).
    """
    if not is_calendar(step):
        if isinstance(step, (int, np.integer)):
            return float((int(high) - int(low)) // int(step) + 1), True
        return math.floor((high - low) / step + 1e-6) + 1.0, True
    estimate = float(high - low) / nominal_step_ns(step) + 1.0
    if estimate > 1e6:
        return estimate, False
    return float(len(grid_points(low, high, step))), True


_CALENDAR_CANDIDATES = [  # (days between points: low, high), aliases to try in order
    ((360, 367), [f"YS-{month}" for month in ("JAN", "APR", "JUL", "OCT")] + [f"YE-{month}" for month in
                                                                              ("DEC", "MAR", "JUN", "SEP")]),
    ((88, 93), [f"QS-{month}" for month in ("JAN", "FEB", "MAR")] + [f"QE-{month}" for month in
                                                                     ("DEC", "JAN", "FEB")]),
    ((27, 32), ["MS", "ME", "BMS", "BME"]),
    ((1, 1), ["B"]),
]


def _all_on_offset(offset, sample: pd.DatetimeIndex) -> bool:
    return all(offset.is_on_offset(time) for time in sample[:2000])


def infer_step(common_steps: dict, sample_times: np.ndarray, inferred: dict | None = None, *,
               time_kind: str = "datetime"):
    """The grid step the data suggest: a calendar alias when the sampled times sit on one, else the common step.

    Parameters
    ----------
    common_steps : dict
        The most common differences between consecutive times of a series (value -> count).
    sample_times : numpy.ndarray
        A sample of the times (any order).
    inferred : dict, optional
        ``pandas.infer_freq`` results on stretches of consecutive times (alias -> count).
    time_kind : {"datetime", "number"}

    Returns
    -------
    int, float, str or None
        None when no series has two distinct times.
    """
    if not common_steps:
        return None
    from collections import Counter

    mode = Counter(common_steps).most_common(1)[0][0]
    if time_kind != "datetime":
        return float(mode)
    sample = pd.DatetimeIndex(np.asarray(sample_times, dtype=np.int64).view("datetime64[ns]"))
    # pandas' own answer on stretches of consecutive times, when it found one and every sampled time fits it.
    for alias, _ in sorted((inferred or {}).items(), key=lambda item: -item[1]):
        try:
            step = parse_frequency(alias)
        except ValueError:
            continue
        if is_calendar(step) and len(sample) and _all_on_offset(_offset(step), sample):
            return step
        break
    days = mode / DAY_NS
    for (low, high), aliases in _CALENDAR_CANDIDATES:
        if low <= days <= high and len(sample):
            for alias in aliases:
                offset = _offset(alias)
                if _all_on_offset(offset, sample):
                    if alias == "B" and not (sample.dayofweek < 5).all():
                        continue
                    if alias == "B" and len(sample) < 20:  # too few days to tell weekends from gaps
                        continue
                    return offset.freqstr
    return int(mode)
