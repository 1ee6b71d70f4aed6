"""Tabular ingest: every input format gives one store, splits are stable, bad rows are accounted for."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.ingest import _rows, _tabular
from support import FORMATS, TARGET, assert_same_store, in_input_order, make_frame, read_store, write_source


# ---------------------------------------------------------------- formats
@pytest.fixture(scope="module")
def csv_store(tmp_path_factory, sources):
    source, extra = sources["csv"]
    store = tmp_path_factory.mktemp("formats") / "csv.zarr"
    return bigdl.ingest.tabular(source, store=store, target=TARGET, drop=["id", "price"], rows_per_chunk=500,
                                blocksize="20KB", progress=False, **extra)


@pytest.mark.parametrize("fmt", [fmt for fmt in FORMATS if fmt != "csv"])
def test_every_format_gives_the_csv_store(tmp_path, sources, ingest_kwargs, csv_store, fmt):
    source, extra = sources[fmt]
    ds = bigdl.ingest.tabular(source, store=tmp_path / f"{fmt}.zarr", **ingest_kwargs, **extra)
    assert_same_store(ds.path, csv_store.path)
    assert ds.feature_names == csv_store.feature_names
    assert ds.classes == csv_store.classes


def test_format_can_be_forced_for_an_unusual_suffix(tmp_path, frame, csv_store, ingest_kwargs):
    path = tmp_path / "data.dat"
    frame.to_csv(path, index=False)
    ds = bigdl.ingest.tabular(path, store=tmp_path / "s.zarr", format="csv", **ingest_kwargs)
    assert_same_store(ds.path, csv_store.path)


def test_glob_folder_and_list_read_files_in_name_order(tmp_path, frame, csv_store, ingest_kwargs):
    folder = tmp_path / "parts"
    folder.mkdir()
    for index, (start, stop) in enumerate([(0, 1000), (1000, 2200), (2200, 3000)]):
        frame.iloc[start:stop].to_csv(folder / f"part-{index}.csv", index=False)
    for number, source in enumerate([str(folder / "part-*.csv"), folder,
                                     [folder / f"part-{index}.csv" for index in range(3)]]):
        ds = bigdl.ingest.tabular(source, store=tmp_path / f"s{number}.zarr", **ingest_kwargs)
        assert_same_store(ds.path, csv_store.path)


def test_tab_separated_file(tmp_path, frame, csv_store, ingest_kwargs):
    path = tmp_path / "data.tsv"
    frame.to_csv(path, index=False, sep="\t")
    ds = bigdl.ingest.tabular(path, store=tmp_path / "s.zarr", delimiter="\t", **ingest_kwargs)
    assert_same_store(ds.path, csv_store.path)


# ---------------------------------------------------------------- splits
def _split(path, **kwargs):
    defaults = dict(target=TARGET, drop=["id", "price"], rows_per_chunk=500, progress=False)
    return bigdl.ingest.tabular(path, **{**defaults, **kwargs})


def test_split_is_deterministic_and_depends_on_the_seed(tmp_path, sources):
    source, _ = sources["parquet"]
    first = _split(source, store=tmp_path / "a.zarr", seed=7)
    again = _split(source, store=tmp_path / "b.zarr", seed=7)
    other = _split(source, store=tmp_path / "c.zarr", seed=8)
    np.testing.assert_array_equal(first.split.compute(), again.split.compute())
    assert (first.split.compute() != other.split.compute()).mean() > 0.2


def test_split_fractions(tmp_path):
    frame = make_frame(5000, seed=1)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    ds = _split(tmp_path / "d.parquet", store=tmp_path / "s.zarr", validation=0.1, test=0.2, seed=3)
    split = ds.split.compute()
    assert split.dtype == np.uint8 and set(np.unique(split)) == {0, 1, 2}
    fractions = np.bincount(split, minlength=3) / split.size
    np.testing.assert_allclose(fractions, [0.7, 0.1, 0.2], atol=0.03)
    counts = np.bincount(split, minlength=3)
    assert ds.split_counts == {"train": counts[0], "validation": counts[1], "test": counts[2]}


def test_appended_rows_leave_existing_splits_unchanged(tmp_path):
    frame = make_frame(5000, seed=2)
    frame.iloc[:4000].to_csv(tmp_path / "old.csv", index=False)
    frame.to_csv(tmp_path / "new.csv", index=False)
    old = _split(tmp_path / "old.csv", store=tmp_path / "old.zarr", validation=0.1, blocksize="40KB")
    new = _split(tmp_path / "new.csv", store=tmp_path / "new.zarr", validation=0.1, blocksize="40KB")
    np.testing.assert_array_equal(in_input_order(new, "split")[0][:4000], in_input_order(old, "split")[0])


def test_split_follows_the_key_when_rows_are_shuffled(tmp_path):
    frame = make_frame(3000, seed=4)
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame.to_csv(tmp_path / "ordered.csv", index=False)
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    kwargs = dict(key="id", drop=["price"], validation=0.1, blocksize="20KB")
    ordered_ds = _split(tmp_path / "ordered.csv", store=tmp_path / "o.zarr", **kwargs)
    shuffled_ds = _split(tmp_path / "shuffled.csv", store=tmp_path / "s.zarr", **kwargs)
    assert "id" not in ordered_ds.feature_names  # the key is not a feature

    def split_by_id(ds, source_frame):
        stored = read_store(ds.path)
        return pd.Series(stored["split"], index=source_frame["id"].to_numpy()[stored["record"]]).sort_index()

    by_id = split_by_id(ordered_ds, frame)
    pd.testing.assert_series_equal(by_id, split_by_id(shuffled_ds, shuffled))
    # ... whereas splitting by position does not follow the rows.
    by_position = split_by_id(_split(tmp_path / "shuffled.csv", store=tmp_path / "p.zarr", drop=["price", "id"],
                                     validation=0.1), shuffled)
    assert (by_position != by_id).mean() > 0.2


# ---------------------------------------------------------------- bad rows
HEADER = "id,a,b,cat,target"


def _good_line(i: int) -> str:
    return f"{i},{(i * 37 % 101) / 7:.5f},{(i * 53 % 97) * 3.25:.3f},{'xyz'[i % 3]},{'pq'[i % 2]}"


def _plant(kind: str, line: str) -> str:
    fields = line.split(",")
    if kind == "fields-":
        return ",".join(fields[:-2])
    if kind == "fields+":
        return line + ",extra"
    if kind == "abc":
        fields[1] = "abc"
        return ",".join(fields)
    if kind == "no-target":
        fields[-1] = ""
        return ",".join(fields)
    raise ValueError(kind)


REASONS = {
    "fields-": ("expected 5 fields, found 3", "wrong number of fields"),
    "fields+": ("expected 5 fields, found 6", "wrong number of fields"),
    "abc": ("column 'a': 'abc' is not a number", "column 'a': not a number"),
    "no-target": ("missing target 'target'", "missing target 'target'"),
}


def _write_bad_csv(path, n_rows: int, first_id: int, bad: dict[int, str]) -> list[dict]:
    """Write a CSV with ``bad`` = {0-based data row: kind}; return the expected rejects."""
    lines = [_good_line(first_id + row) for row in range(n_rows)]
    expected = []
    for row, kind in sorted(bad.items()):
        lines[row] = _plant(kind, lines[row])
        expected.append({"source": str(path), "row": row + 1, "line": row + 2, "raw": lines[row],
                         "reason": REASONS[kind][0]})
    path.write_text("\n".join([HEADER] + lines) + "\n")
    return expected


@pytest.fixture
def bad_csvs(tmp_path):
    # Bad rows at the very start and end of files and next to block boundaries;
    # blocks of 3 kB hold about 120 rows.  The second file has a block where
    # the only problem is a missing target (no parse error, no type error).
    first = _write_bad_csv(tmp_path / "one.csv", 600, 0,
                           {0: "abc", 5: "fields-", 250: "abc", 251: "no-target", 420: "no-target",
                            598: "fields+", 599: "fields-"})
    second = _write_bad_csv(tmp_path / "two.csv", 400, 600, {0: "abc", 150: "no-target", 399: "fields-"})
    return [tmp_path / "one.csv", tmp_path / "two.csv"], first + second


def _data_lines(paths) -> list[str]:
    """Every data line of the files, in ingest order."""
    return [line for path in paths for line in path.read_text().splitlines()[1:]]


def test_bad_rows_are_counted_and_quarantined_exactly(tmp_path, bad_csvs, client):
    paths, expected = bad_csvs
    ds = bigdl.ingest.tabular([str(path) for path in paths], target="target", drop=["id"], store=tmp_path / "s.zarr",
                              blocksize=3000, rows_per_chunk=100, client=client, progress=False)
    assert len(bigdl.ingest.sources.plan_sources([str(p) for p in paths], blocksize=3000).blocks) >= 6
    rows = ds.row_counts
    assert rows["read"] == 1000
    assert rows["rejected"] == len(expected) == 10
    assert rows["stored"] == 990 == ds.n_samples
    assert rows["read"] == rows["stored"] + rows["rejected"]
    family = {reason: reason_family for reason, reason_family in REASONS.values()}
    assert rows["rejected_by_reason"] == {"wrong number of fields": 4, "column 'a': not a number": 3,
                                          "missing target 'target'": 3}
    counted = pd.Series([family[item["reason"]] for item in expected]).value_counts().to_dict()
    assert rows["rejected_by_reason"] == counted

    rejects = ds.rejects()
    assert list(rejects.columns) == ["source", "row", "line", "raw", "reason"]
    without_raw = [{key: value for key, value in item.items() if key != "raw"} for item in expected]
    assert rejects.drop(columns="raw").to_dict(orient="records") == without_raw

    # The stored records are exactly the good rows, in input order.
    bad_positions = [(0 if item["source"] == str(paths[0]) else 600) + item["row"] - 1 for item in expected]
    good = np.setdiff1d(np.arange(1000), bad_positions)
    stored = read_store(ds.path)
    np.testing.assert_array_equal(stored["record"], good)
    labels = np.array([line.rsplit(",", 1)[1] for line in _data_lines(paths)])[good]
    np.testing.assert_array_equal(np.asarray(ds.classes)[stored["y"]], labels)

    # The raw text is the line as it is in the file, whatever made the row bad.
    assert rejects["raw"].tolist() == [item["raw"] for item in expected]


def test_bad_json_lines_are_counted_and_quarantined_exactly(tmp_path):
    def line(i):
        return json.dumps({"id": i, "a": i / 8, "cat": "xyz"[i % 3], "target": "pq"[i % 2]})

    files, expected = [], []
    for name, n_rows, first_id, bad in (
            ("one.jsonl", 300, 0, {3: '{"id": 3, "a": 0.5, "cat": "x", "target": ',
                                   150: '{"id": 150, "a": "abc", "cat": "x", "target": "p"}',
                                   299: '{"id": 299, "a": 1.5, "cat": "y", "target": null}'}),
            ("two.jsonl", 200, 300, {0: '[300, 1.0, "x", "p"]', 100: '{"id": 400, "a": 2.0, "cat": "z"}'})):
        lines = [line(first_id + row) for row in range(n_rows)]
        for row, text in bad.items():
            lines[row] = text
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        files.append(str(tmp_path / name))
        for row, text in sorted(bad.items()):
            expected.append({"source": files[-1], "row": row + 1, "line": row + 1, "raw": text})
    ds = bigdl.ingest.tabular(files, target="target", drop=["id"], store=tmp_path / "s.zarr", blocksize=4000,
                              rows_per_chunk=64, progress=False)
    assert len(bigdl.ingest.sources.plan_sources(files, blocksize=4000).blocks) >= 4
    rows = ds.row_counts
    assert (rows["read"], rows["stored"], rows["rejected"]) == (500, 495, 5)
    assert rows["rejected_by_reason"] == {"malformed JSON": 1, "column 'a': not a number": 1,
                                          "missing target 'target'": 2, "expected a JSON object, found list": 1}
    rejects = ds.rejects()
    assert rejects[["source", "row", "line", "raw"]].to_dict(orient="records") == expected
    assert rejects["reason"].str.startswith("malformed JSON").tolist() == [True, False, False, False, False]
    assert rejects["reason"].tolist()[1:] == ["column 'a': 'abc' is not a number", "missing target 'target'",
                                              "expected a JSON object, found list", "missing target 'target'"]
    np.testing.assert_array_equal(read_store(ds.path)["record"],
                                  np.setdiff1d(np.arange(500), [3, 150, 299, 300, 400]))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_reject_lines_count_blank_lines(tmp_path, fmt):
    # "line" is the physical line a user would go to in an editor; blank
    # lines are no rows, but they are lines.
    if fmt == "csv":
        lines = [HEADER] + [_good_line(i) for i in range(100)]
        bad_index = 61
        lines[bad_index] = _plant("abc", lines[bad_index])
    else:
        lines = [json.dumps({"id": i, "a": i / 4, "target": "pq"[i % 2]}) for i in range(100)]
        bad_index = 60
        lines[bad_index] = '{"id": 60, "a": '
    text = "\n".join(lines[:31]) + "\n\n" + "\n".join(lines[31:]) + "\n"  # line 32 is blank
    path = tmp_path / f"blank.{fmt}"
    path.write_text(text)
    ds = bigdl.ingest.tabular(path, target="target", drop=["id"], store=tmp_path / "s.zarr", progress=False)
    rejects = ds.rejects()
    assert rejects["row"].tolist() == [61]  # the 61st data row
    assert rejects["line"].tolist() == [text.split("\n").index(lines[bad_index]) + 1] == [bad_index + 2]
    assert rejects["raw"].tolist() == [lines[bad_index]]


# ---------------------------------------------------------------- atomic write
def _failing(*args, **kwargs):
    raise RuntimeError("injected failure")


FAILURE_POINTS = {
    "write task": (_tabular, "_write_task", _failing),
    "preprocessing fit": (_tabular, "TabularPreprocessor", type("Broken", (), {"fit_summary": staticmethod(_failing)})),
    "rejects task": (_rows, "rejects_task", _failing),
}


@pytest.mark.parametrize("point", sorted(FAILURE_POINTS))
def test_failed_ingest_leaves_no_store_and_no_temporary(tmp_path, bad_csvs, monkeypatch, point):
    paths, _ = bad_csvs  # has rejects, so the rejects pass runs too
    module, name, replacement = FAILURE_POINTS[point]
    monkeypatch.setattr(module, name, replacement)
    with pytest.raises(RuntimeError, match="injected failure"):
        bigdl.ingest.tabular([str(path) for path in paths], target="target", store=tmp_path / "s.zarr",
                             blocksize=3000, rows_per_chunk=100, progress=False)
    assert not (tmp_path / "s.zarr").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one.csv", "two.csv"]


@pytest.mark.parametrize("point", sorted(FAILURE_POINTS))
def test_failed_overwrite_keeps_the_existing_store(tmp_path, bad_csvs, monkeypatch, point):
    paths, _ = bad_csvs
    sources = [str(path) for path in paths]
    kwargs = dict(target="target", store=tmp_path / "s.zarr", blocksize=3000, rows_per_chunk=100, progress=False)
    before = bigdl.ingest.tabular(sources[:1], **kwargs)
    stored_before = read_store(before.path)
    created = before.attrs["created"]
    files_before = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))

    module, name, replacement = FAILURE_POINTS[point]
    monkeypatch.setattr(module, name, replacement)
    with pytest.raises(RuntimeError, match="injected failure"):
        bigdl.ingest.tabular(sources, overwrite=True, **kwargs)

    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == files_before
    after = bigdl.open(tmp_path / "s.zarr")
    assert after.attrs["created"] == created
    stored_after = read_store(after.path)
    assert after.n_samples == before.n_samples == 593
    for key in ("X", "y", "split", "record"):
        np.testing.assert_array_equal(stored_after[key], stored_before[key])


def test_overwrite_replaces_a_store(tmp_path, sources, ingest_kwargs):
    frame_small = make_frame(100, seed=9)
    small, extra = write_source(frame_small, tmp_path, "csv", name="small")
    bigdl.ingest.tabular(small, store=tmp_path / "s.zarr", **ingest_kwargs)
    source, extra = sources["csv"]
    ds = bigdl.ingest.tabular(source, store=tmp_path / "s.zarr", overwrite=True, **ingest_kwargs, **extra)
    assert ds.n_samples == 3000 and bigdl.open(tmp_path / "s.zarr").n_samples == 3000
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.zarr", "small.csv"]
