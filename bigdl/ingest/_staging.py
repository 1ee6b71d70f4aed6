"""The files an ingest stages between its passes, in a local folder or under a prefix on object storage.

A local store stages inside its temporary folder (``_staging``); so does a
store on object storage, under its temporary version's prefix, so an ingest
on a cluster whose workers share no file system (Kubernetes with object
storage only) works with nothing but the bucket.  ``BIGDL_STAGING_DIR``
puts the staging of a remote store in a folder (or URL) of the user's
choice instead, e.g. a volume every worker mounts, which saves the round
trips through object storage.  Locally the staged Arrow and NumPy files are
memory-mapped where they are read; on object storage each is one PUT and
one GET.
"""

from __future__ import annotations

import io
import os
from typing import Callable

from bigdl.store._location import is_remote, join, list_names, read_bytes, write_bytes

__all__ = ["staged_path", "save", "load", "load_array", "arrow_file", "names"]


def staged_path(staging: str, name: str) -> str:
    """Where the staged file ``name`` goes."""
    return join(os.fspath(staging), name)


def save(staging: str, name: str, write: Callable) -> None:
    """Stage ``name``: ``write(file)`` writes it (to the local file, or to memory then one PUT)."""
    path = staged_path(staging, name)
    if not is_remote(path):
        with open(path, "wb") as file:
            write(file)
        return
    buffer = io.BytesIO()
    write(buffer)
    write_bytes(path, buffer.getvalue())


def load(staging: str, name: str):
    """A staged file for ``numpy.load`` / ``pandas.read_parquet``: its path locally, its bytes in memory remotely."""
    path = staged_path(staging, name)
    if not is_remote(path):
        return path
    data = read_bytes(path)
    if data is None:
        raise FileNotFoundError(f"The staged file {path} is missing: the ingest's staging area was changed while "
                                "it ran.")
    return io.BytesIO(data)


def load_array(staging: str, name: str):
    """A staged ``.npy`` array: memory-mapped locally, read whole remotely."""
    import numpy as np

    source = load(staging, name)
    return np.load(source, mmap_mode="r") if isinstance(source, str) else np.load(source)


def arrow_file(staging: str, name: str):
    """A staged Arrow IPC file to read: memory-mapped locally, its bytes remotely."""
    import pyarrow as pa

    path = staged_path(staging, name)
    if not is_remote(path):
        return pa.memory_map(path, "r")
    return pa.BufferReader(load(staging, name).getvalue())


def names(staging: str, prefix: str, suffix: str) -> list[str]:
    """The staged files named ``prefix...suffix``, sorted."""
    return sorted(name for name in list_names(os.fspath(staging), suffix) if name.startswith(prefix))
