"""Exceptions raised by bigdl.

Every error a user can cause derives from :class:`BigdlError` and also from
the built-in exception that means the same thing (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.  Messages
say what was wrong, where (file, row, parameter) and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BigdlError",
    "SchemaError",
    "SourceError",
    "SourceNotFoundError",
    "StoreExistsError",
    "NotAStoreError",
    "StorePathError",
    "StoreFormatError",
    "StoreCorruptedError",
    "EmptyResultError",
]


class BigdlError(Exception):
    """Base class of every error raised on purpose by bigdl."""


class SourceNotFoundError(BigdlError, FileNotFoundError):
    """A path, glob or table named as input does not exist or matches nothing."""


class SourceError(BigdlError, ValueError):
    """An input file cannot be read as asked (encoding, header, format)."""


class SchemaError(BigdlError, ValueError):
    """Columns or parameters do not fit the data (missing target, unknown column...)."""


class EmptyResultError(BigdlError, ValueError):
    """Nothing would be stored: every row was rejected or the input is empty."""


class StoreExistsError(BigdlError, FileExistsError):
    """The output store exists and ``overwrite=True`` was not given."""


class NotAStoreError(StoreExistsError):
    """``overwrite=True`` was given, but what is at the store path is not a bigdl store (a file, a folder)."""


class StorePathError(BigdlError, ValueError):
    """The store path is an input of the write, lies inside one, or contains one."""


class StoreFormatError(BigdlError, ValueError):
    """A path is not a bigdl store, or was written by an incompatible version."""


class StoreCorruptedError(StoreFormatError):
    """A chunk file of a store changed on disk after it was written (checksum mismatch, undecodable, missing).

    Also raised when the store's attributes or an array's metadata differ
    from its integrity manifest, a chunk file is missing, or a chunk file
    sits at another chunk's position (swapped, copied from another store).
    ``store``, ``array``, ``chunk`` (the chunk's grid coordinates), ``file``
    (its path in the store) and ``attribute`` (a changed group attribute) say
    where; ``bigdl verify STORE`` lists every problem.
    """

    def __init__(self, message: str, *, store=None, array=None, chunk=None, file=None, attribute=None):
        super().__init__(message)
        self.store, self.array, self.chunk, self.file, self.attribute = store, array, chunk, file, attribute

    def __reduce__(self):
        # Raised inside Dask tasks: the attributes must survive pickling to the client.
        return (_rebuild_corrupted, (str(self), self.store, self.array, self.chunk, self.file, self.attribute))


def _rebuild_corrupted(message, store, array, chunk, file, attribute=None):
    return StoreCorruptedError(message, store=store, array=array, chunk=chunk, file=file, attribute=attribute)


class ClusterConnectionError(BigdlError, ConnectionError):
    """The Dask scheduler named by an address or ``DASK_SCHEDULER_ADDRESS`` cannot be reached."""


__all__.append("ClusterConnectionError")


class CheckpointError(BigdlError, ValueError):
    """A checkpoint cannot be loaded (damaged, not a bigdl checkpoint) or belongs to another run."""


__all__.append("CheckpointError")
