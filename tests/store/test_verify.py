"""Store integrity: per-chunk checksums, errors naming the damaged chunk on every read path, ``bigdl verify``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import bigdl
from bigdl.cli import main
from bigdl.errors import StoreCorruptedError, StoreFormatError
from bigdl.loaders.torch import ChunkLoader

ROWS, ROWS_PER_CHUNK = 2000, 500


@pytest.fixture(scope="module")
def intact_store(tmp_path_factory):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(ROWS, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    return bigdl.store.from_arrays(X, y, store=tmp_path_factory.mktemp("intact") / "s.zarr",
                                   rows_per_chunk=ROWS_PER_CHUNK, validation=0.1, test=0.2, seed=1)


@pytest.fixture
def damaged_store(intact_store, tmp_path):
    """A copy of the intact store with one byte of chunk 2 of X flipped on disk."""
    path = tmp_path / "damaged.zarr"
    shutil.copytree(intact_store.path, path)
    chunk = path / "X" / "c" / "2" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return bigdl.open(path)


def _assert_names_the_chunk(error: StoreCorruptedError, store) -> None:
    message = str(error)
    assert str(store.path) in message and "'X'" in message and "chunk 2" in message and "X/c/2/0" in message
    assert "checksum" in message and "bigdl verify" in message
    assert (error.store, error.array, error.chunk, error.file) == (str(store.path), "X", (2, 0), "X/c/2/0")
    assert isinstance(error, StoreFormatError) and isinstance(error, ValueError)


# ---------------------------------------------------------------- what a new store records
def test_new_stores_checksum_every_chunk_and_record_a_manifest(intact_store, reference_store):
    import zarr
    from zarr.codecs import Crc32cCodec

    for store in (intact_store, reference_store):  # from_arrays and tabular ingest
        group = zarr.open_group(str(store.path), mode="r")
        for name in ("X", "y", "split", "record"):
            assert any(isinstance(codec, Crc32cCodec) for codec in group[name].metadata.codecs), name
        manifest = store.attrs["integrity"]
        assert manifest["checksum"] == "crc32c"
        assert set(manifest["arrays"]) == {"X", "y", "split", "record"}
        assert set(manifest["attributes"]) == set(store.attrs) - {"integrity"}
        for name, record in manifest["arrays"].items():
            assert len(record["crc32c"]) == 8 * group[name].nchunks  # one CRC-32C per chunk, in chunk order
    # Plain zarr and xarray read the checksummed store unchanged.
    np.testing.assert_array_equal(intact_store.to_xarray()["X"].values, intact_store.X.compute())


def test_an_intact_store_verifies(intact_store, capsys):
    report = bigdl.store.verify_store(intact_store.path, progress=False)
    assert report.ok and report.problems == []
    assert report.n_chunks == 4 * 4  # X, y, split, record in 4 chunks each
    assert all(report.checksums.values()) and report.manifest
    assert main(["verify", str(intact_store.path), "--no-progress"]) == 0
    assert "OK: every chunk reads back intact" in capsys.readouterr().out


# ---------------------------------------------------------------- a damaged chunk on every read path
def test_read_chunk_names_the_damaged_chunk(damaged_store):
    X, _ = damaged_store.read_chunk(1)  # the chunks around it still read
    assert X.shape == (ROWS_PER_CHUNK, 3)
    with pytest.raises(StoreCorruptedError) as error:
        damaged_store.read_chunk(2)
    _assert_names_the_chunk(error.value, damaged_store)


def test_dask_arrays_name_the_damaged_chunk(damaged_store):
    X_train, _ = damaged_store.arrays("train")
    with pytest.raises(StoreCorruptedError) as error:
        X_train.sum().compute(scheduler="threads")
    _assert_names_the_chunk(error.value, damaged_store)
    assert damaged_store.X[:1000].sum().compute() == pytest.approx(  # chunks 0 and 1 are fine
        bigdl.open(damaged_store.path).read_chunk(0)[0].sum() + damaged_store.read_chunk(1)[0].sum(), rel=1e-5)


def test_the_error_survives_a_worker_process(damaged_store, cluster_client):
    # Raised in a task on another process, pickled back with its attributes.
    with pytest.raises(StoreCorruptedError) as error:
        cluster_client.compute(damaged_store.X.sum()).result()
    _assert_names_the_chunk(error.value, damaged_store)


def test_the_loader_names_the_damaged_chunk(damaged_store):
    loader = ChunkLoader(damaged_store, "all", batch_size=256, shuffle=False)
    with pytest.raises(StoreCorruptedError) as error:
        for _ in loader:
            pass
    _assert_names_the_chunk(error.value, damaged_store)


def test_verify_lists_the_damaged_chunk(damaged_store, capsys):
    report = bigdl.store.verify_store(damaged_store.path, progress=False)
    assert not report.ok
    assert [(item["array"], item["chunk"], item["file"]) for item in report.problems] == [("X", [2, 0], "X/c/2/0")]
    assert "checksum" in report.problems[0]["problem"]
    assert main(["verify", str(damaged_store.path), "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "DAMAGED: 1 problem(s)" in printed and "array 'X' chunk 2 (X/c/2/0)" in printed
    assert main(["verify", str(damaged_store.path), "--json", "--no-progress"]) == 1
    assert json.loads(capsys.readouterr().out)["problems"][0]["file"] == "X/c/2/0"


def test_verify_on_the_cluster(damaged_store, cluster_client):
    report = bigdl.store.verify_store(damaged_store.path, client=cluster_client, progress=False)
    assert [item["file"] for item in report.problems] == ["X/c/2/0"]


# ---------------------------------------------------------------- missing chunk files
def test_a_deleted_chunk_file_is_found_and_chunks_left_empty_on_purpose_are_not(tmp_path):
    X = np.ones((ROWS, 2), dtype=np.float32)
    X[ROWS_PER_CHUNK:2 * ROWS_PER_CHUNK] = 0  # chunk 1 of X equals the fill value: zarr writes no file
    store = bigdl.store.from_arrays(X, store=tmp_path / "s.zarr", rows_per_chunk=ROWS_PER_CHUNK, test=0.0)
    arrays = store.attrs["integrity"]["arrays"]
    assert arrays["X"]["absent"] == ["X/c/1/0"]
    assert arrays["split"]["absent"] == [f"split/c/{index}" for index in range(4)]  # all train: all fill values
    assert bigdl.store.verify_store(store.path, progress=False).ok
    (store.path / "X" / "c" / "3" / "0").unlink()
    report = bigdl.store.verify_store(store.path, progress=False)
    assert [(item["file"], "missing" in item["problem"]) for item in report.problems] == [("X/c/3/0", True)]


# ---------------------------------------------------------------- stores from before checksums
def test_a_store_without_checksums_is_verified_and_says_what_it_cannot_check(tmp_path):
    import zarr

    path = tmp_path / "old.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, dtype in (("X", "float32"), ("split", "uint8"), ("record", "int64")):
        shape = (ROWS, 2) if name == "X" else (ROWS,)
        chunks = (ROWS_PER_CHUNK, 2) if name == "X" else (ROWS_PER_CHUNK,)
        group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)[...] = 1
    group.attrs.update({"format_version": 1, "kind": "tabular", "feature_names": ["a", "b"]})
    report = bigdl.store.verify_store(path, progress=False)
    assert report.ok and not report.manifest and report.checksums == {"X": False, "record": False, "split": False}
    text = str(report)
    assert "none on X, record, split" in text and "only damage that breaks decompression" in text
    assert "a deleted chunk file cannot be told" in text


def test_verify_of_something_that_is_not_a_store(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nothing.zarr")]) == 2
    assert "does not exist" in capsys.readouterr().err
