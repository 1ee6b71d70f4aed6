"""Images with more than 8 bits per channel are scaled to uint8 exactly, never clipped.

The reference is computed here, independently of bigdl: ``round(value * 255 / 65535)``
of the samples as written.  Pillow cannot write 16-bit colour PNGs or TIFFs, so
they are written by hand (PNG rows with every filter type, TIFF raw and deflate,
both byte orders).  Pixels without a known full scale (float "F", 32-bit "I"
outside 0..255) are rejected with their reason.
"""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

from bigdl.errors import EmptyResultError
from bigdl.ingest import scale_to_uint8
from bigdl.ingest._images import images, list_image_folder


def _reference(samples: np.ndarray) -> np.ndarray:
    return np.rint(samples.astype(np.float64) * 255 / 65535).astype(np.uint8)


# ---------------------------------------------------------------- writers of 16-bit files
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG of ``(H, W)`` grey, ``(H, W, 2)`` grey+alpha, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA
    samples; row r uses filter type r % 5, so Sub, Up, Average and Paeth are all decoded."""
    samples = samples if samples.ndim == 3 else samples[..., None]
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = 2 * channels
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8).astype(np.int64)
    out, prior = [], np.zeros(rows.shape[1], np.int64)
    for number, line in enumerate(rows):
        left = np.concatenate([np.zeros(bpp, np.int64), line[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        kind = number % 5
        predicted = [0, left, prior, (left + prior) // 2, _paeth(left, prior, upper_left)][kind]
        out.append(bytes([kind]) + ((line - predicted) % 256).astype(np.uint8).tobytes())
        prior = line
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"".join(out)))
            + _png_chunk(b"IEND", b""))


def tiff16(samples: np.ndarray, *, byte_order: str = "<", deflate: bool = False) -> bytes:
    """A one-strip 16-bit RGB (or RGBA) TIFF, raw or deflate-compressed (which Pillow reads with libtiff)."""
    height, width, channels = samples.shape
    data = samples.astype(f"{byte_order}u2").tobytes()
    data = zlib.compress(data) if deflate else data
    bits_offset, data_offset = 8, 8 + 2 * channels
    ifd_offset = data_offset + len(data) + (data_offset + len(data)) % 2
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, channels, bits_offset),
               (259, 3, 1, 8 if deflate else 1), (262, 3, 1, 2), (273, 4, 1, data_offset), (277, 3, 1, channels),
               (278, 3, 1, height), (279, 4, 1, len(data)), (284, 3, 1, 1)] + ([(338, 3, 1, 2)] if channels == 4 else [])
    out = bytearray((b"II*\x00" if byte_order == "<" else b"MM\x00*") + struct.pack(f"{byte_order}I", ifd_offset))
    out += struct.pack(f"{byte_order}{channels}H", *([16] * channels)) + data
    out += b"\x00" * (ifd_offset - len(out)) + struct.pack(f"{byte_order}H", len(entries))
    for tag, kind, count, value in entries:
        if kind == 3 and count == 1:
            out += struct.pack(f"{byte_order}HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack(f"{byte_order}HHII", tag, kind, count, value)
    return bytes(out + struct.pack(f"{byte_order}I", 0))


def tiff12(grey: np.ndarray) -> bytes:
    """A 12-bit grey TIFF (two samples packed in three bytes, most significant bits first; even width)."""
    height, width = grey.shape
    first, second = grey[:, 0::2].astype(np.uint32), grey[:, 1::2].astype(np.uint32)
    data = np.stack([first >> 4, (first & 15) << 4 | second >> 8, second & 255], axis=-1).astype(np.uint8).tobytes()
    ifd_offset = 8 + len(data) + len(data) % 2
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 12), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, height), (279, 4, 1, len(data))]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset)) + data
    out += b"\x00" * (ifd_offset - len(out)) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        out += struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind,
                                                                                                count, value)
    return bytes(out + struct.pack("<I", 0))


def _folder(root, files: dict) -> list[str]:
    """Class folders "a" (the files given, name -> bytes or a Pillow image) and "b" (one 8-bit image)."""
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (root / "a" / name).write_bytes(content)
        else:
            content.save(root / "a" / name)
    Image.fromarray(np.full((4, 4), 9, np.uint8)).save(root / "b" / "plain.png")
    return [name for name, _ in list_image_folder(root)[2]]


def _stored(ds) -> dict:
    """The stored image of each file, by its path relative to the folder."""
    group = zarr.open_group(str(ds.path), mode="r")
    files = [name for name, _ in list_image_folder(ds.attrs["source"]["root"])[2]]
    return {files[record]: pixels for record, pixels in zip(group["record"][:], group["X"][:])}


# ---------------------------------------------------------------- the finding and its reference
def test_a_sixteen_bit_grey_ramp_is_scaled_to_the_rounded_uint8_values(tmp_path, caplog):
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # every 16-bit value once
    probe = (np.arange(256 * 256) * 16 % 65536).astype(np.uint16).reshape(256, 256)  # the issue's 0..65520 ramp
    _folder(tmp_path / "f", {"ramp.png": Image.fromarray(ramp), "probe.png": Image.fromarray(probe)})
    with caplog.at_level(logging.INFO, logger="bigdl.ingest._images"):
        ds = images(tmp_path / "f", store=tmp_path / "s.zarr", mode="L", size=(256, 256), test=0.0, progress=False)
    stored = _stored(ds)
    np.testing.assert_array_equal(stored["a/ramp.png"][0], _reference(ramp))
    np.testing.assert_array_equal(stored["a/probe.png"][0], _reference(probe))
    assert len(np.unique(stored["a/ramp.png"])) == 256 and len(np.unique(stored["a/probe.png"])) == 256
    assert (stored["b/plain.png"] == 9).all()  # 8-bit files are not touched
    assert ds.attrs["preprocessing"]["scaled_to_8_bits"] == {"16": 2}
    assert "2 image(s) with 16 bits per channel scaled to 8: round(value * 255 / 65535)" in str(ds.info())
    assert "2 image(s) with 16 bits per channel were scaled to 8 bits, as round(value * 255 / 65535)." \
        in caplog.text


def test_scale_to_uint8_equals_rounding_for_every_value():
    values = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(scale_to_uint8(values), _reference(values))
    np.testing.assert_array_equal(scale_to_uint8(np.arange(4096), bits=12),
                                  np.rint(np.arange(4096) * 255 / 4095).astype(np.uint8))


# ---------------------------------------------------------------- neighbours: every 16-bit layout Pillow opens
RNG = np.random.default_rng(16)
RGB = RNG.integers(0, 65536, (9, 7, 3), dtype=np.uint16)
RGBA = RNG.integers(0, 65536, (9, 7, 4), dtype=np.uint16)
GREY_ALPHA = RNG.integers(0, 65536, (9, 7, 2), dtype=np.uint16)
GREY = RNG.integers(0, 65536, (9, 7), dtype=np.uint16)

DEEP_FILES = {
    # name: (file bytes, the 8-bit image bigdl must convert and resize like any 8-bit file)
    "rgb48.png": (png16(RGB), Image.fromarray(_reference(RGB), "RGB")),
    "rgba64.png": (png16(RGBA), Image.fromarray(_reference(RGBA), "RGBA")),
    "grey-alpha32.png": (png16(GREY_ALPHA), Image.fromarray(_reference(GREY_ALPHA), "LA")),
    "grey16.png": (png16(GREY), Image.fromarray(_reference(GREY), "L")),
    "rgb48-little.tif": (tiff16(RGB), Image.fromarray(_reference(RGB), "RGB")),
    "rgb48-big.tif": (tiff16(RGB, byte_order=">"), Image.fromarray(_reference(RGB), "RGB")),
    "rgb48-deflate.tif": (tiff16(RGB, deflate=True), Image.fromarray(_reference(RGB), "RGB")),
    "rgba64-deflate-big.tif": (tiff16(RGBA, byte_order=">", deflate=True), Image.fromarray(_reference(RGBA), "RGBA")),
}


@pytest.mark.parametrize("mode,size", [("RGB", (9, 7)), ("L", (9, 7)), ("RGB", (5, 4))],
                         ids=["rgb-native", "grey-native", "rgb-resized"])
def test_every_sixteen_bit_layout_is_read_at_full_depth_then_scaled(tmp_path, mode, size):
    Image.fromarray(GREY).save(tmp_path / "grey16.tif")  # Pillow writes 16-bit grey TIFFs itself
    files = {name: content for name, (content, _) in DEEP_FILES.items()}
    files["grey16-pillow.tif"] = (tmp_path / "grey16.tif").read_bytes()
    expected = {name: image for name, (_, image) in DEEP_FILES.items()}
    expected["grey16-pillow.tif"] = Image.fromarray(_reference(GREY), "L")
    _folder(tmp_path / "f", files)
    ds = images(tmp_path / "f", store=tmp_path / "s.zarr", mode=mode, size=size, test=0.0, progress=False)
    assert ds.row_counts["rejected"] == 0
    stored = _stored(ds)
    for name, image in expected.items():
        reference = np.asarray(image.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR))
        reference = reference[None] if reference.ndim == 2 else reference.transpose(2, 0, 1)
        np.testing.assert_array_equal(stored[f"a/{name}"], reference, err_msg=name)
    assert ds.attrs["preprocessing"]["scaled_to_8_bits"] == {"16": len(expected)}


def test_twelve_bit_grey_is_scaled_from_its_own_full_scale(tmp_path):
    grey = RNG.integers(0, 4096, (5, 6), dtype=np.uint16)
    grey[0, :2] = (0, 4095)
    _folder(tmp_path / "f", {"grey12.tif": tiff12(grey)})
    ds = images(tmp_path / "f", store=tmp_path / "s.zarr", mode="L", size=(5, 6), test=0.0, progress=False)
    np.testing.assert_array_equal(_stored(ds)["a/grey12.tif"][0], np.rint(grey / 4095 * 255).astype(np.uint8))
    assert ds.attrs["preprocessing"]["scaled_to_8_bits"] == {"12": 1}
    assert "1 image(s) with 12 bits per channel scaled to 8: round(value * 255 / 4095)" in str(ds.info())


def test_pillow_alone_would_clip_or_truncate(tmp_path):
    """Why bigdl does not leave the conversion to Pillow (if Pillow changes, this says so)."""
    (tmp_path / "rgb48.png").write_bytes(png16(RGB))
    with Image.open(tmp_path / "rgb48.png") as image:
        assert np.array_equal(np.asarray(image), (RGB >> 8).astype(np.uint8))  # the high bytes only
    Image.fromarray(GREY).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as image:
        assert image.mode == "I;16" and np.asarray(image.convert("L")).max() == 255
        assert np.array_equal(np.asarray(image.convert("L")), np.minimum(GREY, 255))  # clipped


# ---------------------------------------------------------------- pixels without a known full scale
def test_float_and_wide_integer_pixels_are_rejected_with_their_reason(tmp_path):
    floats = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    small = np.arange(12, dtype=np.int32).reshape(3, 4) * 20  # 0..220: stored as it is
    wide = np.arange(12, dtype=np.int32).reshape(3, 4) * 1000  # 0..11000: no known full scale
    _folder(tmp_path / "f", {"float.tif": Image.fromarray(floats), "small.tif": Image.fromarray(small),
                             "wide.tif": Image.fromarray(wide)})
    ds = images(tmp_path / "f", store=tmp_path / "s.zarr", mode="L", size=(3, 4), test=0.0, progress=False)
    np.testing.assert_array_equal(_stored(ds)["a/small.tif"][0], small)
    rejects = pd.read_parquet(next(ds.rejects_path.glob("*.parquet"))).set_index("source")["reason"]
    assert rejects["a/float.tif"] == ("floating-point pixels (mode 'F'): they have no fixed range to scale to "
                                      "0..255; save the image with 8 or 16 bits per channel")
    assert rejects["a/wide.tif"] == ("pixel values outside 0..255 (min 0, max 11000; integer pixels of mode 'I' "
                                     "have no known full scale)")
    assert ds.row_counts["rejected_by_reason"] == {"floating-point pixels": 1, "pixel values outside 0..255": 1}
    assert ds.row_counts["read"] == 4 and ds.row_counts["stored"] == 2
    assert ds.attrs["preprocessing"]["scaled_to_8_bits"] == {}


def test_sixteen_bit_arrays_are_rejected_with_the_way_to_scale_them(tmp_path):
    pixels = RNG.integers(256, 65536, (6, 4, 4), dtype=np.uint16)
    np.save(tmp_path / "x.npy", pixels)
    labels = np.arange(6) % 2
    with pytest.raises(EmptyResultError, match=r"All 6 images were rejected.*pixel values outside 0\.\.255.*"
                                               r"bigdl\.ingest\.scale_to_uint8\(x, bits=16\)"):
        images(tmp_path / "x.npy", labels=labels, store=tmp_path / "s.zarr", progress=False)
    assert not (tmp_path / "s.zarr").exists()
    np.save(tmp_path / "x8.npy", scale_to_uint8(pixels))
    ds = images(tmp_path / "x8.npy", labels=labels, store=tmp_path / "s.zarr", test=0.0, progress=False)
    group = zarr.open_group(str(ds.path), mode="r")
    np.testing.assert_array_equal(group["X"][:][:, 0], _reference(pixels)[group["record"][:]])
