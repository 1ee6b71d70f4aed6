"""Stores, inputs and checkpoints on object storage, against a real S3 API: moto's server on 127.0.0.1.

The server runs in this process (``ThreadedMotoServer``) with moto's IAM
checks on, so a wrong key is refused as a real S3 refuses it (403).  The
credentials are a key moto's IAM made; they reach the LocalCluster's worker
processes through the standard ``AWS_*`` environment, set before the cluster
starts.  Nothing leaves the machine.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from support import BLOCKSIZE, DROP, ROWS_PER_CHUNK, TARGET, make_frame

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

BUCKET = "bigdl-test"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1, the ``AWS_*`` environment pointing at it, and a bucket."""
    import logging

    import boto3
    from moto import settings
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # From the next request on, moto checks signatures against the keys its IAM knows.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 3
    iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="setup", aws_secret_access_key="setup",
                       region_name="us-east-1")
    iam.create_user(UserName="bigdl")
    iam.put_user_policy(UserName="bigdl", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="bigdl")["AccessKey"]
    environment = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                   "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_REGION": "us-east-1"}
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    filesystem = s3fs.S3FileSystem()
    filesystem.mkdir(BUCKET)
    yield {"endpoint": endpoint, "fs": filesystem, **environment}
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    s3fs.S3FileSystem.clear_instance_cache()
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    server.stop()


@pytest.fixture(scope="module")
def s3_client(s3):
    """A LocalCluster started after the environment is set, so its workers reach the S3 server."""
    import bigdl

    # Not left as Dask's default client: the autouse fixture of tests/conftest.py forgets it before each test.
    client = bigdl.cluster.start_local(n_workers=2, threads_per_worker=1, memory_limit="2GiB",
                                       dashboard_address=":0", quiet=True)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def s3_csv(s3):
    """The shared generated table as a CSV object."""
    frame = make_frame()
    url = f"s3://{BUCKET}/inputs/data.csv"
    s3["fs"].pipe_file(url, frame.to_csv(index=False).encode())
    return url, frame


@pytest.fixture(scope="module")
def s3_store(s3, s3_csv, s3_client):
    """One ingest from s3 to s3 on the cluster."""
    import bigdl

    with s3_client.as_current():
        return bigdl.ingest.tabular(s3_csv[0], store=f"s3://{BUCKET}/stores/table.zarr", target=TARGET,
                                    drop=list(DROP), rows_per_chunk=ROWS_PER_CHUNK, blocksize=BLOCKSIZE,
                                    validation=0.1, test=0.2, progress=False)


def _ingest(source, store, **kwargs):
    import bigdl

    return bigdl.ingest.tabular(source, store=store, target=TARGET, drop=list(DROP), rows_per_chunk=ROWS_PER_CHUNK,
                                blocksize=BLOCKSIZE, validation=0.1, test=0.2, progress=False, **kwargs)


# ---------------------------------------------------------------- ingest, open, info, verify
def test_ingest_from_s3_to_s3_equals_a_local_ingest(s3, s3_csv, s3_store, tmp_path):
    """The same rows, order, split and preprocessing as the same CSV ingested from and to a local disk."""
    url, frame = s3_csv
    local_csv = tmp_path / "data.csv"
    frame.to_csv(local_csv, index=False)
    local = _ingest(local_csv, tmp_path / "local.zarr")
    np.testing.assert_array_equal(s3_store.X.compute(), local.X.compute())
    np.testing.assert_array_equal(s3_store.y.compute(), local.y.compute())
    np.testing.assert_array_equal(s3_store.split.compute(), local.split.compute())
    assert s3_store.attrs["preprocessing"] == local.attrs["preprocessing"]
    assert s3_store.row_counts == local.row_counts
    # The layout: a commit object naming the one version there is.
    names = sorted(entry.rsplit("/", 1)[-1] for entry in s3["fs"].ls(f"{BUCKET}/stores/table.zarr", refresh=True))
    commit = json.loads(s3["fs"].cat_file(f"{BUCKET}/stores/table.zarr/bigdl-commit.json"))
    assert names == ["bigdl-commit.json", commit["version"]]
    assert s3_store.root == f"s3://{BUCKET}/stores/table.zarr/{commit['version']}"


def test_credentials_are_never_written_into_the_store(s3, s3_store):
    every_object = s3["fs"].find(f"{BUCKET}/stores/table.zarr")
    for name in every_object:
        if name.endswith(".json"):
            text = s3["fs"].cat_file(name).decode()
            assert s3["AWS_SECRET_ACCESS_KEY"] not in text and s3["AWS_ACCESS_KEY_ID"] not in text, name
    assert s3["AWS_SECRET_ACCESS_KEY"] not in json.dumps(s3_store.attrs, default=str)


def test_open_info_and_verify(s3, s3_store, s3_client):
    import bigdl

    ds = bigdl.open(f"s3://{BUCKET}/stores/table.zarr")
    info = ds.info().to_dict()
    assert info["path"] == f"s3://{BUCKET}/stores/table.zarr"
    assert info["n_samples"] == ds.n_samples == s3_store.n_samples
    assert info["bytes_on_disk"] > 0
    assert "rejects" not in str(ds.info()) or ds.row_counts["rejected"] >= 0
    X, y = ds.read_chunk(0, "train")
    assert len(X) == len(y) > 0
    assert len(ds.rejects()) == ds.row_counts["rejected"]
    report = bigdl.store.verify_store(f"s3://{BUCKET}/stores/table.zarr", client=s3_client, progress=False)
    assert report.ok, str(report)
    assert report.n_chunks > 0


def test_verify_and_reads_name_a_swapped_chunk_on_s3(s3, s3_csv, s3_client):
    """Two chunk objects swapped: verify lists both, a read names the chunk, as on disk."""
    import bigdl
    from bigdl.errors import StoreCorruptedError

    store = f"s3://{BUCKET}/stores/swapped.zarr"
    ds = _ingest(s3_csv[0], store)
    fs = s3["fs"]
    first, second = f"{ds.root}/X/c/0/0", f"{ds.root}/X/c/1/0"
    one, two = fs.cat_file(first), fs.cat_file(second)
    fs.pipe_file(first, two)
    fs.pipe_file(second, one)
    report = bigdl.store.verify_store(store, client=s3_client, progress=False)
    assert not report.ok
    assert sorted(item["file"] for item in report.problems) == ["X/c/0/0", "X/c/1/0"]
    with pytest.raises(StoreCorruptedError, match=r"chunk 0 of array 'X'.*holds the data of chunk 1") as caught:
        bigdl.open(store).read_chunk(0)
    assert caught.value.file == "X/c/0/0"


# ---------------------------------------------------------------- commit semantics
def test_an_interrupted_ingest_leaves_no_committed_store(s3, s3_csv, monkeypatch):
    """Interrupted after every chunk is written, before the commit: nothing a reader accepts, nothing left."""
    import bigdl
    import bigdl.ingest._pipeline as pipeline
    from bigdl.errors import StoreFormatError

    store = f"s3://{BUCKET}/stores/interrupted.zarr"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("stopped before the commit")

    monkeypatch.setattr(pipeline, "finish_store", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _ingest(s3_csv[0], store)
    assert not s3["fs"].exists(f"{BUCKET}/stores/interrupted.zarr/bigdl-commit.json")
    assert s3["fs"].find(f"{BUCKET}/stores/interrupted.zarr") == []
    with pytest.raises(StoreFormatError, match="nothing is stored under that prefix"):
        bigdl.open(store)


def test_a_killed_writer_leaves_a_prefix_readers_refuse_and_the_next_run_removes(s3, s3_csv):
    """What a writer killed outright (SIGKILL) leaves: a version without a commit, its lock naming a dead process."""
    import socket

    import bigdl
    from bigdl.errors import StoreFormatError

    fs, store = s3["fs"], f"s3://{BUCKET}/stores/killed.zarr"
    left = f"{BUCKET}/stores/killed.zarr/version-deadbeef0000"
    fs.pipe_file(f"{left}/.bigdl-writer.json", json.dumps(
        {"pid": 2**22 + 17, "host": socket.gethostname(), "started": 0.0, "written": 0.0}).encode())
    fs.pipe_file(f"{left}/zarr.json", b'{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(StoreFormatError, match="no commit object.*interrupted or is still running"):
        bigdl.open(store)
    ds = _ingest(s3_csv[0], store)
    assert not fs.exists(left + "/zarr.json")
    assert ds.n_samples > 0


def test_a_live_writers_version_is_left_alone(s3, s3_csv):
    import socket

    fs, store = s3["fs"], f"s3://{BUCKET}/stores/live.zarr"
    other = f"{BUCKET}/stores/live.zarr/version-0123456789ab"
    import psutil

    fs.pipe_file(f"{other}/.bigdl-writer.json", json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time(),
         "written": 0.0}).encode())
    _ingest(s3_csv[0], store)
    assert fs.exists(f"{other}/.bigdl-writer.json")


def test_overwrite_replaces_only_after_the_new_store_is_committed(s3, s3_csv, monkeypatch):
    import bigdl
    import bigdl.store._commit as commit_module
    from bigdl.errors import StoreExistsError

    fs, store = s3["fs"], f"s3://{BUCKET}/stores/replaced.zarr"
    old = _ingest(s3_csv[0], store)
    old_split = old.split.compute()
    with pytest.raises(StoreExistsError, match="already exists; pass overwrite=True"):
        _ingest(s3_csv[0], store)
    # Interrupted while the commit object is written: the old store stays whole and readable.
    real_write = commit_module.write_bytes

    def failing_commit(path, data):
        if path.endswith("bigdl-commit.json"):
            raise KeyboardInterrupt("stopped at the commit")
        real_write(path, data)

    monkeypatch.setattr(commit_module, "write_bytes", failing_commit)
    with pytest.raises(KeyboardInterrupt):
        _ingest(s3_csv[0], store, overwrite=True, seed=7)
    monkeypatch.setattr(commit_module, "write_bytes", real_write)
    again = bigdl.open(store)
    assert again.root == old.root
    np.testing.assert_array_equal(again.split.compute(), old_split)
    versions = [name for name in fs.ls(f"{BUCKET}/stores/replaced.zarr", detail=False, refresh=True)
                if "version-" in name]
    assert len(versions) == 1
    # Then a complete overwrite: the new version is live, the old one removed.
    new = _ingest(s3_csv[0], store, overwrite=True, seed=7)
    assert new.root != old.root
    assert not fs.exists(old.root.removeprefix("s3://") + "/zarr.json")
    assert not np.array_equal(new.split.compute(), old_split)


def test_a_prefix_holding_other_objects_is_never_replaced(s3, s3_csv):
    from bigdl.errors import NotAStoreError

    fs = s3["fs"]
    fs.pipe_file(f"{BUCKET}/stores/theirs.zarr/notes.txt", b"someone else's")
    with pytest.raises(NotAStoreError, match="not a bigdl store.*'notes.txt'"):
        _ingest(s3_csv[0], f"s3://{BUCKET}/stores/theirs.zarr", overwrite=True)
    assert fs.cat_file(f"{BUCKET}/stores/theirs.zarr/notes.txt") == b"someone else's"


# ---------------------------------------------------------------- clear errors
def test_a_wrong_key_is_a_clear_error(s3, s3_store, monkeypatch):
    import s3fs

    import bigdl
    from bigdl.errors import ObjectStoreError

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(ObjectStoreError, match=r"table.zarr.*refused.*check the credentials") as caught:
            bigdl.open(f"s3://{BUCKET}/stores/table.zarr")
        assert "not-the-secret" not in str(caught.value)
    finally:
        monkeypatch.undo()
        s3fs.S3FileSystem.clear_instance_cache()


def test_a_missing_bucket_is_a_clear_error(s3, s3_csv):
    import bigdl
    from bigdl.errors import ObjectStoreError

    with pytest.raises(ObjectStoreError, match=r"the bucket 'no-such-bucket' does not exist.*create it"):
        _ingest(s3_csv[0], "s3://no-such-bucket/table.zarr")
    with pytest.raises(ObjectStoreError, match=r"no-such-bucket.*does not exist"):
        bigdl.open("s3://no-such-bucket/table.zarr")


# ---------------------------------------------------------------- consumers
@pytest.fixture(scope="module")
def s3_arrays_store(s3):
    """A small classification store written with from_arrays straight to s3 (threads)."""
    from sklearn.datasets import make_classification

    import bigdl

    X, y = make_classification(n_samples=1200, n_features=5, n_informative=3, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.5, random_state=0)
    return bigdl.store.from_arrays(X.astype(np.float32), y.astype(np.int64), store=f"s3://{BUCKET}/stores/cls.zarr",
                                   rows_per_chunk=200, validation=0.1, test=0.2, seed=1), X.astype(np.float32)


def test_chunk_loader_streams_the_same_batches_as_from_a_local_copy(s3_arrays_store, tmp_path):
    import bigdl
    from bigdl.loaders import ChunkLoader

    ds, X = s3_arrays_store
    local = bigdl.store.from_arrays(X, ds.y.compute(), store=tmp_path / "cls.zarr", rows_per_chunk=200,
                                    split_codes=ds.split.compute())
    # read_ahead_bytes of one chunk: prefetch is lowered to one chunk beyond the buffer.
    remote_loader = ChunkLoader(ds, "train", batch_size=64, seed=3, threads=4, read_ahead_bytes=200 * 5 * 4)
    assert remote_loader.prefetch == 1
    remote = [(X_batch.numpy(), y_batch.numpy()) for X_batch, y_batch in remote_loader]
    expected = [(X_batch.numpy(), y_batch.numpy()) for X_batch, y_batch in
                ChunkLoader(local, "train", batch_size=64, seed=3)]
    assert len(remote) == len(expected) > 0
    for (got_X, got_y), (want_X, want_y) in zip(remote, expected):
        np.testing.assert_array_equal(got_X, want_X)
        np.testing.assert_array_equal(got_y, want_y)


def test_trainer_fits_with_checkpoints_on_s3_and_resumes(s3, s3_arrays_store, s3_client):
    import torch

    from bigdl.models import MLP
    from bigdl.train import Trainer

    ds, _ = s3_arrays_store
    directory = f"s3://{BUCKET}/runs/mlp"

    def trainer(epochs):
        torch.manual_seed(0)
        return Trainer(MLP(ds.n_features, [16], ds.n_classes), epochs=epochs, batch_size=64, seed=0,
                       checkpoint_dir=directory, progress=False)

    # On a worker of the cluster: it reads the store and writes the checkpoints through the AWS_* environment.
    with s3_client.as_current():
        first = trainer(2).fit(ds)
    assert [entry["epoch"] for entry in first] == [1, 2]
    names = sorted(name.rsplit("/", 1)[-1] for name in s3["fs"].ls(f"{BUCKET}/runs/mlp", refresh=True))
    assert "epoch-00001.pt" in names and "epoch-00001.json" in names
    with s3_client.as_current():
        resumed = trainer(3).fit(ds, resume=True)
    assert [entry["epoch"] for entry in resumed] == [1, 2, 3]
    # The first two epochs come from the checkpoint, not from training again.
    assert [entry["train_loss"] for entry in resumed[:2]] == [entry["train_loss"] for entry in first]
    assert resumed[2]["checkpoint"] == f"{directory}/epoch-00002.pt"


def test_an_estimator_fits_on_an_s3_store(s3_arrays_store, s3_client):
    from bigdl.errors import StorePathError
    from bigdl.estimators import ChunkForestClassifier, predict_to_store

    ds, _ = s3_arrays_store
    with s3_client.as_current():
        forest = ChunkForestClassifier(n_estimators=20, random_state=0).fit(ds)
        assert forest.score(ds) > 0.8
        predicted = predict_to_store(forest, ds, f"s3://{BUCKET}/stores/cls-proba.zarr")
    assert predicted.path == f"s3://{BUCKET}/stores/cls-proba.zarr"
    np.testing.assert_allclose(predicted.X.compute(), forest.predict_proba(ds.X.compute()), rtol=1e-6)
    with pytest.raises(StorePathError, match="overlaps the input"):
        predict_to_store(forest, ds, ds.path, overwrite=True)


# ---------------------------------------------------------------- retries
class FlakyView:
    """A view whose first reads fail as an overloaded object store answers (503), or refuse access (403)."""

    def __init__(self, view, failures: int, error):
        self.view, self.failures, self.error, self.calls = view, failures, error, 0

    def __getattr__(self, name):
        return getattr(self.view, name)

    def read_chunk(self, chunk, split, into=None):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.view.read_chunk(chunk, split, into=into)


def test_transient_errors_are_retried_and_permanent_ones_reported_at_once(s3_arrays_store, monkeypatch):
    from bigdl.errors import ObjectStoreError
    from bigdl.loaders import ChunkLoader

    ds, _ = s3_arrays_store
    waits = []
    monkeypatch.setattr("time.sleep", waits.append)  # with_retries waits through time.sleep
    loader = ChunkLoader(ds, "train", batch_size=64, shuffle=False, threads=1)
    expected = [y.numpy() for _, y in loader]
    loader.view = FlakyView(loader.view, 2, OSError("503 Service Unavailable: SlowDown"))
    assert [y.numpy().tolist() for _, y in loader] == [y.tolist() for y in expected]
    assert waits == [0.2, 0.4]  # exponential backoff, then success
    loader.view = FlakyView(loader.view.view, 1, PermissionError("Forbidden"))
    waits.clear()
    with pytest.raises(ObjectStoreError, match=r"chunk 0 of 's3://bigdl-test/stores/cls.zarr/version-\w+'.*refused"):
        list(loader)
    assert loader.view.calls == 1 and waits == []


# ---------------------------------------------------------------- the command line
def test_cli_ingest_info_and_verify_on_s3(s3, s3_csv, s3_client, capsys):
    from bigdl.cli import main

    store = f"s3://{BUCKET}/stores/cli.zarr"
    scheduler = s3_client.scheduler.address
    assert main(["ingest", s3_csv[0], "--target", TARGET, "--drop", ",".join(DROP), "--store", store,
                 "--rows-per-chunk", str(ROWS_PER_CHUNK), "--no-progress", "--scheduler", scheduler]) == 0
    assert f"store        {store}" in capsys.readouterr().out
    assert main(["info", store, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == store and info["n_samples"] == len(s3_csv[1])
    assert main(["verify", store, "--no-progress", "--scheduler", scheduler]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["info", f"s3://{BUCKET}/stores/nothing.zarr"]) == 2
    assert "nothing is stored under that prefix" in capsys.readouterr().err


# ---------------------------------------------------------------- other sources
def test_image_folder_and_npy_on_s3_ingest_as_from_a_local_copy(s3, tmp_path):
    import io

    from PIL import Image

    import bigdl

    fs, rng = s3["fs"], np.random.default_rng(0)
    local = tmp_path / "imgs"
    for label in ("cat", "dog"):
        (local / label).mkdir(parents=True)
        for index in range(6):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
            (local / label / f"{index}.png").write_bytes(buffer.getvalue())
            fs.pipe_file(f"{BUCKET}/imgs/{label}/{index}.png", buffer.getvalue())
    options = dict(size=(8, 8), rows_per_chunk=5, progress=False)
    remote = bigdl.ingest.images(f"s3://{BUCKET}/imgs", store=f"s3://{BUCKET}/stores/imgs.zarr", **options)
    expected = bigdl.ingest.images(local, store=tmp_path / "imgs.zarr", **options)
    assert remote.classes == expected.classes == ["cat", "dog"]
    np.testing.assert_array_equal(remote.X.compute(), expected.X.compute())
    np.testing.assert_array_equal(remote.y.compute(), expected.y.compute())

    images, labels = rng.integers(0, 255, (12, 1, 6, 6), dtype=np.uint8), np.arange(12) % 3
    for name, values in (("x.npy", images), ("y.npy", labels)):
        buffer = io.BytesIO()
        np.save(buffer, values)
        fs.pipe_file(f"{BUCKET}/arrays/{name}", buffer.getvalue())
    arrays = bigdl.ingest.images(f"s3://{BUCKET}/arrays/x.npy", labels=f"s3://{BUCKET}/arrays/y.npy",
                                 store=f"s3://{BUCKET}/stores/arrays.zarr", rows_per_chunk=5, progress=False)
    order = np.argsort(arrays.group["record"][:])
    np.testing.assert_array_equal(arrays.X.compute()[order], images)


def test_storage_options_reach_the_workers_and_stay_out_of_the_store(s3, s3_client, monkeypatch):
    """Credentials given as storage_options instead of the environment: used on the workers, never stored."""
    import s3fs

    import bigdl
    from bigdl.store._location import storage_options_for

    options = {"key": s3["AWS_ACCESS_KEY_ID"], "secret": s3["AWS_SECRET_ACCESS_KEY"], "endpoint_url": s3["endpoint"]}
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")  # the environment alone would be refused
    s3fs.S3FileSystem.clear_instance_cache()
    bigdl.store.set_storage_options("s3", options, client=s3_client)
    try:
        on_workers = s3_client.run(storage_options_for, "s3://any/thing")
        assert all(found["secret"] == options["secret"] for found in on_workers.values())
        with s3_client.as_current():
            ds = bigdl.store.from_arrays(np.ones((50, 2), np.float32), np.arange(50) % 2,
                                         store=f"s3://{BUCKET}/stores/options.zarr", rows_per_chunk=10)
            assert bigdl.store.verify_store(ds.path, progress=False).ok
        for name in s3["fs"].find(f"{BUCKET}/stores/options.zarr"):
            assert options["secret"].encode() not in s3["fs"].cat_file(name), name
    finally:
        bigdl.store.set_storage_options("s3", None, client=s3_client)
        monkeypatch.undo()
        s3fs.S3FileSystem.clear_instance_cache()


def test_interrupted_after_the_commit_the_new_store_is_live_and_the_next_write_tidies(s3, s3_csv, monkeypatch):
    """Cut short while the old version is removed: the new commit stands; the next write removes the old version."""
    import bigdl
    import bigdl.store._commit as commit_module

    fs, store = s3["fs"], f"s3://{BUCKET}/stores/tidy.zarr"
    old = _ingest(s3_csv[0], store)
    real_remove = commit_module.remove_tree

    def failing_remove(path):
        if path == old.root:
            raise ConnectionError("connection lost while tidying")
        real_remove(path)

    monkeypatch.setattr(commit_module, "remove_tree", failing_remove)
    new = _ingest(s3_csv[0], store, overwrite=True)
    monkeypatch.setattr(commit_module, "remove_tree", real_remove)
    assert bigdl.open(store).root == new.root != old.root
    assert fs.exists(old.root.removeprefix("s3://") + "/zarr.json")  # left behind, no longer named by the commit
    latest = _ingest(s3_csv[0], store, overwrite=True)
    assert not fs.exists(old.root.removeprefix("s3://") + "/zarr.json")
    assert not fs.exists(new.root.removeprefix("s3://") + "/zarr.json")
    assert bigdl.open(store).root == latest.root


# ---------------------------------------------------------------- staging
def _set_tempdir(folder, dask_worker=None):
    import tempfile

    previous, tempfile.tempdir = tempfile.tempdir, folder
    return previous


def test_an_ingest_to_s3_stages_in_the_bucket_so_workers_need_no_shared_disk(s3, s3_client, tmp_path, monkeypatch):
    """No process may stage on its local disk (each one's temporary folder points nowhere); rejects included."""
    import tempfile

    monkeypatch.delenv("BIGDL_STAGING_DIR", raising=False)
    frame = make_frame(600, seed=4)
    text = frame.to_csv(index=False) + "1,not a number\n"  # one rejected row (too few fields)
    url = f"s3://{BUCKET}/inputs/staging.csv"
    s3["fs"].pipe_file(url, text.encode())
    nowhere = str(tmp_path / "no-such-folder")
    previous = s3_client.run(_set_tempdir, nowhere)
    monkeypatch.setattr(tempfile, "tempdir", nowhere)
    try:
        with s3_client.as_current():
            ds = _ingest(url, f"s3://{BUCKET}/stores/staged.zarr")
    finally:
        for address, value in previous.items():
            s3_client.run(_set_tempdir, value, workers=[address])
    assert ds.row_counts["read"] == 601 and ds.row_counts["rejected"] == 1 and ds.n_samples == 600
    assert len(ds.rejects()) == 1
    assert not [name for name in s3["fs"].find(f"{BUCKET}/stores/staged.zarr") if "_staging" in name]


def test_bigdl_staging_dir_moves_the_staging_of_a_remote_store_and_is_emptied(s3, s3_csv, tmp_path, monkeypatch):
    staging = tmp_path / "stage"
    staging.mkdir()
    monkeypatch.setenv("BIGDL_STAGING_DIR", str(staging))
    ds = _ingest(s3_csv[0], f"s3://{BUCKET}/stores/local-staging.zarr")
    assert ds.n_samples > 0 and list(staging.iterdir()) == []


def test_a_sequence_panel_from_s3_to_s3_equals_a_local_ingest(s3, tmp_path, monkeypatch):
    import pandas as pd

    import bigdl

    monkeypatch.delenv("BIGDL_STAGING_DIR", raising=False)
    rng = np.random.default_rng(2)
    times = pd.date_range("2024-01-01", periods=120, freq="h")
    frame = pd.concat([pd.DataFrame({"when": times, "sensor": name, "load": rng.normal(size=120).cumsum()})
                       for name in ("a", "b")])
    url = f"s3://{BUCKET}/inputs/panel.csv"
    s3["fs"].pipe_file(url, frame.to_csv(index=False).encode())
    frame.to_csv(tmp_path / "panel.csv", index=False)
    options = dict(time="when", series="sensor", values=["load"], window=12, horizon=3, progress=False)
    remote = bigdl.ingest.sequences(url, store=f"s3://{BUCKET}/stores/panel.zarr", **options)
    local = bigdl.ingest.sequences(tmp_path / "panel.csv", store=tmp_path / "panel.zarr", **options)
    np.testing.assert_array_equal(remote.X.compute(), local.X.compute())
    assert remote.attrs["chunk_window_counts"] == local.attrs["chunk_window_counts"]
    assert not [name for name in s3["fs"].find(f"{BUCKET}/stores/panel.zarr") if "_staging" in name]
