"""Ingest: read and validate raw data with Dask, fit preprocessing out of core, write a Zarr store."""

from bigdl.ingest._images import images, scale_to_uint8
from bigdl.preprocessing import TabularPreprocessor
from bigdl.ingest._sequences import sequences
from bigdl.ingest._tabular import tabular

__all__ = ["tabular", "images", "sequences", "TabularPreprocessor", "scale_to_uint8"]
