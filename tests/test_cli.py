"""The ``bigdl`` command: ingest and info end to end, errors as one line with exit status 2."""

from __future__ import annotations

import json

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
