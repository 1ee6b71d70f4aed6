"""Dates and times as numbers: reading them as UTC, and the parts tabular features are made of.

One reading of a date/time column serves ingest (which validates it and
quarantines cells that are not dates) and :meth:`TabularPreprocessor.transform
<bigdl.preprocessing.TabularPreprocessor.transform>` (which encodes new raw
data the same way): text (ISO 8601 and the formats pandas infers), Arrow and
Parquet ``timestamp`` / ``date32`` / ``date64`` values with or without a time
zone, and numbers since the Unix epoch in a stated unit.  Times with a time
zone are converted to UTC; times without one are taken as UTC, as written.
Every time becomes a naive UTC ``datetime64[us]``, between 0001-01-01 and
9999-12-31 (what Python's ``datetime`` holds); :func:`time_parts` turns times
into the numeric parts (year, month, ..., seconds since the epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["DATETIME_PARTS", "DEFAULT_DATETIME_PARTS", "EPOCH_UNITS", "TIME_RANGE", "ParsedTimes", "parse_times",
           "to_utc_times", "time_parts", "part_feature_name"]

# The parts a date/time column can be encoded as, each one numeric feature "{column}__{part}".
DATETIME_PARTS = ("year", "quarter", "month", "day", "day_of_week", "day_of_year", "hour", "minute", "second",
                  "epoch_seconds")
DEFAULT_DATETIME_PARTS = ("year", "month", "day", "day_of_week", "hour", "minute", "epoch_seconds")
# Microseconds per unit of a number since the epoch.
EPOCH_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}
_ARROW_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1}  # "ns" divides by 1000
_EARLIEST = int(np.datetime64("0001-01-01T00:00:00", "us").astype(np.int64))
_LATEST = int(np.datetime64("9999-12-31T23:59:59.999999", "us").astype(np.int64))
_MICROSECONDS_PER_DAY = 86_400_000_000
_NAT = np.iinfo(np.int64).min
TIME_RANGE = "0001-01-01 to 9999-12-31"

# A time of day followed by a time zone: "Z", "UTC", "GMT" or an offset such as +01:00 or -0500.
_ZONE_SUFFIX = r"\d:\d\d(:\d\d([.,]\d+)?)?\s*(Z|UTC|GMT|[+-]\d\d(:?\d\d)?)$"


def part_feature_name(column: str, part: str) -> str:
    """The feature name of one part of a date/time column: ``"when__year"``.

    Parameters
    ----------
    column : str
        The date/time column.
    part : str
        One of :data:`DATETIME_PARTS`.

    Returns
    -------
    str
    """
    return f"{column}__{part}"


def parse_times(column: pa.ChunkedArray, text: pd.Series, present: np.ndarray,
                time_format: str | None) -> tuple[pd.Series, np.ndarray]:
    """Dates and times as naive UTC, and which of them carried a time zone.

    Times with a time zone (an offset, ``Z``, a zone-aware Arrow or Parquet
    timestamp) are converted to UTC; times without one are taken as UTC, as
    written.  So a column may mix both.  Text is parsed in the format
    inferred from its first time (or ``time_format``); without
    ``time_format``, times that do not fit it are parsed again as ISO 8601,
    so that ``2020-01-01``, ``2020-01-01 12:00`` and ``2020-01-01T12:00Z``
    can share a column.

    Parameters
    ----------
    column : pyarrow.ChunkedArray
        The time column as read.
    text : pandas.Series
        The same column in pandas.
    present : numpy.ndarray of bool
        The cells that are not missing.
    time_format : str or None
        A ``strftime`` format, or None to infer it.

    Returns
    -------
    (pandas.Series, numpy.ndarray)
        The times (NaT where missing or not a time) without a time zone, in
        UTC, and the mask of the cells that carried a time zone.
    """
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        parsed = pd.to_datetime(text, utc=True)
        aware = np.full(len(text), pa.types.is_timestamp(column.type) and column.type.tz is not None)
    else:
        cells = text.where(present, None)
        # pandas infers the format from the first cell; a first cell that is not a time would make it parse
        # every cell alone (dateutil, with a warning per block), so the format comes from the first that is.
        inferred = time_format or _first_format(cells[present])
        parsed = pd.to_datetime(cells, errors="coerce", format=inferred, utc=True)
        retry = (parsed.isna().to_numpy() & present) if time_format is None else np.zeros(len(text), dtype=bool)
        if retry.any():
            parsed = parsed.copy()
            parsed[retry] = pd.to_datetime(cells[retry], errors="coerce", format="ISO8601", utc=True)
        try:
            strings = column if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) \
                else pc.cast(column, pa.string())
            aware = pc.match_substring_regex(pc.utf8_trim_whitespace(strings), _ZONE_SUFFIX, ignore_case=True)
            aware = aware.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            aware = np.zeros(len(text), dtype=bool)
    return parsed.dt.tz_localize(None), aware


def _first_format(cells: pd.Series, tries: int = 100) -> str | None:
    """The ``strftime`` format of the first of ``cells`` whose format pandas can guess; None if none can."""
    from pandas.tseries.api import guess_datetime_format

    for value in cells.head(tries):
        guess = guess_datetime_format(str(value).strip())
        if guess is not None:
            return guess
    return None


@dataclass
class ParsedTimes:
    """A column read as UTC times by :func:`to_utc_times`.

    Attributes
    ----------
    times : numpy.ndarray of datetime64[us]
        Naive UTC; NaT where missing, not a time or out of range.
    missing : numpy.ndarray of bool
        Cells that are missing (null, NaN, empty text or a missing-value spelling).
    not_time : numpy.ndarray of bool
        Cells present but not a date/time (or not a number, for epoch numbers).
    out_of_range : numpy.ndarray of bool
        Cells that are times, but outside :data:`TIME_RANGE`.
    aware : numpy.ndarray of bool
        Cells that carried a time zone (and were converted to UTC).
    cell : callable
        ``cell(index)``: the cell as read, as text, for messages.
    """

    times: np.ndarray
    missing: np.ndarray
    not_time: np.ndarray
    out_of_range: np.ndarray
    aware: np.ndarray
    cell: Callable[[int], str]


def to_utc_times(column, unit: str | None = None, missing_tokens=frozenset()) -> ParsedTimes:
    """Read a column as naive UTC times (microseconds), whatever it arrived as.

    Parameters
    ----------
    column : pyarrow.ChunkedArray or pyarrow.Array
        Text (ISO 8601, or a format pandas infers from the first time),
        Arrow ``timestamp`` (any unit, with or without a time zone),
        ``date32`` / ``date64``, or numbers since 1970-01-01 UTC (with ``unit``).
    unit : {"s", "ms", "us", "ns"}, optional
        The unit of numbers since the epoch; None for dates and times given
        as text or typed timestamps.
    missing_tokens : set of str, optional
        Text read as a missing value besides the empty string (ingest passes
        its missing-value spellings, ``"NA"``, ``"null"``...).

    Returns
    -------
    ParsedTimes

    Raises
    ------
    TypeError
        Numbers without ``unit``, or a type that cannot hold dates (a time of
        day, a duration, binary data).
    """
    import pyarrow.compute as pc

    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    kind = column.type
    n = len(column)
    nulls = column.is_null(nan_is_null=pa.types.is_floating(kind)).to_numpy(zero_copy_only=False).astype(bool) \
        if n else np.zeros(0, dtype=bool)
    aware = np.zeros(n, dtype=bool)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_timestamp(kind) and kind.unit == "ns":
            raw = pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            micros, outside = raw // 1000, np.zeros(n, dtype=bool)
        else:
            factor = (_ARROW_UNITS[kind.unit] if pa.types.is_timestamp(kind)
                      else _MICROSECONDS_PER_DAY if kind == pa.date32() else 1_000)
            storage = pa.int32() if kind == pa.date32() else pa.int64()
            raw = pc.cast(column, storage).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            micros, outside = _scaled(raw.astype(np.float64), raw, factor)
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            aware = ~nulls  # Arrow keeps zoned timestamps as UTC instants: nothing to shift
        unit_of_raw = kind.unit if pa.types.is_timestamp(kind) else "D" if kind == pa.date32() else "ms"
        zone = "Z" if pa.types.is_timestamp(kind) and kind.tz is not None else ""
        # ISO text of the raw value in UTC (numpy writes years past 9999, where Python's datetime cannot).
        return _finish(micros, nulls, np.zeros(n, dtype=bool), outside, aware,
                       lambda index: str(np.datetime64(int(raw[index]), unit_of_raw)) + zone)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        if unit is None:
            raise TypeError(f"numbers ({kind}) are times only with the unit of their epoch (s, ms, us or ns)")
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        return _epoch(values, nulls, np.zeros(n, dtype=bool), unit, lambda index: repr(column[index].as_py()))
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
            or pa.types.is_dictionary(kind)):
        raise TypeError(f"a column of type {kind} does not hold dates or times")
    strings = pc.cast(column, pa.string()) if not pa.types.is_string(kind) else column
    text = strings.to_pandas().astype(object)
    stripped = text.where(text.isna(), text.astype(str).str.strip())
    missing = (stripped.isna() | stripped.isin({""} | set(missing_tokens))).to_numpy(dtype=bool)
    present = ~missing

    def cell(index: int) -> str:
        return str(text.iloc[index])

    if unit is not None:  # numbers written as text
        values = pd.to_numeric(stripped.where(present, None), errors="coerce").to_numpy(dtype=np.float64)
        return _epoch(values, missing, present & np.isnan(values), unit, cell)
    cells = pa.chunked_array([pa.array(stripped.where(present, None).to_numpy(dtype=object), type=pa.string())])
    parsed, aware = parse_times(cells, cells.to_pandas(), present, None)
    # pandas gives microseconds (nanoseconds before pandas 3, where years past 2262 are NaT).
    micros = parsed.to_numpy(dtype="datetime64[us]").astype(np.int64)
    not_time = present & (micros == _NAT)
    outside = present & ~not_time & ((micros < _EARLIEST) | (micros > _LATEST))
    return _finish(micros, missing, not_time, outside, aware & present & ~not_time, cell)


def _scaled(values: np.ndarray, exact: np.ndarray | None, factor) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds of counts in units of ``factor`` microseconds, and the counts out of :data:`TIME_RANGE`."""
    with np.errstate(invalid="ignore", over="ignore"):
        approximate = values * factor
        outside = ~np.isfinite(approximate) | (approximate < _EARLIEST - 1) | (approximate > _LATEST + 1)
        if exact is not None and factor >= 1:
            micros = np.where(outside, 0, exact) * int(factor)  # integers stay exact
        else:
            micros = np.where(outside, 0, np.round(approximate)).astype(np.int64)
    return micros, outside


def _epoch(values: np.ndarray, missing: np.ndarray, not_number: np.ndarray, unit: str, cell) -> ParsedTimes:
    missing = missing | (np.isnan(values) & ~not_number)
    # Through float64: exact for whole seconds or milliseconds of any date in range (below 2**53 us).
    micros, outside = _scaled(np.where(missing | not_number, 0.0, values), None, EPOCH_UNITS[unit])
    return _finish(micros, missing, not_number, outside & ~missing & ~not_number, np.zeros(len(values), bool),
                   cell)


def _finish(micros: np.ndarray, missing, not_time, outside, aware, cell) -> ParsedTimes:
    outside = outside & ~missing & ~not_time
    outside |= ~missing & ~not_time & ((micros < _EARLIEST) | (micros > _LATEST))
    times = np.where(missing | not_time | outside, _NAT, micros).astype(np.int64).view("datetime64[us]")
    return ParsedTimes(times, missing, not_time, outside, aware, cell)


def time_parts(times: np.ndarray, parts) -> np.ndarray:
    """The numeric parts of times: year, month, day of the week (Monday 0), ..., seconds since the epoch.

    Parameters
    ----------
    times : numpy.ndarray of datetime64
        Naive UTC times; NaT where missing.
    parts : sequence of str
        Names among :data:`DATETIME_PARTS`.

    Returns
    -------
    numpy.ndarray of float64, shape (len(parts), len(times))
        NaN where the time is NaT (imputed later like a missing number).

    Examples
    --------
    >>> time_parts(np.array(["2024-02-29T13:45"], dtype="datetime64[us]"), ["year", "day_of_week", "minute"])
    array([[2024.],
           [   3.],
           [  45.]])
    """
    times = np.asarray(times).astype("datetime64[us]")
    index = pd.DatetimeIndex(times)
    missing = np.isnat(times)
    out = np.empty((len(parts), len(times)), dtype=np.float64)
    for position, part in enumerate(parts):
        if part == "epoch_seconds":
            values = times.astype(np.int64) / 1e6
        else:
            values = np.asarray(getattr(index, part), dtype=np.float64)
        out[position] = values
        out[position, missing] = np.nan
    return out
