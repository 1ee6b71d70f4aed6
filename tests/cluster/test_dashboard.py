"""The bigdl page on the Dask dashboard, its JSON endpoints and its Prometheus series.

End to end on a real LocalCluster: an ingest and a training job run on
worker processes, the page is opened in headless Chromium (Debian's
``chromium``, which ``dev.sh setup`` installs) through Playwright, the
figures are read off the page and compared with ``trainer.history`` and the
store's row accounting, and ``/metrics`` is scraped over HTTP.  The job
state machine, the ingest counting convention and the batch-loss smoothing
are also tested on their own.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import bigdl
from bigdl.runtime._events import INGEST_TOPIC, TRAIN_TOPIC, BatchLossReporter, IngestJob
from bigdl.cluster import _distributed_api
from bigdl.cluster._dashboard import PAGE, PLUGIN_NAME, JobBoard, dashboard_page_link, register_dashboard, to_json

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
EPOCHS = 3


# ---------------------------------------------------------------- job state, without a cluster
def _train_events(run="r1", epochs=4, done=2, checkpoint=True):
    events = [{"kind": "started", "run": run, "worker": "tcp://w:1", "epochs": epochs, "model": "MLP",
               "store": "/s.zarr", "task": "classification", "train_samples": 1000, "batch_size": 100, "ranks": 1}]
    for epoch in range(1, done + 1):
        events.append({"kind": "batch", "run": run, "worker": "tcp://w:1", "epoch": epoch, "fraction": 0.5,
                       "batch_loss": 1.0 / epoch, "samples_per_second": 900.0})
        events.append({"kind": "epoch", "run": run, "worker": "tcp://w:1", "epochs": epochs, "epoch": epoch,
                       "train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch, "val_accuracy": 0.5 + epoch / 10,
                       "samples_per_second": 1000.0 * epoch, "seconds": 1.0, "time": 100.0 + epoch,
                       "batch_loss": 0.9 / epoch, **({"checkpoint": f"/ck/epoch-{epoch - 1:05d}.pt"}
                                                     if checkpoint else {})})
    return events


def test_board_follows_a_training_job_and_estimates_its_end():
    board = JobBoard()
    for second, event in enumerate(_train_events()):
        board.on_event(TRAIN_TOPIC, event, now=1000.0 + second)
    board.on_event(TRAIN_TOPIC, {"kind": "batch", "run": "r1", "epoch": 3, "fraction": 0.5, "batch_loss": 0.3,
                                 "samples_per_second": 800.0}, now=1005.0)
    (job,) = board.snapshot(now=1010.0)["jobs"]
    assert job["state"] == "running" and job["epoch"] == 2 and job["epochs"] == 4
    assert [entry["train_loss"] for entry in job["history"]] == [1.0, 0.5]
    assert job["metric"] == "accuracy"
    assert job["checkpoints"] == [{"epoch": 1, "path": "/ck/epoch-00000.pt", "time": 101.0},
                                  {"epoch": 2, "path": "/ck/epoch-00001.pt", "time": 102.0}]
    # 2.5 of 4 epochs in 10 s: 6 s left at that pace
    assert job["progress"] == pytest.approx(2.5 / 4)
    assert job["eta"] == pytest.approx(10.0 * 1.5 / 2.5)
    # batch points: mid-epoch at fractional epochs, and the smoothed loss at each epoch's end
    assert job["batches"] == [[0.5, 1.0], [1, 0.9], [1.5, 0.5], [2, 0.45], [2.5, 0.3]]
    board.on_event(TRAIN_TOPIC, {"kind": "finished", "run": "r1"}, now=1012.0)
    (job,) = board.snapshot(now=2000.0)["jobs"]
    assert job["state"] == "finished" and job["elapsed"] == pytest.approx(12.0) and job["eta"] == 0.0


def test_board_after_resume_measures_the_pace_from_the_restart():
    board = JobBoard()
    board.on_event(TRAIN_TOPIC, {"kind": "resumed", "run": "r", "epoch": 1, "checkpoint": "/ck"}, now=50.0)
    board.on_event(TRAIN_TOPIC, _train_events(run="r", epochs=4)[0], now=50.0)
    board.on_event(TRAIN_TOPIC, {"kind": "epoch", "run": "r", "epoch": 3, "epochs": 4, "train_loss": 0.2,
                                 "samples_per_second": 1.0, "seconds": 1.0}, now=54.0)
    (job,) = board.snapshot(now=54.0)["jobs"]
    assert job["epoch"] == 3 and job["eta"] == pytest.approx(4.0)  # one epoch in 4 s, one left


def test_board_metrics_and_json_have_the_same_figures():
    board = JobBoard()
    for event in _train_events(done=2):
        board.on_event(TRAIN_TOPIC, event, now=10.0)
    board.on_event(INGEST_TOPIC, {"kind": "progress", "job": "i1", "store": "/t.zarr",
                                  "rows": {"read": 10, "stored": 0, "rejected": 2}, "bytes_written": 0,
                                  "stages": {"read": {"done": 1, "total": 3}}}, now=10.0)
    rows = {(row["name"], tuple(sorted(row["labels"].items()))): row["value"] for row in board.metrics(now=11.0)}
    assert rows[("bigdl_train_loss", (("job", "r1"),))] == 0.5
    assert rows[("bigdl_train_validation_accuracy", (("job", "r1"),))] == pytest.approx(0.7)
    assert rows[("bigdl_train_samples_per_second", (("job", "r1"),))] == 2000.0
    assert rows[("bigdl_train_checkpoints_total", (("job", "r1"),))] == 2
    assert rows[("bigdl_ingest_rows_total", (("job", "i1"), ("status", "rejected")))] == 2
    assert rows[("bigdl_ingest_tasks_done_total", (("job", "i1"), ("stage", "read")))] == 1
    assert rows[("bigdl_train_jobs", (("state", "running"),))] == 1
    assert ("bigdl_train_validation_r2", (("job", "r1"),)) not in rows


def test_two_schedulers_in_one_process_sum_their_job_counts(monkeypatch):
    """prometheus_client's registry is per process: each series must come once, summed over the boards."""
    import weakref

    from bigdl.cluster import _dashboard

    boards = weakref.WeakSet()
    monkeypatch.setattr(_dashboard, "_boards", boards)
    first, second = JobBoard(), JobBoard()
    for board, job in ((first, "a"), (second, "b")):
        board.on_event(TRAIN_TOPIC, {"kind": "started", "job": job, "run": job, "epochs": 1}, now=1.0)
        board.on_event(TRAIN_TOPIC, {"kind": "failed", "job": job, "run": job, "error": "TrainingError: x"}, now=2.0)
        boards.add(board)
    samples = [(metric.name, sample.labels, sample.value) for metric in _dashboard._Collector().collect()
               for sample in metric.samples if metric.name == "bigdl_train_jobs"]
    failed = [value for _, labels, value in samples if labels == {"state": "failed"}]
    assert failed == [2.0]


def test_json_is_strict_for_browsers():
    """An undefined R2 (NaN) must not produce the invalid JSON token NaN."""
    text = to_json({"r2": float("nan"), "loss": [1.5, float("inf")], "n": np.int64(3), "x": np.float32(0.5)})
    assert json.loads(text) == {"r2": None, "loss": [1.5, None], "n": 3, "x": 0.5}


def test_board_keeps_a_bounded_number_of_jobs_and_points():
    board = JobBoard(max_jobs=3, max_batch_points=10)
    for index in range(5):
        board.on_event(INGEST_TOPIC, {"kind": "finished", "job": f"done{index}"})
    board.on_event(INGEST_TOPIC, {"kind": "started", "job": "live"})
    assert list(board.jobs) == ["done3", "done4", "live"]
    for index in range(25):
        board.on_event(TRAIN_TOPIC, {"kind": "batch", "run": "r", "epoch": 1, "fraction": index / 25,
                                     "batch_loss": float(index)})
    points = board.jobs["r"]["batches"]
    assert len(points) <= 10 and points[0] == [0.0, 0.0] and points == sorted(points)
    board.on_event("other-topic", {"kind": "epoch", "run": "x"})
    board.on_event(TRAIN_TOPIC, "not a dict")
    assert "x" not in board.jobs


def test_batch_loss_reporter_smooths_and_throttles():
    events = []
    reporter = BatchLossReporter(events.append, train_samples=1000, interval=3600.0, smoothing=0.5)
    reporter.start_epoch(0)
    for loss in (4.0, 2.0, 1.0):
        reporter(loss, 100)
    # the first batch of the epoch is reported, then nothing within the interval
    assert len(events) == 1
    assert events[0]["batch_loss"] == 4.0  # bias-corrected: the first average is the first loss
    assert events[0]["fraction"] == pytest.approx(0.1) and events[0]["epoch"] == 1
    # EMA 0.5: a = 2.0, 2.0, 1.5 -> 2.0/0.5, 2.0/0.75, 1.5/0.875
    assert reporter.smoothed_loss == pytest.approx(1.5 / 0.875)
    every = []
    reporter = BatchLossReporter(every.append, train_samples=400, world_size=2, interval=0.0)
    for _ in range(2):
        reporter(1.0, 100)
    assert [event["fraction"] for event in every] == [0.5, 1.0]


class _Recorder:
    """Stands in for a Client: keeps what log_event would send."""

    def __init__(self):
        self.events = []

    def log_event(self, topic, message):
        self.events.append((topic, message))


def test_ingest_job_counts_by_the_result_convention(tmp_path):
    (tmp_path / "X").mkdir()
    (tmp_path / "X" / "c0").write_bytes(b"x" * 100)
    (tmp_path / "_staging").mkdir()
    (tmp_path / "_staging" / "block.arrow").write_bytes(b"y" * 1000)  # staging is not the store
    client = _Recorder()
    job = IngestJob(tmp_path / "final.zarr", tmp_path)
    assert job.stage("bigdl-ingest-read", 2, None) is None  # Dask's local threads: no dashboard
    read = job.stage("bigdl-ingest-read", 2, client)
    read({"n_records": 7, "n_valid": 6, "n_rejected": 1})
    read({"n_files": 4, "n_valid": 4, "n_rejected": 0})
    write = job.stage("bigdl-ingest-write", 2, client)
    write(np.array([5, 3, 1]))
    write(np.array([1, 0, 0]))
    job.stage("bigdl-ingest-rejects", 1, client)(1)  # a count of rows already counted: ignored
    job.finish()
    topics = {topic for topic, _ in client.events}
    kinds = [message["kind"] for _, message in client.events]
    assert topics == {INGEST_TOPIC} and kinds[0] == "started" and kinds[-1] == "finished"
    final = client.events[-1][1]
    assert final["rows"] == {"read": 11, "stored": 10, "rejected": 1}
    assert final["bytes_written"] == 100
    assert final["stages"] == {"read": {"done": 2, "total": 2}, "write": {"done": 2, "total": 2},
                               "rejects": {"done": 1, "total": 1}}
    assert len({message["job"] for _, message in client.events}) == 1


# ---------------------------------------------------------------- a real cluster and a real browser
@pytest.fixture(scope="module")
def dashboard_client():
    """A LocalCluster of 2 worker processes with the bigdl page (start_local registers it).

    start_local makes it the default client; the autouse ``_no_default_client``
    fixture undoes that before each test, which then uses it explicitly.
    """
    client = bigdl.cluster.start_local(n_workers=2, threads_per_worker=1, memory_limit="1GiB",
                                       dashboard_address=":0", quiet=True)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile; skipped only where Chromium is not installed (never in CI)."""
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: dev.sh setup installs Debian's chromium package.")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; dev.sh setup does it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def _http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def _prometheus(url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(_http(url)) for sample in family.samples}


@pytest.fixture(scope="module")
def finished_jobs(dashboard_client, sources, tmp_path_factory):
    """One ingest and one 3-epoch training run, both on the cluster's workers."""
    from support import BLOCKSIZE, DROP, ROWS_PER_CHUNK, TARGET

    from bigdl.models import MLP
    from bigdl.train import Trainer

    root = tmp_path_factory.mktemp("dashboard")
    source, extra = sources["csv"]
    ds = bigdl.ingest.tabular(source, store=root / "table.zarr", target=TARGET, drop=list(DROP),
                              rows_per_chunk=ROWS_PER_CHUNK, blocksize=BLOCKSIZE, validation=0.2, progress=False,
                              client=dashboard_client, **extra)
    trainer = Trainer(MLP(ds.n_features, [16], ds.n_classes), epochs=EPOCHS, batch_size=64, seed=0,
                      checkpoint_dir=str(root / "checkpoints"), progress=False)
    with dashboard_client.as_current():
        trainer.fit(ds)
    return ds, trainer


def test_page_shows_live_curves_and_figures_equal_to_the_history(dashboard_client, finished_jobs, browser,
                                                                  tmp_path):
    ds, trainer = finished_jobs
    history = trainer.history
    page = browser.new_page()
    page.goto(dashboard_page_link(dashboard_client))
    card = page.locator("section.job.train[data-state=finished]")
    card.locator("tr.epoch-row").nth(EPOCHS - 1).wait_for(timeout=30_000)
    assert card.count() == 1
    assert page.locator("#empty").is_hidden()

    # the table: one row per epoch, exact values in data-value, 4 decimals on screen
    rows = card.locator("tr.epoch-row")
    assert rows.count() == EPOCHS
    for index, entry in enumerate(history):
        row = rows.nth(index)
        assert int(row.get_attribute("data-epoch")) == entry["epoch"]
        for name in ("train_loss", "val_loss", "val_accuracy", "samples_per_second", "seconds"):
            cell = row.locator(f"td.{name}")
            assert float(cell.get_attribute("data-value")) == entry[name], name
        for name in ("train_loss", "val_loss", "val_accuracy"):
            assert float(row.locator(f"td.{name}").inner_text()) == pytest.approx(entry[name], abs=6e-5)
        assert row.locator("td.checkpoint").get_attribute("title") == entry["checkpoint"]

    # the loss curve: one marker per finished epoch for train and validation, the smoothed batch curve
    for series, key in (("train", "train_loss"), ("validation", "val_loss"), ("metric", "val_accuracy")):
        points = card.locator(f"svg circle.point.{series}")
        assert points.count() == EPOCHS, series
        values = [float(points.nth(index).get_attribute("data-value")) for index in range(EPOCHS)]
        assert values == [entry[key] for entry in history], series
    assert card.locator("svg polyline.curve.batch").count() == 1

    # the figures row: last epoch, worker, samples/s, and the ingest job's rows and bytes
    figure = lambda name: card.locator(f".figure[data-name={name}]")  # noqa: E731
    assert figure("epoch").inner_text().endswith(f"{EPOCHS} / {EPOCHS}")
    assert float(figure("samples_per_second").get_attribute("data-value")) == history[-1]["samples_per_second"]
    assert history[-1]["worker"] in card.locator("header").inner_text()
    assert f"epoch {EPOCHS} at" in figure("checkpoint").inner_text()

    ingest = page.locator("section.job.ingest[data-state=finished]")
    assert ingest.count() == 1
    rows_attribute = ds.row_counts
    for status in ("read", "stored", "rejected"):
        shown = ingest.locator(f".figure[data-name={status}]")
        assert int(shown.get_attribute("data-value")) == rows_attribute[status], status
        assert shown.inner_text().endswith(f"{rows_attribute[status]:,}")
    assert int(ingest.locator(".figure[data-name=bytes_written]").get_attribute("data-value")) \
        == ds.size_on_disk()
    assert ingest.locator(".stage[data-stage=write]").inner_text().endswith("tasks")

    path = Path(os.environ.get("BIGDL_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    page.close()


def test_page_updates_without_reloading(dashboard_client, finished_jobs, browser):
    """A job that starts after the page was opened appears on it, with no reload."""
    page = browser.new_page()
    page.goto(dashboard_page_link(dashboard_client))
    page.locator("section.job").first.wait_for(timeout=30_000)
    before = page.locator("section.job").count()
    page.evaluate("window.__same_document = true")
    dashboard_client.log_event(INGEST_TOPIC, {"kind": "progress", "job": "live-update", "store": "/late.zarr",
                                              "rows": {"read": 12345, "stored": 0, "rejected": 0},
                                              "bytes_written": 0, "stages": {"read": {"done": 1, "total": 2}}})
    page.locator("#job-live-update .figure[data-name=read]").wait_for(timeout=30_000)
    assert page.evaluate("window.__same_document") is True
    assert page.locator("section.job").count() == before + 1
    assert page.locator("#job-live-update .figure[data-name=read]").inner_text().endswith("12,345")
    page.close()


def test_metrics_endpoint_has_the_bigdl_series(dashboard_client, finished_jobs):
    ds, trainer = finished_jobs
    last = trainer.history[-1]
    base = dashboard_page_link(dashboard_client).rsplit("/", 1)[0]
    samples = _prometheus(base + "/metrics")
    snapshot = json.loads(_http(base + f"/{PAGE}/jobs.json"))
    (train_job,) = [job["id"] for job in snapshot["jobs"] if job["type"] == "train"]
    (ingest_job,) = [job["id"] for job in snapshot["jobs"] if job["type"] == "ingest"
                     and job["store"] == str(Path(ds.path))]
    job = (("job", train_job),)
    assert samples[("bigdl_train_loss", job)] == last["train_loss"]
    assert samples[("bigdl_train_validation_loss", job)] == last["val_loss"]
    assert samples[("bigdl_train_validation_accuracy", job)] == last["val_accuracy"]
    assert samples[("bigdl_train_samples_per_second", job)] == last["samples_per_second"]
    assert samples[("bigdl_train_epoch", job)] == EPOCHS
    assert samples[("bigdl_train_checkpoints_total", job)] == EPOCHS
    assert math.isfinite(samples[("bigdl_train_batch_loss", job)])
    rows = ds.row_counts
    for status in ("read", "stored", "rejected"):
        assert samples[("bigdl_ingest_rows_total", (("job", ingest_job), ("status", status)))] == rows[status]
    assert samples[("bigdl_ingest_bytes_written_total", (("job", ingest_job),))] == ds.size_on_disk()
    # the JSON endpoint has the same figures
    figures = json.loads(_http(base + f"/{PAGE}/metrics.json"))["metrics"]
    as_json = {(row["name"], tuple(sorted(row["labels"].items()))): row["value"] for row in figures}
    for key in [("bigdl_train_loss", job), ("bigdl_train_samples_per_second", job),
                ("bigdl_ingest_rows_total", (("job", ingest_job), ("status", "stored")))]:
        assert as_json[key] == samples[key]


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("ant", "bee"):
        (root / label).mkdir(parents=True)
        for index in range(5):
            Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(root / label / f"{index}.png")
    (root / "bee" / "broken.png").write_bytes(b"not a png")
    return root


def _series_files(root: Path) -> list[str]:
    import pandas as pd

    root.mkdir(parents=True)
    days = pd.date_range("2022-01-01", periods=60, freq="D")
    frame = pd.concat([pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "sid": name,
                                     "load": np.arange(60, dtype=float) * (index + 1)})
                       for index, name in enumerate(("a", "b"))])
    frame = frame.drop(index=frame.index[[10, 11]])  # a gap, filled at ingest
    frame = pd.concat([frame, frame.iloc[[3]]])  # a duplicate time step, rejected after sorting
    frame.to_csv(root / "series.csv", index=False)
    with open(root / "series.csv", "a") as handle:
        handle.write("2022-13-01,a,1.0\n")  # not a date: rejected while reading
    return [str(root / "series.csv")]


@pytest.mark.parametrize("kind", ["images", "sequences"])
def test_every_ingest_kind_reports_its_rows(dashboard_client, tmp_path, kind):
    """Ingest progress comes from the shared task runner, so each ingest kind appears with its true counts."""
    if kind == "images":
        ds = bigdl.ingest.images(_image_folder(tmp_path / "pictures"), store=tmp_path / "store.zarr", size=(4, 4),
                                 rows_per_chunk=3, progress=False, client=dashboard_client)
    else:
        ds = bigdl.ingest.sequences(_series_files(tmp_path / "series"), store=tmp_path / "store.zarr", time="day",
                                    series="sid", values=["load"], target="load", window=4, rows_per_chunk=25,
                                    progress=False, client=dashboard_client)
    link = dashboard_page_link(dashboard_client)
    (job,) = [job for job in json.loads(_http(link + "/jobs.json"))["jobs"]
              if job["type"] == "ingest" and job["store"] == str(Path(ds.path))]
    expected = ds.row_counts
    assert job["state"] == "finished" and job["rows"] == {key: expected[key] for key in ("read", "stored", "rejected")}
    assert expected["rejected"] >= 1
    assert job["bytes_written"] == ds.size_on_disk()
    assert job["stages"]["write"]["done"] == job["stages"]["write"]["total"] == ds.n_chunks


def test_a_failed_training_job_shows_why(dashboard_client, finished_jobs, tmp_path):
    from bigdl.models import MLP
    from bigdl.train import Trainer

    ds, _ = finished_jobs
    blocker = tmp_path / "a-file"
    blocker.write_text("checkpoints cannot go under a file")
    trainer = Trainer(MLP(ds.n_features, [4], ds.n_classes), epochs=2, batch_size=256, progress=False,
                      checkpoint_dir=str(blocker / "checkpoints"))
    with dashboard_client.as_current(), pytest.raises(OSError):
        trainer.fit(ds)
    base = dashboard_page_link(dashboard_client).rsplit("/", 1)[0]
    failed = [job for job in json.loads(_http(base + f"/{PAGE}/jobs.json"))["jobs"] if job["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["type"] == "train"
    assert "Error" in failed[0]["error"] and "a-file" in failed[0]["error"]
    assert failed[0]["eta"] is None
    samples = _prometheus(base + "/metrics")
    # The job's own series (other schedulers of this test process add to the per-state counts).
    info = [key for key in samples if key[0] == "bigdl_train_info" and ("job", failed[0]["id"]) in key[1]]
    assert len(info) == 1 and ("state", "failed") in info[0][1]
    assert samples[("bigdl_train_jobs", (("state", "failed"),))] >= 1
    board = json.loads(_http(base + f"/{PAGE}/metrics.json"))["metrics"]
    counts = {row["labels"]["state"]: row["value"] for row in board if row["name"] == "bigdl_train_jobs"}
    assert counts["failed"] == 1  # this scheduler's board alone


def test_a_failed_ingest_shows_counts_and_reasons_but_no_row_content(dashboard_client, tmp_path):
    """Finding 19: the page and jobs.json showed a rejected row's text ('SSN-123-45-6789,0,1')."""
    import bigdl
    from bigdl.errors import EmptyResultError

    (tmp_path / "secret.csv").write_text("a,b,target\nSSN-123-45-6789,0,1,x\nSSN-987-65-4321,1,0,y\n")
    with dashboard_client.as_current(), pytest.raises(EmptyResultError, match="SSN-123") as caught:
        bigdl.ingest.tabular(tmp_path / "secret.csv", target="target", store=tmp_path / "s.zarr", progress=False)
    assert "SSN" not in caught.value.public and "2 rows or items were rejected" in caught.value.public
    base = dashboard_page_link(dashboard_client).rsplit("/", 1)[0]
    jobs = json.loads(_http(base + f"/{PAGE}/jobs.json"))["jobs"]
    failed = [job for job in jobs if job["state"] == "failed" and job.get("store", "").endswith("s.zarr")]
    assert len(failed) == 1
    assert failed[0]["error"].startswith("EmptyResultError: All 2 rows or items were rejected")
    everything = _http(base + f"/{PAGE}/jobs.json") + _http(base + "/metrics") + _http(base + f"/{PAGE}")
    assert "SSN" not in everything and "123-45" not in everything


def test_public_messages_hold_no_data_values():
    from bigdl.errors import EmptyResultError, SchemaError, TrainingError, public_message

    parser = ValueError("could not convert 'SSN-123-45-6789' to float")
    assert public_message(parser).startswith("ValueError: (the message is not shown here")
    assert "SSN" not in public_message(SchemaError("column 'a' holds 'SSN-123-45-6789'"))
    assert public_message(TrainingError("lost tcp://127.0.0.1:1 (rank 1)")) == \
        "TrainingError: lost tcp://127.0.0.1:1 (rank 1)"
    assert public_message(EmptyResultError("row 'x,y'", public="2 rows rejected")) == "EmptyResultError: 2 rows rejected"
    missing = FileNotFoundError(2, "No such file or directory", "/data/in.csv")
    assert public_message(missing) == "FileNotFoundError: No such file or directory: /data/in.csv"


def test_registering_twice_keeps_one_page_and_the_jobs(dashboard_client, finished_jobs):
    link = dashboard_page_link(dashboard_client)
    before = json.loads(_http(link + "/jobs.json"))["jobs"]
    assert register_dashboard(dashboard_client) == link
    assert register_dashboard(dashboard_client) == link

    def inspect(dask_scheduler):
        from bigdl.cluster import _distributed_api as api

        return {"plugins": [name for name in dask_scheduler.plugins if name == PLUGIN_NAME],
                "routes": [pattern for pattern in api.route_patterns(dask_scheduler) if "bigdl" in pattern],
                "nav": api.navigation_pages(dask_scheduler).count(PAGE)}

    state = dashboard_client.run_on_scheduler(inspect)
    assert state["plugins"] == [PLUGIN_NAME]
    assert sorted(state["routes"]) == ["/bigdl/?$", "/bigdl/jobs.json$", "/bigdl/metrics.json$"]
    assert state["nav"] == 1
    assert [job["id"] for job in json.loads(_http(link + "/jobs.json"))["jobs"]] == [job["id"] for job in before]
    status = _http(link.rsplit("/", 1)[0] + "/status")
    assert status.count(f'href="{PAGE}"') == 1  # the link in the dashboard's navigation bar


def test_empty_cluster_page_says_so(browser):
    """A scheduler that has seen no bigdl job shows a clear empty state, not a blank page."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        link = register_dashboard(client)
        assert link == client.dashboard_link.replace("/status", "/bigdl")
        assert json.loads(_http(link + "/jobs.json"))["jobs"] == []
        page = browser.new_page()
        page.goto(link + "/")  # the trailing slash redirects: the page's relative links keep working
        page.wait_for_function("document.getElementById('status').textContent.startsWith('updated')",
                               timeout=30_000)
        assert page.url == link
        assert page.locator("#empty").is_visible()
        assert "No bigdl jobs yet" in page.locator("#empty").inner_text()
        assert page.locator("section.job").count() == 0
        assert page.locator("nav a[href=status]").count() == 1
        page.close()
        assert _distributed_api.route_patterns(cluster.scheduler).count("/bigdl/?$") == 1


def test_trainer_progress_bar_shows_loss_and_samples_per_second(finished_jobs, capsys):
    from bigdl.models import MLP
    from bigdl.train import Trainer

    ds, _ = finished_jobs
    Trainer(MLP(ds.n_features, [4], ds.n_classes), epochs=1, batch_size=256, on_cluster=False,
            progress=True).fit(ds)
    err = capsys.readouterr().err
    assert "loss=" in err and "samples/s=" in err and "val_accuracy=" in err


def test_a_scheduler_preload_serves_the_page_from_the_start():
    """``dask scheduler --preload bigdl.cluster._dashboard``: the page exists before any client registers it."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0",
                      scheduler_kwargs={"preload": ["bigdl.cluster._dashboard"]}) as cluster:
        assert PLUGIN_NAME in cluster.scheduler.plugins
        link = cluster.dashboard_link.replace("/status", "/bigdl")
        assert json.loads(_http(link + "/jobs.json"))["jobs"] == []


def test_a_scheduler_that_cannot_take_the_plugin_gives_a_warning_not_an_error():
    class RemoteWithoutBigdl:
        dashboard_link = "http://scheduler:8787/status"

        def register_plugin(self, plugin, name=None):
            raise ModuleNotFoundError("No module named 'bigdl'")

    with pytest.warns(RuntimeWarning, match="No module named 'bigdl'.*the scheduler must be able to import bigdl"):
        assert register_dashboard(RemoteWithoutBigdl()) is None
    assert dashboard_page_link(RemoteWithoutBigdl()) == "http://scheduler:8787/bigdl"
