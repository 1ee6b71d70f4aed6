"""from_arrays: what it refuses, since it stores values as given (issue 13, items 6 and 12)."""

from __future__ import annotations

import numpy as np
import pytest

import bigdl
from bigdl.errors import SchemaError


def _refused(tmp_path, message, X, y=None, **options):
    with pytest.raises(SchemaError) as caught:
        bigdl.store.from_arrays(X, y, store=tmp_path / "s.zarr", rows_per_chunk=4, **options)
    assert str(caught.value) == message
    assert list(tmp_path.iterdir()) == []  # no store, no temporary


@pytest.mark.parametrize("value", [0, 3])
def test_one_class_is_refused(tmp_path, value):
    _refused(tmp_path, f"Only one class ({value}) in y; classification needs at least two classes.",
             np.ones((10, 2)), np.full(10, value))


def test_one_class_label_is_refused(tmp_path):
    _refused(tmp_path, "Only one class ('a') in classes=; classification needs at least two classes.",
             np.ones((10, 2)), np.arange(10) % 2, classes=["a"])


def test_codes_beyond_the_classes_are_refused(tmp_path):
    _refused(tmp_path, "y holds class codes from 0 to 2, but there are 2 classes (codes 0 to 1); pass classes= "
                       "with a label for every code.", np.ones((10, 2)), np.arange(10) % 3, classes=["a", "b"])


@pytest.mark.parametrize(("row", "value", "shown"), [(7, np.inf, "inf"), (2, -np.inf, "-inf"), (9, 1e39, "inf")])
def test_non_finite_features_are_refused(tmp_path, row, value, shown):
    X = np.ones((10, 2))
    X[row, 1] = value
    _refused(tmp_path, f"X holds a value that is not a finite float32 number ({shown}) in row {row} (beyond "
                       "+-3.4e38 a number overflows to inf); from_arrays stores values as given, so replace it (or "
                       "drop the row) first (NaN in X is kept as a missing value).", X, np.arange(10) % 2)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_regression_targets_are_refused(tmp_path, value):
    y = np.ones(10)
    y[5] = value
    _refused(tmp_path, f"y holds a value that is not a finite float32 number ({value}) in row 5 (beyond +-3.4e38 "
                       "a number overflows to inf); from_arrays stores values as given, so replace it (or drop the "
                       "row) first.", np.ones((10, 2)), y)


def test_missing_features_and_two_classes_are_stored(tmp_path):
    X = np.ones((10, 2))
    X[3, 0] = np.nan
    ds = bigdl.store.from_arrays(X, np.arange(10) % 2, store=tmp_path / "s.zarr", rows_per_chunk=4)
    assert ds.classes == [0, 1]
    assert np.isnan(ds.X.compute()[3, 0])
