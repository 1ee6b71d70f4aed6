"""Explanations rank a planted informative feature first and agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.inspection import permutation_importance as sklearn_permutation_importance
from sklearn.linear_model import LogisticRegression

import bigdl
from bigdl.errors import SchemaError
from bigdl.explain import attributions, integrated_gradients, permutation_importance, plot_importance, \
    plot_saliency, saliency
from support import pyplot_untouched_by


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Feature 'signal' decides the class; the others are noise."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5)).astype(np.float32)
    y = (X[:, 3] + 0.1 * rng.normal(size=3000) > 0).astype(np.int64)
    ds = bigdl.store.from_arrays(X, y, store=tmp_path_factory.mktemp("explain") / "p.zarr", rows_per_chunk=400,
                                 feature_names=["a", "b", "c", "signal", "e"], test=0.3, seed=0)
    return ds


def test_permutation_importance_ranks_the_signal_first(planted, tmp_path):
    X_train, y_train = (array.compute() for array in planted.arrays("train"))
    model = LogisticRegression().fit(X_train, y_train)
    result = permutation_importance(model, planted, n_repeats=4, progress=False)
    assert result["feature"].iloc[0] == "signal"
    assert result["importance_mean"].iloc[0] > 0.3
    assert (result["importance_mean"].iloc[1:].abs() < 0.03).all()
    X_test, y_test = (array.compute() for array in planted.arrays("test"))
    assert result.attrs["baseline"] == pytest.approx(model.score(X_test, y_test))
    reference = sklearn_permutation_importance(model, X_test, y_test, n_repeats=4, random_state=0)
    ours = result.set_index("feature").loc[planted.feature_names, "importance_mean"].to_numpy()
    np.testing.assert_allclose(ours, reference.importances_mean, atol=0.03)
    png = plot_importance(result, tmp_path / "importance.png")
    assert (tmp_path / "importance.png").stat().st_size > 1000 and png.endswith(".png")


def test_permutation_importance_for_a_regression_forest(regression_store):
    forest = bigdl.estimators.ChunkForestRegressor(n_estimators=10).fit(regression_store)
    result = permutation_importance(forest, regression_store, n_repeats=2, progress=False)
    assert result.attrs["metric"] == "r2"
    assert list(result["feature"][:2]) == ["x0", "x1"]  # y = 3 x0 - 2 x1 + ...


def test_permutation_importance_of_a_trainer_on_the_cluster(planted, cluster_client):
    from bigdl.models import MLP
    from bigdl.train import Trainer

    torch.manual_seed(0)
    trainer = Trainer(MLP(5, [8], 2), epochs=3, on_cluster=False, progress=False, lr=1e-2)
    trainer.fit(planted)
    with cluster_client.as_current():
        result = permutation_importance(trainer, planted, n_repeats=2, progress=False)
    assert result["feature"].iloc[0] == "signal"


def test_integrated_gradients_complete_and_rank_the_signal(planted):
    from bigdl.models import MLP
    from bigdl.train import Trainer

    torch.manual_seed(0)
    trainer = Trainer(MLP(5, [8], 2), epochs=3, on_cluster=False, progress=False, lr=1e-2)
    trainer.fit(planted)
    X = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    values, delta = integrated_gradients(trainer, X, return_delta=True, n_steps=100)
    assert values.shape == X.shape
    assert np.abs(delta).max() < 0.05  # completeness: attributions sum to f(x) - f(0)
    table = attributions(trainer, planted, n_samples=300)
    assert table["feature"].iloc[0] == "signal"


def test_plots_leave_matplotlib_as_it_was(tmp_path):
    pyplot_untouched_by(f"""
        import numpy as np
        import pandas as pd
        from bigdl.explain import plot_importance, plot_saliency
        table = pd.DataFrame({{"feature": ["a", "b"], "importance_mean": [0.3, 0.1], "importance_std": [0.1, 0.0]}})
        plot_importance(table, {str(tmp_path / "importance.png")!r})
        images = np.random.default_rng(0).random((2, 1, 4, 4))
        plot_saliency(images, images, {str(tmp_path / "saliency.png")!r})
    """)
    assert (tmp_path / "importance.png").exists() and (tmp_path / "saliency.png").exists()


def test_saliency_heat_map(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    images = np.random.default_rng(0).random((3, 1, 4, 4)).astype(np.float32)
    maps = saliency(model, images)
    assert maps.shape == images.shape and (maps >= 0).all()
    plot_saliency(images, maps, tmp_path / "saliency.png", titles=["a", "b", "c"])
    assert (tmp_path / "saliency.png").stat().st_size > 1000


def test_errors(planted):
    with pytest.raises(SchemaError, match="needs a predict method"):
        permutation_importance(object(), planted, progress=False)
    with pytest.raises(SchemaError, match="Gradient attributions need a torch model"):
        integrated_gradients(LogisticRegression(), np.zeros((2, 5)))
    with pytest.raises(SchemaError, match="n_repeats"):
        permutation_importance(LogisticRegression(), planted, n_repeats=0, progress=False)


def test_attributions_on_an_image_store_see_the_normalised_pixels(tmp_path):
    """explain reads the store through its sample view: the pixels the model was trained on, not raw 0..255."""
    import torch
    from torch import nn

    import bigdl

    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, size=(60, 4, 4), dtype=np.uint8)  # grayscale: stored as (1, 4, 4)
    np.save(tmp_path / "x.npy", pixels)
    ds = bigdl.ingest.images(tmp_path / "x.npy", labels=rng.integers(0, 2, 60), store=tmp_path / "i.zarr",
                             test=0.5, rows_per_chunk=16, progress=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    frame = bigdl.explain.attributions(model, ds, split="test", n_steps=16)
    split = ds.split.compute()
    assert ds.sample_shape == (1, 4, 4)
    records = ds.group["record"][:]  # the store keeps the images shuffled: record is each one's input row
    seen = ds.view.to_model(pixels[records[split == 2]][:, None])
    assert abs(float(seen.mean())) < 0.5  # centred: normalised, not 0..255
    expected = np.abs(bigdl.explain.integrated_gradients(model, seen, n_steps=16)).reshape(len(seen), -1)
    # The frame is sorted by attribution: compare the sorted values.
    np.testing.assert_allclose(frame["mean_abs_attribution"].to_numpy(), np.sort(expected.mean(axis=0))[::-1],
                               rtol=1e-4)
    raw = np.abs(bigdl.explain.integrated_gradients(model, pixels[split == 2][:, None].astype(np.float32),
                                                    n_steps=16))
    assert not np.allclose(raw.reshape(len(seen), -1).mean(axis=0), expected.mean(axis=0), rtol=0.1)
