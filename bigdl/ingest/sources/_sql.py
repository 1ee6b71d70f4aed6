"""A table of a SQL database (a SQLAlchemy URL and ``table=``): blocks of rows in a stable order."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError
from bigdl.ingest.sources._blocks import Block, RawBlock, SourcePlan

__all__ = ["SQL_SCHEMES", "is_sql_url", "plan_sql", "read_sql_block"]


SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "duckdb")


def is_sql_url(text: str) -> bool:
    """Whether ``text`` is a SQLAlchemy URL of a known database dialect."""
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    return scheme in SQL_SCHEMES


def plan_sql(url: str, table: str | None, blocksize: int, options: dict) -> SourcePlan:
    """Reflect ``table`` of the database at ``url``; blocks of rows in a stable order (the primary key)."""
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
    table = pa.Table.from_pandas(frame, preserve_index=False)
    n = table.num_rows
    return RawBlock(table, np.arange(n, dtype=np.int64), n, n)
