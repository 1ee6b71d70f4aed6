"""Tabular ingest: files or a SQL table -> validated, preprocessed Zarr store.

This module owns what is tabular about it: resolving each column's role and
read type (:class:`TabularSchema`), validating rows against it, and the
steps (:class:`TabularSteps`) it plugs into the one ingest pipeline of
:mod:`bigdl.ingest._pipeline`:

1. **read** (one task per input block): parse, validate, quarantine bad rows,
   summarize the block for the preprocessing fit, and stage the valid rows
   as an Arrow IPC file next to the temporary store.
2. **fit** the :class:`~bigdl.preprocessing.TabularPreprocessor` from the
   merged block summaries (the raw input is parsed once).
3. **write** (one task per store chunk): read the staged rows of exactly one
   chunk, transform them, assign splits, and write the chunk.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl._validation import Interval, Options, check_params
from bigdl.errors import SchemaError
from bigdl.ingest import _rows
from bigdl.ingest._pipeline import count_reasons, register_reason_family, run_ingest, write_chunk
from bigdl.ingest.sources import NULL_TOKENS, Block, RawBlock, SourcePlan, plan_sources, read_block
from bigdl.preprocessing._tabular import TabularPreprocessor, canonical_target, summarize, typed_classes
from bigdl.store._dataset import Dataset
from bigdl.store._format import TASKS, assign_split, check_split_parameters, rows_per_chunk_for
from bigdl.store._write import create_arrays

__all__ = ["tabular", "TabularSchema"]

RECORD = "__record__"
IMPUTE = ("mean", "median")
PARAMETERS = {"impute": [Options(IMPUTE)], "task": [Options(TASKS), None], "max_categories": [Interval(int, 1, None)],
              "non_finite": [Options(_rows.NON_FINITE)], "shuffle": [bool]}
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
    non_finite: str = "reject"

    @property
    def read_columns(self) -> list[str]:
        """The columns read from the source: features, then the target and the key."""
        names = list(self.numeric) + list(self.categorical)
        for extra in (self.target, self.key):
            if extra is not None and extra not in names:
                names.append(extra)
        return names

    @property
    def record_column(self) -> str:
        """The column of the staged rows that holds their records: ``__record__``, with more
        underscores while a read column has that name (a source column may be called anything)."""
        name = RECORD
        while name in self.read_columns:
            name += "_"
        return name

    def read_types(self) -> dict[str, pa.DataType]:
        """The Arrow type each read column is parsed as.

        Returns
        -------
        dict of str to pyarrow.DataType
            Numbers (and a regression target) as float64, text (categories, class labels, the key) as string.
        """
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
            impute: str = "mean", non_finite: str = "reject", max_categories: int = 32, validation: float = 0.0,
            test: float = 0.2, seed: int = 0, shuffle: bool = True, rows_per_chunk: int | None = None,
            blocksize: int | str = "64MiB", compression: str = "lz4", encoding: str = "utf-8", delimiter: str = ",",
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
    non_finite : {"reject", "missing"}, default "reject"
        What ``inf``, ``-inf``, ``Infinity`` or a number too large for a
        float64 (``1e309``) in a numeric feature becomes: ``"reject"``
        quarantines the row (reason ``"column 'x': 'inf' is not a finite
        number"``); ``"missing"`` reads the cell as missing, so ``impute``
        fills it.  A non-finite regression target is always quarantined.
        ``NaN`` and empty cells are missing values either way.
    max_categories : int, default 32
        Most frequent categories kept per categorical column; rarer ones share
        an ``__other__`` indicator column.
    validation, test : float, default 0.0 and 0.2
        Expected fractions of samples in the validation and test splits.
    seed : int, default 0
        Seed of the split and of the row shuffle; the same seed and data give
        the same split and the same store.
    shuffle : bool, default True
        Store the rows in a seeded random order across the whole input, so
        that every chunk is a random sample of the data: learners that see a
        chunk or a group of chunks at a time (ChunkForest, ``Incremental``,
        the loader's shuffle buffer) then see unbiased slices even when the
        input is sorted (by date, by a feature that drives the target).  The
        shuffle runs inside the read and write passes: each block is staged
        in random order and each chunk gathers its rows from all blocks, so
        memory stays that of one block and one chunk.  ``False`` keeps the
        input order.  Either way ``record`` is each row's position in the
        input and the split depends only on the key (or record), not on the
        order.
    rows_per_chunk : int, optional
        Rows per store chunk; default: about 32 MiB of ``X`` per chunk.
    blocksize : int or str, default "64MiB"
        Bytes of input per read task (gzip files are read whole).  CSV blocks
        are cut between records, as quoted fields may hold line breaks:
        planning reads each CSV file larger than ``blocksize`` once to find them.
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
    Rows that cannot be used (wrong number of fields, a value that is not a
    number, or not a finite number, in a numeric column, a missing target,
    malformed JSON) are written
    to ``<store>/rejects/*.parquet`` with their source, row, line, raw text and
    reason; the store's ``rows`` attribute counts rows read, stored and
    rejected, and read = stored + rejected always holds.

    Examples
    --------
    >>> ds = bigdl.ingest.tabular("data/*.csv", target="target", store="work/flights.zarr",
    ...                           categorical=["carrier"], drop=["id"], test=0.2)   # doctest: +SKIP
    >>> print(ds.info())                                                           # doctest: +SKIP
    """
    check_params("tabular", {"impute": impute, "task": task, "max_categories": max_categories,
                             "non_finite": non_finite, "shuffle": shuffle}, PARAMETERS)
    check_split_parameters("tabular", validation=validation, test=test, seed=seed, rows_per_chunk=rows_per_chunk,
                           compression=compression)
    blocksize = _rows.parse_blocksize(blocksize, "tabular")
    plan = plan_sources(source, format=format, table=table, blocksize=blocksize, encoding=encoding,
                        delimiter=delimiter, owner="tabular")
    schema = resolve_schema(plan, target=target, categorical=categorical, numeric=numeric, drop=drop,
                            key=key, task=task, impute=impute, seed=seed, non_finite=non_finite)
    steps = TabularSteps(plan, schema, max_categories=max_categories, rows_per_chunk=rows_per_chunk,
                         split_spec={"seed": seed, "validation": validation, "test": test}, compression=compression)
    steps.inputs = tuple(plan.paths)
    steps.shuffle_seed = seed if shuffle else None
    return run_ingest(steps, store, overwrite=overwrite, progress=progress, client=client)


class TabularSteps(_rows.RowSteps):
    """The tabular steps of the ingest pipeline (see :class:`bigdl.ingest._pipeline.IngestSteps`).

    Parameters
    ----------
    plan : SourcePlan
        The planned input blocks.
    schema : TabularSchema
        The column roles and read types.
    max_categories : int
        Most frequent categories kept per categorical column.
    rows_per_chunk : int or None
        Rows per store chunk; None: about 16 MiB of ``X`` per chunk, decided once the features are known.
    split_spec : dict
        ``seed``, ``validation`` and ``test``.
    compression : str
        The store's codec name.
    """

    kind = "tabular"
    empty_hint = "Check the columns, delimiter and target."

    def __init__(self, plan: SourcePlan, schema: TabularSchema, *, max_categories: int, rows_per_chunk,
                 split_spec: dict, compression: str):
        super().__init__(plan, schema)
        self.schema, self.split_spec, self.compression = schema, split_spec, compression
        self.max_categories, self.requested_rows_per_chunk = max_categories, rows_per_chunk
        self.read_task, self.write_task = _read_task, _write_task

    def fit(self, read_results: list[dict], accounting: dict) -> None:
        schema = self.schema
        summary = read_results[0]["summary"]
        for result in read_results[1:]:
            summary = summary.merge(result["summary"])
        if schema.task == "classification":
            _check_two_classes(summary.target_counts, schema, self.plan.paths)
        self.preprocessor = TabularPreprocessor.fit_summary(
            summary, numeric=list(schema.numeric), categorical=list(schema.categorical), target=schema.target,
            task=schema.task, impute=schema.impute, max_categories=self.max_categories,
            target_type=schema.target_type, non_finite=schema.non_finite,
        )
        self.rows_per_chunk = self.requested_rows_per_chunk or rows_per_chunk_for(self.preprocessor.n_features_in_)

    def create_arrays(self, root: Path, n_rows: int) -> None:
        schema = self.schema
        y_dtype = None if schema.target is None else ("int64" if schema.task == "classification" else "float32")
        create_arrays(root, n_rows, self.rows_per_chunk, x_shape=(self.preprocessor.n_features_in_,), y_dtype=y_dtype,
                      compression=self.compression)

    def write_job(self, root: str, staging: str, start: int, pieces: list[tuple]) -> tuple:
        # A staged row's record is local to its block: add the records of the blocks before it.
        pieces = [(block, low, high, self.offsets[block]["global_record"]) for block, low, high in pieces]
        return (root, staging, pieces, start, self.preprocessor.to_state(), self.schema, self.split_spec,
                self.shuffle_seed)

    def attributes(self, accounting: dict) -> dict:
        target_state = self.preprocessor.target_
        return dict(
            split={**self.split_spec, "key": self.schema.key or "record position"},
            feature_names=self.preprocessor.feature_names_, target_name=self.schema.target, task=self.schema.task,
            class_names=target_state.get("classes") if target_state else None,
            preprocessing=self.preprocessor.to_state(), source=self.plan.fingerprint(),
        )


# ---------------------------------------------------------------- checks
def _check_two_classes(target_counts: dict, schema: TabularSchema, paths: list[str]) -> None:
    """Refuse a classification target with one class among the stored rows, worded as image ingest does."""
    classes = [value for value in target_counts if value is not None]
    if len(classes) >= 2:
        return
    where = paths[0] if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more file(s)"
    only = typed_classes(classes, schema.target_type or "string")[0] if classes else "none"
    raise SchemaError(f"Only one class ({only!r}) in the target column {schema.target!r} of {where}; "
                      "classification needs at least two classes.")


def resolve_schema(plan: SourcePlan, *, target, categorical, numeric, drop, key, task, impute, seed,
                   non_finite: str = "reject") -> TabularSchema:
    """Decide each column's role from the parameters and a typed sample.

    Parameters
    ----------
    plan : SourcePlan
        The planned input (its columns and a typed sample).
    target, categorical, numeric, drop, key, task, impute, seed, non_finite
        As given to :func:`tabular`.

    Returns
    -------
    TabularSchema

    Raises
    ------
    SchemaError
        An unknown column, a column given two roles, no feature left, a
        date column not dropped, or a ``task`` the target cannot have.
    """
    columns = plan.columns
    if target is not None and target not in columns:
        match = difflib.get_close_matches(target, columns, n=1)
        raise SchemaError(
            f"The target column {target!r} is not in {plan.paths[0]}; columns found: {columns}."
            + (f" Did you mean {match[0]!r}?" if match else "")
        )
    categorical, numeric, drop = list(categorical or []), list(numeric or []), list(drop or [])
    for names, parameter in ((categorical, "categorical"), (numeric, "numeric"), (drop, "drop")):
        _rows.check_columns(names, columns, parameter)
    if key is not None:
        _rows.check_columns([key], columns, "key")
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
                         impute, seed, non_finite)


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
    _rows.stage_table(staging, block.index,
                      table.append_column(schema.record_column, pa.array(records, type=pa.int64())),
                      shuffle_seed=options.get("shuffle_seed"))
    _rows.stage_rejects(staging, block.index, rejects)
    return {
        "n_records": raw.n_records,
        "n_valid": table.num_rows,
        "n_rejected": len(rejects),
        "n_physical": raw.n_physical,
        "reasons": count_reasons("tabular", rejects),
        "summary": summarize(table, list(schema.numeric), list(schema.categorical), schema.target,
                             schema.task, seed=schema.seed + block.index * 7919,
                             keep_sample=schema.impute == "median"),
    }


register_reason_family("tabular")(_rows.row_reason_family)


def validate(raw: RawBlock, schema: TabularSchema, block: Block) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """Coerce a parsed block to the schema's types; move rows that do not fit to rejects.

    Parameters
    ----------
    raw : RawBlock
        The parsed block and its own rejects.
    schema : TabularSchema
    block : Block
        Where the block comes from (for the rejects).

    Returns
    -------
    (pyarrow.Table, numpy.ndarray, list of dict)
        The valid rows, their records, and the rejected rows with their reasons.
    """
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
        # A non-finite target is always refused: there is nothing to impute a target with.
        is_target = name == schema.target
        values = _rows.checked_numbers(table.column(name), name, reject, label="target" if is_target else "column",
                                       non_finite="reject" if is_target else schema.non_finite)
        columns[name] = pa.chunked_array([pa.array(values, from_pandas=True)])
    for name in schema.categorical:
        columns[name] = _rows.text_or_null(table.column(name))
    if schema.key is not None:
        columns[schema.key] = _rows.text_or_null(table.column(schema.key))
    if schema.target is not None:
        if schema.task == "classification":
            target_column = table.column(schema.target)
            if pa.types.is_string(target_column.type):
                target_column = _rows.text_or_null(target_column)
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
    rejects = _rows.rejected_rows(raw, bad, reasons)
    if bad.any():
        validated = validated.filter(pa.array(~bad))
    return validated, raw.records[~bad], rejects


def _write_task(root: str, staging: str, pieces: list[tuple], start: int, state: dict,
                schema: TabularSchema, split_spec: dict, shuffle_seed: int | None = None) -> np.ndarray:
    preprocessor = TabularPreprocessor.from_state(state)
    table = pa.concat_tables([_rows.read_staged(staging, block).slice(low, high - low)
                              for block, low, high, _ in pieces])
    record_offsets = np.concatenate([np.full(high - low, offset, dtype=np.int64)
                                     for _, low, high, offset in pieces])
    records = table.column(schema.record_column).to_numpy() + record_offsets
    if schema.key is not None:
        keys = pd.util.hash_array(table.column(schema.key).to_numpy(zero_copy_only=False).astype(object))
    else:
        keys = records.astype(np.uint64)
    arrays = {"X": preprocessor.transform(table)}
    if schema.target is not None:
        arrays["y"] = preprocessor.transform_target(table.column(schema.target))
    arrays["split"] = assign_split(keys, split_spec["seed"], split_spec["validation"], split_spec["test"])
    arrays["record"] = records
    return write_chunk(root, start, arrays, shuffle_seed=shuffle_seed)
