"""Sequence ingest and load-time windows, against pandas / NumPy references on the same data.

The panel below has three series of different lengths, rows shuffled across
files, missing days, missing values, duplicated timestamps and malformed
rows; the store is cut into small chunks so windows cross chunk boundaries and
segments of one series are sorted by different tasks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bigdl
from bigdl.errors import SchemaError

CHUNK = 64
WINDOW, HORIZON = 5, 3
LENGTHS = {"alpha": 400, "beta": 150, "gamma": 47}


def make_panel(seed: int = 0) -> pd.DataFrame:
    """Rows of three daily series with gaps, NaNs and duplicates, in a shuffled order."""
    rng = np.random.default_rng(seed)
    parts = []
    for offset, (name, length) in enumerate(LENGTHS.items()):
        days = pd.date_range("2021-01-01", periods=length, freq="D") + pd.Timedelta(days=3 * offset)
        level = np.cumsum(rng.normal(size=length)) + 10 * offset
        frame = pd.DataFrame({"day": days, "sid": name, "load": level,
                              "temp": np.sin(np.arange(length) / 7.0) * (offset + 1)})
        keep = np.ones(length, dtype=bool)
        keep[rng.choice(np.arange(1, length - 1), size=length // 10, replace=False)] = False  # missing days
        frame = frame[keep].copy()
        frame.loc[frame.sample(frac=0.05, random_state=seed + offset).index, "temp"] = np.nan
        parts.append(frame)
    panel = pd.concat(parts, ignore_index=True)
    duplicated = panel.sample(n=12, random_state=seed).copy()
    duplicated["load"] += 1000.0  # the later copy differs, so "last" vs "first" is visible
    panel = pd.concat([panel, duplicated], ignore_index=True)
    return panel.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_csv(panel: pd.DataFrame, directory, bad_rows: bool = True) -> list[str]:
    text = panel.assign(day=panel["day"].dt.strftime("%Y-%m-%d"))
    halves = [text.iloc[: len(text) // 2], text.iloc[len(text) // 2:]]
    paths = []
    for index, half in enumerate(halves):
        path = directory / f"part-{index}.csv"
        half.to_csv(path, index=False)
        paths.append(str(path))
    if bad_rows:
        with open(paths[1], "a") as handle:
            handle.write("2021-02-30,alpha,1.0,2.0\n")      # not a date
            handle.write("2021-03-01,beta,heavy,2.0\n")     # not a number
            handle.write(",gamma,1.0,2.0\n")                # missing time
    return paths


def reference(panel: pd.DataFrame, gaps: str, duplicates: str = "last", validation=0.1, test=0.2):
    """The stored series by pandas: sorted, de-duplicated, on a daily grid, filled, scaled, split.

    The scaling is fitted on the observed values of each series' training part only (global over the series).
    """
    frames, observed = [], []
    for name in sorted(LENGTHS):
        rows = panel[panel["sid"] == name].reset_index().sort_values(["day", "index"], kind="stable")
        rows = rows.drop_duplicates("day", keep=duplicates).set_index("day")[["load", "temp"]]
        if gaps != "reject":
            rows = rows.reindex(pd.date_range(rows.index.min(), rows.index.max(), freq="D"))
        n = len(rows)
        n_test, n_validation = round(n * test), round(n * validation)
        observed.append(rows.iloc[:n - n_test - n_validation])  # NaN where a step or a value was missing
        if gaps != "reject":
            rows = rows.ffill().bfill() if gaps == "ffill" else rows.interpolate(method="time").ffill().bfill()
        split = np.repeat([0, 1, 2], [n - n_test - n_validation, n_validation, n_test])
        frames.append(rows.assign(sid=name, position=np.arange(n), split=split))
    stats = pd.concat(observed)
    mean, std = stats.mean().to_numpy(), stats.std(ddof=0).to_numpy()
    frames = [frame.assign(**{column: (frame[column] - mean[i]) / std[i]
                              for i, column in enumerate(["load", "temp"])}) for frame in frames]
    return frames


def reference_windows(frames, split: str, window=WINDOW, horizon=HORIZON, stride=1, targets=(0,),
                      gap_days=False):
    """Windows by NumPy's sliding_window_view, per series (and per contiguous run), in stored order."""
    code = {"train": 0, "validation": 1, "test": 2}[split]
    xs, ys = [], []
    span = window + horizon
    for frame in frames:
        runs = [frame]
        if gap_days:  # cut the series where a day is missing
            breaks = np.flatnonzero(np.diff(frame.index.values).astype("timedelta64[D]").astype(int) != 1) + 1
            runs = [frame.iloc[a:b] for a, b in zip([0, *breaks], [*breaks, len(frame)])]
        for run in runs:
            values = run[["load", "temp"]].to_numpy()
            if len(values) < span:
                continue
            windows = np.lib.stride_tricks.sliding_window_view(values, span, axis=0).transpose(0, 2, 1)
            splits = np.lib.stride_tricks.sliding_window_view(run["split"].to_numpy(), span)
            positions = run["position"].to_numpy()[: len(windows)]
            keep = (splits[:, window] == code) & (splits[:, -1] == code) & (positions % stride == 0)
            xs.append(windows[keep, :window])
            ys.append(windows[keep, window:][:, :, list(targets)])
    X, y = np.concatenate(xs), np.concatenate(ys)
    return X, (y[:, :, 0] if y.shape[2] == 1 else y)


def load_all(ds, split, **options):
    from bigdl.loaders.torch import ChunkLoader

    batches = list(ChunkLoader(ds, split, batch_size=32, shuffle=False, **options))
    return (np.concatenate([X.numpy() for X, _ in batches]), np.concatenate([y.numpy() for _, y in batches]))


@pytest.fixture(scope="module")
def panel():
    return make_panel()


@pytest.fixture(scope="module")
def panel_files(tmp_path_factory, panel):
    return write_csv(panel, tmp_path_factory.mktemp("panel"))


def ingest(files, store, **options):
    arguments = dict(time="day", series="sid", values=["load", "temp"], target="load", window=WINDOW,
                     horizon=HORIZON, rows_per_chunk=CHUNK, blocksize=4000, max_filled=0.2, progress=False)
    arguments.update(options)
    return bigdl.ingest.sequences(files, store=store, **arguments)


@pytest.fixture(scope="module")
def ffill_store(tmp_path_factory, panel_files):
    return ingest(panel_files, tmp_path_factory.mktemp("ffill") / "s.zarr")


# ---------------------------------------------------------------- the stored series
@pytest.mark.parametrize("gaps", ["ffill", "interpolate"])
def test_stored_series_equals_pandas_reference(tmp_path, panel, panel_files, gaps, client):
    ds = ingest(panel_files, tmp_path / "s.zarr", gaps=gaps, client=client)
    frames = reference(panel, gaps)
    expected = pd.concat(frames)
    X = ds.X.compute()
    np.testing.assert_allclose(X, expected[["load", "temp"]].to_numpy(), rtol=1e-5, atol=1e-5)
    group = ds.group
    np.testing.assert_array_equal(group["split"][:], expected["split"].to_numpy())
    np.testing.assert_array_equal(group["position"][:], expected["position"].to_numpy())
    np.testing.assert_array_equal(group["time"][:], expected.index.values.astype("datetime64[ns]").view(np.int64))
    np.testing.assert_array_equal(group["series"][:], np.repeat(np.arange(3), [len(f) for f in frames]))
    # One run per series: nothing is missing after filling.
    assert len(np.unique(group["run"][:])) == 3
    assert ds.attrs["series"]["names"] == sorted(LENGTHS)


def test_counts_add_up_and_rejects_name_the_problem(ffill_store, panel):
    rows = ffill_store.row_counts
    assert rows["read"] == len(panel) + 3
    assert rows["read"] == rows["stored"] + rows["rejected"]
    rejects = ffill_store.rejects()
    assert len(rejects) == rows["rejected"] == 3 + 12
    reasons = " | ".join(rejects["reason"])
    assert "'2021-02-30' is not a date/time" in reasons
    assert "column 'load': 'heavy' is not a number" in reasons
    assert "missing time 'day'" in reasons
    duplicates = rejects[rejects["reason"].str.startswith("duplicate time")]
    assert len(duplicates) == 12 and duplicates["reason"].str.contains("kept the later row").all()
    assert set(duplicates["source"]) <= {item["path"] for item in ffill_store.attrs["source"]["files"]}
    assert (duplicates["row"] >= 1).all()
    steps = ffill_store.attrs["steps"]
    assert steps["observed"] == rows["stored"]
    assert steps["total"] == ffill_store.n_samples == steps["observed"] + steps["inserted"]
    assert steps["inserted"] == sum(length // 10 for length in LENGTHS.values())


def test_duplicate_policies(tmp_path, panel, panel_files):
    first = ingest(panel_files, tmp_path / "first.zarr", duplicates="first")
    expected = pd.concat(reference(panel, "ffill", duplicates="first"))
    np.testing.assert_allclose(first.X.compute(), expected[["load", "temp"]].to_numpy(), rtol=1e-5, atol=1e-5)
    assert first.rejects()["reason"].str.contains("kept the earlier row").sum() == 12
    with pytest.raises(SchemaError, match=r"Duplicated time 20\d\d-.* of series '\w+' in .*part-.\.csv "
                                          r"\(record \d+\).*duplicates='last'"):
        ingest(panel_files, tmp_path / "error.zarr", duplicates="error")
    assert not (tmp_path / "error.zarr").exists()


def test_loader_window_errors_name_the_loader(ffill_store):
    from bigdl.errors import ParameterError
    from bigdl.loaders.torch import ChunkLoader

    with pytest.raises(ParameterError, match=r"^The 'window' parameter of ChunkLoader must be an int in the range "
                                             r"\[1, inf\) or None\. Got 0 instead\.$"):
        ChunkLoader(ffill_store, window=0)


# ---------------------------------------------------------------- windows
@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_windows_equal_numpy_sliding_windows(ffill_store, panel, split):
    expected_X, expected_y = reference_windows(reference(panel, "ffill"), split)
    X, y = load_all(ffill_store, split)
    assert X.shape == expected_X.shape and y.shape == expected_y.shape == (len(X), HORIZON)
    np.testing.assert_allclose(X, expected_X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)


def test_windows_cross_chunks_but_never_series(ffill_store):
    from bigdl.loaders.torch import ChunkLoader

    loader = ChunkLoader(ffill_store, "all", shuffle=False)
    crossing = 0
    for chunk in range(ffill_store.n_chunks):
        rows, starts = loader.view._window_starts(chunk, "all")
        starts = starts + rows.start
        series = ffill_store.group["series"][:]
        span = WINDOW + HORIZON
        assert (series[starts] == series[starts + span - 1]).all()
        crossing += int(((starts % CHUNK) + span > CHUNK).sum())
    assert crossing > 0  # windows that read a halo from the next chunk were produced and checked
    all_X, _ = load_all(ffill_store, "all")
    lengths = ffill_store.attrs["series"]["lengths"]
    assert len(all_X) == sum(length - (WINDOW + HORIZON) + 1 for length in lengths)


def test_window_options_override_the_store_spec(ffill_store, panel):
    expected_X, expected_y = reference_windows(reference(panel, "ffill"), "train", window=9, horizon=2, stride=3)
    X, y = load_all(ffill_store, "train", window=9, horizon=2, stride=3)
    np.testing.assert_allclose(X, expected_X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)


def test_shuffled_epoch_yields_every_window_once(ffill_store):
    from bigdl.loaders.torch import ChunkLoader

    ordered_X, _ = load_all(ffill_store, "train")
    loader = ChunkLoader(ffill_store, "train", batch_size=10, shuffle=True, seed=3, buffer_chunks=2)
    shuffled = np.concatenate([X.numpy() for X, _ in loader])
    assert len(shuffled) == len(ordered_X) == loader.n_samples
    key = lambda array: np.sort(array.reshape(len(array), -1).view([("", array.dtype)] * (WINDOW * 2)), axis=0)
    np.testing.assert_array_equal(key(shuffled), key(ordered_X))
    assert not np.array_equal(shuffled, ordered_X)


def test_time_split_has_no_leakage(ffill_store):
    from bigdl.loaders.torch import ChunkLoader

    group = ffill_store.group
    times, series, split = group["time"][:], group["series"][:], group["split"][:]
    loader = ChunkLoader(ffill_store, "train", shuffle=False)
    span = WINDOW + HORIZON
    for chunk in range(ffill_store.n_chunks):
        rows, starts = loader.view._window_starts(chunk, "train")
        for start in starts + rows.start:
            steps = slice(start, start + span)
            assert (split[steps] == 0).all()
            later = (series == series[start]) & (split > 0)
            assert times[steps].max() < times[later].min()


def test_gaps_reject_cuts_runs_instead_of_filling(tmp_path, panel, panel_files):
    ds = ingest(panel_files, tmp_path / "reject.zarr", gaps="reject")
    rows = ds.row_counts
    assert rows["read"] == rows["stored"] + rows["rejected"]
    assert ds.attrs["steps"]["inserted"] == 0
    assert ds.rejects()["reason"].str.contains(r"missing value 'temp' \(gaps='reject'\)").sum() > 0
    clean = panel.dropna(subset=["temp"])
    frames = reference(clean, "reject")
    for split in ("train", "test"):
        expected_X, expected_y = reference_windows(frames, split, gap_days=True)
        X, y = load_all(ds, split)
        np.testing.assert_allclose(X, expected_X, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)


def test_npy_series_and_unscale(tmp_path):
    values = np.cumsum(np.random.default_rng(1).normal(size=1000)).astype(np.float64)
    np.save(tmp_path / "walk.npy", values)
    ds = bigdl.ingest.sequences(str(tmp_path / "walk.npy"), store=tmp_path / "walk.zarr", window=10, horizon=2,
                                rows_per_chunk=128, blocksize=1600, test=0.2, validation=0.0, progress=False)
    scaled = (values - values[:800].mean()) / values[:800].std()  # fitted on the training part only
    X, y = load_all(ds, "train")
    windows = np.lib.stride_tricks.sliding_window_view(scaled[:800], 12)
    np.testing.assert_allclose(X[:, :, 0], windows[:, :10], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.unscale(y), np.lib.stride_tricks.sliding_window_view(values[:800], 12)[:, 10:],
                               rtol=1e-5, atol=1e-4)


def test_trainer_fits_a_stacked_lstm_on_windows(ffill_store):
    import torch

    from bigdl.models import StackedLSTM
    from bigdl.train import Trainer

    torch.manual_seed(0)
    model = StackedLSTM(ffill_store.n_features, hidden=8, layers=2, horizon=HORIZON)
    trainer = Trainer(model, optimizer="adam", lr=0.01, epochs=2, batch_size=32, on_cluster=False, progress=False)
    history = trainer.fit(ffill_store)
    assert len(history) == 2 and history[1]["train_loss"] < history[0]["train_loss"]
    metrics = trainer.evaluate(ffill_store, split="test")
    assert set(metrics) >= {"loss", "mse", "mae", "mase", "smape", "mae_by_step", "baselines", "skill",
                            "mse_scaled", "mae_scaled", "r2_scaled"}
    with pytest.raises(SchemaError, match="samples of shape \\(5, 2\\)"):
        Trainer(StackedLSTM(3, hidden=4, layers=1), epochs=1, on_cluster=False, progress=False).fit(ffill_store)


# ---------------------------------------------------------------- errors
def test_clear_errors(tmp_path, panel_files):
    with pytest.raises(SchemaError, match="needs time="):
        bigdl.ingest.sequences(panel_files, store=tmp_path / "a.zarr", progress=False)
    with pytest.raises(SchemaError, match=r"^The 'gaps' parameter of sequences must be a str among \{'ffill', "
                                          r"'interpolate', 'reject'\}\. Got 'zero' instead\.$"):
        ingest(panel_files, tmp_path / "b.zarr", gaps="zero")
    with pytest.raises(SchemaError, match=r"'window' parameter of sequences must be an int in the range \[1, inf\)"):
        ingest(panel_files, tmp_path / "b.zarr", window=True)
    with pytest.raises(SchemaError, match="target= names \\['price'\\]"):
        ingest(panel_files, tmp_path / "c.zarr", target="price")
    with pytest.raises(SchemaError, match="fixed time delta"):
        ingest(panel_files, tmp_path / "d.zarr", frequency="monthly")
    from bigdl.loaders.torch import ChunkLoader

    tabular = bigdl.store.from_arrays(np.zeros((10, 2)), store=tmp_path / "t.zarr")
    with pytest.raises(SchemaError, match="window apply to sequence stores only"):
        ChunkLoader(tabular, window=4)


def test_evaluate_averages_over_every_forecast_step(ffill_store):
    """MSE/MAE/R2 of a multi-step forecast equal NumPy's over all (window, step) values."""
    import torch

    from bigdl.models import StackedLSTM
    from bigdl.train import Trainer

    torch.manual_seed(0)
    trainer = Trainer(StackedLSTM(ffill_store.n_features, hidden=4, layers=1, horizon=HORIZON), epochs=1,
                      batch_size=32, on_cluster=False, progress=False)
    X, y = load_all(ffill_store, "test")
    with torch.no_grad():
        predicted = trainer.model.eval()(torch.from_numpy(X)).numpy()
    metrics = trainer.evaluate(ffill_store, split="test")
    assert metrics["mse_scaled"] == pytest.approx(np.mean((predicted - y) ** 2), rel=1e-4)
    assert metrics["mae_scaled"] == pytest.approx(np.mean(np.abs(predicted - y)), rel=1e-4)
    assert metrics["r2_scaled"] == pytest.approx(1 - np.sum((predicted - y) ** 2) / np.sum((y - y.mean()) ** 2),
                                                 rel=1e-4)
    # in the target's original units
    original = ffill_store.unscale(predicted) - ffill_store.unscale(y)
    assert metrics["mse"] == pytest.approx(np.mean(original ** 2), rel=1e-4)
    assert metrics["mae_by_step"] == pytest.approx(np.abs(original).mean(axis=0), rel=1e-4)


def test_mase_smape_and_baselines_equal_a_hand_computation(tmp_path):
    """One series, season 4: every figure of evaluate() by NumPy on the raw values."""
    import torch

    from bigdl.models import StackedLSTM
    from bigdl.train import Trainer

    rng = np.random.default_rng(5)
    n, window, horizon, season = 200, 6, 2, 4
    values = 50 + 10 * np.sin(np.arange(n) * 2 * np.pi / season) + np.cumsum(rng.normal(size=n))
    pd.DataFrame({"t": np.arange(n), "v": values.round(6)}).to_csv(tmp_path / "s.csv", index=False)
    values = values.round(6)
    ds = bigdl.ingest.sequences(tmp_path / "s.csv", time="t", values=["v"], window=window, horizon=horizon,
                                store=tmp_path / "s.zarr", validation=0.1, test=0.2, progress=False)
    torch.manual_seed(0)
    trainer = Trainer(StackedLSTM(1, hidden=4, layers=1, horizon=horizon), epochs=1, batch_size=32,
                      on_cluster=False, progress=False)
    trainer.fit(ds)
    metrics = trainer.evaluate(ds, split="test", season=season)
    train_end, test_start = n - 40 - 20, n - 40
    scale = np.mean(np.abs(values[season:train_end] - values[:train_end - season]))  # in-sample, train part only
    starts = np.arange(test_start - window, n - window - horizon + 1)  # windows whose targets are all test steps
    mean, std = ds.attrs["preprocessing"]["mean"][0], ds.attrs["preprocessing"]["std"][0]
    inputs = np.stack([values[start:start + window] for start in starts])
    actual = np.stack([values[start + window:start + window + horizon] for start in starts])
    with torch.no_grad():
        scaled = trainer.model.eval()(torch.from_numpy(((inputs - mean) / std)[:, :, None].astype(np.float32)))
    forecasts = {"model": scaled.numpy().astype(np.float64) * std + mean,
                 "naive": np.repeat(inputs[:, -1:], horizon, axis=1),
                 "seasonal_naive": inputs[:, window - 1 + np.arange(1, horizon + 1) - season]}
    expected = {}
    for name, forecast in forecasts.items():
        error = forecast - actual
        expected[name] = {"mse": np.mean(error ** 2), "mae": np.mean(np.abs(error)),
                          "mase": np.mean(np.abs(error)) / scale,
                          "smape": np.mean(200 * np.abs(error) / (np.abs(actual) + np.abs(forecast))),
                          "mae_by_step": np.abs(error).mean(axis=0)}
    assert metrics["n_samples"] == len(starts) and metrics["season"] == season
    for name, figures in expected.items():
        got = metrics if name == "model" else metrics["baselines"][name]
        for key, value in figures.items():
            assert got[key] == pytest.approx(value, rel=1e-4), (name, key)
    assert metrics["skill"] == pytest.approx(1 - expected["model"]["mase"] / expected["seasonal_naive"]["mase"],
                                             rel=1e-4)


@pytest.mark.parametrize("fmt", ["parquet", "sql"])
def test_parquet_and_sql_sources_give_the_same_store(tmp_path, panel, ffill_store, fmt):
    clean = make_panel()  # the same rows as the CSV, without its three malformed lines
    if fmt == "parquet":
        source, extra = str(tmp_path / "panel.parquet"), {}
        clean.to_parquet(source, index=False)
    else:
        import sqlalchemy

        url = f"sqlite:///{tmp_path / 'panel.db'}"
        clean.to_sql("readings", sqlalchemy.create_engine(url), index=False)
        source, extra = url, {"table": "readings"}
    ds = ingest(source, tmp_path / f"{fmt}.zarr", **extra)
    np.testing.assert_allclose(ds.X.compute(), ffill_store.X.compute(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ds.group["time"][:], ffill_store.group["time"][:])
    assert ds.row_counts["rejected"] == 12  # the duplicates only


# ---------------------------------------------------------------- no leakage
def test_scaling_is_fitted_on_the_training_part_only(tmp_path, panel):
    """Changing every validation and test value leaves the stored mean and std exactly as they were."""
    clean = panel.dropna(subset=["load"])
    (tmp_path / "a").mkdir()
    ds = ingest(write_csv(clean, tmp_path / "a", bad_rows=False), tmp_path / "a.zarr")
    frames = reference(clean, "ffill")
    later = []  # (sid, day) of every validation/test step
    for name, frame in zip(sorted(LENGTHS), frames):
        later += [(name, day) for day in frame.index[frame["split"] > 0]]
    later = pd.MultiIndex.from_tuples(later, names=["sid", "day"])
    changed = clean.set_index(["sid", "day"])
    changed.loc[changed.index.isin(later), ["load", "temp"]] *= 1000.0
    changed = changed.reset_index()[clean.columns]
    (tmp_path / "b").mkdir()
    other = ingest(write_csv(changed, tmp_path / "b", bad_rows=False), tmp_path / "b.zarr")
    state, other_state = ds.attrs["preprocessing"], other.attrs["preprocessing"]
    assert state["mean"] == other_state["mean"] and state["std"] == other_state["std"]
    assert state["fitted_on"].startswith("train part")
    # and they are the training part's figures, by pandas
    train = pd.concat([frame[frame["split"] == 0] for frame in reference(clean, "ffill")])
    observed = clean.drop_duplicates(["sid", "day"], keep="last").set_index(["sid", "day"])
    train_rows = observed[observed.index.isin(pd.MultiIndex.from_arrays([train["sid"], train.index]))]
    np.testing.assert_allclose(state["mean"], train_rows[["load", "temp"]].mean().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(state["std"], train_rows[["load", "temp"]].std(ddof=0).to_numpy(), rtol=1e-9)
    # fitted on whole series, the figures would differ: the comparison above was able to fail
    whole = observed[["load", "temp"]].mean().to_numpy()
    assert np.abs(np.asarray(state["mean"]) - whole).max() > 0.05


# ---------------------------------------------------------------- windows know where they are
@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_metadata_names_each_windows_series_and_times(ffill_store, shuffle):
    from bigdl.loaders.torch import ChunkLoader

    group = ffill_store.group
    stored_X, times, series = group["X"][:], group["time"][:], group["series"][:]
    row_of = {(int(code), int(time)): row for row, (code, time) in enumerate(zip(series, times))}
    loader = ChunkLoader(ffill_store, "test", batch_size=16, shuffle=shuffle, seed=2, buffer_chunks=2, metadata=True)
    seen = 0
    for X, y, meta in loader:
        assert set(meta) == {"series", "origin", "target_time"} and meta["target_time"].shape == (len(X), HORIZON)
        for window, code, origin, target_time in zip(X.numpy(), meta["series"].numpy(), meta["origin"].numpy(),
                                                     meta["target_time"].numpy()):
            row = row_of[(int(code), int(origin))]
            np.testing.assert_array_equal(window, stored_X[row - WINDOW + 1:row + 1])
            np.testing.assert_array_equal(target_time, times[row + 1:row + 1 + HORIZON])
            seen += 1
    assert seen == loader.n_samples
    options = dict(batch_size=16, shuffle=shuffle, seed=2, buffer_chunks=2)
    plain, again = ChunkLoader(ffill_store, "test", **options), ChunkLoader(ffill_store, "test", metadata=True,
                                                                            **options)
    np.testing.assert_array_equal(np.concatenate([X.numpy() for X, _ in plain]),
                                  np.concatenate([X.numpy() for X, _, _ in again]))  # the same order as without
