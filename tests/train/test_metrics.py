"""ClassificationMetrics against scikit-learn on the same probabilities: exact counts, binned ROC-AUC within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from bigdl.train._metrics import ROC_BINS, ClassificationMetrics, binned_roc_auc, mean_loss_weight

#: The stated tolerance of the binned ROC-AUC (docs of Trainer.evaluate and ClassificationMetrics).
AUC_TOLERANCE = 1e-4


def scores(n_classes: int, separation: float, n: int = 30_000, seed: int = 0):
    """Labels and softmax probabilities of a model whose true-class logit is ``separation`` higher."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), labels] += separation
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    return labels, probabilities / probabilities.sum(1, keepdims=True)


def in_batches(n_classes, probabilities, labels, batch=4096) -> ClassificationMetrics:
    metrics = ClassificationMetrics(n_classes)
    for start in range(0, len(labels), batch):
        metrics.update(probabilities[start:start + batch], labels[start:start + batch])
    return metrics


@pytest.mark.parametrize("n_classes, separation", [(2, 0.3), (2, 3.0), (2, 12.0), (3, 1.0), (5, 4.0), (4, 30.0)])
def test_metrics_match_scikit_learn(n_classes, separation):
    labels, probabilities = scores(n_classes, separation)
    metrics = in_batches(n_classes, probabilities, labels)
    result = metrics.result()
    predicted = probabilities.argmax(1)
    assert result["accuracy"] == pytest.approx(np.mean(predicted == labels), abs=1e-15)
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted), abs=1e-15)
    exact = (roc_auc_score(labels, probabilities[:, 1]) if n_classes == 2
             else roc_auc_score(labels, probabilities, multi_class="ovr"))
    assert abs(result["roc_auc"] - exact) <= max(metrics.roc_auc_bound(), 1e-12)
    assert abs(result["roc_auc"] - exact) < AUC_TOLERANCE
    assert metrics.n_samples == len(labels)
    assert metrics.positives.shape == (1 if n_classes == 2 else n_classes, ROC_BINS)


def test_float32_softmax_ties_are_ties_for_both():
    """Saturated float32 probabilities (exactly 1) tie in scikit-learn and share the top bin here."""
    labels, probabilities = scores(2, 25.0, n=5000)
    probabilities = probabilities.astype(np.float32)
    assert (probabilities == 1).any()
    result = in_batches(2, probabilities, labels).result()
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, probabilities[:, 1]), abs=AUC_TOLERANCE)


def test_batches_and_merge_add_up_to_one_pass():
    labels, probabilities = scores(3, 1.5, n=9000)
    whole = ClassificationMetrics(3)
    whole.update(torch.from_numpy(probabilities), torch.from_numpy(labels))  # tensors are taken too
    halves = in_batches(3, probabilities[:4000], labels[:4000]).merge(
        in_batches(3, probabilities[4000:], labels[4000:], batch=700))
    for name in ("confusion", "positives", "totals"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(halves, name))
    assert whole.result() == halves.result()


def test_explicit_predictions_go_into_the_confusion_matrix():
    metrics = ClassificationMetrics(3)
    probabilities = np.full((3, 3), 1 / 3)
    metrics.update(probabilities, [0, 1, 2], predicted=[0, 1, 1])
    np.testing.assert_array_equal(metrics.confusion, [[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    assert metrics.result()["balanced_accuracy"] == pytest.approx(2 / 3)


def test_a_class_absent_from_the_data():
    """Balanced accuracy averages the classes present (as scikit-learn); ROC-AUC is undefined: NaN, no error."""
    labels, probabilities = scores(3, 2.0, n=3000)
    keep = labels != 2
    metrics = in_batches(3, probabilities[keep], labels[keep])
    result = metrics.result()
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = balanced_accuracy_score(labels[keep], probabilities[keep].argmax(1))
    assert result["balanced_accuracy"] == pytest.approx(expected)
    assert np.isnan(result["roc_auc"])
    assert np.isnan(binned_roc_auc(np.zeros(4), np.array([1, 2, 0, 1])))


def test_mean_loss_weight_gives_the_weighted_mean_over_batches():
    rng = np.random.default_rng(1)
    logits, target = torch.from_numpy(rng.normal(size=(1000, 3))).float(), torch.from_numpy(rng.integers(0, 3, 1000))
    weight = torch.tensor([0.2, 1.0, 5.0])
    for criterion in (torch.nn.CrossEntropyLoss(weight=weight), torch.nn.CrossEntropyLoss()):
        total = sum(float(criterion(logits[rows], target[rows])) * mean_loss_weight(criterion, target[rows])
                    for rows in np.array_split(np.arange(1000), 7))
        denominator = sum(mean_loss_weight(criterion, target[rows]) for rows in np.array_split(np.arange(1000), 7))
        assert total / denominator == pytest.approx(float(criterion(logits, target)), rel=1e-5)
    assert mean_loss_weight(torch.nn.MSELoss(), torch.zeros(5)) == 5
