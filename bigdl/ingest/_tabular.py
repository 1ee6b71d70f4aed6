"""Tabular ingest: files or a SQL table -> validated, preprocessed Zarr store.

This module owns what is tabular about it: resolving each column's role and
read type (:class:`TabularSchema`), validating rows against it, and the
steps (:class:`TabularSteps`) it plugs into the one ingest pipeline of
:mod:`bigdl.ingest._pipeline`:

1. **read** (one task per input block): parse, validate (dates and times
   become naive UTC timestamps), quarantine bad rows, summarize the block for
   the preprocessing fit, and stage the valid rows as an Arrow IPC file next
   to the temporary store.
2. **fit** the :class:`~bigdl.preprocessing.TabularPreprocessor` from the
   merged block summaries (the raw input is parsed once).
3. **encode** (only for frequency- or target-encoded columns; one task per
   staged block): these encodings are fitted on the training rows alone, and
   a row's split is a function of its key or of its position in the whole
   input, known only once every block has been read (block offsets).  So a
   second, light pass reads the staged blocks (memory-mapped, a few columns),
   assigns each row its split (and, for target encoding, its fold) exactly as
   the write does, and counts per value and fold the training rows and their
   target sums.
4. **write** (one task per store chunk): read the staged rows of exactly one
   chunk, assign splits, transform them, and write the chunk.
"""

from __future__ import annotations

import difflib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl._validation import Interval, Options, Predicate, check_params
from bigdl.errors import CategoriesFoldedWarning, SchemaError
from bigdl.ingest import _rows
from bigdl.ingest._pipeline import count_reasons, register_reason_family, run_ingest, write_chunk
from bigdl.ingest.sources import NULL_TOKENS, Block, RawBlock, SourcePlan, plan_sources, read_block
from bigdl.preprocessing._dates import (DATETIME_PARTS, DEFAULT_DATETIME_PARTS, EPOCH_UNITS, TIME_RANGE,
                                        part_feature_name, to_utc_times)
from bigdl.preprocessing._tabular import (CATEGORICAL_ENCODINGS, MAX_CATEGORIES_BOUND, TARGET_FOLDS,
                                          TabularPreprocessor, canonical_target, merge_encoding_summaries, summarize,
                                          typed_classes)
from bigdl.store._dataset import Dataset
from bigdl.store._format import SPLIT_CODES, TASKS, assign_folds, assign_split, check_split_parameters, rows_per_chunk_for
from bigdl.store._write import create_arrays

__all__ = ["tabular", "TabularSchema"]

RECORD = "__record__"
IMPUTE = ("mean", "median")
DEFAULT_MAX_CATEGORIES = 32


def _listed(options) -> str:
    return "{" + ", ".join(repr(option) for option in options) + "}"


def _is_names(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value)


def _is_mapping_of(value, allowed) -> bool:
    return isinstance(value, dict) and all(isinstance(name, str) and allowed(item) for name, item in value.items())


PARAMETERS = {
    "impute": [Options(IMPUTE)], "task": [Options(TASKS), None], "max_categories": [Interval(int, 1, None), None],
    "non_finite": [Options(_rows.NON_FINITE)], "shuffle": [bool],
    "datetime": [None, Predicate(_is_names, "a list of column names"),
                 Predicate(lambda value: _is_mapping_of(value, lambda unit: unit is None or unit in EPOCH_UNITS),
                           f"a dict of column names to an epoch unit among {_listed(EPOCH_UNITS)} or None")],
    "datetime_parts": [Predicate(lambda value: _is_names(value) and 0 < len(value) == len(set(value))
                                 and set(value) <= set(DATETIME_PARTS),
                                 f"a non-empty list of distinct names among {_listed(DATETIME_PARTS)}")],
    "categorical_encoding": [None, Options(CATEGORICAL_ENCODINGS),
                             Predicate(lambda value: _is_mapping_of(value, lambda item: item in CATEGORICAL_ENCODINGS),
                                       f"a dict of column names to a str among {_listed(CATEGORICAL_ENCODINGS)}")],
}
logger = logging.getLogger(__name__)
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
    #: Date/time columns, each ``(name, unit)``: the unit of epoch numbers, or None for text and timestamps.
    datetime: tuple[tuple[str, str | None], ...] = ()
    datetime_parts: tuple[str, ...] = DEFAULT_DATETIME_PARTS
    #: Categorical columns encoded otherwise than one-hot, each ``(name, "frequency" | "target")``.
    encodings: tuple[tuple[str, str], ...] = ()

    @property
    def datetime_spec(self) -> list[dict]:
        """The date/time columns as the preprocessing takes them: ``name``, ``unit``, ``parts``."""
        return [{"name": name, "unit": unit, "parts": list(self.datetime_parts)} for name, unit in self.datetime]

    @property
    def read_columns(self) -> list[str]:
        """The columns read from the source: features, then the target and the key."""
        names = list(self.numeric) + [name for name, _ in self.datetime] + list(self.categorical)
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
        """The Arrow type each read column is parsed as (by the CSV reader; typed formats keep their own types).

        Returns
        -------
        dict of str to pyarrow.DataType
            Numbers (a regression target, epoch times) as float64, text
            (categories, class labels, the key, dates and times) as string.
        """
        types = {name: pa.float64() for name in self.numeric}
        # Dates as text are parsed by bigdl (one reading for every format); epoch numbers are numbers.
        types.update({name: pa.string() if unit is None else pa.float64() for name, unit in self.datetime})
        types.update({name: pa.string() for name in self.categorical})
        if self.target is not None:
            types[self.target] = pa.float64() if self.task == "regression" else pa.string()
        if self.key is not None:
            types[self.key] = pa.string()
        return types


def tabular(source, *, target: str | None = None, store: str | os.PathLike, format: str | None = None,
            table: str | None = None, categorical: list[str] | None = None, numeric: list[str] | None = None,
            drop: list[str] | None = None, key: str | None = None, task: str | None = None,
            datetime: list[str] | dict[str, str | None] | None = None, datetime_parts: list[str] | None = None,
            impute: str = "mean", non_finite: str = "reject", max_categories: int | None = DEFAULT_MAX_CATEGORIES,
            categorical_encoding: str | dict[str, str] | None = None, validation: float = 0.0,
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
        Force these columns to be categorical (see ``categorical_encoding``) /
        treated as numbers.  Other columns are typed from a sample of the data:
        numbers (and columns that are nearly all numbers) are numeric,
        timestamps and dates (Arrow/Parquet ``timestamp``, ``date32``,
        ``date64``) and text that is nearly all ISO 8601 dates or times are
        date/time columns, other text is categorical.
    drop : list of str, optional
        Columns to ignore.
    key : str, optional
        A column whose value identifies a sample (an id); the split is a hash
        of it, so a sample keeps its split whatever the row order.  The key is
        not used as a feature.  Default: the row's position in the input.
    task : {"classification", "regression"}, optional
        Inferred when not given: text, boolean and integer targets with at
        most 50 distinct values are classes, other numbers are regression.
    datetime : list of str or dict of str to str, optional
        Date/time columns, besides those found in the sample.  A column of
        text holds dates and times (ISO 8601, or a format inferred from its
        first value; formats may mix); a column of numbers holds seconds since
        1970-01-01 UTC, or the unit given in the dict form
        (``{"ts": "ms"}``; ``"s"``, ``"ms"``, ``"us"``, ``"ns"``; None as in
        the list form).  Times with a time zone (an offset such as
        ``+02:00``, ``Z``, a zone-aware timestamp type) are converted to UTC;
        times without one are taken as UTC, as written (so local times
        without an offset keep their wall-clock hour).  Each date/time column
        becomes the numeric features ``"{column}__{part}"`` of
        ``datetime_parts``, imputed and scaled like numeric columns.  A cell
        that is not a date/time, or lies outside 0001-01-01 to 9999-12-31,
        quarantines its row (reason ``"column 'when': 'soon' is not a
        date/time"``); an empty cell is a missing value, imputed.
    datetime_parts : list of str, optional
        The parts of every date/time column, among ``"year"``, ``"quarter"``,
        ``"month"``, ``"day"``, ``"day_of_week"`` (Monday 0), ``"day_of_year"``,
        ``"hour"``, ``"minute"``, ``"second"`` and ``"epoch_seconds"`` (seconds
        since 1970-01-01 UTC).  Default: year, month, day, day_of_week, hour,
        minute and epoch_seconds.
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
    max_categories : int or None, default 32
        Most frequent categories kept per one-hot column; rarer ones share
        an ``__other__`` indicator column (a :class:`~bigdl.errors.
        CategoriesFoldedWarning` names the column and counts when that happens
        under the default).  None keeps every value, up to
        :data:`~bigdl.preprocessing.MAX_CATEGORIES_BOUND` (10,000) per column:
        a column with more is refused, naming it and its cardinality.  The
        store's ``categories`` attribute and ``ds.info()`` say, per
        categorical column, how many values were kept and how many distinct
        values and rows were folded into ``__other__``.
    categorical_encoding : {"onehot", "frequency", "target"} or dict of str to str, optional
        How categorical columns become features, for all of them or per
        column (``{"zip": "target"}``; a column named here is categorical; the
        others stay one-hot).  ``"frequency"``: one feature
        ``"{column}__frequency"``, the share of the training rows holding the
        value.  ``"target"``: the mean target of the training rows holding the
        value, smoothed towards the training mean with the weight of
        :data:`~bigdl.preprocessing.TARGET_PRIOR_WEIGHT` (10) rows (an
        m-estimate); one feature ``"{column}__target"`` for regression and
        binary classification (the rate of the second class), one per class
        ``"{column}__target={class}"`` otherwise.  Training rows are encoded
        out of fold (:data:`~bigdl.preprocessing.TARGET_FOLDS` folds by a hash
        of the split key), so a row's own target never feeds its encoding;
        validation and test rows, and new data given to
        ``ds.preprocessor.transform``, get the means over all training rows.
        Both are fitted out of core on the training split only, in a second
        pass over the staged rows; memory: one count (and one target sum per
        output) per distinct value and fold, and the store's ``preprocessing``
        attribute keeps one number per value and output.  Neither is scaled.
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
        Columns or options that do not fit the data (an unknown column, a
        column given two kinds, two features of one name such as a column
        ``when__year`` beside the year of a date/time column ``when``, more
        values than ``max_categories=None`` keeps, target encoding without a
        target).
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
    number, or not a finite number, in a numeric column, a value that is not
    a date/time in a date/time column, a missing target, malformed JSON) are
    written
    to ``<store>/rejects/*.parquet`` with their source, row, line, raw text and
    reason; the store's ``rows`` attribute counts rows read, stored and
    rejected, and read = stored + rejected always holds.

    Examples
    --------
    >>> ds = bigdl.ingest.tabular("data/*.csv", target="target", store="work/flights.zarr",
    ...                           categorical=["carrier"], drop=["id"], test=0.2)   # doctest: +SKIP
    >>> print(ds.info())                                                           # doctest: +SKIP

    Dates as features, a high-cardinality column as its mean target (out of fold for training rows):

    >>> ds = bigdl.ingest.tabular("trips.parquet", target="fare", store="work/trips.zarr",
    ...                           datetime={"dropoff": "ms"}, datetime_parts=["month", "day_of_week", "hour"],
    ...                           categorical_encoding={"pickup_zone": "target"})    # doctest: +SKIP
    >>> ds.info()["categories"]                                                    # doctest: +SKIP
    {'pickup_zone': {'encoding': 'target', 'kept': 263, 'folded_values': 0, 'folded_rows': 0}}
    """
    check_params("tabular", {"impute": impute, "task": task, "max_categories": max_categories,
                             "non_finite": non_finite, "shuffle": shuffle, "datetime": datetime,
                             "datetime_parts": DEFAULT_DATETIME_PARTS if datetime_parts is None else datetime_parts,
                             "categorical_encoding": categorical_encoding}, PARAMETERS)
    check_split_parameters("tabular", validation=validation, test=test, seed=seed, rows_per_chunk=rows_per_chunk,
                           compression=compression)
    blocksize = _rows.parse_blocksize(blocksize, "tabular")
    plan = plan_sources(source, format=format, table=table, blocksize=blocksize, encoding=encoding,
                        delimiter=delimiter, owner="tabular")
    schema = resolve_schema(plan, target=target, categorical=categorical, numeric=numeric, drop=drop,
                            key=key, task=task, impute=impute, seed=seed, non_finite=non_finite, datetime=datetime,
                            datetime_parts=datetime_parts, categorical_encoding=categorical_encoding)
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

    def __init__(self, plan: SourcePlan, schema: TabularSchema, *, max_categories: int | None, rows_per_chunk,
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
        datetime_spec = []
        for entry in schema.datetime_spec:
            zones = {kind: sum(result["time_zones"][entry["name"]][kind] for result in read_results)
                     for kind in ("aware", "naive")}
            if entry["unit"] is None:
                _rows.log_time_zones(logger, f"Date/time column {entry['name']!r}", zones["aware"], zones["naive"])
            datetime_spec.append({**entry, "converted_to_utc": zones["aware"], "taken_as_utc": zones["naive"]})
        self.preprocessor = TabularPreprocessor.fit_summary(
            summary, numeric=list(schema.numeric), categorical=list(schema.categorical), target=schema.target,
            task=schema.task, impute=schema.impute, max_categories=self.max_categories,
            target_type=schema.target_type, non_finite=schema.non_finite, datetime=datetime_spec,
            categorical_encoding=dict(schema.encodings),
        )
        self._report_folding()
        self.rows_per_chunk = self.requested_rows_per_chunk or rows_per_chunk_for(self.preprocessor.n_features_in_)

    def _report_folding(self) -> None:
        """Say which one-hot columns folded values into ``__other__`` (a warning under the default), with counts only."""
        for name, report in self.preprocessor.category_report().items():
            if not report["folded_values"]:
                continue
            message = (f"Categorical column {name!r}: {report['folded_values']:,} of its "
                       f"{report['kept'] + report['folded_values']:,} distinct values ({report['folded_rows']:,} rows) "
                       f"were folded into {name + '=__other__'!r}; max_categories={self.max_categories} kept the "
                       f"{report['kept']:,} most frequent. Pass max_categories=None to keep every value (up to "
                       f"{MAX_CATEGORIES_BOUND:,}), or categorical_encoding={{{name!r}: 'frequency'}} (or 'target') to "
                       "encode it as numbers.")
            if self.max_categories == DEFAULT_MAX_CATEGORIES:
                warnings.warn(message, CategoriesFoldedWarning, stacklevel=2)
            logger.info(message)

    def extra_stages(self, run, staging: str, read_results: list[dict], accounting: dict) -> dict:
        if self.schema.encodings:
            # The encodings count training rows only, and a row's split needs every block's offset: a second pass.
            state = self.preprocessor.to_state()
            jobs = [(staging, index, self.offsets[index]["global_record"], state, self.schema, self.split_spec)
                    for index, result in enumerate(read_results) if result["n_valid"]]
            summaries = run("encode", _encoding_task, jobs)
            self.preprocessor = self.preprocessor.fit_encodings(merge_encoding_summaries(summaries))
        return accounting

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
            preprocessing=self.preprocessor.to_state(out_of_fold=False), source=self.plan.fingerprint(),
            categories=self.preprocessor.category_report(),
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
                   non_finite: str = "reject", datetime=None, datetime_parts=None,
                   categorical_encoding=None) -> TabularSchema:
    """Decide each column's role from the parameters and a typed sample.

    Parameters
    ----------
    plan : SourcePlan
        The planned input (its columns and a typed sample).
    target, categorical, numeric, drop, key, task, impute, seed, non_finite, datetime, datetime_parts, categorical_encoding
        As given to :func:`tabular`.

    Returns
    -------
    TabularSchema

    Raises
    ------
    SchemaError
        An unknown column, a column given two roles, no feature left, a
        column of a type that cannot be encoded (a time of day, a duration),
        an epoch unit for a column of timestamps, target encoding without a
        target, or a ``task`` the target cannot have.
    """
    columns = plan.columns
    if target is not None and target not in columns:
        match = difflib.get_close_matches(target, columns, n=1)
        raise SchemaError(
            f"The target column {target!r} is not in {plan.paths[0]}; columns found: {columns}."
            + (f" Did you mean {match[0]!r}?" if match else "")
        )
    categorical, numeric, drop = list(categorical or []), list(numeric or []), list(drop or [])
    dates = dict(datetime) if isinstance(datetime, dict) else dict.fromkeys(datetime or [])
    encoded = dict(categorical_encoding) if isinstance(categorical_encoding, dict) else {}
    for names, parameter in ((categorical, "categorical"), (numeric, "numeric"), (drop, "drop"),
                             (list(dates), "datetime"), (list(encoded), "categorical_encoding")):
        _rows.check_columns(names, columns, parameter)
    if key is not None:
        _rows.check_columns([key], columns, "key")
    # A dropped column, the target and the key are not features whatever else names them; a feature has one kind.
    _check_one_role({"categorical=": set(categorical), "categorical_encoding=": set(encoded) - set(categorical),
                     "numeric=": set(numeric), "datetime=": set(dates)})
    for names, parameter in ((dates, "datetime"), (encoded, "categorical_encoding")):
        for role, name in (("target", target), ("key", key)):
            if name is not None and name in names:
                raise SchemaError(f"Column {name!r} is the {role} ({role}=) and cannot also be a feature "
                                  f"({parameter}=); leave it out of {parameter}=.")
    roles = {"categorical": set(categorical) | set(encoded)}
    excluded = set(drop) | {target, key}
    roles_numeric, roles_categorical, roles_datetime = [], [], []
    for name in columns:
        if name in excluded:
            continue
        if name in roles["categorical"]:
            roles_categorical.append(name)
        elif name in numeric:
            roles_numeric.append(name)
        elif name in dates:
            roles_datetime.append((name, _datetime_unit(plan, name, dates[name])))
        else:
            kind = _column_kind(plan, name)
            if kind == "datetime":
                roles_datetime.append((name, None))
            else:
                (roles_numeric if kind == "numeric" else roles_categorical).append(name)
    if not roles_numeric and not roles_categorical and not roles_datetime:
        raise SchemaError(f"No feature column is left after drop={drop} and target={target!r}; columns: {columns}.")
    if isinstance(categorical_encoding, str):
        encoded = dict.fromkeys(roles_categorical, categorical_encoding)
    encodings = tuple((name, encoded[name]) for name in roles_categorical if encoded.get(name, "onehot") != "onehot")
    if target is None and any(encoding == "target" for _, encoding in encodings):
        names = [name for name, encoding in encodings if encoding == "target"]
        raise SchemaError(f"Target encoding of {names} (categorical_encoding=) needs a target column (target=...); "
                          "without one, use 'frequency' or 'onehot'.")
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
                         impute, seed, non_finite, datetime=tuple(roles_datetime),
                         datetime_parts=tuple(datetime_parts or DEFAULT_DATETIME_PARTS), encodings=encodings)


def _check_one_role(roles: dict[str, set]) -> None:
    """Refuse a column given two kinds (``categorical=`` and ``numeric=``, ``datetime=`` and ``numeric=``...)."""
    parameters = list(roles)
    for position, first in enumerate(parameters):
        for second in parameters[position + 1:]:
            both = sorted(roles[first] & roles[second])
            if both:
                raise SchemaError(f"Column(s) {both} are given as both {first} and {second}; choose one.")


def _datetime_unit(plan: SourcePlan, name: str, unit: str | None) -> str | None:
    """The epoch unit of a column declared in ``datetime=``: None for text and timestamps, else its unit ("s")."""
    column = _sample_column(plan, name)
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if unit is not None:
            raise SchemaError(f"datetime={{{name!r}: {unit!r}}} gives an epoch unit, but column {name!r} holds "
                              f"timestamps ({kind}); use datetime=[{name!r}].")
        return None
    if pa.types.is_temporal(kind):
        raise _unencodable(name, kind)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return unit or "s"
    if pa.types.is_boolean(kind):
        raise SchemaError(f"Column {name!r} (in datetime=) holds booleans, not dates, times or epoch numbers.")
    if unit is None and not pa.types.is_null(kind) and _mostly_numbers(column):
        return "s"
    return unit


def _unencodable(name: str, kind) -> SchemaError:
    what = "a time of day" if pa.types.is_time(kind) else "a duration" if pa.types.is_duration(kind) else str(kind)
    return SchemaError(
        f"Column {name!r} has type {kind} ({what}), which tabular ingest cannot encode; drop it (drop=[{name!r}]) "
        "or convert it to a number (e.g. seconds) before ingesting."
    )


def _sample_column(plan: SourcePlan, name: str) -> pa.ChunkedArray:
    return plan.sample.column(name) if name in plan.sample.column_names else pa.chunked_array([], pa.null())


def _mostly_numbers(column: pa.ChunkedArray) -> bool:
    values = column.to_pandas().dropna()
    if values.empty:
        return False
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.notna().mean() >= 0.9


def _mostly_dates(column: pa.ChunkedArray) -> bool:
    values = column.to_pandas().dropna().astype(str).str.strip()
    values = values[~values.isin(NULL_TOKENS)]
    if values.empty:
        return False
    parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    return parsed.notna().mean() >= 0.9


def _column_kind(plan: SourcePlan, name: str) -> str:
    column = _sample_column(plan, name)
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "datetime"
    if pa.types.is_temporal(kind):
        raise _unencodable(name, kind)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_null(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        # A few unparseable cells must not turn a numeric column into
        # categories (or into dates): they are rejected row by row instead.
        if _mostly_numbers(column):
            return "numeric"
        return "datetime" if _mostly_dates(column) else "categorical"
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
    table, records, rejects, time_zones = validate(raw, schema, block)
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
        "time_zones": time_zones,
        "summary": summarize(table, list(schema.numeric), list(schema.categorical), schema.target,
                             schema.task, seed=schema.seed + block.index * 7919,
                             keep_sample=schema.impute == "median", datetime=schema.datetime_spec),
    }


register_reason_family("tabular")(_rows.row_reason_family)


def validate(raw: RawBlock, schema: TabularSchema,
             block: Block) -> tuple[pa.Table, np.ndarray, list[dict], dict[str, dict[str, int]]]:
    """Coerce a parsed block to the schema's types; move rows that do not fit to rejects.

    Date/time columns become naive UTC ``timestamp[us]`` columns (see
    :func:`bigdl.preprocessing._dates.to_utc_times`).

    Parameters
    ----------
    raw : RawBlock
        The parsed block and its own rejects.
    schema : TabularSchema
    block : Block
        Where the block comes from (for the rejects).

    Returns
    -------
    (pyarrow.Table, numpy.ndarray, list of dict, dict)
        The valid rows, their records, the rejected rows with their reasons,
        and per date/time column the valid rows' times that carried a time
        zone (``aware``, converted to UTC) and those that did not (``naive``,
        taken as UTC).
    """
    import pyarrow.compute as pc

    table = raw.table
    n = table.num_rows
    reasons: list[str | None] = [None] * n
    bad = np.zeros(n, dtype=bool)

    reject = _rows.rejector(bad, reasons)
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
    parsed_times = {}
    for name, unit in schema.datetime:
        parsed_times[name] = _checked_times(table.column(name), name, unit, reject)
        columns[name] = pa.chunked_array([pa.array(parsed_times[name].times, type=pa.timestamp("us"))])
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
    time_zones = {name: {"aware": int((parsed.aware & ~bad).sum()),
                         "naive": int((~parsed.aware & ~parsed.missing & ~bad).sum()) if unit is None else 0}
                  for (name, unit), parsed in zip(schema.datetime, parsed_times.values())}
    return validated, raw.records[~bad], rejects, time_zones


def _checked_times(column: pa.ChunkedArray, name: str, unit: str | None, reject):
    """A date/time column as UTC times, its cells that are not dates/times (or out of range) refused through
    ``reject``; missing cells (empty, ``NA``...) stay missing, to be imputed."""
    import pyarrow.compute as pc

    if unit is not None:  # epoch numbers: read as every number column is (text, missing spellings)
        values, not_number, cell = _rows.parse_numbers(column)
        parsed = to_utc_times(pa.array(values, from_pandas=True), unit)
        parsed.cell = cell
        parsed.not_time = not_number
    else:
        kind = column.type
        if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_string(kind)
                or pa.types.is_large_string(kind)):
            column = pc.cast(column, pa.string())  # a number or a boolean where text dates were expected
        parsed = to_utc_times(column, None, missing_tokens=NULL_TOKENS)
        cell = parsed.cell
    reject(parsed.not_time, lambda index: f"column {name!r}: {cell(index)!r} is not a date/time")
    reject(parsed.out_of_range, lambda index: f"column {name!r}: {cell(index)!r} is not a date/time in {TIME_RANGE}")
    return parsed


def _write_task(root: str, staging: str, pieces: list[tuple], start: int, state: dict,
                schema: TabularSchema, split_spec: dict, shuffle_seed: int | None = None) -> np.ndarray:
    preprocessor = TabularPreprocessor.from_state(state)
    table = pa.concat_tables([_rows.read_staged(staging, block).slice(low, high - low)
                              for block, low, high, _ in pieces])
    record_offsets = np.concatenate([np.full(high - low, offset, dtype=np.int64)
                                     for _, low, high, offset in pieces])
    records = table.column(schema.record_column).to_numpy() + record_offsets
    keys = _split_keys(table, schema, records)
    split = assign_split(keys, split_spec["seed"], split_spec["validation"], split_spec["test"])
    arrays = {"X": preprocessor.transform(table, folds=_encoding_folds(schema, keys, split, split_spec))}
    if schema.target is not None:
        arrays["y"] = preprocessor.transform_target(table.column(schema.target))
    arrays["split"] = split
    arrays["record"] = records
    return write_chunk(root, start, arrays, shuffle_seed=shuffle_seed)


# ---------------------------------------------------------------- splits and folds (the encode and write passes)
def _split_keys(table: pa.Table, schema: TabularSchema, records: np.ndarray) -> np.ndarray:
    """The stable 64-bit key each staged row's split is drawn from: a hash of its ``key`` value, else its record.

    Parameters
    ----------
    table : pyarrow.Table
        Staged rows.
    schema : TabularSchema
    records : numpy.ndarray of int64
        Their records in the whole input.

    Returns
    -------
    numpy.ndarray of uint64
    """
    if schema.key is not None:
        return pd.util.hash_array(table.column(schema.key).to_numpy(zero_copy_only=False).astype(object))
    return records.astype(np.uint64)


def _encoding_folds(schema: TabularSchema, keys: np.ndarray, split: np.ndarray, split_spec: dict) -> np.ndarray | None:
    """Each row's fold of out-of-fold target encoding (-1 outside the training split); None without target encoding.

    Parameters
    ----------
    schema : TabularSchema
    keys : numpy.ndarray of uint64
        :func:`_split_keys`.
    split : numpy.ndarray of uint8
        The rows' split codes.
    split_spec : dict
        ``seed``, ``validation`` and ``test``.

    Returns
    -------
    numpy.ndarray of int64 or None
    """
    if not any(encoding == "target" for _, encoding in schema.encodings):
        return None
    folds = assign_folds(keys, split_spec["seed"], TARGET_FOLDS)
    return np.where(split == SPLIT_CODES["train"], folds, -1)


def _encoding_task(staging: str, block: int, offset: int, state: dict, schema: TabularSchema,
                   split_spec: dict) -> dict:
    """The training rows' counts and target sums per value and fold of one staged block (the encode pass)."""
    preprocessor = TabularPreprocessor.from_state(state)
    names = [schema.record_column] + ([schema.key] if schema.key else []) + ([schema.target] if schema.target else [])
    names += [name for name, _ in schema.encodings]
    table = _rows.read_staged(staging, block).select(list(dict.fromkeys(names)))
    records = table.column(schema.record_column).to_numpy() + offset
    keys = _split_keys(table, schema, records)
    train = assign_split(keys, split_spec["seed"], split_spec["validation"], split_spec["test"]) \
        == SPLIT_CODES["train"]
    folds = assign_folds(keys[train], split_spec["seed"], TARGET_FOLDS)
    return preprocessor.encoding_summary(table.filter(pa.array(train)), folds)
