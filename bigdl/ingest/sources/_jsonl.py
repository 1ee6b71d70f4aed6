"""JSON lines files (one object per line): planning, typing a sample, reading one block."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from bigdl.errors import SourceError
from bigdl.ingest.sources._blocks import (Block, RawBlock, SourcePlan, check_ascii_based, check_encoding, count_lines,
                                          head_records, line_aligned_bytes, plan_lines)

__all__ = ["SUFFIXES", "plan_jsonl", "read_jsonl_block", "table_from_records"]


SUFFIXES = (".jsonl", ".ndjson", ".json")


def plan_jsonl(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    """Find the keys of JSON lines ``paths`` (their union, in order of appearance), type a sample, cut blocks."""
    check_ascii_based(options["encoding"])
    columns: list[str] = []
    sample_rows: list[dict] = []
    for path in paths:
        # Whole lines of the head (at least one, however long), split as the reader splits them.
        text, head = head_records(path)
        check_encoding(path, head, options["encoding"])
        for line in text.decode(options["encoding"], errors="replace").split("\n"):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                for key in row:
                    if key not in columns:
                        columns.append(key)
                if path == paths[0]:
                    sample_rows.append(row)
    if not columns:
        raise SourceError(f"{paths[0]} holds no JSON object per line; is it JSON lines (one object per line)?")
    sample = table_from_records(sample_rows, columns)
    return SourcePlan("jsonl", paths, columns, sample, plan_lines(paths, blocksize, "jsonl", options), options)


def table_from_records(rows: list[dict], columns: list[str]) -> pa.Table:
    """A typed table of JSON objects: booleans, numbers and text as JSON would have them."""
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=columns)
    arrays = {}
    for name in columns:
        series = frame[name]
        if series.dtype == object:
            non_null = series.dropna()
            if len(non_null) and all(isinstance(value, bool) for value in non_null):
                arrays[name] = pa.array(series.astype(object).where(series.notna(), None), type=pa.bool_())
                continue
            if len(non_null) and all(isinstance(value, (int, float)) and not isinstance(value, bool)
                                     for value in non_null):
                arrays[name] = pa.array(pd.to_numeric(series), from_pandas=True)
                continue
            arrays[name] = pa.array([None if value is None or (isinstance(value, float) and np.isnan(value))
                                     else (value if isinstance(value, str) else json.dumps(value))
                                     for value in series], type=pa.string())
        else:
            arrays[name] = pa.array(series, from_pandas=True)
    return pa.table(arrays) if arrays else pa.table({})


def read_jsonl_block(block: Block, columns: list[str], types: dict[str, pa.DataType], options: dict) -> RawBlock:
    """Parse one JSON lines block; malformed lines and non-objects become rejects."""
    data = line_aligned_bytes(block)
    lines = [line for line in data.split(b"\n") if line.strip(b"\r")]  # records skip blank lines
    text_encoding = options["encoding"]
    rows: list[dict] = []
    records: list[int] = []
    rejects: list[dict] = []
    for index, line in enumerate(lines):
        try:
            row = json.loads(line.decode(text_encoding))
        except UnicodeDecodeError:
            raise SourceError(
                f"{block.path}: line {index + 1} of bytes {block.start}-{block.stop} is not valid "
                f"{text_encoding}; pass encoding='latin-1' (or the file's real encoding)."
            ) from None
        except ValueError as error:
            rejects.append({"record": index, "raw": line.decode(text_encoding, "replace"),
                            "reason": f"malformed JSON: {error}"})
            continue
        if not isinstance(row, dict):
            rejects.append({"record": index, "raw": line.decode(text_encoding, "replace"),
                            "reason": f"expected a JSON object, found {type(row).__name__}"})
            continue
        rows.append(row)
        records.append(index)
    table = table_from_records(rows, columns)
    return RawBlock(table, np.asarray(records, dtype=np.int64), len(lines), count_lines(data), rejects, 0,
                    data=data, encoding=text_encoding)
