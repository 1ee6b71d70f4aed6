"""Take docs/dashboard.png: the bigdl page during a real run, in headless Chromium.

A local cluster ingests generated CSV files (with malformed rows planted),
trains one MLP to the end, then starts a second one and photographs the page
while it runs (live batch loss, ETA).  Needs Debian's chromium and the test
extras (playwright)::

    .venv/bin/python docs/dashboard_screenshot.py [docs/dashboard.png]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import bigdl
from bigdl.models import MLP
from bigdl.train import Trainer

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


def main(output: str = "docs/dashboard.png") -> None:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bigdl-dashboard-"))
    client = bigdl.cluster.start_local(n_workers=2, memory_limit="2GiB", dashboard_address=":0")
    files = bigdl.datasets.write_tabular_csv(work / "csv", 300_000, n_files=3, n_numeric=16, bad_rows=25,
                                             seed=1)
    ds = bigdl.ingest.tabular([str(path) for path in files], target="target", store=work / "flights.zarr",
                              drop=["id"], validation=0.1, test=0.2)
    Trainer(MLP(ds.n_features, [64, 64], ds.n_classes), epochs=6, batch_size=512, seed=0,
            checkpoint_dir=str(work / "checkpoints-a")).fit(ds)
    second = Trainer(MLP(ds.n_features, [128, 128], ds.n_classes), optimizer="sgd", lr=0.05, epochs=12,
                     batch_size=256, seed=1, checkpoint_dir=str(work / "checkpoints-b"), progress=False)
    running = threading.Thread(target=second.fit, args=(ds,), daemon=True)
    running.start()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(work / "profile"), executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(client.dashboard_link.replace("/status", "/bigdl"))
        # the running job has finished three epochs and is into the fourth
        page.wait_for_function(
            "document.querySelectorAll('section.job.train[data-state=running] tr.epoch-row').length >= 3",
            timeout=600_000)
        time.sleep(2.5)
        page.screenshot(path=output, full_page=True)
        context.close()
    running.join()
    client.close()
    client.cluster.close()
    print(f"saved {output} ({Path(output).stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(*sys.argv[1:])
