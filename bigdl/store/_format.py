"""The on-disk store format: layout constants, chunk sizing, codecs, split assignment.

A store is a Zarr v3 group (see ``ARCHITECTURE.md``, "The store"): ``X``,
``y``, ``split`` and ``record`` arrays sharing the sample axis and one row
chunking, attributes describing schema, preprocessing and row accounting, and
a ``rejects/`` folder of Parquet files.  Writing is in :mod:`bigdl.store._write`,
the atomic commit in :mod:`bigdl.store._commit`.
"""

from __future__ import annotations

import numpy as np

from bigdl._validation import Interval, Options, Predicate, check_params
from bigdl.errors import ParameterError, StoreFormatError

__all__ = [
    "FORMAT_VERSION", "SPLIT_CODES", "SPLIT_NAMES", "TASKS", "WRITER_PARAMETERS", "compressor", "rows_per_chunk_for",
    "check_split_parameters", "check_whole_chunk", "assign_split", "assign_folds", "open_group", "check_format_version",
    "TARGET_CHUNK_BYTES", "READABLE_FORMATS", "open_root",
]

#: The store format this bigdl writes.  2: the integrity manifest binds every chunk's checksum to its
#: array and chunk index and records digests of the attributes and array metadata.
FORMAT_VERSION = 2
#: The formats this bigdl reads.  Format 1 (bigdl 0.1.0 before format 2) is read with the checks its
#: manifest allows: missing chunk files are found, swapped chunks and edited attributes are not.
READABLE_FORMATS = (1, 2)
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
TASKS = ("classification", "regression")
# Chunks of about 16 MB uncompressed: big enough to stream efficiently and
# compress well, small enough that several fit in a worker's memory.
TARGET_CHUNK_BYTES = 16 << 20
COMPRESSIONS = ("lz4", "zstd", "none")
# What every store writer accepts for its split, chunking and compression (messages name the writer).
FRACTION = Interval(float, 0, 1, closed="left")
WRITER_PARAMETERS = {
    "validation": [FRACTION],
    "test": [FRACTION],
    "seed": [Interval(int, 0, 2**64 - 1)],  # split keys are mixed with the seed as uint64
    "rows_per_chunk": [Interval(int, 1, None), None],
    "compression": [Options(COMPRESSIONS), None, Predicate(lambda value: not isinstance(value, str), "a zarr codec")],
}


def compressor(compression="lz4", *, owner: str = "compressor"):
    """The Zarr codec for a compression name or a codec.

    Parameters
    ----------
    compression : {"lz4", "zstd", "none"}, None or zarr codec, default "lz4"
        Blosc with that compressor, no compression (``"none"`` or None), or
        the codec itself.
    owner : str, default "compressor"
        The function whose ``compression=`` this is, named in errors.

    Returns
    -------
    zarr codec or None

    Raises
    ------
    ParameterError
        An unknown compression name.
    """
    from zarr.codecs import BloscCodec

    check_params(owner, {"compression": compression}, WRITER_PARAMETERS)
    if compression is None or compression == "none":
        return None
    if isinstance(compression, str):
        level = 5 if compression == "lz4" else 3
        return BloscCodec(cname=compression, clevel=level, shuffle="shuffle")
    return compression


def rows_per_chunk_for(n_features: int, itemsize: int = 4, target_bytes: int = TARGET_CHUNK_BYTES) -> int:
    """Rows per chunk so one chunk of ``X`` is about ``target_bytes`` uncompressed.

    Parameters
    ----------
    n_features : int
        Values per row of ``X``.
    itemsize : int, default 4
        Bytes per value.
    target_bytes : int, default TARGET_CHUNK_BYTES

    Returns
    -------
    int
        A multiple of 1024, at least 1024.
    """
    rows = max(1, target_bytes // max(1, n_features * itemsize))
    # A multiple of 1024 keeps batch slicing tidy for common batch sizes.
    return max(1024, rows // 1024 * 1024)


def check_split_parameters(owner: str, *, validation, test, seed, rows_per_chunk, compression="lz4",
                           unit: str = "rows") -> None:
    """Validate the parameters every store writer shares (:data:`WRITER_PARAMETERS`).

    Parameters
    ----------
    owner : str
        The writer (``"tabular"``, ``"from_arrays"``...), named in the message.
    validation, test : float
        Fractions in [0, 1) that together leave samples for training.
    seed : int
        The split's seed.
    rows_per_chunk : int or None
        Rows per store chunk, or None for the default.
    compression : str, None or zarr codec, default "lz4"
        As :func:`compressor` takes it.
    unit : str, default "rows"
        What a sample is called in the message (``"images"``, ``"steps"``).

    Raises
    ------
    ParameterError
        A value out of range, or ``validation + test >= 1``.
    """
    check_params(owner, {"validation": validation, "test": test, "seed": seed, "rows_per_chunk": rows_per_chunk,
                         "compression": compression}, WRITER_PARAMETERS)
    if validation + test >= 1:
        raise ParameterError(f"The 'validation' and 'test' parameters of {owner} must leave {unit} for training: "
                             f"validation + test must be < 1. Got {validation} + {test} instead.")


def check_whole_chunk(array, start: int, stop: int) -> None:
    """Refuse a write of rows ``start:stop`` that is not exactly one chunk of ``array``.

    Two tasks writing parts of one Zarr chunk overwrite each other's data
    silently (dask #12583); every parallel write in bigdl is one whole chunk.

    Parameters
    ----------
    array : zarr.Array
    start, stop : int
        The rows written.

    Raises
    ------
    RuntimeError
        The rows are not one whole chunk (a bug in bigdl, not in the data).
    """
    rows = array.chunks[0]
    if start % rows or (stop - start != rows and stop != array.shape[0]):
        raise RuntimeError(f"bigdl internal error: rows {start}-{stop} are not one whole chunk of {rows} rows.")


def assign_split(keys: np.ndarray, seed: int, validation: float, test: float) -> np.ndarray:
    """Split codes (0 train, 1 validation, 2 test) from stable 64-bit keys.

    A key's split depends only on the key and the seed, so re-ingesting the
    same data, or more data, puts every existing sample in the same split.

    Parameters
    ----------
    keys : numpy.ndarray of int
        One stable key per sample.
    seed : int
        In [0, 2**64).
    validation, test : float
        Expected fractions of the validation and test splits.

    Returns
    -------
    numpy.ndarray of uint8
    """
    with np.errstate(over="ignore"):
        mixed = _splitmix64(keys.astype(np.uint64) ^ _splitmix64(np.array([seed], dtype=np.uint64))[0])
    uniform = (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    codes = np.zeros(keys.shape, dtype=np.uint8)
    codes[uniform < test + validation] = SPLIT_CODES["validation"]
    codes[uniform < test] = SPLIT_CODES["test"]
    return codes


def assign_folds(keys: np.ndarray, seed: int, n_folds: int) -> np.ndarray:
    """Fold numbers in ``[0, n_folds)`` from the stable keys :func:`assign_split` takes, independent of the split.

    Out-of-fold statistics (target encoding) use them: a sample's fold, like
    its split, depends only on its key and the seed.  The fold is drawn from
    a second mixing of the bits the split is drawn from, so the training
    split's samples fall evenly into the folds.

    Parameters
    ----------
    keys : numpy.ndarray of int
        One stable key per sample.
    seed : int
        The split's seed.
    n_folds : int
        At least 1.

    Returns
    -------
    numpy.ndarray of int64
    """
    with np.errstate(over="ignore"):
        mixed = _splitmix64(keys.astype(np.uint64) ^ _splitmix64(np.array([seed], dtype=np.uint64))[0])
        mixed = _splitmix64(mixed ^ np.uint64(0xD1B54A32D192ED03))
    return (mixed % np.uint64(n_folds)).astype(np.int64)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def open_group(path, *, check_integrity: bool = True) -> tuple:
    """The Zarr group of a bigdl store and its attributes; refuses what is not a store this bigdl reads.

    Parameters
    ----------
    path : str or path
        The store directory.
    check_integrity : bool, default True
        Compare the attributes and the arrays' metadata with the store's
        integrity manifest (``bigdl verify`` lists the differences instead).

    Returns
    -------
    (zarr.Group, dict)

    Raises
    ------
    StoreFormatError
        No such path, not a Zarr group, not a bigdl store, or a format this bigdl does not read.
    StoreCorruptedError
        The attributes or the arrays' metadata changed after the store was written.
    """
    _, group, attrs = open_root(path, check_integrity=check_integrity)
    return group, attrs


def open_root(path, *, check_integrity: bool = True) -> tuple:
    """As :func:`open_group`, and where the Zarr group is: ``(root, group, attrs)``.

    ``root`` is ``path`` for a local store, and the committed version's URL
    for a store on object storage (see :mod:`bigdl.store._commit`).
    """
    from pathlib import Path

    import zarr

    from bigdl.store._commit import resolve_store
    from bigdl.store._location import display, is_remote, zarr_store

    if is_remote(path):
        root = resolve_store(path)
        shown = display(path)
    else:
        root = path = Path(path)
        shown = str(path)
        if not path.exists():
            raise StoreFormatError(f"No store at {shown!r}: the path does not exist. Create it with bigdl.ingest.")
    try:
        group = zarr.open_group(zarr_store(root, read_only=True), mode="r")
    except (PermissionError, FileNotFoundError) as error:
        if not is_remote(root):
            raise StoreFormatError(f"{shown!r} is not a Zarr store ({error}); create it with bigdl.ingest.") from None
        from bigdl.errors import ObjectStoreError
        from bigdl.store._location import remote_error

        raise ObjectStoreError(f"Cannot read the store {shown!r}: {remote_error(error, root)}.", url=shown,
                               cause=str(error)) from None
    except Exception as error:  # zarr raises several types for "not a group"
        raise StoreFormatError(f"{shown!r} is not a Zarr store ({error}); create it with bigdl.ingest.") from None
    attrs = dict(group.attrs)
    if "format_version" not in attrs or "kind" not in attrs:
        raise StoreFormatError(f"{str(path)!r} is a Zarr group but not a bigdl store (no 'format_version').")
    check_format_version(path, attrs)
    if check_integrity:
        from bigdl.store._integrity import check_attributes

        check_attributes(shown, group, attrs)
    return root, group, attrs


def check_format_version(path, attrs: dict) -> int:
    """The store's format version if this bigdl reads it, else a StoreFormatError naming it and who reads it."""
    import bigdl

    version = attrs["format_version"]
    readable = " and ".join(str(item) for item in READABLE_FORMATS)
    this = f"this bigdl ({bigdl.__version__}) reads formats {readable} and writes format {FORMAT_VERSION}"
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreFormatError(
            f"{str(path)!r} has a malformed 'format_version' attribute {version!r} (a {type(version).__name__}, "
            f"not a whole number): the attribute was edited or the store was not written by bigdl; {this}. "
            "Re-create the store (run the ingest again) or restore it from a copy."
        )
    if version in READABLE_FORMATS:
        return version
    if version > FORMAT_VERSION:
        writer = attrs.get("bigdl_version")
        release = f"bigdl {writer} (which the store says wrote it) or later" if isinstance(writer, str) else \
            "the newer bigdl that wrote it"
        raise StoreFormatError(
            f"{str(path)!r} has store format {version}, newer than the formats this bigdl ({bigdl.__version__}) "
            f"reads ({readable}); read it with {release}: upgrade bigdl."
        )
    raise StoreFormatError(
        f"{str(path)!r} has store format {version}, which no bigdl release writes: the attribute was edited or the "
        f"store was not written by bigdl; {this}. Re-create the store (run the ingest again) or restore it from a copy."
    )
