"""The registries of source formats: each format by name, or sniffed from a file's name or first bytes.

Two families, as xarray keeps one backend per engine:

- **row formats** (tabular and sequence ingest): ``csv``, ``jsonl``,
  ``parquet``, ``sql`` and ``npy`` (one series); each is planned into
  :class:`~bigdl.ingest.sources.Block` s on the client and read one block per
  task by :func:`read_block`;
- **image formats**: ``folder``, ``manifest``, ``idx`` and ``npy``; each
  resolves to an :class:`~bigdl.ingest.sources.ImageListing` on the client.

Adding a format is one module with its planning and reading functions and
one entry here.
"""

from __future__ import annotations

import glob
import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from bigdl._validation import Options, check_params
from bigdl.errors import SchemaError, SourceError
from bigdl.ingest.sources import _csv, _folder, _idx, _jsonl, _manifest, _npy, _parquet, _sql
from bigdl.ingest.sources._blocks import Block, RawBlock, SourcePlan
from bigdl.ingest.sources._listing import ImageListing
from bigdl.ingest.sources._paths import expand_paths, file_name, is_url, local_path, open_binary

__all__ = ["RowFormat", "ROW_FORMATS", "FORMATS", "plan_sources", "read_block", "sniff_row_format",
           "IMAGE_FORMATS", "SOURCE_FORMATS", "resolve_image_source", "sniff_image_format"]


@dataclass(frozen=True)
class RowFormat:
    """A row format: how to plan files into blocks, and how a task reads one block.

    ``plan(paths, blocksize, options) -> SourcePlan`` runs on the client;
    ``read(block, columns, types, options) -> RawBlock`` runs in a read task.
    ``in_folders``: whether a folder's files of this format are inputs.
    """

    name: str
    suffixes: tuple[str, ...]
    plan: Callable
    read: Callable
    in_folders: bool = True


ROW_FORMATS: dict[str, RowFormat] = {
    "csv": RowFormat("csv", _csv.SUFFIXES, _csv.plan_csv,
                     lambda block, columns, types, options: _csv.read_csv_block(block, columns, types, options, False)),
    "jsonl": RowFormat("jsonl", _jsonl.SUFFIXES, _jsonl.plan_jsonl,
                       lambda block, columns, types, options: _jsonl.read_jsonl_block(block, columns, types, options)),
    "parquet": RowFormat("parquet", _parquet.SUFFIXES, _parquet.plan_parquet,
                         lambda block, columns, types, options: _parquet.read_parquet_block(block, columns)),
    "sql": RowFormat("sql", (), None, lambda block, columns, types, options: _sql.read_sql_block(block, columns,
                                                                                                options)),
    # A series, not a table: only named files, never picked up from a folder of tables.
    "npy": RowFormat("npy", (".npy",), _npy.plan_npy,
                     lambda block, columns, types, options: _npy.read_npy_block(block, columns), in_folders=False),
}
FORMATS = tuple(ROW_FORMATS)


def sniff_row_format(path: str, default: str | None = "csv") -> str | None:
    """The row format of a file by its name (``.gz`` aside), or ``default``.

    Parameters
    ----------
    path : str
    default : str or None, default "csv"

    Returns
    -------
    str or None
        A key of :data:`ROW_FORMATS`, or ``default``.
    """
    name = path.lower()
    for suffix in (".gz", ".gzip"):
        name = name.removesuffix(suffix)
    for fmt in ROW_FORMATS.values():
        if fmt.suffixes and name.endswith(fmt.suffixes):
            return fmt.name
    return default


def _in_folders(name: str) -> bool:
    fmt = sniff_row_format(name, default=None)
    return fmt is not None and ROW_FORMATS[fmt].in_folders


def plan_sources(source, *, format: str | None = None, table: str | None = None,
                 blocksize: int = 64 << 20, encoding: str = "utf-8", delimiter: str = ",",
                 owner: str = "plan_sources") -> SourcePlan:
    """Resolve ``source`` to files (or a SQL table), check them and cut them into blocks (on the client).

    Parameters
    ----------
    source : str, path or list of them
        Files, globs, folders, ``file://`` URLs, or a SQLAlchemy URL.
    format : str, optional
        One of :data:`FORMATS`; sniffed from the file names when not given.
    table : str, optional
        The table of a SQL source.
    blocksize : int
        Bytes of input per block (gzip files are one block).
    encoding, delimiter : str
        Of text files.
    owner : str, default "plan_sources"
        The ingest function asking (``"tabular"``), named in errors.

    Returns
    -------
    SourcePlan

    Raises
    ------
    ParameterError
        An unknown ``format``.
    SchemaError
        A format that does not fit the source (``"sql"`` without a URL, a URL with another format).
    SourceNotFoundError
        No input matches ``source``.
    """
    check_params(owner, {"format": format}, {"format": [Options(FORMATS), None]})
    options = {"encoding": encoding, "delimiter": delimiter, "table": table}
    if isinstance(source, (str, os.PathLike)) and _sql.is_sql_url(str(source)):
        if format not in (None, "sql"):
            raise SchemaError(f"format={format!r} does not fit the SQL URL {source!r}; use format='sql'.")
        return _sql.plan_sql(str(source), table, blocksize, options)
    paths = expand_paths(source, folder_files=_in_folders)
    fmt = format or sniff_row_format(paths[0])
    formats = {sniff_row_format(path, default=fmt) for path in paths}
    if format is None and len(formats) > 1:
        raise SourceError(f"The inputs mix formats {sorted(formats)}; ingest one format at a time or pass format=.")
    if fmt == "sql":
        raise SchemaError("format='sql' needs a SQLAlchemy URL such as 'sqlite:///data.db' and table=.")
    return ROW_FORMATS[fmt].plan(paths, blocksize, options)


def read_block(block: Block, columns: list[str], types: dict[str, pa.DataType], options: dict) -> RawBlock:
    """Read one block (in a read task): the needed ``columns``, with ``types`` where they convert.

    Parameters
    ----------
    block : Block
        One planned block of one file (or SQL query).
    columns : list of str
        The columns to keep.
    types : dict of str to pyarrow.DataType
        How to parse them.
    options : dict
        The plan's reading options (encoding, delimiter, table...).

    Returns
    -------
    RawBlock
        The parsed rows and the rows that could not be parsed.
    """
    return ROW_FORMATS[block.format].read(block, columns, types, options)


# ---------------------------------------------------------------- image formats
def _manifest_source(text, locations, *, labels, path_column, label_column) -> ImageListing:
    if labels is not None:
        raise SchemaError("labels= is for IDX and .npy sources; a manifest names its label column (label_column=).")
    return _manifest.manifest_listing(text, locations, path_column, label_column)


def _folder_file(text, locations, **_) -> ImageListing:
    raise SchemaError(f"format='folder' needs a folder; {text!r} is a file.")


IMAGE_FORMATS: dict[str, Callable[..., ImageListing]] = {
    "folder": _folder_file,  # a folder itself is resolved before expanding; this is a file given as a folder
    "manifest": _manifest_source,
    "idx": lambda text, locations, *, labels, **_: _idx.idx_listing(text, locations, labels),
    "npy": lambda text, locations, *, labels, **_: _npy.npy_listing(text, locations, labels),
}
SOURCE_FORMATS = tuple(IMAGE_FORMATS)


def sniff_image_format(location: str) -> str | None:
    """The image source format of one file by its name, then by its first bytes.

    Parameters
    ----------
    location : str
        A path or URL.

    Returns
    -------
    str or None
        ``"manifest"``, ``"idx"`` or ``"npy"``; None if unknown.
    """
    name = file_name(location).lower()
    if name.endswith(_manifest.MANIFEST_SUFFIXES):
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
    if len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in _idx.IDX_TYPES and head[3] >= 1:
        return "idx"
    return None


def resolve_image_source(source, *, format: str | None = None, labels=None, path_column: str = "path",
                         label_column: str = "label") -> ImageListing:
    """Find the items of an image ``source`` and their labels (on the client).

    Parameters
    ----------
    source : str or path
        A folder, a manifest, an IDX or .npy/.npz file, or a glob of manifests or arrays.
    format : {"folder", "manifest", "idx", "npy"}, optional
        Skip sniffing.
    labels : array-like or str or path, optional
        The labels of an IDX file or a .npy array.
    path_column, label_column : str, default "path" and "label"
        The columns of a manifest.

    Returns
    -------
    ImageListing

    Raises
    ------
    ParameterError
        An unknown ``format``.
    SchemaError
        A source that does not fit the format, or missing labels.
    """
    check_params("images", {"format": format}, {"format": [Options(SOURCE_FORMATS), None]})
    if isinstance(source, (list, tuple)):
        raise SchemaError("images() takes one source: a folder, a manifest, an IDX or .npy/.npz file, or a glob "
                          "of manifests/arrays such as 'data/part-*.csv'.")
    text = os.fspath(source)
    folder = os.path.expanduser(local_path(text))
    if not is_url(text) and not glob.has_magic(folder) and os.path.isdir(folder):
        if format not in (None, "folder"):
            raise SchemaError(f"{text!r} is a folder; format={format!r} needs a file (or a glob of files).")
        if labels is not None:
            raise SchemaError("labels= is for IDX and .npy sources; a folder's labels are its sub-folder names.")
        return _folder.folder_listing(folder)
    if is_url(text) and not glob.has_magic(text) and _remote_folder(text):
        if format not in (None, "folder"):
            raise SchemaError(f"{text!r} is a folder; format={format!r} needs a file (or a glob of files).")
        if labels is not None:
            raise SchemaError("labels= is for IDX and .npy sources; a folder's labels are its sub-folder names.")
        return _folder.remote_folder_listing(text)
    locations = expand_paths(source)
    found = {location: format or sniff_image_format(location) for location in locations}
    unknown = [location for location, kind in found.items() if kind is None]
    if unknown:
        raise SourceError(
            f"Cannot tell what {unknown[0]!r} is: images() reads a folder of class sub-folders, a manifest "
            f"({', '.join(_manifest.MANIFEST_SUFFIXES)}), an IDX file (*-images-idx3-ubyte[.gz]) or .npy/.npz "
            "arrays. Pass format= if the name is unusual.")
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        raise SourceError(f"The source {text!r} mixes formats {kinds}; ingest one format at a time.")
    return IMAGE_FORMATS[kinds[0]](text, locations, labels=labels, path_column=path_column,
                                   label_column=label_column)


def _remote_folder(url: str) -> bool:
    """Whether an fsspec URL names a folder (a prefix with objects under it) rather than an object."""
    from bigdl.store._location import filesystem

    fs, path = filesystem(url)
    try:
        return fs.isdir(path)
    except OSError:
        return False
