"""Image ingest: a folder of class sub-folders -> uint8 ``(n, C, H, W)`` Zarr store.

The files are listed (and sorted) on the client; decoding runs in Dask tasks,
in two passes like tabular ingest:

1. **decode** (one task per batch of files, a batch being one store chunk's
   worth of files): open each file with Pillow, convert it to ``mode``,
   resize it to ``size``, validate it, and stage the batch as a uint8 ``.npy``
   file (plus labels, records and splits) next to the temporary store.  The
   task also returns per-channel sums and sums of squares of the pixels in
   ``[0, 1]`` units, for the normalisation statistics, and its rejects.
2. **write** (one task per store chunk): read the staged rows of exactly one
   chunk and write the chunk.  Files that are rejected in pass 1 shift the
   stored rows, so writes only happen once every batch's size is known: no two
   tasks ever touch one Zarr chunk.

Memory is bounded by one chunk of images per task.  The per-channel mean and
standard deviation of the stored images go to the store's ``preprocessing``
attribute; :class:`bigdl.loaders.ChunkLoader` normalises with them at load time.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from bigdl._tasks import run_tasks
from bigdl.errors import EmptyResultError, SchemaError, SourceNotFoundError
from bigdl.store._dataset import Dataset, open_store
from bigdl.store._format import (
    assign_split,
    atomic_store,
    check_split_parameters,
    check_whole_chunk,
    create_arrays,
    finish_store,
    rows_per_chunk_for,
)

__all__ = ["images", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODES = {"L": 1, "RGB": 3}
RESIZES = ("stretch", "pad")
RESAMPLE = "bilinear"
X_DIMENSIONS = ("sample", "channel", "height", "width")


def images(source, *, store: str | os.PathLike, mode: str = "L", size=(28, 28), resize: str = "stretch",
           validation: float = 0.0, test: float = 0.2, seed: int = 0, rows_per_chunk: int | None = None,
           overwrite: bool = False, progress: bool = True, client=None) -> Dataset:
    """Ingest a folder of images, one sub-folder per class, into a Zarr store.

    Parameters
    ----------
    source : str or path
        The root folder.  Each sub-folder is a class (its name is the class
        name); the images in it, at any depth, are its samples.  PNG, JPEG,
        BMP and TIFF files are read (by suffix, any case); other files, hidden
        files and files directly in the root are ignored.
    store : str or path
        Where to write the store (a directory, usually ``*.zarr``).
    mode : {"L", "RGB"}, default "L"
        Pillow mode every image is converted to: 1 channel (grey) or 3.
    size : (int, int), default (28, 28)
        ``(height, width)`` of the stored images.
    resize : {"stretch", "pad"}, default "stretch"
        ``"stretch"`` resizes to ``size`` ignoring the aspect ratio; ``"pad"``
        keeps the aspect ratio, fits the image inside ``size`` and pads the
        rest with zeros, the image centred.  Resampling is bilinear.
    validation, test : float, default 0.0 and 0.2
        Expected fractions of samples in the validation and test splits.
    seed : int, default 0
        Seed of the split.  A file's split is a hash of its path relative to
        ``source`` and the seed, so adding files never moves existing ones.
    rows_per_chunk : int, optional
        Images per store chunk; default: about 16 MiB of ``X`` per chunk.
    overwrite : bool, default False
        Replace an existing store (only once the new one is complete).
    progress : bool, default True
        Show progress bars.
    client : distributed.Client, optional
        Where to run; default: the current client, or Dask's threaded
        scheduler when there is none.

    Returns
    -------
    Dataset
        The store, opened: ``X`` uint8 ``(n, C, H, W)``, ``y`` int64 class
        codes (in the order of ``class_names``), ``split`` and ``record`` (the
        file's position in the sorted file list).

    Notes
    -----
    Files that cannot be used (empty, truncated or corrupt, not an image, or
    not convertible to ``mode``) are written to ``<store>/rejects/*.parquet``
    with their path, record and reason; the store's ``rows`` attribute counts
    files read, stored and rejected, and read = stored + rejected always holds.

    Examples
    --------
    >>> ds = bigdl.ingest.images("data/digits", store="work/digits.zarr", size=(28, 28))  # doctest: +SKIP
    >>> print(ds.info())                                                               # doctest: +SKIP
    """
    started = time.perf_counter()
    size = _check_parameters(mode=mode, size=size, resize=resize, validation=validation, test=test,
                             seed=seed, rows_per_chunk=rows_per_chunk)
    root, class_names, files = list_image_folder(source)
    channels = MODES[mode]
    height, width = size
    chunk_rows = rows_per_chunk or rows_per_chunk_for(channels * height * width, itemsize=1)
    split_spec = {"seed": seed, "validation": validation, "test": test}
    options = {"mode": mode, "size": size, "resize": resize}

    with atomic_store(store, overwrite=overwrite) as temporary:
        staging = temporary / "_staging"
        staging.mkdir()
        batches = [(index, start, files[start:start + chunk_rows])
                   for index, start in enumerate(range(0, len(files), chunk_rows))]
        decode_results = run_tasks(
            "bigdl-ingest-decode", _decode_task,
            [(str(root), str(staging), index, start, batch, options, split_spec)
             for index, start, batch in batches],
            desc=f"ingest {root.name}: decode", progress=progress, client=client,
        )
        accounting = _account(len(files), decode_results)
        if accounting["stored"] == 0:
            raise EmptyResultError(_empty_message(root, accounting, decode_results))
        # Not ("y", "x"): xarray would take the label array "y" for a coordinate of X's row axis.
        create_arrays(temporary, accounting["stored"], chunk_rows, x_shape=(channels, height, width),
                      x_dtype="uint8", y_dtype="int64", x_dimensions=X_DIMENSIONS)
        write_results = run_tasks(
            "bigdl-ingest-write", _write_task,
            [(str(temporary), str(staging), start, pieces)
             for start, pieces in _chunk_jobs(decode_results, accounting["stored"], chunk_rows)],
            desc=f"ingest {root.name}: write", progress=progress, client=client,
        )
        rejects = [item for result in decode_results for item in result["rejects"]]
        if rejects:
            (temporary / "rejects").mkdir()
            pd.DataFrame(rejects, columns=["source", "record", "class", "reason"]).astype(
                {"record": "int64"}).to_parquet(temporary / "rejects" / "part-000000.parquet", index=False)
        shutil.rmtree(staging)
        mean, std = _statistics(decode_results, channels)
        split_counts = np.sum(write_results, axis=0)
        _write_attributes(temporary, root=root, n_files=len(files), class_names=class_names, options=options,
                          mean=mean, std=std, accounting=accounting, split_counts=split_counts,
                          split_spec=split_spec, seconds=time.perf_counter() - started)
    return open_store(store)


# ---------------------------------------------------------------- checks and listing
def _check_parameters(*, mode, size, resize, validation, test, seed, rows_per_chunk) -> tuple[int, int]:
    if mode not in MODES:
        raise SchemaError(f"The 'mode' parameter of images must be one of {tuple(MODES)}; got {mode!r}.")
    if resize not in RESIZES:
        raise SchemaError(f"The 'resize' parameter of images must be one of {RESIZES}; got {resize!r}.")
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise SchemaError(f"The 'size' parameter of images must be (height, width), two ints >= 1; got {size!r}.")
    check_split_parameters("images", validation=validation, test=test, seed=seed, rows_per_chunk=rows_per_chunk,
                           unit="images")
    return int(size[0]), int(size[1])


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_image_folder(source) -> tuple[Path, list[str], list[tuple[str, int]]]:
    """The root, the class names and the sorted ``(relative path, class code)`` list of an image folder."""
    root = Path(source).expanduser()
    if not root.exists():
        raise SourceNotFoundError(f"The image folder {str(source)!r} does not exist.")
    if not root.is_dir():
        raise SourceNotFoundError(
            f"{str(source)!r} is a file; images() expects a folder with one sub-folder of images per class.")
    root = root.absolute()
    found: dict[str, list[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        names = []
        for directory, subdirectories, filenames in os.walk(folder):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            for filename in filenames:
                path = Path(directory) / filename
                if _is_image(path):
                    names.append(path.relative_to(root).as_posix())
        if names:
            found[folder.name] = sorted(names)
    if not found:
        loose = [p.name for p in root.iterdir() if p.is_file() and _is_image(p)]
        hint = (f" It holds {len(loose)} image(s) directly; move them into one sub-folder per class."
                if loose else "")
        raise SourceNotFoundError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) found in class sub-folders of {str(source)!r}.{hint}")
    if len(found) < 2:
        only = next(iter(found))
        raise SchemaError(
            f"Only one class ({only!r}) has images in {str(source)!r}; classification needs at least two "
            "class sub-folders (each sub-folder name is a class).")
    class_names = sorted(found)
    files = [(name, code) for code, label in enumerate(class_names) for name in found[label]]
    return root, class_names, files


# ---------------------------------------------------------------- pass 1
def _load(path: str, mode: str, size: tuple[int, int], resize: str) -> np.ndarray:
    """One file as uint8 ``(C, H, W)``; raises ValueError with the reason when it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    if os.path.getsize(path) == 0:
        raise ValueError("empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncated and corrupt data fail here
            image = _convert(image, mode)
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or corrupt format)") from None
    except _ConversionError as error:
        raise ValueError(str(error)) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot decode: {type(error).__name__}: {error}") from None
    image = resize_image(image, size, resize)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class _ConversionError(Exception):
    pass


def _convert(image, mode: str):
    if image.mode == mode:
        return image
    try:
        return image.convert(mode)
    except Exception as error:
        raise _ConversionError(f"cannot convert mode {image.mode!r} to {mode!r}: {error}") from None


def resize_image(image, size: tuple[int, int], resize: str):
    """Resize a Pillow image to ``size`` = (height, width): stretched, or fitted and zero-padded, centred."""
    from PIL import Image

    height, width = size
    resample = Image.Resampling.BILINEAR
    if resize == "stretch":
        return image if image.size == (width, height) else image.resize((width, height), resample=resample)
    w, h = image.size
    scale = min(width / w, height / h)
    new_w = min(width, max(1, round(w * scale)))
    new_h = min(height, max(1, round(h * scale)))
    fitted = image if (new_w, new_h) == (w, h) else image.resize((new_w, new_h), resample=resample)
    canvas = Image.new(image.mode, (width, height), 0)
    canvas.paste(fitted, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def split_keys(relative_paths) -> np.ndarray:
    """Stable 64-bit keys of relative paths (the split is a function of these and the seed)."""
    return pd.util.hash_array(np.asarray(list(relative_paths), dtype=object))


def _decode_task(root: str, staging: str, index: int, start: int, batch: list, options: dict,
                 split_spec: dict) -> dict:
    mode, size, resize = options["mode"], tuple(options["size"]), options["resize"]
    channels = MODES[mode]
    arrays, labels, records, names, rejects = [], [], [], [], []
    for offset, (name, code) in enumerate(batch):
        try:
            arrays.append(_load(os.path.join(root, name), mode, size, resize))
        except ValueError as error:
            rejects.append({"source": name, "record": start + offset, "class": int(code), "reason": str(error)})
            continue
        except OSError as error:  # unreadable: permissions, vanished
            rejects.append({"source": name, "record": start + offset, "class": int(code),
                            "reason": f"cannot read: {error.strerror or error}"})
            continue
        labels.append(code)
        records.append(start + offset)
        names.append(name)
    X = np.stack(arrays) if arrays else np.zeros((0, channels, *size), dtype=np.uint8)
    split = assign_split(split_keys(names), split_spec["seed"], split_spec["validation"], split_spec["test"]) \
        if names else np.zeros(0, dtype=np.uint8)
    np.save(os.path.join(staging, f"X-{index:06d}.npy"), X)
    np.savez(os.path.join(staging, f"meta-{index:06d}.npz"), y=np.asarray(labels, dtype=np.int64),
             record=np.asarray(records, dtype=np.int64), split=split)
    scaled = X.astype(np.float64) / 255.0
    return {
        "index": index,
        "n_files": len(batch),
        "n_valid": len(arrays),
        "n_rejected": len(rejects),
        "rejects": rejects,
        "reasons": Counter(_reason_family(item["reason"]) for item in rejects),
        "sum": scaled.sum(axis=(0, 2, 3)),
        "sum_squares": np.square(scaled).sum(axis=(0, 2, 3)),
        "n_pixels": int(X.shape[0] * X.shape[2] * X.shape[3]),
    }


def _reason_family(reason: str) -> str:
    return reason.split(":", 1)[0]


def _account(n_files: int, results: list[dict]) -> dict:
    read = sum(result["n_files"] for result in results)
    stored = sum(result["n_valid"] for result in results)
    rejected = sum(result["n_rejected"] for result in results)
    if read != n_files or read != stored + rejected:
        raise RuntimeError(  # a bug, never a user error: refuse to write an inconsistent store
            f"bigdl internal error: files listed ({n_files}), read ({read}) != stored ({stored}) "
            f"+ rejected ({rejected}).")
    reasons: Counter = Counter()
    for result in results:
        reasons.update(result["reasons"])
    return {"read": read, "stored": stored, "rejected": rejected, "reasons": dict(reasons)}


def _empty_message(root: Path, accounting: dict, results: list[dict]) -> str:
    examples = [f"{item['source']}: {item['reason']}" for result in results for item in result["rejects"]][:3]
    return (f"All {accounting['read']} image files in {str(root)!r} were rejected, so nothing would be stored. "
            f"First ones: {'; '.join(examples)}.")


def _statistics(results: list[dict], channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of the stored pixels, in [0, 1] units."""
    n = sum(result["n_pixels"] for result in results)
    total = np.sum([result["sum"] for result in results], axis=0)
    squares = np.sum([result["sum_squares"] for result in results], axis=0)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean ** 2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)  # a constant channel: scale 1, never a division by zero
    return [float(v) for v in mean[:channels]], [float(v) for v in std[:channels]]


# ---------------------------------------------------------------- pass 2
def _chunk_jobs(results: list[dict], n_stored: int, chunk_rows: int) -> list[tuple[int, list[tuple]]]:
    """For each store chunk, the (batch, from, to) staged row ranges it holds."""
    starts = np.concatenate([[0], np.cumsum([result["n_valid"] for result in results])])
    jobs = []
    for start in range(0, n_stored, chunk_rows):
        stop = min(start + chunk_rows, n_stored)
        pieces = []
        first = int(np.searchsorted(starts, start, side="right") - 1)
        for batch in range(first, len(results)):
            low, high = max(start, int(starts[batch])), min(stop, int(starts[batch + 1]))
            if int(starts[batch]) >= stop:
                break
            if high > low:
                pieces.append((results[batch]["index"], low - int(starts[batch]), high - int(starts[batch])))
        jobs.append((start, pieces))
    return jobs


def _write_task(root: str, staging: str, start: int, pieces: list[tuple]) -> np.ndarray:
    import zarr

    xs, ys, records, splits = [], [], [], []
    for index, low, high in pieces:
        xs.append(np.load(os.path.join(staging, f"X-{index:06d}.npy"), mmap_mode="r")[low:high])
        with np.load(os.path.join(staging, f"meta-{index:06d}.npz")) as meta:
            ys.append(meta["y"][low:high])
            records.append(meta["record"][low:high])
            splits.append(meta["split"][low:high])
    X = np.concatenate(xs)
    split = np.concatenate(splits)
    stop = start + X.shape[0]
    group = zarr.open_group(root, mode="r+")
    check_whole_chunk(group["X"], start, stop)
    group["X"][start:stop] = X
    group["y"][start:stop] = np.concatenate(ys)
    group["split"][start:stop] = split
    group["record"][start:stop] = np.concatenate(records)
    return np.bincount(split, minlength=3)


def _write_attributes(path: Path, **kwargs) -> None:
    options = kwargs["options"]
    finish_store(
        path, kind="image", accounting=kwargs["accounting"], split_counts=kwargs["split_counts"],
        split={**kwargs["split_spec"], "key": "relative path"},
        task="classification", feature_names=[], target_name="label", class_names=list(kwargs["class_names"]),
        preprocessing={"mode": options["mode"], "size": list(options["size"]), "resize": options["resize"],
                       "resample": RESAMPLE, "mean": kwargs["mean"], "std": kwargs["std"]},
        source={"format": "image-folder", "root": str(kwargs["root"]), "files": kwargs["n_files"]},
        compression="lz4", ingest_seconds=round(kwargs["seconds"], 3),
    )
