"""Input formats for tabular ingest: planning blocks and reading one block.

One reader per format (CSV, JSON lines, Parquet, SQL table), chosen by name
or sniffed from the path.  Planning runs on the client and touches only file
headers and metadata; :func:`read_block` runs inside a Dask task and returns
the rows of one block as a pyarrow Table plus the rows that could not be
parsed at all (wrong number of fields, malformed JSON), each with its
position and raw text, so nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError

__all__ = ["Block", "RawBlock", "SourcePlan", "plan_sources", "read_block", "FORMATS", "NULL_TOKENS"]

FORMATS = ("csv", "jsonl", "parquet", "sql")
# pyarrow's CSV spellings of a missing number, used when numbers arrive as text.
NULL_TOKENS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                         "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"})
SAMPLE_BYTES = 1 << 20
SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "duckdb")


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
    _lines: list | None = field(default=None, repr=False)

    def physical(self, record: int) -> tuple[int | None, str | None]:
        """The 1-based line within the block and the raw text of a record (None, None without text).

        Records skip blank lines (as pyarrow does), lines count them.
        """
        if self.data is None:
            return None, None
        if self._lines is None:
            self._lines = [(number, line) for number, line in enumerate(self.data.split(b"\n"), start=1)
                           if line.strip(b"\r")]
        index = record + self.header_rows
        if not 0 <= index < len(self._lines):
            return None, None
        number, line = self._lines[index]
        return number, line.decode(self.encoding, "replace").rstrip("\r")


def _count_lines(data: bytes) -> int:
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
                stat = os.stat(path)
                entries.append({"path": path, "bytes": stat.st_size, "mtime": stat.st_mtime})
            except OSError:
                entries.append({"path": path})
        return {"format": self.format, "files": entries}

    @property
    def input_bytes(self) -> int:
        return sum(os.path.getsize(path) for path in self.paths if os.path.exists(path))


# ---------------------------------------------------------------- planning
def plan_sources(source, *, format: str | None = None, table: str | None = None,
                 blocksize: int = 64 << 20, encoding: str = "utf-8", delimiter: str = ",") -> SourcePlan:
    """Resolve ``source`` to files (or a SQL table), check them and cut them into blocks."""
    options = {"encoding": encoding, "delimiter": delimiter, "table": table}
    if isinstance(source, (str, os.PathLike)) and _is_sql_url(str(source)):
        if format not in (None, "sql"):
            raise SchemaError(f"format={format!r} does not fit the SQL URL {source!r}; use format='sql'.")
        return _plan_sql(str(source), table, blocksize, options)
    paths = _expand_paths(source)
    fmt = format or _sniff_format(paths[0])
    if fmt not in FORMATS:
        raise SchemaError(f"The 'format' parameter must be one of {FORMATS}; got {fmt!r}.")
    formats = {_sniff_format(path, default=fmt) for path in paths}
    if format is None and len(formats) > 1:
        raise SourceError(
            f"The inputs mix formats {sorted(formats)}; ingest one format at a time or pass format=."
        )
    if fmt == "csv":
        return _plan_csv(paths, blocksize, options)
    if fmt == "jsonl":
        return _plan_jsonl(paths, blocksize, options)
    if fmt == "parquet":
        return _plan_parquet(paths, blocksize, options)
    raise SchemaError("format='sql' needs a SQLAlchemy URL such as 'sqlite:///data.db' and table=.")


def _is_sql_url(text: str) -> bool:
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    return scheme in SQL_SCHEMES


def _expand_paths(source) -> list[str]:
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise SourceNotFoundError("No input given: pass a file path, a glob such as 'data/*.csv' or a list of paths.")
    paths: list[str] = []
    for item in items:
        text = os.fspath(item)
        if "://" in text and not text.startswith("file://"):
            raise SourceError(
                f"Remote input {text!r} is not supported by tabular ingest yet; copy it to a local or "
                "shared file system path first."
            )
        text = text.removeprefix("file://")
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise SourceNotFoundError(f"The pattern {text!r} matches no file; check the path and the glob.")
            paths.extend(path for path in matches if os.path.isfile(path))
        elif os.path.isdir(text):
            matches = sorted(
                str(path) for path in Path(text).iterdir()
                if path.is_file() and not path.name.startswith((".", "_")) and _sniff_format(str(path), default=None)
            )
            if not matches:
                raise SourceNotFoundError(f"The folder {text!r} holds no CSV, JSON lines or Parquet file.")
            paths.extend(matches)
        elif not os.path.exists(text):
            raise SourceNotFoundError(f"Input file {text!r} does not exist; check the path.")
        else:
            paths.append(text)
    if not paths:
        raise SourceNotFoundError(f"No input file found in {items!r}.")
    return paths


def _sniff_format(path: str, default: str | None = "csv") -> str | None:
    name = path.lower()
    for suffix in (".gz", ".gzip"):
        name = name.removesuffix(suffix)
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq", ".parq")):
        return "parquet"
    return default


def _compression(path: str) -> str | None:
    return "gzip" if path.lower().endswith((".gz", ".gzip")) else None


def _head_bytes(path: str, size: int = SAMPLE_BYTES) -> bytes:
    if _compression(path) == "gzip":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read(size)
        except (OSError, EOFError) as error:
            raise SourceError(f"{path}: cannot be read as gzip ({error}); is it really compressed?") from None
    with open(path, "rb") as handle:
        return handle.read(size)


def _check_encoding(path: str, head: bytes, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        decoder.decode(head, final=False)
    except UnicodeDecodeError as error:
        raise SourceError(
            f"{path} is not valid {encoding} text: byte 0x{head[error.start]:02x} at offset {error.start} "
            f"cannot be decoded. Pass encoding='latin-1' (or the file's real encoding, e.g. 'cp1252')."
        ) from None


def _block_ranges(path: str, blocksize: int) -> list[tuple[int, int]]:
    size = os.path.getsize(path)
    if _compression(path) or size <= blocksize:
        return [(0, size)]
    # Equal blocks (not blocksize, blocksize, ..., remainder) keep workers evenly busy.
    n_blocks = -(-size // blocksize)
    bounds = [size * index // n_blocks for index in range(n_blocks + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _plan_lines(paths: list[str], blocksize: int, fmt: str, options: dict) -> list[Block]:
    blocks: list[Block] = []
    for path in paths:
        for start, stop in _block_ranges(path, blocksize):
            blocks.append(Block(len(blocks), path, fmt, start, stop, first=start == 0,
                                compression=_compression(path)))
    return blocks


def _plan_csv(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    import pyarrow.csv as pa_csv

    reference_columns = None
    reference_path = None
    sample = None
    for path in paths:
        head = _head_bytes(path)
        if not head.strip():
            raise SourceError(f"{path} is empty: a CSV file needs at least a header line.")
        _check_encoding(path, head, options["encoding"])
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
            raise SourceError(_header_mismatch(path, columns, reference_path, reference_columns))
    blocks = _plan_lines(paths, blocksize, "csv", options)
    return SourcePlan("csv", paths, reference_columns, sample, blocks, options)


def _header_mismatch(path, columns, reference_path, reference_columns) -> str:
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


def _plan_jsonl(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    columns: list[str] = []
    sample_rows: list[dict] = []
    for path in paths:
        head = _head_bytes(path)
        _check_encoding(path, head, options["encoding"])
        lines = head.decode(options["encoding"], errors="replace").splitlines()
        if len(head) >= SAMPLE_BYTES:
            lines = lines[:-1]
        for line in lines:
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
    sample = _table_from_records(sample_rows, columns)
    return SourcePlan("jsonl", paths, columns, sample, _plan_lines(paths, blocksize, "jsonl", options), options)


def _table_from_records(rows: list[dict], columns: list[str]) -> pa.Table:
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


def _plan_parquet(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    import pyarrow.parquet as pq

    blocks: list[Block] = []
    reference = None
    sample = None
    for path in paths:
        try:
            metadata = pq.ParquetFile(path).metadata
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise SourceError(f"{path} cannot be read as Parquet ({error}).") from None
        columns = schema.names
        if reference is None:
            reference = (path, columns)
            sample = schema.empty_table()
            if metadata.num_row_groups:
                sample = pq.ParquetFile(path).read_row_group(0)
                sample = sample.slice(0, min(sample.num_rows, 10_000))
        elif columns != reference[1]:
            raise SourceError(_header_mismatch(path, columns, reference[0], reference[1]))
        group_start, group_bytes = 0, 0
        for group in range(metadata.num_row_groups):
            group_bytes += metadata.row_group(group).total_byte_size
            if group_bytes >= blocksize or group == metadata.num_row_groups - 1:
                blocks.append(Block(len(blocks), path, "parquet", group_start, group + 1, first=group_start == 0))
                group_start, group_bytes = group + 1, 0
    return SourcePlan("parquet", paths, reference[1], sample, blocks, options)


def _plan_sql(url: str, table: str | None, blocksize: int, options: dict) -> SourcePlan:
    import sqlalchemy as sa

    if not table:
        raise SchemaError(f"Reading from the database {url!r} needs table='name of the table'.")
    if url.startswith("sqlite:///"):
        database = url.removeprefix("sqlite:///")
        if database and not os.path.exists(database):
            raise SourceNotFoundError(f"The SQLite database file {database!r} does not exist; check the URL.")
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        tables = inspector.get_table_names()
        if table not in tables:
            raise SourceNotFoundError(f"The database {url!r} has no table {table!r}; tables found: {tables}.")
        reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
        columns = [column.name for column in reflected.columns]
        with engine.connect() as connection:
            n_rows = connection.execute(sa.select(sa.func.count()).select_from(reflected)).scalar_one()
            import pandas as pd

            sample_frame = pd.read_sql(sa.select(reflected).limit(10_000), connection)
    except sa.exc.SQLAlchemyError as error:
        raise SourceError(f"Cannot read table {table!r} from {url!r}: {error}") from None
    finally:
        engine.dispose()
    sample = pa.Table.from_pandas(sample_frame, preserve_index=False)
    row_bytes = max(8 * len(columns), sample.nbytes // max(sample.num_rows, 1))
    rows_per_block = max(10_000, blocksize // (4 * row_bytes))
    blocks = [
        Block(index, url, "sql", start, min(start + rows_per_block, n_rows), first=start == 0)
        for index, start in enumerate(range(0, n_rows, rows_per_block))
    ]
    options = dict(options, order_by=_sql_order(url, reflected))
    return SourcePlan("sql", [url], columns, sample, blocks, options)


def _sql_order(url: str, reflected) -> list[str]:
    keys = [column.name for column in reflected.primary_key.columns]
    if keys:
        return keys
    if url.startswith("sqlite"):
        return ["rowid"]
    return [column.name for column in reflected.columns]


# ---------------------------------------------------------------- reading
def read_block(block: Block, columns: list[str], types: dict[str, pa.DataType], options: dict,
               strings_only: bool = False) -> RawBlock:
    """Read one block: the needed ``columns`` with ``types`` where they convert.

    With ``strings_only`` every column is read as text, so values that do not
    convert reach validation instead of failing the whole block.
    """
    if block.format == "csv":
        return _read_csv_block(block, columns, types, options, strings_only)
    if block.format == "jsonl":
        return _read_jsonl_block(block, columns, types, options)
    if block.format == "parquet":
        return _read_parquet_block(block, columns)
    return _read_sql_block(block, columns, options)


def _line_aligned_bytes(block: Block) -> bytes:
    if block.compression == "gzip":
        with gzip.open(block.path, "rb") as handle:
            try:
                return handle.read()
            except (OSError, EOFError) as error:
                raise SourceError(f"{block.path}: the gzip stream is corrupt or truncated ({error}).") from None
    with open(block.path, "rb") as handle:
        # A block owns every line whose first byte lies in [start, stop).
        begin = _line_start(handle, block.start)
        end = _line_start(handle, block.stop)
        handle.seek(begin)
        return handle.read(max(end - begin, 0))


def _line_start(handle, position: int) -> int:
    if position == 0:
        return 0
    handle.seek(position - 1)
    handle.readline()
    return handle.tell()


def _read_csv_block(block: Block, columns: list[str], types: dict[str, pa.DataType], options: dict,
                    strings_only: bool, single_thread: bool = False, data: bytes | None = None) -> RawBlock:
    import pyarrow.csv as pa_csv

    if data is None:
        data = _line_aligned_bytes(block)
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
            return _read_csv_block(block, columns, types, options, strings_only=True,
                                   single_thread=single_thread, data=data)
        if "Empty CSV file" in message:
            table = pa.table({name: pa.array([], type=pa.string()) for name in columns})
        else:
            raise SourceError(f"{block.path} (bytes {block.start}-{block.stop}) cannot be parsed as CSV: "
                              f"{message}") from None
    if invalid and not single_thread:
        return _read_csv_block(block, columns, types, options, strings_only=strings_only,
                               single_thread=True, data=data)
    n_records = table.num_rows + len(invalid)
    # pyarrow numbers rows from the start of the buffer, header and all,
    # skipping blank lines; a record's index leaves out the header.
    invalid_records = np.array([number - 1 - header_rows for number, _, _ in invalid], dtype=np.int64)
    records = np.setdiff1d(np.arange(n_records, dtype=np.int64), invalid_records, assume_unique=True)
    rejects = [{"record": int(number - 1 - header_rows), "raw": text, "reason": reason}
               for number, text, reason in invalid]
    return RawBlock(table, records, n_records, _count_lines(data), rejects, header_rows, data=data,
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


def _read_jsonl_block(block: Block, columns: list[str], types: dict[str, pa.DataType], options: dict) -> RawBlock:
    data = _line_aligned_bytes(block)
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
    table = _table_from_records(rows, columns)
    return RawBlock(table, np.asarray(records, dtype=np.int64), len(lines), _count_lines(data), rejects, 0,
                    data=data, encoding=text_encoding)


def _read_parquet_block(block: Block, columns: list[str]) -> RawBlock:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(block.path).read_row_groups(list(range(block.start, block.stop)), columns=columns)
    n = table.num_rows
    return RawBlock(table, np.arange(n, dtype=np.int64), n, n)


def _read_sql_block(block: Block, columns: list[str], options: dict) -> RawBlock:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(block.path)
    try:
        reflected = sa.Table(options["table"], sa.MetaData(), autoload_with=engine)
        order = [sa.text(name) if name == "rowid" else reflected.c[name] for name in options["order_by"]]
        query = (sa.select(*[reflected.c[name] for name in columns]).order_by(*order)
                 .limit(block.stop - block.start).offset(block.start))
        with engine.connect() as connection:
            frame = pd.read_sql(query, connection)
    finally:
        engine.dispose()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    n = table.num_rows
    return RawBlock(table, np.arange(n, dtype=np.int64), n, n)
