"""The integrity manifest: chunks bound to their array and position, attributes and metadata digested.

One test per finding of issue 13, item 7, then their neighbours: the other
arrays (``y``, ``split``, ``record``, a sequence store's ``position`` and
``run``), image and sequence attributes, reject files, added or removed
arrays, a missing manifest, and stores of format 1.
"""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import zarr

import bigdl
from bigdl.cli import main
from bigdl.errors import StoreCorruptedError, StoreFormatError
from bigdl.loaders.torch import ChunkLoader

ROWS, ROWS_PER_CHUNK = 2000, 500
REPAIR = "Re-create the store (run the ingest again) or restore it from a copy"


# ---------------------------------------------------------------- stores
def _arrays_store(path, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(ROWS, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    return bigdl.store.from_arrays(X, y, store=path, rows_per_chunk=ROWS_PER_CHUNK, validation=0.1, test=0.2, seed=1)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return _arrays_store(tmp_path_factory.mktemp("integrity") / "s.zarr", seed=3)


@pytest.fixture(scope="module")
def other_store(tmp_path_factory):
    """Another store of the same layout and other data: where a copied chunk comes from."""
    return _arrays_store(tmp_path_factory.mktemp("other") / "o.zarr", seed=4)


@pytest.fixture(scope="module")
def tabular_written(tmp_path_factory):
    """A tabular ingest with fitted preprocessing and two rejected rows."""
    root = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": np.arange(400) * 1.5, "b": rng.normal(size=400).round(3), "c": ["x", "y"] * 200,
                          "target": ["p", "q", "r", "p"] * 100})
    lines = frame.to_csv(index=False).splitlines()
    lines[10], lines[20] = "oops,1,x,p", "1,2,3"
    (root / "t.csv").write_text("\n".join(lines) + "\n")
    return bigdl.ingest.tabular(root / "t.csv", target="target", categorical=["c"], store=root / "t.zarr",
                                rows_per_chunk=100, validation=0.1, test=0.2, progress=False)


@pytest.fixture(scope="module")
def sequence_written(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    np.save(root / "walk.npy", np.cumsum(np.random.default_rng(1).normal(size=1000)))
    return bigdl.ingest.sequences(str(root / "walk.npy"), store=root / "walk.zarr", window=10, horizon=2,
                                  rows_per_chunk=128, blocksize=1600, test=0.2, validation=0.0, progress=False)


@pytest.fixture(scope="module")
def image_written(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for label in ("cat", "dog"):
        (root / "images" / label).mkdir(parents=True)
        for index in range(6):
            pixels = np.full((6, 5), 30 * index + (label == "dog") * 90, dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / label / f"{index}.png")
    return bigdl.ingest.images(root / "images", store=root / "i.zarr", size=(4, 4), rows_per_chunk=4, test=0.25,
                               progress=False)


@pytest.fixture
def copy_of(tmp_path):
    """``copy_of(store)``: a fresh copy of a written store, to damage."""
    def copy(store):
        path = tmp_path / store.path.name
        shutil.copytree(store.path, path)
        return path

    return copy


def _edit_attributes(path, **changes) -> None:
    """Change group attributes the way plain zarr would (the file and the consolidated copy agree)."""
    group = zarr.open_group(str(path), mode="r+")
    for name, value in changes.items():
        if value is _REMOVE:
            attrs = dict(group.attrs)
            del attrs[name]
            group.attrs.clear()
            group.attrs.update(attrs)
        else:
            group.attrs[name] = value


_REMOVE = object()


def _edit_array_metadata(path, name: str, edit, *, consolidated: bool = True) -> None:
    """Apply ``edit`` to array ``name``'s metadata in its zarr.json (and the store's consolidated copy)."""
    files = [path / name / "zarr.json"] + ([path / "zarr.json"] if consolidated else [])
    for file in files:
        document = json.loads(file.read_text())
        edit(document["consolidated_metadata"]["metadata"][name] if file == path / "zarr.json" else document)
        file.write_text(json.dumps(document))


def _flip_a_byte(file) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))


def _problems(path) -> list[tuple]:
    report = bigdl.store.verify_store(path, progress=False)
    return [(item["array"], item["chunk"], item["file"], item["attribute"]) for item in report.problems]


def _drain(loader) -> None:
    for _ in loader:
        pass


def _assert_chunk_error(error: StoreCorruptedError, path, array: str, chunk: tuple, file: str, says: str) -> None:
    message = str(error)
    label = str(chunk[0]) if not any(chunk[1:]) else str(chunk)
    assert f"The store {str(path)!r} is damaged: chunk {label} of array {array!r} (file {file}) {says}" in message
    assert REPAIR in message and f"`bigdl verify {path}`" in message
    assert (error.store, error.array, error.chunk, error.file) == (str(path), array, chunk, file)


# ---------------------------------------------------------------- finding 1: a deleted chunk reads as zeros
MISSING = "is missing: its file was deleted after the store was written (zarr would read it as fill values)"


def test_a_deleted_x_chunk_is_refused_by_every_read_path(written, copy_of, tmp_path):
    from bigdl.models import MLP
    from bigdl.train import Trainer

    path = copy_of(written)
    (path / "X" / "c" / "2" / "0").unlink()
    ds = bigdl.open(path)  # opening reads no chunk
    assert ds.read_chunk(1)[0].shape == (ROWS_PER_CHUNK, 3)  # the other chunks still read
    reads = {
        "read_chunk": lambda: ds.read_chunk(2),
        "view.read": lambda: ds.view.read("X", slice(0, ROWS)),
        "dask X": lambda: ds.X.sum().compute(scheduler="threads"),
        "dask arrays": lambda: ds.arrays("train")[0].sum().compute(scheduler="threads"),
        "ChunkLoader": lambda: _drain(ChunkLoader(ds, "all", batch_size=256, shuffle=False)),
        "Trainer.fit": lambda: Trainer(MLP(ds.n_features, [4], ds.n_classes), epochs=1, batch_size=256,
                                       on_cluster=False, progress=False).fit(ds),
    }
    for name, read in reads.items():
        with pytest.raises(StoreCorruptedError) as error:
            read()
        _assert_chunk_error(error.value, path, "X", (2, 0), "X/c/2/0", MISSING)
    assert _problems(path) == [("X", [2, 0], "X/c/2/0", None)]


@pytest.mark.parametrize("name", ["y", "split", "record"])
def test_a_deleted_chunk_of_another_array_is_refused(written, copy_of, name):
    path = copy_of(written)
    (path / name / "c" / "1").unlink()
    ds = bigdl.open(path)
    read = {"y": lambda: ds.read_chunk(1), "split": lambda: ds.read_chunk(1, "train"),
            "record": lambda: ds.view.read("record", slice(0, ROWS))}[name]
    with pytest.raises(StoreCorruptedError) as error:
        read()
    _assert_chunk_error(error.value, path, name, (1,), f"{name}/c/1", MISSING)
    assert _problems(path) == [(name, [1], f"{name}/c/1", None)]


def test_chunks_left_empty_on_purpose_still_read_as_fill_values(tmp_path):
    X = np.ones((ROWS, 2), dtype=np.float32)
    X[ROWS_PER_CHUNK:2 * ROWS_PER_CHUNK] = 0  # equal to the fill value: zarr writes no file for chunk 1
    ds = bigdl.store.from_arrays(X, store=tmp_path / "s.zarr", rows_per_chunk=ROWS_PER_CHUNK, test=0.0)
    assert not (ds.path / "X" / "c" / "1" / "0").exists()
    np.testing.assert_array_equal(ds.read_chunk(1)[0], 0)
    assert bigdl.store.verify_store(ds.path, progress=False).ok


# ---------------------------------------------------------------- finding 2: swapped and copied chunks
def test_two_swapped_x_chunks_are_refused_on_read_and_found_by_verify(written, copy_of):
    path = copy_of(written)
    second, third = path / "X" / "c" / "2" / "0", path / "X" / "c" / "3" / "0"
    data_2, data_3 = second.read_bytes(), third.read_bytes()
    second.write_bytes(data_3)
    third.write_bytes(data_2)
    ds = bigdl.open(path)
    for read in (lambda: ds.read_chunk(2), lambda: _drain(ChunkLoader(ds, "all", batch_size=256, shuffle=False))):
        with pytest.raises(StoreCorruptedError) as error:
            read()
        _assert_chunk_error(error.value, path, "X", (2, 0), "X/c/2/0", "holds the data of chunk 3 of the same array")
        assert "chunk files were swapped or copied, so its rows would be misaligned" in str(error.value)
    report = bigdl.store.verify_store(path, progress=False)
    assert [(item["file"], item["problem"].split(" (")[0]) for item in report.problems] == [
        ("X/c/2/0", "holds the data of chunk 3 of the same array"),
        ("X/c/3/0", "holds the data of chunk 2 of the same array")]
    assert main(["verify", str(path), "--no-progress"]) == 1


def test_a_y_chunk_copied_from_another_store_is_refused(written, other_store, copy_of):
    path = copy_of(written)
    shutil.copyfile(other_store.path / "y" / "c" / "0", path / "y" / "c" / "0")
    ds = bigdl.open(path)
    with pytest.raises(StoreCorruptedError) as error:
        ds.read_chunk(0)
    _assert_chunk_error(error.value, path, "y", (0,), "y/c/0", "is not the chunk written here (ends with checksum")
    assert "it was replaced, e.g. copied from another store" in str(error.value)
    assert _problems(path) == [("y", [0], "y/c/0", None)]


def test_a_chunk_file_planted_where_none_was_written_is_refused(tmp_path):
    X = np.ones((ROWS, 2), dtype=np.float32)
    X[ROWS_PER_CHUNK:2 * ROWS_PER_CHUNK] = 0
    path = bigdl.store.from_arrays(X, store=tmp_path / "s.zarr", rows_per_chunk=ROWS_PER_CHUNK, test=0.0).path
    (path / "X" / "c" / "1").mkdir()
    shutil.copyfile(path / "X" / "c" / "0" / "0", path / "X" / "c" / "1" / "0")  # chunk 1 would read as ones
    with pytest.raises(StoreCorruptedError) as error:
        bigdl.open(path).read_chunk(1)
    _assert_chunk_error(error.value, path, "X", (1, 0), "X/c/1/0", "exists although the store was written without it")
    assert _problems(path) == [("X", [1, 0], "X/c/1/0", None)]


def test_sequence_position_and_run_chunks_are_bound_too(sequence_written, copy_of):
    path = copy_of(sequence_written)
    first, second = path / "position" / "c" / "1", path / "position" / "c" / "2"
    data_1, data_2 = first.read_bytes(), second.read_bytes()
    first.write_bytes(data_2)
    second.write_bytes(data_1)
    ds = bigdl.open(path)
    with pytest.raises(StoreCorruptedError) as error:
        ds.read_chunk(1)
    _assert_chunk_error(error.value, path, "position", (1,), "position/c/1", "holds the data of chunk 2")
    # One series: every run chunk is all zeros and has no file; one planted there would cut windows.
    (path / "run" / "c").mkdir(parents=True)
    (path / "run" / "c" / "3").write_bytes((path / "record" / "c" / "3").read_bytes())
    assert ("run", [3], "run/c/3", None) in _problems(path)


# ---------------------------------------------------------------- finding 3: the checksum codec removed
def _without_crc32c(metadata: dict) -> None:
    metadata["codecs"] = [codec for codec in metadata["codecs"] if codec["name"] != "crc32c"]


def test_a_removed_checksum_codec_is_tampering_not_an_old_store(written, copy_of):
    path = copy_of(written)
    _edit_array_metadata(path, "X", _without_crc32c)
    _flip_a_byte(path / "X" / "c" / "1" / "0")
    with pytest.raises(StoreCorruptedError) as error:
        bigdl.open(path)
    message = str(error.value)
    assert message.startswith(f"The store {str(path)!r} was changed after it was written: array 'X' lost its "
                              "crc32c codec: its metadata was edited (the manifest records crc32c), so its chunks "
                              "would be read unchecked.")
    assert REPAIR in message and f"`bigdl verify {path}` lists every change" in message
    assert (error.value.array, error.value.file, error.value.attribute) == ("X", "X/zarr.json", None)
    report = bigdl.store.verify_store(path, progress=False)
    assert [(item["file"], item["problem"]) for item in report.problems] == [
        ("X/zarr.json", "array 'X' lost its crc32c codec: its metadata was edited (the manifest records crc32c), "
                        "so its chunks would be read unchecked"),
        ("X/c/1/0", "fails its checksum: its bytes changed after it was written")]
    text = str(report)
    assert "written before" not in text
    assert "checksums  missing from the metadata of X although the manifest records crc32c" in text


def test_metadata_edited_only_in_the_array_file_is_found_by_verify_and_reads_stay_checked(written, copy_of):
    path = copy_of(written)
    _edit_array_metadata(path, "X", _without_crc32c, consolidated=False)
    _flip_a_byte(path / "X" / "c" / "1" / "0")
    ds = bigdl.open(path)  # bigdl reads the consolidated metadata, which still lists crc32c
    with pytest.raises(StoreCorruptedError) as error:
        ds.read_chunk(1)
    _assert_chunk_error(error.value, path, "X", (1, 0), "X/c/1/0", "fails its checksum")
    assert _problems(path) == [("X", None, "X/zarr.json", None), ("X", [1, 0], "X/c/1/0", None)]


def test_other_metadata_edits_are_refused(written, copy_of):
    path = copy_of(written)
    _edit_array_metadata(path, "y", lambda metadata: metadata.update(fill_value=1))  # absent chunks would read 1
    with pytest.raises(StoreCorruptedError, match=r"array 'y' metadata \(shape, chunks, dtype, codecs, fill value\) "
                                                  r"was edited"):
        bigdl.open(path)


# ---------------------------------------------------------------- finding 4: attributes tampered with
def _shifted_mean(state: dict) -> dict:
    state = json.loads(json.dumps(state))
    state["numeric"][0]["mean"] += 100
    return state


@pytest.mark.parametrize("name, edit", [
    ("preprocessing", _shifted_mean),
    ("rows", lambda rows: {**rows, "stored": rows["stored"] + 1}),
    ("split_counts", lambda counts: {**counts, "train": counts["train"] - 1, "test": counts["test"] + 1}),
    ("chunk_split_counts", lambda counts: counts[::-1]),
    ("feature_names", lambda names: names[::-1]),
    ("class_names", lambda names: names[::-1]),
])
def test_a_tampered_attribute_is_refused_at_open(tabular_written, copy_of, name, edit):
    path = copy_of(tabular_written)
    _edit_attributes(path, **{name: edit(tabular_written.attrs[name])})
    with pytest.raises(StoreCorruptedError) as error:
        bigdl.open(path)
    message = str(error.value)
    assert message.startswith(f"The store {str(path)!r} was changed after it was written: attribute {name!r} "
                              "differs from the value it was written with.")
    assert REPAIR in message and f"`bigdl verify {path}` lists every change" in message
    assert (error.value.attribute, error.value.array, error.value.file) == (name, None, "zarr.json")
    assert _problems(path) == [(None, None, "zarr.json", name)]
    assert main(["verify", str(path), "--no-progress"]) == 1


def test_added_and_removed_attributes_are_refused(tabular_written, copy_of):
    path = copy_of(tabular_written)
    _edit_attributes(path, window={"window": 2, "horizon": 1}, task=_REMOVE)
    with pytest.raises(StoreCorruptedError, match="attribute 'task' was removed; attribute 'window' was added"):
        bigdl.open(path)


@pytest.mark.parametrize("fixture", ["image_written", "sequence_written"])
def test_tampered_image_and_sequence_statistics_are_refused(request, copy_of, fixture):
    store = request.getfixturevalue(fixture)
    path = copy_of(store)
    state = dict(store.attrs["preprocessing"])
    state["mean"] = [value + 100 for value in state["mean"]]
    _edit_attributes(path, preprocessing=state)
    with pytest.raises(StoreCorruptedError, match="attribute 'preprocessing' differs"):
        bigdl.open(path)


def test_a_tampered_window_spec_is_refused(sequence_written, copy_of):
    path = copy_of(sequence_written)
    _edit_attributes(path, window={**sequence_written.attrs["window"], "horizon": 5})
    with pytest.raises(StoreCorruptedError, match="attribute 'window' differs"):
        bigdl.open(path)


def test_added_and_removed_arrays_are_refused(written, copy_of, tmp_path):
    path = copy_of(written)
    shutil.rmtree(path / "record")
    zarr.consolidate_metadata(str(path))
    with pytest.raises(StoreCorruptedError, match="array 'record' was removed"):
        bigdl.open(path)
    unlabelled = bigdl.store.from_arrays(np.ones((10, 2), np.float32), store=tmp_path / "u.zarr")
    zarr.open_group(str(unlabelled.path), mode="r+").create_array("y", shape=(10,), dtype="int64")
    zarr.consolidate_metadata(str(unlabelled.path))
    with pytest.raises(StoreCorruptedError, match="array 'y' was added") as error:
        bigdl.open(unlabelled.path)  # it would make an unlabelled store labelled
    assert error.value.array == "y"


@pytest.mark.parametrize("manifest, state", [(_REMOVE, "missing"), ({"checksum": "crc32c"}, "malformed")])
def test_a_missing_or_malformed_manifest_is_refused(written, copy_of, manifest, state):
    path = copy_of(written)
    _edit_attributes(path, integrity=manifest)
    expected = (f"The store {str(path)!r} was changed after it was written: its integrity manifest (the 'integrity' "
                f"attribute) is {state}, so nothing in it can be checked. {REPAIR}.")
    with pytest.raises(StoreCorruptedError) as error:
        bigdl.open(path)
    assert str(error.value) == expected and error.value.attribute == "integrity"
    assert _problems(path)[0] == (None, None, "zarr.json", "integrity")


def test_a_changed_reject_file_is_refused(tabular_written, copy_of):
    assert len(tabular_written.rejects()) == 2
    path = copy_of(tabular_written)
    part = path / "rejects" / "part-000000.parquet"
    tabular_written.rejects().iloc[:1].to_parquet(part, index=False)  # one reject fewer
    ds = bigdl.open(path)
    with pytest.raises(StoreCorruptedError, match="reject file 'part-000000.parquet' fails its checksum"):
        ds.rejects()
    assert _problems(path) == [(None, None, "rejects/part-000000.parquet", None)]


def test_an_intact_store_of_every_kind_verifies(written, tabular_written, sequence_written, image_written):
    for store in (written, tabular_written, sequence_written, image_written):
        report = bigdl.store.verify_store(store.path, progress=False)
        assert report.ok, str(report)
        assert report.format_version == bigdl.store.FORMAT_VERSION == 2
        assert "every chunk bound to its array and position" in str(report)


# ---------------------------------------------------------------- finding 5: the format version
@pytest.mark.parametrize("version, says", [
    ("2", "has a malformed 'format_version' attribute '2' (a str, not a whole number)"),
    (2.0, "has a malformed 'format_version' attribute 2.0 (a float, not a whole number)"),
    (True, "has a malformed 'format_version' attribute True (a bool, not a whole number)"),
    (0, "has store format 0, which no bigdl release writes"),
    (3, f"has store format 3, newer than the formats this bigdl ({bigdl.__version__}) reads (1 and 2); read it "
        f"with bigdl 9.1.0 (which the store says wrote it) or later: upgrade bigdl."),
])
def test_an_unknown_or_malformed_format_version_is_a_clear_error(written, copy_of, capsys, version, says):
    path = copy_of(written)
    _edit_attributes(path, format_version=version, bigdl_version="9.1.0")
    with pytest.raises(StoreFormatError) as error:
        bigdl.open(path)
    assert str(error.value).startswith(f"{str(path)!r} {says}")
    if version != 3:
        assert f"this bigdl ({bigdl.__version__}) reads formats 1 and 2 and writes format 2" in str(error.value)
    assert not isinstance(error.value, TypeError)
    assert main(["verify", str(path), "--no-progress"]) == 2
    assert says in capsys.readouterr().err


# ---------------------------------------------------------------- stores of format 1
def _as_format_1(path) -> None:
    """What bigdl wrote before format 2: a manifest of absent chunks only."""
    group = zarr.open_group(str(path), mode="r")
    absent = {name: record["absent"] for name, record in group.attrs["integrity"]["arrays"].items()}
    _edit_attributes(path, format_version=1, integrity={"checksum": "crc32c", "absent_chunks": absent})


def test_format_1_stores_read_with_the_checks_their_manifest_allows(written, copy_of):
    path = copy_of(written)
    _as_format_1(path)
    _edit_attributes(path, rows={**written.attrs["rows"], "stored": 1})  # format 1 records no attribute digests
    ds = bigdl.open(path)
    np.testing.assert_array_equal(ds.read_chunk(0)[0], written.read_chunk(0)[0])
    (path / "X" / "c" / "2" / "0").unlink()
    with pytest.raises(StoreCorruptedError) as error:
        ds.read_chunk(2)
    _assert_chunk_error(error.value, path, "X", (2, 0), "X/c/2/0", MISSING)
    report = bigdl.store.verify_store(path, progress=False)
    assert report.format_version == 1 and [item["file"] for item in report.problems] == ["X/c/2/0"]
    assert ("manifest   format 1: deleted chunk files are found, but chunk positions and attributes are not "
            "recorded") in str(report)


# ---------------------------------------------------------------- the error itself
def test_the_error_pickles_with_what_it_names():
    error = StoreCorruptedError("changed", store="s.zarr", file="zarr.json", attribute="rows")
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.store, again.file, again.attribute) == ("changed", "s.zarr", "zarr.json", "rows")
