"""Out-of-core fitting of tabular preprocessing, and the transformer it yields.

Each block of input contributes a small :class:`ColumnStats` summary
(counts, mean and sum of squared deviations, a bounded value sample, category
counts); summaries merge associatively, so the fit is one pass whatever the
data size.  The result is a :class:`TabularPreprocessor` whose JSON state is
stored in the store attributes and that applies the same transform to new data
(``SimpleImputer`` then ``StandardScaler`` for numbers, one-hot with an
``other`` bucket for categories, class codes for the target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl.errors import SchemaError

__all__ = ["TabularPreprocessor", "ColumnStats", "OTHER", "MISSING"]

OTHER = "__other__"
MISSING = "__missing__"
# Per-block cap of values kept to estimate medians: exact below it, a uniform
# sample above it (the estimate is then approximate, like dask's quantiles).
MEDIAN_SAMPLE = 5_000
# Beyond this many distinct target values a "classification" target is almost
# certainly a continuous quantity.
MAX_CLASSES = 1_000


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
        observed = values[~np.isnan(values)]
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
            m2=float(((observed - mean) ** 2).sum()),
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
              task: str | None, seed: int, keep_sample: bool = False) -> BlockSummary:
    """Summarize one validated block (numeric columns already float64).

    ``keep_sample`` keeps a bounded value sample per column, needed only to
    estimate medians.
    """
    numeric_stats = {
        name: ColumnStats.of(column_values(table, name), seed=seed + index, keep_sample=keep_sample)
        for index, name in enumerate(numeric)
    }
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
    ``SimpleImputer`` followed by ``StandardScaler``.  Categorical columns:
    one-hot over the categories found at ingest (the most frequent
    ``max_categories`` of them, the rest and unseen values in an ``__other__``
    column when it exists, otherwise all zeros).  Feature order: numeric
    columns, then each categorical column's indicator columns.

    Use :meth:`transform` to prepare new data for a model trained on the store.

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
        self.categorical_: list[dict] = state["categorical"]
        self.target_: dict | None = state.get("target")
        self.feature_names_: list[str] = list(state["feature_names"])
        self.n_features_in_ = len(self.feature_names_)

    # -- construction -------------------------------------------------
    @classmethod
    def fit_summary(cls, summary: BlockSummary, *, numeric: list[str], categorical: list[str],
                    target: str | None, task: str | None, impute: str,
                    max_categories: int, target_type: str | None = None,
                    non_finite: str = "reject") -> "TabularPreprocessor":
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
            The fill of missing numbers.
        max_categories : int
            Most frequent categories kept per categorical column.
        non_finite : {"reject", "missing"}, default "reject"
            What :meth:`transform` does with ``inf`` and ``-inf`` in a numeric
            column: ``"reject"`` refuses them (ingest quarantined such rows),
            ``"missing"`` fills them like missing values.

        Returns
        -------
        TabularPreprocessor

        Raises
        ------
        SchemaError
            Two features would have one name (a column ``c=x`` beside the
            one-hot column of value ``x`` of a categorical column ``c``), or
            the target has too many classes.
        """
        numeric_state = []
        for name in numeric:
            stats = summary.numeric[name]
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
            numeric_state.append({
                "name": name, "fill": fill, "mean": mean, "scale": scale,
                "count": stats.count, "missing": stats.missing,
                "min": stats.minimum if stats.count else None,
                "max": stats.maximum if stats.count else None,
            })
        categorical_state = []
        for name in categorical:
            counts = summary.categorical[name]
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            kept = sorted(value for value, _ in ranked[:max_categories])
            other = len(ranked) > max_categories
            categorical_state.append({
                "name": name, "categories": kept, "other": other,
                "n_seen": len(ranked),
                "other_count": sum(count for _, count in ranked[max_categories:]),
            })
        feature_names = [entry["name"] for entry in numeric_state]
        origins = [f"the numeric column {entry['name']!r}" for entry in numeric_state]
        for entry in categorical_state:
            feature_names += [f"{entry['name']}={value}" for value in entry["categories"]]
            origins += [f"the one-hot column of value {value!r} of the categorical column {entry['name']!r}"
                        for value in entry["categories"]]
            if entry["other"]:
                feature_names.append(f"{entry['name']}={OTHER}")
                origins.append(f"the {OTHER!r} column of the rare values of the categorical column "
                               f"{entry['name']!r}")
        _check_unique_features(feature_names, origins)
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
        state = {
            "impute": impute, "non_finite": non_finite, "max_categories": max_categories,
            "numeric": numeric_state, "categorical": categorical_state,
            "target": target_state, "feature_names": feature_names,
        }
        return cls(_to_json_safe(state))

    @classmethod
    def from_state(cls, state: dict) -> "TabularPreprocessor":
        """Rebuild from the JSON state stored in a store's attributes."""
        return cls(state)

    def to_state(self) -> dict:
        """The JSON-serializable state (stored as the ``preprocessing`` attribute)."""
        return self.state

    # -- transform ----------------------------------------------------
    @property
    def input_columns(self) -> list[str]:
        """Columns :meth:`transform` needs, in order."""
        return [entry["name"] for entry in self.numeric_] + [entry["name"] for entry in self.categorical_]

    def transform(self, data) -> np.ndarray:
        """Turn raw rows into the float32 feature matrix stored as ``X``.

        Parameters
        ----------
        data : pandas.DataFrame, pyarrow.Table or dask.dataframe.DataFrame
            Must hold every column of :attr:`input_columns`; other columns
            are ignored.  A dask DataFrame gives a dask array (chunk by chunk).

        Returns
        -------
        numpy.ndarray or dask.array.Array of shape (n_rows, n_features), float32
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
            # Column-major work then one transposing copy: writing columns of
            # the row-major output one by one is several times slower.
            values = np.empty((n_numeric, n), dtype=np.float64)
            for position, entry in enumerate(self.numeric_):
                values[position] = column_values(data, entry["name"])
            self._check_finite(values)
            fill = np.array([entry["fill"] for entry in self.numeric_])[:, None]
            np.copyto(values, np.broadcast_to(fill, values.shape), where=np.isnan(values))
            values -= np.array([entry["mean"] for entry in self.numeric_])[:, None]
            values /= np.array([entry["scale"] for entry in self.numeric_])[:, None]
            out[:, :n_numeric] = values.T
        position = n_numeric
        for entry in self.categorical_:
            width = len(entry["categories"]) + (1 if entry["other"] else 0)
            codes = self._category_codes(data.column(entry["name"]), entry)
            block = out[:, position:position + width]
            block[:] = 0.0
            hit = codes >= 0
            block[np.flatnonzero(hit), codes[hit]] = 1.0
            position += width
        return out

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
        """A few human-readable lines describing the fitted transform."""
        lines = [f"numeric ({len(self.numeric_)}): impute {self.state['impute']}, standard scaling"]
        for entry in self.categorical_:
            extra = f" + {OTHER} ({entry['n_seen'] - len(entry['categories'])} rare values)" if entry["other"] else ""
            lines.append(f"categorical {entry['name']!r}: one-hot, {len(entry['categories'])} categories{extra}")
        if self.target_ is not None:
            if self.target_["task"] == "classification":
                lines.append(f"target {self.target_['name']!r}: {len(self.target_['classes'])} classes")
            else:
                lines.append(f"target {self.target_['name']!r}: regression (float32, not scaled)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"TabularPreprocessor(numeric={len(self.numeric_)}, categorical={len(self.categorical_)}, "
                f"n_features={self.n_features_in_})")


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
