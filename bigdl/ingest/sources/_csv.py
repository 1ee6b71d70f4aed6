"""CSV (and TSV, gzip-compressed or not) files: planning and reading one block with pyarrow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bigdl.errors import SourceError
from bigdl.ingest.sources._blocks import (SAMPLE_BYTES, Block, RawBlock, SourcePlan, check_encoding, count_lines,
                                          head_bytes, header_mismatch, line_aligned_bytes, plan_lines)

__all__ = ["SUFFIXES", "plan_csv", "read_csv_block"]


SUFFIXES = (".csv", ".tsv", ".txt")


def plan_csv(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    """Check the headers of CSV ``paths`` (one shared header), type a sample, cut byte-range blocks."""
    import pyarrow.csv as pa_csv

    reference_columns = None
    reference_path = None
    sample = None
    for path in paths:
        head = head_bytes(path)
        if not head.strip():
            raise SourceError(f"{path} is empty: a CSV file needs at least a header line.")
        check_encoding(path, head, options["encoding"])
        # Parse only whole lines of the head so the sample never ends mid-row.
        cut = head.rfind(b"\n")
        text = head if cut < 0 or len(head) < SAMPLE_BYTES else head[: cut + 1]
        try:
            parsed = pa_csv.read_csv(
                pa.BufferReader(text),
                read_options=pa_csv.ReadOptions(use_threads=False, encoding=options["encoding"]),
                parse_options=pa_csv.ParseOptions(delimiter=options["delimiter"],
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
    blocks = plan_lines(paths, blocksize, "csv", options)
    return SourcePlan("csv", paths, reference_columns, sample, blocks, options)


def read_csv_block(block: Block, columns: list[str], types: dict[str, pa.DataType], options: dict,
                    strings_only: bool, single_thread: bool = False, data: bytes | None = None) -> RawBlock:
    """Parse one CSV block; rows with the wrong number of fields become rejects, not errors."""
    import pyarrow.csv as pa_csv

    if data is None:
        data = line_aligned_bytes(block)
    if len(data) < 4096 and not data.strip():
        empty = pa.table({name: pa.array([], type=pa.string() if strings_only else types.get(name, pa.string()))
                          for name in columns})
        return RawBlock(empty, np.empty(0, dtype=np.int64), 0, 0)
    invalid: list[tuple[int, str, str]] = []

    def on_invalid(row) -> str:
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        invalid.append((row.number, row.text, reason))
        return "skip"

    header_rows = 1 if block.first else 0
    # pyarrow numbers invalid rows only when parsing on one thread, so parse
    # on all threads first and again on one only if some row was invalid.
    use_threads = not single_thread
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in columns} if strings_only else types,
        include_columns=columns,
        # Text stays text ("NA" is a category, as in Parquet); numbers still
        # read NA, NaN, null... as missing.  Empty text is made missing in validation.
        strings_can_be_null=False,
    )
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(
                use_threads=use_threads, skip_rows=header_rows, column_names=options["all_columns"],
                encoding=options["encoding"],
            ),
            parse_options=pa_csv.ParseOptions(delimiter=options["delimiter"], invalid_row_handler=on_invalid),
            convert_options=convert,
        )
    except pa.ArrowInvalid as error:
        message = str(error)
        if "UTF8" in message or "UTF-8" in message:
            raise SourceError(_encoding_problem(block, data)) from None
        if "conversion error" in message and not strings_only:
            return read_csv_block(block, columns, types, options, strings_only=True,
                                   single_thread=single_thread, data=data)
        if "Empty CSV file" in message:
            table = pa.table({name: pa.array([], type=pa.string()) for name in columns})
        else:
            raise SourceError(f"{block.path} (bytes {block.start}-{block.stop}) cannot be parsed as CSV: "
                              f"{message}") from None
    if invalid and not single_thread:
        return read_csv_block(block, columns, types, options, strings_only=strings_only,
                               single_thread=True, data=data)
    n_records = table.num_rows + len(invalid)
    # pyarrow numbers rows from the start of the buffer, header and all,
    # skipping blank lines; a record's index leaves out the header.
    invalid_records = np.array([number - 1 - header_rows for number, _, _ in invalid], dtype=np.int64)
    records = np.setdiff1d(np.arange(n_records, dtype=np.int64), invalid_records, assume_unique=True)
    rejects = [{"record": int(number - 1 - header_rows), "raw": text, "reason": reason}
               for number, text, reason in invalid]
    return RawBlock(table, records, n_records, count_lines(data), rejects, header_rows, data=data,
                    encoding=options["encoding"])


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
