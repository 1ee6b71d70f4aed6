"""Object storage vs local disk: ingest and loader throughput through a local S3 server.

The S3 side runs against moto's S3 server on 127.0.0.1 (a ``ThreadedMotoServer``
equivalent, started here), reached through s3fs with the standard environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``) that the workers of the local cluster inherit.  Sides at each
size, alternating (BENCHMARKS.md), page cache warm (the CSV files, the local
store and moto's in-memory objects are all in RAM after the first repeat):

* ``ingest-disk``: ``bigdl.ingest.tabular`` from local CSV files to a local store;
* ``ingest-s3``: the same files, uploaded to the bucket, to a store in the bucket;
* ``loader-disk``: one shuffled ``ChunkLoader`` epoch over the local store (this process);
* ``loader-s3``: the same over the store in the bucket.

The server counts every request it answers (a WSGI wrapper around moto's
application, so requests from every worker process are seen): requests per
chunk object read (all requests of the epoch, HEADs and listings included,
over the distinct chunk keys fetched) and bytes read
per byte stored (bytes of GET responses over the store's bytes in the bucket).

What changes on a real object store: each request costs a round trip (about
10-30 ms to S3 in the same region, against well under 1 ms here), so the
loader needs several chunk requests in flight to hide it, roughly
``chunk read rate x request latency`` requests (about 4-8 for 8-64 MB chunks
at a few hundred MB/s); throughput per request is also capped (tens of MB/s
per connection), which the same concurrency covers.  This server measures the
request counts and bytes, which do not depend on the network, and the
overheads of the S3 code path; it does not measure latency.

Until bigdl accepts ``s3://`` paths (issue 16, items 1-5), the S3 sides fail
with bigdl's refusal, which the table reports, and the disk sides still run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
from collections import Counter
from pathlib import Path

from benchmarks._harness import (
    Side,
    describe_machine,
    format_bytes,
    format_ratio,
    format_table,
    log,
    machine_info,
    measure_alternating,
    summarize,
    write_results,
)

DEFAULT_ROWS = "1000000,4000000"  # about 190 MB and 760 MB of CSV
DEFAULT_WORKDIR = Path("work/benchmarks/object_storage")
BUCKET = "bigdl-benchmark"
# moto accepts any credentials; these only keep botocore from looking for real ones.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark",
                     "AWS_REGION": "us-east-1"}


class CountingS3Server:
    """moto's S3 server on 127.0.0.1 (a free port) that counts the requests it answers.

    Counts are kept per HTTP method, with the bytes of GET response bodies,
    the bytes of PUT request bodies and the distinct keys fetched by GET.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: Counter = Counter()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.keys_read: set[str] = set()
        self._server = None
        self._thread = None

    def start(self) -> str:
        """Start serving; returns the endpoint URL."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args, **kwargs):  # one line per request would bury the progress lines
                pass

        self._app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", 0, self._counting_app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving (moto's objects are dropped with the process)."""
        if self._server is not None:
            self._server.shutdown()
            self._thread.join()

    def snapshot(self) -> dict:
        """The counts so far (copies)."""
        with self.lock:
            return {"requests": dict(self.requests), "bytes_sent": self.bytes_sent,
                    "bytes_received": self.bytes_received, "keys_read": set(self.keys_read)}

    def reset_keys(self) -> None:
        with self.lock:
            self.keys_read.clear()

    def _counting_app(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        with self.lock:
            self.requests[method] += 1
            if method == "PUT":
                self.bytes_received += int(environ.get("CONTENT_LENGTH") or 0)
            if method == "GET":
                self.keys_read.add(environ.get("PATH_INFO", ""))
        body = self._app(environ, start_response)
        return self._counted(body) if method == "GET" else body

    def _counted(self, body):
        try:
            for piece in body:
                with self.lock:
                    self.bytes_sent += len(piece)
                yield piece
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def delta(before: dict, after: dict) -> dict:
    """Requests and bytes between two :meth:`CountingS3Server.snapshot` calls."""
    methods = set(before["requests"]) | set(after["requests"])
    return {"requests": {method: after["requests"].get(method, 0) - before["requests"].get(method, 0)
                         for method in sorted(methods)},
            "bytes_sent": after["bytes_sent"] - before["bytes_sent"],
            "bytes_received": after["bytes_received"] - before["bytes_received"]}


def make_inputs(workdir: Path, rows: int, filesystem) -> tuple[list[str], list[str], int]:
    """The quickstart's CSV files at ``rows`` rows, locally and uploaded to the bucket."""
    import bigdl

    files = bigdl.datasets.write_tabular_csv(workdir / f"csv-{rows}", rows, n_files=4, bad_rows=10,
                                            missing=0.01, seed=0)
    urls = []
    for path in files:
        key = f"{BUCKET}/csv-{rows}/{path.name}"
        if not filesystem.exists(key) or filesystem.size(key) != path.stat().st_size:
            filesystem.put_file(str(path), key)
        urls.append(f"s3://{key}")
    return [str(path) for path in files], urls, sum(path.stat().st_size for path in files)


def _epoch(store: str, batch_size: int) -> dict:
    import bigdl
    from bigdl.loaders.torch import ChunkLoader

    ds = bigdl.open(store)
    samples = 0
    for X, _ in ChunkLoader(ds, "train", batch_size=batch_size, shuffle=True, seed=0):
        samples += len(X)
    return {"samples": samples, "bytes_uncompressed": ds.info().to_dict()["bytes_uncompressed"]}


def run_size(args, rows: int, server: CountingS3Server, filesystem, client) -> dict:
    import bigdl

    workdir = Path(args.workdir)
    local_csv, s3_csv, csv_bytes = make_inputs(workdir, rows, filesystem)
    local_store = str(workdir / f"store-{rows}.zarr")
    s3_store = f"s3://{BUCKET}/store-{rows}.zarr"
    options = dict(target="target", categorical=["carrier"], drop=["id"], validation=0.1, test=0.2, seed=0,
                   overwrite=True, progress=False)

    def counted(function):
        def run():
            before = server.snapshot()
            server.reset_keys()
            info = function() or {}
            after = server.snapshot()
            info["s3"] = delta(before, after)
            info["chunk_keys_read"] = sum(1 for key in after["keys_read"] if "/c/" in key or "/c." in key)
            return info
        return run

    def ingest(sources, store):
        def run():
            ds = bigdl.ingest.tabular(sources, store=store, **options)
            return {"rows": ds.n_samples}
        return run

    def existing(store):
        def setup():
            bigdl.open(store)  # the loader side needs its ingest side's store
        return setup

    sides = [Side("ingest-disk", counted(ingest(local_csv, local_store))),
             Side("ingest-s3", counted(ingest(s3_csv, s3_store))),
             Side("loader-disk", counted(lambda: _epoch(local_store, args.batch_size)), setup=existing(local_store)),
             Side("loader-s3", counted(lambda: _epoch(s3_store, args.batch_size)), setup=existing(s3_store))]
    runs = measure_alternating(sides, args.repeats, client=client, label=f"{rows:,} rows: ")
    summary = {name: summarize(items) for name, items in runs.items()}
    stored = filesystem.du(f"{BUCKET}/store-{rows}.zarr") if filesystem.exists(f"{BUCKET}/store-{rows}.zarr") else 0

    table = []
    for name, item in summary.items():
        ok = [run for run in runs[name] if run.error is None]
        last = ok[-1].info if ok else {}
        requests = last.get("s3", {}).get("requests", {})
        total_requests = sum(requests.values())  # s3fs sends a HEAD before many GETs: both cost a round trip
        amount = csv_bytes if name.startswith("ingest") else last.get("bytes_uncompressed", float("nan"))
        per_chunk = (total_requests / last["chunk_keys_read"] if name == "loader-s3" and last.get("chunk_keys_read")
                     else None)
        read_ratio = (last["s3"]["bytes_sent"] / stored) if name == "loader-s3" and stored else None
        rate = item.rate(amount)
        table.append([name, f"{item.median:.2f}" if item.n_ok else "-", item.spread(),
                      f"{rate / 1e6:,.0f}" if rate == rate else "-",
                      format_bytes(item.peak_rss.get("client", 0)), format_bytes(item.peak_rss.get("workers", 0)),
                      " ".join(f"{method} {count}" for method, count in requests.items() if count) or "-",
                      f"{per_chunk:.2f}" if per_chunk is not None else "-",
                      f"{read_ratio:.2f}" if read_ratio is not None else "-",
                      item.errors[0][:120] if item.errors else ""])
    ratios = {f"{kind}: s3 / disk seconds": summary[f"{kind}-s3"].median / summary[f"{kind}-disk"].median
              for kind in ("ingest", "loader")}
    print()
    print(format_table(["side", "s (median)", "spread s", "MB/s (CSV in / X+y read)", "peak RSS client",
                        "peak RSS workers (sum)", "S3 requests (last run)", "requests per chunk read",
                        "bytes read / bytes stored", "error"], table,
                       title=f"Object storage (moto S3 on 127.0.0.1) vs local disk, {rows:,} rows, "
                             f"{format_bytes(csv_bytes)} of CSV"))
    print()
    print(format_table(["ratio", "measured"], [[name, format_ratio(value)] for name, value in ratios.items()],
                       title="Ratios (same run)"))
    return {"rows": rows, "csv_bytes": csv_bytes, "store_bytes_in_bucket": stored, "summary": summary,
            "runs": runs, "ratios": ratios}


def run(args) -> int:
    import boto3
    import s3fs

    import bigdl

    info = machine_info(["bigdl", "dask", "distributed", "zarr", "s3fs", "moto", "botocore"])
    sizes = [50_000] if args.quick else [int(size) for size in str(args.rows).split(",")]
    if args.quick:
        args.repeats = 1
    server = CountingS3Server()
    endpoint = server.start()
    log(f"S3 server (moto) at {endpoint}")
    # Set before the cluster starts, so its worker processes inherit them.
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **LOCAL_CREDENTIALS})
    boto3.client("s3", endpoint_url=endpoint, region_name=LOCAL_CREDENTIALS["AWS_REGION"]).create_bucket(
        Bucket=BUCKET)
    filesystem = s3fs.S3FileSystem(skip_instance_cache=True)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    client = bigdl.cluster.start_local(n_workers=args.workers, memory_limit=args.memory_limit, quiet=True,
                                       dashboard_address=None)
    results = []
    try:
        for rows in sizes:
            results.append(run_size(args, rows, server, filesystem, client))
    finally:
        client.close()
        cluster = getattr(client, "cluster", None)
        if cluster is not None:
            cluster.close()
        server.stop()
        for rows in sizes:  # this benchmark's own local stores only
            shutil.rmtree(Path(args.workdir) / f"store-{rows}.zarr", ignore_errors=True)
    print()
    print(f"Machine: {describe_machine(info)}; warm page cache; {args.repeats} alternating runs per side")
    path = write_results("object-storage", {"machine": info, "sizes": results})
    log(f"results written to {path}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``object_storage`` subcommand (S3 via a local moto server vs local disk)."""
    parser = subparsers.add_parser("object_storage", help="ingest and loader: a local S3 server (moto) vs disk",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="CSV rows, several sizes separated by commas")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GiB")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--quick", action="store_true", help="50k rows, one run per side (smoke test)")
    parser.set_defaults(func=run)
    return parser
