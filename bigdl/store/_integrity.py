"""The integrity manifest: what a store records about itself when written, and the checks against it.

``finish_store`` records, in the store's ``integrity`` attribute:

* ``checksum``: ``"crc32c"``, the codec every array's chunks end with;
* ``attributes``: a SHA-256 of every other group attribute (preprocessing
  state, row accounting, split counts per chunk, schema, window spec...);
* ``arrays``: per array, a SHA-256 of its metadata (shape, chunks, dtype,
  codecs, fill value), the chunks left unwritten on purpose (zarr writes no
  file for a chunk equal to the fill value) and the CRC-32C each chunk file
  ends with, in chunk order;
* ``rejects``: the CRC-32C of each ``rejects/*.parquet`` file.

Binding each chunk's checksum to its array and chunk index is what catches
two chunk files swapped, or a chunk copied in from another store: each of
them passes its own CRC-32C.  The digests are not a signature: whoever can
rewrite the store can rewrite the manifest; they catch edits, copies and
accidents, not an attacker.

What is checked where (see :func:`check_attributes` and :meth:`Manifest.chunk_problem`):

* opening a store compares every attribute and every array's metadata with
  the manifest (a few kilobytes of JSON, already in memory), so tampered
  preprocessing, row counts or a removed codec are refused before any data
  is read;
* every read of a chunk through bigdl checks that its file exists (unless it
  was absent on purpose) and ends with the CRC-32C recorded for that array
  and chunk: one 4-byte read per chunk, nothing hashed; zarr's ``crc32c``
  codec then checks the chunk's bytes against those 4 bytes while decoding;
* ``bigdl verify`` checks all of it for every chunk, hashing the chunk bytes
  itself, so it does not rely on the arrays' metadata.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
import numpy as np

from bigdl.errors import StoreCorruptedError
from bigdl.store._location import join, list_names, read_bytes, tail, zarr_store

__all__ = ["integrity_manifest", "Manifest", "check_attributes", "chunk_file",
           "chunk_coordinates", "chunk_label", "array_names", "has_checksum", "unreadable_manifest", "REPAIR"]

#: What to do about any integrity problem; every message ends with it.
REPAIR = "Re-create the store (run the ingest again) or restore it from a copy"
TRAILER_BYTES = 4  # zarr's crc32c codec appends the CRC-32C of the chunk's other bytes, little-endian


# ------------------------------------------------------------------ chunks and files
def chunk_coordinates(array):
    """Every chunk's grid coordinates, in chunk order (C order over the chunk grid)."""
    return itertools.product(*(range(count) for count in array.cdata_shape))


def chunk_file(array, coords) -> str:
    """The chunk's file relative to the store root, e.g. ``X/c/3/0``."""
    return f"{array.basename}/{array.metadata.encode_chunk_key(tuple(int(value) for value in coords))}"


def chunk_label(coords) -> str:
    """``"3"`` for chunk (3, 0) of a 2-d array, the whole tuple where a later axis has several chunks."""
    coords = tuple(int(value) for value in coords)
    return str(coords[0]) if not any(coords[1:]) else str(coords)


def array_names(group) -> list[str]:
    import warnings

    with warnings.catch_warnings():
        # The store's rejects/ folder holds Parquet files, not a zarr node;
        # zarr warns about it while listing the group's members.
        warnings.simplefilter("ignore")
        return sorted(group.array_keys())


def has_checksum(array) -> bool:
    from zarr.codecs import Crc32cCodec

    return any(isinstance(codec, Crc32cCodec) for codec in array.metadata.codecs)


def _trailer(path) -> bytes | None:
    """The last 4 bytes of a chunk file (its CRC-32C), or None when the file does not exist.

    One ``pread`` locally; one ranged GET on object storage.
    """
    return tail(os.fspath(path), TRAILER_BYTES)


def _reject_files(root) -> dict[str, str]:
    """The store's ``rejects/*.parquet`` files: name -> location."""
    return list_names(join(os.fspath(root), "rejects"), ".parquet")


# ------------------------------------------------------------------ digests
def _canonical(value) -> bytes:
    def default(item):
        if isinstance(item, np.generic):
            return item.item()
        return str(item)

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default).encode()


def _digest(value) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


def _attribute_digests(attrs: dict) -> dict[str, str]:
    return {name: _digest(value) for name, value in sorted(attrs.items()) if name != "integrity"}


def _metadata_digest(array) -> str:
    return _digest(array.metadata.to_dict())


def integrity_manifest(path: str | os.PathLike) -> dict:
    """The manifest ``finish_store`` records, from a complete store's files and attributes.

    Parameters
    ----------
    path : str or path
        A complete store: arrays written, every other attribute set.

    Returns
    -------
    dict
        ``checksum``, ``attributes`` (name -> SHA-256), ``arrays`` (name ->
        ``metadata`` SHA-256, ``absent`` chunk files, ``crc32c``: 8 hex digits
        per chunk, the 4 bytes its file ends with, ``00000000`` where absent)
        and ``rejects`` (file -> CRC-32C).
    """
    import google_crc32c
    import zarr

    root = os.fspath(path)
    group = zarr.open_group(zarr_store(root, read_only=True), mode="r", use_consolidated=False)
    arrays = {}
    for name in array_names(group):
        array = group[name]
        if not has_checksum(array):
            raise RuntimeError(f"bigdl internal error: array {name!r} of {str(root)!r} has no crc32c codec.")
        absent, trailers = [], []
        for coords in chunk_coordinates(array):
            file = chunk_file(array, coords)
            trailer = _trailer(join(root, file))
            if trailer is None:
                absent.append(file)
            trailers.append(trailer or bytes(TRAILER_BYTES))
        arrays[name] = {"metadata": _metadata_digest(array), "absent": absent, "crc32c": b"".join(trailers).hex()}
    rejects = {name: google_crc32c.value(read_bytes(part)) for name, part in sorted(_reject_files(root).items())}
    return {"checksum": "crc32c", "attributes": _attribute_digests(dict(group.attrs)), "arrays": arrays,
            "rejects": rejects}


# ------------------------------------------------------------------ the manifest as read back
@dataclass
class ArrayRecord:
    """What the manifest says about one array; ``metadata`` and ``trailers`` are None in format-1 manifests."""

    metadata: str | None
    absent: frozenset
    trailers: bytes | None


def unreadable_manifest(manifest) -> str:
    """Why a format-2 store's manifest cannot be used (for messages)."""
    state = "missing" if manifest is None else "malformed"
    return f"its integrity manifest (the 'integrity' attribute) is {state}, so nothing in it can be checked"


class Manifest:
    """A store's integrity manifest, parsed: the checks of attributes, arrays and chunks against it.

    Each array's record is decoded when first used, so a task that checks
    one array's chunks decodes only that array's checksums.

    Parameters
    ----------
    manifest : dict
        The store's ``integrity`` attribute.
    bound : bool
        Whether it binds chunks and attributes (format 2); a format-1
        manifest only lists the chunks absent on purpose.

    Raises
    ------
    TypeError, KeyError, ValueError
        A format-2 manifest without its parts.
    """

    def __init__(self, manifest: dict, *, bound: bool):
        self.raw, self.bound = manifest, bound
        self.checksum = manifest.get("checksum")
        self._records: dict[str, ArrayRecord] = {}
        if bound:
            self.attributes = dict(manifest["attributes"])
            self.array_names = set(dict(manifest["arrays"]))
            self.rejects = dict(manifest["rejects"])
        else:
            self.attributes, self.rejects = None, None
            self.array_names = set(dict(manifest.get("absent_chunks", {})))

    @classmethod
    def from_attrs(cls, path, attrs: dict) -> "Manifest | None":
        """The manifest of a store's attributes; None for a format-1 store without one.

        Raises
        ------
        StoreCorruptedError
            A format-2 store whose manifest is missing, or any malformed manifest.
        """
        manifest = attrs.get("integrity")
        bound = attrs.get("format_version") != 1
        if manifest is None and not bound:
            return None  # format 1 before bigdl recorded any manifest
        try:
            return cls(manifest, bound=bound)
        except (TypeError, KeyError, ValueError, AttributeError):
            raise _manifest_error(path, manifest) from None

    def record(self, name: str, path=None) -> ArrayRecord | None:
        """The manifest's record of array ``name`` (None if it records none)."""
        if name not in self.array_names:
            return None
        if name not in self._records:
            try:
                if self.bound:
                    item = self.raw["arrays"][name]
                    self._records[name] = ArrayRecord(str(item["metadata"]), frozenset(item["absent"]),
                                                      bytes.fromhex(item["crc32c"]))
                else:
                    self._records[name] = ArrayRecord(None, frozenset(self.raw["absent_chunks"][name]), None)
            except (TypeError, KeyError, ValueError):
                raise _manifest_error(path, self.raw) from None
        return self._records[name]

    def __getstate__(self):
        # Views pickle into every task: send the manifest as recorded, decode it again there.
        return {"raw": self.raw, "bound": self.bound}

    def __setstate__(self, state):
        self.__init__(state["raw"], bound=state["bound"])

    # -- attributes and array metadata (at open) ------------------------------
    def attribute_problems(self, group, attrs: dict, path=None) -> list[dict]:
        """Every attribute and array whose recorded digest differs (empty for format-1 manifests)."""
        if not self.bound:
            return []
        problems = []
        current = _attribute_digests(attrs)
        for name in sorted(set(self.attributes) | set(current)):
            if name not in current:
                change = "was removed"
            elif name not in self.attributes:
                change = "was added"
            elif current[name] != self.attributes[name]:
                change = "differs from the value it was written with"
            else:
                continue
            problems.append({"array": None, "chunk": None, "file": "zarr.json", "attribute": name,
                             "problem": f"attribute {name!r} {change}"})
        present = set(array_names(group))
        for name in sorted(present | self.array_names):
            record = self.record(name, path)
            if name not in present:
                problem = f"array {name!r} was removed"
            elif record is None:
                problem = f"array {name!r} was added"
            elif self.checksum == "crc32c" and not has_checksum(group[name]):
                problem = (f"array {name!r} lost its crc32c codec: its metadata was edited (the manifest records "
                           "crc32c), so its chunks would be read unchecked")
            elif _metadata_digest(group[name]) != record.metadata:
                problem = f"array {name!r} metadata (shape, chunks, dtype, codecs, fill value) was edited"
            elif len(record.trailers) != group[name].nchunks * TRAILER_BYTES:
                raise _manifest_error(path, self.raw)
            else:
                continue
            problems.append({"array": name, "chunk": None, "file": f"{name}/zarr.json", "attribute": None,
                             "problem": problem})
        return problems

    def rejects_problems(self, root) -> list[dict]:
        """Reject files changed, removed or added since the store was written (empty for format-1 manifests)."""
        if not self.bound:
            return []
        import google_crc32c

        present = _reject_files(root)
        problems = []
        for part in sorted(set(present) | set(self.rejects)):
            if part not in present:
                problem = "was removed"
            elif part not in self.rejects:
                problem = "was added"
            elif google_crc32c.value(read_bytes(present[part]) or b"") != self.rejects[part]:
                problem = "fails its checksum: its bytes changed after it was written"
            else:
                continue
            problems.append({"array": None, "chunk": None, "file": f"rejects/{part}", "attribute": None,
                             "problem": f"reject file {part!r} {problem}"})
        return problems

    # -- one chunk (at every read) -----------------------------------------------
    def chunk_problem(self, root, name: str, array, coords) -> str | None:
        """What is wrong with one chunk's file against the manifest (None if nothing): one 4-byte read.

        Missing (unless absent on purpose), present where none was written,
        or ending with another chunk's CRC-32C (swapped or copied in).
        """
        record = self.record(name, root)
        if record is None:
            return None
        file = chunk_file(array, coords)
        trailer = _trailer(join(os.fspath(root), file))
        if trailer is None:
            if file in record.absent:
                return None
            return "is missing: its file was deleted after the store was written (zarr would read it as fill values)"
        if file in record.absent:
            return ("exists although the store was written without it (a chunk of fill values has no file): it was "
                    "copied in from elsewhere")
        if record.trailers is None:
            return None
        index = int(np.ravel_multi_index(tuple(int(value) for value in coords), array.cdata_shape))
        expected = record.trailers[index * TRAILER_BYTES:(index + 1) * TRAILER_BYTES]
        if trailer == expected:
            return None
        return _misplaced(array, record, trailer, expected, index)


def _misplaced(array, record: ArrayRecord, trailer: bytes, expected: bytes, index: int) -> str:
    """Why a chunk file ending with ``trailer`` is not chunk ``index`` (naming the chunk it is, if any)."""
    if len(trailer) < TRAILER_BYTES:
        return f"is truncated: its file holds {len(trailer)} bytes, less than its own checksum"
    found = f"ends with checksum {trailer.hex()}, not the {expected.hex()} written at this position"
    sums = np.frombuffer(record.trailers, dtype="<u4")
    twins = []
    for other in np.flatnonzero(sums == np.frombuffer(trailer, dtype="<u4")[0]):
        coords = np.unravel_index(other, array.cdata_shape)
        if other != index and chunk_file(array, coords) not in record.absent:
            twins.append(chunk_label(coords))
    if twins:
        return (f"holds the data of chunk {', '.join(twins)} of the same array ({found}): chunk files were "
                "swapped or copied, so its rows would be misaligned with the other arrays")
    return (f"is not the chunk written here ({found}): it was replaced, e.g. copied from another store, so "
            "its rows would be misaligned with the other arrays")


def _manifest_error(path, manifest) -> StoreCorruptedError:
    return StoreCorruptedError(
        f"The store {str(path)!r} was changed after it was written: {unreadable_manifest(manifest)}. {REPAIR}.",
        store=str(path), attribute="integrity", file="zarr.json")


def check_attributes(path, group, attrs: dict) -> Manifest | None:
    """Refuse a store whose attributes or array metadata changed since it was written; its manifest.

    Cheap: the attributes and the arrays' metadata are a few kilobytes
    already read with the group; no chunk is read.

    Raises
    ------
    StoreCorruptedError
        Naming every changed attribute and array (``attribute`` / ``array``: the first).
    """
    manifest = Manifest.from_attrs(path, attrs)
    problems = [] if manifest is None else manifest.attribute_problems(group, attrs, path)
    if problems:
        first = problems[0]
        raise StoreCorruptedError(
            f"The store {str(path)!r} was changed after it was written: "
            f"{'; '.join(item['problem'] for item in problems)}. Its samples would be read with settings or "
            f"checks they were not written with, so bigdl refuses it. {REPAIR}; `bigdl verify {path}` lists "
            "every change.",
            store=str(path), array=first["array"], attribute=first["attribute"], file=first["file"])
    return manifest
