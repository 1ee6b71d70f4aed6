"""A table of a SQL database (a SQLAlchemy URL and ``table=``): blocks of rows in a stable order."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError
from bigdl.ingest.sources._blocks import Block, RawBlock, SourcePlan

__all__ = ["SQL_SCHEMES", "is_sql_url", "plan_sql", "read_sql_block", "frame_to_table"]


SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "duckdb")


def is_sql_url(text: str) -> bool:
    """Whether ``text`` is a SQLAlchemy URL of a known database dialect."""
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    return scheme in SQL_SCHEMES


def plan_sql(url: str, table: str | None, blocksize: int, options: dict) -> SourcePlan:
    """Reflect ``table`` of the database at ``url``; blocks of rows in a stable order (the primary key)."""
    import pandas as pd
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
            sample_frame = pd.read_sql(sa.select(reflected).limit(10_000), connection)
    except sa.exc.SQLAlchemyError as error:
        raise SourceError(f"Cannot read table {table!r} from {url!r}: {error}") from None
    finally:
        engine.dispose()
    sample = frame_to_table(sample_frame)
    # A column declared numeric that holds some text stays numeric (its text cells are
    # rejected row by row), however many of them the sample holds.
    for name in [column.name for column in reflected.columns if _declared_numeric(column.type)]:
        if pa.types.is_string(sample.column(name).type):
            numbers = pd.to_numeric(sample_frame[name], errors="coerce").astype("float64")
            sample = sample.set_column(sample.column_names.index(name), name, pa.array(numbers, from_pandas=True))
    row_bytes = max(8 * len(columns), sample.nbytes // max(sample.num_rows, 1))
    rows_per_block = max(10_000, blocksize // (4 * row_bytes))
    blocks = [
        Block(index, url, "sql", start, min(start + rows_per_block, n_rows), first=start == 0)
        for index, start in enumerate(range(0, n_rows, rows_per_block))
    ]
    options = dict(options, order_by=_sql_order(url, reflected))
    return SourcePlan("sql", [url], columns, sample, blocks, options)


def _declared_numeric(sql_type) -> bool:
    """Whether a column's declared type holds numbers (INTEGER, REAL, NUMERIC, ...)."""
    import decimal

    try:
        return sql_type.python_type in (int, float, decimal.Decimal)
    except NotImplementedError:  # a type without a Python equivalent (NullType: no declared type)
        return False


def _sql_order(url: str, reflected) -> list[str]:
    keys = [column.name for column in reflected.primary_key.columns]
    if keys:
        return keys
    if url.startswith("sqlite"):
        return ["rowid"]
    return [column.name for column in reflected.columns]


def read_sql_block(block: Block, columns: list[str], options: dict) -> RawBlock:
    """One block of rows of the table, in the planned order."""
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
    table = frame_to_table(frame)
    n = table.num_rows
    return RawBlock(table, np.arange(n, dtype=np.int64), n, n)


def frame_to_table(frame) -> pa.Table:
    """Rows read from the database as Arrow; a column whose cells mix types becomes text.

    SQLite keeps any value in any column (the text ``'oops'`` in a REAL
    column), so such a column arrives as Python objects of several types.
    As text, validation then rejects the cells that are not numbers row by
    row, like unparsable cells of a CSV file, instead of failing the block.
    """
    import pandas as pd

    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    arrays = []
    for name in frame.columns:
        column = frame[name]
        try:
            arrays.append(pa.array(column, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value))
                                    else str(value) for value in column], type=pa.string()))
    return pa.table(arrays, names=[str(name) for name in frame.columns])
