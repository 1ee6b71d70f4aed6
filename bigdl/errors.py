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
    "ParameterError",
    "SourceError",
    "SourceNotFoundError",
    "StoreExistsError",
    "NotAStoreError",
    "StorePathError",
    "StoreFormatError",
    "StoreCorruptedError",
    "EmptyResultError",
    "BigdlWarning",
    "CategoriesFoldedWarning",
]


class BigdlError(Exception):
    """Base class of every error raised on purpose by bigdl.

    Parameters
    ----------
    *args
        The message (as for any exception).
    public : str, optional
        The message without data values, where the full message quotes some
        (rejected rows, say): the dashboard and ``/metrics`` show only
        :func:`public_message`.
    """

    #: Messages of this class never quote data values (only paths, names, counts, addresses).
    data_free = False

    def __init__(self, *args, public: str | None = None):
        super().__init__(*args)
        self.public = public


class SourceNotFoundError(BigdlError, FileNotFoundError):
    """A path, glob or table named as input does not exist or matches nothing."""

    data_free = True


class SourceError(BigdlError, ValueError):
    """An input file cannot be read as asked (encoding, header, format)."""


class SchemaError(BigdlError, ValueError):
    """Columns or parameters do not fit the data (missing target, unknown column...)."""


class ParameterError(SchemaError, ValueError, TypeError):
    """A parameter has a value or a type its owner does not accept.

    Raised by :func:`bigdl._validation.check_params` with scikit-learn's
    message: "The 'batch_size' parameter of ChunkLoader must be an int in the
    range [1, inf). Got 0 instead."  It is a :class:`SchemaError` (what bigdl
    raised for bad parameters before), and a ``ValueError`` and a
    ``TypeError`` as scikit-learn's ``InvalidParameterError`` is, so every
    existing ``except`` keeps working.
    """


class EmptyResultError(BigdlError, ValueError):
    """Nothing would be stored: every row was rejected or the input is empty."""


class StoreExistsError(BigdlError, FileExistsError):
    """The output store exists and ``overwrite=True`` was not given."""

    data_free = True


class NotAStoreError(StoreExistsError):
    """``overwrite=True`` was given, but what is at the store path is not a bigdl store (a file, a folder)."""


class StorePathError(BigdlError, ValueError):
    """The store path is an input of the write, lies inside one, or contains one."""

    data_free = True


class StoreFormatError(BigdlError, ValueError):
    """A path is not a bigdl store, or was written by an incompatible version."""

    data_free = True


class StoreCorruptedError(StoreFormatError):
    """A chunk file of a store changed on disk after it was written (checksum mismatch, undecodable, missing).

    Also raised when the store's attributes or an array's metadata differ
    from its integrity manifest, a chunk file is missing, or a chunk file
    sits at another chunk's position (swapped, copied from another store).
    ``store``, ``array``, ``chunk`` (the chunk's grid coordinates), ``file``
    (its path in the store) and ``attribute`` (a changed group attribute) say
    where; ``bigdl verify STORE`` lists every problem.

    Parameters
    ----------
    message : str
    store : str, optional
        The store's path.
    array : str, optional
        The array (``"X"``, ``"y"``...).
    chunk : tuple of int, optional
        The chunk's grid coordinates.
    file : str, optional
        The chunk file's path.
    attribute : str, optional
        A changed group attribute.
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

    data_free = True


__all__.append("ClusterConnectionError")


class CheckpointError(BigdlError, ValueError):
    """A checkpoint cannot be loaded (damaged, not a bigdl checkpoint) or belongs to another run."""

    data_free = True


__all__.append("CheckpointError")


class TrainingError(BigdlError, RuntimeError):
    """Training stopped for a reason outside the model and the data: a lost worker of a data-parallel job."""

    data_free = True


__all__.append("TrainingError")


class StoreWriteError(BigdlError, OSError):
    """A store cannot be written where asked: a read-only or unwritable folder, a full disk, a file in the way.

    The message names the store, the file or folder the write failed on and
    the cause; nothing is left under the store's name or beside it.
    ``store`` (the store's path), ``path`` (where the write failed, or None)
    and ``errno`` (the operating system's error number) say the same to code.
    """

    data_free = True

    def __init__(self, message: str, *, store=None, path=None, errno=None):
        super().__init__(message)
        self.store, self.path, self.errno = store, path, errno


__all__.append("StoreWriteError")


class ObjectStoreError(BigdlError, OSError):
    """A request to object storage failed for good: access refused (403), no such bucket or object (404).

    Raised at once, not retried (timeouts and server errors are retried
    first).  The message names the URL (without credentials) and the cause;
    ``url`` and ``cause`` say the same to code.
    """

    data_free = True

    def __init__(self, message: str, *, url=None, cause=None):
        super().__init__(message)
        self.url, self.cause = url, cause


__all__.append("ObjectStoreError")


def public_message(error: BaseException, limit: int = 500) -> str:
    """What the dashboard may show of ``error``: its type and a message that quotes no data values.

    A bigdl error gives its ``public`` message (or its message, for classes
    whose messages never quote data); an ``OSError`` its errno text and
    path.  Any other message may quote data (a parser's error holds the bad
    row), so only the type is shown, with where to find the rest.

    Parameters
    ----------
    error : BaseException
    limit : int, default 500
        At most this many characters.

    Returns
    -------
    str
    """
    kind = type(error).__name__
    if isinstance(error, BigdlError):
        text = error.public if error.public is not None else (str(error) if error.data_free else None)
    elif isinstance(error, OSError) and error.strerror:
        paths = [str(path) for path in (error.filename, error.filename2) if path]
        text = error.strerror + (f": {' -> '.join(paths)}" if paths else "")
    else:
        text = None
    if text is None:
        text = "(the message is not shown here because it may quote data values; the traceback in the " \
               "client that started the job has it)"
    return f"{kind}: {text}"[:limit]


__all__.append("public_message")


class BigdlWarning(UserWarning):
    """Base class of the warnings bigdl gives: something was done that the user may not expect."""


class CategoriesFoldedWarning(BigdlWarning):
    """Tabular ingest folded rare values of a categorical column into its ``__other__`` feature.

    The message names the column and counts the values and rows folded (never
    the values themselves), and says how to keep them (``max_categories=None``)
    or encode the column otherwise (``categorical_encoding=``).
    """
