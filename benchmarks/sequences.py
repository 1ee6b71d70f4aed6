"""Sequence windows: ChunkLoader cutting windows at load time vs NumPy windows over the in-memory series.

Sides (same store, same windows, same batch size, shuffled; BENCHMARKS.md):

* ``memory-sliding-window``: the whole series in RAM, windows as a NumPy
  ``sliding_window_view`` (a view: no copy), each batch gathered by the same
  kind of shuffled index of valid window starts;
* ``bigdl-shuffled``: ``ChunkLoader(shuffle=True)`` over the sequence store
  (chunk order shuffled, windows shuffled in a 4-chunk buffer, each chunk read
  with a halo from the next);
* ``bigdl-ordered``: ``ChunkLoader(shuffle=False)`` (for information).

Both sides yield torch tensors ``X (batch, window, channels)`` and
``y (batch, horizon)``.  Storage compares the store (the series once) with
what materialised windows would take (``window + horizon`` times the series).
The store is made by ``bigdl.ingest.sequences`` from a generated ``.npy``
series, so the ingest path is exercised too.
"""

from __future__ import annotations

import argparse
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

DEFAULT_STEPS = 8_000_000
DEFAULT_CHANNELS = 4
DEFAULT_WORKDIR = Path("work/benchmarks/sequences")


def make_store(workdir: Path, steps: int, channels: int, window: int, horizon: int):
    """A generated multi-channel series (seasonal random walks) ingested as a sequence store; reused."""
    import bigdl

    path = workdir / f"series-{steps}x{channels}.zarr"
    if path.exists():
        ds = bigdl.open(path)
        if ds.n_samples == steps and ds.n_features == channels:
            return ds
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"series-{steps}x{channels}.npy"
    if not source.exists():
        log(f"generating {steps:,} steps x {channels} channels ...")
        rng = np.random.default_rng(0)
        walk = np.cumsum(rng.normal(size=(steps, channels)).astype(np.float32), axis=0)
        season = np.sin(2 * np.pi * np.arange(steps, dtype=np.float32) / 24.0)[:, None]
        np.save(source, (walk + 5 * season).astype(np.float32))
    log(f"ingesting {source} ...")
    return bigdl.ingest.sequences(str(source), store=path, target="x0", window=window, horizon=horizon, validation=0.1,
                                  test=0.2, overwrite=True)


def _epoch(batches) -> dict:
    n = 0
    checksum = 0.0
    for X, y in batches:
        n += len(X)
        checksum += float(X[0, 0, 0]) + float(y[0, 0])  # touch every batch
    return {"samples": n}


def valid_starts(loader) -> np.ndarray:
    """The global positions of the window starts a loader yields (its own validity rule)."""
    starts = []
    for chunk in range(len(loader.chunk_counts)):
        rows, mask = loader._window_starts(chunk)
        starts.append(np.flatnonzero(mask) + rows.start)
    return np.concatenate(starts)


def sides(ds, batch_size: int) -> tuple[list[Side], dict]:
    import torch

    from bigdl.loaders.torch import ChunkLoader

    shuffled_loader = ChunkLoader(ds, "train", batch_size=batch_size, shuffle=True, seed=0)
    ordered_loader = ChunkLoader(ds, "train", batch_size=batch_size, shuffle=False)
    window, horizon = shuffled_loader.windows["window"], shuffled_loader.windows["horizon"]
    target = shuffled_loader.windows["target_index"][0]
    log("loading the series into memory for the NumPy side ...")
    series = ds.X.compute(scheduler="threads")  # (steps, channels) float32, scaled like the store
    starts = valid_starts(shuffled_loader)
    # (n_windows, channels, window + horizon): a view of the series, no copy.
    windows = np.lib.stride_tricks.sliding_window_view(series, window + horizon, axis=0)
    epochs = {"bigdl": 0, "memory": 0}

    def memory_shuffled():
        order = np.random.default_rng(epochs["memory"]).permutation(starts)
        epochs["memory"] += 1

        def batches():
            for i in range(0, len(order), batch_size):
                block = windows[order[i:i + batch_size]]  # gathers (b, channels, span)
                X = np.ascontiguousarray(block[:, :, :window].transpose(0, 2, 1))
                y = np.ascontiguousarray(block[:, target, window:])
                yield torch.from_numpy(X), torch.from_numpy(y)
        return _epoch(batches())

    def bigdl_shuffled():
        shuffled_loader.set_epoch(epochs["bigdl"])
        epochs["bigdl"] += 1
        return _epoch(shuffled_loader)

    def bigdl_ordered():
        return _epoch(ordered_loader)

    facts = {"n_windows": int(len(starts)), "window": window, "horizon": horizon,
             "series_bytes": int(series.nbytes),
             "windows_bytes": int(len(starts) * (window * series.shape[1] + horizon) * series.itemsize)}
    return [Side("memory-sliding-window", memory_shuffled), Side("bigdl-shuffled", bigdl_shuffled),
            Side("bigdl-ordered", bigdl_ordered)], facts


def run(args) -> int:
    import torch

    torch.set_num_threads(1)
    info = machine_info(["torch", "zarr", "numcodecs", "dask", "numpy"])
    steps = 400_000 if args.quick else args.steps
    repeats = 1 if args.quick else args.repeats
    ds = make_store(Path(args.workdir), steps, args.channels, args.window, args.horizon)
    contenders, facts = sides(ds, args.batch_size)
    runs = measure_alternating(contenders, repeats, label="sequences: ")
    summary = {name: summarize(items) for name, items in runs.items()}
    n = facts["n_windows"]
    rates = {name: item.rate(n) for name, item in summary.items()}
    rows = []
    for name, item in summary.items():
        added = max(run.peak_rss.get("client", 0) - run.start_rss.get("client", 0) for run in runs[name])
        rows.append([name, f"{rates[name]:,.0f}", f"{item.median:.2f}", item.spread(),
                     format_bytes(item.peak_rss.get("client", 0)), format_bytes(added)])
    store = ds.info().to_dict()
    storage = [
        ["bigdl store (the series once, Blosc-lz4, plus time/series/position/run/split/record)",
         format_bytes(store["bytes_on_disk"]), format_ratio(store["bytes_on_disk"] / facts["series_bytes"])],
        ["the series in memory (float32)", format_bytes(facts["series_bytes"]), "1.00x"],
        [f"materialised train windows ({facts['window']} + {facts['horizon']} steps each)",
         format_bytes(facts["windows_bytes"]), format_ratio(facts["windows_bytes"] / facts["series_bytes"])],
    ]
    ratios = [
        target_row("bigdl-shuffled / memory-sliding-window", rates["bigdl-shuffled"] / rates["memory-sliding-window"],
                   0.7, at_least=True),
        ["store bytes / series bytes", format_ratio(store["bytes_on_disk"] / facts["series_bytes"]), "info"],
    ]
    print()
    print(f"Machine: {describe_machine(info)}; warm page cache; {repeats} alternating runs per side")
    print()
    print(format_table(["side", "windows/s", "epoch s (median)", "spread s", "peak RSS", "RSS added by the run"],
                       rows, title=f"Windows, {steps:,} steps x {args.channels} channels, window {facts['window']}, "
                                   f"horizon {facts['horizon']}, {n:,} train windows, batch {args.batch_size}"))
    print()
    print(format_table(["what", "bytes", "vs the series"], storage, title="Storage"))
    print()
    print(format_table(["target", "measured", "verdict"], ratios, title="Ratios (same run)"))
    path = write_results("sequences", {"machine": info, "steps": steps, "summary": summary, "rates": rates,
                                       "facts": facts, "store": store, "ratios": ratios})
    log(f"results written to {path}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``sequences`` subcommand (load-time windows vs sliding_window_view)."""
    parser = subparsers.add_parser("sequences", help="ChunkLoader windows vs NumPy sliding_window_view in memory",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--channels", type=int, default=DEFAULT_CHANNELS)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--quick", action="store_true", help="400k steps, one run per side (smoke test)")
    parser.set_defaults(func=run)
    return parser
