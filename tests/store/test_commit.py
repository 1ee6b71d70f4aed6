"""The atomic commit refuses what could lose data and cleans up after writers killed outright.

Reproductions of issue 13, items 1 and 2: ``overwrite=True`` used to delete
whatever was at the store path (a folder of documents, the input CSVs), and
a client killed with SIGKILL left its temporary behind for good.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import zarr

import bigdl
from bigdl.errors import NotAStoreError, StoreExistsError, StorePathError
from bigdl.estimators import predict_to_store
from bigdl.store._commit import LOCK_NAME, atomic_store, check_store_path, remove_stale_temporaries


def _frame(n=40):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n).round(4), "b": rng.normal(size=n).round(4),
                         "target": rng.integers(0, 2, n)})


def _tabular(source, store, **kwargs):
    return bigdl.ingest.tabular(source, target="target", store=store, progress=False, **kwargs)


def _arrays(store, **kwargs):
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    return bigdl.store.from_arrays(X, (X[:, 0] > 10).astype(np.int64), store=store, **kwargs)


def _snapshot(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ---------------------------------------------------------------- only a bigdl store is replaced
def test_overwrite_refuses_a_folder_of_documents(tmp_path):
    """Issue 13.1: ``store="my_documents", overwrite=True`` removed my_documents/thesis.txt."""
    _frame().to_csv(tmp_path / "in.csv", index=False)
    documents = tmp_path / "my_documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("four years of work")
    with pytest.raises(NotAStoreError) as error:
        _tabular(tmp_path / "in.csv", documents, overwrite=True)
    message = str(error.value)
    assert str(documents) in message and "not a store" in message and "'thesis.txt'" in message
    assert "left untouched" in message
    assert isinstance(error.value, StoreExistsError) and isinstance(error.value, FileExistsError)
    assert (documents / "thesis.txt").read_text() == "four years of work"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv", "my_documents"]


@pytest.mark.parametrize("occupant, words", [
    ("file", "is a file, not a store"),
    ("zarr", "is a Zarr group but not a bigdl store"),
    ("bad-json", "cannot be read as JSON"),
    ("link", "is a symbolic link"),
])
def test_overwrite_refuses_anything_but_a_bigdl_store(tmp_path, occupant, words):
    path = tmp_path / "s.zarr"
    if occupant == "file":
        path.write_text("precious")
    elif occupant == "zarr":
        zarr.open_group(str(path), mode="w").attrs["mine"] = 1
        (path / "notes.txt").write_text("precious")
    elif occupant == "bad-json":
        path.mkdir()
        (path / "zarr.json").write_text("{not json")
    else:
        _arrays(tmp_path / "real.zarr")
        path.symlink_to(tmp_path / "real.zarr")
    before = _snapshot(tmp_path)
    with pytest.raises(NotAStoreError, match=words):
        _arrays(path, overwrite=True)
    assert _snapshot(tmp_path) == before
    assert not any(".tmp-" in name for name in os.listdir(tmp_path))


def test_overwrite_replaces_a_bigdl_store_or_an_empty_folder(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    assert _arrays(tmp_path / "empty.zarr", overwrite=True).n_samples == 20
    first = _arrays(tmp_path / "s.zarr", seed=1)
    second = _arrays(tmp_path / "s.zarr", seed=2, overwrite=True)
    assert first.attrs["split"]["seed"] == 1 and second.attrs["split"]["seed"] == 2
    assert sorted(os.listdir(tmp_path)) == ["empty.zarr", "s.zarr"]
    assert LOCK_NAME not in os.listdir(tmp_path / "s.zarr")  # the lock never becomes part of a store
    assert bigdl.store.verify_store(tmp_path / "s.zarr").ok


def test_a_store_replaced_by_something_else_while_written_is_left_alone(tmp_path):
    store = tmp_path / "s.zarr"
    _arrays(store)
    with pytest.raises(NotAStoreError):
        with atomic_store(store, overwrite=True) as temporary:
            (temporary / "zarr.json").write_text("{}")
            _swap_for_documents(store)
    assert (store / "thesis.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]


def _swap_for_documents(store):
    import shutil

    shutil.rmtree(store)
    store.mkdir()
    (store / "thesis.txt").write_text("mine")


# ---------------------------------------------------------------- the store never overlaps the inputs
def test_store_equal_to_the_input_folder_is_refused(tmp_path):
    """Issue 13.1: ``store="data"`` with the input folder ``data`` deleted the input CSVs."""
    data = tmp_path / "data"
    data.mkdir()
    for part in range(2):
        _frame().to_csv(data / f"part-{part}.csv", index=False)
    before = _snapshot(data)
    for source in (data, str(data / "*.csv")):
        with pytest.raises(StorePathError) as error:
            _tabular(source, data, overwrite=True)
        assert f"{str(data)!r} contains the input" in str(error.value)
        assert "Choose a store path outside the inputs" in str(error.value)
        assert isinstance(error.value, ValueError)
    assert _snapshot(data) == before and sorted(os.listdir(tmp_path)) == ["data"]


def test_store_equal_to_an_input_file_is_refused(tmp_path):
    _frame().to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(StorePathError, match="is the input"):
        _tabular(tmp_path / "in.csv", tmp_path / "in.csv", overwrite=True)
    assert (tmp_path / "in.csv").stat().st_size > 0


def test_store_inside_the_input_image_folder_is_refused(tmp_path):
    from PIL import Image

    root = tmp_path / "animals"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((4, 4), index * 40, dtype=np.uint8), "L").save(root / label / f"{index}.png")
    with pytest.raises(StorePathError, match="lies inside the input folder"):
        bigdl.ingest.images(root, store=root / "animals.zarr", progress=False)
    assert sorted(os.listdir(root)) == ["cat", "dog"]


def test_sequence_store_equal_to_its_input_is_refused(tmp_path):
    frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=30, freq="D").astype(str),
                          "v": np.arange(30.0)})
    frame.to_csv(tmp_path / "series.csv", index=False)
    with pytest.raises(StorePathError, match="is the input"):
        bigdl.ingest.sequences(tmp_path / "series.csv", time="t", values=["v"], window=4, horizon=1,
                               store=tmp_path / "series.csv", overwrite=True, progress=False)
    assert (tmp_path / "series.csv").read_text().startswith("t,v")


def test_predict_to_store_refuses_its_source_store(tmp_path):
    from sklearn.linear_model import LogisticRegression

    ds = _arrays(tmp_path / "s.zarr")
    X, y = ds.arrays("train")
    model = LogisticRegression().fit(X, y)
    before = _snapshot(tmp_path / "s.zarr")
    with pytest.raises(StorePathError, match="is the input"):
        predict_to_store(model, ds, tmp_path / "s.zarr", overwrite=True)
    assert _snapshot(tmp_path / "s.zarr") == before
    assert predict_to_store(model, ds, tmp_path / "p.zarr").n_samples == ds.n_samples


def test_check_store_path_skips_urls_and_in_memory_inputs(tmp_path):
    store = tmp_path / "s.zarr"
    assert check_store_path(store, inputs=["s3://bucket/data.csv", None, np.zeros(3), tmp_path / "other"]) == store


# ---------------------------------------------------------------- stale temporaries
WRITER = textwrap.dedent("""
    import sys, time
    from bigdl.store._commit import atomic_store
    with atomic_store(sys.argv[1]) as temporary:
        (temporary / "part").write_bytes(b"x" * 1000)
        print(temporary, flush=True)
        time.sleep(120)
""")


def _start_writer(store):
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(store)], stdout=subprocess.PIPE, text=True,
                               env=environment)
    line = process.stdout.readline().strip()
    assert line, "the writer process did not start"
    return process, line


def test_a_writer_killed_with_sigkill_leaves_a_temporary_the_next_write_removes(tmp_path):
    """Issue 13.2: ``.NAME.zarr.tmp-*`` of a SIGKILLed client stayed for good."""
    store = tmp_path / "s.zarr"
    killed, killed_temporary = _start_writer(store)
    alive, alive_temporary = _start_writer(store)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert os.path.isdir(killed_temporary) and os.path.isfile(os.path.join(killed_temporary, LOCK_NAME))
        # What is never removed: no lock, another host's lock, another store's temporary.
        (tmp_path / ".s.zarr.tmp-nolock").mkdir()
        foreign = tmp_path / ".s.zarr.tmp-otherhost"
        foreign.mkdir()
        (foreign / LOCK_NAME).write_text(json.dumps({"pid": killed.pid, "host": socket.gethostname() + "-elsewhere",
                                                     "started": 0.0}))
        neighbour = tmp_path / ".t.zarr.tmp-dead"
        neighbour.mkdir()
        (neighbour / LOCK_NAME).write_text(json.dumps({"pid": killed.pid, "host": socket.gethostname(),
                                                       "started": 0.0}))

        ds = _arrays(store)

        assert ds.n_samples == 20
        assert not os.path.exists(killed_temporary)
        assert os.path.isdir(alive_temporary) and alive.poll() is None  # a live writer keeps its temporary
        assert sorted(os.listdir(tmp_path)) == sorted(
            [".s.zarr.tmp-nolock", ".s.zarr.tmp-otherhost", ".t.zarr.tmp-dead", os.path.basename(alive_temporary),
             "s.zarr"])
    finally:
        alive.kill()
        alive.wait(timeout=30)


def test_a_reused_process_id_does_not_keep_a_temporary(tmp_path):
    """The lock's start time tells a dead writer from a later process that got the same id."""
    import psutil

    store = tmp_path / "s.zarr"
    stale = tmp_path / ".s.zarr.tmp-reused"
    stale.mkdir()
    started = psutil.Process().create_time() - 3600
    (stale / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
    assert remove_stale_temporaries(store) == [stale]
    assert not stale.exists()


# ---------------------------------------------------------------- a store that cannot be written (issue 13.16)
def _disk_full(monkeypatch):
    """Every write of a zarr file fails as on a full disk (the error names no file, as write(2)'s does not)."""
    import errno

    async def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full)


def _write_image_folder(root):
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(root / label / "x.png")
    return root


WRITERS = {
    "tabular": lambda inputs, store: _tabular(inputs / "in.csv", store),
    "images": lambda inputs, store: bigdl.ingest.images(inputs / "imgs", store=store, size=4, test=0.0,
                                                        progress=False),
    "from_arrays": lambda inputs, store: _arrays(store),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_full_disk_is_a_store_write_error_and_leaves_nothing(tmp_path, monkeypatch, writer):
    import errno

    from bigdl.errors import StoreWriteError

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _frame().to_csv(inputs / "in.csv", index=False)
    _write_image_folder(inputs / "imgs")
    before = _snapshot(inputs)
    out = tmp_path / "out"
    out.mkdir()
    store = out / "s.zarr"
    _disk_full(monkeypatch)
    with pytest.raises(StoreWriteError) as raised:
        WRITERS[writer](inputs, store)
    assert str(raised.value) == (f"Cannot write the store '{store}': No space left on device; free some space, or "
                                 "choose a store path on another disk. Nothing was left under the store's name "
                                 "or beside it.")
    assert raised.value.errno == errno.ENOSPC and raised.value.store == str(store) and raised.value.path is None
    assert isinstance(raised.value, OSError) and isinstance(raised.value.__cause__, OSError)
    assert list(out.iterdir()) == [] and _snapshot(inputs) == before


def test_only_errors_of_writing_the_store_become_store_write_errors(tmp_path):
    import errno

    from bigdl.errors import StoreWriteError

    store = tmp_path / "s.zarr"
    with pytest.raises(PermissionError) as raised:  # an input that cannot be read keeps its type
        with atomic_store(store):
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "in.csv"))
    assert not isinstance(raised.value, StoreWriteError)
    with pytest.raises(StoreWriteError, match=r"Permission denied \(writing 'X/c/0/0' of the store\); choose a "
                                              "folder you can write to"):
        with atomic_store(store) as temporary:
            raise PermissionError(errno.EACCES, "Permission denied", str(temporary / "X" / "c" / "0" / "0"))
    with pytest.raises(StoreWriteError, match="Read-only file system; the file system is read-only"):
        with atomic_store(store):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    with pytest.raises(OSError) as raised:  # not the operating system's answer: left as it is
        with atomic_store(store):
            raise OSError("something else")
    assert not isinstance(raised.value, StoreWriteError)
    assert list(tmp_path.iterdir()) == []


def test_check_store_writable_creates_nothing(tmp_path):
    from bigdl.errors import StoreWriteError
    from bigdl.store._commit import check_store_writable

    check_store_writable(tmp_path / "new" / "deeper" / "s.zarr")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("mine")
    with pytest.raises(StoreWriteError, match=f"Not a directory \\('{tmp_path / 'file'}'\\); a file is in the way"):
        check_store_writable(tmp_path / "file" / "s.zarr")
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_an_old_store_goes_back_when_the_new_one_cannot_be_renamed_into_place(tmp_path, monkeypatch):
    import errno

    from bigdl.errors import StoreWriteError

    store = tmp_path / "s.zarr"
    _arrays(store)
    before = _snapshot(store)
    replace = os.replace

    def refuse_the_new_store(source, target):
        if ".tmp-" in os.fspath(source):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(source), os.fspath(target))
        return replace(source, target)

    monkeypatch.setattr(os, "replace", refuse_the_new_store)
    with pytest.raises(StoreWriteError, match="Permission denied"):
        _arrays(store, overwrite=True)
    monkeypatch.undo()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.zarr"]
    assert _snapshot(store) == before
