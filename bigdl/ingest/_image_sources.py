"""Sources of image ingest: what is read, in which order, with which label.

One resolver per source format, chosen by ``format=`` or sniffed from the
path (a small registry, as xarray picks a backend):

``folder``
    a folder with one sub-folder of image files per class;
``manifest``
    CSV or Parquet tables of ``path,label`` (column names configurable),
    relative paths resolved against the manifest's own folder;
``idx``
    MNIST-format IDX files (``*-images-idx3-ubyte[.gz]``), labels from the
    matching ``*-labels-idx1-ubyte[.gz]`` or ``labels=``;
``npy``
    ``.npy`` image arrays with ``labels=``, or ``.npz`` files holding the
    images and the labels under known keys.

Resolving runs on the client and reads only listings, manifests, headers
and labels.  It returns an :class:`ImageListing`: the class names and a list
of *parts* (a run of files, or a run of rows of one array file), which
:meth:`ImageListing.batches` cuts into picklable batch descriptions that the
decode tasks of :mod:`bigdl.ingest._images` read.  Array files that tasks
cannot slice in place (gzip-compressed, inside a ``.npz``, Fortran-ordered,
or behind a non-local fsspec URL) are first streamed, in bounded memory,
into the store's staging folder by :meth:`ImageListing.localise`, so workers
only ever read local (or shared) files by offset.
"""

from __future__ import annotations

import glob
import gzip
import os
import posixpath
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError

__all__ = ["ImageListing", "resolve_image_source", "IMAGE_SUFFIXES", "SOURCE_FORMATS", "NPZ_KEYS"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SOURCE_FORMATS = ("folder", "manifest", "idx", "npy")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet", ".pq")
# Keys searched, in order, for the images and the labels inside a .npz file.
NPZ_KEYS = {"images": ("x", "X", "images", "image", "data"), "labels": ("y", "Y", "labels", "label", "targets")}
# IDX type codes (the third magic byte) -> big-endian numpy dtypes.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
COPY_BYTES = 16 << 20  # block size when streaming an array file into the staging folder


# ---------------------------------------------------------------- the listing
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
                target = staging / f"source-{number:04d}.raw"
                part.available = _copy_array_data(part, target)
                part.path, part.offset = str(target), 0
                self.staged.append(str(target))

    def batches(self, rows: int) -> list[tuple[int, dict]]:
        """``(first record, batch)`` pairs of at most ``rows`` items each, never spanning two parts."""
        batches, record = [], 0
        for part in self.parts:
            if isinstance(part, FilePart):
                for low in range(0, len(part.items), rows):
                    batches.append((record + low, {"kind": "files", "items": _opaque(part.items[low:low + rows])}))
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


def _opaque(items: list) -> np.ndarray:
    """Items as an object array: Dask walks lists and tuples in task arguments on the client
    (every one of thousands of items per batch), but passes an array through untouched."""
    array = np.empty((len(items), 4), dtype=object)
    if items:
        array[:] = items
    return array


# ---------------------------------------------------------------- paths and URLs
def is_url(text: str) -> bool:
    """True for an fsspec URL other than ``file://`` (which is read as a local path)."""
    return "://" in text and not text.startswith("file://")


def _local(text: str) -> str:
    return text.removeprefix("file://")


def open_binary(location: str):
    """A binary file object for a local path or an fsspec URL."""
    if is_url(location):
        import fsspec

        return fsspec.open(location, "rb").open()
    return open(_local(location), "rb")


def _exists(location: str) -> bool:
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return fs.exists(path)
    return os.path.exists(_local(location))


def _expand(source) -> list[str]:
    """A path, ``file://`` or fsspec URL, possibly a glob -> the matching locations, sorted."""
    text = os.fspath(source)
    if not is_url(text):
        text = str(Path(_local(text)).expanduser())
        if glob.has_magic(text):
            matches = sorted(os.path.abspath(path) for path in glob.glob(text) if not os.path.isdir(path))
            if not matches:
                raise SourceNotFoundError(f"The pattern {text!r} matches no file; check the path and the glob.")
            return matches
        if not os.path.exists(text):
            raise SourceNotFoundError(f"The image source {str(source)!r} does not exist.")
        return [os.path.abspath(text)]
    import fsspec

    fs, path = fsspec.core.url_to_fs(text)
    if glob.has_magic(path):
        matches = sorted(fs.glob(path))
        if not matches:
            raise SourceNotFoundError(f"The pattern {text!r} matches no file; check the URL and the glob.")
    elif not fs.exists(path):
        raise SourceNotFoundError(f"The image source {text!r} does not exist.")
    else:
        matches = [path]
    if any(fs.isdir(match) for match in matches):
        raise SourceError(f"{text!r} is a remote folder; image folders are read from a local or shared file system. "
                          "Describe remote images with a manifest (path,label) instead.")
    return [fs.unstrip_protocol(match) for match in matches]


def _name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _sniff(location: str) -> str | None:
    """The source format of one file by its name, then by its first bytes; None if unknown."""
    name = _name(location).lower()
    if name.endswith(MANIFEST_SUFFIXES):
        return "manifest"
    if name.endswith((".npy", ".npz")):
        return "npy"
    if "idx" in name and "ubyte" in name:
        return "idx"
    try:
        with open_binary(location) as handle:
            head = handle.read(4)
    except OSError:
        return None
    if head[:2] == b"\x1f\x8b":
        try:
            with open_binary(location) as raw, gzip.open(raw) as handle:
                head = handle.read(4)
        except (OSError, EOFError):
            return None
    if head.startswith(b"\x93NUM") or head.startswith(b"PK\x03\x04"):
        return "npy"
    if len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in IDX_TYPES and head[3] >= 1:
        return "idx"
    return None


# ---------------------------------------------------------------- entry point
def resolve_image_source(source, *, format: str | None = None, labels=None, path_column: str = "path",
                         label_column: str = "label", list_folder=None) -> ImageListing:
    """Find the items of ``source`` and their labels (on the client).

    ``list_folder`` lists a local folder of class sub-folders (it lives with
    the folder reader in :mod:`bigdl.ingest._images`).
    """
    if format is not None and format not in SOURCE_FORMATS:
        raise SchemaError(f"The 'format' parameter of images must be one of {SOURCE_FORMATS}; got {format!r}.")
    if isinstance(source, (list, tuple)):
        raise SchemaError("images() takes one source: a folder, a manifest, an IDX or .npy/.npz file, or a glob "
                          "of manifests/arrays such as 'data/part-*.csv'.")
    text = os.fspath(source)
    local = _local(text)
    if not is_url(text) and not glob.has_magic(local) and os.path.isdir(os.path.expanduser(local)):
        if format not in (None, "folder"):
            raise SchemaError(f"{text!r} is a folder; format={format!r} needs a file (or a glob of files).")
        if labels is not None:
            raise SchemaError("labels= is for IDX and .npy sources; a folder's labels are its sub-folder names.")
        return _folder_listing(os.path.expanduser(local), list_folder)
    locations = _expand(source)
    found = {location: format or _sniff(location) for location in locations}
    unknown = [location for location, kind in found.items() if kind is None]
    if unknown:
        raise SourceError(
            f"Cannot tell what {unknown[0]!r} is: images() reads a folder of class sub-folders, a manifest "
            f"({', '.join(MANIFEST_SUFFIXES)}), an IDX file (*-images-idx3-ubyte[.gz]) or .npy/.npz arrays. "
            "Pass format= if the name is unusual.")
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        raise SourceError(f"The source {text!r} mixes formats {kinds}; ingest one format at a time.")
    kind = kinds[0]
    if kind == "folder":
        raise SchemaError(f"format='folder' needs a folder; {text!r} is a file.")
    if kind == "manifest":
        if labels is not None:
            raise SchemaError("labels= is for IDX and .npy sources; a manifest names its label column "
                              "(label_column=).")
        return _manifest_listing(text, locations, path_column, label_column)
    if kind == "idx":
        return _idx_listing(text, locations, labels)
    return _npy_listing(text, locations, labels)


def _folder_listing(root: str, list_folder) -> ImageListing:
    root_path, class_names, files = list_folder(root)
    root = str(root_path)
    items = [(os.path.join(root, name), name, code, None) for name, code in files]
    return ImageListing("image-folder", root_path.name, class_names, [FilePart(items)],
                        {"format": "image-folder", "root": str(root_path), "files": len(files)}, "relative path")


# ---------------------------------------------------------------- labels -> class codes
def _class_codes(values: np.ndarray, where: str) -> tuple[list[str], np.ndarray]:
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


# ---------------------------------------------------------------- manifests
def _read_manifest(location: str) -> pd.DataFrame:
    name = _name(location).lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(location if is_url(location) else _local(location))
        separator = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        return pd.read_csv(location if is_url(location) else _local(location), sep=separator, dtype=str,
                           keep_default_na=False, na_values=[""])
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise SourceError(f"The manifest {location!r} cannot be read: {type(error).__name__}: {error}") from None


def _resolve_entry(entry: str, base: str, url_base: bool) -> str:
    if is_url(entry) or entry.startswith("file://"):
        return _local(entry)
    if url_base:
        protocol, path = f"{base}/{entry}".split("://", 1)
        return f"{protocol}://{posixpath.normpath(path)}"
    return entry if os.path.isabs(entry) else os.path.normpath(os.path.join(base, entry))


def _manifest_listing(text: str, locations: list[str], path_column: str, label_column: str) -> ImageListing:
    frames = []
    for location in locations:
        frame = _read_manifest(location)
        missing = [column for column in (path_column, label_column) if column not in frame.columns]
        if missing:
            raise SchemaError(
                f"The manifest {location!r} has no column {missing[0]!r} (columns: {list(frame.columns)}); "
                "pass path_column= and label_column= to name the path and label columns.")
        url_base = is_url(location)
        base = location.rsplit("/", 1)[0] if url_base else os.path.dirname(os.path.abspath(_local(location)))
        entries = frame[path_column].astype(object).to_numpy()
        frames.append((location, [None if pd.isna(value) or str(value).strip() == "" else str(value).strip()
                                  for value in entries],
                       frame[label_column].to_numpy(dtype=object), base, url_base))
    if not any(len(entries) for _, entries, _, _, _ in frames):
        raise SourceNotFoundError(f"The manifest {text!r} lists no images (no rows).")
    all_labels = np.concatenate([values for _, _, values, _, _ in frames])
    present = pd.notna(all_labels) & (pd.Series(all_labels).astype(str).str.strip() != "").to_numpy()
    class_names, known_codes = _class_codes(all_labels[present], repr(text))
    codes = np.full(len(all_labels), -1, dtype=np.int64)
    codes[present] = known_codes
    items, position = [], 0
    for location, entries, _, base, url_base in frames:
        for entry in entries:
            code = int(codes[position])
            where = f"{_name(location)} row {position + 1}"
            if entry is None:
                items.append((None, where, code, "missing path in the manifest"))
            elif code < 0:
                items.append((None, entry, code, "missing label in the manifest"))
            else:
                items.append((_resolve_entry(entry, base, url_base), entry, code, None))
            position += 1
    return ImageListing("manifest", _name(locations[0]), class_names, [FilePart(items)],
                        {"format": "manifest", "manifests": locations, "files": len(items)},
                        "the path as written in the manifest")


# ---------------------------------------------------------------- array files
def _open_maybe_gzip(location: str):
    """(file object, is gzip) for a path or URL; gzip is recognised by its magic bytes."""
    handle = open_binary(location)
    head = handle.read(2)
    handle.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle, mode="rb"), True
    return handle, False


def _read_idx_header(handle, location: str) -> tuple[str, tuple[int, ...], int]:
    head = handle.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_TYPES or head[3] < 1:
        raise SourceError(f"{location!r} is not an IDX file: its magic number is 0x{head.hex() or 'empty'} "
                          "(expected 0x00000803 for images, 0x00000801 for labels).")
    ndim = head[3]
    raw = handle.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise SourceError(f"{location!r}: the IDX header is truncated ({ndim} dimensions announced).")
    return IDX_TYPES[head[2]], struct.unpack(f">{ndim}I", raw), 4 + 4 * ndim


def read_idx(location: str) -> np.ndarray:
    """A whole IDX file (labels, small) as a numpy array in native byte order."""
    handle, _ = _open_maybe_gzip(location)
    with handle:
        dtype, shape, _ = _read_idx_header(handle, location)
        count = int(np.prod(shape))
        data = handle.read(count * np.dtype(dtype).itemsize)
    if len(data) < count * np.dtype(dtype).itemsize:
        raise SourceError(f"{location!r} is truncated: its header announces {count} values, the file holds "
                          f"{len(data) // np.dtype(dtype).itemsize}.")
    return np.frombuffer(data, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="), copy=False).reshape(shape)


def _labels_file_for(location: str) -> str:
    name = _name(location)
    renamed = re.sub(r"images([-.])idx3", r"labels\1idx1", name)
    if renamed == name:
        raise SchemaError(f"Cannot guess the labels file of {location!r} (its name does not follow the MNIST "
                          "convention '*-images-idx3-ubyte'); pass labels='path/to/labels-idx1-ubyte'.")
    folder = location[: len(location) - len(name)]
    stem = renamed.removesuffix(".gz")
    tried = [folder + candidate for candidate in dict.fromkeys((renamed, stem + ".gz", stem))]
    for candidate in tried:
        if _exists(candidate):
            return candidate
    raise SchemaError(f"No labels file for {location!r}: tried {tried}. Pass labels= with its path.")


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


def _array_part(location: str, dtype: str, shape: tuple, offset: int, codes: np.ndarray, stage: str | None,
                available: int | None) -> ArrayPart:
    _check_pixels(dtype, location)
    if len(codes) != shape[0]:
        raise SchemaError(f"{location!r} holds {shape[0]} images but its labels hold {len(codes)} values; "
                          "they must match one to one.")
    return ArrayPart(_name(location), location, location, offset, dtype, tuple(int(v) for v in shape),
                     _layout(shape, location), codes, stage, available)


def _finish_arrays(text: str, fmt: str, parts: list[ArrayPart], all_labels: list[np.ndarray],
                   description: dict) -> ImageListing:
    class_names, codes = _class_codes(np.concatenate(all_labels), repr(text))
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


def _idx_listing(text: str, locations: list[str], labels) -> ImageListing:
    headers = {}
    for location in locations:
        handle, compressed = _open_maybe_gzip(location)
        with handle:
            headers[location] = (*_read_idx_header(handle, location), compressed)
    images = [location for location, header in headers.items() if len(header[1]) >= 3]
    if not images:
        raise SourceNotFoundError(f"{text!r} holds no IDX images file (3 or more dimensions), only labels.")
    if labels is not None and len(images) > 1:
        raise SchemaError(f"labels= names one labels file, but {text!r} matches {len(images)} images files; "
                          "let each find its own '*-labels-idx1-ubyte' file instead.")
    parts, all_labels, label_files = [], [], []
    for location in images:
        dtype, shape, offset, compressed = headers[location]
        if labels is not None:
            labels_location = _local(os.fspath(labels)) if not is_url(os.fspath(labels)) else os.fspath(labels)
        else:
            labels_location = _labels_file_for(location)
        values = read_idx(labels_location)
        if values.ndim != 1:
            raise SchemaError(f"The labels file {labels_location!r} has {values.ndim} dimensions; expected 1.")
        available = None
        stage = "gzip" if compressed else ("remote" if is_url(location) else None)
        if stage is None:
            rows = (os.path.getsize(_local(location)) - offset) // (np.dtype(dtype).itemsize
                                                                     * int(np.prod(shape[1:])))
            available = min(int(shape[0]), int(rows))
        parts.append(_array_part(location, dtype, shape, offset, values, stage, available))
        all_labels.append(values)
        label_files.append(labels_location)
    return _finish_arrays(text, "idx", parts, all_labels,
                          {"format": "idx", "files": images, "labels": label_files,
                           "images": sum(part.n for part in parts)})


def _read_npy_header(handle, location: str) -> tuple[str, tuple, bool, int]:
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran_order, dtype = reader(handle)
    except ValueError as error:
        raise SourceError(f"{location!r} is not a readable .npy array: {error}") from None
    return dtype.str, tuple(shape), bool(fortran_order), handle.tell()


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


def _npy_listing(text: str, locations: list[str], labels) -> ImageListing:
    if labels is not None and len(locations) > 1:
        raise SchemaError(f"labels= fits one images array, but {text!r} matches {len(locations)} files; use .npz "
                          "files that each hold their images and labels.")
    parts, all_labels = [], []
    for location in locations:
        if _name(location).lower().endswith(".npz"):
            part, values = _npz_part(location, labels)
        else:
            if labels is None:
                raise SchemaError(f"{location!r} holds images only; pass labels= (an array or a .npy file, one "
                                  "label per image), or use a .npz with the images and the labels.")
            values = _load_labels(labels, location)
            with open_binary(location) as handle:
                dtype, shape, fortran_order, offset = _read_npy_header(handle, location)
            if fortran_order and is_url(location):
                raise SchemaError(f"{location!r} is a Fortran-ordered array behind a URL; save it in C order "
                                  "(np.save(path, np.ascontiguousarray(x))) or copy it to a local path.")
            stage = "fortran order" if fortran_order else ("remote" if is_url(location) else None)
            available = None
            if stage is None:
                rows = (os.path.getsize(_local(location)) - offset) // max(
                    1, np.dtype(dtype).itemsize * int(np.prod(shape[1:])))
                available = min(int(shape[0]), int(rows))
            part = _array_part(location, dtype, shape, offset, values, stage, available)
        parts.append(part)
        all_labels.append(values)
    return _finish_arrays(text, "npy", parts, all_labels,
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
                dtype, shape, _, _ = _read_npy_header(handle, location)
    if values.ndim != 1:
        raise SchemaError(f"The labels {found['labels']!r} of {location!r} must be 1-D; got shape {values.shape}.")
    part = _array_part(location, dtype, shape, 0, values, f"npz:{found['images']}", None)
    return part, values


def _copy_array_data(part: ArrayPart, target: Path) -> int:
    """Stream the pixel data of ``part`` into ``target`` as C-ordered rows; returns the rows copied.

    A truncated source (a cut gzip stream, a short file) copies the rows it
    holds; the rest are rejected by the decode tasks, so counts still add up.
    """
    row_bytes = np.dtype(part.dtype).itemsize * int(np.prod(part.shape[1:]))
    written = 0
    with open(target, "wb") as out:
        if part.stage == "fortran order":
            # Rows of a Fortran-ordered array are strided: re-lay them out block by block.
            array = np.load(_local(part.location), mmap_mode="r")
            step = max(1, COPY_BYTES // max(row_bytes, 1))
            for low in range(0, part.n, step):
                out.write(np.ascontiguousarray(array[low:low + step]).tobytes())
            return part.n
        if part.stage.startswith("npz:"):
            raw = open_binary(part.location)
            archive = zipfile.ZipFile(raw)
            handle = archive.open(part.stage.removeprefix("npz:") + ".npy")
            _read_npy_header(handle, part.location)
            closers = [handle, archive, raw]
        else:
            handle, _ = _open_maybe_gzip(part.location)
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

