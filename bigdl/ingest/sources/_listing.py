"""What an image source resolves to: an :class:`ImageListing` of parts, and the array-file helpers.

Resolving a source runs on the client and reads only listings, manifests,
headers and labels.  It returns an :class:`ImageListing`: the class names
and a list of *parts* (a run of files, or a run of rows of one array file),
which :meth:`ImageListing.batches` cuts into picklable batch descriptions
that the decode tasks of :mod:`bigdl.ingest._images` read.  Array files
that tasks cannot slice in place (gzip-compressed, inside a ``.npz``,
Fortran-ordered, or behind a non-local fsspec URL) are first streamed, in
bounded memory, into the store's staging folder by
:meth:`ImageListing.localise`, so workers only ever read local (or shared)
files by offset.
"""

from __future__ import annotations

import gzip
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bigdl.errors import SchemaError, SourceError
from bigdl.ingest.sources._paths import file_name, local_path, open_binary
from bigdl.store._location import filesystem, is_remote, join

__all__ = ["FilePart", "ArrayPart", "ImageListing", "class_codes", "open_maybe_gzip", "array_part", "finish_arrays",
           "read_npy_header", "copy_array_data", "open_location"]


COPY_BYTES = 16 << 20  # block size when streaming an array file into the staging folder


@dataclass
class FilePart:
    """Image files: ``(location, key, class code, reason or None)`` per item, in record order.

    ``key`` names the item in rejects and seeds its split; ``reason`` set at
    listing time (a manifest row without a path) rejects it without reading.
    """

    items: list


@dataclass
class ArrayPart:
    """Rows of one image array file: ``(n, H, W)``, ``(n, H, W, C)`` or ``(n, C, H, W)``."""

    name: str  # the file's name: split keys are "<name>:<row>"
    location: str  # where the source is (path or URL)
    path: str  # what decode tasks read by offset (``location``, or its copy in the staging folder)
    offset: int
    dtype: str
    shape: tuple
    layout: str  # "HW", "HWC" or "CHW"
    codes: np.ndarray
    stage: str | None = None  # why it must be copied before tasks can read it ("gzip", "npz:<key>", ...)
    available: int | None = None  # rows present in the file (fewer than shape[0] when truncated)

    @property
    def n(self) -> int:
        return int(self.shape[0])

    @property
    def channels(self) -> int:
        return {"HW": 1, "HWC": self.shape[-1], "CHW": self.shape[1]}[self.layout]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.shape[2:4]) if self.layout == "CHW" else tuple(self.shape[1:3])


@dataclass
class ImageListing:
    """What resolving a source found: format, class names and parts, in record order."""

    format: str
    name: str  # short name for progress bars
    class_names: list[str]
    parts: list
    description: dict  # the store's ``source`` attribute
    split_key: str  # what a sample's split is a hash of, in words
    native: tuple | None = None  # (channels, (height, width)) of array sources
    staged: list = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return sum(len(part.items) if isinstance(part, FilePart) else part.n for part in self.parts)

    def localise(self, staging: Path) -> None:
        """Copy the array files tasks cannot slice in place into ``staging`` (on the client)."""
        for number, part in enumerate(self.parts):
            if isinstance(part, ArrayPart) and part.stage is not None:
                target = join(str(staging), f"source-{number:04d}.raw")  # a local folder or a prefix
                part.available = copy_array_data(part, target)
                part.path, part.offset = str(target), 0
                self.staged.append(str(target))

    def batches(self, rows: int) -> list[tuple[int, dict]]:
        """``(first record, batch)`` pairs of at most ``rows`` items each, never spanning two parts."""
        batches, record = [], 0
        for part in self.parts:
            if isinstance(part, FilePart):
                for low in range(0, len(part.items), rows):
                    batches.append((record + low, {"kind": "files", "items": opaque(part.items[low:low + rows])}))
                record += len(part.items)
                continue
            for low in range(0, part.n, rows):
                high = min(low + rows, part.n)
                batches.append((record + low, {
                    "kind": "array", "name": part.name, "path": part.path, "offset": part.offset,
                    "dtype": part.dtype, "shape": tuple(part.shape), "layout": part.layout,
                    "low": low, "high": high, "available": part.available, "codes": part.codes[low:high],
                }))
            record += part.n
        return batches


def opaque(items: list) -> np.ndarray:
    """Items as an object array: Dask walks lists and tuples in task arguments on the client
    (every one of thousands of items per batch), but passes an array through untouched."""
    array = np.empty((len(items), 4), dtype=object)
    if items:
        array[:] = items
    return array


def class_codes(values: np.ndarray, where: str) -> tuple[list[str], np.ndarray]:
    """Sorted class names and the code of each value; integer labels sort as numbers (2 before 10)."""
    series = pd.Series(values)
    numeric = pd.to_numeric(series, errors="coerce")
    if len(series) and numeric.notna().all() and (numeric == numeric.round()).all():
        ordered = np.unique(numeric.to_numpy(dtype=np.int64))
        names = [str(int(value)) for value in ordered]
        codes = np.searchsorted(ordered, numeric.to_numpy(dtype=np.int64))
    else:
        text = series.astype(str).to_numpy(dtype=object)
        ordered = np.unique(text)
        names = [str(value) for value in ordered]
        codes = np.searchsorted(ordered, text)
    if len(names) < 2:
        raise SchemaError(f"Only one class ({names[0] if names else 'none'!r}) in the labels of {where}; "
                          "classification needs at least two classes.")
    return names, codes.astype(np.int64)


def open_maybe_gzip(location: str):
    """(file object, is gzip) for a path or URL; gzip is recognised by its magic bytes."""
    handle = open_binary(location)
    head = handle.read(2)
    handle.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle, mode="rb"), True
    return handle, False


def _layout(shape: tuple, location: str) -> str:
    if len(shape) == 3:
        return "HW"
    if len(shape) == 4 and shape[3] in (1, 3, 4):
        return "HWC"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "CHW"
    raise SchemaError(
        f"{location!r} holds an array of shape {tuple(shape)}; images must be (n, height, width), "
        "(n, height, width, channels) with 1, 3 or 4 channels, or (n, channels, height, width) with 1 or 3.")


def _check_pixels(dtype: str, location: str) -> None:
    kind = np.dtype(dtype).kind
    if kind not in "ui":
        hint = " Scale floats in [0, 1] with (x * 255).round().astype(np.uint8)." if kind == "f" else ""
        raise SchemaError(f"{location!r} holds {np.dtype(dtype)} pixels; images() stores uint8 pixels "
                          f"(integers 0..255).{hint}")


def array_part(location: str, dtype: str, shape: tuple, offset: int, codes: np.ndarray, stage: str | None,
                available: int | None) -> ArrayPart:
    """An :class:`ArrayPart` of an array file, its pixel type and label count checked."""
    _check_pixels(dtype, location)
    if len(codes) != shape[0]:
        raise SchemaError(f"{location!r} holds {shape[0]} images but its labels hold {len(codes)} values; "
                          "they must match one to one.")
    return ArrayPart(file_name(location), location, location, offset, dtype, tuple(int(v) for v in shape),
                     _layout(shape, location), codes, stage, available)


def finish_arrays(text: str, fmt: str, parts: list[ArrayPart], all_labels: list[np.ndarray],
                   description: dict) -> ImageListing:
    """The listing of array parts: class codes over all labels, one image size for all parts."""
    class_names, codes = class_codes(np.concatenate(all_labels), repr(text))
    position = 0
    for part in parts:
        part.codes = codes[position:position + part.n]
        position += part.n
    sizes = {(part.channels, part.image_size) for part in parts}
    if len(sizes) > 1:
        raise SchemaError(f"The arrays of {text!r} differ in channels or size ({sorted(sizes)}); "
                          "ingest them separately.")
    return ImageListing(fmt, parts[0].name, class_names, parts, description, "the file name and row index",
                        native=next(iter(sizes)))


def read_npy_header(handle, location: str) -> tuple[str, tuple, bool, int]:
    """``(dtype, shape, fortran_order, data offset)`` of a ``.npy`` stream."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran_order, dtype = reader(handle)
    except ValueError as error:
        raise SourceError(f"{location!r} is not a readable .npy array: {error}") from None
    return dtype.str, tuple(shape), bool(fortran_order), handle.tell()


def open_location(path: str, mode: str):
    """A local file or an fsspec URL opened as a binary file (streamed: no whole copy in memory)."""
    if not is_remote(path):
        return open(path, mode)
    fs, inner = filesystem(path)
    return fs.open(inner, mode)


def copy_array_data(part: ArrayPart, target: str) -> int:
    """Stream the pixel data of ``part`` into ``target`` as C-ordered rows; returns the rows copied.

    A truncated source (a cut gzip stream, a short file) copies the rows it
    holds; the rest are rejected by the decode tasks, so counts still add up.
    """
    row_bytes = np.dtype(part.dtype).itemsize * int(np.prod(part.shape[1:]))
    written = 0
    with open_location(target, "wb") as out:
        if part.stage == "fortran order":
            # Rows of a Fortran-ordered array are strided: re-lay them out block by block.
            array = np.load(local_path(part.location), mmap_mode="r")
            step = max(1, COPY_BYTES // max(row_bytes, 1))
            for low in range(0, part.n, step):
                out.write(np.ascontiguousarray(array[low:low + step]).tobytes())
            return part.n
        if part.stage.startswith("npz:"):
            raw = open_binary(part.location)
            archive = zipfile.ZipFile(raw)
            handle = archive.open(part.stage.removeprefix("npz:") + ".npy")
            read_npy_header(handle, part.location)
            closers = [handle, archive, raw]
        else:
            handle, _ = open_maybe_gzip(part.location)
            handle.read(part.offset)  # the header; gzip streams cannot seek cheaply
            closers = [handle]
        try:
            try:
                wanted = part.n * row_bytes
                # read1 hands over what is decompressed so far, so a cut stream loses only its tail.
                read = getattr(handle, "read1", handle.read)
                while written < wanted:
                    block = read(min(COPY_BYTES, wanted - written))
                    if not block:
                        break
                    out.write(block)
                    written += len(block)
            except (EOFError, OSError, zipfile.BadZipFile):
                pass  # truncated input: keep the whole rows copied so far
        finally:
            for closer in closers:
                closer.close()
    return written // row_bytes if row_bytes else part.n
