"""NumPy ``.npy``/``.npz`` files: image arrays with their labels, and a series read as rows.

Image ingest lists ``.npy`` images with ``labels=`` (or ``.npz`` files
holding both) as array parts read by offset; sequence ingest reads one
``.npy`` series as row blocks whose columns are its channels.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pyarrow as pa

from bigdl.errors import SchemaError, SourceError
from bigdl.ingest.sources._blocks import Block, RawBlock, SourcePlan
from bigdl.ingest.sources._listing import ArrayPart, ImageListing, array_part, finish_arrays, read_npy_header
from bigdl.ingest.sources._paths import file_name, is_url, local_path, open_binary

__all__ = ["NPZ_KEYS", "npy_listing", "plan_npy", "read_npy_block"]


# Keys searched, in order, for the images and the labels inside a .npz file.
NPZ_KEYS = {"images": ("x", "X", "images", "image", "data"), "labels": ("y", "Y", "labels", "label", "targets")}


def _load_labels(labels, location: str) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        path = os.fspath(labels)
        try:
            with open_binary(path) as handle:
                values = np.load(handle, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise SourceError(f"labels={path!r} cannot be read as a .npy array: {error}") from None
    else:
        values = np.asarray(labels)
    if values.ndim != 1:
        raise SchemaError(f"The labels of {location!r} must be one value per image (1-D); got shape {values.shape}.")
    return values


def npy_listing(text: str, locations: list[str], labels) -> ImageListing:
    """The images of ``.npy`` (with ``labels=``) or ``.npz`` files: one array part per file."""
    if labels is not None and len(locations) > 1:
        raise SchemaError(f"labels= fits one images array, but {text!r} matches {len(locations)} files; use .npz "
                          "files that each hold their images and labels.")
    parts, all_labels = [], []
    for location in locations:
        if file_name(location).lower().endswith(".npz"):
            part, values = _npz_part(location, labels)
        else:
            if labels is None:
                raise SchemaError(f"{location!r} holds images only; pass labels= (an array or a .npy file, one "
                                  "label per image), or use a .npz with the images and the labels.")
            values = _load_labels(labels, location)
            with open_binary(location) as handle:
                dtype, shape, fortran_order, offset = read_npy_header(handle, location)
            if fortran_order and is_url(location):
                raise SchemaError(f"{location!r} is a Fortran-ordered array behind a URL; save it in C order "
                                  "(np.save(path, np.ascontiguousarray(x))) or copy it to a local path.")
            stage = "fortran order" if fortran_order else ("remote" if is_url(location) else None)
            available = None
            if stage is None:
                rows = (os.path.getsize(local_path(location)) - offset) // max(
                    1, np.dtype(dtype).itemsize * int(np.prod(shape[1:])))
                available = min(int(shape[0]), int(rows))
            part = array_part(location, dtype, shape, offset, values, stage, available)
        parts.append(part)
        all_labels.append(values)
    return finish_arrays(text, "npy", parts, all_labels,
                          {"format": "npy", "files": locations, "images": sum(part.n for part in parts)})


def _npz_part(location: str, labels) -> tuple[ArrayPart, np.ndarray]:
    if labels is not None:
        raise SchemaError(f"{location!r} is a .npz: its labels are read from it; leave labels= out.")
    with open_binary(location) as raw:
        try:
            archive = zipfile.ZipFile(raw)
        except zipfile.BadZipFile as error:
            raise SourceError(f"{location!r} is not a readable .npz file: {error}") from None
        with archive:
            keys = [name.removesuffix(".npy") for name in archive.namelist()]
            found = {}
            for role, candidates in NPZ_KEYS.items():
                match = next((key for key in candidates if key in keys), None)
                if match is None:
                    raise SchemaError(f"{location!r} holds the arrays {keys}; images() looks for the images under "
                                      f"one of {NPZ_KEYS['images']} and the labels under one of {NPZ_KEYS['labels']}.")
                found[role] = match
            with archive.open(found["labels"] + ".npy") as handle:
                values = np.lib.format.read_array(handle, allow_pickle=False)
            with archive.open(found["images"] + ".npy") as handle:
                dtype, shape, _, _ = read_npy_header(handle, location)
    if values.ndim != 1:
        raise SchemaError(f"The labels {found['labels']!r} of {location!r} must be 1-D; got shape {values.shape}.")
    part = array_part(location, dtype, shape, 0, values, f"npz:{found['images']}", None)
    return part, values

# ---------------------------------------------------------------- a series as rows (sequence ingest)
def plan_npy(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    """One ``.npy`` series ``(n_steps,)`` or ``(n_steps, n_channels)`` as row-range blocks, columns ``x0, x1...``."""
    if len(paths) > 1:
        raise SchemaError(f"A .npy source is one series; got {len(paths)} files. Ingest them one at a time.")
    path = paths[0]
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise SourceError(f"{path!r} is not a readable .npy array ({error}).") from None
    if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number):
        raise SourceError(f"{path!r} holds a {array.dtype} array of shape {array.shape}; sequences() needs "
                          "numbers of shape (n_steps,) or (n_steps, n_channels).")
    n_channels = 1 if array.ndim == 1 else array.shape[1]
    rows = max(1, blocksize // max(1, array.itemsize * n_channels))
    blocks = [Block(index, path, "npy", start, min(start + rows, len(array)), first=start == 0)
              for index, start in enumerate(range(0, len(array), rows))]
    columns = [f"x{index}" for index in range(n_channels)]
    return SourcePlan("npy", [path], columns, pa.table({name: pa.array([], pa.float64()) for name in columns}),
                      blocks, dict(options, shape=list(array.shape)))


def read_npy_block(block: Block, columns: list[str]) -> RawBlock:
    """Rows ``start:stop`` of a ``.npy`` series as float64 columns (memory-mapped: only these rows are read)."""
    array = np.load(block.path, mmap_mode="r")[block.start:block.stop]
    array = np.asarray(array, dtype=np.float64).reshape(len(array), -1)
    table = pa.table({f"x{index}": array[:, index] for index in range(array.shape[1])})
    n = table.num_rows
    return RawBlock(table.select(columns), np.arange(n, dtype=np.int64), n, 0)

