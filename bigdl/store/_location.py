"""Where a store's files are: one helper for local paths and fsspec URLs (``s3://``, ``gs://``, ``abfs://``...).

Every piece of bigdl that reads or writes a store's files by name (the
integrity checks, ``verify``, the rejects, the commit) goes through these
functions, so a local path and an object-store URL take the same code.  A
location is a plain string: a local path, or a URL other than ``file://``
(which is read as the local path it names).  Zarr opens both itself
(:func:`zarr_store`).

Credentials and endpoints come from the standard environment of each
process (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION`` for ``s3://``; each fsspec back end reads its own) or from
``storage_options`` registered with :func:`set_storage_options`.  They are
never written into a store: a store records only its URL, and
:func:`display` takes any ``user:password@`` out of a URL before it is
named in a message, a log line or on the dashboard.
"""

from __future__ import annotations

import os
import re
import threading

__all__ = ["is_remote", "location", "join", "display", "filesystem", "tail", "read_bytes", "write_bytes",
           "exists", "list_names", "remove_tree", "tree_bytes", "zarr_store", "set_storage_options",
           "storage_options_for", "remote_error", "is_transient", "with_retries"]

_OPTIONS: dict[str, dict] = {}  # protocol -> storage options, set by set_storage_options
_LOCK = threading.Lock()


def is_remote(path) -> bool:
    """True for an fsspec URL other than ``file://``."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    return isinstance(text, str) and "://" in text and not text.startswith("file://")


def location(path) -> str:
    """A location as a string: a URL unchanged (trailing ``/`` removed), a local path made absolute."""
    text = os.fspath(path)
    if is_remote(text):
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text.removeprefix("file://")))


def join(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined with ``/`` for a URL, :func:`os.path.join` for a local path."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(part.strip("/") for part in parts)])
    return os.path.join(base, *parts)


def display(path) -> str:
    """A location for messages, logs and the dashboard: any ``user:password@`` in a URL is taken out."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    return re.sub(r"^([a-zA-Z][\w+.-]*://)[^/@]*@", r"\1", text)


def set_storage_options(protocol: str, options: dict | None, *, client=None) -> None:
    """Register the fsspec ``storage_options`` of one protocol (``"s3"``); None removes them.

    They apply in this process, and with ``client`` also in every worker
    of its cluster at the time of the call (a worker that joins later reads
    only its environment: on a cluster, prefer the ``AWS_*`` environment of
    every pod, as ``cluster/daskcluster.yaml`` sets it).

    Parameters
    ----------
    protocol : str
        The URL scheme.
    options : dict or None
        Passed to the file system (``{"endpoint_url": ..., "key": ..., "secret": ...}``
        for s3fs).  Held in memory only: never written into a store, a log
        line or the dashboard.
    client : distributed.Client, optional
        Also register them on its workers.

    Examples
    --------
    >>> bigdl.store.set_storage_options("s3", {"endpoint_url": "http://minio:9000"}, client=client)  # doctest: +SKIP
    """
    with _LOCK:
        if options:
            _OPTIONS[protocol] = dict(options)
        else:
            _OPTIONS.pop(protocol, None)
    if client is not None:
        client.run(set_storage_options, protocol, options)


# s3fs sends a HEAD before every whole-object GET to decide on a multi-part read, which only pays
# above its block size (50 MiB), beyond a store chunk: one request per chunk read saved.
DEFAULT_OPTIONS = {"s3": {"max_concurrency": 1}}


def storage_options_for(path) -> dict:
    """The storage options of the protocol of ``path``: bigdl's defaults, then the registered ones (empty locally)."""
    if not is_remote(path):
        return {}
    protocol = str(path).split("://", 1)[0]
    return {**DEFAULT_OPTIONS.get(protocol, {}), **_OPTIONS.get(protocol, {})}


def filesystem(path):
    """``(fsspec file system, path inside it)`` of a location (fsspec caches the file system per options)."""
    import fsspec

    return fsspec.core.url_to_fs(str(path), **storage_options_for(path))


def remote_error(error: BaseException, path) -> str:
    """Why a request on ``path`` failed, in words: permanent (403, 404, missing bucket) or not."""
    text = str(error) or type(error).__name__
    if isinstance(error, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text \
            or "SignatureDoesNotMatch" in text or "403" in text:
        return (f"access to {display(path)!r} was refused ({text}): check the credentials "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or storage_options) and the bucket's permissions")
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return f"the bucket of {display(path)!r} does not exist ({text}): create it or check the URL"
    return f"{type(error).__name__}: {text}"


def tail(path: str, size: int) -> bytes | None:
    """The last ``size`` bytes of a file (fewer if it is shorter); None when it does not exist."""
    if not is_remote(path):
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            length = os.fstat(descriptor).st_size
            return os.pread(descriptor, size, max(0, length - size))
        finally:
            os.close(descriptor)
    fs, inner = filesystem(path)
    try:
        if type(fs).__name__ == "S3FileSystem":
            return _s3_suffix(fs, inner, size)
        # A negative start counts from the end of the object (fsspec asks for its size first).
        return fs.cat_file(inner, start=-size)
    except FileNotFoundError:
        return None
    except OSError as error:
        # A ranged read of an object shorter than the range: read it whole.
        if "InvalidRange" in str(error) or "416" in str(error):
            return fs.cat_file(inner)
        raise


def _s3_suffix(fs, path: str, size: int) -> bytes:
    """The last ``size`` bytes of an S3 object in one GET with a suffix range (fsspec would HEAD it first)."""
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(path)

    async def suffix():
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key, Range=f"bytes=-{size}")
        try:
            return await response["Body"].read()
        finally:
            response["Body"].close()

    return sync(fs.loop, suffix)


def read_bytes(path: str) -> bytes | None:
    """A whole file's bytes; None when it does not exist."""
    if not is_remote(path):
        try:
            with open(path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None
    fs, inner = filesystem(path)
    try:
        return fs.cat_file(inner)
    except FileNotFoundError:
        return None


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file (one PUT on object storage, so a reader sees all of it or none)."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)
        return
    fs, inner = filesystem(path)
    fs.pipe_file(inner, data)


def exists(path: str) -> bool:
    """Whether a file (or, locally, a folder) exists."""
    if not is_remote(path):
        return os.path.lexists(path)
    fs, inner = filesystem(path)
    return fs.exists(inner)


def list_names(folder: str, suffix: str = "") -> dict[str, str]:
    """The files directly in ``folder`` whose names end with ``suffix``: name -> location (empty if none)."""
    if not is_remote(folder):
        try:
            return {entry.name: entry.path for entry in os.scandir(folder)
                    if entry.is_file() and entry.name.endswith(suffix)}
        except (FileNotFoundError, NotADirectoryError):
            return {}
    fs, inner = filesystem(folder)
    try:
        entries = fs.ls(inner, detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    found = {}
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "file" and name.endswith(suffix):
            found[name] = join(folder, name)
    return found


def remove_tree(path: str) -> None:
    """Remove a folder (a prefix on object storage) and everything under it; nothing if it is not there."""
    if not is_remote(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    fs, inner = filesystem(path)
    try:
        fs.rm(inner, recursive=True)
    except FileNotFoundError:
        pass
    fs.invalidate_cache(inner)


def tree_bytes(path: str) -> int:
    """Bytes of every file under a folder (a prefix)."""
    if not is_remote(path):
        total = 0
        for folder, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
        return total
    fs, inner = filesystem(path)
    return int(fs.du(inner, total=True))


def zarr_store(path, *, read_only: bool = False):
    """What ``zarr.open_group`` takes for a location: the local path, or an fsspec store for a URL."""
    if not is_remote(path):
        return str(path)
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(str(path), storage_options=storage_options_for(path) or None, read_only=read_only)


# ------------------------------------------------------------------ transient and permanent failures
#: What a transient failure of object storage looks like in an error's text (5xx, throttling, timeouts).
TRANSIENT_MARKERS = ("500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
                     "RequestTimeout", "Throttl", "timed out", "Timeout", "Connection reset", "IncompleteRead")


def is_transient(error: BaseException) -> bool:
    """Whether a failed request may succeed if sent again: a timeout, a lost connection, a 5xx answer."""
    from bigdl.errors import BigdlError

    if isinstance(error, (BigdlError, PermissionError, FileNotFoundError)):
        return False  # 403 / 404 / a finding of bigdl's own checks: the same again every time
    if isinstance(error, (TimeoutError, ConnectionError)):
        return True
    text = f"{type(error).__name__}: {error}"
    return isinstance(error, OSError) and any(marker in text for marker in TRANSIENT_MARKERS)


def with_retries(call, *, url, what: str = "a read", attempts: int = 5, first_delay: float = 0.2,
                 sleep=None):
    """``call()``, sent again with exponential backoff after transient failures of object storage.

    Timeouts, lost connections and 5xx answers are retried up to
    ``attempts`` times in all, waiting ``first_delay`` seconds and then twice
    as long each time; a permanent failure (access refused, no such bucket
    or object) is raised at once as :class:`~bigdl.errors.ObjectStoreError`
    naming the URL and the cause, and so is a transient one that persists.
    Local paths are called once, as they are.

    Parameters
    ----------
    call : callable
        Takes no argument.
    url : str
        What is read, for the message.
    what : str, default "a read"
        What ``call`` does, for the message (``"chunk 3"``).
    attempts : int, default 5
    first_delay : float, default 0.2
        Seconds before the second attempt.
    sleep : callable, optional
        Waits (default :func:`time.sleep`; tests pass their own).

    Returns
    -------
    What ``call`` returns.

    Raises
    ------
    ObjectStoreError
        A permanent failure, or a transient one ``attempts`` times over.
    """
    import time

    from bigdl.errors import BigdlError, ObjectStoreError

    if not is_remote(url):
        return call()
    sleep = sleep or time.sleep
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except BigdlError:
            raise
        except Exception as error:  # noqa: BLE001 - sorted into transient and permanent below
            if not is_transient(error):
                if isinstance(error, (PermissionError, FileNotFoundError)):
                    raise ObjectStoreError(f"Cannot read {what} of {display(url)!r}: {remote_error(error, url)}.",
                                           url=display(url), cause=str(error)) from None
                raise
            if attempt == attempts:
                raise ObjectStoreError(
                    f"Cannot read {what} of {display(url)!r}: it failed {attempts} times with a transient error "
                    f"(last: {remote_error(error, url)}); the object store may be overloaded or unreachable.",
                    url=display(url), cause=str(error)) from None
            sleep(delay)
            delay *= 2
