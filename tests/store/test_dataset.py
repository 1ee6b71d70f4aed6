"""The store as written: readable without bigdl, and the Dataset API over it."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import SchemaError
from bigdl.store import FORMAT_VERSION, SPLIT_CODES
from support import (CATEGORICAL, DROP, N_ROWS, NUMERIC, REGRESSION_TARGET, ROWS_PER_CHUNK, TARGET, expected_features,
                     in_input_order)


@pytest.fixture(scope="module")
def regression_store(tmp_path_factory, sources):
    source, _ = sources["parquet"]
    store = tmp_path_factory.mktemp("regression") / "r.zarr"
    return bigdl.ingest.tabular(source, target=REGRESSION_TARGET, drop=["id", TARGET], store=store,
                                rows_per_chunk=ROWS_PER_CHUNK, progress=False)


N_FEATURES = len(NUMERIC) + 5 + 3  # the numeric columns, then 5 cities and 3 plans (see make_frame)


# ---------------------------------------------------------------- without bigdl
def test_plain_zarr_reads_the_store(reference_store):
    import zarr

    group = zarr.open_group(str(reference_store.path), mode="r")
    assert group.metadata.zarr_format == 3
    assert group["X"].shape == (N_ROWS, N_FEATURES) and group["X"].dtype == np.float32
    assert group["y"].shape == (N_ROWS,) and group["y"].dtype == np.int64
    assert group["split"].shape == (N_ROWS,) and group["split"].dtype == np.uint8
    assert group["record"].shape == (N_ROWS,) and group["record"].dtype == np.int64
    for name in ("X", "y", "split", "record"):
        assert group[name].chunks[0] == ROWS_PER_CHUNK
    attrs = dict(group.attrs)
    assert attrs["format_version"] == FORMAT_VERSION
    assert attrs["kind"] == "tabular"
    assert attrs["task"] == "classification"
    assert attrs["target_name"] == TARGET
    assert attrs["class_names"] == ["churn", "stay", "upgrade"]
    assert len(attrs["feature_names"]) == N_FEATURES
    assert attrs["rows"] == {"read": N_ROWS, "stored": N_ROWS, "rejected": 0, "rejected_by_reason": {}}
    assert sum(attrs["split_counts"].values()) == N_ROWS
    assert attrs["split"] == {"seed": 0, "validation": 0.1, "test": 0.2, "key": "record position"}
    preprocessing = attrs["preprocessing"]
    assert [entry["name"] for entry in preprocessing["numeric"]] == NUMERIC
    assert [entry["name"] for entry in preprocessing["categorical"]] == CATEGORICAL
    assert preprocessing["impute"] == "mean"
    for key in ("source", "created", "bigdl_version", "compression"):
        assert attrs[key]
    assert attrs["source"]["format"] == "csv"


def test_plain_xarray_reads_the_store(reference_store):
    import xarray as xr

    dataset = xr.open_zarr(str(reference_store.path))
    assert set(dataset.data_vars) == {"X", "y", "split", "record"}
    assert dataset["X"].dims == ("sample", "feature")
    assert dataset["y"].dims == dataset["split"].dims == ("sample",)
    assert dataset.sizes == {"sample": N_ROWS, "feature": N_FEATURES}
    assert dataset["X"].dtype == np.float32 and dataset["split"].dtype == np.uint8
    assert dataset.attrs["kind"] == "tabular"
    np.testing.assert_array_equal(dataset["X"].values, reference_store.X.compute())


def test_regression_store_holds_float_targets(regression_store, frame):
    import zarr

    group = zarr.open_group(str(regression_store.path), mode="r")
    assert group["y"].dtype == np.float32
    (y,) = in_input_order(regression_store, "y")
    np.testing.assert_array_equal(y, frame[REGRESSION_TARGET].to_numpy(np.float32))
    assert group.attrs["task"] == "regression" and group.attrs["class_names"] is None


# ---------------------------------------------------------------- Dataset API
def test_dataset_metadata(reference_store, frame):
    ds = reference_store
    _, names = expected_features(frame)
    assert ds.kind == "tabular" and ds.task == "classification"
    assert ds.n_samples == N_ROWS
    assert ds.n_features == N_FEATURES == len(names)
    assert ds.feature_names == names
    assert ds.target_name == TARGET
    assert ds.classes == sorted(frame[TARGET].unique())
    assert ds.n_classes == 3
    assert ds.rows_per_chunk == ROWS_PER_CHUNK
    assert ds.row_counts["stored"] == N_ROWS
    assert bigdl.open(ds.path).feature_names == names
    assert "n_samples=3000" in repr(ds)


def test_regression_metadata(regression_store):
    assert regression_store.task == "regression"
    assert regression_store.classes is None and regression_store.n_classes is None
    assert regression_store.target_name == REGRESSION_TARGET
    assert regression_store.y.dtype == np.float32


@pytest.mark.parametrize("values, task, classes", [
    (["yes", "no"] * 30, "classification", ["no", "yes"]),
    ([True, False, False] * 20, "classification", [False, True]),
    ([1, 2, 3] * 20, "classification", [1, 2, 3]),
    (list(np.linspace(0, 1, 60)), "regression", None),
    (list(range(60)), "regression", None),  # more than 50 distinct integers
])
def test_task_is_inferred_from_the_target(tmp_path, values, task, classes):
    frame = pd.DataFrame({"x": np.arange(60.0), "t": values})
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    ds = bigdl.ingest.tabular(tmp_path / "d.parquet", target="t", store=tmp_path / "s.zarr", progress=False)
    assert ds.task == task
    assert ds.classes == classes
    if task == "classification":
        np.testing.assert_array_equal(np.asarray(classes)[in_input_order(ds, "y")[0]], values)
    else:
        np.testing.assert_allclose(in_input_order(ds, "y")[0], np.asarray(values, dtype=np.float32))


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_split_arrays(reference_store, split):
    ds = reference_store
    X, y = ds.arrays(split)
    count = ds.split_counts[split]
    assert X.shape == (count, ds.n_features) and y.shape == (count,)
    assert X.chunks[0] and len(X.chunks[0]) == N_ROWS // ROWS_PER_CHUNK  # one piece per store chunk
    mask = ds.split.compute() == SPLIT_CODES[split]
    np.testing.assert_array_equal(X.compute(), ds.X.compute()[mask])
    np.testing.assert_array_equal(y.compute(), ds.y.compute()[mask])
    np.testing.assert_array_equal(ds.indices(split), np.flatnonzero(mask))


def test_all_arrays_and_bad_split_name(reference_store):
    X, y = reference_store.arrays("all")
    assert X.shape == (N_ROWS, N_FEATURES) and y.shape == (N_ROWS,)
    assert X.chunks[0] == (ROWS_PER_CHUNK,) * (N_ROWS // ROWS_PER_CHUNK)
    with pytest.raises(SchemaError, match=re.escape("The 'split' parameter of Dataset must be a str among {'train', "
                                                    "'validation', 'test', 'all'} or None. Got 'training' "
                                                    "instead.")):
        reference_store.arrays("training")
    with pytest.raises(SchemaError, match="'split' parameter of Dataset.indices"):
        reference_store.indices("training")


def test_split_counts_match_the_split_array(reference_store):
    codes = np.bincount(reference_store.split.compute(), minlength=3)
    assert reference_store.split_counts == {"train": codes[0], "validation": codes[1], "test": codes[2]}


def test_info_mentions_rows_splits_and_rejects(tmp_path, reference_store):
    text = str(reference_store.info())
    assert "read 3,000  stored 3,000  rejected 0" in text
    assert "classification" in text and "3 classes" in text and f"features     {N_FEATURES}" in text
    assert reference_store.info()["n_samples"] == N_ROWS

    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(50))
                    + "51,abc,x\n52,3,\n")
    ds = bigdl.ingest.tabular(path, target="label", store=tmp_path / "s.zarr", progress=False)
    text = str(ds.info())
    assert "read 52  stored 50  rejected 2" in text
    assert "1 x column 'b': not a number" in text and "1 x missing target 'label'" in text
    assert f"rejects in {ds.rejects_path}" in text
    assert ds.info()["rows"]["rejected"] == 2


def test_to_xarray_has_a_feature_coordinate(reference_store):
    dataset = reference_store.to_xarray()
    assert list(dataset["feature"].values) == reference_store.feature_names
    first = dataset["X"].sel(feature="city=Oslo").values
    np.testing.assert_array_equal(first, reference_store.X[:, reference_store.feature_names.index("city=Oslo")]
                                  .compute())


def test_preprocessor_transform_of_new_rows_equals_the_store(reference_store, frame):
    # The rows as a user would have them: raw columns, unrelated columns included.
    rows = frame.iloc[2100:2600].sample(frac=1.0, random_state=1)
    X_new = reference_store.preprocessor.transform(rows)
    np.testing.assert_array_equal(X_new, in_input_order(reference_store, "X")[0][rows.index.to_numpy()])


def test_unlabelled_store(tmp_path, frame):
    frame.iloc[:200].drop(columns=DROP + [TARGET]).to_parquet(tmp_path / "u.parquet", index=False)
    ds = bigdl.ingest.tabular(tmp_path / "u.parquet", target=None, store=tmp_path / "u.zarr", progress=False)
    assert ds.task is None and ds.classes is None
    X, y = ds.arrays("train")
    assert y is None and X.shape[1] == N_FEATURES
    with pytest.raises(SchemaError, match="no target"):
        ds.y
    X_expected, _ = expected_features(frame.iloc[:200])
    np.testing.assert_allclose(in_input_order(ds, "X")[0], X_expected, rtol=1e-5, atol=1e-5)


def test_rejects_of_a_clean_store_is_an_empty_frame(reference_store):
    rejects = reference_store.rejects()
    assert rejects.empty and list(rejects.columns) == ["source", "row", "line", "raw", "reason"]


def test_dask_keys_differ_between_stores(reference_store, regression_store):
    assert reference_store.X.name != regression_store.X.name
    assert reference_store.X.name == bigdl.open(reference_store.path).X.name
