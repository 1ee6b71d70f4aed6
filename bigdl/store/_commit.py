"""The atomic commit of a store: renamed into place on a local disk, a commit object on object storage.

**Local stores** are written under a temporary sibling name and renamed
into place when complete.

**Object storage** (``s3://``, ``gs://``... any fsspec URL) has no atomic
rename of a prefix, so a store there is a prefix holding versions and one
commit object::

    s3://bucket/flights.zarr/bigdl-commit.json      the commit: names the live version (written last)
    s3://bucket/flights.zarr/version-<token>/       a complete Zarr group (zarr.json, X/, y/, rejects/...)

A write puts the new store under a fresh ``version-<token>/`` prefix (its
lock object ``.bigdl-writer.json`` first), finishes it (its integrity
manifest in ``zarr.json``), and then writes the commit object in one PUT,
which object stores make visible whole or not at all.  The commit records
the version and the SHA-256 of the version's ``zarr.json`` (the manifest),
so a reader (:func:`resolve_store`) opens exactly the version committed, and
refuses a prefix without a commit, saying why (a write was interrupted, or
is still running).  Overwriting writes the new version beside the old one;
the old version is removed only after the new commit is written.  At each
step an interruption leaves either the old commit (naming the old, whole
version) or the new one.  Left-over versions that no commit names are bigdl's
own temporaries: the next write of the store removes those whose writer is
gone (:func:`remove_stale_temporaries`); nothing else under the prefix is
ever deleted, and a prefix holding anything that is not bigdl's is refused.

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

from bigdl.errors import BigdlError, NotAStoreError, ObjectStoreError, StoreExistsError, StoreFormatError, \
    StorePathError, StoreWriteError
from bigdl.store._location import display, exists, filesystem, is_remote, join, location, read_bytes, \
    remote_error, remove_tree, write_bytes

__all__ = ["atomic_store", "check_store_path", "check_store_writable", "remove_stale_temporaries",
           "resolve_store", "read_commit", "COMMIT_NAME"]

logger = logging.getLogger(__name__)

# Inside each temporary; removed just before the rename, so never part of a store.
LOCK_NAME = ".bigdl-writer.json"
#: On object storage: the commit object at the store's prefix, naming the live version.
COMMIT_NAME = "bigdl-commit.json"
VERSION_PREFIX = "version-"
#: On object storage a writer on another host cannot be checked: its uncommitted version is stale after this.
STALE_SECONDS = 24 * 3600


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
    if is_remote(path):
        check_store_path(path, overwrite=overwrite, inputs=inputs)
        with _atomic_object_store(path, overwrite=overwrite) as temporary:
            yield temporary
        return
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
    if is_remote(path):
        url = location(path)
        for source in inputs or ():
            if not isinstance(source, (str, os.PathLike)) or not is_remote(source):
                continue  # a local input cannot overlap a store on object storage
            text = location(source).split("*", 1)[0].rstrip("/")
            if text == url or text.startswith(url + "/") or url.startswith(text + "/"):
                raise StorePathError(
                    f"The store URL {display(url)!r} overlaps the input {display(source)!r}; writing the store "
                    "there could replace or delete the data being read. Choose a store URL outside the inputs.")
        _check_object_store(url, overwrite=overwrite)
        return url
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
    On object storage it checks that the bucket exists and can be listed.
    """
    if is_remote(path):
        _check_bucket(location(path))
        return
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
    if is_remote(path):
        return _remove_stale_versions(location(path))
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


# ---------------------------------------------------------------- object storage
def _remote_call(url: str, call, *args, **kwargs):
    """``call(*args)``, with a permanent failure (403, 404, a missing bucket) raised as ObjectStoreError."""
    try:
        return call(*args, **kwargs)
    except (PermissionError, FileNotFoundError) as error:
        raise ObjectStoreError(f"Cannot use the store {display(url)!r}: {remote_error(error, url)}.",
                               url=display(url), cause=str(error)) from None


def _check_bucket(url: str) -> None:
    """Refuse a URL whose bucket does not exist or cannot be listed with these credentials."""
    fs, inner = filesystem(url)
    bucket = inner.split("/", 1)[0]
    try:
        fs.ls(bucket, refresh=True)
    except FileNotFoundError as error:
        raise ObjectStoreError(
            f"Cannot write the store {display(url)!r}: the bucket {bucket!r} does not exist ({error}); create it "
            "first or check the URL.", url=display(url), cause=str(error)) from None
    except PermissionError as error:
        raise ObjectStoreError(f"Cannot write the store {display(url)!r}: {remote_error(error, url)}.",
                               url=display(url), cause=str(error)) from None


def read_commit(url: str) -> dict | None:
    """The commit object of a store on object storage, or None when there is none.

    Raises
    ------
    StoreFormatError
        A commit object that is not one bigdl wrote.
    ObjectStoreError
        Access refused, or no such bucket.
    """
    data = _remote_call(url, read_bytes, join(url, COMMIT_NAME))
    if data is None:
        return None
    try:
        commit = json.loads(data)
        if not isinstance(commit, dict) or not str(commit["version"]).startswith(VERSION_PREFIX) \
                or "/" in commit["version"]:
            raise ValueError("no version")
    except (ValueError, KeyError, TypeError):
        raise StoreFormatError(f"{display(url)!r} has a commit object ({COMMIT_NAME}) that bigdl cannot read: it was "
                               "edited or not written by bigdl. Re-create the store (run the ingest again).") from None
    return commit


def _entries(url: str) -> list[str]:
    """The names directly under a prefix (files and sub-prefixes)."""
    fs, inner = filesystem(url)
    try:
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(inner, detail=False, refresh=True))
    except FileNotFoundError:
        bucket = inner.split("/", 1)[0]
        if not _remote_call(url, fs.exists, bucket):
            raise ObjectStoreError(f"Cannot use the store {display(url)!r}: the bucket {bucket!r} does not exist; "
                                   "create it first or check the URL.", url=display(url),
                                   cause="NoSuchBucket") from None
        return []
    except PermissionError as error:
        raise ObjectStoreError(f"Cannot use the store {display(url)!r}: {remote_error(error, url)}.",
                               url=display(url), cause=str(error)) from None


def _not_a_store_prefix(url: str, commit: dict | None) -> str | None:
    """Why what is under ``url`` is not bigdl's (so may not be replaced), or None."""
    foreign = [name for name in _entries(url) if name != COMMIT_NAME and not name.startswith(VERSION_PREFIX)]
    if not foreign:
        return None
    examples = ", ".join(repr(name) for name in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    if commit is None:
        return f"holds objects that are not a bigdl store (no {COMMIT_NAME}; it holds {examples})"
    return f"holds objects bigdl did not write beside the store ({examples})"


def _check_object_store(url: str, *, overwrite: bool) -> dict | None:
    """check_store_path for object storage: the current commit (None if no store is there)."""
    commit = read_commit(url)
    reason = _not_a_store_prefix(url, commit)
    if commit is not None and not overwrite:
        raise StoreExistsError(f"The store {display(url)!r} already exists; pass overwrite=True to replace it "
                               "(or choose another URL).")
    if reason and (overwrite or commit is None):
        raise NotAStoreError(f"bigdl writes a store only under a prefix of its own, and {display(url)!r} {reason}; it "
                             "was left untouched. Choose another store URL, or remove the objects yourself if they "
                             "are not needed.")
    return commit


def resolve_store(path) -> str:
    """The location of a store's Zarr group: the path itself locally, the committed version on object storage.

    Raises
    ------
    StoreFormatError
        Nothing at the URL, or a prefix without a commit object (an
        interrupted write, or one still running), or a commit naming a
        version that is not there or was changed.
    ObjectStoreError
        Access refused, or no such bucket.
    """
    if not is_remote(path):
        return os.fspath(path)
    url = location(path)
    commit = read_commit(url)
    parent, _, name = url.rpartition("/")
    if commit is None and name.startswith(VERSION_PREFIX):
        # A version's own URL (what a Dataset hands its tasks): readable while its parent's commit names it.
        named = read_commit(parent)
        if named is not None and named["version"] == name:
            url, commit = parent, named
    if commit is None:
        names = _entries(url)
        if not names:
            raise StoreFormatError(f"No store at {display(url)!r}: nothing is stored under that prefix. "
                                   "Create it with bigdl.ingest.")
        if any(name.startswith(VERSION_PREFIX) for name in names):
            raise StoreFormatError(
                f"{display(url)!r} holds no committed store: it has no commit object ({COMMIT_NAME}), so its write "
                "was interrupted or is still running, and what is there is incomplete. Wait for the write to finish, "
                "or run the ingest again (it removes what an interrupted write left).")
        raise StoreFormatError(f"{display(url)!r} is not a bigdl store: it has no commit object ({COMMIT_NAME}).")
    root = join(url, commit["version"])
    metadata = _remote_call(url, read_bytes, join(root, "zarr.json"))
    if metadata is None:
        raise StoreFormatError(f"The store {display(url)!r} is damaged: its commit names {commit['version']!r}, which "
                               "is not there (it was deleted). Re-create the store (run the ingest again).")
    import hashlib

    if commit.get("zarr_json_sha256") not in (None, hashlib.sha256(metadata).hexdigest()):
        raise StoreFormatError(
            f"The store {display(url)!r} was changed after it was committed: the metadata of {commit['version']!r} "
            "(zarr.json, which holds the integrity manifest) is not the one committed. Re-create the store "
            "(run the ingest again) or restore it from a copy.")
    return root


def _lock_record() -> dict:
    import time

    import psutil

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time(),
            "written": time.time()}


@contextlib.contextmanager
def _atomic_object_store(path, *, overwrite: bool):
    """atomic_store on object storage: yield a fresh version prefix, commit it with the commit object."""
    import hashlib

    url = location(path)
    _check_bucket(url)
    previous = _check_object_store(url, overwrite=overwrite)
    _remove_stale_versions(url, keep=previous)
    version = f"{VERSION_PREFIX}{uuid.uuid4().hex[:12]}"
    temporary = join(url, version)
    try:
        _remote_call(url, write_bytes, join(temporary, LOCK_NAME), json.dumps(_lock_record()).encode())
        yield temporary
        # What is there may have changed while the store was written.
        current = _check_object_store(url, overwrite=overwrite)
        metadata = read_bytes(join(temporary, "zarr.json"))
        if metadata is None:
            raise RuntimeError(f"bigdl internal error: {display(temporary)!r} has no zarr.json to commit.")
        commit = {"version": version, "zarr_json_sha256": hashlib.sha256(metadata).hexdigest(),
                  "format": "bigdl-commit-1"}
        _remote_call(url, write_bytes, join(url, COMMIT_NAME), json.dumps(commit).encode())
    except BaseException:
        remove_tree(temporary)
        raise
    # Committed: the new version is live; what follows only tidies up.
    try:
        fs, inner = filesystem(temporary)
        fs.rm_file(f"{inner}/{LOCK_NAME}")
        for old in {item["version"] for item in (previous, current) if item} - {version}:
            remove_tree(join(url, old))
    except (OSError, ConnectionError) as error:  # the next write removes what is left
        logger.warning("The store %s is committed, but tidying its old version failed: %s", display(url),
                       type(error).__name__)


def _remove_stale_versions(url: str, keep: dict | None = None) -> list[str]:
    """Remove the uncommitted versions under ``url`` whose writer is gone; the locations removed.

    A version no commit names is removed when its lock object was written
    on this host by a process that no longer runs, or more than
    :data:`STALE_SECONDS` ago elsewhere (a writer on another host cannot be
    checked), or when it has no lock left (a version superseded by a later
    commit, whose removal was cut short).  A version just being created (no
    object yet) is not listed at all.
    """
    import time

    try:
        commit = keep if keep is not None else read_commit(url)
        names = [name for name in _entries(url) if name.startswith(VERSION_PREFIX)]
    except (ObjectStoreError, StoreFormatError):
        return []
    live = commit["version"] if commit else None
    host, removed = socket.gethostname(), []
    for name in names:
        if name == live:
            continue
        version = join(url, name)
        data = read_bytes(join(version, LOCK_NAME))
        if data is not None:
            try:
                owner = json.loads(data)
            except ValueError:
                continue
            if not isinstance(owner, dict):
                continue
            if owner.get("host") == host:
                if _running(owner):
                    continue
            elif not isinstance(owner.get("written"), (int, float)) or time.time() - owner["written"] < STALE_SECONDS:
                continue
        elif commit is None:
            continue  # no lock and nothing committed: not a version bigdl can tell is finished with
        remove_tree(version)
        logger.info("Removed %s, an uncommitted version left by an earlier write.", display(version))
        removed.append(version)
    return removed
