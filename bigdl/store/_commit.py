"""The atomic commit of a store: written under a temporary sibling name, renamed into place when complete.

It also owns the checks that keep a write from losing data (:func:`check_store_path`):
only a bigdl store is ever replaced, and a store path never overlaps the write's
inputs.  Every writer (the three ingests, ``from_arrays``, ``predict_to_store``)
goes through :func:`atomic_store`, so they all refuse the same things.  A
temporary holds a lock file naming its writer process, so a later write of the
same store can remove the temporaries of writers killed outright (SIGKILL, a
lost node's OOM killer) and never one still being written.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import shutil
import socket
import uuid
from pathlib import Path

from bigdl.errors import BigdlError, NotAStoreError, StoreExistsError, StorePathError, StoreWriteError

__all__ = ["atomic_store", "check_store_path", "check_store_writable", "remove_stale_temporaries"]

logger = logging.getLogger(__name__)

# Inside each temporary; removed just before the rename, so never part of a store.
LOCK_NAME = ".bigdl-writer.json"


@contextlib.contextmanager
def atomic_store(path: str | os.PathLike, overwrite: bool = False, *, inputs=()):
    """Yield a temporary sibling directory; rename it to ``path`` on success.

    On any failure, KeyboardInterrupt included, the temporary directory is
    removed and ``path`` is left as it was.  An existing store is replaced
    only with ``overwrite=True``, only if it is a bigdl store, and only once
    the new one is complete; see :func:`check_store_path` for what is refused.
    ``inputs`` are the paths the write reads (files, folders, globs).

    SIGTERM (what ``kill``, a batch system or Kubernetes sends to stop a
    process) ends Python at once by default, which would leave the temporary
    directory behind; while the store is written, in the main thread and only
    where SIGTERM still has its default action, it raises KeyboardInterrupt
    instead, so the same cleanup runs.  The previous handler is restored on exit.
    SIGKILL cannot be caught: the next write of the same store removes what
    such a writer left (:func:`remove_stale_temporaries`).

    An operating-system error of writing the store (a read-only or
    unwritable folder, a full disk, a file in the way) is raised as
    :class:`~bigdl.errors.StoreWriteError` naming the store, where the write
    failed and the cause, after the same cleanup; other errors (an input
    that cannot be read) keep their type.  If the new store cannot be renamed
    into place, an old store it was replacing goes back under its name.
    """
    final = check_store_path(path, overwrite=overwrite, inputs=inputs)
    token = uuid.uuid4().hex[:12]
    temporary = final.with_name(f".{final.name}.tmp-{token}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final)
        temporary.mkdir()
    except OSError as error:
        converted = _write_error(error, path, final, temporary)
        if converted is None:
            raise
        raise converted from error
    with _sigterm_as_interrupt():
        try:
            _write_lock(temporary, final)
            yield temporary
            (temporary / LOCK_NAME).unlink(missing_ok=True)
            if os.path.lexists(final):
                # What is there may have changed while the store was written.
                check_store_path(path, overwrite=overwrite)
                retired = final.with_name(f".{final.name}.old-{token}")
                os.replace(final, retired)
                try:
                    os.replace(temporary, final)
                except BaseException:
                    os.replace(retired, final)  # the old store goes back under its name
                    raise
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(temporary, final)
        except BaseException as error:
            shutil.rmtree(temporary, ignore_errors=True)
            converted = _write_error(error, path, final, temporary) \
                if isinstance(error, OSError) and not isinstance(error, BigdlError) else None
            if converted is not None:
                raise converted from error
            raise


def check_store_path(path: str | os.PathLike, *, overwrite: bool = False, inputs=()) -> Path:
    """Refuse to write a store at ``path`` where that could lose data; the absolute path if it is safe.

    Parameters
    ----------
    path : str or path
        Where the store goes.
    overwrite : bool, default False
        Whether an existing bigdl store at ``path`` may be replaced.
    inputs : iterable of str or path, optional
        What the write reads: files, folders or globs.  URLs and entries that
        are not paths (in-memory arrays, None) are skipped.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    StorePathError
        ``path`` is an input, lies inside an input folder, or contains an input.
    StoreExistsError
        Something is at ``path`` and ``overwrite`` is False.
    NotAStoreError
        ``overwrite=True``, but what is at ``path`` is a file, a symbolic link,
        or a non-empty folder that is not a bigdl store.
    """
    final = Path(path).expanduser().absolute()
    real = Path(os.path.realpath(final))
    for source in _local_inputs(inputs):
        if real == source:
            relation = "is the input"
        elif source in real.parents:
            relation = "lies inside the input folder"
        elif real in source.parents:
            relation = "contains the input"
        else:
            continue
        raise StorePathError(
            f"The store path {str(path)!r} {relation} {str(source)!r}; writing the store there could replace "
            "or delete the data being read. Choose a store path outside the inputs."
        )
    if not os.path.lexists(final):
        return final
    if not overwrite:
        raise StoreExistsError(
            f"The store {str(path)!r} already exists; pass overwrite=True to replace it "
            "(or choose another path)."
        )
    reason = _not_a_store(final)
    if reason:
        raise NotAStoreError(
            f"overwrite=True replaces only a bigdl store, and {str(path)!r} {reason}; it was left untouched. "
            "Choose another store path, or remove it yourself if it is not needed."
        )
    return final


def _not_a_store(path: Path) -> str | None:
    """Why ``path`` is not a bigdl store that may be replaced, or None (a store, or an empty folder)."""
    if path.is_symlink():
        return "is a symbolic link"
    if not path.is_dir():
        return "is a file, not a store"
    entries = sorted(entry.name for entry in path.iterdir())
    if not entries:
        return None  # nothing to lose
    examples = ", ".join(repr(name) for name in entries[:3]) + (", ..." if len(entries) > 3 else "")
    try:
        metadata = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"is a folder that is not a store (no zarr.json; it holds {examples})"
    except (OSError, ValueError):
        return "is a folder whose zarr.json cannot be read as JSON"
    attributes = metadata.get("attributes") if isinstance(metadata, dict) else None
    if not isinstance(attributes, dict) or "format_version" not in attributes or "kind" not in attributes:
        return "is a Zarr group but not a bigdl store (no 'format_version' and 'kind' attributes)"
    return None


def _local_inputs(inputs) -> list[Path]:
    """The local paths among ``inputs`` (globs expanded, links resolved)."""
    found = []
    for entry in inputs or ():
        if not isinstance(entry, (str, os.PathLike)):
            continue
        text = os.fspath(entry)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if text.startswith("file://"):
            text = text[len("file://"):]
        elif "://" in text:
            continue  # another file system: it cannot overlap a local store
        text = os.path.expanduser(text)
        for match in (glob.glob(text) if glob.has_magic(text) else [text]):
            found.append(Path(os.path.realpath(match)))
    return found


# ---------------------------------------------------------------- write failures
# Error numbers that only a write raises, whatever file it names (a full disk's error names none).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
HINTS = {
    errno.ENOSPC: "free some space, or choose a store path on another disk",
    errno.EDQUOT: "free some space within the quota, or choose a store path on another disk",
    errno.EROFS: "the file system is read-only: choose a store path on a writable one",
    errno.EFBIG: "a file grew past the file system's limit: choose a store path on another file system",
    errno.EACCES: "choose a folder you can write to, or change its permissions",
    errno.EPERM: "choose a folder you can write to, or change its permissions",
    errno.EEXIST: "a file is in the way of the store's folder: choose another store path",
    errno.ENOTDIR: "a file is in the way of the store's folder: choose another store path",
}


def check_store_writable(path: str | os.PathLike) -> None:
    """Raise :class:`~bigdl.errors.StoreWriteError` now if a store cannot be created at ``path``.

    What :func:`atomic_store` would find only once the work has started (a
    read-only or unwritable folder, a file in the way of the store's folder),
    found by creating and removing an empty folder in the nearest existing
    folder above the store; nothing else is created.  The CLI calls it
    before it starts a cluster.  A full disk shows only when the store is written.
    """
    final = Path(path).expanduser().absolute()
    folder = final.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    probe = folder / f".{final.name}.probe-{uuid.uuid4().hex[:12]}"
    try:
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
        probe.mkdir()
        probe.rmdir()
    except OSError as error:
        raise _write_error(error, path, final, probe, folder=folder) or error from None


def _write_error(error: OSError, path, final: Path, temporary: Path, folder: Path | None = None
                 ) -> StoreWriteError | None:
    """The :class:`StoreWriteError` for an operating-system error of writing the store, or None.

    It is one when its error number only a write raises (a full disk, a read-only file system), or
    when the file it names is the store, its temporary (or a file in it), a folder above the store or
    (``folder``) the folder a probe of :func:`check_store_writable` was created in; an error naming
    anything else (an input that cannot be read) is not the store's.
    """
    if error.errno is None:
        return None
    named = [Path(os.path.abspath(name)) for name in (error.filename, error.filename2)
             if isinstance(name, (str, os.PathLike))]
    ours = any(name in (final, temporary, folder) or temporary in name.parents or name in final.parents
               for name in named)
    if error.errno not in WRITE_ERRNOS and not ours:
        return None
    where = ""
    if named and (named[0] == temporary or temporary in named[0].parents):
        inside = named[0].relative_to(temporary).as_posix()
        where = (f" (creating a folder in {str(folder or final.parent)!r})" if inside == "." else
                 f" (writing {inside!r} of the store)")
    elif named:
        where = f" ({str(named[0])!r})"
    hint = HINTS.get(error.errno, "choose another store path")
    return StoreWriteError(
        f"Cannot write the store {str(path)!r}: {error.strerror or error}{where}; {hint}. Nothing was left "
        "under the store's name or beside it.", store=str(final), path=str(named[0]) if named else None,
        errno=error.errno)


# ---------------------------------------------------------------- stale temporaries
def _write_lock(temporary: Path, final: Path) -> None:
    import psutil

    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": psutil.Process().create_time(), "store": str(final)}
    (temporary / LOCK_NAME).write_text(json.dumps(owner), encoding="utf-8")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` whose writer process is gone; the paths removed.

    Only siblings named ``.NAME.tmp-*`` that hold a lock file written on
    this host by a process that no longer runs (or whose process id now
    belongs to a later process) are removed.  A temporary without a lock
    (written by an older bigdl, or just being created), one of another host,
    or one of a live process is left alone.
    """
    final = Path(path).absolute()
    prefix = f".{final.name}.tmp-"
    removed = []
    try:
        siblings = [entry for entry in final.parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return removed
    host = socket.gethostname()
    for sibling in siblings:
        if sibling.is_symlink() or not sibling.is_dir():
            continue
        try:
            owner = json.loads((sibling / LOCK_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(owner, dict) or owner.get("host") != host or _running(owner):
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        logger.info("Removed %s, left by process %s, which no longer runs.", sibling, owner.get("pid"))
        removed.append(sibling)
    return removed


def _running(owner: dict) -> bool:
    """Whether the process named by a lock file still runs (unsure counts as running)."""
    import psutil

    pid, started = owner.get("pid"), owner.get("started")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        # A process id is reused once its process ends: the start time tells them apart.
        return not isinstance(started, (int, float)) or abs(process.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn the first SIGTERM into KeyboardInterrupt (main thread, default handler only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        # Signal handlers can only be set from the main thread; an application
        # that handles (or ignores) SIGTERM itself keeps its choice.
        yield
        return
    received = []

    def interrupt(signum, frame):
        if not received:  # a second SIGTERM must not cut the cleanup short
            received.append(signum)
            raise KeyboardInterrupt("SIGTERM received")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
