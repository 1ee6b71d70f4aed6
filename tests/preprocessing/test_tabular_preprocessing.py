"""The out-of-core preprocessing fit equals scikit-learn fitted in memory on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import bigdl
from bigdl.errors import SchemaError
from bigdl.preprocessing._tabular import OTHER, ColumnStats, TabularPreprocessor
from support import (
    NUMERIC,
    ROWS_PER_CHUNK,
    TARGET,
    expected_codes,
    expected_features,
    in_input_order,
    read_store,
)

# float32 storage of standardized values
RTOL, ATOL = 1e-5, 1e-5


@pytest.mark.parametrize("impute", ["mean", "median"])
def test_store_equals_sklearn_pipeline(tmp_path, frame, sources, ingest_kwargs, client, impute):
    source, extra = sources["csv"]
    ds = bigdl.ingest.tabular(source, store=tmp_path / "s.zarr", impute=impute, client=client,
                              **ingest_kwargs, **extra)
    X_expected, names = expected_features(frame, impute=impute)
    y_expected, classes = expected_codes(frame[TARGET])
    stored = read_store(ds.path)

    # Several chunks and several read blocks, or this test would not test the merge.
    assert ds.rows_per_chunk == ROWS_PER_CHUNK and ds.info()["chunks"]["n_chunks"] == len(frame) // ROWS_PER_CHUNK
    assert len(bigdl.ingest.sources.plan_sources(source, blocksize=20_000).blocks) > 3
    assert stored["X"].dtype == np.float32
    assert ds.feature_names == names
    assert names[:len(NUMERIC)] == NUMERIC
    np.testing.assert_allclose(stored["X"], X_expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(stored["y"], y_expected)
    assert ds.classes == classes
    np.testing.assert_array_equal(stored["record"], np.arange(len(frame)))


def test_median_fill_is_the_exact_median(tmp_path, frame, sources, ingest_kwargs):
    source, extra = sources["parquet"]
    ds = bigdl.ingest.tabular(source, store=tmp_path / "s.zarr", impute="median", **ingest_kwargs, **extra)
    fills = {entry["name"]: entry["fill"] for entry in ds.preprocessor.numeric_}
    for name in NUMERIC:
        assert fills[name] == float(frame[name].median())


def test_scaling_statistics_match_sklearn(reference_store, frame):
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    imputed = SimpleImputer(strategy="mean").fit_transform(frame[NUMERIC])
    scaler = StandardScaler().fit(imputed)
    state = reference_store.preprocessor.numeric_
    np.testing.assert_allclose([entry["mean"] for entry in state], scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose([entry["scale"] for entry in state], scaler.scale_, rtol=1e-9)
    assert [entry["missing"] for entry in state] == [int(frame[name].isna().sum()) for name in NUMERIC]


def test_constant_numeric_column_scales_to_zero(tmp_path):
    # A constant column has no spread: StandardScaler leaves it at (almost) 0.
    # 0.1 * 7 / 7 != 0.1 in floating point, so the computed variance is a
    # rounding residue, which must not be used as the scale.
    frame = pd.DataFrame({"const": [0.1] * 7, "v": np.arange(7.0), TARGET: list("abababa")})
    frame.to_parquet(tmp_path / "c.parquet")
    ds = bigdl.ingest.tabular(tmp_path / "c.parquet", target=TARGET, store=tmp_path / "c.zarr", progress=False)
    X_expected, _ = expected_features(frame, numeric=["const", "v"], categorical=[])
    np.testing.assert_allclose(in_input_order(ds, "X")[0], X_expected, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- unit level
def test_column_stats_merge_equals_whole_column():
    rng = np.random.default_rng(3)
    values = rng.normal(1e4, 5.0, 10_001)
    values[rng.random(values.size) < 0.1] = np.nan
    pieces = np.array_split(values, 7)
    merged = ColumnStats.of(pieces[0])
    for piece in pieces[1:]:
        merged = merged.merge(ColumnStats.of(piece))
    observed = values[~np.isnan(values)]
    assert merged.count == observed.size and merged.missing == int(np.isnan(values).sum())
    assert merged.mean == pytest.approx(observed.mean(), rel=1e-14)
    assert merged.m2 / merged.count == pytest.approx(observed.var(), rel=1e-10)
    assert (merged.minimum, merged.maximum) == (observed.min(), observed.max())
    assert merged.median() == np.median(observed)


def test_column_stats_of_all_missing_piece_merges():
    stats = ColumnStats.of(np.array([np.nan, np.nan])).merge(ColumnStats.of(np.array([1.0, 3.0])))
    assert (stats.count, stats.missing, stats.mean, stats.median()) == (2, 2, 2.0, 2.0)


def _fit(frame: pd.DataFrame, **kwargs) -> TabularPreprocessor:
    from bigdl.preprocessing._tabular import summarize

    table = pa.Table.from_pandas(frame, preserve_index=False)
    numeric = kwargs.pop("numeric", [])
    categorical = kwargs.pop("categorical", [])
    summary = summarize(table, numeric, categorical, None, None, seed=0, keep_sample=True)
    return TabularPreprocessor.fit_summary(summary, numeric=numeric, categorical=categorical, target=None,
                                           task=None, impute="mean", **kwargs)


def test_rare_categories_share_the_other_column():
    frame = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["e"]})
    preprocessor = _fit(frame, categorical=["c"], max_categories=2)
    assert preprocessor.feature_names_ == ["c=a", "c=b", f"c={OTHER}"]
    X = preprocessor.transform(pd.DataFrame({"c": ["a", "b", "c", "e", "never seen"]}))
    np.testing.assert_array_equal(X, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])


def test_unseen_category_without_other_column_is_all_zeros():
    preprocessor = _fit(pd.DataFrame({"c": ["x", "y", "x"]}), categorical=["c"], max_categories=32)
    X = preprocessor.transform(pd.DataFrame({"c": ["y", "z"]}))
    np.testing.assert_array_equal(X, [[0, 1], [0, 0]])


def test_transform_names_missing_columns():
    preprocessor = _fit(pd.DataFrame({"a": [1.0, 2.0], "c": ["x", "y"]}), numeric=["a"], categorical=["c"],
                        max_categories=32)
    with pytest.raises(SchemaError, match=r"\['c'\] are missing"):
        preprocessor.transform(pd.DataFrame({"a": [1.0]}))


def test_state_survives_json(reference_store, frame):
    import json

    state = json.loads(json.dumps(reference_store.preprocessor.to_state()))
    rebuilt = TabularPreprocessor.from_state(state)
    rows = frame.iloc[:50]
    np.testing.assert_array_equal(rebuilt.transform(rows), reference_store.preprocessor.transform(rows))
    assert rebuilt.feature_names_ == reference_store.feature_names


def test_target_codes_round_trip(reference_store, frame):
    preprocessor = reference_store.preprocessor
    codes = preprocessor.transform_target(frame[TARGET])
    np.testing.assert_array_equal(preprocessor.inverse_transform_target(codes), frame[TARGET].to_numpy())
    with pytest.raises(SchemaError, match="not among the classes"):
        preprocessor.transform_target(pd.Series(["stay", "vanished"]))


def test_blocksize_does_not_change_the_fit(tmp_path, sources, ingest_kwargs):
    source, extra = sources["csv"]
    small = bigdl.ingest.tabular(source, store=tmp_path / "small.zarr", **ingest_kwargs, **extra)
    ingest_kwargs["blocksize"] = "64MiB"
    whole = bigdl.ingest.tabular(source, store=tmp_path / "whole.zarr", **ingest_kwargs, **extra)
    # The row order depends on the blocks; the fitted preprocessing and so each row's features do not.
    np.testing.assert_allclose(in_input_order(small, "X")[0], in_input_order(whole, "X")[0], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- non-finite numbers and feature names (issue 13)
def test_transform_refuses_non_finite_numbers_naming_the_column():
    preprocessor = _fit(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 2.0]}), numeric=["a", "b"],
                        max_categories=32)
    assert preprocessor.to_state()["non_finite"] == "reject"
    with pytest.raises(SchemaError) as caught:
        preprocessor.transform(pd.DataFrame({"a": [1.0, 2.0, 2.0], "b": [0.0, np.inf, -np.inf]}))
    assert str(caught.value) == (
        "Column 'b' holds 2 value(s) that are not finite numbers (inf in row 1 first); this preprocessing was "
        "fitted with non_finite='reject' (ingest quarantined such rows). Replace them with NaN to have them "
        "imputed, or drop those rows.")


def test_transform_imputes_non_finite_numbers_when_fitted_to():
    frame = pd.DataFrame({"a": [1.0, 2.0, 6.0]})
    preprocessor = _fit(frame, numeric=["a"], max_categories=32, non_finite="missing")
    new = preprocessor.transform(pd.DataFrame({"a": [np.inf, -np.inf, np.nan, 2.0]}))
    expected = preprocessor.transform(pd.DataFrame({"a": [np.nan, np.nan, np.nan, 2.0]}))
    np.testing.assert_array_equal(new, expected)
    assert np.isfinite(new).all()


def test_feature_names_must_be_unique():
    frame = pd.DataFrame({"c": ["x", "y", "x"], "c=y": [1.0, 2.0, 3.0]})
    with pytest.raises(SchemaError) as caught:
        _fit(frame, numeric=["c=y"], categorical=["c"], max_categories=32)
    assert str(caught.value) == (
        "Two features would be named 'c=y': the numeric column 'c=y' and the one-hot column of value 'y' of the "
        "categorical column 'c'. Rename the column 'c=y' (or drop it: drop=['c=y']) so that every feature name "
        "is unique.")


def test_a_state_from_before_encodings_and_dates_still_transforms():
    preprocessor = _fit(pd.DataFrame({"a": [1.0, 3.0], "c": ["x", "y"]}), numeric=["a"], categorical=["c"],
                        max_categories=32)
    state = preprocessor.to_state()
    old = {**state, "categorical": [{key: value for key, value in entry.items() if key != "encoding"}
                                    for entry in state["categorical"]]}
    del old["datetime"]
    X = TabularPreprocessor.from_state(old).transform(pd.DataFrame({"a": [1.0], "c": ["y"]}))
    np.testing.assert_array_equal(X, [[-1.0, 0.0, 1.0]])
    assert TabularPreprocessor.from_state(old).category_report() == {
        "c": {"encoding": "onehot", "kept": 2, "folded_values": 0, "folded_rows": 0}}


def test_datetime_parts_are_numeric_features_imputed_and_scaled():
    from bigdl.preprocessing._tabular import summarize

    times = pd.Series(pd.to_datetime(["2024-01-01 06:00", None, "2024-03-01 18:00"]))
    table = pa.table({"when": pa.array(times.to_numpy(dtype="datetime64[us]"), type=pa.timestamp("us"),
                                       from_pandas=True)})
    spec = [{"name": "when", "unit": None, "parts": ["month", "hour"]}]
    summary = summarize(table, [], [], None, None, seed=0, datetime=spec)
    preprocessor = TabularPreprocessor.fit_summary(summary, numeric=[], categorical=[], target=None, task=None,
                                                   impute="mean", max_categories=32, datetime=spec)
    assert preprocessor.feature_names_ == ["when__month", "when__hour"] and preprocessor.input_columns == ["when"]
    X = preprocessor.transform(pd.DataFrame({"when": ["2024-01-01T06:00:00+00:00", None, "2024-03-01 18:00"]}))
    # The missing row gets the mean; scaled after imputation, as StandardScaler behind SimpleImputer.
    np.testing.assert_allclose(X, np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]) * np.sqrt(1.5), rtol=1e-6)
