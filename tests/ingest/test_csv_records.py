"""CSV records that span lines or exceed pyarrow's parse chunk are read exactly, at any block size.

A quoted field may hold line breaks, so a record is not a line: blocks are
cut between records, ``record`` counts records, and a reject quotes its whole
record with the line it starts on.  The neighbours (JSON lines with long
lines or raw line breaks, sequence ingest reading CSV, text encodings that
are not byte-wise ASCII) are here too.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import SchemaError
from bigdl.ingest.sources import plan_sources
from bigdl.ingest.sources._blocks import block_ranges
from support import expected_features, read_store

MULTILINE = '"first line\nsecond, line"'
HEADER = "id,a,note,target"


def _good_record(i: int, literal_quotes: bool) -> str:
    if i % 7 == 0:
        note = MULTILINE
    elif literal_quotes and i % 11 == 0:
        note = '12" pizza'  # a quote inside an unquoted field is a plain character
    else:
        note = "plain"
    return f"{i},{i / 10},{note},{'pq'[i % 2]}"


# Bad records right after multi-line ones, multi-line bad records (of both kinds) and bad records
# every 97th row, so some fall next to block boundaries: {0-based record: (text, reason)}.
def _bad_records(n_rows: int) -> dict[int, tuple[str, str]]:
    bad = {
        8: ("8,0.8,plain", "expected 4 fields, found 3"),
        14: (f"14,abc,{MULTILINE},q", "column 'a': 'abc' is not a number"),
        21: (f"21,2.1,{MULTILINE},p,extra", "expected 4 fields, found 5"),
        22: (f"22,2.2,{MULTILINE}", "expected 4 fields, found 3"),
    }
    for i in range(97, n_rows, 97):
        bad.setdefault(i, (f"{i},x{i},plain,q", f"column 'a': 'x{i}' is not a number"))
    return bad


def _write_multiline_csv(path, n_rows: int = 2000, literal_quotes: bool = False, compress: bool = False) -> dict:
    """Write the CSV; return what an exact ingest gives: rejects, stored records, their values."""
    bad = _bad_records(n_rows)
    records = [bad[i][0] if i in bad else _good_record(i, literal_quotes) for i in range(n_rows)]
    text = "\n".join([HEADER] + records) + "\n"
    if compress:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as sink:
            sink.write(text)
    else:
        path.write_bytes(text.encode())
    first_lines = np.cumsum([1] + [record.count("\n") + 1 for record in [HEADER] + records])[:-1]
    rejects = [{"source": str(path), "row": i + 1, "line": int(first_lines[i + 1]), "raw": records[i],
                "reason": bad[i][1]} for i in sorted(bad)]
    good = [i for i in range(n_rows) if i not in bad]
    values = pd.DataFrame({"a": [i / 10 for i in good],
                           "note": ["first line\nsecond, line" if i % 7 == 0 else
                                    '12" pizza' if literal_quotes and i % 11 == 0 else "plain" for i in good],
                           "target": ["pq"[i % 2] for i in good]})
    # The byte offset where each record starts, to tell a record boundary from a line break.
    starts = np.cumsum([0] + [len(record.encode()) + 1 for record in [HEADER] + records])[:-1]
    return {"rejects": rejects, "good": np.asarray(good), "values": values, "text": text,
            "record_starts": set(starts.tolist())}


def _check_exact(ds, expected) -> None:
    rows = ds.row_counts
    n_rejected = len(expected["rejects"])
    assert (rows["read"], rows["stored"], rows["rejected"]) == (2000, 2000 - n_rejected, n_rejected)
    rejects = ds.rejects()
    assert rejects.to_dict(orient="records") == expected["rejects"]
    stored = read_store(ds.path)
    order = np.argsort(stored["record"])
    np.testing.assert_array_equal(stored["record"][order], expected["good"])
    X_expected, names = expected_features(expected["values"], numeric=["a"], categorical=["note"])
    assert ds.feature_names == names
    np.testing.assert_allclose(stored["X"][order], X_expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(ds.classes)[stored["y"][order]], expected["values"]["target"])


def test_quoted_line_breaks_across_blocks_are_read_exactly(tmp_path, client):
    # The file: 2,000 rows, every 7th with a quoted two-line field, read at blocksize=4096.
    path = tmp_path / "notes.csv"
    expected = _write_multiline_csv(path)
    # Cut at the next line break, as planning did, some blocks would start inside a quoted field.
    naive_starts = [expected["text"].encode().index(b"\n", start - 1) + 1
                    for start, _ in block_ranges(str(path), 4096)[1:]]
    assert not set(naive_starts) <= expected["record_starts"]
    blocks = plan_sources(str(path), blocksize=4096).blocks
    assert len(blocks) >= 10
    assert {block.start for block in blocks} <= expected["record_starts"]
    ds = bigdl.ingest.tabular(path, target="target", drop=["id"], store=tmp_path / "s.zarr", blocksize=4096,
                              rows_per_chunk=300, client=client, progress=False)
    _check_exact(ds, expected)


@pytest.mark.parametrize("blocksize, literal_quotes, compress", [
    (4096, True, False),  # quotes that open no field: the quote-by-quote path
    ("64MiB", False, False),  # one block: lines and text of rejects after multi-line records
    (4096, False, True),  # gzip: one block
])
def test_quoted_line_breaks_in_one_or_many_blocks(tmp_path, blocksize, literal_quotes, compress):
    path = tmp_path / ("notes.csv.gz" if compress else "notes.csv")
    expected = _write_multiline_csv(path, literal_quotes=literal_quotes, compress=compress)
    ds = bigdl.ingest.tabular(path, target="target", drop=["id"], store=tmp_path / "s.zarr", blocksize=blocksize,
                              rows_per_chunk=300, progress=False)
    _check_exact(ds, expected)


@pytest.mark.parametrize("blocksize", ["256KiB", "64MiB"])
def test_a_quoted_header_with_quoted_line_breaks_only_further_on(tmp_path, blocksize):
    # Early parts' only quotes are the header's (read without scanning the bytes), later rows hold
    # two-line fields. In one 64 MiB block pyarrow parses in 1 MiB pieces and must be told about
    # them, or it cuts a piece inside a quoted field; in 256 KiB blocks the early ones have no quote.
    n_rows, multiline_from = 200_000, 100_000
    records = []
    for i in range(n_rows):
        note = MULTILINE if i >= multiline_from and i % 7 == 0 else "plain"
        a = "inf" if i == 10 else "abc" if i == 20 else str(i / 10)
        records.append(f"{i},{a},{note},{'pq'[i % 2]}")
    path = tmp_path / "quoted-header.csv"
    path.write_bytes(("\n".join(['"id","a","note","target"'] + records) + "\n").encode())
    ds = bigdl.ingest.tabular(path, target="target", drop=["id"], store=tmp_path / "s.zarr", blocksize=blocksize,
                              progress=False)
    rows = ds.row_counts
    assert (rows["read"], rows["stored"], rows["rejected"]) == (n_rows, n_rows - 2, 2)
    assert ds.rejects()["reason"].tolist() == ["column 'a': 'inf' is not a finite number",
                                               "column 'a': 'abc' is not a number"]
    stored = read_store(ds.path)
    good = np.delete(np.arange(n_rows), [10, 20])
    order = np.argsort(stored["record"])
    np.testing.assert_array_equal(stored["record"][order], good)
    assert ds.feature_names == ["a", "note=first line\nsecond, line", "note=plain"]
    multiline = stored["X"][order][:, 1] > stored["X"][order][:, 2]
    np.testing.assert_array_equal(multiline, (good >= multiline_from) & (good % 7 == 0))


def test_crlf_line_endings_and_line_breaks_inside_quotes(tmp_path):
    records = [f'{i},{i / 10},"two\r\nlines",{"pq"[i % 2]}' if i % 3 == 0 else f"{i},{i / 10},one,{'pq'[i % 2]}"
               for i in range(300)]
    records[100] = '100,oops,"two\r\nlines",p'
    path = tmp_path / "crlf.csv"
    path.write_bytes(("\r\n".join([HEADER] + records) + "\r\n").encode())
    ds = bigdl.ingest.tabular(path, target="target", drop=["id"], store=tmp_path / "s.zarr", blocksize=1000,
                              progress=False)
    assert ds.row_counts["read"] == 300 and ds.row_counts["rejected"] == 1
    reject = ds.rejects().iloc[0]
    assert (reject["row"], reject["line"], reject["raw"]) == (101, 2 + 100 + 34, records[100])
    assert "note=two\r\nlines" in ds.feature_names


# ---------------------------------------------------------------- rows longer than pyarrow's parse chunk
@pytest.mark.parametrize("blocksize", ["1MiB", "64MiB", "256MiB"])
@pytest.mark.parametrize("where", [0, 150])
def test_a_row_longer_than_pyarrows_parse_chunk_is_read(tmp_path, blocksize, where):
    # pyarrow parses in 1 MiB chunks and failed on a ~3 MiB row, whatever blocksize said.
    records = [f"{i},{i / 10},n{i % 3},{'pq'[i % 2]},b" for i in range(200)]
    blob = "x" * 3_000_000
    records[where] = f"{where},{where / 10},n0,p,{blob}"
    records[where + 1] = f"{where + 1},not-a-number,n1,q,{blob}"
    path = tmp_path / "long.csv"
    path.write_text("\n".join(["id,a,note,target,blob"] + records) + "\n")
    ds = bigdl.ingest.tabular(path, target="target", drop=["id", "blob"], store=tmp_path / "s.zarr",
                              blocksize=blocksize, progress=False)
    assert ds.row_counts["read"] == 200 and ds.row_counts["stored"] == 199
    # The sample behind the column types holds whole rows even when the first one is long.
    assert ds.feature_names == ["a", "note=n0", "note=n1", "note=n2"]
    np.testing.assert_array_equal(np.sort(read_store(ds.path)["record"]), np.delete(np.arange(200), where + 1))
    reject = ds.rejects().iloc[0]
    assert (reject["row"], reject["line"], reject["raw"]) == (where + 2, where + 3, records[where + 1])
    assert reject["reason"] == "column 'a': 'not-a-number' is not a number"


# ---------------------------------------------------------------- neighbours
def test_json_lines_with_a_long_first_line(tmp_path):
    lines = [json.dumps({"a": i / 4, "blob": "x" * (3_000_000 if i == 0 else 1), "target": "pq"[i % 2]})
             for i in range(100)]
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ds = bigdl.ingest.tabular(path, target="target", drop=["blob"], store=tmp_path / "s.zarr", blocksize="1MiB",
                              progress=False)
    assert (ds.row_counts["read"], ds.row_counts["stored"]) == (100, 100)
    assert ds.feature_names == ["a"]


def test_json_lines_break_only_at_raw_line_breaks(tmp_path):
    # An escaped "\n" is part of a JSON string; a raw line break ends the line, so an object split
    # by one is two malformed lines, each quoted exactly with its own line number.
    lines = [json.dumps({"a": i / 4, "note": "two\nlines" if i % 5 == 0 else "one", "target": "pq"[i % 2]})
             for i in range(200)]
    lines[50] = '{"a": 12.5, "note": "raw'
    lines.insert(51, 'break", "target": "p"}')
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ds = bigdl.ingest.tabular(path, target="target", store=tmp_path / "s.zarr", blocksize=2000, progress=False)
    assert (ds.row_counts["read"], ds.row_counts["stored"], ds.row_counts["rejected"]) == (201, 199, 2)
    rejects = ds.rejects()
    assert rejects[["row", "line", "raw"]].to_dict(orient="records") == [
        {"row": 51, "line": 51, "raw": lines[50]}, {"row": 52, "line": 52, "raw": lines[51]}]
    assert rejects["reason"].str.startswith("malformed JSON").all()
    assert "note=two\nlines" in ds.feature_names


def test_sequence_ingest_reads_quoted_line_breaks_exactly(tmp_path):
    days = pd.date_range("2022-01-01", periods=600, freq="D").strftime("%Y-%m-%d")
    records = [f'{day},"checked\nby {i % 4}",{i * 0.5}' if i % 5 == 0 else f"{day},ok,{i * 0.5}"
               for i, day in enumerate(days)]
    records[301] = f'{days[301]},"checked\nlate",heavy'
    path = tmp_path / "series.csv"
    path.write_text("\n".join(["day,comment,load"] + records) + "\n")
    ds = bigdl.ingest.sequences(path, time="day", values=["load"], store=tmp_path / "s.zarr", window=4,
                                gaps="reject", blocksize=1500, progress=False)
    assert len(plan_sources(str(path), blocksize=1500).blocks) >= 8
    assert (ds.row_counts["read"], ds.row_counts["stored"], ds.row_counts["rejected"]) == (600, 599, 1)
    reject = ds.rejects().iloc[0]
    assert (reject["row"], reject["line"], reject["raw"]) == (302, 2 + 301 + 61, records[301])
    stored = read_store(ds.path)
    good = np.delete(np.arange(600), 301)
    np.testing.assert_array_equal(stored["record"], good)
    np.testing.assert_allclose(ds.unscale(stored["X"])[:, 0], good * 0.5, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_encodings_that_are_not_ascii_based_are_refused(tmp_path, fmt):
    path = tmp_path / f"wide.{fmt}"
    text = "a,target\n1,p\n2,q\n" if fmt == "csv" else '{"a": 1, "target": "p"}\n'
    path.write_text(text, encoding="utf-16")
    with pytest.raises(SchemaError, match="encoding='utf-16' is not supported") as error:
        bigdl.ingest.tabular(path, target="target", store=tmp_path / "s.zarr", encoding="utf-16", progress=False)
    assert "Convert the file to UTF-8" in str(error.value)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("delimiter", ["§", ";;", '"'])
def test_a_delimiter_must_be_one_ascii_character(tmp_path, delimiter):
    path = tmp_path / "d.csv"
    path.write_text("a,target\n1,p\n")
    with pytest.raises(SchemaError, match="'delimiter' parameter must be one ASCII character"):
        bigdl.ingest.tabular(path, target="target", store=tmp_path / "s.zarr", delimiter=delimiter, progress=False)


@pytest.mark.parametrize("data, expected", [
    (b'"id","x"\n1,2\n3,4\n', False),                 # a quoted header only
    (b'"id","x"\r\n1,2\r\n', False),                 # ... with Windows line ends
    (b'"id","x"\n1,"a\nb"\n', True),                 # a quoted header, then a line break inside quotes
    (b'"i\nd","x"\n1,2\n', True),                    # the header itself holds a quoted line break
    (b'"i\rd","x"\n1,2\n', True),                    # ... a lone carriage return
    (b'"id","x\n', True),                             # the quote opened in the header never closes
    (b'a,b\n"x y","z ""q"""\n', False),               # quoted text, doubled quotes, no line break inside
    (b'a,b\n5" pizza,1\n2,3\n', False),               # a literal quote inside an unquoted field
    (b'a,b\n"x\ny",1\n', True),
    (b'a,b\n"x\ry",1\n', True),                       # a lone carriage return inside quotes
    (b'a,b\n"x ""\n"" y",1\n', True),                 # after a doubled quote, still inside
])
def test_serial_parsing_only_when_a_quoted_field_holds_a_line_break(data, expected):
    from bigdl.ingest.sources._csv import quoted_line_break

    assert quoted_line_break(data) is expected
