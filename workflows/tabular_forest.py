"""Forest, boosting, SGD and a Hyperband search on one store, each beside its in-memory reference.

Generates CSV files with a ``target`` column, **sorted by a feature**
(``x00``) as real tables come sorted, ingests them with an 80/20 train/test
split (rows stored shuffled, the default), then trains on the store

* ``XGBClassifier``: XGBoost on the workers (``xgboost.dask``, or external
  memory when the train split does not fit them);
* ``ChunkForest(n_estimators=100)``: one scikit-learn forest per group of store
  chunks on the Dask workers, merged into one forest;
* ``Incremental(SGDClassifier)``: dask-ml's partial_fit over the chunks;
* ``HyperbandSearch`` over SGDClassifier's ``alpha`` and ``loss``: successive
  halving, models trained in parallel on the workers;

and beside them the in-memory references a user would pick on the same train
rows (``xgboost`` hist, ``RandomForestClassifier``, ``HistGradientBoosting``).
It prints test accuracy and balanced accuracy side by side, the forest's
classification report, and saves a permutation-importance bar chart computed
out of core, SHAP summary (beeswarm, bar) and waterfall plots of the booster
(TreeSHAP), and LIME bar charts of three test rows for the forest.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score

import bigdl
from bigdl.estimators import ChunkForest, HyperbandSearch, Incremental, XGBClassifier
from bigdl.explain import lime, permutation_importance, plot_importance, plot_shap_summary, plot_shap_waterfall, \
    shap_values


def _sorted_csv(folder: Path, rows: int) -> list[Path]:
    """The generated table, sorted by its first numeric feature (``x00``), in 4 CSV files."""
    frame = bigdl.datasets.make_tabular(rows, n_numeric=12, seed=2).sort_values("x00", kind="stable")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, part in enumerate(np.array_split(np.arange(len(frame)), 4)):
        path = folder / f"part-{number}.csv"
        frame.iloc[part].to_csv(path, index=False)
        paths.append(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--workdir", default="work/forest")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    client = bigdl.cluster.start_or_connect(n_workers=2, memory_limit="3GiB")

    files = _sorted_csv(workdir / "csv", args.rows)
    ds = bigdl.ingest.tabular([str(path) for path in files], target="target", store=workdir / "forest.zarr",
                              categorical=["carrier"], drop=["id"], test=0.2, rows_per_chunk=65_536,
                              overwrite=True)
    print(ds.info())
    X_test, y_test = (array.compute() for array in ds.arrays("test"))
    results = {}

    def record(name, model, started):
        predicted = model.predict(X_test)
        results[name] = (accuracy_score(y_test, predicted), balanced_accuracy_score(y_test, predicted),
                         time.perf_counter() - started)

    started = time.perf_counter()
    booster = XGBClassifier(n_estimators=200, max_depth=6, random_state=0).fit(ds)
    record(f"bigdl XGBClassifier(200 rounds), {booster.memory_}", booster, started)

    started = time.perf_counter()
    forest = ChunkForest(n_estimators=100, max_depth=16, random_state=0).fit(ds)
    record("bigdl ChunkForest(n_estimators=100)", forest, started)

    from sklearn.linear_model import SGDClassifier

    started = time.perf_counter()
    sgd = Incremental(SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0), scoring="accuracy")
    for _ in range(3):
        sgd.partial_fit(ds)
    record("bigdl Incremental(SGDClassifier), 3 passes", sgd, started)

    started = time.perf_counter()
    search = HyperbandSearch(SGDClassifier(random_state=0),
                             {"alpha": np.logspace(-6, -1, 12).tolist(), "loss": ["hinge", "log_loss", "modified_huber"]},
                             max_iter=27, random_state=0)
    search.fit(ds)
    record(f"bigdl HyperbandSearch best {search.best_params_}", search, started)

    # The in-memory references on the same train rows (this process holds them whole).
    import xgboost
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    X_train, y_train = (array.compute() for array in ds.arrays("train"))
    for name, model in (("in-memory xgboost hist (200 rounds)",
                         xgboost.XGBClassifier(n_estimators=200, max_depth=6, tree_method="hist", random_state=0)),
                        ("in-memory RandomForestClassifier(100)",
                         RandomForestClassifier(100, max_depth=16, random_state=0, n_jobs=-1)),
                        ("in-memory HistGradientBoostingClassifier", HistGradientBoostingClassifier(random_state=0))):
        started = time.perf_counter()
        record(name, model.fit(X_train, y_train), started)

    print("\ntest accuracy / balanced accuracy on", f"{ds.split_counts['test']:,} rows")
    for name, (accuracy, balanced, seconds) in results.items():
        print(f"  {accuracy:.4f}  {balanced:.4f}  {name}  ({seconds:.1f} s)")

    from sklearn.metrics import classification_report

    print("\nChunkForest classification report:")
    print(classification_report(y_test, forest.predict(X_test), target_names=[str(c) for c in ds.classes]))

    importance = permutation_importance(forest, ds, split="test", n_repeats=3)
    print(importance[["feature", "importance_mean", "importance_std"]].head(8).to_string(index=False))
    print(f"\npermutation importance plot: {plot_importance(importance, workdir / 'importance.png')}")
    # TreeSHAP: XGBoost's own pred_contribs, chunk by chunk on the workers; mean |SHAP| summed as chunks stream.
    explanation = shap_values(booster, ds, split="test", max_samples=20_000)
    print(f"\nSHAP (tree) on {explanation.n_samples:,} test rows, additivity error {explanation.additivity_error:.1e}:")
    print(explanation.importance().head(5).to_string(index=False))
    print(f"SHAP plots: {plot_shap_summary(explanation, workdir / 'shap_beeswarm.png')}, "
          f"{plot_shap_summary(explanation, workdir / 'shap_bar.png', kind='bar')}, "
          f"{plot_shap_waterfall(explanation, 0, workdir / 'shap_waterfall_0.png')}")
    local = lime(forest, ds, rows=[0, 1, 2], num_samples=2000, plot_dir=workdir / "lime")
    print(f"LIME weights of 3 test rows (bar PNGs: {', '.join(local.plots)}):")
    print(local.mean_abs_weights().head(5).to_string(index=False))
    client.close()


if __name__ == "__main__":
    main()
