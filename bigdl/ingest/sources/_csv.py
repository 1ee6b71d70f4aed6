"""CSV (and TSV, gzip-compressed or not) files: planning, finding where records end, reading one block.

A quoted field may hold newlines, so a CSV *record* can span several
physical lines.  This module finds where records end exactly as pyarrow's
parser does (a quote opens a quoted field only at the start of a field; a
doubled quote inside one is a literal quote), so that blocks are cut only
between records, and a rejected record is quoted whole with the line it
starts on.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import pyarrow as pa

from bigdl.errors import SchemaError, SourceError
from bigdl.ingest.sources._paths import file_size, open_binary
from bigdl.ingest.sources._blocks import (Block, RawBlock, SourcePlan, block_ranges, check_ascii_based, check_encoding,
                                          compression_of, count_lines, head_records, header_mismatch,
                                          line_aligned_bytes)

__all__ = ["SUFFIXES", "plan_csv", "read_csv_block", "record_ends", "record_block_ranges", "quoted_line_break"]

logger = logging.getLogger(__name__)

SUFFIXES = (".csv", ".tsv", ".txt")

QUOTE = ord('"')
NEWLINE, CARRIAGE_RETURN = ord("\n"), ord("\r")
# pyarrow's chunks of parsing default to 1 MiB; a record longer than about two
# chunks fails as a "straddling object", so such blocks are parsed in one chunk.
MAX_PARSE_CHUNK = 2**31 - 1  # pyarrow's ReadOptions.block_size is an int32
# Bytes of a file read at once while looking for record boundaries.
SCAN_BYTES = 16 << 20


def plan_csv(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    """Check the headers of CSV ``paths`` (one shared header), type a sample, cut blocks between records."""
    import pyarrow.csv as pa_csv

    delimiter = delimiter_byte(options["delimiter"], options["encoding"])
    ends = functools.partial(record_ends, delimiter=delimiter)
    reference_columns = None
    reference_path = None
    sample = None
    for path in paths:
        # Whole records of the head (the header and at least one row), so the sample never ends mid-record.
        text, head = head_records(path, ends, min_records=2)
        if not head.strip():
            raise SourceError(f"{path} is empty: a CSV file needs at least a header line.")
        check_encoding(path, head, options["encoding"])
        try:
            parsed = pa_csv.read_csv(
                pa.BufferReader(text),
                read_options=pa_csv.ReadOptions(use_threads=False, encoding=options["encoding"],
                                                block_size=_parse_chunk(text)),
                parse_options=pa_csv.ParseOptions(delimiter=options["delimiter"], newlines_in_values=True,
                                                  invalid_row_handler=lambda row: "skip"),
                convert_options=pa_csv.ConvertOptions(strings_can_be_null=True),
            )
        except pa.ArrowInvalid as error:
            raise SourceError(f"{path}: the start of the file cannot be parsed as CSV ({error}).") from None
        columns = parsed.column_names
        if len(set(columns)) != len(columns):
            duplicated = sorted({name for name in columns if columns.count(name) > 1})
            raise SourceError(f"{path}: the header repeats column(s) {duplicated}; column names must be unique.")
        if reference_columns is None:
            reference_columns, reference_path, sample = columns, path, parsed
        elif columns != reference_columns:
            raise SourceError(header_mismatch(path, columns, reference_path, reference_columns))
    blocks: list[Block] = []
    for path in paths:
        for start, stop in record_block_ranges(path, blocksize, delimiter):
            blocks.append(Block(len(blocks), path, "csv", start, stop, first=start == 0,
                                compression=compression_of(path)))
    return SourcePlan("csv", paths, reference_columns, sample, blocks, options)


def delimiter_byte(delimiter: str, encoding: str) -> int:
    """The byte of a one-character ASCII ``delimiter`` in a file of ``encoding``; refuse other delimiters."""
    if not isinstance(delimiter, str) or len(delimiter) != 1 or not delimiter.isascii() or delimiter in '"\r\n':
        raise SchemaError(f"The 'delimiter' parameter must be one ASCII character other than a quote or a line "
                          f"break; got {delimiter!r}.")
    check_ascii_based(encoding, delimiter)
    return ord(delimiter)


# ---------------------------------------------------------------- where records end
def record_ends(data: bytes, delimiter: int = ord(","), inside: bool = False) -> np.ndarray:
    """Positions of the line breaks in ``data`` that end a CSV record (not those inside a quoted field).

    A line break is a newline, or a carriage return not followed by one (as
    pyarrow reads them).  ``data`` starts at the start of a record, or inside
    a quoted field when ``inside`` is true.  See :func:`quote_toggles` for the
    quoting rules.

    Examples
    --------
    >>> record_ends(b'a,b\\n1,"x\\ny"\\n2,z\\n').tolist()
    [3, 11, 15]
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(buffer == NEWLINE)
    if b"\r" in data:
        returns = np.flatnonzero(buffer == CARRIAGE_RETURN)
        lone = returns[buffer[np.minimum(returns + 1, len(buffer) - 1)] != NEWLINE]
        if len(lone):
            breaks = np.union1d(breaks, lone)
    toggles = quote_toggles(buffer, delimiter, inside)
    if not len(toggles):
        return breaks if not inside else breaks[:0]
    in_quotes = (np.searchsorted(toggles, breaks) + inside) % 2 == 1
    return breaks[~in_quotes]


def quoted_line_break(data: bytes, delimiter: int = ord(",")) -> bool:
    """Whether a quoted field of ``data`` (starting at a record's start) holds a line break.

    pyarrow must then parse serially (``newlines_in_values``), at about half
    the speed; quotes alone (a quoted header, quoted text without line
    breaks, as R and many exports write) do not need it.

    Examples
    --------
    >>> quoted_line_break(b'"a","b"\\n1,"x y"\\n'), quoted_line_break(b'a,b\\n1,"x\\ny"\\n')
    (False, True)
    """
    if b'"' not in data:
        return False
    first_break = data.find(b"\n")
    if first_break >= 0 and data.find(b'"', first_break) < 0:
        # Every quote is on the first line (a quoted header, as pandas and R write one): the answer
        # is that line's (a field it leaves open holds its line break), and scanning it alone spares
        # scanning the block (28.7 ms of a 30 MB block, a tenth of its read task, down to 1.6 ms).
        data = data[:first_break + 1]
    buffer = np.frombuffer(data, dtype=np.uint8)
    toggles = quote_toggles(buffer, delimiter)
    if not len(toggles):
        return False
    breaks = np.flatnonzero((buffer == NEWLINE) | (buffer == CARRIAGE_RETURN))
    return bool(((np.searchsorted(toggles, breaks) % 2) == 1).any())


def quote_toggles(buffer: np.ndarray, delimiter: int, inside: bool = False) -> np.ndarray:
    """Positions of the quotes that open or close a quoted field, as pyarrow's parser reads them.

    A quote opens a quoted field only at the start of a field (after a
    delimiter or a line break); inside one, a doubled quote is a literal
    quote and any other quote closes it; a quote anywhere else is a literal
    character (``5" pizza``).  When every quote fits the simple pattern
    (opening quotes at field starts, closing quotes before a delimiter, a line
    break or a doubled quote), the toggles are every quote and are found with
    array operations; otherwise the quotes are walked one by one.
    """
    quotes = np.flatnonzero(buffer == QUOTE)
    if not len(quotes):
        return quotes
    # Per byte value: may a field start after it / may a quoted field end before it?
    after_start = np.zeros(256, dtype=bool)
    after_start[[delimiter, NEWLINE, CARRIAGE_RETURN]] = True
    before_end = after_start.copy()
    before_end[QUOTE] = True  # a closing quote before a quote is the first of a doubled quote
    at_field_start = after_start[buffer[np.maximum(quotes - 1, 0)]] | (quotes == 0)
    at_field_end = before_end[buffer[np.minimum(quotes + 1, len(buffer) - 1)]] | (quotes == len(buffer) - 1)
    opening = slice(1, None, 2) if inside else slice(0, None, 2)
    closing = slice(0, None, 2) if inside else slice(1, None, 2)
    # An opening quote right after a closing one is the second of a doubled quote inside a field.
    opens_ok = at_field_start[opening] | (buffer[np.maximum(quotes[opening] - 1, 0)] == QUOTE)
    if opens_ok.all() and at_field_end[closing].all():
        return quotes
    return _walk_quotes(quotes, at_field_start, inside)


def _walk_quotes(quotes: np.ndarray, at_field_start: np.ndarray, inside: bool) -> np.ndarray:
    positions = quotes.tolist()
    field_start = at_field_start.tolist()
    doubled = (np.diff(quotes) == 1).tolist() + [False]  # the next quote follows this one at once
    toggles = []
    index = 0
    while index < len(positions):
        if not inside:
            if field_start[index]:
                toggles.append(positions[index])
                inside = True
            index += 1
        elif doubled[index]:
            index += 2  # a doubled quote: a literal quote inside the field
        else:
            toggles.append(positions[index])
            inside = False
            index += 1
    return np.asarray(toggles, dtype=np.int64)


def record_block_ranges(path: str, blocksize: int, delimiter: int = ord(",")) -> list[tuple[int, int]]:
    """Byte ranges of about ``blocksize`` of one CSV file, each starting and ending between records.

    The equal ranges of :func:`~bigdl.ingest.sources._blocks.block_ranges`
    are moved to the start of the next record; finding it reads the file
    once (quoted fields may hold newlines, so the quote state at a byte
    depends on everything before it).  A gzip file and a file smaller than
    ``blocksize`` are one range.
    """
    ranges = block_ranges(path, blocksize)
    if len(ranges) == 1:
        return ranges
    size = file_size(path)
    # A block owns the records that start in it: a cut moves to the start of the first record
    # that starts at or after it (its first byte follows a record-ending newline at cut - 1 or later).
    targets = [start - 1 for start, _ in ranges[1:]]
    cuts = [0]
    inside = False
    multiline = False
    with open_binary(path) as handle:
        base = 0
        carry = b""
        while targets:
            chunk = handle.read(SCAN_BYTES)
            piece = carry + chunk
            if chunk:
                last = piece.rfind(b"\n")
                if last < 0:  # one line longer than a read: read on
                    carry = piece
                    continue
                piece, carry = piece[: last + 1], piece[last + 1:]
            elif not piece:
                break
            else:
                carry = b""
            ends = None  # every newline ends a record
            if b'"' in piece or inside:
                buffer = np.frombuffer(piece, dtype=np.uint8)
                toggles = quote_toggles(buffer, delimiter, inside)
                if targets[0] < base + len(piece):  # a cut falls in this piece
                    newlines = np.flatnonzero(buffer == NEWLINE)
                    in_quotes = (np.searchsorted(toggles, newlines) + inside) % 2 == 1
                    multiline = multiline or bool(in_quotes.any())
                    ends = newlines[~in_quotes]
                inside = bool((len(toggles) + inside) % 2)
            while targets and targets[0] < base + len(piece):
                local = max(targets[0] - base, 0)
                if ends is None:
                    end = piece.find(b"\n", local)
                else:
                    index = int(np.searchsorted(ends, local))
                    end = int(ends[index]) if index < len(ends) else -1
                if end < 0:  # the record goes on into the next piece
                    break
                targets.pop(0)
                if base + end + 1 > cuts[-1]:
                    cuts.append(base + end + 1)
            base += len(piece)
    if multiline:
        logger.info("%s has quoted fields holding line breaks; its blocks are cut between records.", path)
    cuts = [cut for cut in cuts if cut < size]
    return list(zip(cuts, cuts[1:] + [size]))


def _parse_chunk(data: bytes) -> int:
    """A pyarrow parse chunk that holds all of ``data`` (pyarrow's 1 MiB at least)."""
    return min(max(len(data) + 1, 1 << 20), MAX_PARSE_CHUNK)


# ---------------------------------------------------------------- reading
def read_csv_block(block: Block, columns: list[str], types: dict[str, pa.DataType], options: dict,
                    strings_only: bool, single_thread: bool = False, data: bytes | None = None) -> RawBlock:
    """Parse one CSV block; rows with the wrong number of fields become rejects, not errors."""
    if data is None:
        data = line_aligned_bytes(block)
    if len(data) < 4096 and not data.strip():
        empty = pa.table({name: pa.array([], type=pa.string() if strings_only else types.get(name, pa.string()))
                          for name in columns})
        return RawBlock(empty, np.empty(0, dtype=np.int64), 0, 0)
    header_rows = 1 if block.first else 0
    # pyarrow numbers invalid rows only when parsing on one thread, so parse
    # on all threads first and again on one only if some row was invalid.
    attempt = {"strings_only": strings_only, "use_threads": not single_thread, "block_size": None}
    while True:
        invalid: list[tuple[int, str, str]] = []
        try:
            table = _parse(data, columns, types, options, header_rows, invalid, **attempt)
        except pa.ArrowInvalid as error:
            message = str(error)
            if "UTF8" in message or "UTF-8" in message:
                raise SourceError(_encoding_problem(block, data)) from None
            if "conversion error" in message and not attempt["strings_only"]:
                attempt["strings_only"] = True
                continue
            if "straddling object" in message and attempt["block_size"] is None:
                # A record longer than pyarrow's parse chunk: parse the block in one chunk.
                attempt["block_size"] = _parse_chunk(data)
                continue
            if "Empty CSV file" in message:
                table = pa.table({name: pa.array([], type=pa.string()) for name in columns})
            elif "straddling object" in message:
                raise SourceError(f"{block.path} (bytes {block.start}-{block.stop}) holds a record longer than "
                                  "pyarrow parses in one piece (2 GiB); split the record or keep such values "
                                  "in separate files.") from None
            else:
                raise SourceError(f"{block.path} (bytes {block.start}-{block.stop}) cannot be parsed as CSV: "
                                  f"{message}") from None
        if invalid and attempt["use_threads"]:
            attempt["use_threads"] = False
            continue
        break
    n_records = table.num_rows + len(invalid)
    # pyarrow numbers records from the start of the buffer, header and all,
    # skipping blank lines; a record's index leaves out the header.
    invalid_records = np.array([number - 1 - header_rows for number, _, _ in invalid], dtype=np.int64)
    records = np.setdiff1d(np.arange(n_records, dtype=np.int64), invalid_records, assume_unique=True)
    rejects = [{"record": int(number - 1 - header_rows), "raw": text, "reason": reason}
               for number, text, reason in invalid]
    delimiter = ord(options["delimiter"])
    return RawBlock(table, records, n_records, count_lines(data), rejects, header_rows, data=data,
                    encoding=options["encoding"],
                    record_ends=functools.partial(record_ends, delimiter=delimiter))


def _parse(data: bytes, columns: list[str], types: dict[str, pa.DataType], options: dict, header_rows: int,
           invalid: list, *, strings_only: bool, use_threads: bool, block_size: int | None) -> pa.Table:
    import pyarrow.csv as pa_csv

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text, f"expected {row.expected_columns} fields, found {row.actual_columns}"))
        return "skip"

    read_options = pa_csv.ReadOptions(use_threads=use_threads, skip_rows=header_rows,
                                      column_names=options["all_columns"], encoding=options["encoding"])
    if block_size is not None:
        read_options.block_size = block_size
    return pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=read_options,
        # Only a quoted field can hold a newline; without quotes pyarrow may split its chunks at any newline.
        parse_options=pa_csv.ParseOptions(delimiter=options["delimiter"], invalid_row_handler=on_invalid,
                                          newlines_in_values=quoted_line_break(data, ord(options["delimiter"]))),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in columns} if strings_only else types,
            include_columns=columns,
            # Text stays text ("NA" is a category, as in Parquet); numbers still
            # read NA, NaN, null... as missing.  Empty text is made missing in validation.
            strings_can_be_null=False,
        ),
    )


def _encoding_problem(block: Block, data: bytes) -> str:
    where = f"bytes {block.start}-{block.stop}"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        where = (f"byte 0x{data[error.start]:02x} on line {line} of the block starting at byte "
                 f"{block.start}" if block.start else f"byte 0x{data[error.start]:02x} on line {line}")
    return (f"{block.path} is not valid UTF-8 text ({where}). Pass encoding='latin-1' "
            "(or the file's real encoding, e.g. 'cp1252').")
