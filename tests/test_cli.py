"""The ``bigdl`` command: ingest and info end to end, errors as one line with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bigdl
from bigdl.cli import main


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "data.csv"
    bigdl.datasets.make_tabular(600, n_numeric=3, seed=4).to_csv(path, index=False)
    with open(path, "a") as handle:
        handle.write("600,1.0,oops,2.0,AA,c1\n")  # a word in a numeric column: rejected
    return path


def test_ingest_then_info(csv_file, tmp_path, cluster_client, capsys):
    store = tmp_path / "cli.zarr"
    status = main(["ingest", str(csv_file), "--target", "target", "--store", str(store), "--drop", "id",
                   "--categorical", "carrier", "--validation", "0.1", "--rows-per-chunk", "128",
                   "--scheduler", cluster_client.scheduler.address, "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "read 601  stored 600  rejected 1" in printed
    ds = bigdl.open(store)
    assert ds.n_samples == 600 and ds.rows_per_chunk == 128
    assert ds.feature_names[:3] == ["x00", "x01", "x02"]

    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"]["rejected"] == 1 and info["n_features"] == ds.n_features

    assert main(["info", str(store), "--rejects", "5"]) == 0
    printed = capsys.readouterr().out
    assert "first 1 of 1 rejected rows" in printed and "'oops' is not a number" in printed


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bigdl info: error: No store at") and error.count("\n") == 1


def test_input_errors_come_before_any_cluster(csv_file, tmp_path, capsys):
    # The scheduler address is unreachable: reaching it would be a different error.
    unreachable = ["--scheduler", "tcp://127.0.0.1:1"]
    assert main(["ingest", str(tmp_path / "nothing-*.csv"), "--target", "t", "--store",
                 str(tmp_path / "s.zarr"), *unreachable]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert main(["ingest", str(csv_file), "--target", "label", "--store", str(tmp_path / "s.zarr"),
                 *unreachable]) == 2
    error = capsys.readouterr().err
    assert "The target column 'label' is not in" in error and "columns found" in error


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert "ingest" in out and "info" in out
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_overwrite_of_a_folder_that_is_not_a_store_is_one_line_with_status_2(csv_file, tmp_path, capsys):
    documents = tmp_path / "my_documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("mine")
    assert main(["ingest", str(csv_file), "--target", "target", "--store", str(documents), "--overwrite",
                 "--scheduler", "tcp://127.0.0.1:1", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "overwrite=True replaces only a bigdl store" in error and error.count("\n") == 1
    assert (documents / "thesis.txt").read_text() == "mine"


# ---------------------------------------------------------------- a store that cannot be written (issue 13.16)
def _unwritable(folder, monkeypatch):
    """``folder`` made read-only: by its mode, or, where that does not stop this process (root), by
    the answer the kernel gives a process that may not write there, injected into ``os.mkdir``."""
    import os

    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / ".probe").mkdir()
    except PermissionError:
        return
    (folder / ".probe").rmdir()
    mkdir = os.mkdir

    def refuse(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(path)) == str(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse)


def test_a_read_only_store_folder_is_one_line_with_status_2(csv_file, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "read-only"
    _unwritable(folder, monkeypatch)
    store = folder / "s.zarr"
    try:
        # The scheduler address is unreachable: the store's folder is checked before any cluster.
        status = main(["ingest", str(csv_file), "--target", "target", "--store", str(store),
                       "--scheduler", "tcp://127.0.0.1:1", "--no-progress"])
        assert status == 2
        assert capsys.readouterr().err == (
            f"bigdl ingest: error: Cannot write the store '{store}': Permission denied (creating a folder in "
            f"'{folder}'); choose a folder you can write to, or change its permissions. Nothing was left under "
            "the store's name or beside it.\n")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_full_disk_is_one_line_with_status_2_and_leaves_nothing(csv_file, tmp_path, cluster_client, capsys,
                                                                  monkeypatch):
    import errno
    import os

    from bigdl.ingest import _pipeline

    def disk_full(*args, **kwargs):  # the last write of an ingest: the store's metadata (on this machine)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_pipeline, "finish_store", disk_full)
    store = tmp_path / "s.zarr"
    status = main(["ingest", str(csv_file), "--target", "target", "--store", str(store),
                   "--scheduler", cluster_client.scheduler.address, "--no-progress"])
    assert status == 2
    error = capsys.readouterr().err  # after the line of the cluster connected to
    assert error.endswith("\nbigdl ingest: error: Cannot write the store "
                          f"'{store}': No space left on device; free some space, or choose a store path on another "
                          "disk. Nothing was left under the store's name or beside it.\n")
    assert error.count("bigdl ingest: error") == 1 and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_of_the_store_folder_is_one_line_with_status_2(csv_file, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    store = tmp_path / "notes.txt" / "s.zarr"
    assert main(["ingest", str(csv_file), "--target", "target", "--store", str(store), "--no-progress",
                 "--scheduler", "tcp://127.0.0.1:1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"bigdl ingest: error: Cannot write the store '{store}': ")
    assert "a file is in the way" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_any_other_operating_system_error_is_one_line_with_status_2(tmp_path, capsys, monkeypatch):
    import bigdl.cli

    def unreadable(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "s.zarr" / "zarr.json"))

    monkeypatch.setattr(bigdl.cli, "_info", unreadable)
    assert main(["info", str(tmp_path / "s.zarr")]) == 2
    assert capsys.readouterr().err == \
        f"bigdl info: error: Permission denied: '{tmp_path / 's.zarr' / 'zarr.json'}' [errno 13]\n"


@pytest.mark.parametrize(("option", "stored"), [([], 599), (["--non-finite", "missing"], 600)])
def test_ingest_non_finite_option(tmp_path, cluster_client, capsys, option, stored):
    path = tmp_path / "inf.csv"
    frame = bigdl.datasets.make_tabular(600, n_numeric=3, seed=4)
    frame.astype({"x01": object}).assign(x01=lambda f: f["x01"].where(f.index != 10, "inf")).to_csv(path, index=False)
    assert main(["ingest", str(path), "--target", "target", "--store", str(tmp_path / "s.zarr"), "--drop", "id",
                 "--scheduler", cluster_client.scheduler.address, "--no-progress", *option]) == 0
    assert f"read 600  stored {stored}  rejected {600 - stored}" in capsys.readouterr().out


@pytest.mark.parametrize(("option", "order"), [([], "shuffled (seed 3)"), (["--no-shuffle"], "as input")])
def test_ingest_shuffle_option(tmp_path, cluster_client, capsys, option, order):
    path = tmp_path / "d.csv"
    bigdl.datasets.make_tabular(600, n_numeric=3, seed=4).to_csv(path, index=False)
    store = tmp_path / "s.zarr"
    assert main(["ingest", str(path), "--target", "target", "--store", str(store), "--drop", "id", "--seed", "3",
                 "--scheduler", cluster_client.scheduler.address, "--no-progress", *option]) == 0
    assert f"row order    {order}" in capsys.readouterr().out
    records = bigdl.open(store).group["record"][:]
    assert (records == np.arange(600)).all() == (order == "as input")


def test_ingest_date_time_and_category_options(tmp_path, cluster_client, capsys):
    import pandas as pd

    frame = bigdl.datasets.make_tabular(300, n_numeric=2, seed=6)
    frame["when"] = pd.date_range("2022-03-01", periods=300, freq="5h").strftime("%Y-%m-%dT%H:%M:%SZ")
    frame["ts"] = (pd.date_range("2020-01-01", periods=300, freq="D") - pd.Timestamp("1970-01-01")) \
        // pd.Timedelta("1ms")
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    store = tmp_path / "s.zarr"
    status = main(["ingest", str(path), "--target", "target", "--store", str(store), "--drop", "id",
                   "--datetime", "when", "--datetime", "ts=ms", "--datetime-parts", "year,hour",
                   "--categorical-encoding", "carrier=frequency", "--max-categories", "all",
                   "--scheduler", cluster_client.scheduler.address, "--no-progress"])
    assert status == 0, capsys.readouterr().err
    ds = bigdl.open(store)
    assert [name for name in ds.feature_names if "__" in name] == ["when__year", "when__hour", "ts__year",
                                                                   "ts__hour", "carrier__frequency"]
    assert [entry["unit"] for entry in ds.attrs["preprocessing"]["datetime"]] == [None, "ms"]
    assert main(["ingest", str(path), "--target", "target", "--store", str(tmp_path / "t.zarr"),
                 "--datetime-parts", "year,hours"]) == 2
    assert "The 'datetime_parts' parameter" in capsys.readouterr().err
