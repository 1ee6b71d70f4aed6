"""Source readers of ingest: one module per format, chosen through a small registry.

Row formats (``_csv``, ``_jsonl``, ``_parquet``, ``_sql``, ``_npy``) plan
:class:`Block` s and read them into :class:`RawBlock` s; image formats
(``_folder``, ``_manifest``, ``_idx``, ``_npy``) resolve to an
:class:`ImageListing`.  ``_registry`` chooses a format by name or by
sniffing; ``_paths`` is the one path expander every source goes through.
"""

from bigdl.ingest.sources._blocks import NULL_TOKENS, Block, RawBlock, SourcePlan
from bigdl.ingest.sources._folder import IMAGE_SUFFIXES, list_image_folder
from bigdl.ingest.sources._idx import read_idx
from bigdl.ingest.sources._listing import ArrayPart, FilePart, ImageListing, open_location
from bigdl.ingest.sources._npy import NPZ_KEYS
from bigdl.ingest.sources._paths import expand_paths, is_url, open_binary
from bigdl.ingest.sources._registry import (FORMATS, IMAGE_FORMATS, ROW_FORMATS, SOURCE_FORMATS, RowFormat,
                                            plan_sources, read_block, resolve_image_source, sniff_image_format,
                                            sniff_row_format)

__all__ = ["Block", "RawBlock", "SourcePlan", "NULL_TOKENS", "plan_sources", "read_block", "sniff_row_format",
           "RowFormat", "ROW_FORMATS", "FORMATS", "ImageListing", "FilePart", "ArrayPart", "resolve_image_source",
           "sniff_image_format", "IMAGE_FORMATS", "SOURCE_FORMATS", "IMAGE_SUFFIXES", "NPZ_KEYS", "list_image_folder",
           "read_idx", "expand_paths", "is_url", "open_binary", "open_location"]
