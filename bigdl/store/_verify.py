"""Store integrity on reads and in ``bigdl verify``: errors naming the damaged chunk, and the full check.

Three layers protect a store against changes on disk after it was written:

* every chunk carries a CRC-32C of its stored bytes (zarr v3's ``crc32c``
  codec after the compressor, set by ``create_arrays``), so any read of a
  damaged chunk fails inside zarr's decoder instead of decompressing to wrong
  numbers (a flipped byte in a Blosc-lz4 block decodes silently otherwise);
* the integrity manifest (:mod:`bigdl.store._integrity`) binds each chunk's
  CRC-32C to its array and chunk index and records digests of the attributes
  and the arrays' metadata: opening a store checks the digests; every read of
  a chunk checks that its file exists (unless it was left unwritten on
  purpose) and is the chunk written at that position;
* :func:`verify_store` checks everything, every chunk, on the cluster when a
  client is given, and lists every problem.

The read paths (``Dataset.read_chunk``, the dask arrays of a ``Dataset``,
``ChunkLoader``, the ``Trainer``) go through :func:`read_checked`, which raises
:class:`~bigdl.errors.StoreCorruptedError` naming the store, the array, the
chunk and its file.  Stores of format 1 are read and verified with what their
manifest allows (missing chunk files; no positions, no attribute digests), and
stores written before checksums are checked for undecodable chunks only; the
report says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bigdl.errors import StoreCorruptedError
from bigdl.store._integrity import REPAIR, Manifest, array_names, chunk_coordinates, chunk_file, chunk_label, \
    has_checksum, unreadable_manifest
from bigdl.store._location import display, is_remote, join, read_bytes, zarr_store

__all__ = ["verify_store", "VerifyReport", "chunk_checksums", "read_checked", "CheckedArray"]

CHUNKS_PER_TASK = 16


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

    from bigdl.store._commit import resolve_store

    root = resolve_store(path)
    group = zarr.open_group(zarr_store(root, read_only=True), mode="r")
    result = {}
    for name in arrays or array_names(group):
        array = group[name]
        sums = {}
        for coords in chunk_coordinates(array):
            data = read_bytes(join(root, chunk_file(array, coords)))
            if data is not None:
                sums[chunk_file(array, coords)] = google_crc32c.value(data)
        result[name] = sums
    return result


# ------------------------------------------------------------------ reads that name the chunk
def _chunks_touched(array, selection):
    """Grid coordinates of the chunks a basic selection reads (all of a dimension when unsure)."""
    import itertools

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


def _corrupted(store, name: str, array, coords, problem: str) -> StoreCorruptedError:
    file = chunk_file(array, coords)
    return StoreCorruptedError(
        f"The store {str(store)!r} is damaged: chunk {chunk_label(coords)} of array {name!r} (file {file}) "
        f"{problem}. {REPAIR}; `bigdl verify {store}` lists every damaged chunk.",
        store=str(store), array=name, chunk=tuple(int(value) for value in coords), file=file,
    )


def read_checked(array, selection, *, store, name: str, manifest: Manifest | None = None, out=None):
    """``array[selection]``, raising StoreCorruptedError that names the damaged chunk.

    Parameters
    ----------
    array : zarr.Array
    selection : slice, int or tuple of them
    store : str or path
        The store's path, for the message.
    name : str
        The array's name in the store (``"X"``, ``"y"``, ...).
    manifest : Manifest, optional
        The store's integrity manifest: each chunk read is first checked
        against it (its file exists unless absent on purpose, and ends with
        the CRC-32C recorded for this array and chunk; 4 bytes read per chunk).
    out : numpy.ndarray, optional
        A C-contiguous array of the selection's shape and the array's dtype
        to decode into (no fresh allocation; the loader reuses its buffers).
        Returned.

    Raises
    ------
    StoreCorruptedError
        When a chunk in the selection is missing, misplaced, fails its
        checksum or cannot be decoded.  Other errors are raised unchanged.
    """
    if manifest is not None:
        root = os.fspath(store)
        for coords in _chunks_touched(array, selection):
            problem = manifest.chunk_problem(root, name, array, coords)
            if problem is not None:
                raise _corrupted(store, name, array, coords, problem)
    try:
        if out is None:
            return array[selection]
        from zarr.core.buffer.cpu import NDBuffer

        array.get_basic_selection(selection, out=NDBuffer.from_numpy_array(out))
        return out
    except Exception as error:  # zarr's codecs raise ValueError, RuntimeError, ... for a bad chunk
        # Find which chunk of the selection it was by decoding them one by one.
        for coords in _chunks_touched(array, selection):
            try:
                array.get_block_selection(tuple(coords))
            except Exception as chunk_error:  # noqa: BLE001 - the damaged chunk, reported below
                raise _corrupted(store, name, array, coords, _problem(chunk_error)) from error
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
    manifest : Manifest, optional
        The store's integrity manifest.
    """

    def __init__(self, array, store: str, name: str, manifest: Manifest | None = None):
        self.array, self.store, self.name, self.manifest = array, str(store), name, manifest

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
        return read_checked(self.array, selection, store=self.store, name=self.name, manifest=self.manifest)


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
        ``array``, ``chunk`` (grid coordinates), ``file``, ``attribute`` and
        ``problem`` of each finding: a damaged, missing or misplaced chunk, a
        changed attribute or array metadata, a changed reject file.
    checksums : dict
        Array name -> whether its chunks carry a CRC-32C.
    manifest : bool
        Whether the store has an integrity manifest.
    format_version : int
        The store's format (1: the manifest lists absent chunks only).
    recorded_checksum : str or None
        The checksum the manifest records (``"crc32c"``).
    """

    path: str
    n_chunks: int
    problems: list[dict] = field(default_factory=list)
    checksums: dict[str, bool] = field(default_factory=dict)
    manifest: bool = True
    format_version: int = 2
    recorded_checksum: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is damaged, missing, misplaced or changed."""
        return not self.problems

    def to_dict(self) -> dict:
        """The report's fields as a JSON-ready dict (``bigdl verify --json``).

        Returns
        -------
        dict
            ``path``, ``ok``, ``n_chunks``, ``problems``, ``checksums``,
            ``manifest``, ``format_version``, ``recorded_checksum``.
        """
        return {"path": self.path, "ok": self.ok, "n_chunks": self.n_chunks, "problems": self.problems,
                "checksums": self.checksums, "manifest": self.manifest, "format_version": self.format_version,
                "recorded_checksum": self.recorded_checksum}

    def __str__(self) -> str:
        unchecked = [name for name, present in self.checksums.items() if not present]
        lines = [f"store      {self.path}: format {self.format_version}, {len(self.checksums)} arrays, "
                 f"{self.n_chunks} chunks read"]
        if unchecked and self.recorded_checksum:
            lines.append(f"checksums  missing from the metadata of {', '.join(unchecked)} although the manifest "
                         f"records {self.recorded_checksum}: the metadata was edited (checked against the "
                         "manifest below)")
        elif unchecked:
            lines.append(f"checksums  none on {', '.join(unchecked)} (written before bigdl stored chunk checksums): "
                         "only damage that breaks decompression can be found there")
        else:
            lines.append("checksums  crc32c on every chunk")
        if not self.manifest:
            lines.append("manifest   none: a deleted chunk file cannot be told from a chunk left empty")
        elif self.format_version == 1:
            lines.append("manifest   format 1: deleted chunk files are found, but chunk positions and attributes are "
                         "not recorded (swapped chunks, edited attributes go unseen); re-create the store to have "
                         "them checked")
        else:
            lines.append("manifest   every chunk bound to its array and position; attributes, array metadata "
                         "and reject files checked")
        if self.ok:
            lines.append("result     OK: every chunk reads back intact")
        else:
            lines.append(f"result     DAMAGED: {len(self.problems)} problem(s); {REPAIR.lower()}")
            lines.extend(f"  {_where(item)}: {item['problem']}" for item in self.problems)
        return "\n".join(lines)


def _where(item: dict) -> str:
    if item.get("chunk") is not None:
        return f"array {item['array']!r} chunk {chunk_label(item['chunk'])} ({item['file']})"
    return item["file"]


def verify_store(path: str | os.PathLike, *, client=None, progress: bool = True) -> VerifyReport:
    """Check a whole store against its integrity manifest: every chunk, attribute and array.

    Each chunk file is read and checked: it exists unless it was absent on
    purpose, its bytes match the CRC-32C it ends with, that CRC-32C is the one
    recorded for this array and chunk index (so swapped chunks and chunks
    copied from another store are found), and it decodes.  The attributes,
    every array's metadata (its own ``zarr.json`` and the consolidated copy)
    and the reject files are compared with their recorded digests.  The
    chunks are checked in Dask tasks: on the cluster of ``client`` (or the
    current one), else in local threads.

    Parameters
    ----------
    path : str or path
        The store.
    client : distributed.Client, optional
    progress : bool, default True

    Returns
    -------
    VerifyReport
        ``report.ok`` is False when anything is damaged; ``print(report)`` lists every problem.

    Raises
    ------
    StoreFormatError
        Not a bigdl store, or a format this bigdl does not read.

    Examples
    --------
    >>> report = bigdl.store.verify_store("work/flights.zarr")   # doctest: +SKIP
    >>> report.ok                                               # doctest: +SKIP
    True
    """
    import zarr

    from bigdl.runtime import run_tasks
    from bigdl.store._format import open_root

    root, group, attrs = open_root(path, check_integrity=False)
    root = os.fspath(root)
    shown = display(path) if is_remote(path) else str(root)
    problems = []
    try:
        manifest = Manifest.from_attrs(root, attrs)
    except StoreCorruptedError:
        manifest = None
        problems.append({"array": None, "chunk": None, "file": "zarr.json", "attribute": "integrity",
                         "problem": unreadable_manifest(attrs.get("integrity"))})
    if manifest is not None:
        # The consolidated copy is what readers use; each array's own zarr.json is what plain zarr falls back to.
        seen = set()
        for view in (group, zarr.open_group(zarr_store(root, read_only=True), mode="r", use_consolidated=False)):
            for item in manifest.attribute_problems(view, attrs, root):
                key = (item["file"], item["problem"])
                if key not in seen:
                    seen.add(key)
                    problems.append(item)
        problems.extend(manifest.rejects_problems(root))
    jobs, checksums, total = [], {}, 0
    for name in array_names(group):
        array = group[name]
        checksums[name] = has_checksum(array)
        coords = [tuple(item) for item in chunk_coordinates(array)]
        total += len(coords)
        # Each task reads the manifest from the store itself: it can be megabytes for a big store.
        jobs.extend((str(root), name, coords[start:start + CHUNKS_PER_TASK], manifest is not None)
                    for start in range(0, len(coords), CHUNKS_PER_TASK))
    found = run_tasks("bigdl-verify", _verify_chunks, jobs, desc=f"verify {shown.rstrip('/').rsplit('/', 1)[-1]}",
                      progress=progress, client=client)
    problems.extend(item for items in found for item in items)
    return VerifyReport(shown, total, problems, checksums, manifest is not None,
                        attrs.get("format_version"), None if manifest is None else manifest.checksum)


def _verify_chunks(path: str, name: str, coords: list[tuple], with_manifest: bool) -> list[dict]:
    """Problems among some chunks of one array (runs in a Dask task)."""
    import google_crc32c
    import zarr

    root = path
    group = zarr.open_group(zarr_store(path, read_only=True), mode="r")
    array = group[name]
    manifest = Manifest.from_attrs(path, dict(group.attrs)) if with_manifest else None
    bound = manifest is not None and manifest.checksum == "crc32c" and manifest.bound
    problems = []
    for chunk in coords:
        file = chunk_file(array, chunk)
        problem = None if manifest is None else manifest.chunk_problem(root, name, array, chunk)
        data = read_bytes(join(root, file)) if problem is None else None
        if data is not None:
            # The chunk's own CRC-32C, computed here: it does not rely on the array's metadata listing the codec.
            if bound and (len(data) < 4 or google_crc32c.value(data[:-4]) != int.from_bytes(data[-4:], "little")):
                problem = "fails its checksum: its bytes changed after it was written"
            else:
                try:
                    array.get_block_selection(chunk)
                except Exception as error:  # noqa: BLE001 - every decode failure is a finding
                    problem = _problem(error)
        if problem is not None:
            problems.append({"array": name, "chunk": list(chunk), "file": file, "attribute": None,
                             "problem": problem})
    return problems
