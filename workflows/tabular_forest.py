"""Forest, SGD and a Hyperband search on one store: CSV -> Zarr (80/20) -> three models side by side.

Generates CSV files with a ``target`` column, ingests them with an 80/20
train/test split, then trains

* ``ChunkForest(n_estimators=100)``: one scikit-learn forest per group of store
  chunks on the Dask workers, merged into one forest;
* ``Incremental(SGDClassifier)``: dask-ml's partial_fit over the chunks;
* ``HyperbandSearch`` over SGDClassifier's ``alpha`` and ``loss``: successive
  halving, models trained in parallel on the workers;

and prints test accuracy of each side by side, the forest's classification
report, and saves a permutation-importance bar chart computed out of core.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import bigdl
from bigdl.estimators import ChunkForest, HyperbandSearch, Incremental
from bigdl.explain import permutation_importance, plot_importance


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--workdir", default="work/forest")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    client = bigdl.cluster.start_or_connect(n_workers=2, memory_limit="3GiB")

    files = bigdl.datasets.write_tabular_csv(workdir / "csv", args.rows, n_files=4, n_numeric=12, seed=2)
    ds = bigdl.ingest.tabular([str(path) for path in files], target="target", store=workdir / "forest.zarr",
                              categorical=["carrier"], drop=["id"], test=0.2, rows_per_chunk=65_536,
                              overwrite=True)
    print(ds.info())
    results = {}

    started = time.perf_counter()
    forest = ChunkForest(n_estimators=100, max_depth=16, random_state=0).fit(ds)
    results["ChunkForest(n_estimators=100)"] = (forest.score(ds), time.perf_counter() - started)

    from sklearn.linear_model import SGDClassifier

    started = time.perf_counter()
    sgd = Incremental(SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0), scoring="accuracy")
    for _ in range(3):
        sgd.partial_fit(ds)
    results["Incremental(SGDClassifier), 3 passes"] = (sgd.score(ds), time.perf_counter() - started)

    started = time.perf_counter()
    search = HyperbandSearch(SGDClassifier(random_state=0),
                             {"alpha": np.logspace(-6, -1, 12).tolist(), "loss": ["hinge", "log_loss", "modified_huber"]},
                             max_iter=27, random_state=0)
    search.fit(ds)
    results[f"HyperbandSearch best {search.best_params_}"] = (search.score(ds), time.perf_counter() - started)

    print("\ntest accuracy on", f"{ds.split_counts['test']:,} rows")
    for name, (accuracy, seconds) in results.items():
        print(f"  {accuracy:.4f}  {name}  ({seconds:.1f} s)")

    from sklearn.metrics import classification_report

    X_test, y_test = (array.compute() for array in ds.arrays("test"))
    print("\nChunkForest classification report:")
    print(classification_report(y_test, forest.predict(X_test), target_names=[str(c) for c in ds.classes]))

    importance = permutation_importance(forest, ds, split="test", n_repeats=3)
    print(importance[["feature", "importance_mean", "importance_std"]].head(8).to_string(index=False))
    print(f"\npermutation importance plot: {plot_importance(importance, workdir / 'importance.png')}")
    client.close()


if __name__ == "__main__":
    main()
