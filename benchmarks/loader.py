"""Loader and training throughput: bigdl's ChunkLoader vs in-memory tensors, per-row Zarr and dask blocks.

Sides (same store, same batch size, same semantics; BENCHMARKS.md):

* ``memory-shuffled``: the whole split as one torch tensor, ``torch.randperm``
  once per epoch, ``X[perm[i:i+b]]`` per batch (the fair upper bound);
* ``bigdl-shuffled``: ``ChunkLoader(shuffle=True)``;
* ``memory-ordered``: contiguous slices ``X[i:i+b]`` (views: nearly free);
* ``bigdl-ordered``: ``ChunkLoader(shuffle=False)``;
* ``dask-blocks``: what a user writes by hand: iterate ``X.blocks``,
  ``.compute()`` each, shuffle inside the block, slice batches;
* ``naive-per-row``: a map-style ``Dataset`` whose ``__getitem__`` reads
  ``zarr_array[i]`` in a ``DataLoader`` (measured on a slice, extrapolated).

Training: the same MLP, optimizer, seed and batch size for one epoch, fed
from ChunkLoader vs from the in-memory shuffled tensors (ratio = bigdl / memory).
Every loader side runs in this process (no cluster), so peak RSS is this
process's; the in-memory sides hold the whole split.  torch uses one thread
on both training sides (``--torch-threads``), as the Trainer does on 2 cores.
"""

from __future__ import annotations

import argparse
import time
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
    target_row,
    write_results,
)

DEFAULT_ROWS = 16_000_000  # x 32 float32 = 2 GiB of X, as BENCHMARKS.md asks
DEFAULT_FEATURES = 32
DEFAULT_WORKDIR = Path("work/benchmarks/loader")


def make_store(path: Path, rows: int, features: int):
    """A deterministic store of ``rows`` x ``features`` float32 (Blosc-lz4), reused when it exists."""
    import dask.array as da

    import bigdl

    if path.exists():
        ds = bigdl.open(path)
        if ds.n_samples == rows and ds.n_features == features:
            return ds
    log(f"writing a {rows:,} x {features} float32 store at {path} ...")
    state = da.random.RandomState(0)
    X = state.normal(size=(rows, features), chunks=(1_000_000, features)).astype(np.float32)
    # A learnable 4-class target so the training side has something to learn.
    weights = np.random.default_rng(0).normal(size=(features, 4)).astype(np.float32)
    y = (X @ weights).argmax(axis=1).astype(np.int64)
    return bigdl.store.from_arrays(X, y, store=path, test=0.2, overwrite=True, progress=True)


def _epoch(batches) -> dict:
    n = 0
    checksum = 0.0
    for X, _ in batches:
        n += len(X)
        checksum += float(X[0, 0])  # touch every batch so nothing is optimized away
    return {"samples": n}


def loader_sides(ds, batch_size: int, naive_rows: int) -> tuple[list[Side], dict]:
    import torch

    from bigdl.loaders.torch import ChunkLoader

    log("loading the train split into memory for the in-memory sides ...")
    X_train, y_train = ds.arrays("train")
    X_memory = torch.from_numpy(X_train.compute(scheduler="threads"))
    y_memory = torch.from_numpy(y_train.compute(scheduler="threads"))
    n = len(X_memory)
    epochs = {"shuffled": 0, "ordered": 0}

    def memory_shuffled():
        perm = torch.randperm(n)
        return _epoch((X_memory[perm[i:i + batch_size]], y_memory[perm[i:i + batch_size]])
                      for i in range(0, n, batch_size))

    def memory_ordered():
        return _epoch((X_memory[i:i + batch_size], y_memory[i:i + batch_size]) for i in range(0, n, batch_size))

    ordered_loader = ChunkLoader(ds, "train", batch_size=batch_size, shuffle=False)

    def bigdl_shuffled():
        # A new loader each epoch: its start-up (planning, the first buffer's reads) is in the time.
        loader = ChunkLoader(ds, "train", batch_size=batch_size, shuffle=True, seed=epochs["shuffled"])
        epochs["shuffled"] += 1
        return _epoch(loader)

    def bigdl_ordered():
        return _epoch(ordered_loader)

    def dask_blocks():
        rng = np.random.default_rng(0)

        def batches():
            for block_x, block_y in zip(X_train.blocks, y_train.blocks):
                x, y = block_x.compute(scheduler="threads"), block_y.compute(scheduler="threads")
                order = rng.permutation(len(x))
                x, y = torch.from_numpy(x[order]), torch.from_numpy(y[order])
                for i in range(0, len(x), batch_size):
                    yield x[i:i + batch_size], y[i:i + batch_size]
        return _epoch(batches())

    def naive_per_row():
        import zarr
        from torch.utils.data import DataLoader, Dataset

        group = zarr.open_group(str(ds.path), mode="r")
        X_zarr, y_zarr = group["X"], group["y"]
        index = ds.indices("train")[:naive_rows]

        class PerRow(Dataset):
            def __len__(self):
                return len(index)

            def __getitem__(self, i):
                row = int(index[i])
                return torch.from_numpy(X_zarr[row]), torch.tensor(int(y_zarr[row]))

        started = time.perf_counter()
        result = _epoch(DataLoader(PerRow(), batch_size=batch_size, shuffle=True))
        result["seconds_measured"] = time.perf_counter() - started
        return result

    sides = [Side("memory-shuffled", memory_shuffled), Side("bigdl-shuffled", bigdl_shuffled),
             Side("memory-ordered", memory_ordered), Side("bigdl-ordered", bigdl_ordered),
             Side("dask-blocks", dask_blocks), Side("naive-per-row", naive_per_row)]
    return sides, {"n_train": n, "X_memory": X_memory, "y_memory": y_memory}


def training_sides(ds, batch_size: int, memory: dict) -> list[Side]:
    import torch

    from bigdl.loaders.torch import ChunkLoader
    from bigdl.models import MLP

    X_memory, y_memory = memory["X_memory"], memory["y_memory"]
    n = len(X_memory)

    def train(batches):
        torch.manual_seed(0)
        model = MLP(ds.n_features, [64, 64], ds.n_classes)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_function = torch.nn.CrossEntropyLoss()
        total = count = 0
        for X, y in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(X), y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(X)
            count += len(X)
        return {"samples": count, "loss": total / count}

    def memory_epoch():
        perm = torch.randperm(n)
        return train((X_memory[perm[i:i + batch_size]], y_memory[perm[i:i + batch_size]])
                     for i in range(0, n, batch_size))

    def bigdl_epoch():
        return train(ChunkLoader(ds, "train", batch_size=batch_size, shuffle=True, seed=0))

    return [Side("train-memory", memory_epoch), Side("train-bigdl", bigdl_epoch)]


def first_batch_seconds(ds, batch_size: int, repeats: int) -> list[float]:
    """Seconds from ``ChunkLoader(...)`` to its first shuffled batch, each time with a fresh loader."""
    from bigdl.loaders.torch import ChunkLoader

    seconds = []
    for seed in range(repeats):
        started = time.perf_counter()
        batches = iter(ChunkLoader(ds, "train", batch_size=batch_size, shuffle=True, seed=100 + seed))
        next(batches)
        seconds.append(time.perf_counter() - started)
        batches.close()
    return seconds


def run(args) -> int:
    import torch

    # One torch thread on both sides: the loader's read threads need the other
    # core (what Trainer does by default), and it keeps the sides comparable.
    torch.set_num_threads(args.torch_threads)
    sizes = [200_000] if args.quick else [int(size) for size in str(args.rows).split(",")]
    overview = []
    for rows in sizes:
        overview.append(run_size(args, rows))
    if len(overview) > 1:
        print()
        print(format_table(["train samples", "bigdl-shuffled / memory-shuffled", "bigdl-ordered / memory-ordered",
                            "first batch s (median)", "train epoch bigdl / memory"], overview,
                           title="Loader across sizes (same runs as above)"))
    return 0


def run_size(args, rows: int) -> list:
    info = machine_info(["torch", "zarr", "numcodecs", "dask", "numpy"])
    repeats = 1 if args.quick else args.repeats
    ds = make_store(Path(args.workdir) / f"loader-{rows}x{args.features}.zarr", rows, args.features)
    store_bytes = ds.info().to_dict()
    log(f"store: {ds.n_samples:,} x {ds.n_features} float32, {format_bytes(store_bytes['bytes_uncompressed'])} "
        f"uncompressed, {format_bytes(store_bytes['bytes_on_disk'])} on disk, chunks of {ds.rows_per_chunk:,} rows")
    sides, memory = loader_sides(ds, args.batch_size, naive_rows=min(args.naive_rows, rows))
    runs = measure_alternating(sides, repeats, label="loader: ")
    summary = {name: summarize(items) for name, items in runs.items()}
    n = memory["n_train"]

    def rate(name: str) -> float:
        item = summary[name]
        if name == "naive-per-row":
            ok = [run for run in runs[name] if run.error is None]
            measured = np.median([run.info["seconds_measured"] / run.info["samples"] for run in ok]) if ok else np.nan
            return 1.0 / measured
        return item.rate(n)

    rates = {name: rate(name) for name in summary}
    rows_table = []
    for name in summary:
        item = summary[name]
        seconds = n / rates[name] if name == "naive-per-row" else item.median
        note = f"extrapolated from {min(args.naive_rows, rows):,} rows" if name == "naive-per-row" else item.spread()
        added = max(run.peak_rss.get("client", 0) - run.start_rss.get("client", 0) for run in runs[name])
        rows_table.append([name, f"{rates[name]:,.0f}", f"{seconds:.2f}", note,
                           format_bytes(item.peak_rss.get("client", 0)), format_bytes(added)])
    table = format_table(["side", "samples/s", "epoch s (median)", "spread s / note", "peak RSS",
                          "RSS added by the run"], rows_table,
                         title=f"Loader, {n:,} train samples x {ds.n_features} float32, batch {args.batch_size}")

    first = first_batch_seconds(ds, args.batch_size, max(repeats, 3))
    ratios = [
        target_row("bigdl-shuffled / memory-shuffled", rates["bigdl-shuffled"] / rates["memory-shuffled"], 1.0,
                   at_least=True),
        ["time to the first batch <= 0.2 s (median of fresh loaders)", f"{np.median(first):.3f} s",
         "pass" if np.median(first) <= 0.2 else "MISS"],
        target_row("bigdl-shuffled / naive-per-row", rates["bigdl-shuffled"] / rates["naive-per-row"], 100,
                   at_least=True),
        target_row("bigdl-shuffled / dask-blocks", rates["bigdl-shuffled"] / rates["dask-blocks"], 1.0,
                   at_least=True),
        ["bigdl-ordered / memory-ordered (views: nearly free)",
         format_ratio(rates["bigdl-ordered"] / rates["memory-ordered"]), "info"],
    ]
    training = measure_alternating(training_sides(ds, args.batch_size, memory), repeats, label="train: ")
    training_summary = {name: summarize(items) for name, items in training.items()}
    train_ratio = training_summary["train-bigdl"].median / training_summary["train-memory"].median
    training_rows = [[name, f"{item.median:.2f}", item.spread(), f"{n / item.median:,.0f}",
                      format_bytes(item.peak_rss.get("client", 0))] for name, item in training_summary.items()]
    ratios.append(target_row("train epoch bigdl / memory", train_ratio, 1.15, at_least=False))

    print()
    print(f"Machine: {describe_machine(info)}; warm page cache; {repeats} alternating runs per side")
    print()
    print(table)
    print()
    print(format_table(["side", "epoch s (median)", "spread s", "samples/s", "peak RSS"], training_rows,
                       title=f"Training one epoch, MLP {ds.n_features}-64-64-{ds.n_classes}, Adam, batch "
                             f"{args.batch_size}"))
    print()
    print(format_table(["target", "measured", "verdict"], ratios, title="Ratios (same run)"))
    path = write_results(f"loader-{rows}", {"machine": info, "rows": rows, "loader": summary, "rates": rates,
                                            "training": training_summary, "ratios": ratios,
                                            "first_batch_seconds": first})
    log(f"results written to {path}")
    return [f"{n:,}", format_ratio(rates["bigdl-shuffled"] / rates["memory-shuffled"]),
            format_ratio(rates["bigdl-ordered"] / rates["memory-ordered"]), f"{np.median(first):.3f}",
            format_ratio(train_ratio)]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``loader`` subcommand (loader and training throughput)."""
    parser = subparsers.add_parser("loader", help="ChunkLoader vs in-memory tensors, per-row Zarr, dask blocks; "
                                                  "training epoch time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=str(DEFAULT_ROWS),
                        help="store rows, or several sizes separated by commas (default 16M: 2 GiB of X); "
                             "issue 14's figures: 1000000,2000000,16000000")
    parser.add_argument("--features", type=int, default=DEFAULT_FEATURES)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-rows", type=int, default=3_000, help="rows the per-row side reads (extrapolated)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads, both sides")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--quick", action="store_true", help="200k rows, one run per side (smoke test)")
    parser.set_defaults(func=run)
    return parser
