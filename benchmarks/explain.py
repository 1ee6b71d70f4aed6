"""SHAP values per second out of core (``bigdl.explain.shap_values`` on a store) vs ``shap``/captum in memory.

The data: a classification table of ``--features`` float features and
``--classes`` classes, written once per size with
``bigdl.store.from_arrays`` (untimed), and two models fitted once on its
train split (untimed): ``bigdl.estimators.XGBClassifier`` and a
``bigdl.train.Trainer`` MLP.  On the test split's first rows:

* ``bigdl-tree``: ``shap_values(xgb, ds)`` on ``bigdl.cluster.start_local``'s cluster (XGBoost's
  ``pred_contribs``, chunk by chunk, the global importance summed as the
  chunks stream), then its values written to a Zarr array by the workers;
* ``xgboost-contribs-memory``: the same rows loaded into this process,
  ``booster.predict(DMatrix(X), pred_contribs=True)``;
* ``shap-tree-memory``: ``shap.TreeExplainer(booster).shap_values(X)`` in this process;
* ``bigdl-deeplift``: ``shap_values(trainer, ds)`` (captum's DeepLiftShap
  against ``--background`` train rows drawn by the seed), values written as above;
* ``captum-deeplift-memory``: captum's ``DeepLiftShap`` on the same module,
  rows and background in this process, in batches of the same size bigdl uses.

Both out-of-core sides compute the values twice (the importance pass, then
the values' write): that is what a user who wants both pays.  The in-memory
sides compute them once and hold them whole.  ``--scales`` gives the sizes
as multiples of ``--rows``; pick the largest so that the values (rows x
features x classes float32) exceed ``--memory-limit``, which every worker
gets.  Sides alternate, each repeated ``--repeats`` times (3 unless
``--quick``); the report gives median and spread, values per second, and
the peak RSS of the client, scheduler and workers.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from benchmarks._harness import (
    Side,
    describe_machine,
    format_bytes,
    format_ratio,
    format_table,
    log,
    machine_info,
    measure_alternating,
    summarize,
    write_results,
)

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "explain"


def make_store(folder: Path, rows: int, features: int, classes: int, *, rows_per_chunk: int, seed: int = 0):
    """A classification store of ``rows`` rows, 10% train and 90% test (the explained rows); reused when present."""
    import bigdl

    store = folder / f"table-{rows}x{features}x{classes}.zarr"
    if store.exists():
        return bigdl.open(store)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    weights = rng.normal(size=(features, classes)).astype(np.float32)
    y = (X @ weights + np.sin(2 * X[:, :classes])).argmax(axis=1).astype(np.int64)
    return bigdl.store.from_arrays(X, y, store=store, test=0.9, seed=seed, rows_per_chunk=rows_per_chunk,
                                   overwrite=True)


def fit_models(ds, *, rounds: int, epochs: int, hidden: int):
    """An XGBClassifier and a Trainer MLP fitted on ``ds``'s train split (on the active cluster)."""
    import torch

    from bigdl.estimators import XGBClassifier
    from bigdl.models import MLP
    from bigdl.train import Trainer

    xgb = XGBClassifier(n_estimators=rounds, max_depth=4, random_state=0).fit(ds)
    torch.manual_seed(0)
    trainer = Trainer(MLP(ds.n_features, [hidden, hidden], ds.n_classes), optimizer="adam", lr=1e-3, epochs=epochs,
                      batch_size=1024, seed=0)
    trainer.fit(ds)
    return xgb, trainer


def sides(ds, xgb, trainer, *, n_rows: int, background: int, workdir: Path) -> tuple[list[Side], list[Side]]:
    """The tree sides and the torch sides, on the first ``n_rows`` test rows."""
    import dask.array as da

    from bigdl.explain import shap_values
    from bigdl.explain._samples import random_rows
    from bigdl.explain._shap import _TORCH_BATCH_ELEMENTS, torch_module

    def out_of_core(model, method):
        def run():
            target = workdir / f"values-{method}.zarr"
            shutil.rmtree(target, ignore_errors=True)  # this benchmark's own output from its previous run
            explanation = shap_values(model, ds, split="test", max_samples=n_rows, background=background,
                                      method=method, progress=False)
            importance = explanation.importance()
            da.to_zarr(explanation.values, str(target), overwrite=True)
            values = explanation.values
            return {"rows": int(values.shape[0]), "values_bytes": int(np.prod(values.shape)) * 4,
                    "top": str(importance.index[0]) if hasattr(importance, "index") else ""}
        return run

    def test_rows():
        # Read in this process (threads): concatenating the rows on a worker would need them all under its limit.
        X, _ = ds.arrays("test")
        return np.ascontiguousarray(X[:n_rows].compute(scheduler="threads"), dtype=np.float32)

    def xgb_contribs():
        import xgboost

        X = test_rows()
        contributions = xgb.booster_.predict(xgboost.DMatrix(X), pred_contribs=True,
                                             iteration_range=(0, xgb.best_iteration_ + 1))
        return {"rows": len(X), "values_bytes": int(contributions[..., :-1].size) * 4}

    def shap_tree():
        import shap

        X = test_rows()
        values = np.asarray(shap.TreeExplainer(xgb.booster_).shap_values(X))
        return {"rows": len(X), "values_bytes": int(values.size) * 4}

    module = torch_module(trainer)
    reference, _ = random_rows(ds, "train", background, 0)

    def captum_deeplift():
        import copy
        import warnings

        import torch
        from captum.attr import DeepLiftShap

        X = test_rows()
        model = copy.deepcopy(module).cpu().eval()
        explainer = DeepLiftShap(model)
        baselines = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
        batch = max(1, _TORCH_BATCH_ELEMENTS // (X.shape[1] * len(reference)))
        values = np.empty((len(X), X.shape[1], ds.n_classes), dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for start in range(0, len(X), batch):
                inputs = torch.from_numpy(X[start:start + batch])
                for output in range(ds.n_classes):
                    values[start:start + batch, :, output] = explainer.attribute(
                        inputs, baselines=baselines, target=output).detach().numpy()
        return {"rows": len(X), "values_bytes": int(values.size) * 4}

    tree = [Side("bigdl-tree", out_of_core(xgb, "tree")), Side("xgboost-contribs-memory", xgb_contribs),
            Side("shap-tree-memory", shap_tree)]
    torch_sides = [Side("bigdl-deeplift", out_of_core(trainer, "deeplift")),
                   Side("captum-deeplift-memory", captum_deeplift)]
    return tree, torch_sides


def run(args) -> int:
    import os

    import bigdl

    os.environ.setdefault("BIGDL_PROGRESS", "0")  # bars off: stderr keeps the harness's lines
    repeats = 1 if args.quick else max(3, args.repeats)
    info = machine_info(["dask", "distributed", "xgboost", "shap", "captum", "torch", "zarr"])
    scales = [int(item) for item in args.scales.split(",")]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    headers = ["data", "model", "side", "median s", "spread s", "rows/s", "values MiB", "RSS client",
               "RSS workers", "RSS total", "other CPU", "notes"]
    rows, ratios, payload = [], [], {"machine": info, "config": vars(args) | {"func": None}}
    # The stores are written first, on local threads: a NumPy table sent to a worker near its limit stalls it.
    stores = {}
    for scale in scales:
        n_rows = args.rows * scale
        # The test split (90%) holds the explained rows; the train split (10%) only fits the models.
        stores[scale] = make_store(workdir, int(np.ceil(n_rows / 0.9)) + args.rows_per_chunk, args.features,
                                   args.classes, rows_per_chunk=args.rows_per_chunk)
    # bigdl.cluster.start_local: the cluster bigdl's users get (its allocator settings, memory trimming).
    client = bigdl.cluster.start_local(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit,
                                       dashboard_address=":0", quiet=True)
    cluster = client.cluster
    try:
        for scale in scales:
            n_rows, ds = args.rows * scale, stores[scale]
            n_rows = min(n_rows, ds.split_counts["test"])
            log(f"{scale}x: fitting the models on {ds.split_counts['train']:,} train rows")
            xgb, trainer = fit_models(ds, rounds=args.rounds, epochs=args.epochs, hidden=args.hidden)
            label = f"{scale}x ({n_rows:,} rows)"
            tree, torch_sides = sides(ds, xgb, trainer, n_rows=n_rows, background=args.background, workdir=workdir)
            for model_name, chosen, ours, baselines in (
                    ("XGB tree", tree, "bigdl-tree", ("xgboost-contribs-memory", "shap-tree-memory")),
                    (f"MLP deeplift bg={args.background}", torch_sides, "bigdl-deeplift",
                     ("captum-deeplift-memory",))):
                chosen = [side for side in chosen if not args.sides or side.name in args.sides]
                if not chosen:
                    continue
                runs = measure_alternating(chosen, repeats, client=client, label=f"{scale}x {model_name} ")
                summary = {name: summarize(items) for name, items in runs.items()}
                for name, item in summary.items():
                    errors = "; ".join(sorted({str(run.error) for run in runs[name] if run.error}))
                    sizes = [run.info["values_bytes"] for run in runs[name] if run.error is None]
                    values_mib = f"{sizes[0] / 2**20:,.0f}" if sizes else "-"
                    rows.append([label, model_name, name, f"{item.median:.2f}", item.spread(),
                                 f"{item.rate(n_rows):,.0f}" if item.n_ok else "-", values_mib,
                                 format_bytes(item.peak_rss.get("client", 0)),
                                 format_bytes(item.peak_rss.get("workers", 0)),
                                 format_bytes(item.peak_rss.get("total", 0)), f"{item.other_cpu:.0%}",
                                 errors[:60]])
                for baseline in baselines:
                    if ours in summary and baseline in summary:
                        ratio = summary[baseline].median / summary[ours].median
                        ratios.append([f"{scale}x {model_name}: rows/s of {ours} / {baseline}", format_ratio(ratio)])
                payload[f"{scale}x {model_name}"] = summary
    finally:
        client.close()
        cluster.close()
    print()
    print(f"Machine: {describe_machine(info)}; start_local {args.workers} workers x 1 thread, memory limit "
          f"{args.memory_limit} each; {repeats} alternating run(s) per side; {args.features} features, "
          f"{args.classes} classes, XGB {args.rounds} rounds x depth 4, MLP {args.hidden}-{args.hidden}")
    print()
    print(format_table(headers, rows, title="SHAP values of the test rows: out of core vs in memory"))
    print()
    print(format_table(["ratio (same run)", "measured"], ratios, title="Speed ratios (above 1: bigdl faster)"))
    log(f"results written to {write_results('explain', payload)}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``explain`` subcommand."""
    parser = subparsers.add_parser("explain", help="SHAP values per second out of core vs shap/captum in memory "
                                                   "(tree and torch models)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="explained rows at 1x")
    parser.add_argument("--scales", default="1,14", help="sizes as multiples of --rows; the largest should hold "
                                                        "more values than --memory-limit")
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20, help="XGBoost rounds (trees per class)")
    parser.add_argument("--epochs", type=int, default=1, help="MLP training epochs")
    parser.add_argument("--hidden", type=int, default=8, help="width of the MLP's two hidden layers")
    parser.add_argument("--background", type=int, default=2, help="DeepLiftShap's background rows")
    parser.add_argument("--rows-per-chunk", type=int, default=2_500)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (at least 3 unless --quick)")
    parser.add_argument("--quick", action="store_true", help="one run per side")
    parser.add_argument("--sides", type=lambda text: [name for name in text.split(",") if name], default=[],
                        help="only these sides, separated by commas (default all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1536MiB", help="per worker (a worker that has run torch, "
                                                                    "xgboost and shap holds 600-900 MiB)")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.set_defaults(func=run)
    return parser
