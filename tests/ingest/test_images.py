"""Image-folder ingest: pixels equal Pillow's, statistics equal numpy's, bad files are accounted for."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

import bigdl
from bigdl.errors import EmptyResultError, SchemaError, SourceNotFoundError
from bigdl.ingest import _images
from bigdl.ingest._images import images

CLASSES = ("cat", "dog", "eel")
SIZE = (8, 6)  # (height, width) of the stored images; the files are 12 wide x 10 high
FORMATS = ("png", "bmp", "jpg", "tif")


def _write_folder(root):
    rng = np.random.default_rng(0)
    for code, label in enumerate(CLASSES):
        folder = root / label
        folder.mkdir(parents=True)
        for index in range(8):
            pixels = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
            target = folder / "deep" if (label == "eel" and index >= 6) else folder
            target.mkdir(exist_ok=True)
            Image.fromarray(pixels, "RGB").save(target / f"{label}{index}.{FORMATS[index % len(FORMATS)]}")
    # bad files: random bytes, a truncated PNG, an empty file; a text file is not an image at all
    (root / "cat" / "corrupt.png").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    whole = (root / "dog" / "dog0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "eel" / "empty.png").write_bytes(b"")
    (root / "eel" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("images") / "animals")


@pytest.fixture(scope="module")
def grey_store(folder, tmp_path_factory):
    return images(folder, store=tmp_path_factory.mktemp("s") / "grey.zarr", mode="L", size=SIZE,
                  rows_per_chunk=5, validation=0.2, test=0.2, progress=False)


def _files(root):
    return [name for name, _ in _images.list_image_folder(root)[2]]


def _expected(path, mode, size):
    with Image.open(path) as image:
        image = image.convert(mode).resize((size[1], size[0]), resample=Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


BAD = {"cat/corrupt.png", "dog/truncated.png", "eel/empty.png"}


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_round_trip_equals_pillow(folder, tmp_path, client, mode):
    ds = images(folder, store=tmp_path / "s.zarr", mode=mode, size=SIZE, rows_per_chunk=5, progress=False,
                client=client)
    group = zarr.open_group(str(ds.path), mode="r")
    files = _files(folder)
    assert len(files) == 24 + len(BAD)
    records = group["record"][:]
    kept = [i for i, name in enumerate(files) if name not in BAD]
    np.testing.assert_array_equal(np.sort(records), kept)  # shuffled: a permutation of the kept items
    X = group["X"][:]
    assert X.dtype == np.uint8 and X.shape == (24, len(mode), *SIZE)
    assert group["X"].chunks == (5, len(mode), *SIZE)
    for row, record in enumerate(records):
        np.testing.assert_array_equal(X[row], _expected(folder / files[record], mode, SIZE))
    assert ds.classes == list(CLASSES) and ds.task == "classification" and ds.kind == "image"
    np.testing.assert_array_equal(group["y"][:], [CLASSES.index(files[r].split("/")[0]) for r in records])
    assert group["y"].dtype == np.int64
    attrs = ds.attrs
    assert attrs["target_name"] == "label" and attrs["feature_names"] == []
    assert attrs["source"]["format"] == "image-folder" and attrs["source"]["root"] == str(folder)
    assert attrs["preprocessing"]["mode"] == mode and attrs["preprocessing"]["size"] == list(SIZE)
    # the store opens with plain zarr consolidated metadata too
    assert "X" in zarr.open_consolidated(str(ds.path), zarr_format=3)


def test_xarray_reads_the_store(grey_store):
    xr = pytest.importorskip("xarray")
    opened = xr.open_zarr(grey_store.path)
    assert opened["X"].dims == ("sample", "channel", "height", "width")
    assert opened["y"].dims == ("sample",) and "y" in opened.data_vars
    assert opened.attrs["kind"] == "image"


def test_mean_std_equal_numpy(grey_store):
    X = zarr.open_group(str(grey_store.path), mode="r")["X"][:].astype(np.float64) / 255
    stats = grey_store.attrs["preprocessing"]
    np.testing.assert_allclose(stats["mean"], X.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(stats["std"], X.std(axis=(0, 2, 3)), rtol=1e-9)
    assert len(stats["mean"]) == 1


def test_rejects_have_paths_and_reasons_and_counts_add_up(grey_store, folder):
    rows = grey_store.row_counts
    assert rows["read"] == 27 and rows["stored"] == 24 and rows["rejected"] == 3
    assert rows["read"] == rows["stored"] + rows["rejected"]
    rejects = pd.concat(pd.read_parquet(p) for p in sorted(grey_store.rejects_path.glob("*.parquet")))
    assert set(rejects["source"]) == BAD
    files = _files(folder)
    for item in rejects.itertuples():
        assert files[item.record] == item.source
    reasons = dict(zip(rejects["source"], rejects["reason"]))
    assert "empty file" in reasons["eel/empty.png"]
    assert "not a readable image" in reasons["cat/corrupt.png"]
    assert "cannot decode" in reasons["dog/truncated.png"]
    assert sum(grey_store.split_counts.values()) == 24
    assert not (grey_store.path / "_staging").exists()


def test_unconvertible_mode_is_rejected(folder, tmp_path, monkeypatch):
    original = _images._convert

    def convert(image, mode):
        if getattr(image, "filename", "").endswith("dog0.png"):
            raise _images._ConversionError(f"cannot convert mode {image.mode!r} to {mode!r}: not supported")
        return original(image, mode)

    monkeypatch.setattr(_images, "_convert", convert)
    ds = images(folder, store=tmp_path / "s.zarr", size=SIZE, progress=False)
    rejects = pd.read_parquet(next(ds.rejects_path.glob("*.parquet")))
    assert "cannot convert mode" in rejects.set_index("source").loc["dog/dog0.png", "reason"]
    assert ds.row_counts["rejected"] == 4 and ds.n_samples == 23


def test_split_is_stable_when_a_file_is_added(folder, grey_store, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "more")
    Image.fromarray(np.full((10, 12), 7, np.uint8), "L").save(copy / "cat" / "aaa-new.png")
    ds = images(copy, store=tmp_path / "s.zarr", size=SIZE, rows_per_chunk=5, validation=0.2, test=0.2,
                progress=False)

    def by_path(store, root):
        group = zarr.open_group(str(store.path), mode="r")
        files = _files(root)
        return {files[r]: s for r, s in zip(group["record"][:], group["split"][:])}

    before, after = by_path(grey_store, folder), by_path(ds, copy)
    assert set(after) - set(before) == {"cat/aaa-new.png"}
    assert all(after[name] == split for name, split in before.items())
    assert len(set(before.values())) == 3  # all three splits occur, so the check means something


def test_pad_keeps_aspect_and_pads_with_zeros(tmp_path):
    root = tmp_path / "wide"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        Image.fromarray(np.full((4, 16), 200, np.uint8), "L").save(root / label / "x.png")  # 16 wide, 4 high
    padded = images(root, store=tmp_path / "pad.zarr", size=(8, 8), resize="pad", test=0.0, progress=False)
    stretched = images(root, store=tmp_path / "st.zarr", size=(8, 8), resize="stretch", test=0.0, progress=False)
    P = zarr.open_group(str(padded.path), mode="r")["X"][:]
    S = zarr.open_group(str(stretched.path), mode="r")["X"][:]
    assert P.shape == S.shape == (2, 1, 8, 8)
    assert (S == 200).all()
    # fitted to 8 x 2, centred vertically: rows 3 and 4 hold the image, the rest is zero padding
    assert (P[:, :, 3:5, :] == 200).all()
    assert (P[:, :, :3, :] == 0).all() and (P[:, :, 5:, :] == 0).all()
    assert padded.attrs["preprocessing"]["resize"] == "pad"


def test_chunk_loader_normalises_with_stored_statistics(grey_store):
    import torch

    from bigdl.loaders.torch import ChunkLoader

    stats = grey_store.attrs["preprocessing"]
    loader = ChunkLoader(grey_store, "all", batch_size=7, shuffle=False)
    xs, ys = zip(*loader)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.dtype == torch.float32 and x.shape == (24, 1, *SIZE)
    raw = zarr.open_group(str(grey_store.path), mode="r")["X"][:].astype(np.float32) / 255
    expected = (raw - np.float32(stats["mean"][0])) / np.float32(stats["std"][0])
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1) < 1e-3
    assert y.dtype == torch.int64


def test_errors(tmp_path):
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        images(tmp_path / "missing", store=tmp_path / "s.zarr", progress=False)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "a" / "readme.txt").write_text("x")
    with pytest.raises(SourceNotFoundError, match="No images"):
        images(empty, store=tmp_path / "s.zarr", progress=False)
    Image.new("L", (3, 3)).save(empty / "a" / "one.png")
    with pytest.raises(SchemaError, match="Only one class"):
        images(empty, store=tmp_path / "s.zarr", progress=False)
    (empty / "b").mkdir()
    (empty / "b" / "bad.png").write_bytes(b"")
    (empty / "a" / "one.png").write_bytes(b"junk")
    with pytest.raises(EmptyResultError, match="were rejected"):
        images(empty, store=tmp_path / "s.zarr", progress=False)
    for bad in (dict(mode="CMYK"), dict(resize="crop"), dict(size=(0, 4)), dict(test=1.5)):
        with pytest.raises(SchemaError):
            images(empty, store=tmp_path / "s.zarr", progress=False, **bad)
    assert not (tmp_path / "s.zarr").exists()


def test_info_prints_for_an_image_store(tmp_path):
    from PIL import Image

    import bigdl

    for label in ("cat", "dog"):
        folder = tmp_path / "images" / label
        folder.mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((6, 5), 40 * index + (label == "dog") * 100, dtype=np.uint8)).save(
                folder / f"{index}.png")
    ds = bigdl.ingest.images(tmp_path / "images", store=tmp_path / "s.zarr", size=(4, 4), progress=False)
    text = str(ds.info())
    assert "kind         image (classification)" in text
    assert "mode L, size" in text and "channel mean" in text
    assert "read 6  stored 6  rejected 0" in text


# ---------------------------------------------------------------- links in an image folder
def _linked_folder(tmp_path):
    """cat/ and dog/ with two images each, and links: the folder itself as a class, a folder outside
    the tree inside a class, a loop back up, a file outside the tree, and a broken file link."""
    root, outside = tmp_path / "imgs", tmp_path / "outside"
    for folder, value in ((root / "cat", 10), (root / "dog", 200), (outside, 90)):
        folder.mkdir(parents=True)
        for index in range(2):
            Image.fromarray(np.full((4, 4), value + index, np.uint8)).save(folder / f"{folder.name}{index}.png")
    clean = shutil.copytree(root, tmp_path / "clean")
    (root / "alias").symlink_to(root, target_is_directory=True)  # the finding: a class copying everything
    (root / "cat" / "more").symlink_to(outside, target_is_directory=True)  # out of the tree
    (root / "dog" / "loop").symlink_to("..", target_is_directory=True)  # into a loop
    return root, outside, clean


def test_directory_links_are_skipped_counted_and_named(tmp_path, caplog):
    root, _, clean = _linked_folder(tmp_path)
    with caplog.at_level("WARNING", logger="bigdl.ingest.sources._folder"):
        ds = images(root, store=tmp_path / "s.zarr", size=(4, 4), test=0.0, progress=False)
    reference = images(clean, store=tmp_path / "clean.zarr", size=(4, 4), test=0.0, progress=False)
    assert ds.classes == ["cat", "dog"] and ds.row_counts == reference.row_counts
    stored = zarr.open_group(str(ds.path), mode="r")
    expected = zarr.open_group(str(reference.path), mode="r")
    for name in ("X", "y", "record", "split"):
        np.testing.assert_array_equal(stored[name][:], expected[name][:])
    assert ds.attrs["source"]["skipped_directory_links"] == ["alias", "cat/more", "dog/loop"]
    assert ds.attrs["source"]["file_links"] == 0 and ds.attrs["source"]["files"] == 4
    [record] = [r for r in caplog.records if r.name == "bigdl.ingest.sources._folder"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (f"{root}: skipped 3 directory link(s), not followed (they can lead out of the "
                                   f"folder or into a loop): alias -> {root}, cat/more -> {tmp_path / 'outside'}, "
                                   "dog/loop -> ..")
    assert "links        3 directory link(s) skipped, not followed: alias, cat/more, dog/loop" in str(ds.info())


def test_file_links_are_read_as_their_files_and_broken_ones_rejected(tmp_path):
    root, outside, _ = _linked_folder(tmp_path)
    (root / "cat" / "from-outside.png").symlink_to(outside / "outside0.png")
    (root / "dog" / "inside.png").symlink_to(root / "cat" / "cat0.png")
    (root / "dog" / "broken.png").symlink_to(tmp_path / "missing.png")
    ds = images(root, store=tmp_path / "s.zarr", size=(4, 4), test=0.0, progress=False)
    assert ds.attrs["source"]["file_links"] == 3
    assert ds.row_counts["read"] == 7 and ds.row_counts["stored"] == 6 and ds.row_counts["rejected"] == 1
    group = zarr.open_group(str(ds.path), mode="r")
    files = _files(root)
    pixels = {files[r]: int(x[0, 0, 0]) for r, x in zip(group["record"][:], group["X"][:])}
    assert pixels["cat/from-outside.png"] == 90 and pixels["dog/inside.png"] == 10
    assert ds.rejects().set_index("source").loc["dog/broken.png", "reason"] == "file not found"
    assert "links        3 file link(s) read as the files they point to" in str(ds.info())


def test_a_folder_of_only_directory_links_says_they_were_not_followed(tmp_path):
    root, outside, _ = _linked_folder(tmp_path)
    links = tmp_path / "links"
    links.mkdir()
    for label in ("a", "b"):
        (links / label).symlink_to(outside, target_is_directory=True)
    with pytest.raises(SourceNotFoundError, match=r"2 directory link\(s\) in it were not followed \('a', 'b'\): "
                                                  "bigdl never follows directory links; list such images in a "
                                                  r"manifest \(path,label\) instead\."):
        images(links, store=tmp_path / "s.zarr", progress=False)
    (links / "c").mkdir()
    Image.new("L", (3, 3)).save(links / "c" / "x.png")
    with pytest.raises(SchemaError, match=r"Only one class \('c'\).*2 directory link\(s\) in it were not followed"):
        images(links, store=tmp_path / "s.zarr", progress=False)


def test_an_unreadable_sub_folder_is_an_error_not_a_silent_gap(folder, tmp_path, monkeypatch):
    import os

    from bigdl.errors import SourceError
    from bigdl.ingest.sources import _folder

    copy = shutil.copytree(folder, tmp_path / "copy")
    hidden = copy / "eel" / "deep"
    hidden.chmod(0)
    try:
        if os.access(hidden, os.R_OK):  # root reads it anyway: the kernel's answer, injected
            scandir = os.scandir

            def refuse(path):
                if os.fspath(path) == str(hidden):
                    raise PermissionError(13, "Permission denied", str(path))
                return scandir(path)

            monkeypatch.setattr(_folder.os, "scandir", refuse)
        with pytest.raises(SourceError, match=f"Cannot list the folder '{hidden}' \\(Permission denied\\); every "
                                              "sub-folder of an image folder must be readable."):
            images(copy, store=tmp_path / "s.zarr", progress=False)
    finally:
        hidden.chmod(0o755)
    assert not (tmp_path / "s.zarr").exists()
