"""MNIST-format IDX files: headers, labels files found by the MNIST naming convention."""

from __future__ import annotations

import os
import re
import struct

import numpy as np

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError
from bigdl.ingest.sources._listing import ImageListing, array_part, finish_arrays, open_maybe_gzip
from bigdl.ingest.sources._paths import exists, file_name, is_url, local_path

__all__ = ["IDX_TYPES", "read_idx", "idx_listing"]


# IDX type codes (the third magic byte) -> big-endian numpy dtypes.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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
    handle, _ = open_maybe_gzip(location)
    with handle:
        dtype, shape, _ = _read_idx_header(handle, location)
        count = int(np.prod(shape))
        data = handle.read(count * np.dtype(dtype).itemsize)
    if len(data) < count * np.dtype(dtype).itemsize:
        raise SourceError(f"{location!r} is truncated: its header announces {count} values, the file holds "
                          f"{len(data) // np.dtype(dtype).itemsize}.")
    return np.frombuffer(data, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="), copy=False).reshape(shape)


def _labels_file_for(location: str) -> str:
    name = file_name(location)
    renamed = re.sub(r"images([-.])idx3", r"labels\1idx1", name)
    if renamed == name:
        raise SchemaError(f"Cannot guess the labels file of {location!r} (its name does not follow the MNIST "
                          "convention '*-images-idx3-ubyte'); pass labels='path/to/labels-idx1-ubyte'.")
    folder = location[: len(location) - len(name)]
    stem = renamed.removesuffix(".gz")
    tried = [folder + candidate for candidate in dict.fromkeys((renamed, stem + ".gz", stem))]
    for candidate in tried:
        if exists(candidate):
            return candidate
    raise SchemaError(f"No labels file for {location!r}: tried {tried}. Pass labels= with its path.")


def idx_listing(text: str, locations: list[str], labels) -> ImageListing:
    """The images of IDX files with their labels files: one array part per images file."""
    headers = {}
    for location in locations:
        handle, compressed = open_maybe_gzip(location)
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
            labels_location = local_path(os.fspath(labels)) if not is_url(os.fspath(labels)) else os.fspath(labels)
        else:
            labels_location = _labels_file_for(location)
        values = read_idx(labels_location)
        if values.ndim != 1:
            raise SchemaError(f"The labels file {labels_location!r} has {values.ndim} dimensions; expected 1.")
        available = None
        stage = "gzip" if compressed else ("remote" if is_url(location) else None)
        if stage is None:
            rows = (os.path.getsize(local_path(location)) - offset) // (np.dtype(dtype).itemsize
                                                                     * int(np.prod(shape[1:])))
            available = min(int(shape[0]), int(rows))
        parts.append(array_part(location, dtype, shape, offset, values, stage, available))
        all_labels.append(values)
        label_files.append(labels_location)
    return finish_arrays(text, "idx", parts, all_labels,
                          {"format": "idx", "files": images, "labels": label_files,
                           "images": sum(part.n for part in parts)})
