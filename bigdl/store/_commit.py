"""The atomic commit of a store: written under a temporary sibling name, renamed into place when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from bigdl.errors import StoreExistsError

__all__ = ["atomic_store"]


@contextlib.contextmanager
def atomic_store(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary sibling directory; rename it to ``path`` on success.

    On any failure, KeyboardInterrupt included, the temporary directory is
    removed and ``path`` is left as it was.  An existing store is replaced
    only with ``overwrite=True``, and only once the new one is complete.

    SIGTERM (what ``kill``, a batch system or Kubernetes sends to stop a
    process) ends Python at once by default, which would leave the temporary
    directory behind; while the store is written, in the main thread and only
    where SIGTERM still has its default action, it raises KeyboardInterrupt
    instead, so the same cleanup runs.  The previous handler is restored on exit.
    """
    final = Path(path).absolute()
    if final.exists() and not overwrite:
        raise StoreExistsError(
            f"The store {str(path)!r} already exists; pass overwrite=True to replace it "
            "(or choose another path)."
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    temporary = final.with_name(f".{final.name}.tmp-{token}")
    temporary.mkdir()
    with _sigterm_as_interrupt():
        try:
            yield temporary
            if final.exists():
                retired = final.with_name(f".{final.name}.old-{token}")
                os.replace(final, retired)
                os.replace(temporary, final)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise


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
