"""Tabular ingest: files or a SQL table -> validated, preprocessed Zarr store.

Two passes, each one Dask task per piece of work:

1. **read** (one task per input block): parse, validate, quarantine bad rows,
   summarize the block for the preprocessing fit, and stage the valid rows
   as an Arrow IPC file next to the temporary store.
2. **write** (one task per store chunk): read the staged rows of exactly one
   chunk, transform them with the fitted preprocessor, assign splits, and
   write the chunk.  Tasks write whole, aligned chunks only, so no two tasks
   touch one Zarr chunk (misaligned writes corrupt data, dask #12583).

The raw input is parsed once; the fit needs only the merged block summaries.
Everything is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl.errors import EmptyResultError, SchemaError
from bigdl.preprocessing._tabular import TabularPreprocessor, canonical_target, summarize
from bigdl.ingest._sources import NULL_TOKENS, Block, RawBlock, SourcePlan, plan_sources, read_block
from bigdl.store._dataset import Dataset, open_store
from bigdl.runtime import ingest_job, run_tasks
from bigdl.store._commit import atomic_store
from bigdl.store._format import assign_split, check_split_parameters, check_whole_chunk, compressor, rows_per_chunk_for
from bigdl.store._write import create_arrays, finish_store

__all__ = ["tabular", "TabularSchema"]

RECORD = "__record__"
IMPUTE = ("mean", "median")
TASKS = ("classification", "regression")
# An integer or integral target with at most this many distinct values in
# the sample is taken as class labels.
MAX_INFERRED_CLASSES = 50


@dataclass(frozen=True)
class TabularSchema:
    """Column roles and read types, resolved once on the client."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str | None
    task: str | None
    target_type: str | None
    key: str | None
    impute: str
    seed: int

    @property
    def read_columns(self) -> list[str]:
        names = list(self.numeric) + list(self.categorical)
        for extra in (self.target, self.key):
            if extra is not None and extra not in names:
                names.append(extra)
        return names

    def read_types(self) -> dict[str, pa.DataType]:
        types = {name: pa.float64() for name in self.numeric}
        types.update({name: pa.string() for name in self.categorical})
        if self.target is not None:
            types[self.target] = pa.float64() if self.task == "regression" else pa.string()
        if self.key is not None:
            types[self.key] = pa.string()
        return types


def tabular(source, *, target: str | None = None, store: str | os.PathLike, format: str | None = None,
            table: str | None = None, categorical: list[str] | None = None, numeric: list[str] | None = None,
            drop: list[str] | None = None, key: str | None = None, task: str | None = None,
            impute: str = "mean", max_categories: int = 32, validation: float = 0.0, test: float = 0.2,
            seed: int = 0, rows_per_chunk: int | None = None, blocksize: int | str = "64MiB",
            compression: str = "lz4", encoding: str = "utf-8", delimiter: str = ",",
            overwrite: bool = False, progress: bool = True, client=None) -> Dataset:
    """Ingest tabular data into a Zarr store, fitting preprocessing out of core.

    Parameters
    ----------
    source : str, path or list of them
        CSV files (``.csv``, ``.csv.gz``), JSON lines (``.jsonl``), Parquet
        files, a glob (``"data/*.csv"``), a folder of such files, or a
        SQLAlchemy URL (``"sqlite:///data.db"``) together with ``table=``.
    target : str, optional
        The column to predict; None for unlabelled data.
    store : str or path
        Where to write the store (a directory, usually ``*.zarr``).
    format : {"csv", "jsonl", "parquet", "sql"}, optional
        Input format; sniffed from the file names when not given.
    table : str, optional
        Table name when ``source`` is a database URL.
    categorical, numeric : list of str, optional
        Force these columns to be one-hot encoded / treated as numbers.
        Other columns are typed from a sample of the data: numbers (and
        columns that are nearly all numbers) are numeric, text is categorical.
    drop : list of str, optional
        Columns to ignore.
    key : str, optional
        A column whose value identifies a sample (an id); the split is a hash
        of it, so a sample keeps its split whatever the row order.  The key is
        not used as a feature.  Default: the row's position in the input.
    task : {"classification", "regression"}, optional
        Inferred when not given: text, boolean and integer targets with at
        most 50 distinct values are classes, other numbers are regression.
    impute : {"mean", "median"}, default "mean"
        Fill for missing numbers (the median is estimated from a bounded
        sample per block when blocks hold more than 5,000 values).
    max_categories : int, default 32
        Most frequent categories kept per categorical column; rarer ones share
        an ``__other__`` indicator column.
    validation, test : float, default 0.0 and 0.2
        Expected fractions of samples in the validation and test splits.
    seed : int, default 0
        Seed of the split; the same seed and data give the same split.
    rows_per_chunk : int, optional
        Rows per store chunk; default: about 32 MiB of ``X`` per chunk.
    blocksize : int or str, default "64MiB"
        Bytes of input per read task (gzip files are read whole).
    compression : {"lz4", "zstd", "none"}, default "lz4"
        Blosc codec of the store's arrays.
    encoding : str, default "utf-8"
        Text encoding of CSV and JSON lines files.
    delimiter : str, default ","
        Field separator of CSV files.
    overwrite : bool, default False
        Replace an existing store (only once the new one is complete).
    progress : bool, default True
        Show progress bars.
    client : distributed.Client, optional
        Where to run; default: the current client, or Dask's threaded
        scheduler when there is none.

    Returns
    -------
    Dataset
        The store, opened.

    Notes
    -----
    Rows that cannot be used (wrong number of fields, a value that is not a
    number in a numeric column, a missing target, malformed JSON) are written
    to ``<store>/rejects/*.parquet`` with their source, row, line, raw text and
    reason; the store's ``rows`` attribute counts rows read, stored and
    rejected, and read = stored + rejected always holds.

    Examples
    --------
    >>> ds = bigdl.ingest.tabular("data/*.csv", target="target", store="work/flights.zarr",
    ...                           categorical=["carrier"], drop=["id"], test=0.2)   # doctest: +SKIP
    >>> print(ds.info())                                                           # doctest: +SKIP
    """
    from dask.utils import parse_bytes

    started = time.perf_counter()
    _check_parameters(impute=impute, task=task, validation=validation, test=test,
                      max_categories=max_categories, rows_per_chunk=rows_per_chunk, seed=seed)
    blocksize = parse_bytes(blocksize) if isinstance(blocksize, str) else int(blocksize)
    compressor(compression)  # validate the name before any work
    plan = plan_sources(source, format=format, table=table, blocksize=blocksize, encoding=encoding,
                        delimiter=delimiter)
    schema = resolve_schema(plan, target=target, categorical=categorical, numeric=numeric, drop=drop,
                            key=key, task=task, impute=impute, seed=seed)
    options = dict(plan.options, all_columns=plan.columns)

    with atomic_store(store, overwrite=overwrite, inputs=plan.paths) as temporary, \
            ingest_job(Path(store).absolute(), temporary):
        staging = temporary / "_staging"
        staging.mkdir()
        read_results = run_tasks(
            "bigdl-ingest-read", _read_task,
            [(block, schema, options, str(staging)) for block in plan.blocks],
            desc=f"ingest {Path(plan.paths[0]).name}: read", progress=progress, client=client,
        )
        accounting = _account(plan, read_results)
        if accounting["stored"] == 0:
            raise EmptyResultError(_empty_message(plan, accounting, staging))
        summary = read_results[0]["summary"]
        for result in read_results[1:]:
            summary = summary.merge(result["summary"])
        preprocessor = TabularPreprocessor.fit_summary(
            summary, numeric=list(schema.numeric), categorical=list(schema.categorical), target=schema.target,
            task=schema.task, impute=impute, max_categories=max_categories, target_type=schema.target_type,
        )
        n_features = preprocessor.n_features_in_
        chunk_rows = rows_per_chunk or rows_per_chunk_for(n_features)
        y_dtype = None if schema.target is None else ("int64" if schema.task == "classification" else "float32")
        create_arrays(temporary, accounting["stored"], chunk_rows, x_shape=(n_features,), y_dtype=y_dtype,
                      compression=compression)
        chunk_jobs = _chunk_jobs(read_results, accounting, chunk_rows)
        split_spec = {"seed": seed, "validation": validation, "test": test}
        write_results = run_tasks(
            "bigdl-ingest-write", _write_task,
            [(str(temporary), str(staging), pieces, start, preprocessor.to_state(), schema, split_spec)
             for start, pieces in chunk_jobs],
            desc=f"ingest {Path(plan.paths[0]).name}: write", progress=progress, client=client,
        )
        reject_jobs = [(str(staging), str(temporary / "rejects"), block.index, block.path, offsets)
                       for block, result, offsets in zip(plan.blocks, read_results, accounting["offsets"])
                       if result["n_rejected"]]
        if reject_jobs:
            (temporary / "rejects").mkdir()
            run_tasks("bigdl-ingest-rejects", _rejects_task, reject_jobs, desc="ingest: rejects",
                      progress=progress, client=client)
        shutil.rmtree(staging)
        _write_attributes(temporary, plan=plan, schema=schema, preprocessor=preprocessor, accounting=accounting,
                          chunk_split_counts=write_results, split_spec=split_spec, compression=compression,
                          seconds=time.perf_counter() - started)
    return open_store(store)


# ---------------------------------------------------------------- checks
def _check_parameters(*, impute, task, validation, test, max_categories, rows_per_chunk, seed):
    if impute not in IMPUTE:
        raise SchemaError(f"The 'impute' parameter of tabular must be a str among {IMPUTE}; got {impute!r}.")
    if task is not None and task not in TASKS:
        raise SchemaError(f"The 'task' parameter of tabular must be a str among {TASKS} or None; got {task!r}.")
    check_split_parameters("tabular", validation=validation, test=test, seed=seed, rows_per_chunk=rows_per_chunk)
    if not isinstance(max_categories, int) or max_categories < 1:
        raise SchemaError(f"The 'max_categories' parameter of tabular must be an int >= 1; got {max_categories!r}.")


def _unknown_columns(names, columns, parameter) -> None:
    unknown = [name for name in names if name not in columns]
    if unknown:
        hints = {name: difflib.get_close_matches(name, columns, n=1) for name in unknown}
        hint = "; ".join(f"did you mean {match[0]!r} for {name!r}?" for name, match in hints.items() if match)
        raise SchemaError(
            f"Column(s) {unknown} given in {parameter}= are not in the data; columns found: {columns}."
            + (f" ({hint})" if hint else "")
        )


def resolve_schema(plan: SourcePlan, *, target, categorical, numeric, drop, key, task, impute, seed) -> TabularSchema:
    """Decide each column's role from the parameters and a typed sample."""
    columns = plan.columns
    if target is not None and target not in columns:
        match = difflib.get_close_matches(target, columns, n=1)
        raise SchemaError(
            f"The target column {target!r} is not in {plan.paths[0]}; columns found: {columns}."
            + (f" Did you mean {match[0]!r}?" if match else "")
        )
    categorical, numeric, drop = list(categorical or []), list(numeric or []), list(drop or [])
    for names, parameter in ((categorical, "categorical"), (numeric, "numeric"), (drop, "drop")):
        _unknown_columns(names, columns, parameter)
    if key is not None:
        _unknown_columns([key], columns, "key")
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise SchemaError(f"Column(s) {both} are given as both categorical= and numeric=; choose one.")
    excluded = set(drop) | {target, key}
    roles_numeric, roles_categorical = [], []
    for name in columns:
        if name in excluded:
            continue
        if name in categorical:
            roles_categorical.append(name)
        elif name in numeric:
            roles_numeric.append(name)
        else:
            kind = _column_kind(plan, name)
            (roles_numeric if kind == "numeric" else roles_categorical).append(name)
    if not roles_numeric and not roles_categorical:
        raise SchemaError(f"No feature column is left after drop={drop} and target={target!r}; columns: {columns}.")
    target_type = None
    if target is not None:
        target_type, inferred_task = _target_kind(plan, target)
        task = task or inferred_task
        if task == "classification" and target_type == "float" and not _integral(plan, target):
            target_type = "float"
        if task == "regression" and target_type in ("string", "boolean"):
            raise SchemaError(
                f"task='regression' needs a numeric target, but {target!r} holds text; use task='classification'."
            )
    return TabularSchema(tuple(roles_numeric), tuple(roles_categorical), target, task, target_type, key,
                         impute, seed)


def _sample_column(plan: SourcePlan, name: str) -> pa.ChunkedArray:
    return plan.sample.column(name) if name in plan.sample.column_names else pa.chunked_array([], pa.null())


def _mostly_numbers(column: pa.ChunkedArray) -> bool:
    values = column.to_pandas().dropna()
    if values.empty:
        return False
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.notna().mean() >= 0.9


def _column_kind(plan: SourcePlan, name: str) -> str:
    column = _sample_column(plan, name)
    kind = column.type
    if pa.types.is_temporal(kind):
        raise SchemaError(
            f"Column {name!r} holds dates or times, which tabular ingest does not encode; drop it "
            f"(drop=[{name!r}]) or convert it to a number (e.g. a timestamp) before ingesting."
        )
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_null(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        # A few unparseable cells must not turn a numeric column into
        # categories: they are rejected row by row instead.
        return "numeric" if _mostly_numbers(column) else "categorical"
    raise SchemaError(
        f"Column {name!r} has type {kind}, which tabular ingest cannot encode; drop it (drop=[{name!r}])."
    )


def _integral(plan: SourcePlan, name: str) -> bool:
    values = pd.to_numeric(_sample_column(plan, name).to_pandas(), errors="coerce").dropna()
    return bool(len(values)) and bool((values % 1 == 0).all())


def _target_kind(plan: SourcePlan, name: str) -> tuple[str, str]:
    column = _sample_column(plan, name)
    kind = column.type
    if pa.types.is_boolean(kind):
        return "boolean", "classification"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        if not _mostly_numbers(column):
            lowered = {str(value).strip().lower() for value in column.to_pandas().dropna().unique()}
            if lowered and lowered <= {"true", "false"}:
                return "boolean", "classification"
            return "string", "classification"
    values = pd.to_numeric(column.to_pandas(), errors="coerce").dropna()
    if len(values) and (values % 1 == 0).all():
        return "integer", "classification" if values.nunique() <= MAX_INFERRED_CLASSES else "regression"
    return "float", "regression"


# ---------------------------------------------------------------- pass 1
def _read_task(block: Block, schema: TabularSchema, options: dict, staging: str) -> dict:
    raw = read_block(block, schema.read_columns, schema.read_types(), options)
    table, records, rejects = validate(raw, schema, block)
    pa_table = table.append_column(RECORD, pa.array(records, type=pa.int64()))
    with pa.OSFile(os.path.join(staging, f"block-{block.index:06d}.arrow"), "wb") as sink:
        with pa.ipc.new_file(sink, pa_table.schema) as writer:
            writer.write_table(pa_table)
    if rejects:
        pd.DataFrame(rejects, columns=["record", "line", "raw", "reason"]).to_parquet(
            os.path.join(staging, f"rejects-{block.index:06d}.parquet"), index=False)
    return {
        "n_records": raw.n_records,
        "n_valid": table.num_rows,
        "n_rejected": len(rejects),
        "n_physical": raw.n_physical,
        "reasons": Counter(_reason_family(item["reason"]) for item in rejects),
        "summary": summarize(table, list(schema.numeric), list(schema.categorical), schema.target,
                             schema.task, seed=schema.seed + block.index * 7919,
                             keep_sample=schema.impute == "median"),
    }


def _reason_family(reason: str) -> str:
    # "column 'x': 'abc' is not a number" -> "column 'x': not a number", for counting.
    if reason.startswith("duplicate time"):  # sequences: "duplicate time T of series S: kept ..."
        return "duplicate time"
    if " is not on the grid" in reason:
        return "time off the grid"
    head, _, tail = reason.partition(": ")
    if " is not " in tail:
        return f"{head}: not {tail.rsplit(' is not ', 1)[1]}"
    if reason.startswith("expected ") and " fields" in reason:
        return "wrong number of fields"
    if reason.startswith("malformed JSON"):
        return "malformed JSON"
    return reason


def validate(raw: RawBlock, schema: TabularSchema, block: Block) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """Coerce a parsed block to the schema's types; move rows that do not fit to rejects."""
    import pyarrow.compute as pc

    table = raw.table
    n = table.num_rows
    reasons: list[str | None] = [None] * n
    bad = np.zeros(n, dtype=bool)

    def reject(mask: np.ndarray, make_reason) -> None:
        for index in np.flatnonzero(mask & ~bad):
            reasons[index] = make_reason(index)
        bad[mask] = True

    columns: dict[str, pa.ChunkedArray] = {}
    numeric_columns = list(schema.numeric)
    if schema.target is not None and schema.task == "regression":
        numeric_columns.append(schema.target)
    for name in numeric_columns:
        column = table.column(name)
        if pa.types.is_floating(column.type):
            columns[name] = column.cast(pa.float64()) if column.type != pa.float64() else column
            continue
        try:
            columns[name] = pc.cast(column, pa.float64())
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        text = column.to_pandas()
        numbers = pd.to_numeric(text, errors="coerce")
        failed = (text.notna() & numbers.isna() & ~text.isin(NULL_TOKENS)).to_numpy()
        label = "target" if name == schema.target else "column"
        reject(failed, lambda index, name=name, text=text, label=label:
               f"{label} {name!r}: {text.iloc[index]!r} is not a number")
        columns[name] = pa.chunked_array([pa.array(numbers.to_numpy(dtype=np.float64), from_pandas=True)])
    for name in schema.categorical:
        columns[name] = _text_or_null(table.column(name))
    if schema.key is not None:
        columns[schema.key] = _text_or_null(table.column(schema.key))
    if schema.target is not None:
        if schema.task == "classification":
            target_column = table.column(schema.target)
            if pa.types.is_string(target_column.type):
                target_column = _text_or_null(target_column)
            text, misfit = canonical_target(target_column.to_pandas(), schema.target_type)
            original = target_column.to_pandas()
            reject(misfit, lambda index: f"target {schema.target!r}: {original.iloc[index]!r} is not "
                                         f"{'an' if schema.target_type == 'integer' else 'a'} {schema.target_type} "
                                         "like the other targets")
            columns[schema.target] = pa.chunked_array([pa.array(text.to_numpy(dtype=object), type=pa.string(), from_pandas=True)])
        missing = columns[schema.target].is_null().to_numpy(zero_copy_only=False) & ~bad
        reject(missing, lambda index: f"missing target {schema.target!r}")
    ordered = [name for name in schema.read_columns]
    validated = pa.table([columns[name] for name in ordered], names=ordered)
    rejects = []
    for item in raw.rejects:  # rows that could not even be parsed
        line, text = raw.physical(item["record"])
        rejects.append({**item, "line": line, "raw": text if text is not None else item["raw"]})
    if bad.any():
        keep = ~bad
        validated = validated.filter(pa.array(keep))
        for index in np.flatnonzero(bad):
            record = int(raw.records[index])
            line, text = raw.physical(record)
            if text is None:  # Parquet and SQL rows have no text: quote their values
                text = json.dumps({name: table.column(name)[index].as_py() for name in table.column_names},
                                  default=str)
            rejects.append({"record": record, "line": line, "raw": text, "reason": reasons[index]})
        records = raw.records[keep]
    else:
        records = raw.records
    rejects.sort(key=lambda item: item["record"])
    return validated, records, rejects


def _text_or_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column with empty strings as missing (the same in every input format)."""
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    if not len(column):
        return column
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _account(plan: SourcePlan, results: list[dict]) -> dict:
    read = sum(result["n_records"] for result in results)
    stored = sum(result["n_valid"] for result in results)
    rejected = sum(result["n_rejected"] for result in results)
    if read != stored + rejected:
        raise RuntimeError(  # a bug, never a user error: refuse to write an inconsistent store
            f"bigdl internal error: rows read ({read}) != stored ({stored}) + rejected ({rejected}).")
    reasons: Counter = Counter()
    for result in results:
        reasons.update(result["reasons"])
    offsets = []
    global_records = 0
    file_records: dict[str, int] = {}
    file_lines: dict[str, int] = {}
    for block, result in zip(plan.blocks, results):
        offsets.append({"global_record": global_records, "file_record": file_records.get(block.path, 0),
                        "file_line": file_lines.get(block.path, 0)})
        global_records += result["n_records"]
        file_records[block.path] = file_records.get(block.path, 0) + result["n_records"]
        file_lines[block.path] = file_lines.get(block.path, 0) + result["n_physical"]
    return {"read": read, "stored": stored, "rejected": rejected, "reasons": dict(reasons), "offsets": offsets}


def _empty_message(plan: SourcePlan, accounting: dict, staging: Path) -> str:
    if accounting["read"] == 0:
        return f"The input {plan.paths if len(plan.paths) > 1 else plan.paths[0]!r} holds no data rows."
    examples = []
    for part in sorted(staging.glob("rejects-*.parquet"))[:1]:
        frame = pd.read_parquet(part).head(3)
        examples = [f"line {row.line}: {row.reason} ({row.raw!r})" if row.line is not None
                    else f"{row.reason} ({row.raw!r})" for row in frame.itertuples()]
    reasons = ", ".join(f"{count} x {reason}" for reason, count in accounting["reasons"].items())
    return (f"All {accounting['read']} rows were rejected, so nothing would be stored: {reasons}. "
            f"First ones: {'; '.join(examples)}. Check the columns, delimiter and target.")


# ---------------------------------------------------------------- pass 2
def _chunk_jobs(results: list[dict], accounting: dict, chunk_rows: int) -> list[tuple[int, list[tuple]]]:
    """For each store chunk, the (block, from, to, record offset) staged row ranges it holds."""
    n_stored = accounting["stored"]
    valid_starts = np.concatenate([[0], np.cumsum([result["n_valid"] for result in results])])
    jobs = []
    for start in range(0, n_stored, chunk_rows):
        stop = min(start + chunk_rows, n_stored)
        pieces = []
        first = int(np.searchsorted(valid_starts, start, side="right") - 1)
        for block_index in range(first, len(results)):
            block_start = int(valid_starts[block_index])
            block_stop = int(valid_starts[block_index + 1])
            if block_start >= stop:
                break
            low, high = max(start, block_start), min(stop, block_stop)
            if high > low:
                pieces.append((block_index, low - block_start, high - block_start,
                               accounting["offsets"][block_index]["global_record"]))
        jobs.append((start, pieces))
    return jobs


def _write_task(root: str, staging: str, pieces: list[tuple], start: int, state: dict,
                schema: TabularSchema, split_spec: dict) -> np.ndarray:
    import zarr

    preprocessor = TabularPreprocessor.from_state(state)
    tables = []
    for block_index, low, high, _ in pieces:
        source = pa.memory_map(os.path.join(staging, f"block-{block_index:06d}.arrow"), "r")
        tables.append(pa.ipc.open_file(source).read_all().slice(low, high - low))
    table = pa.concat_tables(tables)
    stop = start + table.num_rows
    record_offsets = np.concatenate([np.full(high - low, offset, dtype=np.int64)
                                     for _, low, high, offset in pieces])
    records = table.column(RECORD).to_numpy() + record_offsets
    if schema.key is not None:
        keys = pd.util.hash_array(table.column(schema.key).to_numpy(zero_copy_only=False).astype(object))
    else:
        keys = records.astype(np.uint64)
    split = assign_split(keys, split_spec["seed"], split_spec["validation"], split_spec["test"])
    X = preprocessor.transform(table)
    group = zarr.open_group(root, mode="r+")
    check_whole_chunk(group["X"], start, stop)
    group["X"][start:stop] = X
    if schema.target is not None:
        group["y"][start:stop] = preprocessor.transform_target(table.column(schema.target))
    group["split"][start:stop] = split
    group["record"][start:stop] = records
    return np.bincount(split, minlength=3)


def _rejects_task(staging: str, destination: str, block_index: int, source: str, offsets: dict) -> int:
    frame = pd.read_parquet(os.path.join(staging, f"rejects-{block_index:06d}.parquet"))
    out = pd.DataFrame({
        "source": source,
        "row": (frame["record"] + offsets["file_record"] + 1).astype("int64"),
        "line": (frame["line"] + offsets["file_line"]).astype("Int64"),
        "raw": frame["raw"].astype(object),
        "reason": frame["reason"].astype(object),
    })
    out.to_parquet(os.path.join(destination, f"part-{block_index:06d}.parquet"), index=False)
    return len(out)


def _write_attributes(root: Path, *, plan, schema, preprocessor, accounting, chunk_split_counts, split_spec,
                      compression, seconds) -> None:
    target_state = preprocessor.target_
    finish_store(
        root, kind="tabular", accounting=accounting, chunk_split_counts=chunk_split_counts,
        split={**split_spec, "key": schema.key or "record position"},
        feature_names=preprocessor.feature_names_, target_name=schema.target, task=schema.task,
        class_names=target_state.get("classes") if target_state else None,
        preprocessing=preprocessor.to_state(), source=plan.fingerprint(), compression=compression,
        ingest_seconds=round(seconds, 3),
    )
