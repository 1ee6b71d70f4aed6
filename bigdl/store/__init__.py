"""The Zarr store: the contract between ingest and every consumer."""

from bigdl.store._dataset import Dataset, StoreInfo, open_store
from bigdl.store._format import FORMAT_VERSION, SPLIT_CODES, SPLIT_NAMES
from bigdl.store._location import set_storage_options
from bigdl.store._write import from_arrays
from bigdl.store._verify import VerifyReport, chunk_checksums, verify_store

__all__ = ["Dataset", "StoreInfo", "open_store", "from_arrays", "FORMAT_VERSION", "SPLIT_CODES", "SPLIT_NAMES",
           "verify_store", "VerifyReport", "chunk_checksums", "set_storage_options"]
