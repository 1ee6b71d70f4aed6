"""Where inputs are: the one path expander of every ingest source, and local-or-URL file access.

:func:`expand_paths` turns what a user passed (a path, a ``file://`` URL, a
glob, a folder, an fsspec URL, or a list of them) into sorted file
locations, with one rule set for every source kind.  Whether a kind accepts
remote URLs is its own decision, made before expanding
(:func:`refuse_remote`), so each keeps its own message.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

from bigdl.errors import SourceError, SourceNotFoundError

__all__ = ["expand_paths", "refuse_remote", "is_url", "local_path", "open_binary", "exists", "file_name", "file_size",
           "file_stat"]


def is_url(text: str) -> bool:
    """True for an fsspec URL other than ``file://`` (which is read as a local path)."""
    return "://" in text and not text.startswith("file://")


def local_path(text: str) -> str:
    """A local path or ``file://`` URL as a path."""
    return text.removeprefix("file://")


def file_name(location: str) -> str:
    """The last component of a path or URL."""
    return location.rstrip("/").rsplit("/", 1)[-1]


def open_binary(location: str):
    """A binary file object for a local path or an fsspec URL (seekable: ranged reads on object storage)."""
    if is_url(location):
        from bigdl.store._location import filesystem

        fs, path = filesystem(location)
        return fs.open(path, "rb")
    return open(local_path(location), "rb")


def exists(location: str) -> bool:
    """Whether a local path or an fsspec URL exists."""
    if is_url(location):
        from bigdl.store._location import filesystem

        fs, path = filesystem(location)
        return fs.exists(path)
    return os.path.exists(local_path(location))


def file_size(location: str) -> int:
    """Bytes of a local file or of an object behind an fsspec URL."""
    if is_url(location):
        from bigdl.store._location import filesystem

        fs, path = filesystem(location)
        return int(fs.size(path))
    return os.path.getsize(local_path(location))


def file_stat(location: str) -> dict:
    """``bytes`` and ``mtime`` (seconds; an object's last-modified time) of a file, for fingerprints.

    Raises
    ------
    OSError
        The file cannot be found or read.
    """
    if is_url(location):
        from bigdl.store._location import filesystem

        fs, path = filesystem(location)
        info = fs.info(path)
        modified = info.get("LastModified") or info.get("mtime")
        return {"bytes": int(info.get("size") or 0),
                "mtime": modified.timestamp() if hasattr(modified, "timestamp") else modified}
    stat = os.stat(local_path(location))
    return {"bytes": stat.st_size, "mtime": stat.st_mtime}


def refuse_remote(source, message: str) -> None:
    """Raise :class:`SourceError` with ``message`` (a format of ``{url!r}``) for the first remote URL in ``source``."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    for item in items:
        text = os.fspath(item)
        if is_url(text):
            raise SourceError(message.format(url=text))


def expand_paths(source, *, folder_files: Callable[[str], bool] | None = None) -> list[str]:
    """The files ``source`` names, in order: each item's matches sorted, items in the order given.

    Parameters
    ----------
    source : str, path, or list of them
        Local paths (``~`` expanded), ``file://`` URLs, globs (``"data/*.csv"``),
        folders, fsspec URLs (globs allowed, folders not).
    folder_files : callable, optional
        Which file names of a local folder are inputs (hidden files and names
        starting with ``_`` never are).  Without it a folder is refused.

    Returns
    -------
    list of str
        Absolute local paths, and URLs as fsspec writes them.

    Raises
    ------
    SourceNotFoundError
        Nothing given, a path that does not exist, a glob that matches no
        file, a folder holding no input file.
    SourceError
        A folder where none is accepted, or a remote folder.
    """
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise SourceNotFoundError("No input given: pass a file path, a glob such as 'data/*.csv' or a list of paths.")
    paths: list[str] = []
    for item in items:
        text = os.fspath(item)
        paths.extend(_expand_url(text) if is_url(text) else _expand_local(text, folder_files))
    if not paths:
        raise SourceNotFoundError(f"No input file found in {items!r}.")
    return paths


def _expand_local(text: str, folder_files) -> list[str]:
    path = str(Path(local_path(text)).expanduser())
    if glob.has_magic(path):
        matches = sorted(os.path.abspath(match) for match in glob.glob(path) if os.path.isfile(match))
        if not matches:
            raise SourceNotFoundError(f"The pattern {path!r} matches no file; check the path and the glob.")
        return matches
    if os.path.isdir(path):
        if folder_files is None:
            raise SourceError(f"{text!r} is a folder; name its files (or a glob of them) instead.")
        matches = sorted(os.path.abspath(entry.path) for entry in os.scandir(path)
                         if entry.is_file() and not entry.name.startswith((".", "_")) and folder_files(entry.name))
        if not matches:
            raise SourceNotFoundError(f"The folder {path!r} holds no input file of a known format.")
        return matches
    if not os.path.exists(path):
        raise SourceNotFoundError(f"Input file {path!r} does not exist; check the path.")
    return [os.path.abspath(path)]


def _expand_url(text: str) -> list[str]:
    from bigdl.store._location import filesystem

    fs, path = filesystem(text)
    if glob.has_magic(path):
        matches = sorted(fs.glob(path))
        if not matches:
            raise SourceNotFoundError(f"The pattern {text!r} matches no file; check the URL and the glob.")
    elif not fs.exists(path):
        raise SourceNotFoundError(f"Input file {text!r} does not exist; check the URL.")
    else:
        matches = [path]
    if any(fs.isdir(match) for match in matches):
        raise SourceError(f"{text!r} is a remote folder; folders are read from a local or shared file system. "
                          "Name the remote files (a glob), or describe remote images with a manifest (path,label).")
    return [fs.unstrip_protocol(match) for match in matches]
