"""Steps shared by the kinds that read rows of tables (tabular and sequence ingest).

Both read the same planned blocks (:mod:`bigdl.ingest.sources`), reject rows
the same way (with their line and raw text), stage valid rows as Arrow IPC
files and rejects as Parquet files in the staging folder, and number rejected
rows within their file once every block's size is known.  This module owns
those steps and the reason families of row rejects.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigdl._validation import Hidden, Interval, Predicate, check_params
from bigdl.errors import SchemaError
from bigdl.ingest._pipeline import IngestSteps, empty_message, shuffle_rows, write_rejects_part
from bigdl.ingest import _staging
from bigdl.ingest.sources import NULL_TOKENS, RawBlock, SourcePlan

__all__ = ["RowSteps", "parse_blocksize", "row_reason_family", "check_columns", "text_or_null", "NON_FINITE",
           "parse_numbers", "checked_numbers", "rejector", "rejected_rows", "stage_table", "read_staged",
           "stage_rejects", "block_offsets", "rejects_task", "write_block_rejects", "staged_examples",
           "log_time_zones"]

STAGED_REJECT_COLUMNS = ["record", "line", "raw", "reason"]
# Rows a read task gathers at once when it stages its block in shuffled order.
SHUFFLE_BATCH_ROWS = 65_536
# What a non-finite number (inf, -inf, Infinity, 1e309) in a value column becomes: the row is
# quarantined ("not a finite number"), or the cell is read as missing and filled like one.
NON_FINITE = ("reject", "missing")


def _parse_bytes(text: str) -> int:
    from dask.utils import parse_bytes

    return parse_bytes(text)


BLOCKSIZE = [Interval(int, 1, None), Predicate(lambda value: isinstance(value, str) and _parse_bytes(value) >= 1,
                                               "a str of bytes such as '64MiB'"),
             Hidden(Interval(float, 1, None))]  # a float count of bytes (64e6) has always been accepted


def parse_blocksize(blocksize, owner: str) -> int:
    """Bytes of input per read task, from a ``blocksize=`` parameter.

    Parameters
    ----------
    blocksize : int or str
        A number of bytes, or a size Dask parses (``"64MiB"``, ``"20KB"``).
    owner : str
        The ingest function, named in the message.

    Returns
    -------
    int

    Raises
    ------
    ParameterError
        Not a size, or less than one byte.
    """
    check_params(owner, {"blocksize": blocksize}, {"blocksize": BLOCKSIZE})
    return _parse_bytes(blocksize) if isinstance(blocksize, str) else int(blocksize)


class RowSteps(IngestSteps):
    """The steps every kind reading planned row blocks shares: read jobs, block offsets, rejects, empty message.

    Subclasses set ``empty_hint``, the advice when every row was rejected.

    Parameters
    ----------
    plan : SourcePlan
        The planned input blocks.
    read_spec : object
        What the kind's read task needs besides the block: a tabular schema,
        a sequence column spec.
    """

    empty_hint = ""

    def __init__(self, plan: SourcePlan, read_spec):
        self.plan, self.read_spec = plan, read_spec
        self.name = Path(plan.paths[0]).name
        self.offsets: list[dict] = []

    def read_jobs(self, staging: str) -> list[tuple]:
        # shuffle_seed: the read task stages its valid rows in the order shuffle_rows gives (None: as read).
        options = dict(self.plan.options, all_columns=self.plan.columns, shuffle_seed=self.shuffle_seed)
        return [(block, self.read_spec, options, staging) for block in self.plan.blocks]

    def account(self, read_results: list[dict]) -> dict:
        self.offsets = block_offsets(self.plan, read_results)
        return super().account(read_results)

    def empty_message(self, accounting: dict, read_results: list[dict], staging: Path) -> str:
        paths = self.plan.paths
        return empty_message(paths if len(paths) > 1 else paths[0], accounting, staged_examples(staging),
                             self.empty_hint)

    def write_rejects(self, root: Path, staging: Path, read_results: list[dict], accounting: dict, run) -> None:
        write_block_rejects(root, staging, self.plan, read_results, self.offsets, run)


def row_reason_family(reason: str) -> str:
    """``"column 'x': 'abc' is not a number"`` -> ``"column 'x': not a number"``, for counting.

    Parameters
    ----------
    reason : str

    Returns
    -------
    str
    """
    head, _, tail = reason.partition(": ")
    if " is not " in tail:
        return f"{head}: not {tail.rsplit(' is not ', 1)[1]}"
    if reason.startswith("expected ") and " fields" in reason:
        return "wrong number of fields"
    if reason.startswith("malformed JSON"):
        return "malformed JSON"
    return reason


def check_columns(names, columns, parameter: str) -> None:
    """Refuse column ``names`` given in ``parameter=`` that are not among ``columns``, with close matches.

    Parameters
    ----------
    names : list of str
    columns : list of str
        The columns of the data.
    parameter : str
        The parameter that named them, for the message.

    Raises
    ------
    SchemaError
        Naming the unknown columns, the columns found and close matches.
    """
    unknown = [name for name in names if name not in columns]
    if unknown:
        hints = {name: difflib.get_close_matches(name, columns, n=1) for name in unknown}
        hint = "; ".join(f"did you mean {match[0]!r} for {name!r}?" for name, match in hints.items() if match)
        raise SchemaError(
            f"Column(s) {unknown} given in {parameter}= are not in the data; columns found: {columns}."
            + (f" ({hint})" if hint else "")
        )


def text_or_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column with empty strings as missing (the same in every input format).

    Parameters
    ----------
    column : pyarrow.ChunkedArray

    Returns
    -------
    pyarrow.ChunkedArray of string
    """
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    if not len(column):
        return column
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def parse_numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, Callable[[int], str]]:
    """A column read as numbers, the same way by every kind that reads rows.

    Parameters
    ----------
    column : pyarrow.ChunkedArray
        Numbers, booleans, or text (parsed as numbers; an empty cell and the
        spellings of :data:`~bigdl.ingest.sources.NULL_TOKENS` are missing).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, callable)
        The float64 values (NaN where missing or not a number, ``inf`` where a
        number overflows), the mask of the cells that are not numbers, and
        ``cell(index)``: a cell as read, for reasons (its text, or the number
        written as text when the column was typed).
    """
    import pyarrow.compute as pc

    try:
        numbers = column if column.type == pa.float64() else pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        text = column.to_pandas()
        parsed = pd.to_numeric(text, errors="coerce")
        failed = (text.notna() & parsed.isna() & ~text.isin(NULL_TOKENS)).to_numpy()
        return parsed.to_numpy(dtype=np.float64), failed, lambda index: str(text.iloc[index])
    values = numbers.to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
    return values, np.zeros(len(values), dtype=bool), lambda index: str(values[index])


def rejector(bad: np.ndarray, reasons: list) -> Callable[[np.ndarray, Callable[[int], str]], None]:
    """``reject(mask, make_reason)``: mark the rows of ``mask`` bad, each with the first reason found for it.

    Parameters
    ----------
    bad : numpy.ndarray of bool
        The block's rows refused so far; updated in place.
    reasons : list
        One entry per row (None while the row is good); updated in place.

    Returns
    -------
    callable
        ``reject(mask, make_reason)``; ``make_reason(index)`` is called only for
        rows not refused before.
    """
    def reject(mask: np.ndarray, make_reason: Callable[[int], str]) -> None:
        fresh = mask & ~bad
        if not fresh.any():  # the usual case: every column is checked and few rows are bad
            return
        for index in np.flatnonzero(fresh):
            reasons[index] = make_reason(index)
        bad[fresh] = True

    return reject


def checked_numbers(column: pa.ChunkedArray, name: str, reject: Callable, *, label: str = "column",
                    non_finite: str = "reject") -> np.ndarray:
    """A value column as float64, its cells that are not (finite) numbers refused through ``reject``.

    Parameters
    ----------
    column : pyarrow.ChunkedArray
    name : str
        The column, named in the reasons.
    reject : callable
        ``reject(mask, make_reason)``, the validation's way to quarantine rows.
    label : str, default "column"
        How the reasons name the column (``"target"``, ``"time"``).
    non_finite : {"reject", "missing"}, default "reject"
        ``"reject"`` quarantines a row holding ``inf`` or ``-inf`` (also
        ``Infinity`` and numbers too large for a float64, such as ``1e309``)
        as ``"column 'x': 'inf' is not a finite number"``; ``"missing"``
        makes the cell missing (NaN), to be filled like any missing value.

    Returns
    -------
    numpy.ndarray of float64
        NaN where missing; finite wherever the row is not rejected.
    """
    values, not_number, cell = parse_numbers(column)
    reject(not_number, lambda index: f"{label} {name!r}: {cell(index)!r} is not a number")
    infinite = np.isinf(values)
    if infinite.any():
        if non_finite == "missing":
            values[infinite] = np.nan
        else:
            reject(infinite, lambda index: f"{label} {name!r}: {cell(index)!r} is not a finite number")
    return values


def log_time_zones(logger, what: str, aware: int, naive: int) -> None:
    """Say what became of time zones: times with one converted to UTC; a warning when times without one mix in.

    Parameters
    ----------
    logger : logging.Logger
        The ingest kind's logger.
    what : str
        The column, as the message starts: ``"Time column 'day'"``.
    aware, naive : int
        Times read with a time zone (converted to UTC), and without one (taken as UTC).
    """
    if not aware:
        return
    message = (f"{what}: {aware} time(s) with a time zone were converted to UTC"
               + (f" and {naive} time(s) without one were taken as UTC" if naive else "") + ".")
    if naive:
        logger.warning(message + " If those are local times, give them an offset (or a time zone) in the source.")
    else:
        logger.info(message)


def rejected_rows(raw: RawBlock, bad: np.ndarray, reasons: list) -> list[dict]:
    """The rejects of a parsed block: rows the parser refused, then the ``bad`` rows with their ``reasons``.

    Parameters
    ----------
    raw : RawBlock
        The parsed block.
    bad : numpy.ndarray of bool
        The parsed rows refused by validation.
    reasons : list of str
        The reason of each parsed row (read where ``bad``).

    Returns
    -------
    list of dict
        Each with its block-local ``record``, its ``line`` in the block and
        its ``raw`` text (Parquet and SQL rows have no text: their values
        quoted as JSON), sorted by record.
    """
    rejects = []
    for item in raw.rejects:  # rows that could not even be parsed
        line, text = raw.physical(item["record"])
        rejects.append({**item, "line": line, "raw": text if text is not None else item["raw"]})
    for index in np.flatnonzero(bad):
        record = int(raw.records[index])
        line, text = raw.physical(record)
        if text is None:
            text = json.dumps({name: _cell_value(raw.table.column(name), index) for name in raw.table.column_names},
                              default=str)
        rejects.append({"record": record, "line": line, "raw": text, "reason": reasons[index]})
    rejects.sort(key=lambda item: item["record"])
    return rejects


def _cell_value(column: pa.ChunkedArray, index: int):
    """A cell as Python, or as Arrow's text where Python cannot hold it (a timestamp after the year 9999)."""
    import pyarrow.compute as pc

    try:
        return column[index].as_py()
    except (OverflowError, ValueError):
        return pc.cast(column.slice(index, 1), pa.string())[0].as_py()


def stage_table(staging: str, block_index: int, table: pa.Table, *, shuffle_seed: int | None = None) -> None:
    """Stage a block's valid rows as Arrow IPC (memory-mapped by the later tasks).

    Parameters
    ----------
    staging : str
    block_index : int
    table : pyarrow.Table
    shuffle_seed : int, optional
        Stage the rows in the seeded random order of
        :func:`bigdl.ingest._pipeline.shuffle_rows` (the store's row shuffle).
    """
    order = shuffle_rows(table.num_rows, shuffle_seed, block_index)

    def write(sink) -> None:
        with pa.ipc.new_file(sink, table.schema) as writer:
            if order is None:
                writer.write_table(table)
                return
            # Gathered a batch at a time, so the shuffled copy never holds more than one batch.
            for start in range(0, len(order), SHUFFLE_BATCH_ROWS):
                writer.write_table(table.take(pa.array(order[start:start + SHUFFLE_BATCH_ROWS])))

    _staging.save(staging, f"block-{block_index:06d}.arrow", write)


def read_staged(staging: str, block_index: int) -> pa.Table:
    """The staged rows of one block.

    Parameters
    ----------
    staging : str
    block_index : int

    Returns
    -------
    pyarrow.Table
    """
    return pa.ipc.open_file(_staging.arrow_file(staging, f"block-{block_index:06d}.arrow")).read_all()


def stage_rejects(staging: str, block_index: int, rejects: list[dict]) -> None:
    """Stage a block's rejects (block-local records and lines) until every block's offsets are known.

    Parameters
    ----------
    staging : str
    block_index : int
    rejects : list of dict
    """
    if rejects:
        frame = pd.DataFrame(rejects, columns=STAGED_REJECT_COLUMNS)
        _staging.save(staging, f"rejects-{block_index:06d}.parquet", lambda file: frame.to_parquet(file, index=False))


def block_offsets(plan: SourcePlan, results: list[dict]) -> list[dict]:
    """Per block, the records before it in the whole input and in its file, and the lines before it in its file.

    Parameters
    ----------
    plan : SourcePlan
    results : list of dict
        The read tasks' results (``n_records``, ``n_physical``), in block order.

    Returns
    -------
    list of dict
        ``global_record``, ``file_record`` and ``file_line`` per block.
    """
    offsets = []
    global_records = 0
    file_records: dict[str, int] = {}
    file_lines: dict[str, int] = {}
    for block, result in zip(plan.blocks, results):
        offsets.append({"global_record": global_records, "file_record": file_records.get(block.path, 0),
                        "file_line": file_lines.get(block.path, 0)})
        global_records += result["n_records"]
        file_records[block.path] = file_records.get(block.path, 0) + result["n_records"]
        file_lines[block.path] = file_lines.get(block.path, 0) + result["n_physical"]
    return offsets


def rejects_task(staging: str, destination: str, block_index: int, source: str, offsets: dict) -> int:
    """Renumber one block's staged rejects within their file and write them to the store's rejects.

    Parameters
    ----------
    staging : str
    destination : str
        The temporary store.
    block_index : int
    source : str
        The block's file.
    offsets : dict
        The block's :func:`block_offsets` entry.

    Returns
    -------
    int
        Rejects written.
    """
    frame = pd.read_parquet(_staging.load(staging, f"rejects-{block_index:06d}.parquet"))
    out = pd.DataFrame({
        "source": source,
        "row": frame["record"] + offsets["file_record"] + 1,
        "line": frame["line"] + offsets["file_line"],
        "raw": frame["raw"].astype(object),
        "reason": frame["reason"].astype(object),
    })
    return write_rejects_part(destination, f"part-{block_index:06d}", out)


def write_block_rejects(root: Path, staging: Path, plan: SourcePlan, read_results: list[dict], offsets: list[dict],
                        run) -> None:
    """One rejects task per block that rejected rows.

    Parameters
    ----------
    root : path
        The temporary store.
    staging : path
    plan : SourcePlan
    read_results : list of dict
    offsets : list of dict
        :func:`block_offsets`.
    run : callable
        ``run(stage, task, jobs)``.
    """
    jobs = [(str(staging), str(root), block.index, block.path, block_offset)
            for block, result, block_offset in zip(plan.blocks, read_results, offsets) if result["n_rejected"]]
    if jobs:
        run("rejects", rejects_task, jobs)


def staged_examples(staging: Path, limit: int = 3) -> list[str]:
    """The first staged rejects as text, for :func:`bigdl.ingest._pipeline.empty_message`.

    Parameters
    ----------
    staging : path
    limit : int, default 3

    Returns
    -------
    list of str
    """
    for name in _staging.names(staging, "rejects-", ".parquet")[:1]:
        frame = pd.read_parquet(_staging.load(staging, name)).head(limit)
        return [f"line {row.line}: {row.reason} ({row.raw!r})" if pd.notna(row.line) else f"{row.reason} ({row.raw!r})"
                for row in frame.itertuples()]
    return []
