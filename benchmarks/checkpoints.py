"""What ``Trainer(checkpoint_every=...)`` costs: epoch time with checkpoints within the epoch vs without.

Sides (the same store, model, seed and batch size; in-process, one torch thread):

* ``epoch-end``: checkpoints at the epoch's end only (the default);
* ``every-N``: also every ``N`` steps, for each ``N`` of ``--every``;
* ``every-T``: also whenever ``--seconds`` have passed.

Each checkpoint writes the model, optimizer, RNG and loader state and the
history (``torch.save`` to a temporary name, then a rename, then the JSON
sidecar), and removes the run's previous within-epoch checkpoint.  The table
gives the epoch's median time, the ratio to ``epoch-end``, checkpoints
written per epoch and the time each one cost.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
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
from benchmarks.loader import make_store

DEFAULT_WORKDIR = Path("work/benchmarks/checkpoints")


def sides(ds, batch_size: int, every: list[int], seconds: str | None, root: Path) -> list[Side]:
    import torch

    from bigdl.models import MLP
    from bigdl.train import Trainer

    def side(name: str, checkpoint_every):
        directory = root / name

        def setup():
            shutil.rmtree(directory, ignore_errors=True)  # the benchmark's own folder under its temporary root

        def run():
            torch.manual_seed(0)
            trainer = Trainer(MLP(ds.n_features, [64, 64], ds.n_classes), epochs=1, batch_size=batch_size,
                              on_cluster=False, progress=False, torch_threads=1, checkpoint_dir=str(directory),
                              checkpoint_every=checkpoint_every)
            history = trainer.fit(ds)
            files = sorted(directory.glob("*.pt"))
            return {"loss": history[-1]["train_loss"], "checkpoint_bytes": max(path.stat().st_size for path in files)}

        return Side(name, run, setup=setup)

    result = [side("epoch-end", None)]
    result += [side(f"every-{steps}", steps) for steps in every]
    if seconds:
        result.append(side(f"every-{seconds}", seconds))
    return result


def run(args) -> int:
    import torch

    torch.set_num_threads(1)
    info = machine_info(["torch", "zarr", "numpy"])
    rows = 200_000 if args.quick else args.rows
    repeats = 1 if args.quick else args.repeats
    ds = make_store(Path(args.workdir) / f"checkpoints-{rows}x{args.features}.zarr", rows, args.features)
    steps = -(-ds.split_counts["train"] // args.batch_size)
    every = [int(value) for value in args.every.split(",") if value]
    with tempfile.TemporaryDirectory(prefix="bigdl-bench-checkpoints-") as root:
        contenders = sides(ds, args.batch_size, every, args.seconds, Path(root))
        log("warm-up epoch (untimed: imports, page cache) ...")
        contenders[0].setup()
        contenders[0].run()
        runs = measure_alternating(contenders, repeats, label="checkpoints: ")
    summary = {name: summarize(items) for name, items in runs.items()}
    base = summary["epoch-end"].median
    table = []
    for name, item in summary.items():
        written = 0 if name == "epoch-end" else (steps // int(name.split("-")[1]) if name.split("-")[1].isdigit()
                                                 else np.nan)
        cost = (item.median - base) / written if written else np.nan
        ok = [run for run in runs[name] if run.error is None]
        size = ok[0].info["checkpoint_bytes"] if ok else 0
        table.append([name, f"{item.median:.2f}", item.spread(), format_ratio(item.median / base),
                      "-" if written != written else f"{written}", "-" if cost != cost else f"{cost * 1000:.1f}",
                      f"{size / 1024:,.0f} KiB", format_bytes(item.peak_rss.get("client", 0))])
    print()
    print(f"Machine: {describe_machine(info)}; {repeats} alternating runs per side")
    print()
    print(format_table(["side", "epoch s (median)", "spread s", "/ epoch-end", "step checkpoints",
                        "ms per checkpoint", "checkpoint size", "peak RSS"], table,
                       title=f"Checkpoints within an epoch: {ds.split_counts['train']:,} train samples, {steps} steps "
                             f"of {args.batch_size}, MLP {ds.n_features}-64-64-{ds.n_classes}, in-process"))
    path = write_results("checkpoints", {"machine": info, "rows": rows, "summary": summary})
    log(f"results written to {path}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``checkpoints`` subcommand (the cost of checkpoint_every)."""
    parser = subparsers.add_parser("checkpoints", help="epoch time with checkpoint_every vs checkpoints at epoch "
                                                       "ends only", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--every", default="100,10", help="step intervals, separated by commas")
    parser.add_argument("--seconds", default="1s", help="a time interval side ('' for none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--quick", action="store_true", help="200k rows, one run per side (smoke test)")
    parser.set_defaults(func=run)
    return parser
