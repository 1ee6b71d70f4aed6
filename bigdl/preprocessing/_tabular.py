"""Out-of-core fitting of tabular preprocessing, and the transformer it yields.

Each block of input contributes a small :class:`ColumnStats` summary
(counts, mean and sum of squared deviations, a bounded value sample, category
counts); summaries merge associatively, so the fit is one pass whatever the
data size.  The result is a :class:`TabularPreprocessor` whose JSON state is
stored in the store attributes and that applies the same transform to new data
(``SimpleImputer`` then ``StandardScaler`` for numbers and for the parts of
dates and times, one-hot with an ``other`` bucket, frequency or target
encoding for categories, class codes for the target).  Frequency and target
encodings need counts restricted to the training rows, which ingest gathers in
a second, light pass once the split is known (:meth:`TabularPreprocessor.
encoding_summary`, :func:`merge_encoding_summaries`, :meth:`TabularPreprocessor.
fit_encodings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl.errors import SchemaError
from bigdl.preprocessing._dates import TIME_RANGE, part_feature_name, time_parts, to_utc_times

__all__ = ["TabularPreprocessor", "ColumnStats", "OTHER", "MISSING", "CATEGORICAL_ENCODINGS", "MAX_CATEGORIES_BOUND",
           "TARGET_FOLDS", "TARGET_PRIOR_WEIGHT", "merge_encoding_summaries"]

OTHER = "__other__"
MISSING = "__missing__"
# Per-block cap of values kept to estimate medians: exact below it, a uniform
# sample above it (the estimate is then approximate, like dask's quantiles).
MEDIAN_SAMPLE = 5_000
# Beyond this many distinct target values a "classification" target is almost
# certainly a continuous quantity.
MAX_CLASSES = 1_000
# How a categorical column becomes features (see TabularPreprocessor).
CATEGORICAL_ENCODINGS = ("onehot", "frequency", "target")
# max_categories=None keeps every value of a one-hot column up to this many (one feature each).
MAX_CATEGORIES_BOUND = 10_000
# Target encoding: training rows are encoded out of fold, in this many folds (by a hash of the split key) ...
TARGET_FOLDS = 5
# ... with the m-estimate (sum + m * prior) / (count + m): m rows' worth of the prior pulls rare values to it.
TARGET_PRIOR_WEIGHT = 10.0


@dataclass
class ColumnStats:
    """Mergeable one-pass summary of a numeric column (Chan et al. update)."""

    count: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_weight: np.ndarray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def of(cls, values: np.ndarray, seed: int = 0, keep_sample: bool = True) -> "ColumnStats":
        missing = np.isnan(values)
        observed = values[~missing] if missing.any() else values  # no copy when nothing is missing
        n = int(observed.size)
        if n == 0:
            return cls(missing=int(values.size))
        mean = float(observed.mean())
        if not keep_sample:
            sample = np.empty(0)
        elif n > MEDIAN_SAMPLE:
            rng = np.random.default_rng(seed)
            sample = rng.choice(observed, size=MEDIAN_SAMPLE, replace=False)
        else:
            sample = observed.copy()
        return cls(
            count=n,
            missing=int(values.size - n),
            mean=mean,
            m2=float(np.square(observed - mean).sum()),
            minimum=float(observed.min()),
            maximum=float(observed.max()),
            sample=sample,
            sample_weight=np.full(sample.size, n / max(sample.size, 1)),
        )

    def merge(self, other: "ColumnStats") -> "ColumnStats":
        n = self.count + other.count
        if n == 0:
            return ColumnStats(missing=self.missing + other.missing)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return ColumnStats(
            count=n,
            missing=self.missing + other.missing,
            mean=mean,
            m2=m2,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
            sample=np.concatenate([self.sample, other.sample]),
            sample_weight=np.concatenate([self.sample_weight, other.sample_weight]),
        )

    def median(self) -> float:
        if self.count == 0:
            return float("nan")
        order = np.argsort(self.sample, kind="stable")
        values = self.sample[order]
        cumulative = np.cumsum(self.sample_weight[order])
        half = cumulative[-1] / 2.0
        # Weighted median; with unit weights this is numpy's median
        # (mean of the two middle values for an even count).
        lower = int(np.searchsorted(cumulative, half, side="left"))
        if math.isclose(cumulative[lower], half) and lower + 1 < values.size:
            return float((values[lower] + values[lower + 1]) / 2.0)
        return float(values[lower])


@dataclass
class BlockSummary:
    """Statistics of one input block, merged across blocks on the client."""

    numeric: dict[str, ColumnStats]
    categorical: dict[str, dict[str, int]]
    target_counts: dict[Any, int] | None

    def merge(self, other: "BlockSummary") -> "BlockSummary":
        numeric = {name: stats.merge(other.numeric[name]) for name, stats in self.numeric.items()}
        categorical = {}
        for name, counts in self.categorical.items():
            merged = dict(counts)
            for value, count in other.categorical[name].items():
                merged[value] = merged.get(value, 0) + count
            categorical[name] = merged
        target = None
        if self.target_counts is not None:
            target = dict(self.target_counts)
            for value, count in (other.target_counts or {}).items():
                target[value] = target.get(value, 0) + count
        return BlockSummary(numeric, categorical, target)


def summarize(table: pa.Table, numeric: list[str], categorical: list[str], target: str | None,
              task: str | None, seed: int, keep_sample: bool = False,
              datetime: list[dict] | None = None) -> BlockSummary:
    """Summarize one validated block (numeric columns already float64).

    ``keep_sample`` keeps a bounded value sample per column, needed only to
    estimate medians.  ``datetime`` lists the date/time columns (``name``,
    ``parts``; already naive UTC timestamps): each part is summarized as a
    numeric column named ``"{name}__{part}"``.
    """
    numeric_stats = {
        name: ColumnStats.of(column_values(table, name), seed=seed + index, keep_sample=keep_sample)
        for index, name in enumerate(numeric)
    }
    for entry in datetime or []:
        times = to_utc_times(table.column(entry["name"])).times
        for part, values in zip(entry["parts"], time_parts(times, entry["parts"])):
            numeric_stats[part_feature_name(entry["name"], part)] = ColumnStats.of(
                values, seed=seed + len(numeric_stats), keep_sample=keep_sample)
    categorical_counts = {name: _value_counts(table.column(name)) for name in categorical}
    target_counts = None
    if target is not None and task == "classification":
        target_counts = _value_counts(table.column(target), keep_type=True)
    return BlockSummary(numeric_stats, categorical_counts, target_counts)


def column_values(table: pa.Table, name: str) -> np.ndarray:
    """A float64 column as a NumPy array with NaN for nulls."""
    column = table.column(name)
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _value_counts(column: pa.ChunkedArray, keep_type: bool = False) -> dict:
    import pyarrow.compute as pc

    counts = pc.value_counts(column).to_pylist() if len(column) else []
    result: dict = {}
    for item in counts:
        value = item["values"]
        if value is None:
            key = None if keep_type else MISSING
        else:
            key = value if keep_type else str(value)
        result[key] = result.get(key, 0) + item["counts"]
    return result


class TabularPreprocessor:
    """The fitted tabular transform, rebuilt from a store's attributes.

    Numeric columns: missing values imputed (mean or median), then standard
    scaling (population standard deviation, scale 1 for constant columns), as
    ``SimpleImputer`` followed by ``StandardScaler``.  Date/time columns: read
    as UTC (see :mod:`bigdl.preprocessing._dates`), split into numeric parts
    (``"{column}__year"``, ``"{column}__month"``, ...), each then imputed and
    scaled like a numeric column.  Categorical columns, by their encoding:

    - ``"onehot"`` (the default): one indicator per category found at ingest
      (the most frequent ``max_categories`` of them, the rest and unseen
      values in an ``__other__`` column when it exists, otherwise all zeros);
    - ``"frequency"``: one feature ``"{column}__frequency"``, the share of
      the training rows holding the value (0 for a value unseen there);
    - ``"target"``: the smoothed mean of the target over the training rows
      holding the value (an m-estimate, ``(sum + m * prior) / (count + m)``
      with prior weight ``m`` = :data:`TARGET_PRIOR_WEIGHT` and the training
      mean as prior; the prior for unseen values): one feature
      ``"{column}__target"`` for regression (the mean target) and binary
      classification (the rate of the second class), one per class
      ``"{column}__target={class}"`` otherwise.  Ingest encodes training rows
      *out of fold* (:data:`TARGET_FOLDS` folds by a hash of the split key:
      a row's encoding never sees its own target); validation and test rows,
      and new data given to :meth:`transform`, get the means over all
      training rows.

    Feature order: numeric columns, the parts of each date/time column, then
    each categorical column's features.  Use :meth:`transform` to prepare new
    data for a model trained on the store.

    Parameters
    ----------
    state : dict
        The store's ``preprocessing`` attribute (what ingest fitted).

    Examples
    --------
    >>> ds = bigdl.open("work/flights.zarr")            # doctest: +SKIP
    >>> X_new = ds.preprocessor.transform(new_frame)     # doctest: +SKIP
    """

    def __init__(self, state: dict):
        self.state = state
        self.numeric_: list[dict] = state["numeric"]
        self.datetime_: list[dict] = state.get("datetime") or []
        # A state written before categorical encodings existed is all one-hot.
        self.categorical_: list[dict] = [entry if "encoding" in entry else {**entry, "encoding": "onehot"}
                                         for entry in state["categorical"]]
        self.target_: dict | None = state.get("target")
        self.feature_names_: list[str] = list(state["feature_names"])
        self.n_features_in_ = len(self.feature_names_)

    # -- construction -------------------------------------------------
    @classmethod
    def fit_summary(cls, summary: BlockSummary, *, numeric: list[str], categorical: list[str],
                    target: str | None, task: str | None, impute: str,
                    max_categories: int | None, target_type: str | None = None,
                    non_finite: str = "reject", datetime: list[dict] | None = None,
                    categorical_encoding: dict[str, str] | None = None) -> "TabularPreprocessor":
        """Build the transform from merged block statistics.

        Parameters
        ----------
        summary : BlockSummary
            The merged summaries of every block.
        numeric, categorical : list of str
            The feature columns, in feature order.
        target, task, target_type : str or None
            The target column, its task and its label type.
        impute : {"mean", "median"}
            The fill of missing numbers (and missing dates' parts).
        max_categories : int or None
            Most frequent categories kept per one-hot column; None keeps every
            value, up to :data:`MAX_CATEGORIES_BOUND`.
        non_finite : {"reject", "missing"}, default "reject"
            What :meth:`transform` does with ``inf`` and ``-inf`` in a numeric
            column: ``"reject"`` refuses them (ingest quarantined such rows),
            ``"missing"`` fills them like missing values.
        datetime : list of dict, optional
            The date/time columns, each ``{"name", "unit", "parts"}`` (``unit``
            of epoch numbers, or None) and optionally ``"converted_to_utc"``
            and ``"taken_as_utc"`` counts; ``summary`` holds their parts as
            numeric columns ``"{name}__{part}"``.
        categorical_encoding : dict of str to str, optional
            ``{column: "onehot" | "frequency" | "target"}``; unnamed
            categorical columns are one-hot.  Frequency and target encodings
            are fitted afterwards, from the training rows only, by
            :meth:`fit_encodings`.

        Returns
        -------
        TabularPreprocessor

        Raises
        ------
        SchemaError
            Two features would have one name (a column ``c=x`` beside the
            one-hot column of value ``x`` of a categorical column ``c``, a
            column ``when__year`` beside the year of a date/time column
            ``when``), a column has more values than ``max_categories=None``
            keeps, target encoding without a target, or the target has too
            many classes.
        """
        encodings = dict(categorical_encoding or {})
        numeric_state = [_numeric_entry(name, summary.numeric[name], impute) for name in numeric]
        datetime_state = []
        for entry in datetime or []:
            datetime_state.append({"name": entry["name"], "unit": entry.get("unit"), "parts": list(entry["parts"]),
                                   "converted_to_utc": int(entry.get("converted_to_utc", 0)),
                                   "taken_as_utc": int(entry.get("taken_as_utc", 0))})
            for part in entry["parts"]:
                feature = part_feature_name(entry["name"], part)
                numeric_state.append({**_numeric_entry(feature, summary.numeric[feature], impute),
                                      "datetime": entry["name"], "part": part})
        target_state = None
        if target is not None:
            target_state = {"name": target, "task": task, "type": target_type}
            if task == "classification":
                classes = [value for value in summary.target_counts if value is not None]
                counts_by_string = {value: summary.target_counts[value] for value in classes}
                if len(classes) > MAX_CLASSES:
                    raise SchemaError(
                        f"The target column {target!r} has {len(classes)} distinct values, too many "
                        f"for classification (at most {MAX_CLASSES}); pass task='regression' if it "
                        "is a continuous quantity."
                    )
                typed = typed_classes(classes, target_type or "string")
                target_state["classes"] = typed
                target_state["class_counts"] = [
                    int(counts_by_string[value]) for value in class_strings(typed, target_type or "string")
                ]
        categorical_state = []
        for name in categorical:
            counts = summary.categorical[name]
            encoding = encodings.get(name, "onehot")
            if encoding == "onehot":
                categorical_state.append(_onehot_entry(name, counts, max_categories))
            else:
                categorical_state.append(_encoded_entry(name, counts, encoding, target_state))
        feature_names = [entry["name"] for entry in numeric_state]
        origins = [f"the numeric column {entry['name']!r}" if "datetime" not in entry else
                   f"the {entry['part']!r} part of the date/time column {entry['datetime']!r}"
                   for entry in numeric_state]
        for entry in categorical_state:
            names, whence = _categorical_features(entry)
            feature_names += names
            origins += whence
        _check_unique_features(feature_names, origins)
        state = {
            "impute": impute, "non_finite": non_finite, "max_categories": max_categories,
            "numeric": numeric_state, "datetime": datetime_state, "categorical": categorical_state,
            "target": target_state, "feature_names": feature_names,
        }
        return cls(_to_json_safe(state))

    def encoding_summary(self, table: pa.Table, folds: np.ndarray) -> dict:
        """Per value and fold, the training rows' count and target sums of each frequency- or target-encoded column.

        Runs in ingest's encoding tasks, one per staged block; the results
        merge with :func:`merge_encoding_summaries` and feed
        :meth:`fit_encodings`.

        Parameters
        ----------
        table : pyarrow.Table
            Training rows only, validated (categories as text, the target).
        folds : numpy.ndarray of int
            Each row's fold, in ``[0, TARGET_FOLDS)``.

        Returns
        -------
        dict of str to pandas.DataFrame
            Indexed by (value, fold), with a ``count`` column and one ``sum{k}``
            column per encoded output.
        """
        outputs = None
        summaries = {}
        for entry in self.categorical_:
            if entry["encoding"] == "onehot":
                continue
            columns = {"value": _labels(table.column(entry["name"])), "fold": np.asarray(folds, dtype=np.int64)}
            frame = pd.DataFrame(columns)
            frame["count"] = 1
            if entry["encoding"] == "target":
                if outputs is None:
                    outputs = self._target_outputs(table.column(self.target_["name"]))
                for position in range(outputs.shape[1]):
                    frame[f"sum{position}"] = outputs[:, position]
            summaries[entry["name"]] = frame.groupby(["value", "fold"], sort=False).sum()
        return summaries

    def _target_outputs(self, column) -> np.ndarray:
        """What target encoding averages: the target (regression), the second class (binary), one-hot classes."""
        if self.target_["task"] == "regression":
            return pd.to_numeric(pd.Series(column.to_pandas())).to_numpy(dtype=np.float64)[:, None]
        codes = self.transform_target(column)
        n_classes = len(self.target_["classes"])
        if n_classes == 2:
            return (codes == 1).astype(np.float64)[:, None]
        return (codes[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)

    def fit_encodings(self, summaries: dict) -> "TabularPreprocessor":
        """The transform with its frequency and target encodings fitted from training-row summaries.

        Parameters
        ----------
        summaries : dict of str to pandas.DataFrame
            :func:`merge_encoding_summaries` of every block's
            :meth:`encoding_summary`.

        Returns
        -------
        TabularPreprocessor
            A new preprocessor; its state holds, besides the encodings (one
            number per value and output), the per-fold counts and sums that
            ingest needs to encode training rows out of fold (``out_of_fold``;
            not kept in the store, see :meth:`to_state`).

        Notes
        -----
        Memory: one count, and one sum per output, per distinct training
        value and per fold (:data:`TARGET_FOLDS`), for each encoded column.
        """
        state = dict(self.state)
        categorical, out_of_fold = [], dict(state.get("out_of_fold") or {})
        for entry in self.categorical_:
            if entry["encoding"] == "onehot":
                categorical.append(entry)
                continue
            fitted, folds = _fit_encoding(entry, summaries.get(entry["name"]))
            categorical.append(fitted)
            if folds is not None:
                out_of_fold[entry["name"]] = folds
        state["categorical"] = categorical
        if out_of_fold:
            state["out_of_fold"] = out_of_fold
        return type(self)(_to_json_safe(state))

    @classmethod
    def from_state(cls, state: dict) -> "TabularPreprocessor":
        """Rebuild from the JSON state stored in a store's attributes.

        Parameters
        ----------
        state : dict
            The ``preprocessing`` attribute.

        Returns
        -------
        TabularPreprocessor
        """
        return cls(state)

    def to_state(self, out_of_fold: bool = True) -> dict:
        """The JSON-serializable state (stored as the ``preprocessing`` attribute).

        Parameters
        ----------
        out_of_fold : bool, default True
            Include the per-fold tables of target encodings, which only
            ingest's write tasks use (the store keeps the state without them).

        Returns
        -------
        dict
        """
        if out_of_fold or "out_of_fold" not in self.state:
            return self.state
        return {key: value for key, value in self.state.items() if key != "out_of_fold"}

    def category_report(self) -> dict:
        """For each categorical column, how its values were kept or folded (counts only, never the values).

        Returns
        -------
        dict of str to dict
            ``{"encoding", "kept", "folded_values", "folded_rows"}`` per
            column: values with a feature (or an encoding) of their own, and
            the distinct values and rows folded into ``__other__`` (0 for
            frequency and target encodings, which fold nothing).

        Examples
        --------
        >>> ds.preprocessor.category_report()   # doctest: +SKIP
        {'carrier': {'encoding': 'onehot', 'kept': 32, 'folded_values': 72, 'folded_rows': 12345}}
        """
        report = {}
        for entry in self.categorical_:
            folded = entry["other"] and entry["encoding"] == "onehot"
            report[entry["name"]] = {
                "encoding": entry["encoding"], "kept": len(entry["categories"]),
                "folded_values": int(entry["n_seen"] - len(entry["categories"])) if folded else 0,
                "folded_rows": int(entry.get("other_count", 0)) if folded else 0,
            }
        return report

    # -- transform ----------------------------------------------------
    @property
    def input_columns(self) -> list[str]:
        """Columns :meth:`transform` needs, in order."""
        return ([entry["name"] for entry in self.numeric_ if "datetime" not in entry]
                + [entry["name"] for entry in self.datetime_] + [entry["name"] for entry in self.categorical_])

    def transform(self, data, folds: np.ndarray | None = None) -> np.ndarray:
        """Turn raw rows into the float32 feature matrix stored as ``X``.

        Parameters
        ----------
        data : pandas.DataFrame, pyarrow.Table or dask.dataframe.DataFrame
            Must hold every column of :attr:`input_columns`; other columns
            are ignored.  A dask DataFrame gives a dask array (chunk by chunk).
            Date/time columns may be text, timestamps (with or without a time
            zone) or, where ingest read epoch numbers, numbers in that unit.
        folds : numpy.ndarray of int, optional
            Each row's fold for out-of-fold target encoding (-1: encode with
            the means over all training rows).  Ingest passes it for the
            training rows; default: every row gets the full-training means.

        Returns
        -------
        numpy.ndarray or dask.array.Array of shape (n_rows, n_features), float32

        Raises
        ------
        SchemaError
            A column is missing, a numeric column holds non-finite numbers (as
            fitted), or a date/time column holds values that are not dates.
        """
        if type(data).__module__.startswith("dask"):  # a dask DataFrame; avoid importing dask.dataframe
            return _dask_transform(self, data)
        if isinstance(data, pd.DataFrame):
            missing = [name for name in self.input_columns if name not in data.columns]
            if missing:
                raise SchemaError(
                    f"Cannot transform: column(s) {missing} are missing; the preprocessor needs "
                    f"{self.input_columns} (got {list(data.columns)})."
                )
            data = pa.Table.from_pandas(data[self.input_columns], preserve_index=False)
            data = _coerce_for_transform(self, data)
        n = data.num_rows
        out = np.empty((n, self.n_features_in_), dtype=np.float32)
        n_numeric = len(self.numeric_)
        if n_numeric:
            parts = self._datetime_parts(data)
            # Column-major work then one transposing copy: writing columns of
            # the row-major output one by one is several times slower.
            values = np.empty((n_numeric, n), dtype=np.float64)
            for position, entry in enumerate(self.numeric_):
                values[position] = parts[entry["name"]] if "datetime" in entry else column_values(data, entry["name"])
            self._check_finite(values)
            fill = np.array([entry["fill"] for entry in self.numeric_])[:, None]
            np.copyto(values, np.broadcast_to(fill, values.shape), where=np.isnan(values))
            values -= np.array([entry["mean"] for entry in self.numeric_])[:, None]
            values /= np.array([entry["scale"] for entry in self.numeric_])[:, None]
            out[:, :n_numeric] = values.T
        position = n_numeric
        for entry in self.categorical_:
            names, _ = _categorical_features(entry)
            block = out[:, position:position + len(names)]
            if entry["encoding"] == "onehot":
                codes = self._category_codes(data.column(entry["name"]), entry)
                block[:] = 0.0
                hit = codes >= 0
                block[np.flatnonzero(hit), codes[hit]] = 1.0
            else:
                block[:] = self._encoded(data.column(entry["name"]), entry, folds)
            position += len(names)
        return out

    def _datetime_parts(self, data: pa.Table) -> dict[str, np.ndarray]:
        """The parts of every date/time column, by feature name; cells that are not dates are refused."""
        parts = {}
        for entry in self.datetime_:
            name = entry["name"]
            try:
                parsed = to_utc_times(data.column(name), entry["unit"])
            except TypeError as error:
                kind = f"numbers since the epoch in {entry['unit']!r}" if entry["unit"] else "dates or times"
                raise SchemaError(f"Column {name!r} cannot be read as a date/time column: {error}; it was fitted "
                                  f"on {kind}.") from None
            bad = parsed.not_time | parsed.out_of_range
            if bad.any():
                rows = np.flatnonzero(bad)
                raise SchemaError(
                    f"Column {name!r} holds {len(rows)} value(s) that are not dates/times in {TIME_RANGE} "
                    f"({parsed.cell(int(rows[0]))!r} in row {int(rows[0])} first); ingest quarantined such rows. "
                    "Make them missing (None or NaT) to have them imputed, or drop those rows."
                )
            for part, values in zip(entry["parts"], time_parts(parsed.times, entry["parts"])):
                parts[part_feature_name(name, part)] = values
        return parts

    def _encoded(self, column, entry: dict, folds: np.ndarray | None) -> np.ndarray:
        """A frequency- or target-encoded column: (n_rows, n_outputs) float64."""
        if not entry.get("fitted", False):
            raise SchemaError(f"The {entry['encoding']} encoding of column {entry['name']!r} is not fitted yet "
                              "(fit_encodings fits it from the training rows).")
        codes = _codes_of(column, entry["categories"], unknown=len(entry["categories"]), missing=MISSING)
        table = np.vstack([np.asarray(entry["table"], dtype=np.float64).reshape(-1, len(entry["unseen"])),
                           np.asarray(entry["unseen"], dtype=np.float64)[None, :]])
        values = table[codes]
        if folds is not None and entry["encoding"] == "target":
            folds = np.asarray(folds, dtype=np.int64)
            if (folds >= 0).any():
                tables = self.state.get("out_of_fold", {}).get(entry["name"])
                if tables is None:
                    raise SchemaError(f"Out-of-fold encoding of column {entry['name']!r} needs the per-fold "
                                      "tables, which only ingest keeps (to_state(out_of_fold=True)).")
                _out_of_fold(values, codes, folds, tables, entry["prior_weight"])
        return values

    def _check_finite(self, values: np.ndarray) -> None:
        """``inf`` and ``-inf`` become missing (``non_finite="missing"``) or are refused, naming the column."""
        infinite = np.isinf(values)
        if not infinite.any():
            return
        if self.state.get("non_finite", "reject") == "missing":
            values[infinite] = np.nan
            return
        position = int(np.flatnonzero(infinite.any(axis=1))[0])
        rows = np.flatnonzero(infinite[position])
        name = self.numeric_[position]["name"]
        raise SchemaError(
            f"Column {name!r} holds {len(rows)} value(s) that are not finite numbers ({values[position, rows[0]]} "
            f"in row {int(rows[0])} first); this preprocessing was fitted with non_finite='reject' (ingest "
            "quarantined such rows). Replace them with NaN to have them imputed, or drop those rows."
        )

    def _category_codes(self, column: pa.ChunkedArray, entry: dict) -> np.ndarray:
        unknown = len(entry["categories"]) if entry["other"] else -1
        return _codes_of(column, entry["categories"], unknown=unknown, missing=MISSING)

    def transform_target(self, values) -> np.ndarray:
        """Class codes (int64) for classification, float32 values for regression.

        Parameters
        ----------
        values : array-like
            Raw target values (labels, or numbers).

        Returns
        -------
        numpy.ndarray
        """
        if self.target_ is None:
            raise SchemaError("This store has no target column, so there is nothing to encode.")
        raw = values
        if isinstance(values, (pa.ChunkedArray, pa.Array)):
            values = values.to_pandas()
        values = pd.Series(values)
        if self.target_["task"] == "regression":
            return pd.to_numeric(values).to_numpy(dtype=np.float32)
        classes = self.target_["classes"]
        target_type = self.target_.get("type") or "string"
        if target_type == "string" and isinstance(raw, (pa.ChunkedArray, pa.Array)):
            codes = _codes_of(raw, class_strings(classes, target_type), unknown=-1, missing=None)
        else:
            text, _ = canonical_target(values, target_type)
            codes = pd.Index(class_strings(classes, target_type)).get_indexer(text).astype(np.int64)
        if (codes < 0).any():
            unknown = values[codes < 0].unique()[:5].tolist()
            raise SchemaError(
                f"Target values {unknown} are not among the classes seen at ingest {classes}."
            )
        return codes

    def inverse_transform_target(self, codes) -> np.ndarray:
        """Class labels for class codes (the identity for regression).

        Parameters
        ----------
        codes : array-like of int

        Returns
        -------
        numpy.ndarray
        """
        if self.target_ is None or self.target_["task"] == "regression":
            return np.asarray(codes)
        return np.asarray(self.target_["classes"], dtype=object)[np.asarray(codes, dtype=np.int64)]

    def summary(self) -> str:
        """A few human-readable lines describing the fitted transform (counts, never data values).

        Returns
        -------
        str
        """
        plain = sum("datetime" not in entry for entry in self.numeric_)
        lines = [f"numeric ({plain}): impute {self.state['impute']}, standard scaling"]
        for entry in self.datetime_:
            read = f"epoch numbers in {entry['unit']!r}" if entry.get("unit") else (
                f"UTC: {entry.get('converted_to_utc', 0):,} converted from their time zone, "
                f"{entry.get('taken_as_utc', 0):,} without one taken as UTC")
            lines.append(f"date/time {entry['name']!r}: {len(entry['parts'])} parts ({', '.join(entry['parts'])}), "
                         f"imputed and scaled as numbers; {read}")
        for entry in self.categorical_:
            count = len(entry["categories"])
            if entry["encoding"] == "frequency":
                lines.append(f"categorical {entry['name']!r}: frequency in the training rows ({count:,} values)")
            elif entry["encoding"] == "target":
                lines.append(f"categorical {entry['name']!r}: target mean over the training rows ({count:,} values; "
                             f"m-estimate, prior weight {entry['prior_weight']:g}; training rows out of fold, "
                             f"{entry['n_folds']} folds)")
            else:
                extra = (f" + {OTHER} ({entry['n_seen'] - count:,} rare values in {entry.get('other_count', 0):,} "
                         "rows)" if entry["other"] else "")
                lines.append(f"categorical {entry['name']!r}: one-hot, {count:,} categories{extra}")
        if self.target_ is not None:
            if self.target_["task"] == "classification":
                lines.append(f"target {self.target_['name']!r}: {len(self.target_['classes'])} classes")
            else:
                lines.append(f"target {self.target_['name']!r}: regression (float32, not scaled)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"TabularPreprocessor(numeric={len(self.numeric_)}, categorical={len(self.categorical_)}, "
                f"n_features={self.n_features_in_})")


def _numeric_entry(name: str, stats: ColumnStats, impute: str) -> dict:
    """The fill, centre and scale of one numeric feature from its statistics (SimpleImputer then StandardScaler)."""
    if stats.count == 0:
        fill, mean, scale = 0.0, 0.0, 1.0
    elif stats.minimum == stats.maximum:
        # Constant: scale 1 and centre exactly, as StandardScaler does;
        # the merged mean may be off by a rounding step, which would
        # blow up into 1.0 after dividing by a ~1e-17 deviation.
        fill = mean = stats.minimum
        scale = 1.0
    else:
        fill = stats.mean if impute == "mean" else stats.median()
        total = stats.count + stats.missing
        # Statistics of the column after imputation, as a scaler
        # fitted behind SimpleImputer would see it.
        mean = (stats.mean * stats.count + fill * stats.missing) / total
        m2 = (stats.m2 + stats.count * (stats.mean - mean) ** 2
              + stats.missing * (fill - mean) ** 2)
        std = math.sqrt(max(m2, 0.0) / total)
        scale = std if std > 0 else 1.0
    return {
        "name": name, "fill": fill, "mean": mean, "scale": scale,
        "count": stats.count, "missing": stats.missing,
        "min": stats.minimum if stats.count else None,
        "max": stats.maximum if stats.count else None,
    }


def _onehot_entry(name: str, counts: dict, max_categories: int | None) -> dict:
    """The categories a one-hot column keeps: the most frequent ``max_categories`` (None: all, up to the bound)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if max_categories is None:
        if len(ranked) > MAX_CATEGORIES_BOUND:
            raise SchemaError(
                f"The categorical column {name!r} has {len(ranked):,} distinct values, more than max_categories=None "
                f"keeps (at most {MAX_CATEGORIES_BOUND:,}, one feature each). Pass max_categories=<int> to keep the "
                f"most frequent values (the rest share {name}={OTHER}), categorical_encoding={{{name!r}: 'frequency'}} "
                f"or {{{name!r}: 'target'}} to encode it as numbers, or drop it (drop=[{name!r}])."
            )
        max_categories = len(ranked)
    kept = sorted(value for value, _ in ranked[:max_categories])
    return {
        "name": name, "encoding": "onehot", "categories": kept, "other": len(ranked) > max_categories,
        "n_seen": len(ranked), "other_count": sum(count for _, count in ranked[max_categories:]),
    }


def _encoded_entry(name: str, counts: dict, encoding: str, target_state: dict | None) -> dict:
    """A frequency or target encoding, its outputs known, its values fitted later by ``fit_encodings``."""
    entry = {"name": name, "encoding": encoding, "categories": [], "other": False, "n_seen": len(counts),
             "fitted": False}
    if encoding == "frequency":
        return {**entry, "outputs": [None]}
    if target_state is None:
        raise SchemaError(f"categorical_encoding={{{name!r}: 'target'}} needs a target column (target=...); "
                          "this data has none. Use 'frequency' or 'onehot'.")
    classes = target_state.get("classes")
    outputs = [None] if target_state["task"] == "regression" or len(classes) == 2 else list(classes)
    return {**entry, "outputs": outputs, "positive": classes[1] if classes and len(classes) == 2 else None,
            "prior_weight": TARGET_PRIOR_WEIGHT, "n_folds": TARGET_FOLDS}


def _categorical_features(entry: dict) -> tuple[list[str], list[str]]:
    """The feature names of one categorical column, and where each comes from (for duplicate-name errors)."""
    name = entry["name"]
    if entry["encoding"] == "frequency":
        return [f"{name}__frequency"], [f"the frequency encoding of the categorical column {name!r}"]
    if entry["encoding"] == "target":
        names = [f"{name}__target" if output is None else f"{name}__target={output}" for output in entry["outputs"]]
        return names, [f"the target encoding of the categorical column {name!r}"] * len(names)
    names = [f"{name}={value}" for value in entry["categories"]]
    origins = [f"the one-hot column of value {value!r} of the categorical column {name!r}"
               for value in entry["categories"]]
    if entry["other"]:
        names.append(f"{name}={OTHER}")
        origins.append(f"the {OTHER!r} column of the rare values of the categorical column {name!r}")
    return names, origins


def _labels(column) -> np.ndarray:
    """A category column's values as text, missing ones as :data:`MISSING` (as one-hot encoding counts them)."""
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return column.fill_null(MISSING).to_numpy(zero_copy_only=False).astype(object)


def merge_encoding_summaries(summaries) -> dict:
    """Merge the blocks' :meth:`TabularPreprocessor.encoding_summary` results (sums per value and fold).

    Parameters
    ----------
    summaries : iterable of dict of str to pandas.DataFrame

    Returns
    -------
    dict of str to pandas.DataFrame
    """
    parts: dict[str, list] = {}
    for summary in summaries:
        for name, frame in summary.items():
            parts.setdefault(name, []).append(frame)
    return {name: pd.concat(frames).groupby(level=["value", "fold"], sort=False).sum()
            for name, frames in parts.items()}


def _fit_encoding(entry: dict, frame: pd.DataFrame | None) -> tuple[dict, dict | None]:
    """One encoded column's values (and, for a target encoding, its per-fold tables) from training-row sums."""
    n_outputs = len(entry["outputs"])
    folds = entry.get("n_folds", 1)
    if frame is None or frame.empty:
        categories, counts, sums = [], np.zeros((0, folds)), np.zeros((0, folds, n_outputs))
    else:
        frame = frame.sort_index()
        categories = sorted(set(frame.index.get_level_values("value")))
        position = pd.Index(categories).get_indexer(frame.index.get_level_values("value"))
        fold = frame.index.get_level_values("fold").to_numpy(dtype=np.int64) % folds
        counts = np.zeros((len(categories), folds))
        np.add.at(counts, (position, fold), frame["count"].to_numpy(dtype=np.float64))
        sums = np.zeros((len(categories), folds, n_outputs))
        if entry["encoding"] == "target":
            np.add.at(sums, (position, fold), frame[[f"sum{k}" for k in range(n_outputs)]].to_numpy(np.float64))
    per_value = counts.sum(axis=1)
    total = per_value.sum()
    fitted = {**entry, "categories": categories, "fitted": True, "n_train": int(total)}
    if entry["encoding"] == "frequency":
        table = per_value / total if total else per_value
        return {**fitted, "table": table[:, None].tolist(), "unseen": [0.0]}, None
    value_sums = sums.sum(axis=1)
    prior = value_sums.sum(axis=0) / total if total else np.zeros(n_outputs)
    weight = entry["prior_weight"]
    table = (value_sums + weight * prior[None, :]) / (per_value[:, None] + weight)
    fitted = {**fitted, "table": table.tolist(), "unseen": prior.tolist(), "counts": per_value.astype(int).tolist()}
    return fitted, {"n_folds": folds, "counts": counts.tolist(), "sums": sums.tolist()}


def _out_of_fold(values: np.ndarray, codes: np.ndarray, folds: np.ndarray, tables: dict, weight: float) -> None:
    """Overwrite the rows with a fold by their out-of-fold target encoding: the m-estimate over the training
    rows of the other folds, towards their mean (so a row's own target never enters its encoding)."""
    n_folds, n_outputs = tables["n_folds"], values.shape[1]
    counts = np.asarray(tables["counts"], dtype=np.float64).reshape(-1, n_folds)
    sums = np.asarray(tables["sums"], dtype=np.float64).reshape(-1, n_folds, n_outputs)
    # A row of zeros for values unseen in training (code len(categories)).
    counts = np.vstack([counts, np.zeros((1, n_folds))])
    sums = np.concatenate([sums, np.zeros((1, n_folds, n_outputs))])
    value_counts, value_sums = counts.sum(axis=1), sums.sum(axis=1)
    fold_counts, fold_sums = counts.sum(axis=0), sums.sum(axis=0)
    for fold in range(n_folds):
        rows = np.flatnonzero(folds == fold)
        if not len(rows):
            continue
        rest = fold_counts.sum() - fold_counts[fold]
        prior = (fold_sums.sum(axis=0) - fold_sums[fold]) / rest if rest else np.zeros(n_outputs)
        code = codes[rows]
        count = value_counts[code] - counts[code, fold]
        summed = value_sums[code] - sums[code, fold]
        values[rows] = (summed + weight * prior[None, :]) / (count[:, None] + weight)


def _check_unique_features(names: list[str], origins: list[str]) -> None:
    """Refuse feature names that repeat, naming what each comes from and how to fix it."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            first = origins[seen[name]]
            raise SchemaError(
                f"Two features would be named {name!r}: {first} and {origins[index]}. Rename the column "
                f"{name!r} (or drop it: drop=[{name!r}]) so that every feature name is unique."
                if first.startswith("the numeric column") else
                f"Two features would be named {name!r}: {first} and {origins[index]}. Rename the value or the "
                "column so that every feature name is unique."
            )
        seen[name] = index


def _codes_of(column, categories: list[str], *, unknown: int, missing: str | None) -> np.ndarray:
    """Positions of a text column's values in ``categories`` (int64).

    Values are dictionary-encoded first (in Arrow, vectorized), so only the
    small dictionary is matched against the categories in Python.  Values not
    among them get ``unknown``; nulls count as the value ``missing`` (or
    ``unknown`` when None).
    """
    import pyarrow.compute as pc

    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    if not pa.types.is_dictionary(column.type):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        column = pc.dictionary_encode(column)
    lookup = {value: code for code, value in enumerate(categories)}
    missing_code = lookup.get(missing, unknown) if missing is not None else unknown
    parts = []
    for chunk in column.chunks:
        dictionary = chunk.dictionary.to_pylist()
        mapping = np.array([lookup.get(value, unknown) for value in dictionary] + [missing_code], dtype=np.int64)
        indices = chunk.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
        parts.append(mapping[indices])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _dask_transform(preprocessor: TabularPreprocessor, frame):
    import dask.array as da

    import dask

    columns = preprocessor.input_columns
    blocks = frame[columns].to_delayed()
    lengths = frame[columns].map_partitions(len).compute()
    arrays = [
        da.from_delayed(dask.delayed(preprocessor.transform)(block), shape=(int(n), preprocessor.n_features_in_),
                        dtype=np.float32)
        for block, n in zip(blocks, lengths)
    ]
    return da.concatenate(arrays, axis=0)


def _coerce_for_transform(preprocessor: TabularPreprocessor, table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    for entry in preprocessor.numeric_:
        if "datetime" in entry:  # a part of a date/time column, computed from that column
            continue
        column = table.column(entry["name"])
        if not pa.types.is_floating(column.type):
            try:
                column = pc.cast(column, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise SchemaError(
                    f"Column {entry['name']!r} must be numeric to transform it: {error}"
                ) from None
            table = table.set_column(table.schema.get_field_index(entry["name"]), entry["name"], column)
    return table


def _to_json_safe(value):
    if isinstance(value, dict):
        return {str(key): _to_json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_safe(item) for item in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ------------------------------------------------------------------ targets
TARGET_TYPES = ("string", "integer", "float", "boolean")


def canonical_target(values: pd.Series, target_type: str) -> tuple[pd.Series, np.ndarray]:
    """Class labels as canonical strings, whatever format they were read from.

    ``1``, ``1.0`` and ``"1"`` are one class of an integer target, ``True``
    and ``"true"`` one class of a boolean target.  Returns the strings and a
    mask of values that do not fit ``target_type`` (nulls are not flagged).
    """
    if target_type == "string":
        if values.dtype != object and not isinstance(values.dtype, pd.StringDtype):
            values = values.astype(str).where(values.notna(), None)
        return values, np.zeros(len(values), bool)
    present = values.notna().to_numpy()
    if target_type == "boolean":
        lowered = values.astype(object).map(lambda value: None if value is None or value is pd.NA
                                            or (isinstance(value, float) and math.isnan(value))
                                            else str(value).strip().lower())
        mapped = lowered.map({"true": "true", "1": "true", "1.0": "true", "yes": "true",
                              "false": "false", "0": "false", "0.0": "false", "no": "false"})
        return mapped, present & mapped.isna().to_numpy()
    numbers = pd.to_numeric(values, errors="coerce")
    bad = present & numbers.isna().to_numpy()
    if target_type == "integer":
        integral = numbers.dropna()
        not_integral = np.zeros(len(values), bool)
        not_integral[np.flatnonzero(numbers.notna().to_numpy())] = (integral % 1 != 0).to_numpy()
        bad |= not_integral
        text = numbers.map(lambda value: None if pd.isna(value) or value % 1 else str(int(value)))
    else:
        text = numbers.map(lambda value: None if pd.isna(value) else repr(float(value)))
    return text, bad


def typed_classes(class_strings: list[str], target_type: str) -> list:
    """Canonical class strings back to typed labels, sorted in their natural order."""
    if target_type == "integer":
        return sorted(int(value) for value in class_strings)
    if target_type == "float":
        return sorted(float(value) for value in class_strings)
    if target_type == "boolean":
        return sorted(value == "true" for value in class_strings)
    return sorted(class_strings)


def class_strings(classes: list, target_type: str) -> list[str]:
    """Typed class labels to the canonical strings :func:`canonical_target` produces."""
    if target_type == "integer":
        return [str(int(value)) for value in classes]
    if target_type == "float":
        return [repr(float(value)) for value in classes]
    if target_type == "boolean":
        return ["true" if value else "false" for value in classes]
    return [str(value) for value in classes]
