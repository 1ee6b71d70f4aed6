"""Properties of CSV ingest on random text: records as pyarrow and pandas read them, counts that add up.

Random CSV text (quotes, quoted line breaks and delimiters, doubled and
literal quotes, CRLF, blank lines, several delimiters, latin-1 and UTF-8 with
or without a BOM, gzip, tiny blocks) must give:

- the records pyarrow's parser sees, cut where it cuts them, whatever the
  block boundaries (the splitter behind block planning and reject text);
- rows read = stored + rejected;
- every stored row equal to what pandas parses for that record, and every
  rejected row rejected for a reason that holds for what pandas parses.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import bigdl
from bigdl.ingest.sources import _csv
from bigdl.ingest.sources._blocks import record_spans
from support import expected_features, read_store


# ---------------------------------------------------------------- the record splitter against pyarrow
TOKENS = ["a", "b", " ", ",", ";", '"', '""', "\n", "\r\n", "\r", "é"]


def _pyarrow_records(data: bytes, delimiter: str) -> list[str]:
    """The text of every record pyarrow parses (every row is made invalid by expecting 100 columns)."""
    texts = []

    def keep(row):
        texts.append(row.text)
        return "skip"

    if not data.strip(b"\r\n"):
        return []  # pyarrow: "Empty CSV file"
    table = pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=pa_csv.ReadOptions(use_threads=False, column_names=[f"c{i}" for i in range(100)]),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=keep),
        convert_options=pa_csv.ConvertOptions(column_types={f"c{i}": pa.string() for i in range(100)}))
    assert table.num_rows == 0
    return texts


def _our_records(data: bytes, delimiter: str) -> list[str]:
    starts, stops, _ = record_spans(data, lambda text: _csv.record_ends(text, ord(delimiter)))
    return [data[start:stop].decode() for start, stop in zip(starts, stops)]


@settings(max_examples=300, deadline=None, database=None)
@given(tokens=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=60), delimiter=st.sampled_from([",", ";"]))
def test_records_end_where_pyarrow_ends_them(tokens, delimiter):
    data = "".join(tokens).encode()
    assert _our_records(data, delimiter) == _pyarrow_records(data, delimiter)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(st.sampled_from(TOKENS[:-1]), min_size=1, max_size=200), blocksize=st.integers(1, 40),
       scan_bytes=st.integers(1, 64))
def test_blocks_are_cut_between_records(tmp_path, monkeypatch, tokens, blocksize, scan_bytes):
    # Small scan reads exercise records and lines that run on across them.
    monkeypatch.setattr(_csv, "SCAN_BYTES", scan_bytes)
    data = "".join(tokens).encode()
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        path = Path(directory) / "t.csv"
        path.write_bytes(data)
        ranges = _csv.record_block_ranges(str(path), blocksize)
    assert [start for start, _ in ranges[1:]] == [stop for _, stop in ranges[:-1]]
    assert (ranges[0][0], ranges[-1][1]) == (0, len(data)) or not data
    # Reading block by block gives the records of the whole file, each once.
    assert [text for start, stop in ranges for text in _our_records(data[start:stop], ",")] == \
        _our_records(data, ",")


# ---------------------------------------------------------------- ingest against pandas
NUMERIC, CATEGORICAL, TARGET = ["n0", "n1"], ["c0"], "t"
COLUMNS = NUMERIC + CATEGORICAL + [TARGET]
ENCODINGS = {"utf-8": "abé€ ,;|\t\"\n\r", "latin-1": "abéü ,;|\t\"\n\r", "utf-8-sig": "abé日 ,;|\t\"\n\r"}
# Missing numbers as both pyarrow and pandas spell them; text that is no number for either.
MISSING = ["", "NA", "NaN", "nan", "null", "NULL", "N/A", "n/a"]
NOT_NUMBERS = ["abc", "1.2.3", "--", "x1"]
# Numbers that are not finite (or overflow a float64): their rows are quarantined as
# "column 'n0': 'inf' is not a finite number" (the cell as read: a typed column reads 1e309 as inf).
NON_FINITE = ["inf", "-inf", "Infinity", "-Infinity", "+inf", "INF", "1e309", "-1e309"]
NUMBER = st.integers(-10**6, 10**6).map(lambda value: value / 1000)


def _number_text(draw) -> str:
    kind = draw(st.sampled_from(["number"] * 6 + ["exponent", "missing", "junk"] + (["inf"] if NON_FINITE else [])))
    if kind == "number":
        return repr(draw(NUMBER))
    if kind == "exponent":
        return f"{draw(NUMBER):e}"
    if kind == "missing":
        return draw(st.sampled_from(MISSING))
    if kind == "junk":
        return draw(st.sampled_from(NOT_NUMBERS))
    return draw(st.sampled_from(NON_FINITE))


def _render(value: str, delimiter: str, quote: bool) -> str:
    """A field as a CSV writer may write it: quoted when it must be or when ``quote``, else as is
    (a quote inside an unquoted field is a plain character)."""
    if quote or value.startswith('"') or any(char in value for char in (delimiter, "\n", "\r")):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def csv_files(draw):
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    alphabet = ENCODINGS[encoding]
    texts = draw(st.lists(st.text(alphabet=alphabet, max_size=6), min_size=1, max_size=6, unique=True))
    classes = ["x", "y", "z z", 'q"', "é,"]
    n_rows = draw(st.integers(1, 30))
    rows = []  # (fields as written, the values meant)
    # Two clean rows first: at least two classes and two distinct numbers are always stored.
    for index in range(n_rows + 2):
        values = [repr(float(index)) if index < 2 else _number_text(draw) for _ in NUMERIC]
        values.append(draw(st.sampled_from(texts)))
        values.append(classes[index] if index < 2 else draw(st.sampled_from(classes + [""])))
        fields = [_render(value, delimiter, draw(st.booleans())) for value in values]
        if index >= 2:
            change = draw(st.sampled_from(["none"] * 8 + ["drop", "extra"]))
            if change == "drop":
                del fields[draw(st.integers(0, len(fields) - 1))]
            elif change == "extra":
                fields.append(_render(draw(st.sampled_from(texts)), delimiter, draw(st.booleans())))
        rows.append(delimiter.join(fields))
    lines = [delimiter.join(COLUMNS)]
    for row in rows:
        lines.append(row)
        if draw(st.integers(0, 9)) == 0:
            lines.append("")  # a blank line: no record
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    data = text.encode("utf-8" if encoding == "utf-8-sig" else encoding)
    if encoding == "utf-8-sig" or (encoding == "utf-8" and draw(st.booleans())):
        data = b"\xef\xbb\xbf" + data
    return {"data": data, "encoding": encoding, "delimiter": delimiter, "n_records": len(rows),
            "gzip": draw(st.integers(0, 4)) == 0, "blocksize": draw(st.integers(16, 512))}


def _pandas_records(path: Path, source: dict) -> pd.DataFrame:
    """Every record as pandas parses it: the raw text of each field, NaN past the record's last field
    (which the python engine tells from an empty field)."""
    return pd.read_csv(path, header=None, skiprows=1, names=list(range(len(COLUMNS) + 2)), dtype=str,
                       keep_default_na=False, sep=source["delimiter"], encoding=source["encoding"],
                       skip_blank_lines=True, engine="python")


FINITE = "... is not a finite number"


def _explains(expected: str, reason: str) -> bool:
    """Whether a reject's ``reason`` is the ``expected`` one (``FINITE``: any cell of that column)."""
    if expected.endswith(FINITE):
        head = expected[:-len(FINITE)]
        return reason.startswith(head) and reason.endswith(" is not a finite number")
    return expected in reason


def _number(text: str) -> float | None:
    """pandas' reading of a number: a float, NaN when missing, None when not a number."""
    if text in MISSING:
        return float("nan")
    value = pd.to_numeric(pd.Series([text]), errors="coerce").iloc[0]
    return None if pd.isna(value) else float(value)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(source=csv_files())
def test_stored_rows_are_what_pandas_parses_and_rejects_have_reasons(tmp_path, source):
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        directory = Path(directory)
        path = directory / ("d.csv.gz" if source["gzip"] else "d.csv")
        path.write_bytes(gzip.compress(source["data"]) if source["gzip"] else source["data"])
        parsed = _pandas_records(path, source)
        ds = bigdl.ingest.tabular(path, target=TARGET, numeric=NUMERIC, categorical=CATEGORICAL,
                                  task="classification", store=directory / "s.zarr", blocksize=source["blocksize"],
                                  rows_per_chunk=7, encoding=source["encoding"], delimiter=source["delimiter"],
                                  test=0.0, progress=False)
        stored = read_store(ds.path)
        rejects = ds.rejects()
        feature_names, classes = ds.feature_names, ds.classes

    rows = stored["rows"]
    assert len(parsed) == source["n_records"]
    assert rows["read"] == len(parsed) == rows["stored"] + rows["rejected"]
    assert len(rejects) == rows["rejected"] and len(stored["record"]) == rows["stored"]
    assert sorted(stored["record"].tolist() + (rejects["row"] - 1).tolist()) == list(range(len(parsed)))

    # What each record should give, by pandas: stored, or rejected for one of these reasons.
    reasons = {}
    for index, record in parsed.iterrows():
        n_fields = int(record.notna().sum())
        fields = dict(zip(COLUMNS, record.tolist()))
        why = []
        if n_fields != len(COLUMNS):
            why.append(f"expected {len(COLUMNS)} fields, found {n_fields}")
        else:
            for name in NUMERIC:
                value = _number(fields[name])
                if value is None:
                    why.append(f"column {name!r}: {fields[name]!r} is not a number")
                elif not np.isnan(value) and not np.isfinite(value):
                    why.append(f"column {name!r}: {FINITE}")
            if fields[TARGET] == "":
                why.append(f"missing target {TARGET!r}")
        reasons[index] = why
    rejected = dict(zip((rejects["row"] - 1).tolist(), rejects["reason"].tolist()))
    for index, why in reasons.items():
        if index in rejected:
            assert why, f"record {index} ({parsed.iloc[index].tolist()}) is valid, rejected: {rejected[index]}"
            assert any(_explains(reason, rejected[index]) for reason in why), (rejected[index], why)
        else:
            assert not why, (index, parsed.iloc[index].tolist(), why)

    # The stored rows, in record order, are what scikit-learn makes of pandas' values.
    order = np.argsort(stored["record"])
    records = stored["record"][order]
    frame = pd.DataFrame({name: [_number(parsed.iloc[index][COLUMNS.index(name)]) for index in records]
                          for name in NUMERIC})
    for name in CATEGORICAL:
        frame[name] = [parsed.iloc[index][COLUMNS.index(name)] or "__missing__" for index in records]
    assert np.isfinite(frame[NUMERIC].fillna(0.0).to_numpy()).all()
    X_expected, names = expected_features(frame, numeric=NUMERIC, categorical=CATEGORICAL)
    assert feature_names == names
    np.testing.assert_allclose(stored["X"][order], X_expected, rtol=1e-5, atol=1e-5)
    targets = [parsed.iloc[index][COLUMNS.index(TARGET)] for index in records]
    assert [classes[code] for code in stored["y"][order]] == targets
