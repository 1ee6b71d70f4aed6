"""Manifests of images: CSV/TSV or Parquet tables of ``path,label``, paths relative to the manifest."""

from __future__ import annotations

import os
import posixpath

import numpy as np
import pandas as pd

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError
from bigdl.ingest.sources._listing import FilePart, ImageListing, class_codes
from bigdl.ingest.sources._paths import file_name, is_url, local_path

__all__ = ["MANIFEST_SUFFIXES", "manifest_listing"]


MANIFEST_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet", ".pq")


def _read_manifest(location: str) -> pd.DataFrame:
    name = file_name(location).lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(location if is_url(location) else local_path(location))
        separator = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        return pd.read_csv(location if is_url(location) else local_path(location), sep=separator, dtype=str,
                           keep_default_na=False, na_values=[""])
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise SourceError(f"The manifest {location!r} cannot be read: {type(error).__name__}: {error}") from None


def _resolve_entry(entry: str, base: str, url_base: bool) -> str:
    if is_url(entry) or entry.startswith("file://"):
        return local_path(entry)
    if url_base:
        protocol, path = f"{base}/{entry}".split("://", 1)
        return f"{protocol}://{posixpath.normpath(path)}"
    return entry if os.path.isabs(entry) else os.path.normpath(os.path.join(base, entry))


def manifest_listing(text: str, locations: list[str], path_column: str, label_column: str) -> ImageListing:
    """The items of one or more manifests: a file part, keys the paths as written."""
    frames = []
    for location in locations:
        frame = _read_manifest(location)
        missing = [column for column in (path_column, label_column) if column not in frame.columns]
        if missing:
            raise SchemaError(
                f"The manifest {location!r} has no column {missing[0]!r} (columns: {list(frame.columns)}); "
                "pass path_column= and label_column= to name the path and label columns.")
        url_base = is_url(location)
        base = location.rsplit("/", 1)[0] if url_base else os.path.dirname(os.path.abspath(local_path(location)))
        entries = frame[path_column].astype(object).to_numpy()
        frames.append((location, [None if pd.isna(value) or str(value).strip() == "" else str(value).strip()
                                  for value in entries],
                       frame[label_column].to_numpy(dtype=object), base, url_base))
    if not any(len(entries) for _, entries, _, _, _ in frames):
        raise SourceNotFoundError(f"The manifest {text!r} lists no images (no rows).")
    all_labels = np.concatenate([values for _, _, values, _, _ in frames])
    present = pd.notna(all_labels) & (pd.Series(all_labels).astype(str).str.strip() != "").to_numpy()
    class_names, known_codes = class_codes(all_labels[present], repr(text))
    codes = np.full(len(all_labels), -1, dtype=np.int64)
    codes[present] = known_codes
    items, position = [], 0
    for location, entries, _, base, url_base in frames:
        for entry in entries:
            code = int(codes[position])
            where = f"{file_name(location)} row {position + 1}"
            if entry is None:
                items.append((None, where, code, "missing path in the manifest"))
            elif code < 0:
                items.append((None, entry, code, "missing label in the manifest"))
            else:
                items.append((_resolve_entry(entry, base, url_base), entry, code, None))
            position += 1
    return ImageListing("manifest", file_name(locations[0]), class_names, [FilePart(items)],
                        {"format": "manifest", "manifests": locations, "files": len(items)},
                        "the path as written in the manifest")
