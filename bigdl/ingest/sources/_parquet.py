"""Parquet files: blocks of whole row groups, read with pyarrow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bigdl.errors import SourceError
from bigdl.ingest.sources._blocks import Block, RawBlock, SourcePlan, header_mismatch
from bigdl.ingest.sources._paths import open_binary

__all__ = ["SUFFIXES", "plan_parquet", "read_parquet_block"]


SUFFIXES = (".parquet", ".pq", ".parq")


def plan_parquet(paths: list[str], blocksize: int, options: dict) -> SourcePlan:
    """Check the schemas of Parquet ``paths`` (one shared schema); blocks of whole row groups."""
    import pyarrow.parquet as pq

    blocks: list[Block] = []
    reference = None
    sample = None
    for path in paths:
        try:
            with open_binary(path) as handle:
                parquet = pq.ParquetFile(handle)
                metadata, schema = parquet.metadata, parquet.schema_arrow
        except (pa.ArrowInvalid, OSError) as error:
            raise SourceError(f"{path} cannot be read as Parquet ({error}).") from None
        columns = schema.names
        if len(set(columns)) != len(columns):
            duplicated = sorted({name for name in columns if columns.count(name) > 1})
            raise SourceError(f"{path}: the schema repeats column(s) {duplicated}; column names must be unique "
                              "(rename the repeated columns and write the file again).")
        if reference is None:
            reference = (path, columns)
            sample = schema.empty_table()
            if metadata.num_row_groups:
                with open_binary(path) as handle:
                    sample = pq.ParquetFile(handle).read_row_group(0)
                sample = sample.slice(0, min(sample.num_rows, 10_000))
        elif columns != reference[1]:
            raise SourceError(header_mismatch(path, columns, reference[0], reference[1]))
        group_start, group_bytes = 0, 0
        for group in range(metadata.num_row_groups):
            group_bytes += metadata.row_group(group).total_byte_size
            if group_bytes >= blocksize or group == metadata.num_row_groups - 1:
                blocks.append(Block(len(blocks), path, "parquet", group_start, group + 1, first=group_start == 0))
                group_start, group_bytes = group + 1, 0
    return SourcePlan("parquet", paths, reference[1], sample, blocks, options)


def read_parquet_block(block: Block, columns: list[str]) -> RawBlock:
    """The row groups of one block, only the needed columns."""
    import pyarrow.parquet as pq

    with open_binary(block.path) as handle:
        table = pq.ParquetFile(handle).read_row_groups(list(range(block.start, block.stop)), columns=columns)
    n = table.num_rows
    return RawBlock(table, np.arange(n, dtype=np.int64), n, n)
