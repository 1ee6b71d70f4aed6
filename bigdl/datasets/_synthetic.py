"""Synthetic tabular classification data, generated in bounded-memory pieces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ("AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH")


def make_tabular(
    n_rows: int,
    *,
    n_numeric: int = 20,
    n_classes: int = 3,
    missing: float = 0.0,
    seed: int = 0,
    start: int = 0,
    with_category: bool = True,
) -> pd.DataFrame:
    """Return ``n_rows`` rows of a learnable classification problem.

    Columns are ``id`` (the global row number), ``x00`` .. ``x{n_numeric-1}``
    (floats on different scales), ``carrier`` (a category) and ``target``
    (class labels ``"c0"``, ``"c1"``, ...).  Rows ``start .. start+n_rows`` of
    the same ``seed`` are always the same values, so a big file can be written
    piece by piece.

    Parameters
    ----------
    n_rows : int
        Number of rows to make.
    n_numeric : int, default 20
        Number of numeric feature columns.
    n_classes : int, default 3
        Number of target classes.
    missing : float, default 0.0
        Fraction of numeric cells left empty (to exercise imputation).
    seed : int, default 0
        Seed of the whole data set.
    start : int, default 0
        Global index of the first row.
    with_category : bool, default True
        Include the ``carrier`` column (and its effect on the target).

    Examples
    --------
    >>> df = make_tabular(5, n_numeric=3)
    >>> list(df.columns)
    ['id', 'x00', 'x01', 'x02', 'carrier', 'target']
    """
    # Coefficients depend on the seed only, rows on (seed, start) so pieces
    # written separately form one consistent data set.
    coef_rng = np.random.default_rng([seed, 0])
    weights = coef_rng.normal(size=(n_numeric, n_classes))
    category_effect = coef_rng.normal(size=(len(CATEGORIES), n_classes))
    offsets = coef_rng.uniform(-50, 50, size=n_numeric)
    scales = coef_rng.uniform(0.1, 20, size=n_numeric)

    rng = np.random.default_rng([seed, 1, start])
    z = rng.normal(size=(n_rows, n_numeric))
    cat = rng.integers(0, len(CATEGORIES), size=n_rows)
    logits = z @ weights + rng.gumbel(size=(n_rows, n_classes)) * 0.5
    if with_category:
        logits += 1.5 * category_effect[cat]
    target = logits.argmax(axis=1)
    values = z * scales + offsets
    if missing > 0:
        values[rng.random(size=values.shape) < missing] = np.nan

    frame = pd.DataFrame(values.round(5), columns=[f"x{i:02d}" for i in range(n_numeric)])
    frame.insert(0, "id", np.arange(start, start + n_rows, dtype=np.int64))
    if with_category:
        frame["carrier"] = np.asarray(CATEGORIES, dtype=object)[cat]
    frame["target"] = np.asarray([f"c{k}" for k in range(n_classes)], dtype=object)[target]
    return frame


def write_tabular_csv(
    directory: str | os.PathLike,
    n_rows: int,
    *,
    n_files: int = 4,
    n_numeric: int = 20,
    n_classes: int = 3,
    missing: float = 0.0,
    bad_rows: int = 0,
    seed: int = 0,
    piece_rows: int = 200_000,
    overwrite: bool = False,
    with_category: bool = True,
) -> list[Path]:
    """Write :func:`make_tabular` data as ``n_files`` CSV files, piece by piece.

    Memory stays bounded by ``piece_rows`` whatever ``n_rows`` is, so this can
    write data sets larger than RAM.  ``bad_rows`` malformed lines (a missing
    field, a word in a numeric column, an empty target, in turn) are planted at
    deterministic places to show the quarantine at work.

    Existing files are reused when they have the expected size of a previous
    identical call unless ``overwrite``.

    Parameters
    ----------
    directory : str or path
        Created if missing.
    n_rows : int
        Rows over all files.
    n_files : int, default 4
    n_numeric : int, default 20
        Float features.
    n_classes : int, default 3
    missing : float, default 0.0
        Fraction of missing numeric cells.
    bad_rows : int, default 0
        Malformed lines planted (quarantined by ingest).
    seed : int, default 0
    piece_rows : int, default 200_000
        Rows generated and written at a time (bounds memory).
    overwrite : bool, default False
        Rewrite files a previous identical call left.
    with_category : bool, default True
        Add a categorical column.

    Returns
    -------
    list of pathlib.Path
        The files, in order.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    per_file = [n_rows // n_files + (1 if i < n_rows % n_files else 0) for i in range(n_files)]
    bad_rng = np.random.default_rng([seed, 2])
    bad_positions = set(bad_rng.choice(n_rows, size=min(bad_rows, n_rows), replace=False).tolist())
    stamp = f"{n_rows}-{n_files}-{n_numeric}-{n_classes}-{missing}-{bad_rows}-{seed}-{with_category}"
    paths = []
    start = 0
    for file_index, rows in enumerate(per_file):
        path = directory / f"part-{file_index:04d}.csv"
        marker = directory / f".part-{file_index:04d}.csv.done"
        paths.append(path)
        if not overwrite and path.exists() and marker.exists() and marker.read_text() == stamp:
            start += rows
            continue
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "wb") as sink:
            first = True
            for piece_start in range(start, start + rows, piece_rows):
                piece = make_tabular(
                    min(piece_rows, start + rows - piece_start),
                    n_numeric=n_numeric,
                    n_classes=n_classes,
                    missing=missing,
                    seed=seed,
                    start=piece_start,
                    with_category=with_category,
                )
                table = pa.Table.from_pandas(piece, preserve_index=False)
                buffer = pa.BufferOutputStream()
                pa_csv.write_csv(
                    table,
                    buffer,
                    write_options=pa_csv.WriteOptions(include_header=first, quoting_style="none"),
                )
                text = buffer.getvalue().to_pybytes()
                if bad_positions:
                    text = _plant_bad_rows(text, piece_start, bad_positions, header=first)
                sink.write(text)
                first = False
        os.replace(tmp, path)
        marker.write_text(stamp)
        start += rows
    return paths


def _plant_bad_rows(text: bytes, first_row: int, bad_positions: set[int], header: bool) -> bytes:
    lines = text.split(b"\n")
    offset = 1 if header else 0
    n_data = len(lines) - offset - 1  # trailing empty string after the last newline
    for row in range(first_row, first_row + n_data):
        if row not in bad_positions:
            continue
        index = row - first_row + offset
        fields = lines[index].split(b",")
        kind = row % 3
        if kind == 0:  # wrong number of fields
            fields = fields[:-2]
        elif kind == 1:  # unparseable number in a numeric column
            fields[1] = b"n/a?"
        else:  # missing target
            fields[-1] = b""
        lines[index] = b",".join(fields)
    return b"\n".join(lines)


def make_regression(n_rows: int, *, noise: float = 0.1, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Two inputs ``x1``, ``x2`` and a smooth nonlinear target ``y`` (for the 2-3-1 MLP).

    ``y = 2 tanh(x1) - x2 + 0.5 x1 x2 + noise``; rows ``start..start+n_rows``
    of one seed are always the same.

    Parameters
    ----------
    n_rows : int
    noise : float, default 0.1
        Standard deviation of the Gaussian noise on ``y``.
    seed : int, default 0
    start : int, default 0
        Index of the first row (pieces of one large table line up).

    Returns
    -------
    pandas.DataFrame
    """
    rng = np.random.default_rng([seed, 3, start])
    x = rng.uniform(-2, 2, size=(n_rows, 2))
    y = 2 * np.tanh(x[:, 0]) - x[:, 1] + 0.5 * x[:, 0] * x[:, 1] + rng.normal(scale=noise, size=n_rows)
    return pd.DataFrame({"x1": x[:, 0].round(6), "x2": x[:, 1].round(6), "y": y.round(6)})


def make_series_panel(n_series: int, length: int, *, period: int = 24, missing: float = 0.02,
                      seed: int = 0) -> pd.DataFrame:
    """A panel of ``n_series`` hourly series: trend + daily cycle + AR(1) noise, with missing steps.

    Columns ``series`` (``"s0000"``...), ``time`` (timestamps), ``load`` (the
    value to forecast) and ``temperature`` (a correlated covariate).  Each
    series has its own level, trend, cycle amplitude and phase; a fraction
    ``missing`` of the steps (never the first or last) is left out, so ingest
    has gaps to fill.  Rows come sorted by series and time.

    Parameters
    ----------
    n_series : int
    length : int
        Hourly steps per series (before the missing ones are dropped).
    period : int, default 24
        Steps per cycle.
    missing : float, default 0.02
        Fraction of steps left out.
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
    """
    rng = np.random.default_rng(seed)
    frames = []
    steps = np.arange(length)
    for index in range(n_series):
        level, trend = rng.normal(50, 10), rng.normal(0, 0.002)
        amplitude, phase = rng.uniform(2, 8), rng.uniform(0, 2 * np.pi)
        noise = np.empty(length)
        shocks = rng.normal(scale=0.5, size=length)
        noise[0] = shocks[0]
        for step in range(1, length):
            noise[step] = 0.8 * noise[step - 1] + shocks[step]
        cycle = np.sin(2 * np.pi * steps / period + phase)
        load = level + trend * steps + amplitude * cycle + noise
        temperature = 15 + 5 * np.sin(2 * np.pi * steps / period + phase - 0.5) + rng.normal(scale=0.3, size=length)
        keep = rng.random(length) >= missing
        keep[[0, -1]] = True
        start = pd.Timestamp("2025-01-01") + pd.Timedelta(hours=int(rng.integers(0, 48)))
        frames.append(pd.DataFrame({
            "series": f"s{index:04d}", "time": start + pd.to_timedelta(steps[keep], unit="h"),
            "load": load[keep].round(3), "temperature": temperature[keep].round(2)}))
    return pd.concat(frames, ignore_index=True)
