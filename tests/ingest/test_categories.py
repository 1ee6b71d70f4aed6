"""Categorical columns at ingest: folding into ``__other__`` is counted and said, every value can be kept, and
high-cardinality columns can be frequency- or target-encoded from the training rows only.

References are pandas computations on the training rows of the store (found through its ``split`` and
``record`` arrays): ``value_counts(normalize=True)`` for frequencies, group means with the m-estimate for targets.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import CategoriesFoldedWarning, ParameterError, SchemaError
from bigdl.preprocessing import MAX_CATEGORIES_BOUND, TARGET_FOLDS, TARGET_PRIOR_WEIGHT
from bigdl.store._format import assign_folds

SPLIT = dict(validation=0.1, test=0.2, seed=5)


def _ingest(path, tmp_path, name="s.zarr", **kwargs):
    return bigdl.ingest.tabular(path, store=tmp_path / name, progress=False, **{**SPLIT, **kwargs})


def _column(ds, feature: str) -> np.ndarray:
    return ds.X.compute()[:, ds.feature_names.index(feature)].astype(np.float64)


def _stored_rows(ds, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The input rows in store order, and each one's split code."""
    return frame.iloc[ds.group["record"][:]].reset_index(drop=True), ds.split.compute()


def _zipf_frame(n_values: int = 40, seed: int = 0) -> pd.DataFrame:
    """Value ``v{i}`` appears ``i + 1`` times: every count differs, so the most frequent values are unambiguous."""
    values = np.repeat([f"v{i:02d}" for i in range(n_values)], np.arange(1, n_values + 1))
    rng = np.random.default_rng(seed)
    rng.shuffle(values)
    return pd.DataFrame({"a": rng.normal(size=len(values)).round(4), "c": values,
                         "t": rng.choice(["p", "q"], len(values))})


# ---------------------------------------------------------------- folding, said and counted
def test_folding_under_the_default_is_counted_and_warned_without_values(tmp_path):
    _zipf_frame().to_csv(tmp_path / "d.csv", index=False)
    with pytest.warns(CategoriesFoldedWarning) as caught:
        ds = _ingest(tmp_path / "d.csv", tmp_path, target="t")
    expected = {"encoding": "onehot", "kept": 32, "folded_values": 8, "folded_rows": sum(range(1, 9))}
    assert ds.attrs["categories"] == {"c": expected}
    assert ds.info()["categories"] == {"c": expected}
    assert "+ __other__ (8 rare values in 36 rows)" in str(ds.info())
    message = str(caught[0].message)
    assert message.startswith("Categorical column 'c': 8 of its 40 distinct values (36 rows) were folded into "
                              "'c=__other__'; max_categories=32 kept the 32 most frequent. Pass max_categories=None")
    assert "v0" not in message  # counts only, never the values
    assert ds.feature_names[-1] == "c=__other__" and len(ds.feature_names) == 1 + 33


def test_an_explicit_max_categories_folds_quietly_and_none_keeps_every_value(tmp_path, caplog):
    _zipf_frame().to_csv(tmp_path / "d.csv", index=False)
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="bigdl.ingest._tabular"):
        warnings.simplefilter("error", CategoriesFoldedWarning)
        five = _ingest(tmp_path / "d.csv", tmp_path, "five.zarr", target="t", max_categories=5)
        every = _ingest(tmp_path / "d.csv", tmp_path, "all.zarr", target="t", max_categories=None)
    assert five.attrs["categories"]["c"] == {"encoding": "onehot", "kept": 5, "folded_values": 35,
                                             "folded_rows": sum(range(1, 36))}
    assert any("35 of its 40 distinct values" in record.getMessage() for record in caplog.records)
    assert every.attrs["categories"]["c"] == {"encoding": "onehot", "kept": 40, "folded_values": 0, "folded_rows": 0}
    assert every.feature_names[1:] == [f"c=v{i:02d}" for i in range(40)]


def test_keeping_every_value_is_bounded(tmp_path):
    n = MAX_CATEGORIES_BOUND + 1
    pd.DataFrame({"a": np.arange(n) % 7, "zip": [f"z{i}" for i in range(n)]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(SchemaError, match=r"^The categorical column 'zip' has 10,001 distinct values, more than "
                                          r"max_categories=None keeps \(at most 10,000, one feature each\). Pass "
                                          r"max_categories=<int>.*categorical_encoding=\{'zip': 'frequency'\}.*"
                                          r"drop=\['zip'\]"):
        _ingest(tmp_path / "d.csv", tmp_path, max_categories=None)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(categorical_encoding="tagret"), ParameterError,
     r"The 'categorical_encoding' parameter of tabular must be None, a str among \{'onehot', 'frequency', "
     r"'target'\} or a dict of column names"),
    (dict(categorical_encoding={"c": "hash"}), ParameterError, r"'categorical_encoding' parameter of tabular"),
    (dict(max_categories=0), ParameterError, r"'max_categories' parameter of tabular must be an int in the range "
                                             r"\[1, inf\) or None"),
    (dict(categorical_encoding={"cc": "target"}, target="t"), SchemaError,
     r"\['cc'\] given in categorical_encoding= are not in the data"),
    (dict(categorical_encoding={"a": "frequency"}, numeric=["a"], target="t"), SchemaError,
     r"\['a'\] are given as both categorical_encoding= and numeric="),
    (dict(categorical_encoding="target"), SchemaError, r"Target encoding of \['c', 't'\] .* needs a target column"),
])
def test_encoding_parameters_are_checked(tmp_path, kwargs, error, message):
    _zipf_frame(5).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(error, match=message):
        _ingest(tmp_path / "d.csv", tmp_path, **kwargs)


# ---------------------------------------------------------------- frequency encoding
def test_frequency_encoding_equals_value_counts_of_the_training_rows(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame({"a": rng.normal(size=n).round(4), "c": rng.zipf(1.6, n).astype(str),
                          "d": rng.choice(["x", "y"], n), "y": rng.normal(size=n).round(4)})
    frame.loc[rng.random(n) < 0.03, "c"] = None  # missing is a value of its own, as in one-hot encoding
    frame.to_csv(tmp_path / "d.csv", index=False)
    ds = _ingest(tmp_path / "d.csv", tmp_path, target="y", categorical_encoding={"c": "frequency"})
    assert ds.feature_names == ["a", "c__frequency", "d=x", "d=y"]
    rows, split = _stored_rows(ds, frame)
    train = rows[split == 0]
    frequencies = train["c"].value_counts(normalize=True, dropna=False)
    expected = rows["c"].map(lambda value: frequencies.get(value, frequencies.get(np.nan, 0.0))
                             if pd.isna(value) else frequencies.get(value, 0.0))
    np.testing.assert_allclose(_column(ds, "c__frequency"), expected, rtol=1e-6)
    # Values only in validation or test rows are unseen in training: frequency 0.
    assert (~rows.loc[split > 0, "c"].isin(train["c"])).any()
    assert ds.attrs["categories"]["c"] == {"encoding": "frequency", "kept": int(train["c"].nunique(dropna=False)),
                                           "folded_values": 0, "folded_rows": 0}
    new = ds.preprocessor.transform(pd.DataFrame({"a": [0.0, 0.0], "c": ["1", "never"], "d": ["x", "y"]}))
    np.testing.assert_allclose(new[:, 1], [frequencies["1"], 0.0], rtol=1e-6)


# ---------------------------------------------------------------- target encoding
def _m_estimate(train: pd.DataFrame, column: str, outputs: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Per value, ``(sum + m * prior) / (count + m)`` of each output column over ``train`` rows; and the prior."""
    prior = outputs.loc[train.index].mean().to_numpy()
    grouped = outputs.loc[train.index].groupby(train[column].to_numpy())
    table = (grouped.sum() + TARGET_PRIOR_WEIGHT * prior) / (grouped.size().to_numpy()[:, None] + TARGET_PRIOR_WEIGHT)
    return table, prior


def _reference_target_encoding(rows: pd.DataFrame, split: np.ndarray, folds: np.ndarray, column: str,
                               outputs: pd.DataFrame) -> np.ndarray:
    """Validation/test rows: the m-estimate over all training rows; a training row: over the other folds' rows."""
    expected = np.empty(outputs.shape)

    def encode(positions: np.ndarray, fitted_on: pd.DataFrame) -> None:
        table, prior = _m_estimate(fitted_on, column, outputs)
        expected[positions] = [table.loc[value].to_numpy() if value in table.index else prior
                               for value in rows[column].iloc[positions]]

    encode(np.flatnonzero(split > 0), rows[split == 0])
    for fold in range(TARGET_FOLDS):
        encode(np.flatnonzero((split == 0) & (folds == fold)), rows[(split == 0) & (folds != fold)])
    return expected


def test_target_encoding_of_a_regression_target_equals_pandas_on_the_training_rows(tmp_path, client):
    rng = np.random.default_rng(2)
    n = 2000
    shop = rng.choice([f"s{i}" for i in range(60)], n)
    effect = {f"s{i}": rng.normal(0, 3) for i in range(60)}
    frame = pd.DataFrame({"a": rng.normal(size=n).round(4), "shop": shop,
                          "price": (np.array([effect[s] for s in shop]) + rng.normal(size=n)).round(4)})
    frame.to_csv(tmp_path / "d.csv", index=False)
    ds = _ingest(tmp_path / "d.csv", tmp_path, target="price", categorical_encoding={"shop": "target"},
                 blocksize="16KB", client=client)  # several blocks: the encode pass merges their sums
    assert ds.feature_names == ["a", "shop__target"]
    rows, split = _stored_rows(ds, frame)
    folds = assign_folds(ds.group["record"][:].astype(np.uint64), SPLIT["seed"], TARGET_FOLDS)
    expected = _reference_target_encoding(rows, split, folds, "shop", rows[["price"]])
    np.testing.assert_allclose(_column(ds, "shop__target"), expected[:, 0], rtol=1e-5, atol=1e-5)
    # New data gets the means over all training rows, as validation and test rows do.
    held_out = np.flatnonzero(split > 0)[:20]
    new = ds.preprocessor.transform(rows.iloc[held_out])
    np.testing.assert_array_equal(new[:, 1], ds.X.compute()[held_out, 1])


def test_target_encoding_of_classes_has_one_feature_per_class_or_the_positive_rate(tmp_path):
    rng = np.random.default_rng(3)
    n = 1500
    frame = pd.DataFrame({"a": rng.normal(size=n).round(4), "city": rng.choice(["Oslo", "Lima", "Pune", "Kyiv"], n),
                          "label": rng.choice(["stay", "churn", "upgrade"], n, p=[0.6, 0.3, 0.1])})
    frame.to_csv(tmp_path / "d.csv", index=False)
    ds = _ingest(tmp_path / "d.csv", tmp_path, target="label", categorical_encoding="target")
    names = ["city__target=churn", "city__target=stay", "city__target=upgrade"]
    assert ds.feature_names == ["a"] + names
    rows, split = _stored_rows(ds, frame)
    folds = assign_folds(ds.group["record"][:].astype(np.uint64), SPLIT["seed"], TARGET_FOLDS)
    outputs = pd.get_dummies(rows["label"]).astype(float)[["churn", "stay", "upgrade"]]
    expected = _reference_target_encoding(rows, split, folds, "city", outputs)
    np.testing.assert_allclose(ds.X.compute()[:, 1:], expected, rtol=1e-5, atol=1e-6)

    binary = frame.assign(label=np.where(frame["label"] == "stay", "stay", "left"))
    binary.to_csv(tmp_path / "b.csv", index=False)
    ds = _ingest(tmp_path / "b.csv", tmp_path, "b.zarr", target="label", categorical_encoding="target")
    assert ds.feature_names == ["a", "city__target"] and ds.classes == ["left", "stay"]
    rows, split = _stored_rows(ds, binary)
    expected = _reference_target_encoding(rows, split, folds, "city", (rows[["label"]] == "stay").astype(float))
    np.testing.assert_allclose(_column(ds, "city__target"), expected[:, 0], rtol=1e-5, atol=1e-6)


def test_target_encoding_of_a_unique_id_cannot_be_memorised(tmp_path):
    # Each row has a value of its own. Encoded in fold, a training row's value would be its own target pulled
    # towards the prior; out of fold, it is the prior of the other folds, whatever the row's own target.
    rng = np.random.default_rng(4)
    n = 2500
    frame = pd.DataFrame({"id": np.arange(n), "a": rng.normal(size=n).round(4),
                          "serial": [f"u{i:05d}" for i in rng.permutation(n)],
                          "t": rng.choice(["no", "yes"], n, p=[0.7, 0.3])})
    frame.to_csv(tmp_path / "d.csv", index=False)
    ds = _ingest(tmp_path / "d.csv", tmp_path, target="t", key="id", categorical_encoding={"serial": "target"})
    encoded = _column(ds, "serial__target")
    split, y = ds.split.compute(), ds.y.compute()
    prior = (y[split == 0] == 1).mean()
    train = split == 0
    assert np.abs(encoded[train] - prior).max() < 0.05
    assert len(np.unique(encoded[train])) <= TARGET_FOLDS  # one prior per fold, nothing of the row itself
    assert abs(np.corrcoef(encoded[train], y[train])[0, 1]) < 0.1
    assert abs(encoded[train & (y == 1)].mean() - encoded[train & (y == 0)].mean()) < 0.01
    np.testing.assert_allclose(encoded[~train], prior, rtol=1e-6)  # values unseen in training get the train mean
    assert ds.attrs["categories"]["serial"]["encoding"] == "target"
    # The store keeps the means, not the per-fold tables only ingest needs.
    assert "out_of_fold" not in ds.attrs["preprocessing"]
