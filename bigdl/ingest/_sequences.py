"""Sequence ingest: time series tables (or a ``.npy`` array) -> one Zarr store of the series.

The series are stored once, sorted by (series, time), scaled per channel;
windows are *not* materialised: :class:`bigdl.loaders.torch.ChunkLoader` cuts
them at load time (reading a halo from the next chunk, never across two
series or across a gap).  Three passes of Dask tasks:

1. **read** (one task per input block, the same block planning and parsing as
   tabular ingest): parse, validate (time, series id, numbers), quarantine bad
   rows, stage the valid rows as Arrow IPC, and summarise the block: per series
   the row count and time range, per channel count/mean/M2 for the scaling,
   the most common time steps, and a bounded sample of (series, time) pairs.
2. **sort** (one task per *segment*, a time range of one series holding about
   one store chunk of rows, cut at sample quantiles like a sample sort): read
   the staged rows of that range from the blocks whose time range overlaps it,
   sort by time (input order breaks ties), resolve duplicated timestamps,
   put the rows on the series' regular time grid (missing steps become NaN
   rows, to be filled), and stage the segment.  Memory: one segment per task,
   whatever the size of a series or of the whole input.
3. **write** (one task per store chunk): fill gaps (forward fill or linear
   interpolation in time, with the neighbouring segments' values as anchors,
   so a fill is the same wherever the segment boundaries fall), scale, assign
   the time split, and write exactly one chunk of every array.

The split is by time: the last ``test`` fraction of each series' steps is the
test split, the ``validation`` fraction before it the validation split, so no
training window ever sees a step from a later split (windows take the split
of their targets; a training window's inputs precede its targets).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl._validation import Interval, Options, check_params
from bigdl.errors import EmptyResultError, ParameterError, SchemaError
from bigdl.ingest import _rows
from bigdl.ingest import _staging
from bigdl.ingest._pipeline import (count_reasons, reason_family, register_reason_family, run_ingest, write_chunk,
                                    write_rejects_part)
from bigdl.ingest.sources import NULL_TOKENS, Block, SourcePlan, plan_sources, read_block
from bigdl.preprocessing import _grid
from bigdl.preprocessing._dates import parse_times
from bigdl.store._dataset import Dataset
from bigdl.store._format import SPLIT_CODES, check_split_parameters, rows_per_chunk_for
from bigdl.store._write import create_arrays

__all__ = ["sequences", "GAPS", "DUPLICATES"]

GAPS = ("ffill", "interpolate", "reject")
DUPLICATES = ("last", "first", "error")
PARAMETERS = {"window": [Interval(int, 1, None)], "horizon": [Interval(int, 1, None)],
              "stride": [Interval(int, 1, None)], "gaps": [Options(GAPS)], "duplicates": [Options(DUPLICATES)],
              "non_finite": [Options(_rows.NON_FINITE)], "max_filled": [Interval(float, 0, 1, closed="left")]}
SAMPLE_PER_BLOCK = 4096
INFER_SERIES_PER_BLOCK, INFER_STEPS = 4, 64  # pandas.infer_freq hints: a few series per block, their first steps
_SERIES, _TIME, _RECORD, _BLOCK = "__series__", "__time__", "__record__", "__block__"
EXTRA_ARRAYS = {"series": "int32", "position": "int64", "run": "int64"}
logger = logging.getLogger(__name__)


def sequences(source, *, time: str | None = None, values: list[str] | None = None, series: str | None = None,
              target: str | list[str] | None = None, store: str | os.PathLike, window: int = 16, horizon: int = 1,
              stride: int = 1, frequency=None, gaps: str = "ffill", duplicates: str = "last",
              non_finite: str = "reject", max_filled: float = 0.05, validation: float = 0.1, test: float = 0.2,
              scale: bool = True, known_future: list[str] | None = None, calendar: list[str] | None = None,
              format: str | None = None, table: str | None = None, time_format: str | None = None,
              rows_per_chunk: int | None = None, blocksize: int | str = "64MiB", compression: str = "lz4",
              overwrite: bool = False, progress: bool = True, client=None) -> Dataset:
    """Ingest time series into a Zarr store; windows are cut at load time.

    Parameters
    ----------
    source : str, path or list of them
        CSV / JSON lines / Parquet files, a glob or folder of them, a
        SQLAlchemy URL with ``table=``, or a ``.npy`` file holding one series
        of shape ``(n_steps,)`` or ``(n_steps, n_channels)`` (its time is the
        step number).
    time : str
        The time column: dates/times (text or timestamps) or numbers.  Not
        used for ``.npy`` sources.  Times with a time zone (an offset such as
        ``+01:00``, ``Z``, a zone-aware timestamp type) are converted to UTC;
        times without one are taken as UTC, as written, so a column may mix
        both (a warning says so when it does).  The store's ``time`` array
        holds nanoseconds since 1970-01-01 UTC.
    values : list of str, optional
        The value columns (channels); default: every column but ``time`` and
        ``series``.
    series : str, optional
        A series id column, for panels of many series.  Each series is sorted,
        gap-filled, scaled and split on its own; no window spans two series.
    target : str or list of str, optional
        The channels to forecast (default: all ``values``).  Inputs are all
        channels.
    store : str or path
        Where to write the store.
    window, horizon, stride : int, default 16, 1, 1
        The default window spec the loader uses: ``window`` input steps, the
        next ``horizon`` steps of ``target`` to forecast, one window every
        ``stride`` steps of a series.  ``ChunkLoader(window=...)`` overrides it;
        the store does not depend on it.
    frequency : str, pandas.DateOffset, timedelta, number or None
        The regular time grid.  For date/time columns a pandas offset alias:
        calendar frequencies ``"MS"`` (month start), ``"M"``/``"ME"`` (month
        end), ``"QS"``, ``"Q"``/``"QE"``, ``"YS"``, ``"Y"``/``"YE"`` (with
        an anchor such as ``"QS-OCT"``), ``"W-MON"``, ``"B"`` (business
        days), or fixed steps ``"7D"``, ``"1h"``, ``"15min"`` (a delta such
        as ``"7 days"`` too); case matters as in pandas (``"MS"`` is month
        start, ``"ms"`` a millisecond).  A calendar grid's points are those
        of ``pandas.date_range(first time, ..., freq=frequency)``.  For
        numeric times, a number.  Default: inferred from the data: a
        calendar frequency when the sampled times all sit on one (month,
        quarter, year starts or ends, business days; ``pandas.infer_freq``
        on stretches of consecutive rows is tried first), else the most
        common step between consecutive rows of a series.
    gaps : {"ffill", "interpolate", "reject"}, default "ffill"
        Missing steps on the grid and missing values: ``"ffill"`` inserts the
        missing steps and carries the last value forward (a series' leading
        missing values take its first value); ``"interpolate"`` inserts them and
        interpolates linearly in time; ``"reject"`` quarantines rows with a
        missing value, inserts nothing, and a missing step splits the series so
        that no window spans the gap.
    duplicates : {"last", "first", "error"}, default "last"
        Several rows with one timestamp in a series: keep the last (or first)
        in input order and quarantine the others with the reason, or raise.
    non_finite : {"reject", "missing"}, default "reject"
        What ``inf``, ``-inf``, ``Infinity`` or a number too large for a
        float64 (``1e309``) in a value column becomes: ``"reject"``
        quarantines the row (reason ``"column 'x': 'inf' is not a finite
        number"``); ``"missing"`` reads it as a missing value, which ``gaps``
        then fills (or, with ``gaps="reject"``, quarantines).  A non-finite
        numeric time is always quarantined.
    max_filled : float, default 0.05
        The largest fraction of the stored steps that may be inserted to
        fill gaps (``gaps="ffill"`` or ``"interpolate"``).  A grid that would
        need more is refused with the count and the frequency the data
        suggest: first from the series' time ranges alone, before anything
        is allocated (so a 1 ms grid over 60 years fails at once), then with
        the exact count after the rows are placed.  Raise it when the gaps
        are real.
    validation, test : float, default 0.1 and 0.2
        Fractions of each series' steps, taken from its end: the last ``test``
        fraction is the test split, the ``validation`` fraction before it the
        validation split.
    known_future : list of str, optional
        Value channels whose future is known when forecasting (a planned
        price, a weather forecast, a holiday flag): a window then also holds
        the ``horizon`` steps after its inputs, where these channels (and the
        ``calendar`` features) keep their values and every other channel is
        zero, with an indicator channel that is 1 on those steps (the
        *decoder part* of the window; see :class:`bigdl.models.StackedLSTM`).
        They may not be targets.  ``Trainer.forecast`` past the end needs
        their future values (``future=``).
    calendar : list of {"hour", "dayofweek", "dayofyear", "month"}, optional
        Calendar features from the time grid (date/time columns only): the
        sine and cosine of the hour of the day, day of the week, day of the
        year or month of the year, at every step of a window, its decoder
        part too (their future is always known).  Computed at load time from
        the stored times, not stored.
    scale : bool, default True
        Standardise each channel with its mean and standard deviation,
        fitted out of core on the **training part** of every series only
        (the values observed there, before gaps are filled), so the
        validation and test periods leak nothing into the inputs.  One
        mean and standard deviation per channel, global across the series
        of a panel: a window then means the same thing whichever series it
        comes from, and :meth:`Dataset.unscale` needs no series id (scale
        the series beforehand when their levels differ by orders of
        magnitude).  Stored in ``ds.attrs["preprocessing"]`` (``fitted_on``
        says so).
    format, table, time_format, blocksize, compression, overwrite, progress, client
        As in :func:`bigdl.ingest.tabular`; ``time_format`` is a
        ``strftime`` format for text times (default: inferred).
    rows_per_chunk : int, optional
        Steps per store chunk (default: about 16 MiB of arrays per chunk).

    Returns
    -------
    Dataset
        A store of kind ``"sequence"``: ``X`` (steps, channels) float32,
        ``time``, ``series``, ``position`` (step within its series), ``run``
        (contiguous run id: no gap inside), ``split`` and ``record`` arrays.

    Raises
    ------
    ParameterError
        A parameter out of its range or not among its options (named, with what is allowed).
    SchemaError
        Columns or options that do not fit the data.
    SourceNotFoundError
        No input matches ``source``.
    SourceError
        An input that cannot be read as asked.
    EmptyResultError
        Every row was rejected.
    StoreExistsError
        ``store`` exists and ``overwrite`` is False.
    StorePathError
        ``store`` is an input, lies inside one or contains one.

    Notes
    -----
    Rows that cannot be used (a time or number that does not parse, a missing
    time or series id, a duplicated timestamp, a time off the regular grid,
    with ``gaps="reject"`` a missing value) go to ``<store>/rejects/`` with
    their source, row, raw text and reason; rows read = rows stored + rows
    rejected, and the steps inserted to fill gaps are counted apart
    (``ds.attrs["steps"]``).

    Examples
    --------
    >>> ds = bigdl.ingest.sequences("co2.csv", time="date", values=["co2"], store="work/co2.zarr",
    ...                             window=52, horizon=4, frequency="7D")        # doctest: +SKIP
    >>> for X, y in ChunkLoader(ds, "train", batch_size=64):                    # doctest: +SKIP
    ...     ...   # X: (64, 52, 1), y: (64, 4)
    """
    check_params("sequences", {"window": window, "horizon": horizon, "stride": stride, "gaps": gaps,
                               "duplicates": duplicates, "non_finite": non_finite, "max_filled": max_filled},
                 PARAMETERS)
    check_split_parameters("sequences", validation=validation, test=test, seed=0, rows_per_chunk=rows_per_chunk,
                           compression=compression, unit="steps")
    blocksize = _rows.parse_blocksize(blocksize, "sequences")
    plan = plan_sources(source, format=format, table=table, blocksize=blocksize, owner="sequences")
    spec = _resolve_columns(plan, time=time, values=values, series=series, target=target, gaps=gaps,
                            time_format=time_format, non_finite=non_finite)
    decoder = _decoder_spec(spec, known_future, calendar)
    steps = SequenceSteps(plan, spec, frequency=frequency, duplicates=duplicates, scale=scale, max_filled=max_filled,
                          validation=validation, test=test, window={"window": window, "horizon": horizon,
                                                                    "stride": stride, **decoder},
                          rows_per_chunk=rows_per_chunk, compression=compression)
    steps.inputs = tuple(plan.paths)
    return run_ingest(steps, store, overwrite=overwrite, progress=progress, client=client)


class SequenceSteps(_rows.RowSteps):
    """The sequence steps of the ingest pipeline: read, fit the grid and segments, *sort*, write.

    Parameters
    ----------
    plan : SourcePlan
        The planned input blocks.
    spec : dict
        The resolved columns (time, values, series, targets, gaps...).
    frequency, duplicates, scale, max_filled, validation, test
        As given to :func:`sequences`.
    window : dict
        The default window spec (``window``, ``horizon``, ``stride``).
    rows_per_chunk : int or None
        Steps per store chunk; None: about 16 MiB of arrays per chunk.
    compression : str
        The store's codec name.
    """

    kind = "sequence"
    empty_hint = "Check time=, values= and time_format=."

    def __init__(self, plan: SourcePlan, spec: dict, *, frequency, duplicates: str, scale: bool, validation: float,
                 test: float, window: dict, rows_per_chunk, compression: str, max_filled: float = 0.05):
        super().__init__(plan, spec)
        self.spec, self.frequency, self.duplicates, self.scale = spec, frequency, duplicates, scale
        self.max_filled = float(max_filled)
        self.validation, self.test, self.window, self.compression = validation, test, window, compression
        self.rows_per_chunk = rows_per_chunk or rows_per_chunk_for(len(spec["values"]) + 8)
        self.read_task, self.write_task = _read_task, _write_task
        self.late_rejects: list[dict] = []

    def fit(self, read_results: list[dict], accounting: dict) -> None:
        self.time_zones = {kind: sum(result["time_zones"][kind] for result in read_results)
                           for kind in ("aware", "naive")}
        _log_time_zones(self.spec, self.time_zones)
        self.likely_step = _likely_frequency(read_results, self.spec)
        self.step = _frequency(self.frequency, read_results, self.spec)
        self.series_stats = _merge_series(read_results)
        # Counted from the time ranges alone: a nonsense grid is refused before the sort allocates it.
        _check_filled(self.step, self.frequency, self.likely_step, self.series_stats, self.spec, self.max_filled)
        self.segments = _plan_segments(self.series_stats, read_results, self.rows_per_chunk)

    def extra_stages(self, run, staging: str, read_results: list[dict], accounting: dict) -> dict:
        """The sort stage: one task per segment; rows rejected there leave 'stored' for 'rejected'.

        Parameters
        ----------
        run : callable
            ``run(stage, task, arguments)`` runs one task per argument tuple.
        staging : str
            The staging folder.
        read_results : list of dict
            The read tasks' results.
        accounting : dict
            The row accounting so far.

        Returns
        -------
        dict
            The accounting with the rows rejected while sorting moved to ``rejected``.

        Raises
        ------
        EmptyResultError
            Every row was rejected after sorting.
        """
        offsets = [item["global_record"] for item in self.offsets]
        paths = [block.path for block in self.plan.blocks]
        sort_results = run("sort", _sort_task, [(staging, segment, self.spec, self.step, self.duplicates, offsets,
                                                 paths) for segment in self.segments])
        self.layout = _layout(self.segments, sort_results, self.series_stats, self.spec, self.step,
                              self.validation, self.test)
        # Fitted on the training part of each series only (the values observed there, before any fill):
        # the validation and test periods never shape the inputs a model trains on.
        self.mean, self.std = _channel_statistics(self._train_moments(run, staging, sort_results),
                                                  len(self.spec["values"]), self.scale)
        self.late_rejects = [item for result in sort_results for item in result["rejects"]]
        accounting = _move_to_rejects(accounting, self.late_rejects)
        if self.layout["n_steps"] == 0:
            raise EmptyResultError(f"Every row of {self.plan.paths[0]!r} was rejected after sorting: "
                                   f"{accounting['reasons']}.")
        _check_filled(self.step, self.frequency, self.likely_step, self.series_stats, self.spec, self.max_filled,
                      inserted=self.layout["n_inserted"], total=self.layout["n_steps"])
        if self.layout["n_observed"] != accounting["stored"]:
            raise RuntimeError(f"bigdl internal error: {self.layout['n_observed']} observed steps placed, "
                               f"{accounting['stored']} rows stored.")
        return accounting

    def _train_moments(self, run, staging: str, sort_results: list[dict]) -> list[dict]:
        """Per-channel moments of the training part of every series, from the sorted segments.

        A segment wholly before its series' validation part gives its own
        moments; the one (per series) that holds the boundary is read again
        for its first rows, by a task of its own; later segments count for nothing.
        """
        moments, straddling = [], []
        for item, result in zip(self.layout["segments"], sort_results):
            keep = item["train_end"] - item["position"]
            if keep >= item["n_rows"]:
                moments.append({"moments": result["moments"]})
            elif keep > 0:
                straddling.append((staging, item["index"], int(keep)))
        if straddling:
            moments += run("scale", _prefix_moments_task, straddling)
        if not any(part["moments"][0].sum() for part in moments):
            logger.warning("No series has observed values in its training part; the scaling is fitted on every "
                           "stored value instead.")
            return sort_results
        return moments

    def pieces(self, read_results: list[dict]) -> tuple[list, list[int]]:
        placed = [item for item in self.layout["segments"] if item["n_rows"]]
        return [item["index"] for item in placed], [item["n_rows"] for item in placed]

    def create_arrays(self, root: Path, n_rows: int) -> None:
        time_dtype = "int64" if self.spec["time_kind"] == "datetime" else "float64"
        create_arrays(root, n_rows, self.rows_per_chunk, x_shape=(len(self.spec["values"]),),
                      compression=self.compression, x_dimensions=("step", "channel"),
                      extra_arrays={"time": time_dtype, **EXTRA_ARRAYS})

    def write_job(self, root: str, staging: str, start: int, pieces: list[tuple]) -> tuple:
        self.root = root  # the written store, where the windows per chunk are counted
        return (root, staging, start, pieces, self.layout["segments"], self.spec, self.mean, self.std)

    def window_counts(self, targets: list[str]) -> dict:
        """Windows of each split in each chunk for the store's window spec, counted once from the small arrays.

        Loaders plan an epoch from them without reading ``run``, ``position`` or ``split``.
        """
        from bigdl.store.kinds.sequence import SequenceView

        attrs = {"window": {**self.window, "targets": list(targets)}, "feature_names": list(self.spec["values"])}
        view = SequenceView(self.root, attrs, n_rows=self.layout["n_steps"], rows_per_chunk=self.rows_per_chunk,
                            stored_shape=(len(self.spec["values"]),), has_target=True)
        return {split: view.chunk_counts(split).tolist() for split in (*SPLIT_CODES, "all")}

    def write_rejects(self, root: Path, staging: Path, read_results: list[dict], accounting: dict, run) -> None:
        super().write_rejects(root, staging, read_results, accounting, run)
        if self.late_rejects:
            _write_late_rejects(root, self.plan, self.offsets, self.late_rejects)

    def attributes(self, accounting: dict) -> dict:
        spec, layout, targets = self.spec, self.layout, self.spec["targets"]
        return dict(
            split={"validation": self.validation, "test": self.test, "key": "time (last fraction of each series)"},
            feature_names=list(spec["values"]), target_name=targets[0] if len(targets) == 1 else list(targets),
            task="regression", class_names=None,
            steps={"observed": layout["n_observed"], "inserted": layout["n_inserted"], "total": layout["n_steps"]},
            window={**self.window, "targets": list(targets)},
            chunk_window_counts=self.window_counts(targets),
            series={"column": spec["series"], "names": layout["series_names"], "lengths": layout["series_lengths"],
                    "filled": layout["series_filled"]},
            preprocessing={"channels": list(spec["values"]), "mean": self.mean, "std": self.std,
                           "scaled": bool(self.scale), "fitted_on": "train part of each series, global",
                           "time": {"column": spec["time"], "kind": spec["time_kind"],
                                    "step": _json_number(self.step),
                                    "frequency": _frequency_text(self.step, spec).strip("'")
                                    if spec["time_kind"] == "datetime" else _json_number(self.step),
                                    "calendar": _grid.is_calendar(self.step),
                                    "unit": "ns" if spec["time_kind"] == "datetime" else None,
                                    **(_time_zone_attributes(self.time_zones)
                                       if spec["time_kind"] == "datetime" else {})},
                           "gaps": spec["gaps"], "duplicates": self.duplicates, "non_finite": spec["non_finite"]},
            source=self.plan.fingerprint(),
        )


def _time_zone_attributes(time_zones: dict) -> dict:
    return {"timezone": "UTC", "converted_to_utc": time_zones["aware"], "taken_as_utc": time_zones["naive"]}


def _log_time_zones(spec: dict, time_zones: dict) -> None:
    """Say what became of time zones: converted to UTC; a warning when zone-aware and naive times mix."""
    _rows.log_time_zones(logger, f"Time column {spec['time']!r}", time_zones["aware"], time_zones["naive"])


@register_reason_family("sequence")
def _reason_family(reason: str) -> str:
    if reason.startswith("duplicate time"):  # "duplicate time T of series S: kept ..."
        return "duplicate time"
    if " is not on the grid" in reason:
        return "time off the grid"
    return _rows.row_reason_family(reason)


# ---------------------------------------------------------------- planning
def _resolve_columns(plan: SourcePlan, *, time, values, series, target, gaps, time_format,
                     non_finite: str = "reject") -> dict:
    columns = plan.columns
    if plan.format == "npy":
        values = list(values) if values is not None else columns
        if len(values) != len(columns):
            raise SchemaError(f"values= names {len(values)} channels but the array has {len(columns)}.")
        time_kind, series = "number", None
    else:
        if time is None:
            raise SchemaError(f"sequences() needs time= (the time column); the columns are {columns}.")
        _rows.check_columns([time], columns, "time")
        if series is not None:
            _rows.check_columns([series], columns, "series")
        if values is None:
            values = [name for name in columns if name not in (time, series)]
        values = list(values)
        _rows.check_columns(values, columns, "values")
        _check_roles(time, series, values)
        if not values:
            raise SchemaError("sequences() needs at least one value column besides the time and series columns.")
        column = plan.sample.column(time) if time in plan.sample.column_names else None
        numeric = column is not None and (pa.types.is_integer(column.type) or pa.types.is_floating(column.type))
        time_kind = "number" if numeric else "datetime"
    targets = [target] if isinstance(target, str) else list(target) if target is not None else list(values)
    unknown = [name for name in targets if name not in values]
    if unknown:
        raise SchemaError(f"target= names {unknown}, which are not value columns; the value columns are {values}.")
    return {"format": plan.format, "time": time, "series": series, "values": values, "targets": targets,
            "target_index": [values.index(name) for name in targets], "time_kind": time_kind, "gaps": gaps,
            "time_format": time_format, "non_finite": non_finite}


def _decoder_spec(spec: dict, known_future, calendar) -> dict:
    """The window spec's ``known_future`` channels and ``calendar`` features, checked against the columns."""
    from bigdl.store.kinds.sequence import CALENDAR_FEATURES

    check_params("sequences", {"known_future": known_future, "calendar": calendar},
                 {"known_future": [list, None], "calendar": [list, None]})
    decoder = {}
    if known_future:
        unknown = [name for name in known_future if name not in spec["values"]]
        if unknown:
            raise SchemaError(f"known_future= names {unknown}, which are not value columns; the value columns are "
                              f"{spec['values']}.")
        targets = [name for name in known_future if name in spec["targets"]]
        if targets:
            raise SchemaError(f"known_future= names the target(s) {targets}: a target's future is what is forecast. "
                              "Leave them out of known_future= (or out of target=).")
        decoder["known_future"] = list(dict.fromkeys(known_future))
    if calendar:
        wrong = [name for name in calendar if name not in CALENDAR_FEATURES]
        if wrong:
            raise ParameterError(f"The 'calendar' parameter of sequences names {wrong}; the calendar features are "
                                 f"{list(CALENDAR_FEATURES)}.")
        if spec["time_kind"] != "datetime":
            raise SchemaError("calendar= needs a date/time column: the time column holds numbers.")
        decoder["calendar"] = list(dict.fromkeys(calendar))
    return decoder


def _check_roles(time: str, series: str | None, values: list[str]) -> None:
    """Refuse a column given two roles (or one channel twice): each is read once, under one name."""
    repeated = sorted({name for name in values if values.count(name) > 1})
    if repeated:
        raise SchemaError(f"values= names column(s) {repeated} more than once; name each channel once.")
    if series is not None and series == time:
        raise SchemaError(f"Column {time!r} is given as both time= and series=; the series id needs a column "
                          "of its own.")
    for role, name in (("time", time), ("series", series)):
        if name is not None and name in values:
            raise SchemaError(f"Column {name!r} is the {role} column and cannot also be a value column; "
                              f"leave it out of values=.")


# ---------------------------------------------------------------- pass 1: read
def _read_task(block: Block, spec: dict, options: dict, staging: str) -> dict:
    rejects: list[dict] = []
    time_zones = {"aware": 0, "naive": 0}
    if block.format == "npy":
        # A series' time is its step number; its channels are the array's columns.
        raw = read_block(block, options["all_columns"], {}, options)
        values = np.column_stack([raw.table.column(name).to_numpy() for name in options["all_columns"]])
        records = raw.records
        times = block.start + records.astype(np.float64)
        names = np.full(len(records), "", dtype=object)
        bad = np.zeros(len(records), dtype=bool)
        reasons: list[str | None] = [None] * len(records)
        reject = _rows.rejector(bad, reasons)
        original, values = values, np.column_stack(
            [_rows.checked_numbers(raw.table.column(column), name, reject, non_finite=spec["non_finite"])
             for column, name in zip(options["all_columns"], spec["values"])]) if len(values) else values
        if spec["gaps"] == "reject":
            reject(np.isnan(values).any(axis=1), lambda index: "missing value (gaps='reject')")
        rejects = [{"record": int(records[index]), "line": None, "raw": json.dumps(original[index].tolist()),
                    "reason": reasons[index]} for index in np.flatnonzero(bad)]
        n_records, n_physical = raw.n_records, raw.n_physical
    else:
        columns = [spec["time"]] + ([spec["series"]] if spec["series"] else []) + spec["values"]
        raw = read_block(block, columns, {}, options)
        times, names, values, bad, reasons, time_zones = _validate(raw.table, spec)
        rejects = _rows.rejected_rows(raw, bad, reasons)
        records = raw.records
        n_records, n_physical = raw.n_records, raw.n_physical
    keep = ~bad
    times, names, values, records = times[keep], names[keep], values[keep], records[keep]
    time_type = pa.int64() if spec["time_kind"] == "datetime" else pa.float64()
    _rows.stage_table(staging, block.index, pa.table({
        _SERIES: pa.array(names, pa.string()), _TIME: pa.array(times, time_type),
        **{f"v{index}": pa.array(values[:, index]) for index in range(values.shape[1])},
        _RECORD: pa.array(records, pa.int64())}))
    _rows.stage_rejects(staging, block.index, rejects)
    return {"n_records": n_records, "n_valid": int(keep.sum()), "n_rejected": len(rejects),
            "n_physical": n_physical, "reasons": count_reasons("sequence", rejects), "time_zones": time_zones,
            **_summarize(block.index, times, names, values, datetimes=spec["time_kind"] == "datetime")}


def _validate(table: pa.Table, spec: dict):
    """Times, series ids and values of a parsed block; rows that do not fit are marked with a reason."""
    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    reject = _rows.rejector(bad, reasons)
    column = table.column(spec["time"])
    text = column.to_pandas()
    present = text.notna().to_numpy().copy()
    if not (pd.api.types.is_numeric_dtype(text) or pd.api.types.is_datetime64_any_dtype(text)):
        present &= ~text.astype(object).isin(NULL_TOKENS).to_numpy()
    reject(~present, lambda index: f"missing time {spec['time']!r}")
    time_zones = {"aware": 0, "naive": 0}
    if spec["time_kind"] == "datetime":
        parsed, aware = parse_times(column, text, present, spec["time_format"])
        failed = parsed.isna().to_numpy() & present
        reject(failed, lambda index: f"time {spec['time']!r}: {text.iloc[index]!r} is not a date/time")
        times = parsed.to_numpy(dtype="datetime64[ns]").view(np.int64)
        parsed_ok = present & ~failed
        time_zones = {"aware": int((aware & parsed_ok).sum()), "naive": int((~aware & parsed_ok).sum())}
    else:
        numbers = pd.to_numeric(text, errors="coerce")
        failed = numbers.isna().to_numpy() & present
        reject(failed, lambda index: f"time {spec['time']!r}: {text.iloc[index]!r} is not a number")
        times = numbers.to_numpy(dtype=np.float64)
        reject(np.isinf(times), lambda index: f"time {spec['time']!r}: {str(text.iloc[index])!r} is not a finite "
                                              "number")
    if spec["series"]:
        ids = _rows.text_or_null(table.column(spec["series"])).to_pandas()
        reject(ids.isna().to_numpy(), lambda index: f"missing series id {spec['series']!r}")
        names = ids.fillna("").to_numpy(dtype=object)
    else:
        names = np.full(n, "", dtype=object)
    values = np.empty((n, len(spec["values"])), dtype=np.float64)
    for position, name in enumerate(spec["values"]):
        values[:, position] = _rows.checked_numbers(table.column(name), name, reject, non_finite=spec["non_finite"])
    if spec["gaps"] == "reject":
        for position, name in enumerate(spec["values"]):
            reject(np.isnan(values[:, position]), lambda index, name=name: f"missing value {name!r} (gaps='reject')")
    return times, names, values, bad, reasons, time_zones


def _summarize(index: int, times: np.ndarray, names: np.ndarray, values: np.ndarray, datetimes: bool = False) -> dict:
    """What the client needs from a block: series ranges, channel moments, common steps, a sample."""
    series: dict[str, list] = {}
    steps: Counter = Counter()
    if len(times):
        frame = pd.DataFrame({"s": names, "t": times})
        grouped = frame.groupby("s", sort=False)["t"]
        for name, count, low, high in zip(grouped.size().index, grouped.size().to_numpy(),
                                          grouped.min().to_numpy(), grouped.max().to_numpy()):
            series[name] = [int(count), low.item(), high.item()]
        ordered = frame.sort_values(["s", "t"], kind="stable")
        same = ordered["s"].to_numpy()[1:] == ordered["s"].to_numpy()[:-1]
        differences = np.diff(ordered["t"].to_numpy())[same]
        steps.update(dict(Counter(differences[differences > 0].tolist()).most_common(8)))
    rng = np.random.default_rng(index)
    chosen = rng.choice(len(times), size=min(len(times), SAMPLE_PER_BLOCK), replace=False) if len(times) else []
    return {"series": series, "steps": steps, "sample": (names[chosen], times[chosen]),
            "inferred": _infer_frequencies(names, times) if datetimes else Counter()}


def _infer_frequencies(names: np.ndarray, times: np.ndarray) -> Counter:
    """``pandas.infer_freq`` of the first consecutive times of a few series of a block (alias -> count).

    It answers only for a regular stretch (None on a gap or on shuffled rows),
    so it is a hint that the client checks against the sampled times.
    """
    found: Counter = Counter()
    if not len(times):
        return found
    frame = pd.DataFrame({"s": names, "t": times})
    for _, group in list(frame.groupby("s", sort=False)["t"])[:INFER_SERIES_PER_BLOCK]:
        stretch = np.unique(group.to_numpy())[:INFER_STEPS]
        if len(stretch) >= 3:
            with warnings.catch_warnings():  # pandas 3 warns that it will return an offset: both are read
                warnings.simplefilter("ignore")
                alias = pd.infer_freq(pd.DatetimeIndex(stretch.astype(np.int64).view("datetime64[ns]")))
            if alias is not None:
                found[getattr(alias, "freqstr", alias)] += 1
    return found


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel count, mean and sum of squared deviations of the non-missing values."""
    count = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), 0.0)
        m2 = np.nansum((values - mean) ** 2, axis=0)
    return count.astype(np.float64), mean, m2


def _given_frequency(frequency, spec: dict):
    """A given ``frequency=`` as a grid step: int ns or a calendar alias for dates, a float for numbers."""
    if spec["time_kind"] != "datetime":
        check_params("sequences", {"frequency": frequency},
                     {"frequency": [Interval(float, 0, None, closed="neither")]})
        return float(frequency)
    return _grid.parse_frequency(frequency, owner="sequences")


def _likely_frequency(results: list[dict], spec: dict):
    """The grid step the data suggest (see :func:`bigdl.preprocessing._grid.infer_step`), None if none."""
    steps: Counter = Counter()
    inferred: Counter = Counter()
    for result in results:
        steps.update(result["steps"])
        inferred.update(result.get("inferred", {}))
    sample = np.concatenate([np.asarray(result["sample"][1]) for result in results]) if results else np.empty(0)
    return _grid.infer_step(steps, sample, inferred, time_kind=spec["time_kind"])


def _frequency(frequency, results: list[dict], spec: dict):
    """The grid step in time units (ns for dates, or a calendar alias), given or inferred from the data."""
    if frequency is not None:
        return _given_frequency(frequency, spec)
    step = _likely_frequency(results, spec)
    if step is None:
        raise SchemaError("Cannot infer the time step: no series has two rows with different times. "
                          "Pass frequency= (e.g. '1D', 'MS', or a number for numeric times).")
    return step


def _frequency_text(step, spec: dict) -> str:
    """How to pass ``step`` as ``frequency=``: ``'MS'``, ``'7D'``, ``'1h'``, ``0.5``."""
    if _grid.is_calendar(step) or spec["time_kind"] != "datetime":
        return repr(step)
    if int(step) % _grid.DAY_NS == 0:
        days = int(step) // _grid.DAY_NS
        return repr("D" if days == 1 else f"{days}D")
    return repr(pd.tseries.frequencies.to_offset(pd.Timedelta(int(step))).freqstr)


def _check_filled(step, given, likely, series_stats: dict, spec: dict, max_filled: float, *,
                  inserted: float | None = None, total: float | None = None) -> None:
    """Refuse a grid that would make more than ``max_filled`` of the stored steps gap-filled.

    Before the sort pass (``inserted`` None) the grid is only counted, from each
    series' first and last time, so a nonsense grid (1 ms over 60 years) is
    refused before anything is allocated; after it, with the exact count.
    """
    if spec["gaps"] == "reject":
        return  # nothing is inserted: a missing step starts a new run
    rows = sum(count for count, _, _ in series_stats.values())
    if inserted is None:
        counts = [_grid.estimate_steps(low, high, step) for _, low, high in series_stats.values()]
        total = sum(count for count, _ in counts)
        inserted = total - rows  # at least: duplicates and rows off the grid only add to it
        exact, counted = False, "" if all(known for _, known in counts) else "about "
    else:
        exact, counted = True, ""
    if total <= 0 or inserted <= max_filled * total:
        return
    source = f"frequency={given!r}" if given is not None else f"the inferred step {_frequency_text(step, spec)}"
    hint = (f" The data look like frequency={_frequency_text(likely, spec)}; pass it."
            if likely is not None and likely != step else "")
    raise SchemaError(
        f"{source} puts {counted}{total:,.0f} steps (step {_step_text(step, spec)}) on the grid of "
        f"{len(series_stats):,} series holding {rows:,} rows, so {'' if exact else 'at least '}{inserted:,.0f} "
        f"steps ({inserted / total:.1%}) would be gap-filled, more than max_filled={max_filled} allows.{hint} "
        "If the gaps are real, raise max_filled= (a fraction below 1), or use gaps='reject' to insert nothing.")


def _json_number(step):
    """A grid step as JSON: int ns, a float, or a calendar alias (str)."""
    if _grid.is_calendar(step):
        return str(step)
    return int(step) if isinstance(step, (int, np.integer)) else float(step)


def _merge_series(results: list[dict]) -> dict:
    merged: dict[str, list] = {}
    for result in results:
        for name, (count, low, high) in result["series"].items():
            if name in merged:
                entry = merged[name]
                entry[0] += count
                entry[1], entry[2] = min(entry[1], low), max(entry[2], high)
            else:
                merged[name] = [count, low, high]
    return {name: merged[name] for name in sorted(merged)}


def _channel_statistics(results: list[dict], n_channels: int, scale: bool) -> tuple[list[float], list[float]]:
    """Per-channel mean and population standard deviation, merged from block moments (Chan et al.)."""
    count, mean, m2 = np.zeros(n_channels), np.zeros(n_channels), np.zeros(n_channels)
    for result in results:
        n_b, mean_b, m2_b = result["moments"]
        total = count + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mean_b - mean
            mean = np.where(total > 0, mean + delta * n_b / np.maximum(total, 1), mean)
            m2 = m2 + m2_b + np.where(total > 0, delta ** 2 * count * n_b / np.maximum(total, 1), 0.0)
        count = total
    if not scale:
        return [0.0] * n_channels, [1.0] * n_channels
    std = np.sqrt(np.where(count > 0, m2 / np.maximum(count, 1), 1.0))
    std = np.where(std > 1e-12, std, 1.0)
    return [float(value) for value in mean], [float(value) for value in std]


def _plan_segments(series_stats: dict, results: list[dict], rows_per_chunk: int) -> list[dict]:
    """Cut each series into time ranges of about ``rows_per_chunk`` rows at quantiles of the sampled times."""
    names = np.concatenate([result["sample"][0] for result in results]).astype(object)
    times = np.concatenate([result["sample"][1] for result in results])
    segments = []
    for code, (name, (count, low, high)) in enumerate(series_stats.items()):
        pieces = math.ceil(count / rows_per_chunk)
        bounds: list = []
        if pieces > 1:
            sample = np.sort(times[names == name])
            if len(sample) >= pieces:
                cuts = sample[(np.arange(1, pieces) * len(sample)) // pieces]
                bounds = sorted(set(cut.item() for cut in cuts if low < cut.item() <= high))
        edges = [None, *bounds, None]
        for lower, upper in zip(edges[:-1], edges[1:]):
            blocks = [index for index, result in enumerate(results) if name in result["series"]
                      and (upper is None or result["series"][name][1] < upper)
                      and (lower is None or result["series"][name][2] >= lower)]
            segments.append({"index": len(segments), "code": code, "name": name, "low": lower, "high": upper,
                             "blocks": blocks, "start": low, "end": high})
    return segments


# ---------------------------------------------------------------- pass 2: sort
def _sort_task(staging: str, segment: dict, spec: dict, step, duplicates: str, offsets: list[int],
               paths: list[str]) -> dict:
    import pyarrow.compute as pc

    n_channels = len(spec["values"])
    parts = []
    for block in segment["blocks"]:
        source = _staging.arrow_file(staging, f"block-{block:06d}.arrow")
        table = pa.ipc.open_file(source).read_all()
        mask = pc.equal(table.column(_SERIES), segment["name"])
        if segment["low"] is not None:
            mask = pc.and_(mask, pc.greater_equal(table.column(_TIME), segment["low"]))
        if segment["high"] is not None:
            mask = pc.and_(mask, pc.less(table.column(_TIME), segment["high"]))
        table = table.filter(mask)
        parts.append(pd.DataFrame({"time": table.column(_TIME).to_numpy(),
                                   "record": table.column(_RECORD).to_numpy() + offsets[block],
                                   "block": np.full(table.num_rows, block, dtype=np.int64),
                                   **{f"v{i}": table.column(f"v{i}").to_numpy() for i in range(n_channels)}}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"time": [], "record": [], "block": [], **{f"v{i}": [] for i in range(n_channels)}})
    # Input order (the global record) breaks ties, so "first"/"last" mean what they say.
    frame = frame.sort_values(["time", "record"], kind="stable", ignore_index=True)
    rejects = []
    label = f" of series {segment['name']!r}" if spec["series"] else ""

    def quarantine(mask: np.ndarray, reason) -> None:
        for row in frame[mask].itertuples(index=False):
            rejects.append({"block": int(row.block), "record": int(row.record),
                            "raw": json.dumps({"time": _time_text(row.time, spec),
                                               **{name: _finite(getattr(row, f"v{i}"))
                                                  for i, name in enumerate(spec["values"])}}),
                            "reason": reason(row)})

    times = frame["time"].to_numpy()
    repeated = np.zeros(len(frame), dtype=bool)
    if len(frame) > 1:
        same = times[1:] == times[:-1]
        if same.any():
            if duplicates == "error":
                where = int(np.flatnonzero(same)[0])
                rows = frame.iloc[[where, where + 1]]
                sources = "; ".join(f"{paths[int(b)]} (record {int(r)})" for b, r in zip(rows.block, rows.record))
                raise SchemaError(f"Duplicated time {_time_text(times[where], spec)}{label} in {sources}; pass "
                                   "duplicates='last' or 'first' to keep one row and quarantine the others.")
            repeated[1:] = same if duplicates == "first" else False
            if duplicates == "last":
                repeated[:-1] = same
            kept = "later" if duplicates == "last" else "earlier"
            quarantine(repeated, lambda row: f"duplicate time {_time_text(row.time, spec)}{label}: kept the "
                                             f"{kept} row (duplicates={duplicates!r})")
    frame = frame[~repeated]
    origin = segment["start"]
    internal_breaks = 0
    value_columns = [f"v{i}" for i in range(n_channels)]
    if spec["gaps"] != "reject":
        index, on_grid = _grid.grid_index(frame["time"].to_numpy(), origin, step)
        if not on_grid.all():
            quarantine(~on_grid, lambda row: f"time {_time_text(row.time, spec)}{label} is not on the grid "
                                             f"(start {_time_text(origin, spec)}, step {_step_text(step, spec)}); "
                                             "pass frequency= to choose the grid")
            frame, index = frame[on_grid], index[on_grid]
        # The segment owns the grid points from the first at or after max(low, start) to the last
        # before min(high, end], whether or not a row was observed there.
        first = 0 if segment["low"] is None else max(0, _grid.grid_bound(segment["low"], origin, step, np.ceil))
        last = _grid.grid_bound(segment["end"], origin, step, np.floor)
        if segment["high"] is not None:
            last = min(last, _grid.grid_bound(segment["high"], origin, step, np.ceil) - 1)
        count = max(0, last - first + 1)
        values_out = np.full((count, n_channels), np.nan)
        records_out = np.full(count, -1, dtype=np.int64)
        values_out[index - first] = frame[value_columns].to_numpy()
        records_out[index - first] = frame["record"].to_numpy()
        grid = np.arange(first, first + count, dtype=np.int64)
        times_out = _grid.grid_times(origin, grid, step)
    else:
        times_out = frame["time"].to_numpy()
        values_out = frame[value_columns].to_numpy()
        records_out = frame["record"].to_numpy()
        internal_breaks = int(sum(not _consecutive(a, b, step)
                                  for a, b in zip(times_out[:-1].tolist(), times_out[1:].tolist())))
    _staging.save(staging, f"segment-{segment['index']:06d}.npz",
                  lambda file: np.savez(file, time=times_out, values=values_out, record=records_out))
    first_valid, last_valid = _anchors(times_out, values_out)
    return {"n_rows": len(times_out), "n_observed": int((records_out >= 0).sum()), "rejects": rejects,
            "internal_breaks": internal_breaks, "moments": _moments(values_out),
            "first_time": times_out[0].item() if len(times_out) else None,
            "last_time": times_out[-1].item() if len(times_out) else None,
            "first_valid": first_valid, "last_valid": last_valid}


def _prefix_moments_task(staging: str, index: int, keep: int) -> dict:
    """The moments of the first ``keep`` steps of a staged segment (its part in the training split)."""
    with np.load(_staging.load(staging, f"segment-{index:06d}.npz")) as staged:
        return {"moments": _moments(staged["values"][:keep])}


def _anchors(times: np.ndarray, values: np.ndarray):
    """Per channel, the (time, value) of the first and the last non-missing value (None where none)."""
    first, last = [], []
    for channel in range(values.shape[1]):
        valid = np.flatnonzero(~np.isnan(values[:, channel]))
        first.append(None if not len(valid) else (times[valid[0]].item(), float(values[valid[0], channel])))
        last.append(None if not len(valid) else (times[valid[-1]].item(), float(values[valid[-1], channel])))
    return first, last


def _finite(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _time_text(value, spec: dict) -> str:
    if spec["time_kind"] == "datetime":
        return str(pd.Timestamp(int(value)))
    return f"{float(value):g}"


def _step_text(step, spec: dict) -> str:
    return _grid.step_text(step, spec["time_kind"])


# ---------------------------------------------------------------- layout (client)
def _layout(segments: list[dict], results: list[dict], series_stats: dict, spec: dict, step, validation: float,
            test: float) -> dict:
    """Where each segment goes: global start, position in its series, run id, fill anchors, split bounds."""
    names = list(series_stats)
    lengths = np.zeros(len(names), dtype=np.int64)
    for segment, result in zip(segments, results):
        lengths[segment["code"]] += result["n_rows"]
    n_channels = len(spec["values"])
    placed, start, run = [], 0, -1
    position = np.zeros(len(names), dtype=np.int64)
    previous_time: dict[int, object] = {}
    for segment, result in zip(segments, results):
        code = segment["code"]
        if result["n_rows"]:
            # A run is a stretch of consecutive grid steps of one series: windows never leave it.
            new_run = code not in previous_time or (
                spec["gaps"] == "reject" and not _consecutive(previous_time[code], result["first_time"], step))
            run += int(new_run)
            previous_time[code] = result["last_time"]
        n = lengths[code]
        n_test, n_validation = int(round(n * test)), int(round(n * validation))
        placed.append({"index": segment["index"], "code": code, "start": start, "n_rows": result["n_rows"],
                       "position": int(position[code]), "run": max(run, 0), "step": _json_number(step),
                       "train_end": int(n - n_test - n_validation), "validation_end": int(n - n_test)})
        start += result["n_rows"]
        position[code] += result["n_rows"]
        run += result["internal_breaks"]
    # Fill anchors: the nearest non-missing value before and after each segment, within its series.
    for channel in range(n_channels):
        carry: dict[int, object] = {}
        for item, result in zip(placed, results):
            item.setdefault("before", [None] * n_channels)[channel] = carry.get(item["code"])
            if result["last_valid"][channel] is not None:
                carry[item["code"]] = result["last_valid"][channel]
        carry = {}
        for item, result in zip(reversed(placed), reversed(results)):
            item.setdefault("after", [None] * n_channels)[channel] = carry.get(item["code"])
            if result["first_valid"][channel] is not None:
                carry[item["code"]] = result["first_valid"][channel]
    for code, name in enumerate(names):
        items = [(item, result) for item, result in zip(placed, results) if item["code"] == code]
        for channel, column in enumerate(spec["values"]):
            if lengths[code] and all(result["first_valid"][channel] is None for _, result in items):
                raise SchemaError(f"Column {column!r}{' of series ' + repr(name) if spec['series'] else ''} has no "
                                  "value at all, so its gaps cannot be filled; drop it from values= or fill it.")
    n_observed = sum(result["n_observed"] for result in results)
    observed = np.zeros(len(names), dtype=np.int64)
    for segment, result in zip(segments, results):
        observed[segment["code"]] += result["n_observed"]
    return {"segments": placed, "n_steps": int(start), "n_observed": int(n_observed),
            "n_inserted": int(start - n_observed), "series_names": names,
            "series_lengths": [int(value) for value in lengths],
            "series_filled": [int(value) for value in lengths - observed]}


def _consecutive(earlier, later, step) -> bool:
    return _grid.consecutive(earlier, later, step)


def _move_to_rejects(accounting: dict, late_rejects: list[dict]) -> dict:
    """Rows quarantined while sorting (duplicates, off-grid times) leave 'stored' for 'rejected'."""
    if not late_rejects:
        return accounting
    reasons = Counter(accounting["reasons"])
    reasons.update(reason_family("sequence", item["reason"]) for item in late_rejects)
    return {**accounting, "stored": accounting["stored"] - len(late_rejects),
            "rejected": accounting["rejected"] + len(late_rejects), "reasons": dict(reasons)}


# ---------------------------------------------------------------- pass 3: write
def fill_gaps(times: np.ndarray, values: np.ndarray, policy: str, before: list, after: list) -> np.ndarray:
    """Fill the NaNs of a segment's ``values`` (steps x channels) by ``policy``.

    Parameters
    ----------
    times : numpy.ndarray
        The segment's grid times.
    values : numpy.ndarray of shape (steps, channels)
    policy : {"ffill", "interpolate"}
    before, after : list
        Per channel, the (time, value) of the nearest non-missing value in the
        previous and next segments of the same series (or None), so the result
        does not depend on where segments end.

    Returns
    -------
    numpy.ndarray
        ``values`` with its gaps filled (a copy).
    """
    filled = values.copy()
    origin = times[0] if len(times) else 0
    relative = (times - origin).astype(np.float64)
    for channel in range(values.shape[1]):
        column = values[:, channel]
        missing = np.isnan(column)
        if not missing.any():
            continue
        known_t = relative[~missing]
        known_v = column[~missing]
        if before[channel] is not None:
            known_t = np.concatenate([[float(before[channel][0] - origin)], known_t])
            known_v = np.concatenate([[before[channel][1]], known_v])
        if after[channel] is not None:
            known_t = np.concatenate([known_t, [float(after[channel][0] - origin)]])
            known_v = np.concatenate([known_v, [after[channel][1]]])
        if policy == "interpolate":
            filled[:, channel] = np.interp(relative, known_t, known_v)
        else:  # ffill: the last known value at or before each step; the first known one before any
            where = np.searchsorted(known_t, relative, side="right") - 1
            filled[:, channel] = known_v[np.maximum(where, 0)]
        filled[~missing, channel] = column[~missing]
    return filled


def _write_task(root: str, staging: str, start: int, pieces: list[tuple], segments: list[dict], spec: dict,
                mean: list[float], std: list[float]) -> np.ndarray:
    by_index = {item["index"]: item for item in segments}
    columns: dict[str, list] = {name: [] for name in ("X", "time", "series", "position", "run", "split", "record")}
    for index, low, high in pieces:
        item = by_index[index]
        with np.load(_staging.load(staging, f"segment-{index:06d}.npz")) as staged:
            times, values, records = staged["time"], staged["values"], staged["record"]
        if spec["gaps"] != "reject":
            values = fill_gaps(times, values, spec["gaps"], item["before"], item["after"])
        scaled = ((values - np.asarray(mean)) / np.asarray(std)).astype(np.float32)
        positions = item["position"] + np.arange(len(times), dtype=np.int64)
        runs = np.full(len(times), item["run"], dtype=np.int64)
        if spec["gaps"] == "reject" and len(times) > 1:
            step = item["step"]
            gap = ~np.array([_consecutive(a, b, step) for a, b in zip(times[:-1].tolist(), times[1:].tolist())])
            runs[1:] += np.cumsum(gap)
        split = np.where(positions < item["train_end"], SPLIT_CODES["train"],
                         np.where(positions < item["validation_end"], SPLIT_CODES["validation"],
                                  SPLIT_CODES["test"])).astype(np.uint8)
        for name, array in (("X", scaled), ("time", times), ("series", np.full(len(times), item["code"], np.int32)),
                            ("position", positions), ("run", runs), ("split", split), ("record", records)):
            columns[name].append(array[low:high])
    return write_chunk(root, start, {name: np.concatenate(parts) for name, parts in columns.items()})


def _write_late_rejects(root: Path, plan: SourcePlan, offsets: list[dict], late_rejects: list[dict]) -> None:
    """The rows rejected while sorting; their records are global, so the row within its file is
    the record minus the file's first record."""
    first_record: dict[str, int] = {}
    for block, block_offset in zip(plan.blocks, offsets):
        first_record.setdefault(block.path, block_offset["global_record"] - block_offset["file_record"])
    frame = pd.DataFrame({
        "source": [plan.blocks[item["block"]].path for item in late_rejects],
        "row": [item["record"] - first_record[plan.blocks[item["block"]].path] + 1 for item in late_rejects],
        "line": pd.array([None] * len(late_rejects), dtype="Int64"),
        "raw": [item["raw"] for item in late_rejects],
        "reason": [item["reason"] for item in late_rejects],
    }).sort_values(["source", "row"], kind="stable")
    write_rejects_part(root, "part-sort", frame)
