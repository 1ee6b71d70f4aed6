"""Image sources other than folders: IDX, .npy/.npz, manifests, globs and URLs.

Every source is checked against an in-memory reference: the stored pixels
equal the array (or Pillow's conversion of it), labels map to sorted class
names, bad items land in rejects with their reason, and splits depend only
on stable keys.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

from bigdl.errors import SchemaError, SourceError, SourceNotFoundError
from bigdl.ingest._images import images

N = 30
H, W = 7, 5


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file by hand: magic 0x0000 08 <ndim> (unsigned bytes), big-endian dims, then the data."""
    magic = 0x00000800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(">u1").tobytes()


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(N, H, W), dtype=np.uint8)
    labels = (np.arange(N) * 7 % 10).astype(np.uint8)  # ten classes, out of order
    return pixels, labels


def _write_idx(folder, pixels, labels, compressed: bool, prefix: str = "train"):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compressed else ""
    writer = gzip.compress if compressed else (lambda data: data)
    images_path = folder / f"{prefix}-images-idx3-ubyte{suffix}"
    images_path.write_bytes(writer(_idx_bytes(pixels)))
    (folder / f"{prefix}-labels-idx1-ubyte{suffix}").write_bytes(writer(_idx_bytes(labels)))
    return images_path


def _stored(ds):
    group = zarr.open_group(str(ds.path), mode="r")
    order = np.argsort(group["record"][:])  # input order (the store keeps its rows shuffled)
    return group["X"][:][order], group["y"][:][order], group["record"][:][order], group["split"][:][order]


def _rejects(ds):
    return pd.concat(pd.read_parquet(path) for path in sorted(ds.rejects_path.glob("*.parquet")))


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])
def test_idx_equals_the_hand_built_array(tmp_path, client, digits, compressed):
    pixels, labels = digits
    source = _write_idx(tmp_path / "mnist", pixels, labels, compressed)
    ds = images(source, store=tmp_path / "s.zarr", rows_per_chunk=8, progress=False, client=client)
    X, y, record, _ = _stored(ds)
    np.testing.assert_array_equal(record, np.arange(N))
    np.testing.assert_array_equal(X, pixels[:, None])  # native size and mode when not asked otherwise
    assert ds.classes == [str(v) for v in range(10)]
    np.testing.assert_array_equal(y, labels)
    assert ds.attrs["preprocessing"]["size"] == [H, W] and ds.attrs["preprocessing"]["mode"] == "L"
    assert ds.attrs["source"]["format"] == "idx"
    assert ds.attrs["source"]["labels"][0].endswith("train-labels-idx1-ubyte" + (".gz" if compressed else ""))
    stats = ds.attrs["preprocessing"]
    np.testing.assert_allclose(stats["mean"], [pixels.mean() / 255], rtol=1e-9)
    np.testing.assert_allclose(stats["std"], [(pixels / 255).std()], rtol=1e-9)


def test_idx_reader_matches_struct_header_and_magic(tmp_path, digits):
    from bigdl.ingest.sources import read_idx

    pixels, labels = digits
    path = _write_idx(tmp_path / "m", pixels, labels, compressed=True)
    raw = gzip.decompress(path.read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03" and struct.unpack(">3I", raw[4:16]) == (N, H, W)
    np.testing.assert_array_equal(read_idx(str(path)), pixels)
    np.testing.assert_array_equal(read_idx(str(path).replace("images-idx3", "labels-idx1")), labels)
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x01\x08\x03" + bytes(12))
    with pytest.raises(SourceError, match="not an IDX file"):
        images(bad, store=tmp_path / "s.zarr", progress=False)


def test_idx_resized_and_converted_like_pillow(tmp_path, digits):
    pixels, labels = digits
    source = _write_idx(tmp_path / "m", pixels, labels, compressed=False)
    ds = images(source, store=tmp_path / "s.zarr", mode="RGB", size=(10, 9), progress=False)
    X, _, record, _ = _stored(ds)
    for row, index in enumerate(record):
        image = Image.fromarray(pixels[index], "L").convert("RGB").resize((9, 10), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(X[row], np.asarray(image).transpose(2, 0, 1))


def test_truncated_idx_rows_are_rejected_and_counted(tmp_path, digits):
    pixels, labels = digits
    source = _write_idx(tmp_path / "m", pixels, labels, compressed=False)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) - 2 * H * W - 3])  # the last two rows and part of one are gone
    gz = _write_idx(tmp_path / "g", pixels, labels, compressed=True)
    gz.write_bytes(gzip.compress(data)[:-40])  # a cut gzip stream
    for path, lost in ((source, 3), (gz, None)):
        ds = images(path, store=tmp_path / f"{path.parent.name}.zarr", rows_per_chunk=8, progress=False)
        rows = ds.row_counts
        assert rows["read"] == N and rows["read"] == rows["stored"] + rows["rejected"] and rows["rejected"] >= 1
        assert lost is None or rows["rejected"] == lost
        rejects = _rejects(ds)
        assert set(rejects["reason"]) == {"truncated file: the row is missing"}
        assert list(rejects["record"]) == list(range(rows["stored"], N))
        assert rejects["source"].iloc[-1] == f"{path.name}:{N - 1}"
        X, _, record, _ = _stored(ds)
        np.testing.assert_array_equal(X[:, 0], pixels[record])


def test_idx_glob_finds_each_labels_file(tmp_path, digits):
    pixels, labels = digits
    _write_idx(tmp_path / "m", pixels[:20], labels[:20], compressed=True, prefix="train")
    _write_idx(tmp_path / "m", pixels[20:], labels[20:], compressed=True, prefix="t10k")
    ds = images(str(tmp_path / "m" / "*-ubyte.gz"), store=tmp_path / "s.zarr", progress=False)
    X, y, record, _ = _stored(ds)
    # sorted order: t10k first, then train
    expected = np.concatenate([pixels[20:], pixels[:20]])
    np.testing.assert_array_equal(X[:, 0], expected[record])
    np.testing.assert_array_equal(y, np.concatenate([labels[20:], labels[:20]])[record])
    assert len(ds.attrs["source"]["files"]) == 2


def test_idx_errors(tmp_path, digits):
    pixels, labels = digits
    lonely = tmp_path / "digits-images-idx3-ubyte"
    lonely.write_bytes(_idx_bytes(pixels))
    with pytest.raises(SchemaError, match="No labels file"):
        images(lonely, store=tmp_path / "s.zarr", progress=False)
    short = tmp_path / "short-labels"
    short.write_bytes(_idx_bytes(labels[:-1]))
    with pytest.raises(SchemaError, match="labels hold 29"):
        images(lonely, store=tmp_path / "s.zarr", labels=short, progress=False)
    one = tmp_path / "one-labels"
    one.write_bytes(_idx_bytes(np.zeros(N, np.uint8)))
    with pytest.raises(SchemaError, match="Only one class"):
        images(lonely, store=tmp_path / "s.zarr", labels=one, progress=False)
    assert not (tmp_path / "s.zarr").exists()


# ---------------------------------------------------------------- .npy / .npz
def test_npy_rgb_with_labels_array_and_file_url(tmp_path, client):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(N, H, W, 3), dtype=np.uint8)
    labels = np.array(["cat", "dog", "eel"])[np.arange(N) % 3]
    np.save(tmp_path / "x.npy", pixels)
    np.save(tmp_path / "y.npy", labels)
    ds = images(f"file://{tmp_path / 'x.npy'}", store=tmp_path / "s.zarr", labels=tmp_path / "y.npy",
                rows_per_chunk=7, progress=False, client=client)
    X, y, record, _ = _stored(ds)
    np.testing.assert_array_equal(X, pixels.transpose(0, 3, 1, 2)[record])
    assert ds.classes == ["cat", "dog", "eel"] and ds.attrs["preprocessing"]["mode"] == "RGB"
    np.testing.assert_array_equal(np.asarray(ds.classes)[y], labels[record])
    grey = images(tmp_path / "x.npy", store=tmp_path / "g.zarr", labels=labels, mode="L", progress=False)
    G, _, record, _ = _stored(grey)
    for row, index in enumerate(record):
        np.testing.assert_array_equal(G[row, 0], np.asarray(Image.fromarray(pixels[index], "RGB").convert("L")))


def test_npy_channels_first_fortran_and_out_of_range_pixels(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(N, 3, H, W)).astype(np.int16)
    pixels[4, 0, 0, 0] = 300
    pixels[9, 1, 2, 2] = -1
    np.save(tmp_path / "x.npy", np.asfortranarray(pixels))
    labels = np.arange(N) % 2
    ds = images(tmp_path / "x.npy", store=tmp_path / "s.zarr", labels=labels, rows_per_chunk=8, progress=False)
    X, y, record, _ = _stored(ds)
    np.testing.assert_array_equal(record, [i for i in range(N) if i not in (4, 9)])
    np.testing.assert_array_equal(X, pixels[record].astype(np.uint8))
    rejects = _rejects(ds).set_index("record")
    assert "pixel values outside 0..255 (min " in rejects.loc[4, "reason"] and "max 300)" in rejects.loc[4, "reason"]
    assert "min -1" in rejects.loc[9, "reason"]
    assert ds.row_counts["rejected_by_reason"] == {"pixel values outside 0..255": 2}


def test_npz_glob_in_memory_url_on_the_cluster(tmp_path, cluster_client):
    fsspec = pytest.importorskip("fsspec")
    rng = np.random.default_rng(4)
    parts = []
    fs = fsspec.filesystem("memory")
    for number, keys in enumerate([("x", "y"), ("images", "labels")]):
        pixels = rng.integers(0, 256, size=(12, H, W), dtype=np.uint8)
        labels = rng.integers(0, 3, size=12) * 5  # labels 0, 5, 10: sorted as numbers
        local = tmp_path / f"part{number}.npz"
        np.savez_compressed(local, **{keys[0]: pixels, keys[1]: labels})
        fs.pipe(f"/bigdl-test/part{number}.npz", local.read_bytes())
        parts.append((pixels, labels))
    with cluster_client.as_current():
        ds = images("memory://bigdl-test/part*.npz", store=tmp_path / "s.zarr", rows_per_chunk=5, progress=False)
    X, y, record, split = _stored(ds)
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([l for _, l in parts])
    np.testing.assert_array_equal(X[:, 0], pixels[record])
    assert ds.classes == ["0", "5", "10"]
    np.testing.assert_array_equal(np.asarray(ds.classes, dtype=int)[y], labels[record])
    # split keys are "<file>:<row>": the second file's rows keep their split when ingested alone
    alone = images(str(tmp_path / "part1.npz"), store=tmp_path / "a.zarr", progress=False)
    _, _, record_alone, split_alone = _stored(alone)
    by_key = dict(zip(record, split))
    assert all(by_key[12 + r] == s for r, s in zip(record_alone, split_alone))
    fs.rm("/bigdl-test", recursive=True)


def test_npy_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 3), np.uint8))
    np.save(tmp_path / "f.npy", np.zeros((4, 3, 3), np.float32))
    np.save(tmp_path / "odd.npy", np.zeros((4, 5, 3, 3, 2), np.uint8))
    np.savez(tmp_path / "keys.npz", a=np.zeros((4, 3, 3), np.uint8), b=np.arange(4))
    store = tmp_path / "s.zarr"
    with pytest.raises(SchemaError, match="pass labels="):
        images(tmp_path / "x.npy", store=store, progress=False)
    with pytest.raises(SchemaError, match=r"float32 pixels.*\* 255"):
        images(tmp_path / "f.npy", store=store, labels=[0, 1, 0, 1], progress=False)
    with pytest.raises(SchemaError, match="shape"):
        images(tmp_path / "odd.npy", store=store, labels=[0, 1, 0, 1], progress=False)
    with pytest.raises(SchemaError, match="holds the arrays"):
        images(tmp_path / "keys.npz", store=store, progress=False)
    with pytest.raises(SchemaError, match="4 images but its labels hold 3"):
        images(tmp_path / "x.npy", store=store, labels=[0, 1, 0], progress=False)
    (tmp_path / "mystery.bin").write_bytes(b"hello")
    with pytest.raises(SourceError, match="Cannot tell what"):
        images(tmp_path / "mystery.bin", store=store, progress=False)
    with pytest.raises(SourceNotFoundError, match="matches no file"):
        images(str(tmp_path / "nothing-*.npy"), store=store, progress=False)
    with pytest.raises(SchemaError, match="'format' parameter"):
        images(tmp_path / "x.npy", store=store, format="tiff", progress=False)
    assert not store.exists()


# ---------------------------------------------------------------- manifests
@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """PNG files under photos/, and the (path, label) rows a manifest beside them would list."""
    root = tmp_path_factory.mktemp("manifest")
    rng = np.random.default_rng(5)
    rows = []
    for index in range(18):
        label = ("bird", "ant", "cow")[index % 3]
        path = root / "photos" / f"p{index:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8), "RGB").save(path)
        rows.append((f"photos/p{index:02d}.png", label))
    return root, rows


def _expected_pixels(path, mode, size):
    with Image.open(path) as image:
        image = image.convert(mode).resize((size[1], size[0]), resample=Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def test_manifest_round_trip_with_bad_rows(photo_tree, tmp_path, client):
    root, rows = photo_tree
    frame = pd.DataFrame(rows + [("photos/missing.png", "ant"), ("", "cow"), ("photos/p00.png", None)],
                         columns=["file", "kind"])
    manifest = root / "m.csv"
    frame.to_csv(manifest, index=False)
    ds = images(manifest, store=tmp_path / "s.zarr", mode="RGB", size=(6, 8), path_column="file",
                label_column="kind", rows_per_chunk=5, progress=False, client=client)
    X, y, record, _ = _stored(ds)
    np.testing.assert_array_equal(record, np.arange(18))
    for row, index in enumerate(record):
        np.testing.assert_array_equal(X[row], _expected_pixels(root / rows[index][0], "RGB", (6, 8)))
    assert ds.classes == ["ant", "bird", "cow"]
    np.testing.assert_array_equal(np.asarray(ds.classes)[y], [rows[i][1] for i in record])
    rejects = _rejects(ds).set_index("record")
    assert rejects.loc[18, "reason"] == "file not found" and rejects.loc[18, "source"] == "photos/missing.png"
    assert rejects.loc[19, "reason"] == "missing path in the manifest" and "row 20" in rejects.loc[19, "source"]
    assert rejects.loc[20, "reason"] == "missing label in the manifest"
    assert ds.row_counts == {"read": 21, "stored": 18, "rejected": 3,
                             "rejected_by_reason": {"file not found": 1, "missing path in the manifest": 1,
                                                    "missing label in the manifest": 1}}


def test_manifest_parquet_glob_absolute_paths_and_stable_classes(photo_tree, tmp_path):
    root, rows = photo_tree
    first = pd.DataFrame(rows[:10], columns=["path", "label"])
    second = pd.DataFrame([(str(root / p), label) for p, label in rows[10:]], columns=["path", "label"])
    first.to_parquet(root / "part-0.parquet")
    second.to_parquet(root / "part-1.parquet")
    ds = images(f"file://{root}/part-*.parquet", store=tmp_path / "a.zarr", size=(6, 8), progress=False)
    X, y, record, _ = _stored(ds)
    assert len(record) == 18 and ds.attrs["source"]["format"] == "manifest"
    for row, index in enumerate(record):
        np.testing.assert_array_equal(X[row], _expected_pixels(root / rows[index][0], "L", (6, 8)))
    # class mapping: the same for shuffled rows, and equal to a folder of the same files
    shuffled = pd.DataFrame(rows, columns=["path", "label"]).sample(frac=1, random_state=0)
    shuffled.to_csv(root / "shuffled.csv", index=False)
    again = images(root / "shuffled.csv", store=tmp_path / "b.zarr", size=(6, 8), progress=False)
    assert again.classes == ds.classes == ["ant", "bird", "cow"]
    group = zarr.open_group(str(again.path), mode="r")
    paths = shuffled["path"].to_numpy()[group["record"][:]]
    np.testing.assert_array_equal(np.asarray(again.classes)[group["y"][:]], [dict(rows)[p] for p in paths])


def test_manifest_split_is_stable_when_rows_are_appended(photo_tree, tmp_path):
    root, rows = photo_tree
    pd.DataFrame(rows[:12], columns=["path", "label"]).to_csv(root / "few.csv", index=False)
    pd.DataFrame(rows[12:] + rows[:12], columns=["path", "label"]).to_csv(root / "more.csv", index=False)

    def split_by_path(manifest, store):
        ds = images(manifest, store=store, size=(4, 4), validation=0.3, test=0.3, progress=False)
        group = zarr.open_group(str(ds.path), mode="r")
        listed = pd.read_csv(manifest)["path"].to_numpy()
        return dict(zip(listed[group["record"][:]], group["split"][:]))

    before = split_by_path(root / "few.csv", tmp_path / "few.zarr")
    after = split_by_path(root / "more.csv", tmp_path / "more.zarr")
    assert all(after[path] == split for path, split in before.items())
    assert len(set(before.values())) == 3


def test_manifest_errors(photo_tree, tmp_path):
    root, rows = photo_tree
    pd.DataFrame(rows, columns=["path", "class"]).to_csv(root / "cols.csv", index=False)
    with pytest.raises(SchemaError, match="no column 'label'.*label_column="):
        images(root / "cols.csv", store=tmp_path / "s.zarr", progress=False)
    pd.DataFrame([(p, "same") for p, _ in rows], columns=["path", "label"]).to_csv(root / "one.csv", index=False)
    with pytest.raises(SchemaError, match="Only one class"):
        images(root / "one.csv", store=tmp_path / "s.zarr", progress=False)
    pd.DataFrame(columns=["path", "label"]).to_csv(root / "empty.csv", index=False)
    with pytest.raises(SourceNotFoundError, match="lists no images"):
        images(root / "empty.csv", store=tmp_path / "s.zarr", progress=False)
    with pytest.raises(SchemaError, match="label_column"):
        images(root / "one.csv", store=tmp_path / "s.zarr", labels=[1, 2], progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_manifest_and_images_behind_a_memory_url(photo_tree, tmp_path):
    """Image files named by URLs are read by the tasks through fsspec (threads here: memory:// is per process)."""
    fsspec = pytest.importorskip("fsspec")
    root, rows = photo_tree
    fs = fsspec.filesystem("memory")
    for path, _ in rows[:6]:
        fs.pipe(f"/bigdl-url/{path}", (root / path).read_bytes())
    fs.pipe("/bigdl-url/photos/empty.png", b"")
    listed = rows[:6] + [("photos/empty.png", "cow"), ("photos/gone.png", "ant")]
    fs.pipe("/bigdl-url/m.csv", pd.DataFrame(listed, columns=["path", "label"]).to_csv(index=False).encode())
    try:
        ds = images("memory://bigdl-url/m.csv", store=tmp_path / "s.zarr", size=(6, 8), progress=False)
    finally:
        fs.rm("/bigdl-url", recursive=True)
    X, _, record, _ = _stored(ds)
    np.testing.assert_array_equal(record, np.arange(6))
    for row, index in enumerate(record):
        np.testing.assert_array_equal(X[row], _expected_pixels(root / rows[index][0], "L", (6, 8)))
    reasons = dict(zip(_rejects(ds)["source"], _rejects(ds)["reason"]))
    assert reasons == {"photos/empty.png": "empty file (0 bytes)", "photos/gone.png": "file not found"}
