"""Image ingest benchmark: ``bigdl.ingest.images`` on a LocalCluster vs a single-process Pillow loop.

Both sides read the same folder of generated PNG files (64x64 RGB, smooth
backgrounds with a few filled shapes, one sub-folder per class) and produce
the same pixels: every image converted to RGB and resized to 32x32 with
bilinear resampling.

``pillow``
    What a user writes by hand in one process: list the files (sorted), then
    for each ``Image.open`` -> ``convert("RGB")`` -> ``resize`` ->
    ``np.asarray``; ``np.stack`` them all and ``np.save`` the array (and the
    labels).  Memory holds the whole output.
``bigdl``
    ``bigdl.ingest.images(folder, mode="RGB", size=(32, 32), test=0.2)`` on a
    LocalCluster of ``--workers`` processes x 1 thread: decode tasks in
    parallel, per-channel statistics, rejects, a chunked Zarr store.  It does
    more than the loop (validation, accounting, split, statistics).

The sides alternate inside each repeat; each bigdl run gets a fresh cluster
(untimed start, imports warmed) so its peak RSS is its own, and the Pillow
runs have no cluster up.  Scale runs repeat this at several multiples of
the image count (the 8x folder holds the 1x files plus new ones); the page
cache is warm.  Run ``python -m benchmarks images --help``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import (
    Side,
    Summary,
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
from benchmarks.ingest import FreshCluster, _remove_store

__all__ = ["add_parser", "main", "prepare_images", "pillow_loop", "bigdl_images"]

DEFAULT_IMAGES = 8000
DEFAULT_SCALES = (1, 8)
DEFAULT_MEMORY_LIMIT = "1GiB"
DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / "work" / "benchmarks" / "images"
QUICK = {"images": 1000, "repeats": 1, "scales": (1, 2)}
CLASSES = ("circle", "square", "triangle", "bar")
SOURCE_SIZE = 64
STORED_SIZE = (32, 32)
BIGDL_MODULES = ("bigdl.ingest", "zarr", "PIL.Image", "PIL.PngImagePlugin")  # warmed, untimed
TARGETS = {"speedup": 1.6, "rss_growth": 1.3}
NOISY_OTHER_CPU = 0.10


# ------------------------------------------------------------------ data
def _draw(index: int):
    """Image ``index`` (deterministic): a colour gradient with a filled shape of its class and a few others."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(index)
    ramp = np.linspace(0, 1, SOURCE_SIZE)
    start, stop = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    background = (start[None, None] + (stop - start)[None, None] * ramp[None, :, None]).astype(np.uint8)
    image = Image.fromarray(np.repeat(background, SOURCE_SIZE, axis=0), "RGB")
    draw = ImageDraw.Draw(image)
    label = index % len(CLASSES)
    for shape in [label, *rng.integers(0, len(CLASSES), 2)]:
        x, y = rng.integers(4, 40, 2)
        size = int(rng.integers(10, 24))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (int(x), int(y), int(x) + size, int(y) + size)
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        elif shape == 2:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=colour)
        else:
            draw.rectangle((box[0], box[1], box[2], box[1] + 4), fill=colour)
    return image, CLASSES[label]


def prepare_images(workdir: str | os.PathLike, n_images: int, scales: list[int]) -> dict[int, Path]:
    """Write (or reuse) the PNG files; return the folder of each scale.

    ``max(scales) * n_images`` images are written once under
    ``<workdir>/png-<n>x<max>/all``; scale ``s`` is a folder of hard links
    to the first ``s * n_images`` of them (the largest scale is ``all``).

    Parameters
    ----------
    workdir : path
    n_images : int
        Images at scale 1.
    scales : list of int

    Returns
    -------
    dict
        Scale -> folder with one sub-folder per class.
    """
    largest = max(scales)
    root = Path(workdir) / f"png-{n_images}x{largest}"
    everything = root / "all"
    done = root / "complete"
    started = time.perf_counter()
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        for label in CLASSES:
            (everything / label).mkdir(parents=True)
        for index in range(n_images * largest):
            image, label = _draw(index)
            image.save(everything / label / f"{index:07d}.png")
        done.write_text("ok")
    folders = {}
    for scale in scales:
        if scale == largest:
            folders[scale] = everything
            continue
        folder = root / f"x{scale}"
        if not folder.exists():
            staging = root / f".x{scale}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            for index in range(n_images * scale):
                label = CLASSES[index % len(CLASSES)]
                (staging / label).mkdir(parents=True, exist_ok=True)
                os.link(everything / label / f"{index:07d}.png", staging / label / f"{index:07d}.png")
            os.replace(staging, folder)
        folders[scale] = folder
    n_bytes = sum(path.stat().st_size for path in everything.rglob("*.png"))
    log(f"data: {n_images * largest:,} PNG files ({format_bytes(n_bytes)}) ready in "
        f"{time.perf_counter() - started:.1f} s ({root})")
    return folders


# ------------------------------------------------------------------ sides
def pillow_loop(folder: Path, output: Path) -> dict[str, Any]:
    """The single-process baseline: open, convert, resize, ``np.stack``, ``np.save``.

    Parameters
    ----------
    folder : path
        One sub-folder of PNG files per class.
    output : path
        Where to write ``images.npy`` and ``labels.npy``.

    Returns
    -------
    dict
        ``n_images`` and the output ``shape``.
    """
    from PIL import Image

    started = _cpu_seconds()
    classes = sorted(path.name for path in folder.iterdir() if path.is_dir())
    arrays, labels = [], []
    for code, label in enumerate(classes):
        for path in sorted((folder / label).iterdir()):
            with Image.open(path) as image:
                image = image.convert("RGB").resize((STORED_SIZE[1], STORED_SIZE[0]), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(image).transpose(2, 0, 1))
            labels.append(code)
    X = np.stack(arrays)
    output.mkdir(parents=True, exist_ok=True)
    np.save(output / "images.npy", X)
    np.save(output / "labels.npy", np.asarray(labels, dtype=np.int64))
    return {"n_images": int(X.shape[0]), "shape": list(X.shape), "cpu_seconds": _cpu_seconds() - started}


def bigdl_images(folder: Path, store: Path) -> dict[str, Any]:
    """``bigdl.ingest.images`` on the folder, on the current default Dask client.

    Returns
    -------
    dict
        ``n_images`` stored and the ``shape`` of ``X``.
    """
    from distributed import default_client

    from bigdl.ingest import images

    client = default_client()
    started = _cpu_seconds() + sum(client.run(_cpu_seconds).values())
    dataset = images(folder, store=store, mode="RGB", size=STORED_SIZE, test=0.2, overwrite=True, progress=False)
    used = _cpu_seconds() + sum(client.run(_cpu_seconds).values()) - started
    return {"n_images": int(dataset.n_samples), "shape": list(dataset._group["X"].shape), "cpu_seconds": used}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def _check(expected: int):
    def check(info: dict) -> None:
        if info.get("n_images") != expected or info.get("shape", [None])[1:] != [3, *STORED_SIZE]:
            raise AssertionError(f"got {info}, expected {expected} images of 3 x {STORED_SIZE}")
    return check


def _check_same_pixels(pillow_output: Path, store: Path, n: int = 200) -> None:
    """The two sides stored the same pixels (bigdl's ``record`` is the position in the same sorted list)."""
    import zarr

    expected = np.load(pillow_output / "images.npy", mmap_mode="r")
    group = zarr.open_group(str(store), mode="r")
    records = group["record"][:n]
    if not np.array_equal(group["X"][:n], expected[records]):
        raise AssertionError("bigdl and the Pillow loop stored different pixels")


def _trimmed(setup):
    """``setup``, then hand the memory earlier runs freed in this process back to the OS.

    The Pillow loop runs in this (the client) process and frees its 64,000 small
    arrays at the end, but glibc keeps the pages: without ``malloc_trim`` the next
    run of either side would start, and so peak, hundreds of MiB higher.
    """
    def run() -> None:
        import ctypes
        import gc

        setup()
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to trim
            pass
    return run


# ------------------------------------------------------------------ report
COLUMNS = ["scale", "images", "side", "median s", "spread s", "images/s", "vs pillow", "CPU s", "RSS client",
           "RSS workers", "RSS total", "other CPU", "ok"]


def _speedup(results: dict[str, Summary]) -> float:
    if "pillow" not in results or "bigdl" not in results:
        return float("nan")
    return results["pillow"].median / results["bigdl"].median


def _growth(by_scale: dict[int, dict[str, Summary]], side: str, role: str) -> float:
    scales = [scale for scale in sorted(by_scale) if side in by_scale[scale] and by_scale[scale][side].n_ok]
    if len(scales) < 2:
        return float("nan")
    low = by_scale[scales[0]][side].peak_rss.get(role)
    high = by_scale[scales[-1]][side].peak_rss.get(role)
    return high / low if low and high else float("nan")


def _median_cpu(runs: list) -> str:
    values = [run.info["cpu_seconds"] for run in runs if run.error is None and "cpu_seconds" in run.info]
    return f"{statistics.median(values):.2f}" if values else "-"


def report(config: dict[str, Any], machine: dict[str, Any], by_scale: dict[int, dict[str, Summary]],
           raw: dict[int, dict[str, list]]) -> str:
    """The final text report: setup lines, then the tables (printed last)."""
    nan = float("nan")
    lines = [
        "# Image ingest benchmark (PNG folder -> uint8 array / store)",
        f"machine: {describe_machine(machine)}",
        f"cluster: LocalCluster, {config['workers']} worker processes x 1 thread, memory_limit "
        f"{config['memory_limit']} per worker (scheduler and nannies in the client process); dashboard off",
        f"data: {config['images']:,} generated {SOURCE_SIZE}x{SOURCE_SIZE} RGB PNGs at 1x, {len(CLASSES)} classes; "
        f"both sides convert to RGB and resize to {STORED_SIZE[0]}x{STORED_SIZE[1]} (bilinear); warm page cache",
        f"runs: {config['repeats']} per side and scale, alternating pillow / bigdl; a fresh cluster for each bigdl "
        "run (untimed start), none during pillow runs; before each run (untimed) the client process returns "
        "freed memory to the OS (malloc_trim); pixels of both sides compared after the last run",
        "peak RSS: max over runs of the sampled peak (every 50 ms); workers = sum over worker processes",
        "CPU s: median CPU seconds used by the side's processes (client with scheduler, and workers): the work "
        "done, whatever the load; on 2 free cores bigdl's wall time can approach CPU s / 2",
        f"command: {config['command']}",
    ]
    busiest = max((summary.other_cpu for results in by_scale.values() for summary in results.values()
                   if summary.other_cpu == summary.other_cpu), default=0.0)
    if busiest > NOISY_OTHER_CPU:
        lines.append(f"NOTE: other processes took up to {busiest:.0%} of the CPU during runs; times and ratios are "
                     "noisy, rerun on a quiet machine.")
    errors = [f"  {scale}x {name}: {error}" for scale, results in by_scale.items()
              for name, summary in results.items() for error in summary.errors]
    if errors:
        lines += ["FAILED RUNS:", *errors]
    rows = []
    for scale in sorted(by_scale):
        n = config["images"] * scale
        for name, summary in by_scale[scale].items():
            rss = summary.peak_rss
            rows.append([f"{scale}x", f"{n:,}", name, f"{summary.median:.2f}", summary.spread(),
                         f"{summary.rate(n):,.0f}", format_ratio(_speedup(by_scale[scale]) if name == "bigdl" else nan),
                         _median_cpu(raw[scale][name]),
                         format_bytes(rss.get("client")), format_bytes(rss.get("workers", nan)),
                         format_bytes(rss.get("total")),
                         "-" if summary.other_cpu != summary.other_cpu else f"{summary.other_cpu:.0%}",
                         f"{summary.n_ok}/{summary.n_runs}"])
    tables = [format_table(COLUMNS, rows, title="\n## Images/s and peak RSS")]
    base, largest = min(by_scale), max(by_scale)
    targets = [target_row(f"bigdl / pillow images/s at {scale}x", _speedup(by_scale[scale]), TARGETS["speedup"],
                          at_least=True) for scale in sorted(by_scale)]
    if largest > base:
        growth = f"peak RSS growth {base}x->{largest}x"
        for role, label in (("total", "all processes"), ("workers", "workers")):
            targets.append(target_row(f"bigdl {growth}, {label}", _growth(by_scale, "bigdl", role),
                                      TARGETS["rss_growth"], at_least=False))
        targets.append([f"pillow {growth}", format_ratio(_growth(by_scale, "pillow", "total")), "(info)"])
    tables.append(format_table(["target", "measured", "verdict"], targets, title="\n## Targets"))
    return "\n".join(lines + tables)


# ------------------------------------------------------------------ CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``images`` subcommand."""
    parser = subparsers.add_parser("images", help="PNG folder -> store: bigdl vs a single-process Pillow loop",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None, help=f"images at 1x (default {DEFAULT_IMAGES:,})")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side and scale (default 3)")
    parser.add_argument("--scales", default=None, help="comma-separated multiples of --images (default 1,8)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="data and output folder; the PNG files are reused between runs (default: "
                             "work/benchmarks/images, git-ignored)")
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, help="memory_limit per worker")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, 1 thread each (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK['images']:,} images, 1 repeat, scales 1,2 (explicit options win)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where to write the JSON results (default benchmarks/results)")
    parser.set_defaults(func=main)
    return parser


def _config(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    n = args.images if args.images is not None else (QUICK["images"] if quick else DEFAULT_IMAGES)
    repeats = args.repeats if args.repeats is not None else (QUICK["repeats"] if quick else 3)
    scales = (sorted({int(v) for v in args.scales.split(",") if v.strip()}) if args.scales is not None
              else list(QUICK["scales"] if quick else DEFAULT_SCALES))
    if n < len(CLASSES) or repeats < 1 or not scales or min(scales) < 1:
        raise SystemExit(f"bad options: images={n} repeats={repeats} scales={scales}")
    return {"images": n, "repeats": repeats, "scales": scales, "workers": args.workers,
            "memory_limit": args.memory_limit, "workdir": args.workdir.resolve(),
            "command": " ".join(["python -m benchmarks", *getattr(args, "argv", ["images"])])}


def main(args: argparse.Namespace) -> int:
    """Run the image ingest benchmark and print the report; returns the exit status (1 if a run failed)."""
    config = _config(args)
    machine = machine_info(["dask", "distributed", "zarr", "PIL", "numpy", "bigdl"])
    log(f"machine: {describe_machine(machine)}")
    folders = prepare_images(config["workdir"], config["images"], config["scales"])
    output = config["workdir"] / "out"
    clusters = FreshCluster(config["workers"], config["memory_limit"])
    by_scale: dict[int, dict[str, Summary]] = {}
    raw: dict[int, dict[str, list]] = {}
    try:
        for scale, folder in folders.items():
            n = config["images"] * scale
            store, pillow_output = output / "bigdl.zarr", output / "pillow"
            sides = [
                Side("pillow", lambda folder=folder: pillow_loop(folder, pillow_output),
                     setup=_trimmed(clusters.setup()), check=_check(n)),
                Side("bigdl", lambda folder=folder: bigdl_images(folder, store),
                     setup=_trimmed(clusters.setup(store, BIGDL_MODULES)), check=_check(n)),
            ]
            log(f"scale {scale}x: {n:,} images")
            runs = measure_alternating(sides, config["repeats"], client=clusters.current, label=f"{scale}x ")
            raw[scale] = runs
            by_scale[scale] = {name: summarize(side_runs) for name, side_runs in runs.items()}
            if all(summary.n_ok for summary in by_scale[scale].values()):
                _check_same_pixels(pillow_output, store)
            _remove_store(store)
            shutil.rmtree(pillow_output, ignore_errors=True)
    finally:
        clusters.close()
    text = report(config, machine, by_scale, raw)
    path = write_results("images", {"config": config, "machine": machine, "summaries": by_scale, "runs": raw,
                                    "report": text}, args.results_dir)
    log(f"results written to {path}")
    print(text, flush=True)
    return 1 if any(summary.errors for results in by_scale.values() for summary in results.values()) else 0
