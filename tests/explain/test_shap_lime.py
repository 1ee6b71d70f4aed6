"""SHAP and LIME out of core: additivity per method, agreement with shap in memory and with each other.

Tolerances of local additivity (``|f(x) - base - sum(values)|``, the largest over the explained rows):
TreeSHAP (XGBoost's and shap's) and KernelSHAP are exact up to float32 rounding (1e-4 of the output's
scale); DeepLiftShap is exact for ReLU networks (1e-4); GradientShap only holds in expectation over its
noise draws (below half the outputs' standard deviation, here with 50 draws).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import bigdl
from bigdl.errors import ParameterError, SchemaError
from bigdl.explain import lime, permutation_importance, plot_shap_images, plot_shap_summary, plot_shap_waterfall, \
    shap_values

NAMES = ["a", "b", "c", "signal", "e"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Feature 'signal' decides the class; the others are noise (3,000 rows, chunks of 400)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5)).astype(np.float32)
    y = (X[:, 3] + 0.1 * rng.normal(size=3000) > 0).astype(np.int64)
    return bigdl.store.from_arrays(X, y, store=tmp_path_factory.mktemp("shap") / "p.zarr", rows_per_chunk=400,
                                   feature_names=NAMES, test=0.3, seed=0)


@pytest.fixture(scope="module")
def booster(planted):
    return bigdl.estimators.XGBClassifier(n_estimators=30, max_depth=3).fit(planted)


@pytest.fixture(scope="module")
def forest(planted):
    return bigdl.estimators.ChunkForestClassifier(n_estimators=12, max_depth=5, random_state=0).fit(planted)


@pytest.fixture(scope="module")
def trainer(planted):
    from bigdl.models import MLP
    from bigdl.train import Trainer

    torch.manual_seed(0)
    trainer = Trainer(MLP(5, [16], 2), epochs=3, on_cluster=False, progress=False, lr=1e-2)
    trainer.fit(planted)
    return trainer


def _test_rows(ds):
    return ds.arrays("test")[0].compute()


def test_xgb_tree_shap_is_xgboosts_and_shaps_in_memory(planted, booster):
    import shap

    explanation = shap_values(booster, planted, progress=False)
    values = explanation.values.compute()
    X = _test_rows(planted)
    assert values.shape == X.shape == (explanation.n_samples, 5) and explanation.method == "tree"
    assert explanation.additivity_error < 1e-4 * max(explanation.output_scale, 1.0)
    reference = shap.TreeExplainer(booster.booster_).shap_values(X)
    np.testing.assert_allclose(values, reference, atol=1e-4)
    import xgboost

    margin = booster.booster_.predict(xgboost.DMatrix(X), output_margin=True)
    np.testing.assert_allclose(values.sum(axis=1) + explanation.base_values[0], margin, atol=1e-4)
    assert explanation.importance()["feature"].iloc[0] == "signal"


def test_forest_tree_shap_equals_shap_tree_explainer_in_memory(planted, forest):
    import shap

    explanation = shap_values(forest, planted, max_samples=500, progress=False)
    values = explanation.values.compute()
    X = _test_rows(planted)[:500]
    reference = np.asarray(shap.TreeExplainer(forest.forest_).shap_values(X))
    assert values.shape == (500, 5, 2) == reference.shape
    np.testing.assert_allclose(values, reference, atol=1e-6)
    assert explanation.additivity_error < 1e-6
    np.testing.assert_allclose(values.sum(axis=1) + explanation.base_values, forest.forest_.predict_proba(X),
                               atol=1e-6)
    importance = explanation.importance()
    assert importance["feature"].iloc[0] == "signal"
    # The streamed global importance is the mean |SHAP| of all the values.
    np.testing.assert_allclose(importance.set_index("feature").loc[NAMES, "mean_abs_shap"],
                               np.abs(values).mean(axis=(0, 2)), rtol=1e-6)


def test_deeplift_shap_adds_up_and_gradient_shap_on_average(planted, trainer):
    deeplift = shap_values(trainer, planted, max_samples=600, background=50, progress=False)
    assert deeplift.method == "deeplift" and deeplift.values.shape == (600, 5, 2)
    assert deeplift.additivity_error < 1e-4 * max(deeplift.output_scale, 1.0)
    outputs = deeplift.outputs(slice(0, 600))
    values = deeplift.values.compute()
    np.testing.assert_allclose(values.sum(axis=1) + deeplift.base_values, outputs, atol=1e-4)
    assert deeplift.importance()["feature"].iloc[0] == "signal"
    gradient = shap_values(trainer, planted, max_samples=300, background=50, method="gradient", progress=False)
    assert gradient.additivity_error < 0.5 * gradient.output_scale
    assert gradient.importance()["feature"].iloc[0] == "signal"
    again = shap_values(trainer, planted, max_samples=300, background=50, method="gradient", progress=False)
    np.testing.assert_array_equal(again.values.compute(), gradient.values.compute())  # seeded


def test_kernel_shap_for_other_estimators_is_bounded_and_exact(planted):
    X_train, y_train = (array.compute() for array in planted.arrays("train"))
    model = LogisticRegression().fit(X_train, y_train)
    explanation = shap_values(model, planted, max_samples=120, background=40, progress=False)
    assert explanation.method == "kernel" and explanation.n_samples == 120
    assert explanation.additivity_error < 1e-5
    assert explanation.importance()["feature"].iloc[0] == "signal"
    with pytest.raises(SchemaError, match="does not apply"):
        shap_values(model, planted, method="deeplift", progress=False)


def test_the_planted_feature_ranks_first_in_shap_lime_and_permutation(planted, forest, tmp_path):
    shap_rank = shap_values(forest, planted, max_samples=400, progress=False).importance()["feature"]
    result = lime(forest, planted, rows=range(8), num_samples=1000, plot_dir=tmp_path / "lime", progress=False)
    lime_rank = result.mean_abs_weights()["feature"]
    permutation = permutation_importance(forest, planted, n_repeats=2, progress=False)["feature"]
    assert shap_rank.iloc[0] == lime_rank.iloc[0] == permutation.iloc[0] == "signal"
    assert len(result.plots) == 8 and all((tmp_path / "lime" / f"lime_test_{row}.png").stat().st_size > 1000
                                          for row in range(8))
    assert set(result.weights["row"]) == set(range(8)) and (result.weights.groupby("row").size() == 5).all()


def test_lime_statistics_come_from_every_train_row_chunk_by_chunk(planted):
    from bigdl.explain._lime import _tabular_spec

    spec = _tabular_spec(planted, seed=0, sample_rows=500, client=None, progress=False)
    X_train = planted.arrays("train")[0].compute().astype(np.float64)
    stats = spec["stats"]
    for feature in range(5):
        bins = np.searchsorted(stats["bins"][feature], X_train[:, feature])
        counts = np.bincount(bins, minlength=len(stats["bins"][feature]) + 1)
        assert stats["feature_frequencies"][feature] == counts.tolist()
        means = [X_train[bins == index, feature].mean() for index in range(len(counts))]
        np.testing.assert_allclose(stats["means"][feature], means, rtol=1e-9)
        assert stats["mins"][feature][0] == X_train[:, feature].min()
        assert stats["maxs"][feature][-1] == X_train[:, feature].max()
    # The edges come from a 500-row sample: near the train split's own quartiles.
    np.testing.assert_allclose(stats["bins"][3], np.percentile(X_train[:, 3], [25, 50, 75]), atol=0.15)


def test_explanations_on_a_local_cluster_equal_those_on_threads(planted, booster, trainer, cluster_client):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the workers (OMP_NUM_THREADS=1): the same float sums in the same order
    try:
        _compare_cluster_and_threads(planted, booster, trainer, cluster_client)
    finally:
        torch.set_num_threads(threads)


def _compare_cluster_and_threads(planted, booster, trainer, cluster_client):
    on_threads = [shap_values(booster, planted, progress=False),
                  shap_values(trainer, planted, max_samples=400, background=30, progress=False)]
    lime_threads = lime(booster, planted, rows=[0, 5], num_samples=500, progress=False)
    with cluster_client.as_current():
        on_cluster = [shap_values(booster, planted, progress=False),
                      shap_values(trainer, planted, max_samples=400, background=30, progress=False)]
        values = [explanation.values.compute() for explanation in on_cluster]
        lime_cluster = lime(booster, planted, rows=[0, 5], num_samples=500, progress=False)
    for threads, cluster, computed in zip(on_threads, on_cluster, values):
        np.testing.assert_allclose(computed, threads.values.compute(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cluster.mean_abs, threads.mean_abs, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(cluster.base_values, threads.base_values)
    np.testing.assert_allclose(lime_cluster.weights["weight"], lime_threads.weights["weight"], rtol=1e-6)
    assert list(lime_cluster.weights["feature"]) == list(lime_threads.weights["feature"])


def test_shap_plots(planted, booster, tmp_path):
    explanation = shap_values(booster, planted, max_samples=200, progress=False)
    for path in (plot_shap_summary(explanation, tmp_path / "beeswarm.png"),
                 plot_shap_summary(explanation, tmp_path / "bar.png", kind="bar"),
                 plot_shap_waterfall(explanation, 3, tmp_path / "waterfall.png")):
        assert (tmp_path / path).stat().st_size > 5000
    with pytest.raises(ParameterError, match="row=500"):
        plot_shap_waterfall(explanation, 500, tmp_path / "no.png")
    with pytest.raises(ParameterError, match="kind"):
        plot_shap_summary(explanation, tmp_path / "no.png", kind="violin")
    with pytest.raises(ParameterError, match="images"):
        plot_shap_images(explanation, tmp_path / "no.png")


def test_shap_plots_leave_the_backend_and_pyplot_figures_alone(tmp_path):
    """shap's beeswarm and bar draw on bigdl's own Figure: no pyplot figure, the backend setting unchanged."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys, matplotlib, numpy as np
before = dict.__getitem__(matplotlib.rcParams, 'backend')
from bigdl.explain import plot_shap_summary, plot_shap_waterfall
from bigdl.explain._shap import ShapExplanation
import dask.array as da
rng = np.random.default_rng(0)
values = rng.normal(size=(40, 3)).astype(np.float32)
explanation = ShapExplanation(values=da.from_array(values), base_values=np.zeros(1), data=da.from_array(values),
    feature_names=["a", "b", "c"], output_names=["output"], method="tree", mean_abs=np.abs(values).mean(0),
    mean_abs_per_output=np.abs(values).mean(0)[:, None], additivity_error=0.0, output_scale=1.0, n_samples=40,
    split="test", sample_shape=(3,))
plot_shap_summary(explanation, {str(tmp_path / 'b.png')!r})
plot_shap_summary(explanation, {str(tmp_path / 'c.png')!r}, kind="bar")
plot_shap_waterfall(explanation, 0, {str(tmp_path / 'w.png')!r})
assert dict.__getitem__(matplotlib.rcParams, 'backend') is before, 'the backend was switched'
assert 'matplotlib.pyplot' not in sys.modules or not sys.modules['matplotlib.pyplot'].get_fignums()
"""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-3000:]


def test_image_store_shap_heat_maps_and_lime_superpixels(tmp_path):
    from bigdl.train import Trainer

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 160)
    pixels = rng.integers(0, 60, size=(160, 12, 12)).astype(np.uint8)
    pixels[labels == 1, 2:6, 2:6] = 250  # class 1: a bright square in the corner
    np.save(tmp_path / "x.npy", pixels)
    ds = bigdl.ingest.images(tmp_path / "x.npy", labels=labels, store=tmp_path / "i.zarr", test=0.25,
                             rows_per_chunk=40, progress=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 144, 2))
    trainer = Trainer(model, epochs=4, on_cluster=False, progress=False, lr=1e-2)
    trainer.fit(ds)
    explanation = shap_values(trainer, ds, max_samples=16, background=10, progress=False)
    assert explanation.values.shape == (16, 1, 12, 12, 2) and explanation.mean_abs.shape == (1, 12, 12)
    assert explanation.additivity_error < 1e-3 * max(explanation.output_scale, 1.0)
    # The square's pixels matter most.
    square = np.zeros((12, 12), dtype=bool)
    square[2:6, 2:6] = True
    assert explanation.mean_abs[0][square].mean() > 2 * explanation.mean_abs[0][~square].mean()
    assert (tmp_path / plot_shap_images(explanation, tmp_path / "shap.png", rows=4)).stat().st_size > 3000
    result = lime(trainer, ds, rows=[0, 1], num_samples=200, segments=9, num_features=3, plot_dir=tmp_path / "l",
                  progress=False)
    assert result.kind == "image" and result.segments[0].shape == (12, 12)
    assert (result.weights.groupby("row").size() <= 3).all() and len(result.plots) == 2
    assert all((tmp_path / "l" / f"lime_test_{row}.png").stat().st_size > 3000 for row in (0, 1))


def test_errors(planted, booster):
    with pytest.raises(SchemaError, match="needs a predict method"):
        shap_values(object(), planted, progress=False)
    with pytest.raises(ParameterError, match="background"):
        shap_values(booster, planted, background=0, progress=False)
    with pytest.raises(ParameterError, match="method"):
        shap_values(booster, planted, method="exact", progress=False)
    with pytest.raises(SchemaError, match="does not apply"):
        shap_values(booster, planted, method="kernel", progress=False)
    with pytest.raises(ParameterError, match="outside the 'test' split"):
        lime(booster, planted, rows=[10 ** 6], progress=False)
    with pytest.raises(ParameterError, match="num_samples"):
        lime(booster, planted, rows=[0], num_samples=1, progress=False)
    narrow = bigdl.estimators.XGBClassifier(n_estimators=2).fit(np.zeros((20, 3)), np.arange(20) % 2)
    with pytest.raises(SchemaError, match="fitted on 3 features"):
        shap_values(narrow, planted, progress=False)


class _PicklesMidForward(torch.nn.Module):
    """A linear layer whose forward runs ``on_forward`` (set by the test) while captum's hooks are on."""

    on_forward = None

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        if type(self).on_forward is not None:
            type(self).on_forward()
        return self.linear(x)


def test_a_torch_explainer_pickles_while_it_attributes():
    # A worker may hand the scattered explainer to another worker while a task attributes with it.
    import pickle

    from bigdl.explain._shap import _TorchSHAP

    torch.manual_seed(0)
    background = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    explainer = _TorchSHAP(_PicklesMidForward(), background, method="deeplift", n_outputs=2,
                           output_names=["a", "b"], seed=0)
    pickled = []
    _PicklesMidForward.on_forward = lambda: pickled.append(pickle.dumps(explainer))
    try:
        values = explainer.values(np.ones((5, 4), dtype=np.float32))
    finally:
        _PicklesMidForward.on_forward = None
    assert pickled and values.shape == (5, 4, 2)
    restored = pickle.loads(pickled[-1])
    np.testing.assert_allclose(restored.values(np.ones((5, 4), dtype=np.float32)), values, rtol=1e-5)


def test_captum_deeplift_between_adjacent_nonlinearities_and_the_workaround():
    """captum #1104: a non-linear module feeding another (ReLU -> MaxPool) gets plain gradients, so
    DeepLift's values stop adding up; bigdl hands each such module a copy of its input (exact again).

    If the first assertion fails, captum is fixed: ``separate_nonlinearities`` can go.
    """
    import copy
    import warnings

    from captum.attr import DeepLift

    from bigdl.explain._shap import separate_nonlinearities

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(36, 2)).eval()
    x, reference = torch.rand(16, 1, 8, 8) * 3, torch.rand(16, 1, 8, 8) * 3

    def largest_delta(module):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, delta = DeepLift(module).attribute(x, baselines=reference, target=0, return_convergence_delta=True)
        return float(delta.abs().max())

    assert largest_delta(copy.deepcopy(model)) > 0.01, "captum #1104 looks fixed: drop separate_nonlinearities"
    fixed = copy.deepcopy(model)
    assert separate_nonlinearities(fixed) == 2
    assert largest_delta(fixed) < 1e-5
    with torch.no_grad():
        assert torch.equal(fixed(x), model(x))


def test_deeplift_shap_adds_up_on_the_reference_cnn(tmp_path):
    from bigdl.models import CNN

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, size=(120, 8, 8)).astype(np.uint8))
    ds = bigdl.ingest.images(tmp_path / "x.npy", labels=rng.integers(0, 3, 120), store=tmp_path / "c.zarr",
                             test=0.25, rows_per_chunk=40, progress=False)
    torch.manual_seed(0)
    model = CNN(1, 3, image_size=(8, 8))  # Conv -> ReLU -> Conv -> ReLU -> MaxPool -> ... -> Linear
    explanation = shap_values(model, ds, max_samples=12, background=8, progress=False)
    assert explanation.additivity_error < 1e-4 * max(explanation.output_scale, 1.0)
