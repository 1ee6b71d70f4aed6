"""classification_metrics and the estimators' evaluate() against scikit-learn's metrics on the same rows."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from bigdl.errors import SchemaError
from bigdl.estimators import ChunkForestClassifier, Incremental, ParallelPostFit, classification_metrics
from bigdl.estimators._metrics import _add, _counts
from bigdl.train._metrics import ClassificationMetrics

from conftest import split_numpy


def _expected(y, probabilities) -> dict:
    multiclass = probabilities.shape[1] > 2
    scores = probabilities if multiclass else probabilities[:, 1]
    predicted = probabilities.argmax(axis=1)
    return {"accuracy": accuracy_score(y, predicted), "balanced_accuracy": balanced_accuracy_score(y, predicted),
            "roc_auc": roc_auc_score(y, scores, multi_class="ovr"), "n_samples": len(y)}


def test_forest_evaluate_is_scikit_learns_metrics(classification_store, client):
    """Three classes: ROC-AUC one-vs-rest, macro; a forest's probabilities fall in distinct bins: exact."""
    ds = classification_store
    forest = ChunkForestClassifier(n_estimators=20, random_state=0).fit(ds)
    X_test, y_test = split_numpy(ds, "test")
    metrics = forest.evaluate(ds)
    expected = _expected(y_test, forest.forest_.predict_proba(X_test))
    assert metrics == pytest.approx(expected, abs=1e-12)
    assert metrics["accuracy"] == forest.score(ds)
    assert forest.evaluate(X_test, y_test) == pytest.approx(expected, abs=1e-12)
    # Dask arrays, and any scikit-learn classifier (its predict_proba mapped over the blocks).
    lazy = classification_metrics(forest.forest_, da.from_array(X_test, chunks=100), da.from_array(y_test, chunks=100))
    assert lazy == pytest.approx(expected, abs=1e-12)


def test_incremental_evaluate_binary(imbalanced_store):
    """Two classes: the AUC of class 1; SGD's probabilities are continuous, binned within 1e-4 of the exact AUC."""
    ds = imbalanced_store
    model = Incremental(SGDClassifier(loss="log_loss", random_state=0), shuffle_blocks=False).fit(ds)
    X_test, y_test = split_numpy(ds, "test")
    metrics = model.evaluate(ds)
    expected = _expected(y_test, model.estimator_.predict_proba(X_test))
    assert metrics["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-4)
    assert {name: metrics[name] for name in ("accuracy", "balanced_accuracy", "n_samples")} == \
        pytest.approx({name: expected[name] for name in ("accuracy", "balanced_accuracy", "n_samples")}, abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(model.estimator_.score(X_test, y_test), abs=1e-12)
    # ParallelPostFit has it too.
    in_memory = ParallelPostFit(LogisticRegression(max_iter=500)).fit(ds)
    assert in_memory.evaluate(ds) == pytest.approx(_expected(y_test, in_memory.estimator.predict_proba(X_test)),
                                                   abs=1e-4)


def test_counts_add_up_block_by_block_and_rank_saturated_probabilities():
    """Blocks' counts sum to the whole's; probabilities within 1e-10 of 0 or 1 still rank (asinh bins)."""
    rng = np.random.default_rng(0)
    for scale in (1.0, 40.0):  # scale 40: log-odds out to about +-160, most p below 1e-10 or above 1 - 1e-10
        logits = rng.normal(size=(900, 4)) * scale
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        labels = (logits + rng.normal(size=logits.shape) * scale).argmax(axis=1)
        whole = _counts(probabilities, labels, 4, 10_000)
        parts = _add(*(_counts(probabilities[start:start + 200], labels[start:start + 200], 4, 10_000)
                       for start in range(0, 900, 200)))
        for name in whole:
            np.testing.assert_array_equal(parts[name], whole[name])
        metrics = ClassificationMetrics(4)
        for name, value in whole.items():
            getattr(metrics, name)[...] = value
        expected = _expected(labels, probabilities)
        assert metrics.result()["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-4)
        assert metrics.result()["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"], abs=1e-12)


def test_metrics_errors(classification_store):
    ds = classification_store
    with pytest.raises(SchemaError, match="needs a fitted classifier"):
        classification_metrics(ChunkForestClassifier(), ds)
    hinge = Incremental(SGDClassifier(random_state=0)).fit(ds)
    with pytest.raises(SchemaError, match="needs predict_proba.*loss='log_loss'"):
        classification_metrics(hinge.estimator_, ds)
    forest = ChunkForestClassifier(n_estimators=2).fit(ds)
    X_test, y_test = split_numpy(ds, "test")
    with pytest.raises(SchemaError, match=r"labels the estimator was not fitted on \(\[7\]"):
        classification_metrics(forest, X_test, np.where(y_test == 2, 7, y_test))
    with pytest.raises(SchemaError, match="y is required"):
        classification_metrics(forest, X_test)
