"""The Zarr store: the contract between ingest and every consumer."""

from bigdl.store._dataset import Dataset, StoreInfo, open_store
from bigdl.store._format import FORMAT_VERSION, SPLIT_CODES, SPLIT_NAMES

__all__ = ["Dataset", "StoreInfo", "open_store", "FORMAT_VERSION", "SPLIT_CODES", "SPLIT_NAMES"]
