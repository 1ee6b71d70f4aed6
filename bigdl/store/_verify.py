"""Store integrity: chunk checksums, naming a damaged chunk when it is read, and ``bigdl verify``.

Two layers protect a store against changes on disk after it was written:

* every chunk carries a CRC-32C of its stored bytes (zarr v3's ``crc32c``
  codec after the compressor, set by ``create_arrays``), so any read of a
  damaged chunk fails inside zarr's decoder instead of decompressing to wrong
  numbers (a flipped byte in a Blosc-lz4 block decodes silently otherwise);
* ``finish_store`` records an integrity manifest in the store's attributes:
  the chunks that were left unwritten on purpose (zarr writes no file for a
  chunk equal to the fill value).  A chunk file deleted later, which zarr
  would read as fill values without a word, is then told apart.

The read paths (``Dataset.read_chunk``, the dask arrays of a ``Dataset``,
``ChunkLoader``) go through :func:`read_checked`, which turns a decode error
into :class:`~bigdl.errors.StoreCorruptedError` naming the store, the array,
the chunk and its file.  :func:`verify_store` reads every chunk (on the
cluster when a client is given) and lists every problem.  Stores written
before checksums were added are verified too, but only damage that breaks
decompression can be found in them; the report says so.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from bigdl.errors import StoreCorruptedError

__all__ = ["verify_store", "VerifyReport", "integrity_manifest", "chunk_checksums", "read_checked",
           "CheckedArray"]

CHUNKS_PER_TASK = 16


# ------------------------------------------------------------------ chunks and files
def _coordinates(array):
    """Every chunk's grid coordinates, in order."""
    return itertools.product(*(range(count) for count in array.cdata_shape))


def _chunk_file(array, coords) -> str:
    """The chunk's file relative to the store root, e.g. ``X/c/3/0``."""
    return f"{array.basename}/{array.metadata.encode_chunk_key(tuple(coords))}"


def _label(coords) -> str:
    coords = tuple(int(value) for value in coords)
    return str(coords[0]) if not any(coords[1:]) else str(coords)


def _array_names(group) -> list[str]:
    import warnings

    with warnings.catch_warnings():
        # The store's rejects/ folder holds Parquet files, not a zarr node;
        # zarr warns about it while listing the group's members.
        warnings.simplefilter("ignore")
        return sorted(group.array_keys())


def _has_checksum(array) -> bool:
    from zarr.codecs import Crc32cCodec

    return any(isinstance(codec, Crc32cCodec) for codec in array.metadata.codecs)


def integrity_manifest(path: str | os.PathLike) -> dict:
    """What ``finish_store`` records: checksum codec and the chunks absent on purpose.

    Parameters
    ----------
    path : str or path
        A complete store (its arrays written).

    Returns
    -------
    dict
        ``{"checksum": "crc32c" or None, "absent_chunks": {array: [chunk files]}}``.
    """
    import zarr

    root = Path(path)
    group = zarr.open_group(str(root), mode="r")
    absent, checksummed = {}, True
    for name in _array_names(group):
        array = group[name]
        checksummed &= _has_checksum(array)
        absent[name] = [file for file in (_chunk_file(array, coords) for coords in _coordinates(array))
                        if not (root / file).exists()]
    return {"checksum": "crc32c" if checksummed else None, "absent_chunks": absent}


def chunk_checksums(path: str | os.PathLike, arrays=None) -> dict[str, dict[str, int]]:
    """CRC-32C of every chunk file's bytes, per array: compare two stores chunk by chunk.

    Parameters
    ----------
    path : str or path
        The store.
    arrays : list of str, optional
        Default: every array of the store.

    Returns
    -------
    dict
        ``{array: {chunk file: crc32c}}``; absent chunks are left out.
    """
    import google_crc32c
    import zarr

    root = Path(path)
    group = zarr.open_group(str(root), mode="r")
    result = {}
    for name in arrays or _array_names(group):
        array = group[name]
        sums = {}
        for coords in _coordinates(array):
            file = root / _chunk_file(array, coords)
            if file.exists():
                sums[_chunk_file(array, coords)] = google_crc32c.value(file.read_bytes())
        result[name] = sums
    return result


# ------------------------------------------------------------------ reads that name the chunk
def _chunks_touched(array, selection):
    """Grid coordinates of the chunks a basic selection reads (all of a dimension when unsure)."""
    if not isinstance(selection, tuple):
        selection = (selection,)
    ranges = []
    for axis, (size, chunk) in enumerate(zip(array.shape, array.chunks)):
        item = selection[axis] if axis < len(selection) else slice(None)
        if isinstance(item, slice) and item.step in (None, 1):
            start, stop, _ = item.indices(size)
            ranges.append(range(start // chunk, (stop - 1) // chunk + 1) if stop > start else range(0))
        elif isinstance(item, int):
            index = item % size if size else 0
            ranges.append(range(index // chunk, index // chunk + 1))
        else:
            ranges.append(range(-(-size // chunk)))
    return itertools.product(*ranges)


def _problem(error: Exception) -> str:
    text = str(error)
    if "checksum" in text.lower():
        return f"fails its checksum: its bytes changed after it was written ({text})"
    return f"cannot be decoded ({type(error).__name__}: {text})"


def _corrupted(store, name: str, array, coords, error: Exception) -> StoreCorruptedError:
    file = _chunk_file(array, coords)
    return StoreCorruptedError(
        f"The store {str(store)!r} is damaged: chunk {_label(coords)} of array {name!r} (file {file}) "
        f"{_problem(error)}. Re-create the store (run the ingest again) or restore it from a copy; "
        f"`bigdl verify {store}` lists every damaged chunk.",
        store=str(store), array=name, chunk=tuple(int(value) for value in coords), file=file,
    )


def read_checked(array, selection, *, store, name: str):
    """``array[selection]``, raising StoreCorruptedError that names the damaged chunk.

    Parameters
    ----------
    array : zarr.Array
    selection : slice, int or tuple of them
    store : str or path
        The store's path, for the message.
    name : str
        The array's name in the store (``"X"``, ``"y"``, ...).

    Raises
    ------
    StoreCorruptedError
        When a chunk in the selection fails its checksum or cannot be decoded.
        Other errors are raised unchanged.
    """
    try:
        return array[selection]
    except Exception as error:  # zarr's codecs raise ValueError, RuntimeError, ... for a bad chunk
        # Find which chunk of the selection it was by decoding them one by one.
        for coords in _chunks_touched(array, selection):
            try:
                array.get_block_selection(tuple(coords))
            except Exception as chunk_error:  # noqa: BLE001 - the damaged chunk, reported below
                raise _corrupted(store, name, array, coords, chunk_error) from error
        raise


class CheckedArray:
    """A zarr array whose reads go through :func:`read_checked` (for ``dask.array.from_array``).

    Parameters
    ----------
    array : zarr.Array
    store : str
        The store's path, for messages.
    name : str
        The array's name in the store.
    """

    def __init__(self, array, store: str, name: str):
        self.array, self.store, self.name = array, str(store), name

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __getitem__(self, selection):
        return read_checked(self.array, selection, store=self.store, name=self.name)


# ------------------------------------------------------------------ verify
@dataclass
class VerifyReport:
    """What :func:`verify_store` found: printable, and a dict with :meth:`to_dict`.

    Attributes
    ----------
    path : str
    n_chunks : int
        Chunks checked over all arrays.
    problems : list of dict
        ``array``, ``chunk`` (grid coordinates), ``file`` and ``problem`` of each damaged chunk.
    checksums : dict
        Array name -> whether its chunks carry a CRC-32C.
    manifest : bool
        Whether the store records which chunks are absent on purpose.
    """

    path: str
    n_chunks: int
    problems: list[dict] = field(default_factory=list)
    checksums: dict[str, bool] = field(default_factory=dict)
    manifest: bool = True

    @property
    def ok(self) -> bool:
        """True when no chunk is damaged or missing."""
        return not self.problems

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "n_chunks": self.n_chunks, "problems": self.problems,
                "checksums": self.checksums, "manifest": self.manifest}

    def __str__(self) -> str:
        unchecked = [name for name, present in self.checksums.items() if not present]
        lines = [f"store      {self.path}: {len(self.checksums)} arrays, {self.n_chunks} chunks read"]
        if unchecked:
            lines.append(f"checksums  none on {', '.join(unchecked)} (written before bigdl stored chunk checksums): "
                         "only damage that breaks decompression can be found there")
        else:
            lines.append("checksums  crc32c on every chunk")
        if not self.manifest:
            lines.append("manifest   none: a deleted chunk file cannot be told from a chunk left empty")
        if self.ok:
            lines.append("result     OK: every chunk reads back intact")
        else:
            lines.append(f"result     DAMAGED: {len(self.problems)} chunk(s); re-create the store (run the ingest "
                         "again) or restore it from a copy")
            lines.extend(f"  array {item['array']!r} chunk {_label(item['chunk'])} ({item['file']}): {item['problem']}"
                         for item in self.problems)
        return "\n".join(lines)


def verify_store(path: str | os.PathLike, *, client=None, progress: bool = True) -> VerifyReport:
    """Read and check every chunk of every array of a store.

    Each chunk is decoded (which checks its CRC-32C) and, where the store has
    an integrity manifest, a missing chunk file is reported unless it was
    absent on purpose.  The chunks are checked in Dask tasks: on the cluster
    of ``client`` (or the current one), else in local threads.

    Parameters
    ----------
    path : str or path
        The store.
    client : distributed.Client, optional
    progress : bool, default True

    Returns
    -------
    VerifyReport
        ``report.ok`` is False when a chunk is damaged; ``print(report)`` lists them.

    Examples
    --------
    >>> report = bigdl.store.verify_store("work/flights.zarr")   # doctest: +SKIP
    >>> report.ok                                               # doctest: +SKIP
    True
    """
    from bigdl.runtime import run_tasks
    from bigdl.store._format import open_group

    root = Path(path)
    group, attrs = open_group(root)
    manifest = attrs.get("integrity")
    jobs, checksums, total = [], {}, 0
    for name in _array_names(group):
        array = group[name]
        checksums[name] = _has_checksum(array)
        coords = [tuple(item) for item in _coordinates(array)]
        total += len(coords)
        absent = None if manifest is None else list(manifest.get("absent_chunks", {}).get(name, []))
        jobs.extend((str(root), name, coords[start:start + CHUNKS_PER_TASK], absent)
                    for start in range(0, len(coords), CHUNKS_PER_TASK))
    found = run_tasks("bigdl-verify", _verify_chunks, jobs, desc=f"verify {root.name}", progress=progress,
                      client=client)
    problems = [item for items in found for item in items]
    return VerifyReport(str(root), total, problems, checksums, manifest is not None)


def _verify_chunks(path: str, name: str, coords: list[tuple], absent: list[str] | None) -> list[dict]:
    """Problems among some chunks of one array (runs in a Dask task)."""
    import zarr

    root = Path(path)
    array = zarr.open_group(path, mode="r")[name]
    expected_absent = set(absent or [])
    problems = []
    for chunk in coords:
        file = _chunk_file(array, chunk)
        if not (root / file).exists():
            if absent is not None and file not in expected_absent:
                problems.append({"array": name, "chunk": list(chunk), "file": file,
                                 "problem": "is missing: its file was deleted after the store was written "
                                            "(zarr would read it as fill values)"})
            continue
        try:
            array.get_block_selection(chunk)
        except Exception as error:  # noqa: BLE001 - every decode failure is a finding
            problems.append({"array": name, "chunk": list(chunk), "file": file, "problem": _problem(error)})
    return problems
