"""The on-disk store format: layout constants, array creation, atomic commit.

A store is a Zarr v3 group (see ``ARCHITECTURE.md``, "The store"): ``X``,
``y``, ``split`` and ``record`` arrays sharing the sample axis and one row
chunking, attributes describing schema, preprocessing and row accounting, and
a ``rejects/`` folder of Parquet files.  It is written under a temporary
sibling name and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from bigdl._events import ingest_job
from bigdl.errors import SchemaError, StoreExistsError

__all__ = [
    "FORMAT_VERSION", "SPLIT_CODES", "SPLIT_NAMES", "compressor", "rows_per_chunk_for",
    "atomic_store", "create_arrays", "finish_store", "check_split_parameters", "check_whole_chunk",
    "TARGET_CHUNK_BYTES",
]

FORMAT_VERSION = 1
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
# Chunks of about 16 MB uncompressed: big enough to stream efficiently and
# compress well, small enough that several fit in a worker's memory.
TARGET_CHUNK_BYTES = 16 << 20
COMPRESSIONS = ("lz4", "zstd", "none")


def compressor(compression="lz4"):
    """The Zarr codec for a compression name (``"lz4"``, ``"zstd"``, ``"none"``) or a codec."""
    from zarr.codecs import BloscCodec

    if compression is None or compression == "none":
        return None
    if isinstance(compression, str):
        if compression not in COMPRESSIONS:
            raise SchemaError(
                f"The 'compression' parameter must be one of {COMPRESSIONS} or a zarr codec; got {compression!r}."
            )
        level = 5 if compression == "lz4" else 3
        return BloscCodec(cname=compression, clevel=level, shuffle="shuffle")
    return compression


def rows_per_chunk_for(n_features: int, itemsize: int = 4, target_bytes: int = TARGET_CHUNK_BYTES) -> int:
    """Rows per chunk so one chunk of ``X`` is about ``target_bytes`` uncompressed."""
    rows = max(1, target_bytes // max(1, n_features * itemsize))
    # A multiple of 1024 keeps batch slicing tidy for common batch sizes.
    return max(1024, rows // 1024 * 1024)


def create_arrays(path: str | os.PathLike, n_samples: int, rows_per_chunk: int, *,
                  x_shape: tuple[int, ...], x_dtype="float32", y_dtype=None, compression="lz4",
                  x_dimensions=("sample", "feature"), extra_arrays: dict | None = None):
    """Create the empty arrays of a store at ``path`` (a fresh directory).

    ``extra_arrays`` maps further per-sample array names to dtypes (sequence
    stores keep ``time``, ``series``, ``position`` and ``run`` beside ``X``).
    """
    import zarr

    from zarr.codecs import Crc32cCodec

    group = zarr.open_group(str(path), mode="a", zarr_format=3)
    codec = compressor(compression)
    # A CRC-32C of every stored chunk (zarr v3's own codec, so plain zarr and
    # xarray still read it): a byte flipped on disk fails at decode instead of
    # decompressing to wrong numbers, which Blosc-lz4 alone lets through.
    # About 12 GB/s, nothing next to the decompression.
    codecs = {"compressors": ([codec] if codec is not None else []) + [Crc32cCodec()]}
    chunk_rows = max(1, min(rows_per_chunk, max(n_samples, 1)))
    group.create_array("X", shape=(n_samples, *x_shape), chunks=(chunk_rows, *x_shape), dtype=x_dtype,
                       dimension_names=list(x_dimensions), fill_value=0, **codecs)
    if y_dtype is not None:
        group.create_array("y", shape=(n_samples,), chunks=(chunk_rows,), dtype=y_dtype,
                           dimension_names=["sample"], fill_value=0, **codecs)
    group.create_array("split", shape=(n_samples,), chunks=(chunk_rows,), dtype="uint8",
                       dimension_names=["sample"], fill_value=0, **codecs)
    group.create_array("record", shape=(n_samples,), chunks=(chunk_rows,), dtype="int64",
                       dimension_names=["sample"], fill_value=-1, **codecs)
    for name, dtype in (extra_arrays or {}).items():
        group.create_array(name, shape=(n_samples,), chunks=(chunk_rows,), dtype=dtype,
                           dimension_names=["sample"], fill_value=0, **codecs)
    return group


def check_split_parameters(owner: str, *, validation, test, seed, rows_per_chunk, unit: str = "rows") -> None:
    """Validate the parameters every store writer shares; messages name ``owner`` and the parameter."""
    for name, value in (("validation", validation), ("test", test)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise SchemaError(f"The '{name}' parameter of {owner} must be a fraction in [0, 1); got {value!r}.")
    if validation + test >= 1:
        raise SchemaError(f"validation + test must leave {unit} for training (< 1); got {validation} + {test}.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise SchemaError(f"The 'seed' parameter of {owner} must be an int; got {seed!r}.")
    if rows_per_chunk is not None and (not isinstance(rows_per_chunk, (int, np.integer))
                                       or isinstance(rows_per_chunk, bool) or rows_per_chunk < 1):
        raise SchemaError(f"The 'rows_per_chunk' parameter of {owner} must be an int >= 1; got {rows_per_chunk!r}.")


def check_whole_chunk(array, start: int, stop: int) -> None:
    """Refuse a write of rows ``start:stop`` that is not exactly one chunk of ``array``.

    Two tasks writing parts of one Zarr chunk overwrite each other's data
    silently (dask #12583); every parallel write in bigdl is one whole chunk.
    """
    rows = array.chunks[0]
    if start % rows or (stop - start != rows and stop != array.shape[0]):
        raise RuntimeError(f"bigdl internal error: rows {start}-{stop} are not one whole chunk of {rows} rows.")


def assign_split(keys: np.ndarray, seed: int, validation: float, test: float) -> np.ndarray:
    """Split codes (0 train, 1 validation, 2 test) from stable 64-bit keys.

    A key's split depends only on the key and the seed, so re-ingesting the
    same data, or more data, puts every existing sample in the same split.
    """
    with np.errstate(over="ignore"):
        mixed = _splitmix64(keys.astype(np.uint64) ^ _splitmix64(np.array([seed], dtype=np.uint64))[0])
    uniform = (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    codes = np.zeros(keys.shape, dtype=np.uint8)
    codes[uniform < test + validation] = SPLIT_CODES["validation"]
    codes[uniform < test] = SPLIT_CODES["test"]
    return codes


def _splitmix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


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
            with ingest_job(final, temporary):  # progress on the dashboard (bigdl/_events.py)
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


def finish_store(path, *, kind: str, accounting: dict, split_counts, split: dict, **attributes) -> None:
    """Write a complete store's attributes and consolidate its metadata.

    The fields every store has (format version, kind, row accounting, split
    counts and spec, creation time, bigdl version) are filled here; each
    writer passes its own (``feature_names``, ``preprocessing``, ``source``...).
    ``accounting`` has ``read``, ``stored``, ``rejected`` and ``reasons``.
    """
    import warnings
    from datetime import datetime, timezone

    import zarr

    import bigdl
    from bigdl.store._verify import integrity_manifest

    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update({
        "format_version": FORMAT_VERSION,
        "kind": kind,
        **attributes,
        "rows": {"read": accounting["read"], "stored": accounting["stored"], "rejected": accounting["rejected"],
                 "rejected_by_reason": accounting.get("reasons", {})},
        "split_counts": {SPLIT_NAMES[code]: int(count) for code, count in enumerate(split_counts)},
        "split": split,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bigdl_version": bigdl.__version__,
        "integrity": integrity_manifest(path),
    })
    with warnings.catch_warnings():
        # Zarr warns that consolidated metadata is not in the v3 spec yet;
        # xarray reads it and falls back cleanly where it is absent.
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))
