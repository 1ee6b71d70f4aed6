"""Image ingest: image files or image arrays -> uint8 ``(n, C, H, W)`` Zarr store.

The source (a folder of class sub-folders, a ``path,label`` manifest, MNIST
IDX files or ``.npy``/``.npz`` arrays; see :mod:`bigdl.ingest.sources`)
is resolved on the client into an ordered list of items and their labels.
Decoding runs in Dask tasks, in the one ingest pipeline of
:mod:`bigdl.ingest._pipeline` (:class:`ImageSteps` plugs in the image steps):

1. **decode** (one task per batch of items, a batch being at most one store
   chunk's worth): open each file with Pillow, or read the batch's rows of an
   array file by offset, convert to ``mode``, resize to ``size``, validate,
   and stage the batch as a uint8 ``.npy`` file (plus labels, records and
   splits) next to the temporary store.  The task also returns per-channel
   sums and sums of squares of the pixels in ``[0, 1]`` units, for the
   normalisation statistics, and its rejects.
2. **write** (one task per store chunk): read the staged rows of exactly one
   chunk and write the chunk.  Items that are rejected in pass 1 shift the
   stored rows, so writes only happen once every batch's size is known: no two
   tasks ever touch one Zarr chunk.

Memory is bounded by one chunk of images per task.  The per-channel mean and
standard deviation of the stored images go to the store's ``preprocessing``
attribute; :class:`bigdl.loaders.ChunkLoader` normalises with them at load time.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from bigdl._validation import Interval, Options, Predicate, check_params
from bigdl.ingest.sources import (IMAGE_SUFFIXES, ImageListing, is_url, list_image_folder, open_binary,
                                  open_location, resolve_image_source)
from bigdl.ingest import _staging
from bigdl.ingest._pipeline import (IngestSteps, account, count_reasons, empty_message, register_reason_family,
                                    run_ingest, shuffle_rows, write_chunk, write_rejects_part)
from bigdl.store._dataset import Dataset
from bigdl.store._format import assign_split, check_split_parameters, rows_per_chunk_for
from bigdl.store._write import create_arrays

__all__ = ["images", "IMAGE_SUFFIXES", "list_image_folder", "scale_to_uint8"]

logger = logging.getLogger(__name__)

MODES = {"L": 1, "RGB": 3}
RESIZES = ("stretch", "pad")
RESAMPLE = "bilinear"
X_DIMENSIONS = ("sample", "channel", "height", "width")
DECODE_TASKS = 16  # decode tasks wanted at least (when batches stay above MIN_DECODE_BATCH items)
MIN_DECODE_BATCH = 256
MAX_DECODE_BATCH = 1024
FILE_DEFAULTS = {"mode": "L", "size": (28, 28)}  # image files vary: without mode=/size= they become 28x28 grey


def images(source, *, store: str | os.PathLike, mode: str | None = None, size=None, resize: str = "stretch",
           labels=None, path_column: str = "path", label_column: str = "label", format: str | None = None,
           validation: float = 0.0, test: float = 0.2, seed: int = 0, shuffle: bool = True,
           rows_per_chunk: int | None = None, compression: str = "lz4", overwrite: bool = False,
           progress: bool = True, client=None) -> Dataset:
    """Ingest labelled images into a Zarr store, decoding in parallel on Dask.

    Parameters
    ----------
    source : str or path
        One of (the format is sniffed from the name, then the first bytes;
        ``format=`` overrides):

        - a **folder** with one sub-folder per class (its name is the class
          name); the PNG, JPEG, BMP and TIFF files in it, at any depth, are
          its samples (by suffix, any case; hidden files, other files and
          files directly in the root are ignored);
        - a **manifest**: a CSV/TSV (``.csv``, ``.tsv``, optionally ``.gz``)
          or Parquet file with a path and a label column; relative paths are
          resolved against the manifest's folder;
        - an **IDX** images file (MNIST format, ``*-images-idx3-ubyte``,
          optionally gzip-compressed); its labels file is found by the MNIST
          naming convention (``*-labels-idx1-ubyte[.gz]`` beside it) unless
          ``labels=`` names it;
        - a **.npy** array of images ``(n, H, W)``, ``(n, H, W, C)`` or
          ``(n, C, H, W)`` (integers 0..255) with ``labels=``, or a **.npz**
          holding the images under ``x``/``X``/``images``/``image``/``data``
          and the labels under ``y``/``Y``/``labels``/``label``/``targets``.

        Manifests and arrays may be a glob (``"parts/*.csv"``,
        ``"mnist/*-images-idx3-ubyte.gz"``), read in sorted order, and a
        ``file://`` or other fsspec URL.  Array files behind a non-local URL
        are streamed into the store's staging folder first; image files
        named by URLs in a manifest are read by the tasks through fsspec, so
        the workers must be able to reach them.
    store : str or path
        Where to write the store (a directory, usually ``*.zarr``).
    mode : {"L", "RGB"}, optional
        Pillow mode every image is converted to: 1 channel (grey) or 3.
        Default: the arrays' own (1 channel -> "L", 3 or 4 -> "RGB") for IDX
        and .npy sources, "L" for image files.
    size : (int, int) or int, optional
        ``(height, width)`` of the stored images.  Default: the arrays' own
        size for IDX and .npy sources, ``(28, 28)`` for image files.
    resize : {"stretch", "pad"}, default "stretch"
        ``"stretch"`` resizes to ``size`` ignoring the aspect ratio; ``"pad"``
        keeps the aspect ratio, fits the image inside ``size`` and pads the
        rest with zeros, the image centred.  Resampling is bilinear.
    labels : array-like or str or path, optional
        The labels of an IDX file (a labels IDX path) or of a .npy array (an
        array, or a .npy path), one per image.
    path_column, label_column : str, default "path" and "label"
        The columns of a manifest.
    format : {"folder", "manifest", "idx", "npy"}, optional
        Skip sniffing.
    validation, test : float, default 0.0 and 0.2
        Expected fractions of samples in the validation and test splits.
    seed : int, default 0
        Seed of the split.  A sample's split is a hash of a stable key and
        the seed: the path relative to the folder, the path as written in
        the manifest, or the array file's name and row index; so adding
        files (or manifest rows) never moves existing samples.  Also the seed
        of the shuffle.
    shuffle : bool, default True
        Store the images in a seeded random order across the whole source (a
        folder lists its classes one after another), so every chunk is a
        random sample; done inside the decode and write passes, memory stays
        that of one batch and one chunk.  ``False`` keeps the listing order.
        ``record`` is the item's position in the listing either way.
    rows_per_chunk : int, optional
        Images per store chunk; default: about 16 MiB of ``X`` per chunk.
    compression : {"lz4", "zstd", "none"}, default "lz4"
        Blosc codec of the store's arrays (recorded in its ``compression`` attribute).
    overwrite, progress, client
        As in :func:`bigdl.ingest.tabular`: replace an existing store once
        the new one is complete, show progress bars, where to run.

    Returns
    -------
    Dataset
        The store, opened: ``X`` uint8 ``(n, C, H, W)``, ``y`` int64 class
        codes (in the order of ``class_names``: sorted names, integer labels
        sorted as numbers), ``split`` and ``record`` (the item's position in
        the source's order: the sorted file list, the manifest rows, the
        array rows).

    Raises
    ------
    ParameterError
        A parameter out of its range or not among its options (named, with what is allowed).
    SchemaError
        Columns or options that do not fit the data.
    SourceNotFoundError
        No input matches ``source``.
    SourceError
        An input that cannot be read as asked.
    EmptyResultError
        Every image was rejected.
    StoreExistsError
        ``store`` exists and ``overwrite`` is False.
    StorePathError
        ``store`` is an input, lies inside one or contains one.

    Notes
    -----
    Items that cannot be used (a missing, empty, truncated or corrupt file,
    not an image, not convertible to ``mode``, a manifest row without a path
    or label, array rows beyond the end of a truncated file or with pixel
    values outside 0..255) are written to ``<store>/rejects/*.parquet`` with
    their source, record and reason; the store's ``rows`` attribute counts
    items read, stored and rejected, and read = stored + rejected always
    holds.

    Image files with 16 bits per channel (grey, grey + alpha, RGB, RGBA: PNG
    and TIFF) are read at full depth and scaled to the stored uint8 as
    ``round(value * 255 / 65535)`` (12-bit grey TIFFs: ``/ 4095``), then
    converted and resized like 8-bit files; the store's
    ``preprocessing["scaled_to_8_bits"]`` counts them by bit depth, ``info()``
    and a log line say so.  Files whose pixels have no known full scale
    (floating point, mode "F"; 32-bit integers, mode "I", outside 0..255) are
    rejected with that reason, never clipped.  Array rows are stored as they
    are: their values must be integers 0..255 (scale 16-bit arrays with
    :func:`scale_to_uint8` first).

    Examples
    --------
    >>> ds = bigdl.ingest.images("data/digits", store="work/digits.zarr", size=(28, 28))          # doctest: +SKIP
    >>> ds = bigdl.ingest.images("mnist/train-images-idx3-ubyte.gz", store="work/mnist.zarr")     # doctest: +SKIP
    >>> ds = bigdl.ingest.images("photos/manifest.parquet", store="work/p.zarr", mode="RGB", size=64)  # doctest: +SKIP
    """
    check_params("images", {"mode": mode, "size": size, "resize": resize, "shuffle": shuffle}, PARAMETERS)
    check_split_parameters("images", validation=validation, test=test, seed=seed, rows_per_chunk=rows_per_chunk,
                           compression=compression, unit="images")
    listing = resolve_image_source(source, format=format, labels=labels, path_column=path_column,
                                   label_column=label_column)
    mode, size = _resolve_mode_and_size(mode, size, listing)
    steps = ImageSteps(source, listing, options={"mode": mode, "size": size, "resize": resize},
                       split_spec={"seed": seed, "validation": validation, "test": test},
                       rows_per_chunk=rows_per_chunk, compression=compression)
    steps.inputs = (source, labels)
    steps.shuffle_seed = seed if shuffle else None
    return run_ingest(steps, store, overwrite=overwrite, progress=progress, client=client)


class ImageSteps(IngestSteps):
    """The image steps of the ingest pipeline: decode batches of items, fit the pixel statistics, write.

    Parameters
    ----------
    source : str or path
        The source as given, for messages.
    listing : ImageListing
        The items and their labels.
    options : dict
        ``mode``, ``size`` (height, width) and ``resize``.
    split_spec : dict
        ``seed``, ``validation`` and ``test``.
    rows_per_chunk : int or None
        Images per store chunk; None: about 16 MiB of ``X`` per chunk.
    compression : str
        The store's codec name.
    """

    kind = "image"
    read_stage = "decode"

    def __init__(self, source, listing: ImageListing, *, options: dict, split_spec: dict, rows_per_chunk,
                 compression: str):
        self.source, self.listing, self.options, self.split_spec = source, listing, options, split_spec
        self.compression, self.name = compression, listing.name
        self.channels = MODES[options["mode"]]
        height, width = options["size"]
        self.rows_per_chunk = rows_per_chunk or rows_per_chunk_for(self.channels * height * width, itemsize=1)
        self.read_task, self.write_task = _decode_task, _write_task

    def prepare(self, staging: Path) -> None:
        self.listing.localise(staging)

    def read_jobs(self, staging: str) -> list[tuple]:
        batches = self.listing.batches(_decode_batch_rows(self.listing.n_items, self.rows_per_chunk))
        return [(staging, index, start, batch, self.options, self.split_spec, self.shuffle_seed)
                for index, (start, batch) in enumerate(batches)]

    def account(self, read_results: list[dict]) -> dict:
        return account(read_results, expected=self.listing.n_items, what="images")

    def empty_message(self, accounting: dict, read_results: list[dict], staging: Path) -> str:
        examples = [f"{item['source']}: {item['reason']}" for result in read_results for item in result["rejects"]]
        hint = ""
        if "pixel values outside 0..255" in accounting["reasons"] and self.listing.native is not None:
            # Array rows are stored as they are: their dtype says nothing of their full scale.
            hint = ("Array pixels must be integers 0..255; scale 16-bit arrays first with "
                    "bigdl.ingest.scale_to_uint8(x, bits=16), i.e. round(x * 255 / 65535).")
        return empty_message(os.fspath(self.source), accounting, examples, hint, what="images")

    def fit(self, read_results: list[dict], accounting: dict) -> None:
        self.mean, self.std = _statistics(read_results, self.channels)
        scaled: Counter = Counter()
        for result in read_results:
            scaled.update(result["scaled"])
        self.scaled = {bits: scaled[bits] for bits in sorted(scaled, key=int)}
        for bits, count in self.scaled.items():
            logger.info("%s: %d image(s) with %s bits per channel were scaled to 8 bits, as round(value * 255 / %d).",
                        self.name, count, bits, (1 << int(bits)) - 1)

    def create_arrays(self, root: Path, n_rows: int) -> None:
        # Not ("y", "x"): xarray would take the label array "y" for a coordinate of X's row axis.
        create_arrays(root, n_rows, self.rows_per_chunk, x_shape=(self.channels, *self.options["size"]),
                      x_dtype="uint8", y_dtype="int64", x_dimensions=X_DIMENSIONS, compression=self.compression)

    def write_job(self, root: str, staging: str, start: int, pieces: list[tuple]) -> tuple:
        return (root, staging, start, pieces, self.shuffle_seed)

    def write_rejects(self, root: Path, staging: Path, read_results: list[dict], accounting: dict, run) -> None:
        # Image rejects are few and small (a name and a reason each): the decode tasks return them.
        rejects = [item for result in read_results for item in result["rejects"]]
        if rejects:
            write_rejects_part(root, "part-000000",
                               pd.DataFrame(rejects, columns=["source", "record", "class", "reason"]))

    def attributes(self, accounting: dict) -> dict:
        options = self.options
        return dict(
            split={**self.split_spec, "key": self.listing.split_key},
            task="classification", feature_names=[], target_name="label", class_names=list(self.listing.class_names),
            preprocessing={"mode": options["mode"], "size": list(options["size"]), "resize": options["resize"],
                           "resample": RESAMPLE, "mean": self.mean, "std": self.std,
                           "scaled_to_8_bits": self.scaled},
            source=self.listing.description,
        )


def _decode_batch_rows(n_items: int, rows_per_chunk: int) -> int:
    """Items per decode task: small enough for about ``DECODE_TASKS`` tasks, so a few thousand
    images still keep every worker busy, and never above ``MAX_DECODE_BATCH`` or a chunk, so a
    task's memory does not grow with the number of images."""
    return max(1, min(rows_per_chunk, MAX_DECODE_BATCH, max(MIN_DECODE_BATCH, -(-n_items // DECODE_TASKS))))


# ---------------------------------------------------------------- checks and listing
_SIDE = Interval(int, 1, None)
PARAMETERS = {
    "mode": [Options(MODES), None],
    "size": [_SIDE, Predicate(lambda size: isinstance(size, (tuple, list)) and len(size) == 2
                              and all(_SIDE.is_satisfied_by(side) for side in size),
                              "a (height, width) pair of ints >= 1"), None],
    "resize": [Options(RESIZES)],
    "shuffle": [bool],
}


def _size_pair(size) -> tuple[int, int]:
    """``(height, width)`` from a checked ``size=`` (one int is a square)."""
    check_params("images", {"size": size}, PARAMETERS)
    if not isinstance(size, (tuple, list)):
        size = (size, size)
    return int(size[0]), int(size[1])


def _resolve_mode_and_size(mode, size, listing: ImageListing) -> tuple[str, tuple[int, int]]:
    """Fill ``mode``/``size`` left out: arrays keep their own, image files get 28x28 grey."""
    if listing.native is not None:
        channels, native_size = listing.native
        mode = mode or ("L" if channels == 1 else "RGB")
        size = _size_pair(size) if size is not None else tuple(int(v) for v in native_size)
        return mode, size
    return mode or FILE_DEFAULTS["mode"], _size_pair(size if size is not None else FILE_DEFAULTS["size"])


# ---------------------------------------------------------------- pass 1: image files
def _open_image(location: str):
    """A Pillow image of a local path or an fsspec URL (the bytes of a URL are read whole)."""
    from PIL import Image

    if is_url(location):
        with open_binary(location) as handle:
            data = handle.read()
        if not data:
            raise ValueError("empty file (0 bytes)")
        return Image.open(io.BytesIO(data))
    if os.path.getsize(location) == 0:
        raise ValueError("empty file (0 bytes)")
    return Image.open(location)


def _load(location: str, mode: str, size: tuple[int, int], resize: str) -> tuple[np.ndarray, int]:
    """One file as uint8 ``(C, H, W)`` and the bits per channel it was scaled from (8: not scaled).

    Raises ValueError with the reason when the file cannot be used.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with _open_image(location) as image:
            deep = _deep_samples(image)
            image.load()  # decode now: truncated and corrupt data fail here
            image = _to_eight_bits(image, location, deep)
            image = _convert(image, mode)
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or corrupt format)") from None
    except _ConversionError as error:
        raise ValueError(str(error)) from None
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except (SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if str(error).startswith(_OWN_REASONS):
            raise
        raise ValueError(f"cannot decode: {type(error).__name__}: {error}") from None
    except OSError as error:
        if error.errno is not None:  # an operating-system error (permissions...): the file cannot be read
            raise
        raise ValueError(f"cannot decode: {type(error).__name__}: {error}") from None
    return _to_chw(resize_image(image, size, resize)), (deep[1] if deep else 8)


def _to_chw(image) -> np.ndarray:
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


# ---------------------------------------------------------------- high bit depths
# Pillow converts 16-bit grey ("I;16") to "L" by clipping at 255, and decodes 16-bit colour by
# keeping each sample's high byte.  Images with more than 8 bits per channel are scaled to the
# stored uint8 instead, from their samples at full depth: round(value * 255 / (2**bits - 1)).
SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")
# Raw modes of 16-bit colour samples -> the raw mode that unpacks the other byte of each sample,
# so that decoding the file a second time gives the low bytes; "LA;16B" (grey + alpha, which
# Pillow opens as RGBA) is unpacked as plain 8-bit "RGBA": grey high, grey low, alpha high, alpha low.
_FOREIGN = "B" if sys.byteorder == "little" else "L"  # the byte order opposite to "N" (native)
OTHER_BYTE = {f"{channels};16{order}": f"{channels};16{other}"
              for channels in ("RGB", "RGBA", "RGBX", "RGBa", "CMYK")
              for order, other in (("B", "L"), ("L", "B"), ("N", _FOREIGN))}
OTHER_BYTE["LA;16B"] = "RGBA"
_WIDE_RAWMODE = re.compile(r"^[A-Za-z]+;16[BLN]$")  # any other 16-bit raw mode with a byte order
# Reasons raised as they are (the others are wrapped as "cannot decode: ...").
_OWN_REASONS = ("empty file", "floating-point pixels", "pixel values outside 0..255", "16-bit image")


def _rawmodes(image) -> set:
    """The raw modes of an image's tiles: how its samples are laid out in the file (before ``load``)."""
    found = set()
    for tile in image.tile:
        args = tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str):
            found.add(rawmode)
    return found


def _deep_samples(image) -> tuple[str, int] | None:
    """``(raw mode, bits)`` of an image with more than 8 bits per channel, else None.

    Called before ``load()``, while the tiles still say how the file stores its samples.
    """
    rawmodes = _rawmodes(image)
    if image.mode in SIXTEEN_BIT_GREY or (image.mode == "I" and rawmodes & set(SIXTEEN_BIT_GREY)):
        # 12-bit grey TIFFs open as "I;16" holding 0..4095 (some Pillow versions open 16-bit grey as "I")
        return ("I;16", 12) if "I;12" in rawmodes else ("I;16", 16)
    wide = sorted(rawmodes & set(OTHER_BYTE))
    if wide:
        return wide[0], 16
    unknown = sorted(rawmode for rawmode in rawmodes if _WIDE_RAWMODE.match(rawmode))
    if unknown:
        raise ValueError(f"16-bit image whose samples cannot be read at full depth (mode {image.mode!r}, raw "
                         f"mode {unknown[0]!r}); save it with 8 bits per channel or as 16-bit grey or RGB")
    return None


def scale_to_uint8(values: np.ndarray, bits: int = 16) -> np.ndarray:
    """Samples of ``bits`` bits as uint8: ``round(value * 255 / (2**bits - 1))``, in exact integer arithmetic.

    ``2**bits - 1`` is odd, so no value falls halfway and the rounding needs no tie rule.

    Parameters
    ----------
    values : numpy.ndarray of unsigned int
        Pixel samples, at most ``2**bits - 1`` (larger ones are taken as the maximum).
    bits : int, default 16
        Bits per sample of ``values`` (12 for 12-bit TIFFs).

    Returns
    -------
    numpy.ndarray of uint8

    Examples
    --------
    >>> scale_to_uint8(np.array([0, 128, 129, 386, 65535], dtype=np.uint16))
    array([  0,   0,   1,   2, 255], dtype=uint8)
    """
    full = (1 << bits) - 1
    return ((np.minimum(values.astype(np.uint32), full) * 255 + full // 2) // full).astype(np.uint8)


def _to_eight_bits(image, location: str, deep: tuple[str, int] | None):
    """An 8-bit Pillow image of ``image``: deep samples scaled, pixels without a known range checked."""
    from PIL import Image

    if deep is None:
        if image.mode == "F":
            raise ValueError("floating-point pixels (mode 'F'): they have no fixed range to scale to 0..255; "
                             "save the image with 8 or 16 bits per channel")
        if image.mode == "I":  # 32-bit (or signed) integers: no known full scale, so only 0..255 is stored as it is
            low, high = image.getextrema()
            if low < 0 or high > 255:
                raise ValueError(f"pixel values outside 0..255 (min {low}, max {high}; integer pixels of mode "
                                 "'I' have no known full scale)")
        return image
    rawmode, bits = deep
    if rawmode == "I;16":
        return Image.fromarray(scale_to_uint8(np.asarray(image), bits), "L")
    with _open_image(location) as again:
        again.tile = [tile._replace(args=(OTHER_BYTE[rawmode], *tile.args[1:]) if isinstance(tile.args, tuple)
                                    else OTHER_BYTE[rawmode]) for tile in again.tile]
        again.load()
        other = np.asarray(again)
    if rawmode == "LA;16B":
        grey = other[..., 0].astype(np.uint16) << 8 | other[..., 1]
        alpha = other[..., 2].astype(np.uint16) << 8 | other[..., 3]
        return Image.fromarray(np.stack([scale_to_uint8(grey), scale_to_uint8(alpha)], axis=-1), "LA")
    samples = np.asarray(image).astype(np.uint16) << 8 | other  # Pillow kept the high bytes, ``other`` the low
    return Image.fromarray(scale_to_uint8(samples), image.mode)


class _ConversionError(Exception):
    pass


def _convert(image, mode: str):
    if image.mode == mode:
        return image
    try:
        return image.convert(mode)
    except Exception as error:
        raise _ConversionError(f"cannot convert mode {image.mode!r} to {mode!r}: {error}") from None


def resize_image(image, size: tuple[int, int], resize: str):
    """Resize a Pillow image to ``size`` = (height, width): stretched, or fitted and zero-padded, centred.

    Parameters
    ----------
    image : PIL.Image.Image
    size : (int, int)
        ``(height, width)``.
    resize : {"stretch", "pad"}

    Returns
    -------
    numpy.ndarray of uint8, shape (channels, height, width)
    """
    from PIL import Image

    height, width = size
    resample = Image.Resampling.BILINEAR
    if resize == "stretch":
        return image if image.size == (width, height) else image.resize((width, height), resample=resample)
    w, h = image.size
    scale = min(width / w, height / h)
    new_w = min(width, max(1, round(w * scale)))
    new_h = min(height, max(1, round(h * scale)))
    fitted = image if (new_w, new_h) == (w, h) else image.resize((new_w, new_h), resample=resample)
    canvas = Image.new(image.mode, (width, height), 0)
    canvas.paste(fitted, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def split_keys(keys) -> np.ndarray:
    """Stable 64-bit keys of the items' key strings (the split is a function of these and the seed).

    Parameters
    ----------
    keys : iterable of str

    Returns
    -------
    numpy.ndarray of uint64
    """
    return pd.util.hash_array(np.asarray(list(keys), dtype=object))


def _read_files(batch: dict, start: int, options: dict):
    """Decode a batch of image files: (images, codes, records, keys, rejects, images scaled by source bits)."""
    mode, size, resize = options["mode"], tuple(options["size"]), options["resize"]
    arrays, codes, records, keys, rejects, scaled = [], [], [], [], [], Counter()
    for offset, (location, key, code, reason) in enumerate(batch["items"]):
        if reason is None:
            try:
                pixels, bits = _load(location, mode, size, resize)
                arrays.append(pixels)
                if bits > 8:
                    scaled[str(bits)] += 1
            except ValueError as error:
                reason = str(error)
            except OSError as error:  # unreadable: permissions, an I/O error
                reason = f"cannot read: {error.strerror or error}"
        if reason is not None:
            rejects.append({"source": key, "record": start + offset, "class": int(code), "reason": reason})
            continue
        codes.append(code)
        records.append(start + offset)
        keys.append(key)
    return arrays, codes, records, keys, rejects, scaled


# ---------------------------------------------------------------- pass 1: array files
def _read_rows(batch: dict) -> np.ndarray:
    """The batch's rows of an array file, read by offset: ``(rows present, *row shape)``."""
    dtype = np.dtype(batch["dtype"])
    row_shape = batch["shape"][1:]
    row_bytes = dtype.itemsize * int(np.prod(row_shape))
    low, high = batch["low"], batch["high"]
    if batch["available"] is not None:
        high = min(high, max(low, batch["available"]))
    with open_location(batch["path"], "rb") as handle:  # a staged copy may be on object storage
        handle.seek(batch["offset"] + low * row_bytes)
        data = handle.read((high - low) * row_bytes)
    present = len(data) // row_bytes
    return np.frombuffer(data[: present * row_bytes], dtype=dtype).reshape(present, *row_shape)


def _read_array(batch: dict, start: int, options: dict):
    """Decode a batch of array rows: (images, codes, records, keys, rejects, {}: array rows are never scaled).

    Rows already in the target mode and size are copied as they are (what
    Pillow would give back unchanged); others go through Pillow like files.
    """
    from PIL import Image

    mode, size, resize = options["mode"], tuple(options["size"]), options["resize"]
    rows = _read_rows(batch)
    layout = batch["layout"]
    if layout == "HW":
        rows = rows[..., None]
    elif layout == "CHW":
        rows = rows.transpose(0, 2, 3, 1)
    n = batch["high"] - batch["low"]
    valid = np.zeros(n, dtype=bool)
    reasons = ["truncated file: the row is missing"] * n
    if rows.dtype != np.uint8 and len(rows):
        low_values = rows.min(axis=(1, 2, 3))
        high_values = rows.max(axis=(1, 2, 3))
        inside = (low_values >= 0) & (high_values <= 255)
        for row in np.flatnonzero(~inside):
            reasons[row] = (f"pixel values outside 0..255 (min {low_values[row]}, max {high_values[row]})")
        valid[: len(rows)] = inside
    else:
        valid[: len(rows)] = True
    rows = rows[valid[: len(rows)]].astype(np.uint8, copy=False)
    channels = rows.shape[-1]
    native_mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    if native_mode == mode and tuple(rows.shape[1:3]) == size:
        images = [np.ascontiguousarray(rows.transpose(0, 3, 1, 2))]
    else:
        images = []
        for pixels in rows:
            image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, native_mode)
            images.append(_to_chw(resize_image(_convert(image, mode), size, resize))[None])
    kept = np.flatnonzero(valid)
    name, codes = batch["name"], batch["codes"]
    rejects = [{"source": f"{name}:{batch['low'] + row}", "record": start + int(row), "class": int(codes[row]),
                "reason": reasons[row]} for row in np.flatnonzero(~valid)]
    keys = [f"{name}:{batch['low'] + row}" for row in kept]
    return images, codes[kept].tolist(), (start + kept).tolist(), keys, rejects, Counter()


BATCH_READERS = {"files": _read_files, "array": _read_array}


def _decode_task(staging: str, index: int, start: int, batch: dict, options: dict, split_spec: dict,
                 shuffle_seed: int | None = None) -> dict:
    channels, size = MODES[options["mode"]], tuple(options["size"])
    arrays, labels, records, keys, rejects, scaled = BATCH_READERS[batch["kind"]](batch, start, options)
    if arrays and arrays[0].ndim == 4:  # array batches arrive as stacked blocks
        X = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    else:
        X = np.stack(arrays) if arrays else np.zeros((0, channels, *size), dtype=np.uint8)
    split = assign_split(split_keys(keys), split_spec["seed"], split_spec["validation"], split_spec["test"]) \
        if keys else np.zeros(0, dtype=np.uint8)
    labels, records = np.asarray(labels, dtype=np.int64), np.asarray(records, dtype=np.int64)
    order = shuffle_rows(len(X), shuffle_seed, index)
    if order is not None:
        X, labels, records, split = X[order], labels[order], records[order], split[order]
    _staging.save(staging, f"X-{index:06d}.npy", lambda file: np.save(file, X))
    _staging.save(staging, f"meta-{index:06d}.npz", lambda file: np.savez(file, y=labels, record=records, split=split))
    n_items = len(batch["items"]) if batch["kind"] == "files" else batch["high"] - batch["low"]
    sums, squares = _pixel_sums(X)
    return {
        "index": index,
        "n_records": n_items,
        "n_valid": int(X.shape[0]),
        "n_rejected": len(rejects),
        "rejects": rejects,
        "reasons": count_reasons("image", rejects),
        "scaled": scaled,
        "sum": sums,
        "sum_squares": squares,
        "n_pixels": int(X.shape[0] * X.shape[2] * X.shape[3]),
    }


def _pixel_sums(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sums of pixels and of squared pixels, in [0, 1] units (exact integer sums, then scaled)."""
    counts = np.stack([np.bincount(X[:, c].ravel(), minlength=256) for c in range(X.shape[1])]) \
        if X.size else np.zeros((X.shape[1], 256), dtype=np.int64)
    values = np.arange(256, dtype=np.float64) / 255.0
    return counts @ values, counts @ np.square(values)


@register_reason_family("image")
def _reason_family(reason: str) -> str:
    # "cannot decode: OSError: ..." -> "cannot decode"; "pixel values outside 0..255 (min ...)" -> its head.
    return reason.split(":", 1)[0].split(" (", 1)[0]


def _statistics(results: list[dict], channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of the stored pixels, in [0, 1] units."""
    n = sum(result["n_pixels"] for result in results)
    total = np.sum([result["sum"] for result in results], axis=0)
    squares = np.sum([result["sum_squares"] for result in results], axis=0)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean ** 2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)  # a constant channel: scale 1, never a division by zero
    return [float(v) for v in mean[:channels]], [float(v) for v in std[:channels]]


# ---------------------------------------------------------------- pass 2
def _write_task(root: str, staging: str, start: int, pieces: list[tuple],
                shuffle_seed: int | None = None) -> np.ndarray:
    arrays: dict[str, list] = {"X": [], "y": [], "split": [], "record": []}
    for index, low, high in pieces:
        arrays["X"].append(_staging.load_array(staging, f"X-{index:06d}.npy")[low:high])
        with np.load(_staging.load(staging, f"meta-{index:06d}.npz")) as meta:
            for name in ("y", "split", "record"):
                arrays[name].append(meta[name][low:high])
    return write_chunk(root, start, {name: np.concatenate(parts) for name, parts in arrays.items()},
                       shuffle_seed=shuffle_seed)
