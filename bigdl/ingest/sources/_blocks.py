"""Planned blocks of row sources and what their readers share.

A :class:`Block` is one unit of reading (a byte range of a text file, row
groups of a Parquet file, a row range of a table or array); a reader turns
it into a :class:`RawBlock` (rows as parsed, with the rows it could not
parse).  The line-oriented helpers (heads, encodings, line-aligned byte
ranges) serve the CSV and JSON lines readers.
"""

from __future__ import annotations

import codecs
import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from bigdl.errors import SchemaError, SourceError
from bigdl.ingest.sources._paths import exists, file_size, file_stat, open_binary

__all__ = ["Block", "RawBlock", "SourcePlan", "NULL_TOKENS", "SAMPLE_BYTES", "MAX_SAMPLE_BYTES", "count_lines",
           "line_ends", "record_spans", "compression_of", "head_bytes", "head_records", "check_ascii_based",
           "check_encoding", "block_ranges", "plan_lines", "line_aligned_bytes", "header_mismatch"]


# pyarrow's CSV spellings of a missing number, used when numbers arrive as text.
NULL_TOKENS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                         "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"})


SAMPLE_BYTES = 1 << 20
# The head read for a sample grows until it holds whole records, up to this.
MAX_SAMPLE_BYTES = 256 << 20


@dataclass(frozen=True)
class Block:
    """One unit of reading: a byte range, a group of row groups or a row range."""

    index: int
    path: str
    format: str
    start: int
    stop: int
    first: bool = True
    compression: str | None = None


@dataclass
class RawBlock:
    """Rows of one block as parsed, before validation."""

    table: pa.Table
    records: np.ndarray  # local record index (0-based within the block) of each table row
    n_records: int  # rows read, including rows rejected while parsing
    n_physical: int  # physical lines the block spans (blank ones too), to number lines of later blocks
    rejects: list[dict] = field(default_factory=list)  # {"record", "raw", "reason"}
    header_rows: int = 0
    data: bytes | None = None  # the block's text, to quote rejected rows and find their lines
    encoding: str = "utf-8"
    # data -> positions of the newlines that end a record (a CSV record may span lines); None: every newline.
    record_ends: Callable[[bytes], np.ndarray] | None = None
    _spans: tuple | None = field(default=None, repr=False)

    def physical(self, record: int) -> tuple[int | None, str | None]:
        """The 1-based line within the block where a record starts, and its raw text (None, None without text).

        Records skip blank lines (as pyarrow does), lines count them; the
        text of a record spanning several lines holds all of them.
        """
        if self.data is None:
            return None, None
        if self._spans is None:
            self._spans = record_spans(self.data, self.record_ends)
        starts, stops, lines = self._spans
        index = record + self.header_rows
        if not 0 <= index < len(starts):
            return None, None
        text = self.data[starts[index]:stops[index]]
        return int(lines[index]), text.decode(self.encoding, "replace")


def line_ends(data: bytes) -> np.ndarray:
    """Positions of every newline in ``data`` (where the records of line-oriented text end)."""
    return np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))


def record_spans(data: bytes, record_ends: Callable[[bytes], np.ndarray] | None = None):
    """``(starts, stops, lines)`` of the non-blank records of ``data``: byte ranges without the line
    break, and the 1-based line each starts on.

    ``record_ends(data)`` gives the positions of the line breaks that end
    records; default: every newline.
    """
    newlines = line_ends(data)
    ends = newlines if record_ends is None else np.asarray(record_ends(data), dtype=np.int64)
    starts = np.concatenate([[0], ends + 1]).astype(np.int64)
    stops = np.concatenate([ends, [len(data)]]).astype(np.int64)
    if stops[-1] > starts[-1]:  # the data's last line break ends its last record, even inside an open quote
        stops[-1] -= 2 if data.endswith(b"\r\n") else 1 if data.endswith((b"\n", b"\r")) else 0
    buffer = np.frombuffer(data, dtype=np.uint8)
    if len(buffer):
        # The carriage return of a CRLF line break is part of the break.
        after = buffer[np.minimum(stops, len(buffer) - 1)]
        before = buffer[np.maximum(stops - 1, 0)]
        stops = stops - ((stops > starts) & (stops < len(buffer)) & (after == ord("\n")) & (before == ord("\r")))
    # Blank records are skipped, as pyarrow skips empty lines.
    keep = stops > starts
    starts, stops = starts[keep], stops[keep]
    lines = np.searchsorted(newlines, starts) + 1  # newlines before a record's first byte, plus one
    return starts, stops, lines


def count_lines(data: bytes) -> int:
    """Physical lines in ``data`` (a last line without newline counts)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@dataclass
class SourcePlan:
    """What planning learnt: the format, the columns, a typed sample and the blocks."""

    format: str
    paths: list[str]
    columns: list[str]
    sample: pa.Table
    blocks: list[Block]
    options: dict

    def fingerprint(self) -> dict:
        entries = []
        for path in self.paths:
            try:
                entries.append({"path": path, **file_stat(path)})
            except (OSError, ValueError):  # ValueError: a URL fsspec does not serve (a database)
                entries.append({"path": path})
        return {"format": self.format, "files": entries}

    @property
    def input_bytes(self) -> int:
        total = 0
        for path in self.paths:
            try:
                total += file_size(path) if exists(path) else 0
            except (OSError, ValueError):  # ValueError: a URL fsspec does not serve (a database)
                continue
        return total


def compression_of(path: str) -> str | None:
    """``"gzip"`` for gzip file names, else None."""
    return "gzip" if path.lower().endswith((".gz", ".gzip")) else None


def head_bytes(path: str, size: int = SAMPLE_BYTES) -> bytes:
    """The first ``size`` bytes of a file (decompressed when gzip)."""
    if compression_of(path) == "gzip":
        try:
            with open_binary(path) as raw, gzip.open(raw, "rb") as handle:
                return handle.read(size)
        except (OSError, EOFError) as error:
            raise SourceError(f"{path}: cannot be read as gzip ({error}); is it really compressed?") from None
    with open_binary(path) as handle:
        return handle.read(size)


def head_records(path: str, record_ends: Callable[[bytes], np.ndarray] = line_ends,
                 min_records: int = 1) -> tuple[bytes, bytes]:
    """The whole records at the head of a file, and the bytes read: ``(records, head)``.

    The head is :data:`SAMPLE_BYTES`, or more when it holds fewer than
    ``min_records`` whole records (a row longer than the head), up to
    :data:`MAX_SAMPLE_BYTES`; a file that short is read whole.
    """
    size = SAMPLE_BYTES
    while True:
        head = head_bytes(path, size)
        if len(head) < size:
            return head, head
        ends = record_ends(head)
        if len(ends) >= min_records:
            return head[: int(ends[-1]) + 1], head
        if size >= MAX_SAMPLE_BYTES:
            raise SourceError(f"{path}: the first {min_records} record(s) are longer than {MAX_SAMPLE_BYTES >> 20} "
                              "MiB, too long to sample; is a quote left open, or is the file one long line?")
        size *= 4


def check_ascii_based(encoding: str, special: str = "") -> None:
    """Refuse an ``encoding`` in which newline, quote (or the ``special`` characters) are not single ASCII bytes.

    Text files are cut into blocks, lines and records byte by byte, which
    only holds for such encodings (UTF-8, latin-1, cp1252, ... but not UTF-16).
    """
    special = special + '"\n\r'
    try:
        ascii_based = special.encode("ascii").decode(encoding) == special
    except LookupError:
        raise SchemaError(f"The 'encoding' parameter must name a Python text codec; got {encoding!r}.") from None
    except UnicodeError:
        ascii_based = False
    if not ascii_based:
        raise SchemaError(
            f"encoding={encoding!r} is not supported: text files are split into lines and records byte by byte, "
            "which needs an encoding where newline, quote and delimiter are single ASCII bytes (UTF-8, latin-1, "
            "cp1252, ...). Convert the file to UTF-8 first (e.g. iconv -f UTF-16 -t UTF-8).")


def check_encoding(path: str, head: bytes, encoding: str) -> None:
    """Refuse a file whose head does not decode, naming the byte and a likely encoding."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        decoder.decode(head, final=False)
    except UnicodeDecodeError as error:
        raise SourceError(
            f"{path} is not valid {encoding} text: byte 0x{head[error.start]:02x} at offset {error.start} "
            f"cannot be decoded. Pass encoding='latin-1' (or the file's real encoding, e.g. 'cp1252')."
        ) from None


def block_ranges(path: str, blocksize: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``blocksize`` of one file (one range for gzip or small files)."""
    size = file_size(path)
    if compression_of(path) or size <= blocksize:
        return [(0, size)]
    # Equal blocks (not blocksize, blocksize, ..., remainder) keep workers evenly busy.
    n_blocks = -(-size // blocksize)
    bounds = [size * index // n_blocks for index in range(n_blocks + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def plan_lines(paths: list[str], blocksize: int, fmt: str, options: dict) -> list[Block]:
    """Byte-range blocks of line-oriented files (a gzip file is one block)."""
    blocks: list[Block] = []
    for path in paths:
        for start, stop in block_ranges(path, blocksize):
            blocks.append(Block(len(blocks), path, fmt, start, stop, first=start == 0,
                                compression=compression_of(path)))
    return blocks


def line_aligned_bytes(block: Block) -> bytes:
    """The bytes of a block's whole lines: a block owns every line whose first byte lies in it."""
    if block.compression == "gzip":
        with open_binary(block.path) as raw, gzip.open(raw, "rb") as handle:
            try:
                return handle.read()
            except (OSError, EOFError) as error:
                raise SourceError(f"{block.path}: the gzip stream is corrupt or truncated ({error}).") from None
    with open_binary(block.path) as handle:
        # A block owns every line whose first byte lies in [start, stop).
        begin = line_start(handle, block.start)
        end = line_start(handle, block.stop)
        handle.seek(begin)
        return handle.read(max(end - begin, 0))


def line_start(handle, position: int) -> int:
    if position == 0:
        return 0
    handle.seek(position - 1)
    handle.readline()
    return handle.tell()


def header_mismatch(path, columns, reference_path, reference_columns) -> str:
    """What differs between a file's header and the first file's, and how to fix it."""
    extra = [name for name in columns if name not in reference_columns]
    missing = [name for name in reference_columns if name not in columns]
    detail = []
    if missing:
        detail.append(f"lacks {missing}")
    if extra:
        detail.append(f"adds {extra}")
    if not detail:
        detail.append("has the same columns in another order")
    return (
        f"{path} has a different header from {reference_path}: it {' and '.join(detail)}. "
        f"All files of one ingest must share one header ({reference_columns}); ingest them separately "
        "or fix the file."
    )
