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
import math
import os
import shutil
import time as _time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl.errors import EmptyResultError, SchemaError, SourceError, SourceNotFoundError
from bigdl.ingest._sources import NULL_TOKENS, Block, SourcePlan, plan_sources, read_block
from bigdl.ingest._tabular import _account, _reason_family, _rejects_task, _text_or_null
from bigdl.store._dataset import Dataset, open_store
from bigdl.runtime import ingest_job, run_tasks
from bigdl.store._commit import atomic_store
from bigdl.store._format import SPLIT_CODES, check_split_parameters, check_whole_chunk, compressor, rows_per_chunk_for
from bigdl.store._write import create_arrays, finish_store

__all__ = ["sequences", "GAPS", "DUPLICATES"]

GAPS = ("ffill", "interpolate", "reject")
DUPLICATES = ("last", "first", "error")
SAMPLE_PER_BLOCK = 4096
_SERIES, _TIME, _RECORD, _BLOCK = "__series__", "__time__", "__record__", "__block__"
EXTRA_ARRAYS = {"series": "int32", "position": "int64", "run": "int64"}


def sequences(source, *, time: str | None = None, values: list[str] | None = None, series: str | None = None,
              target: str | list[str] | None = None, store: str | os.PathLike, window: int = 16, horizon: int = 1,
              stride: int = 1, frequency=None, gaps: str = "ffill", duplicates: str = "last",
              validation: float = 0.1, test: float = 0.2, scale: bool = True, format: str | None = None,
              table: str | None = None, time_format: str | None = None, rows_per_chunk: int | None = None,
              blocksize: int | str = "64MiB", compression: str = "lz4", overwrite: bool = False,
              progress: bool = True, client=None) -> Dataset:
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
        used for ``.npy`` sources.
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
    frequency : str, number or None
        The step of the regular time grid: a pandas time delta (``"7D"``,
        ``"1h"``) for date/time columns, a number for numeric times.  Default:
        the most common step between consecutive rows of a series.
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
    validation, test : float, default 0.1 and 0.2
        Fractions of each series' steps, taken from its end: the last ``test``
        fraction is the test split, the ``validation`` fraction before it the
        validation split.
    scale : bool, default True
        Standardise each channel with its mean and standard deviation (fitted
        out of core over every stored value; stored for :meth:`Dataset.unscale`).
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
    from dask.utils import parse_bytes

    started = _time.perf_counter()
    _check_parameters(window=window, horizon=horizon, stride=stride, gaps=gaps, duplicates=duplicates,
                      validation=validation, test=test, rows_per_chunk=rows_per_chunk)
    blocksize = parse_bytes(blocksize) if isinstance(blocksize, str) else int(blocksize)
    compressor(compression)
    plan = _plan(source, format=format, table=table, blocksize=blocksize)
    spec = _resolve_columns(plan, time=time, values=values, series=series, target=target, gaps=gaps,
                            time_format=time_format)
    channels = spec["values"]
    chunk_rows = rows_per_chunk or rows_per_chunk_for(len(channels) + 8)
    options = dict(plan.options, all_columns=plan.columns)
    name = Path(plan.paths[0]).name

    with atomic_store(store, overwrite=overwrite, inputs=plan.paths) as temporary, \
            ingest_job(Path(store).absolute(), temporary):
        staging = temporary / "_staging"
        staging.mkdir()
        read_results = run_tasks("bigdl-ingest-read", _read_task,
                                 [(block, spec, options, str(staging)) for block in plan.blocks],
                                 desc=f"ingest {name}: read", progress=progress, client=client)
        accounting = _account(plan, read_results)
        if accounting["stored"] == 0:
            raise EmptyResultError(_empty_message(plan, read_results, accounting))
        step = _frequency(frequency, read_results, spec)
        series_stats = _merge_series(read_results)
        segments = _plan_segments(series_stats, read_results, chunk_rows)
        offsets = [item["global_record"] for item in accounting["offsets"]]
        sort_results = run_tasks(
            "bigdl-ingest-sort", _sort_task,
            [(str(staging), segment, spec, step, duplicates, offsets, [block.path for block in plan.blocks])
             for segment in segments],
            desc=f"ingest {name}: sort", progress=progress, client=client)
        layout = _layout(segments, sort_results, series_stats, spec, step, validation, test)
        # Fitted on the values stored (after duplicates and off-grid rows left), before any fill.
        mean, std = _channel_statistics(sort_results, len(channels), scale)
        late_rejects = [item for result in sort_results for item in result["rejects"]]
        accounting = _move_to_rejects(accounting, late_rejects)
        if layout["n_steps"] == 0:
            raise EmptyResultError(f"Every row of {plan.paths[0]!r} was rejected after sorting: "
                                   f"{accounting['reasons']}.")
        time_dtype = "int64" if spec["time_kind"] == "datetime" else "float64"
        create_arrays(temporary, layout["n_steps"], chunk_rows, x_shape=(len(channels),), compression=compression,
                      x_dimensions=("step", "channel"), extra_arrays={"time": time_dtype, **EXTRA_ARRAYS})
        write_results = run_tasks(
            "bigdl-ingest-write", _write_task,
            [(str(temporary), str(staging), start, pieces, layout["segments"], spec, mean, std)
             for start, pieces in _chunk_jobs(layout, chunk_rows)],
            desc=f"ingest {name}: write", progress=progress, client=client)
        _write_rejects(temporary, plan, read_results, accounting, late_rejects, progress, client)
        shutil.rmtree(staging)
        targets = spec["targets"]
        finish_store(
            temporary, kind="sequence", accounting=accounting, chunk_split_counts=write_results,
            split={"validation": validation, "test": test, "key": "time (last fraction of each series)"},
            feature_names=list(channels), target_name=targets[0] if len(targets) == 1 else list(targets),
            task="regression", class_names=None, compression=compression,
            steps={"observed": layout["n_observed"], "inserted": layout["n_inserted"], "total": layout["n_steps"]},
            window={"window": window, "horizon": horizon, "stride": stride, "targets": list(targets)},
            series={"column": spec["series"], "names": layout["series_names"], "lengths": layout["series_lengths"]},
            preprocessing={"channels": list(channels), "mean": mean, "std": std, "scaled": bool(scale),
                           "time": {"column": spec["time"], "kind": spec["time_kind"], "step": _json_number(step),
                                    "unit": "ns" if spec["time_kind"] == "datetime" else None},
                           "gaps": gaps, "duplicates": duplicates},
            source=plan.fingerprint(), ingest_seconds=round(_time.perf_counter() - started, 3),
        )
    return open_store(store)


# ---------------------------------------------------------------- parameters and planning
def _check_parameters(*, window, horizon, stride, gaps, duplicates, validation, test, rows_per_chunk) -> None:
    for name, value in (("window", window), ("horizon", horizon), ("stride", stride)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise SchemaError(f"The '{name}' parameter of sequences must be an int >= 1; got {value!r}.")
    if gaps not in GAPS:
        raise SchemaError(f"The 'gaps' parameter of sequences must be one of {GAPS}; got {gaps!r}.")
    if duplicates not in DUPLICATES:
        raise SchemaError(f"The 'duplicates' parameter of sequences must be one of {DUPLICATES}; got {duplicates!r}.")
    check_split_parameters("sequences", validation=validation, test=test, seed=0, rows_per_chunk=rows_per_chunk,
                           unit="steps")


def _plan(source, *, format, table, blocksize) -> SourcePlan:
    """Tabular sources through the tabular planner; a ``.npy`` file as row-range blocks."""
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if text is not None and (format == "npy" or text.removeprefix("file://").endswith(".npy")):
        path = text.removeprefix("file://")
        if not os.path.exists(path):
            raise SourceNotFoundError(f"Input file {path!r} does not exist; check the path.")
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as error:
            raise SourceError(f"{path!r} is not a readable .npy array ({error}).") from None
        if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number):
            raise SourceError(f"{path!r} holds a {array.dtype} array of shape {array.shape}; sequences() needs "
                              "numbers of shape (n_steps,) or (n_steps, n_channels).")
        n_channels = 1 if array.ndim == 1 else array.shape[1]
        rows = max(1, blocksize // max(1, array.itemsize * n_channels))
        blocks = [Block(index, path, "npy", start, min(start + rows, len(array)))
                  for index, start in enumerate(range(0, len(array), rows))]
        columns = [f"x{index}" for index in range(n_channels)]
        return SourcePlan("npy", [path], columns, pa.table({name: pa.array([], pa.float64()) for name in columns}),
                          blocks, {"shape": list(array.shape)})
    return plan_sources(source, format=format, table=table, blocksize=blocksize)


def _resolve_columns(plan: SourcePlan, *, time, values, series, target, gaps, time_format) -> dict:
    from bigdl.ingest._tabular import _unknown_columns

    columns = plan.columns
    if plan.format == "npy":
        values = list(values) if values is not None else columns
        if len(values) != len(columns):
            raise SchemaError(f"values= names {len(values)} channels but the array has {len(columns)}.")
        time_kind, series = "number", None
    else:
        if time is None:
            raise SchemaError(f"sequences() needs time= (the time column); the columns are {columns}.")
        _unknown_columns([time], columns, "time")
        if series is not None:
            _unknown_columns([series], columns, "series")
        if values is None:
            values = [name for name in columns if name not in (time, series)]
        values = list(values)
        _unknown_columns(values, columns, "values")
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
            "time_format": time_format}


# ---------------------------------------------------------------- pass 1: read
def _read_task(block: Block, spec: dict, options: dict, staging: str) -> dict:
    rejects: list[dict] = []
    if block.format == "npy":
        array = np.load(block.path, mmap_mode="r")[block.start:block.stop]
        array = np.asarray(array, dtype=np.float64).reshape(len(array), -1)
        times = np.arange(block.start, block.stop, dtype=np.float64)
        values = array
        names = np.full(len(array), "", dtype=object)
        records = np.arange(len(array), dtype=np.int64)
        bad = np.zeros(len(array), dtype=bool)
        if spec["gaps"] == "reject":
            missing = np.isnan(values).any(axis=1)
            for index in np.flatnonzero(missing):
                rejects.append({"record": int(index), "line": None, "raw": json.dumps(values[index].tolist()),
                                "reason": "missing value (gaps='reject')"})
            bad |= missing
        n_records, n_physical = len(array), 0
    else:
        columns = [spec["time"]] + ([spec["series"]] if spec["series"] else []) + spec["values"]
        raw = read_block(block, columns, {}, options)
        times, names, values, bad, reasons = _validate(raw.table, spec)
        for item in raw.rejects:
            line, text = raw.physical(item["record"])
            rejects.append({**item, "line": line, "raw": text if text is not None else item["raw"]})
        for index in np.flatnonzero(bad):
            record = int(raw.records[index])
            line, text = raw.physical(record)
            if text is None:
                text = json.dumps({name: raw.table.column(name)[index].as_py() for name in raw.table.column_names},
                                  default=str)
            rejects.append({"record": record, "line": line, "raw": text, "reason": reasons[index]})
        records = raw.records
        n_records, n_physical = raw.n_records, raw.n_physical
    keep = ~bad
    times, names, values, records = times[keep], names[keep], values[keep], records[keep]
    rejects.sort(key=lambda item: item["record"])
    time_type = pa.int64() if spec["time_kind"] == "datetime" else pa.float64()
    staged = pa.table({_SERIES: pa.array(names, pa.string()), _TIME: pa.array(times, time_type),
                       **{f"v{index}": pa.array(values[:, index]) for index in range(values.shape[1])},
                       _RECORD: pa.array(records, pa.int64())})
    with pa.OSFile(os.path.join(staging, f"block-{block.index:06d}.arrow"), "wb") as sink:
        with pa.ipc.new_file(sink, staged.schema) as writer:
            writer.write_table(staged)
    if rejects:
        pd.DataFrame(rejects, columns=["record", "line", "raw", "reason"]).to_parquet(
            os.path.join(staging, f"rejects-{block.index:06d}.parquet"), index=False)
    return {"n_records": n_records, "n_valid": int(keep.sum()), "n_rejected": len(rejects),
            "n_physical": n_physical, "reasons": Counter(_reason_family(item["reason"]) for item in rejects),
            **_summarize(block.index, times, names, values)}


def _validate(table: pa.Table, spec: dict):
    """Times, series ids and values of a parsed block; rows that do not fit are marked with a reason."""
    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n

    def reject(mask, make_reason):
        for index in np.flatnonzero(mask & ~bad):
            reasons[index] = make_reason(index)
        bad[mask] = True

    column = table.column(spec["time"])
    text = column.to_pandas()
    present = text.notna().to_numpy().copy()
    if not (pd.api.types.is_numeric_dtype(text) or pd.api.types.is_datetime64_any_dtype(text)):
        present &= ~text.astype(object).isin(NULL_TOKENS).to_numpy()
    reject(~present, lambda index: f"missing time {spec['time']!r}")
    if spec["time_kind"] == "datetime":
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            parsed = pd.to_datetime(text)
        else:
            parsed = pd.to_datetime(text.where(present, None), errors="coerce", format=spec["time_format"])
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        failed = parsed.isna().to_numpy() & present
        reject(failed, lambda index: f"time {spec['time']!r}: {text.iloc[index]!r} is not a date/time")
        times = parsed.to_numpy(dtype="datetime64[ns]").view(np.int64)
    else:
        numbers = pd.to_numeric(text, errors="coerce")
        failed = numbers.isna().to_numpy() & present
        reject(failed, lambda index: f"time {spec['time']!r}: {text.iloc[index]!r} is not a number")
        times = numbers.to_numpy(dtype=np.float64)
    if spec["series"]:
        ids = _text_or_null(table.column(spec["series"])).to_pandas()
        reject(ids.isna().to_numpy(), lambda index: f"missing series id {spec['series']!r}")
        names = ids.fillna("").to_numpy(dtype=object)
    else:
        names = np.full(n, "", dtype=object)
    values = np.empty((n, len(spec["values"])), dtype=np.float64)
    for position, name in enumerate(spec["values"]):
        column = table.column(name)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            values[:, position] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            continue
        raw = column.to_pandas()
        numbers = pd.to_numeric(raw, errors="coerce")
        failed = (raw.notna() & numbers.isna() & ~raw.isin(NULL_TOKENS)).to_numpy()
        reject(failed, lambda index, name=name, raw=raw: f"column {name!r}: {raw.iloc[index]!r} is not a number")
        values[:, position] = numbers.to_numpy(dtype=np.float64)
    if spec["gaps"] == "reject":
        for position, name in enumerate(spec["values"]):
            reject(np.isnan(values[:, position]), lambda index, name=name: f"missing value {name!r} (gaps='reject')")
    return times, names, values, bad, reasons


def _summarize(index: int, times: np.ndarray, names: np.ndarray, values: np.ndarray) -> dict:
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
    return {"series": series, "steps": steps, "sample": (names[chosen], times[chosen])}


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel count, mean and sum of squared deviations of the non-missing values."""
    count = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), 0.0)
        m2 = np.nansum((values - mean) ** 2, axis=0)
    return count.astype(np.float64), mean, m2


def _frequency(frequency, results: list[dict], spec: dict):
    """The grid step in time units (ns for dates), given or the most common step."""
    if frequency is not None:
        if spec["time_kind"] == "datetime":
            try:
                step = pd.Timedelta(frequency).value
            except (ValueError, TypeError):
                raise SchemaError(f"The 'frequency' parameter of sequences must be a fixed time delta such as "
                                  f"'7D' or '1h' for a date/time column; got {frequency!r}.") from None
        else:
            step = float(frequency) if isinstance(frequency, (int, float)) and not isinstance(frequency, bool) \
                else None
        if step is None or not step > 0:
            raise SchemaError(f"The 'frequency' parameter of sequences must be positive; got {frequency!r}.")
        return step
    steps: Counter = Counter()
    for result in results:
        steps.update(result["steps"])
    if not steps:
        raise SchemaError("Cannot infer the time step: no series has two rows with different times. "
                          "Pass frequency= (e.g. '1D', or a number for numeric times).")
    step = steps.most_common(1)[0][0]
    return int(step) if spec["time_kind"] == "datetime" else float(step)


def _json_number(step):
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


def _plan_segments(series_stats: dict, results: list[dict], chunk_rows: int) -> list[dict]:
    """Cut each series into time ranges of about ``chunk_rows`` rows at quantiles of the sampled times."""
    names = np.concatenate([result["sample"][0] for result in results]).astype(object)
    times = np.concatenate([result["sample"][1] for result in results])
    segments = []
    for code, (name, (count, low, high)) in enumerate(series_stats.items()):
        pieces = math.ceil(count / chunk_rows)
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
def _grid(times: np.ndarray, origin, step):
    """Grid index of each time and whether it lies on the grid ``origin + k * step``."""
    if isinstance(step, (int, np.integer)):
        offset = times.astype(np.int64) - np.int64(origin)
        return offset // step, offset % step == 0
    position = (times - origin) / step
    nearest = np.round(position)
    return nearest.astype(np.int64), np.abs(position - nearest) < 1e-6


def _grid_bound(value, origin, step, rounding) -> int:
    """``rounding((value - origin) / step)`` as an int, exact for integer (ns) times."""
    if isinstance(step, (int, np.integer)):
        offset = int(value) - int(origin)
        return offset // int(step) if rounding is np.floor else -((-offset) // int(step))
    position = (value - origin) / step
    nearest = round(position)
    return int(nearest) if abs(position - nearest) < 1e-6 else int(rounding(position))


def _sort_task(staging: str, segment: dict, spec: dict, step, duplicates: str, offsets: list[int],
               paths: list[str]) -> dict:
    import pyarrow.compute as pc

    n_channels = len(spec["values"])
    parts = []
    for block in segment["blocks"]:
        source = pa.memory_map(os.path.join(staging, f"block-{block:06d}.arrow"), "r")
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
        index, on_grid = _grid(frame["time"].to_numpy(), origin, step)
        if not on_grid.all():
            quarantine(~on_grid, lambda row: f"time {_time_text(row.time, spec)}{label} is not on the grid "
                                             f"(start {_time_text(origin, spec)}, step {_step_text(step, spec)}); "
                                             "pass frequency= to choose the grid")
            frame, index = frame[on_grid], index[on_grid]
        # The segment owns the grid points from the first at or after max(low, start) to the last
        # before min(high, end], whether or not a row was observed there.
        first = 0 if segment["low"] is None else max(0, _grid_bound(segment["low"], origin, step, np.ceil))
        last = _grid_bound(segment["end"], origin, step, np.floor)
        if segment["high"] is not None:
            last = min(last, _grid_bound(segment["high"], origin, step, np.ceil) - 1)
        count = max(0, last - first + 1)
        values_out = np.full((count, n_channels), np.nan)
        records_out = np.full(count, -1, dtype=np.int64)
        values_out[index - first] = frame[value_columns].to_numpy()
        records_out[index - first] = frame["record"].to_numpy()
        grid = np.arange(first, first + count, dtype=np.int64)
        times_out = (np.int64(origin) + grid * np.int64(step)) if isinstance(step, (int, np.integer)) \
            else origin + grid.astype(np.float64) * step
    else:
        times_out = frame["time"].to_numpy()
        values_out = frame[value_columns].to_numpy()
        records_out = frame["record"].to_numpy()
        internal_breaks = int(sum(not _consecutive(a, b, step)
                                  for a, b in zip(times_out[:-1].tolist(), times_out[1:].tolist())))
    np.savez(os.path.join(staging, f"segment-{segment['index']:06d}.npz"), time=times_out, values=values_out,
             record=records_out)
    first_valid, last_valid = _anchors(times_out, values_out)
    return {"n_rows": len(times_out), "n_observed": int((records_out >= 0).sum()), "rejects": rejects,
            "internal_breaks": internal_breaks, "moments": _moments(values_out),
            "first_time": times_out[0].item() if len(times_out) else None,
            "last_time": times_out[-1].item() if len(times_out) else None,
            "first_valid": first_valid, "last_valid": last_valid}


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
    return str(pd.Timedelta(int(step))) if spec["time_kind"] == "datetime" else f"{step:g}"


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
    return {"segments": placed, "n_steps": int(start), "n_observed": int(n_observed),
            "n_inserted": int(start - n_observed), "series_names": names,
            "series_lengths": [int(value) for value in lengths]}


def _consecutive(earlier, later, step) -> bool:
    if isinstance(step, (int, np.integer)):
        return int(later) - int(earlier) == int(step)
    return abs((later - earlier) - step) < 1e-6 * step


def _move_to_rejects(accounting: dict, late_rejects: list[dict]) -> dict:
    """Rows quarantined while sorting (duplicates, off-grid times) leave 'stored' for 'rejected'."""
    if not late_rejects:
        return accounting
    reasons = Counter(accounting["reasons"])
    reasons.update(_reason_family(item["reason"]) for item in late_rejects)
    return {**accounting, "stored": accounting["stored"] - len(late_rejects),
            "rejected": accounting["rejected"] + len(late_rejects), "reasons": dict(reasons)}


def _empty_message(plan: SourcePlan, results: list[dict], accounting: dict) -> str:
    if accounting["read"] == 0:
        return f"The input {plan.paths[0]!r} holds no data rows."
    reasons = ", ".join(f"{count} x {reason}" for reason, count in accounting["reasons"].items())
    return (f"All {accounting['read']} rows of {plan.paths[0]!r} were rejected, so nothing would be stored: "
            f"{reasons}. Check time=, values= and time_format=.")


# ---------------------------------------------------------------- pass 3: write
def _chunk_jobs(layout: dict, chunk_rows: int) -> list[tuple[int, list[tuple]]]:
    """For each store chunk, the (segment, from, to) row ranges it holds."""
    segments = [item for item in layout["segments"] if item["n_rows"]]
    starts = np.array([item["start"] for item in segments] + [layout["n_steps"]])
    jobs = []
    for start in range(0, layout["n_steps"], chunk_rows):
        stop = min(start + chunk_rows, layout["n_steps"])
        pieces = []
        first = int(np.searchsorted(starts, start, side="right") - 1)
        for number in range(first, len(segments)):
            low, high = max(start, int(starts[number])), min(stop, int(starts[number + 1]))
            if int(starts[number]) >= stop:
                break
            if high > low:
                pieces.append((segments[number]["index"], low - int(starts[number]), high - int(starts[number])))
        jobs.append((start, pieces))
    return jobs


def fill_gaps(times: np.ndarray, values: np.ndarray, policy: str, before: list, after: list) -> np.ndarray:
    """Fill the NaNs of a segment's ``values`` (steps x channels) by ``policy``.

    ``before`` and ``after`` hold, per channel, the (time, value) of the
    nearest non-missing value in the previous and next segments of the same
    series (or None), so the result does not depend on where segments end.
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
    import zarr

    by_index = {item["index"]: item for item in segments}
    columns: dict[str, list] = {name: [] for name in ("X", "time", "series", "position", "run", "split", "record")}
    for index, low, high in pieces:
        item = by_index[index]
        with np.load(os.path.join(staging, f"segment-{index:06d}.npz")) as staged:
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
    data = {name: np.concatenate(parts) for name, parts in columns.items()}
    stop = start + len(data["time"])
    group = zarr.open_group(root, mode="r+")
    check_whole_chunk(group["X"], start, stop)
    for name, array in data.items():
        group[name][start:stop] = array
    return np.bincount(data["split"], minlength=3)


def _write_rejects(temporary: Path, plan: SourcePlan, read_results: list[dict], accounting: dict,
                   late_rejects: list[dict], progress: bool, client) -> None:
    jobs = [(str(temporary / "_staging"), str(temporary / "rejects"), block.index, block.path, offsets)
            for block, result, offsets in zip(plan.blocks, read_results, accounting["offsets"])
            if result["n_rejected"]]
    if not jobs and not late_rejects:
        return
    (temporary / "rejects").mkdir()
    if jobs:
        run_tasks("bigdl-ingest-rejects", _rejects_task, jobs, desc="ingest: rejects", progress=progress,
                  client=client)
    if late_rejects:
        # Records here are global; the row within its file is the record minus the file's first record.
        first_record: dict[str, int] = {}
        for block, offsets in zip(plan.blocks, accounting["offsets"]):
            first_record.setdefault(block.path, offsets["global_record"] - offsets["file_record"])
        frame = pd.DataFrame({
            "source": [plan.blocks[item["block"]].path for item in late_rejects],
            "row": [item["record"] - first_record[plan.blocks[item["block"]].path] + 1 for item in late_rejects],
            "line": pd.array([None] * len(late_rejects), dtype="Int64"),
            "raw": [item["raw"] for item in late_rejects],
            "reason": [item["reason"] for item in late_rejects],
        }).sort_values(["source", "row"], kind="stable")
        frame.to_parquet(temporary / "rejects" / "part-sort.parquet", index=False)
