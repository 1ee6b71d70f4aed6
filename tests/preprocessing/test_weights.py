"""class_weight resolved once: 'balanced' equals scikit-learn's compute_class_weight; dicts by label or code."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

import bigdl
from bigdl.errors import ParameterError
from bigdl.preprocessing import resolve_class_weight, sample_weights


def test_balanced_equals_scikit_learn():
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    got = resolve_class_weight("balanced", ["a", "b", "c"], np.bincount(y), owner="f")
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(sample_weights(y, got), expected[y], rtol=1e-12)


def test_dicts_by_label_or_code_and_none():
    assert resolve_class_weight(None, ["a", "b"], [1, 1], owner="f") is None
    assert sample_weights([0, 1], None) is None
    assert resolve_class_weight({"b": 4.0}, ["a", "b"], [3, 1], owner="f").tolist() == [1.0, 4.0]
    assert resolve_class_weight({0: 2}, [10, 20], [3, 1], owner="f").tolist() == [2.0, 1.0]
    assert resolve_class_weight({20: 2}, [10, 20], [3, 1], owner="f").tolist() == [1.0, 2.0]  # a label first


@pytest.mark.parametrize("class_weight, match", [
    ("auto", "must be None, 'balanced' or a dict"),
    ({"z": 1.0}, "'z', which is not a class"),
    ({"a": -1.0}, "finite number above 0"),
    ({"a": float("nan")}, "finite number above 0"),
    ({"a": True}, "finite number above 0"),
])
def test_bad_class_weights_are_named(class_weight, match):
    with pytest.raises(ParameterError, match=match):
        resolve_class_weight(class_weight, ["a", "b"], [3, 1], owner="ChunkForestClassifier")


def test_balanced_refuses_a_class_without_samples():
    with pytest.raises(ParameterError, match=r"classes \['b'\] have no sample"):
        resolve_class_weight("balanced", ["a", "b"], [3, 0], owner="f")


def test_class_counts_of_a_store_match_its_arrays(classification_store):
    ds = classification_store
    for split in ("train", "validation", "test", "all"):
        _, y = ds.arrays(split)
        assert ds.class_counts(split).tolist() == np.bincount(y.compute(), minlength=3).tolist()
    regression = bigdl.store.from_arrays(np.zeros((10, 2), np.float32), np.arange(10, dtype=np.float32),
                                         store=ds.path.parent / "r.zarr", task="regression")
    with pytest.raises(bigdl.errors.SchemaError, match="not a classification store"):
        regression.class_counts()
