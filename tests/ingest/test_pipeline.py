"""The shared ingest skeleton: accounting, chunk-job planning, per-chunk split counts of every kind."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import zarr

import bigdl
from bigdl.ingest._pipeline import account, chunk_jobs, reason_family


def _result(read, valid, **reasons):
    return {"n_records": read, "n_valid": valid, "n_rejected": read - valid, "reasons": Counter(reasons)}


def test_account_sums_blocks_and_merges_reasons():
    accounting = account([_result(5, 4, a=1), _result(3, 1, a=1, b=1), _result(0, 0)])
    assert accounting == {"read": 8, "stored": 5, "rejected": 3, "reasons": {"a": 2, "b": 1}}


def test_account_refuses_an_inconsistent_count():
    broken = dict(_result(5, 4), n_rejected=2)  # 5 read, 4 stored, 2 rejected: a bug somewhere
    with pytest.raises(RuntimeError, match=r"internal error: rows read \(5\) != stored \(4\) \+ rejected \(2\)"):
        account([broken])
    with pytest.raises(RuntimeError, match="internal error"):
        account([_result(5, 4)], expected=6, what="images")


@pytest.mark.parametrize("counts,rows_per_chunk", [([3, 0, 4], 5), ([10], 3), ([1] * 7, 2), ([0, 0, 5], 5), ([4, 4], 8)])
def test_chunk_jobs_cover_every_row_once_in_whole_chunks(counts, rows_per_chunk):
    ids = [f"piece{number}" for number in range(len(counts))]
    jobs = chunk_jobs(counts, rows_per_chunk, ids)
    n_rows = sum(counts)
    assert [start for start, _ in jobs] == list(range(0, n_rows, rows_per_chunk))
    covered = []
    for start, pieces in jobs:
        rows = sum(high - low for _, low, high in pieces)
        assert rows == min(rows_per_chunk, n_rows - start)  # whole chunks, the last one possibly short
        covered += [(piece, row) for piece, low, high in pieces for row in range(low, high)]
    expected = [(ids[number], row) for number, count in enumerate(counts) for row in range(count)]
    assert covered == expected  # every staged row once, in store order


def test_chunk_jobs_example():
    assert chunk_jobs([3, 0, 4], rows_per_chunk=5) == [(0, [(0, 0, 3), (2, 0, 2)]), (5, [(2, 2, 4)])]


def test_reason_families_are_registered_by_each_kind():
    assert reason_family("tabular", "column 'x': 'abc' is not a number") == "column 'x': not a number"
    assert reason_family("sequence", "duplicate time 3 of series 'a': kept the later row") == "duplicate time"
    assert reason_family("sequence", "column 'x': 'abc' is not a number") == "column 'x': not a number"
    assert reason_family("tabular", "duplicate time 3") == "duplicate time 3"  # tabular knows no sequence reasons
    assert reason_family("image", "cannot decode: OSError: broken") == "cannot decode"


# ---------------------------------------------------------------- every kind through the skeleton
def _tabular(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=230), "b": rng.normal(size=230), "label": rng.integers(0, 3, 230)})
    frame["a"] = frame["a"].astype(object)
    frame.loc[[5, 77], "a"] = "oops"  # rejected rows: not numbers
    frame.to_csv(tmp_path / "t.csv", index=False)
    return bigdl.ingest.tabular(tmp_path / "t.csv", target="label", store=tmp_path / "t.zarr", validation=0.2,
                                rows_per_chunk=40, blocksize=2000, progress=False)


def _images(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, size=(97, 6, 5), dtype=np.uint8))
    return bigdl.ingest.images(tmp_path / "x.npy", labels=rng.integers(0, 2, 97), store=tmp_path / "i.zarr",
                               validation=0.2, rows_per_chunk=16, progress=False)


def _sequences(tmp_path):
    frame = pd.DataFrame({"t": np.arange(150), "v": np.sin(np.arange(150) / 5)})
    frame = pd.concat([frame, frame.iloc[[10]]])  # a duplicate time: rejected late, while sorting
    frame.to_csv(tmp_path / "s.csv", index=False)
    return bigdl.ingest.sequences(tmp_path / "s.csv", time="t", store=tmp_path / "s.zarr", rows_per_chunk=32,
                                  blocksize=1000, progress=False)


@pytest.mark.parametrize("make", [_tabular, _images, _sequences], ids=["tabular", "image", "sequence"])
def test_every_kind_records_chunk_split_counts_and_consistent_rows(tmp_path, make):
    ds = make(tmp_path)
    group = zarr.open_group(str(ds.path), mode="r")
    split = group["split"][:]
    rows_per_chunk = group["split"].chunks[0]
    expected = [np.bincount(split[start:start + rows_per_chunk], minlength=3).tolist()
                for start in range(0, len(split), rows_per_chunk)]
    assert ds.attrs["chunk_split_counts"] == expected
    assert len(expected) > 1
    rows = ds.attrs["rows"]
    assert rows["read"] == rows["stored"] + rows["rejected"]
    assert rows["rejected"] >= (0 if make is _images else 1)


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_image_ingest_takes_compression(tmp_path, compression):
    from bigdl.store._format import compressor

    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(20, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "x.npy", pixels)
    ds = bigdl.ingest.images(tmp_path / "x.npy", labels=rng.integers(0, 2, 20), store=tmp_path / "i.zarr",
                             compression=compression, progress=False)
    assert ds.attrs["compression"] == compression
    codecs = [type(codec).__name__ for codec in zarr.open_array(str(ds.path / "X"), mode="r").compressors]
    assert ("BloscCodec" in codecs) == (compressor(compression) is not None)
    record = zarr.open_array(str(ds.path / "record"), mode="r")[:]
    np.testing.assert_array_equal(zarr.open_array(str(ds.path / "X"), mode="r")[:][:, 0], pixels[record])


def test_image_ingest_refuses_an_unknown_compression(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="compression"):
        bigdl.ingest.images(tmp_path / "x.npy", labels=[0, 1, 0, 1], store=tmp_path / "i.zarr", compression="gzip",
                            progress=False)
    assert not (tmp_path / "i.zarr").exists()
