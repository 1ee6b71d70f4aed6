"""Shuffled stores: rows in a seeded random order across the whole input, done inside the read and write passes.

The order is a permutation of the input (every row once, ``record`` still
its position in the input); the split does not depend on it; the same seed
gives the same store on threads and on a cluster; a chunk of a store ingested
from a table sorted by a column is a random sample of the table, where
``shuffle=False`` keeps the sorted order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bigdl
from bigdl.ingest._pipeline import chunk_jobs
from bigdl.store import chunk_checksums

ARRAYS = ("X", "y", "split", "record")


# ---------------------------------------------------------------- the write plan
@pytest.mark.parametrize("counts, rows_per_chunk", [([3, 0, 4], 5), ([1000, 10, 0, 345, 7], 64), ([10], 3)])
def test_a_shuffled_plan_takes_every_staged_row_once_in_whole_chunks(counts, rows_per_chunk):
    jobs = chunk_jobs(counts, rows_per_chunk, shuffle_seed=7)
    n_rows = sum(counts)
    assert [start for start, _ in jobs] == list(range(0, n_rows, rows_per_chunk))
    for start, pieces in jobs:
        assert sum(high - low for _, low, high in pieces) == min(rows_per_chunk, n_rows - start)
    for piece, count in enumerate(counts):
        ranges = sorted((low, high) for _, pieces in jobs for number, low, high in pieces if number == piece)
        covered = [row for low, high in ranges for row in range(low, high)]
        assert covered == list(range(count))  # one run per chunk, runs back to back
    assert chunk_jobs(counts, rows_per_chunk, shuffle_seed=7) == jobs
    if sum(counts) > 100:  # small plans can coincide by chance
        assert chunk_jobs(counts, rows_per_chunk, shuffle_seed=8) != jobs


def test_shuffled_plan_counts_follow_a_random_permutation():
    # Two pieces of 60 and 40 rows into chunks of 50: under a uniformly random permutation the rows
    # of piece 0 in chunk 0 are hypergeometric(N=100, K=60, n=50): mean 30, variance 6.06.
    taken = np.array([sum(high - low for piece, low, high in chunk_jobs([60, 40], 50, shuffle_seed=seed)[0][1]
                          if piece == 0) for seed in range(400)])
    expected = stats.hypergeom(100, 60, 50)
    assert abs(taken.mean() - expected.mean()) < 5 * expected.std() / np.sqrt(len(taken))
    assert 0.7 < taken.var() / expected.var() < 1.4


# ---------------------------------------------------------------- tabular ingest
@pytest.fixture(scope="module")
def sorted_csv(tmp_path_factory):
    """8,000 rows sorted by ``day``, which drives the target; a key column; read in many small blocks."""
    rng = np.random.default_rng(3)
    n = 8000
    day = np.sort(rng.uniform(0, 365, n)).round(3)
    frame = pd.DataFrame({"id": [f"r{i:05d}" for i in range(n)], "day": day, "noise": rng.normal(size=n).round(5),
                          "label": np.where(day + rng.normal(0, 30, n) > 182, "late", "early")})
    path = tmp_path_factory.mktemp("sorted") / "sorted.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _ingest(source, store, **kwargs):
    return bigdl.ingest.tabular(source, store=store, target="label", drop=["id"], rows_per_chunk=500,
                                blocksize="16KB", validation=0.1, test=0.2, progress=False, **kwargs)


def _by_record(ds):
    order = np.argsort(ds.group["record"][:])
    return {name: ds.group[name][:][order] for name in ARRAYS}


def test_a_sorted_table_is_stored_as_a_random_permutation(sorted_csv, tmp_path):
    source, frame = sorted_csv
    shuffled = _ingest(source, tmp_path / "shuffled.zarr")
    kept = _ingest(source, tmp_path / "kept.zarr", shuffle=False)
    assert shuffled.attrs["row_order"] == {"shuffled": True, "seed": 0}
    assert kept.attrs["row_order"] == {"shuffled": False, "seed": None}
    assert shuffled.row_counts == kept.row_counts and shuffled.n_samples == len(frame)

    records = shuffled.group["record"][:]
    assert sorted(records.tolist()) == list(range(len(frame)))  # every input row once
    assert not np.array_equal(records, np.arange(len(frame)))
    np.testing.assert_array_equal(kept.group["record"][:], np.arange(len(frame)))
    # The same rows, values, targets and splits: only the order differs.
    for name, values in _by_record(shuffled).items():
        np.testing.assert_array_equal(values, kept.group[name][:], err_msg=name)
    assert shuffled.split_counts == kept.split_counts
    assert shuffled.feature_names == kept.feature_names

    # Each chunk of the shuffled store is a random sample of the sorted table: the share of its
    # rows from the first half of the input is binomial(500, 1/2); the kept order is all or nothing.
    first_half = records < len(frame) // 2
    shares = [first_half[start:start + 500].mean() for start in range(0, len(frame), 500)]
    bound = 5 * np.sqrt(0.25 / 500)
    assert all(abs(share - 0.5) < bound for share in shares), shares
    kept_shares = [(kept.group["record"][start:start + 500] < len(frame) // 2).mean()
                   for start in range(0, len(frame), 500)]
    assert set(kept_shares) == {0.0, 1.0}


def test_the_split_is_a_function_of_the_key_not_of_the_order(sorted_csv, tmp_path):
    source, frame = sorted_csv
    by_key = _ingest(source, tmp_path / "a.zarr", key="id")
    by_key_kept = _ingest(source, tmp_path / "b.zarr", key="id", shuffle=False)
    np.testing.assert_array_equal(_by_record(by_key)["split"], by_key_kept.group["split"][:])


def test_the_same_seed_gives_the_same_store_on_threads_and_on_a_cluster(sorted_csv, tmp_path, cluster_client):
    source, _ = sorted_csv
    on_threads = _ingest(source, tmp_path / "threads.zarr")
    on_cluster = _ingest(source, tmp_path / "cluster.zarr", client=cluster_client)
    assert chunk_checksums(on_threads.path, ARRAYS) == chunk_checksums(on_cluster.path, ARRAYS)
    other_seed = _ingest(source, tmp_path / "seed.zarr", seed=1)
    assert not np.array_equal(other_seed.group["record"][:], on_threads.group["record"][:])


def test_shuffle_must_be_a_bool(sorted_csv, tmp_path):
    source, _ = sorted_csv
    with pytest.raises(bigdl.errors.ParameterError, match="'shuffle' parameter of tabular"):
        _ingest(source, tmp_path / "s.zarr", shuffle="yes")


# ---------------------------------------------------------------- images
def test_an_image_folder_listed_class_by_class_is_stored_mixed(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        folder = tmp_path / "images" / label
        folder.mkdir(parents=True)
        for index in range(60):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), "L").save(folder / f"{index:03d}.png")
    shuffled = bigdl.ingest.images(tmp_path / "images", store=tmp_path / "s.zarr", rows_per_chunk=30, progress=False)
    kept = bigdl.ingest.images(tmp_path / "images", store=tmp_path / "k.zarr", rows_per_chunk=30, shuffle=False,
                               progress=False)
    labels = shuffled.group["y"][:]
    assert all(len(set(labels[start:start + 30].tolist())) == 3 for start in range(0, 180, 30))
    assert all(len(set(kept.group["y"][start:start + 30].tolist())) == 1 for start in range(0, 180, 30))
    for name, values in _by_record(shuffled).items():
        np.testing.assert_array_equal(values, kept.group[name][:], err_msg=name)


def test_sequence_stores_keep_time_order(tmp_path):
    frame = pd.DataFrame({"t": np.arange(300), "v": np.sin(np.arange(300) / 10).round(6)})
    frame.to_csv(tmp_path / "s.csv", index=False)
    ds = bigdl.ingest.sequences(tmp_path / "s.csv", time="t", values=["v"], window=12, horizon=1,
                                store=tmp_path / "s.zarr", progress=False)
    assert ds.attrs["row_order"] == {"shuffled": False, "seed": None}
    np.testing.assert_array_equal(ds.group["record"][:], np.arange(300))


def test_a_block_is_staged_in_batches_with_the_same_result(sorted_csv, tmp_path, monkeypatch):
    from bigdl.ingest import _rows

    source, _ = sorted_csv
    whole = _ingest(source, tmp_path / "whole.zarr")
    monkeypatch.setattr(_rows, "SHUFFLE_BATCH_ROWS", 97)  # threads: the read tasks see the patched value
    batched = _ingest(source, tmp_path / "batched.zarr")
    assert chunk_checksums(whole.path, ARRAYS) == chunk_checksums(batched.path, ARRAYS)
