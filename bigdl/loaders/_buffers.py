"""The loader's decode buffers, kept by the process between passes and between loaders.

A shuffle buffer is a few whole chunks decoded side by side into one array
(a slot); a pass uses a few slots and, when it ends, gives them back here.
The next pass, of the same loader or of a new one over chunks no larger,
takes them instead of allocating: a fresh array's pages must be zeroed and
faulted in on first touch, which on a virtual machine that returns freed
memory to its host costs more than decoding the chunk.  The pool keeps at
most :data:`KEEP` released sets (the newest); :func:`release_buffers` drops
them all.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["release_buffers"]

#: Released slot sets the pool keeps (the newest ones); a set is
#: ``(1 + ceil(prefetch / buffer_chunks))`` arrays of ``buffer_chunks`` chunks.
KEEP = 2


class BufferPool:
    """Slot sets (lists of ``{name: array}``) given back by finished passes, newest last; thread-safe."""

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._sets: list[list[dict]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _fits(slots: list[dict], count: int, rows: int, spec: dict) -> bool:
        return len(slots) == count and all(
            slot.keys() == spec.keys() and all(
                len(slot[name]) >= rows and slot[name].shape[1:] == shape and slot[name].dtype == dtype
                for name, (shape, dtype) in spec.items())
            for slot in slots)

    def take(self, count: int, rows: int, spec: dict) -> list[dict]:
        """``count`` slots of at least ``rows`` rows, ``spec`` = ``{name: (trailing shape, dtype)}``.

        A released set that fits is taken out of the pool (a pass running at
        the same time gets another); otherwise fresh arrays are allocated.
        """
        with self._lock:
            for index in range(len(self._sets) - 1, -1, -1):
                if self._fits(self._sets[index], count, rows, spec):
                    return self._sets.pop(index)
        return [{name: np.empty((rows, *shape), dtype=dtype) for name, (shape, dtype) in spec.items()}
                for _ in range(count)]

    def give_back(self, slots: list[dict]) -> None:
        """Keep ``slots`` for the next pass; the oldest sets beyond :attr:`keep` are dropped (freed)."""
        with self._lock:
            self._sets.append(slots)
            if len(self._sets) > self.keep:
                del self._sets[:len(self._sets) - self.keep]

    def held_bytes(self) -> int:
        """Bytes of the released sets the pool holds now."""
        with self._lock:
            return sum(array.nbytes for slots in self._sets for slot in slots for array in slot.values())

    def clear(self) -> int:
        """Drop every released set; returns the bytes freed."""
        with self._lock:
            freed = sum(array.nbytes for slots in self._sets for slot in slots for array in slot.values())
            self._sets.clear()
        return freed


#: The process's pool: every ChunkLoader pass takes from it and gives back to it.
POOL = BufferPool()


def release_buffers() -> int:
    """Free the decode buffers that finished ChunkLoader passes left for the next one.

    Each pass gives its buffers (``chunk size x buffer_chunks x (1 + ceil(prefetch
    / buffer_chunks))`` bytes, 128 MiB with the defaults and 16 MiB chunks) back to
    a pool of the process so that the next pass, of any loader, decodes into
    memory already touched; the pool keeps the newest two sets.  Call this when
    a process that trained goes on to other work and wants that memory back.

    Returns
    -------
    int
        The bytes freed.
    """
    return POOL.clear()
