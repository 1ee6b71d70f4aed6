"""The ``bigdl`` command: ingest data into a store and inspect stores.

Every error bigdl raises on purpose is printed as one line saying what is
wrong and how to fix it (exit status 2), and so is an operating-system error
(a store that cannot be written, an input that cannot be read: its cause and
path); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from bigdl.errors import BigdlError

EPILOG_INGEST = """\
examples:
  bigdl ingest "data/*.csv" --target target --store work/flights.zarr \\
      --categorical carrier --drop id --validation 0.1 --test 0.2
  bigdl ingest data.parquet --target price --task regression --store work/prices.zarr
  bigdl ingest sqlite:///shop.db --table orders --target returned --store work/orders.zarr
  bigdl ingest logs.jsonl --target label --store work/logs.zarr --scheduler tcp://scheduler:8786
  bigdl ingest trips.csv --target fare --store work/trips.zarr --datetime pickup --datetime dropoff_ts=ms \
      --datetime-parts year,month,day_of_week,hour --categorical-encoding zone=target --max-categories all

Rows that cannot be used go to STORE/rejects/*.parquet with the file, row,
line, raw text and reason; `bigdl info STORE` shows how many and why.
"""

EPILOG_INFO = """\
example:
  bigdl info work/flights.zarr
  bigdl info work/flights.zarr --json
  bigdl info work/flights.zarr --rejects 20     # show the first 20 rejected rows
"""


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def _max_categories(text: str) -> int | None:
    if text.strip().lower() in ("all", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None


def _column_options(items: list[str] | None, option: str, value_required: bool = False):
    """``COL`` / ``COL=VALUE`` items of a repeatable option -> a list of names, or a dict when any has a value."""
    from bigdl.errors import SchemaError

    if not items:
        return None
    pairs = []
    for item in items:
        for part in item.split(","):
            name, sep, value = part.strip().partition("=")
            if not name or (sep and not value) or (value_required and not sep):
                form = "COL=VALUE" if value_required else "COL or COL=VALUE"
                raise SchemaError(f"{option} takes {form} (comma-separated or repeated); got {item!r}.")
            pairs.append((name, value if sep else None))
    if all(value is None for _, value in pairs):
        return [name for name, _ in pairs]
    return dict(pairs)


def build_parser() -> argparse.ArgumentParser:
    """The ``bigdl`` command's argument parser: ``ingest``, ``info``, ``verify`` and ``cluster``.

    Returns
    -------
    argparse.ArgumentParser
    """
    import bigdl

    parser = argparse.ArgumentParser(
        prog="bigdl",
        description="Deep learning and analytics on data larger than memory (Dask + Zarr + PyTorch).",
    )
    parser.add_argument("--version", action="version", version=f"bigdl {bigdl.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    ingest = commands.add_parser(
        "ingest", help="read CSV / JSON lines / Parquet / a SQL table into a Zarr store",
        description="Read tabular data with Dask, validate it, fit preprocessing (impute, scale, one-hot) "
                    "out of core and write a Zarr store with train/validation/test splits.",
        epilog=EPILOG_INGEST, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_argument("source", nargs="+",
                        help="files, globs (quote them), a folder, fsspec URLs (s3://bucket/data/*.csv), "
                             "or a SQLAlchemy URL")
    ingest.add_argument("--store", required=True,
                        help="output store directory or URL, e.g. work/data.zarr or s3://bucket/data.zarr "
                             "(credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    ingest.add_argument("--target", help="column to predict (omit for unlabelled data)")
    ingest.add_argument("--table", help="table name when SOURCE is a database URL")
    ingest.add_argument("--format", choices=["csv", "jsonl", "parquet", "sql"], help="input format (default: from names)")
    ingest.add_argument("--categorical", metavar="COLS", help="comma-separated columns to one-hot encode")
    ingest.add_argument("--numeric", metavar="COLS", help="comma-separated columns to treat as numbers")
    ingest.add_argument("--drop", metavar="COLS", help="comma-separated columns to ignore")
    ingest.add_argument("--key", help="id column the split is hashed from (default: row position)")
    ingest.add_argument("--task", choices=["classification", "regression"], help="default: inferred from the target")
    ingest.add_argument("--impute", choices=["mean", "median"], default="mean", help="fill for missing numbers")
    ingest.add_argument("--non-finite", choices=["reject", "missing"], default="reject",
                        help="inf, -inf, 1e309 in a numeric column: quarantine the row, or impute it as missing")
    ingest.add_argument("--datetime", action="append", metavar="COL[=UNIT]",
                        help="a date/time column (repeatable): ISO text or timestamps, or epoch numbers in UNIT "
                             "(s, ms, us, ns; default s); encoded as --datetime-parts (UTC)")
    ingest.add_argument("--datetime-parts", metavar="PARTS",
                        help="comma-separated parts of every date/time column among year, quarter, month, day, "
                             "day_of_week, day_of_year, hour, minute, second, epoch_seconds (default: year, month, "
                             "day, day_of_week, hour, minute, epoch_seconds)")
    ingest.add_argument("--max-categories", type=_max_categories, default=32,
                        help="categories kept per one-hot column (rest: __other__); 'all' keeps every value up to "
                             "10,000 (default 32)")
    ingest.add_argument("--categorical-encoding", action="append", metavar="COL=ENCODING",
                        help="encode a categorical column as onehot (default), frequency or target (repeatable)")
    ingest.add_argument("--validation", type=float, default=0.0, help="fraction for validation (default 0)")
    ingest.add_argument("--test", type=float, default=0.2, help="fraction for test (default 0.2)")
    ingest.add_argument("--seed", type=int, default=0, help="seed of the split and the row shuffle (default 0)")
    ingest.add_argument("--no-shuffle", action="store_true",
                        help="keep the input row order (default: rows stored in a seeded random order)")
    ingest.add_argument("--rows-per-chunk", type=int, help="rows per store chunk (default: ~16 MiB chunks)")
    ingest.add_argument("--blocksize", default="64MiB", help="input bytes per read task (default 64MiB)")
    ingest.add_argument("--compression", choices=["lz4", "zstd", "none"], default="lz4")
    ingest.add_argument("--encoding", default="utf-8", help="text encoding of CSV/JSON files")
    ingest.add_argument("--delimiter", default=",", help="CSV field separator")
    ingest.add_argument("--overwrite", action="store_true", help="replace an existing store")
    ingest.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
                        help="Dask scheduler to use (default: $DASK_SCHEDULER_ADDRESS, else a local cluster)")
    ingest.add_argument("--workers", type=int, help="local cluster: worker processes (default: one per core)")
    ingest.add_argument("--memory-limit", default="auto", help="local cluster: memory per worker, e.g. 2GiB")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bars")

    info = commands.add_parser(
        "info", help="describe a store: rows, rejects, splits, features, chunks, preprocessing",
        epilog=EPILOG_INFO, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("store", help="store directory or URL (s3://bucket/data.zarr)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument("--rejects", type=int, metavar="N", default=0, help="also print the first N rejected rows")

    verify = commands.add_parser(
        "verify", help="read every chunk of a store and report damaged or missing ones (exit status 1)",
        description="Decode every chunk of every array (checking its CRC-32C) and compare the chunk files with "
                    "the store's integrity manifest. Exit status 0: intact; 1: damaged chunks listed.",
    )
    verify.add_argument("store", help="store directory or URL (s3://bucket/data.zarr)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--scheduler", default=None,
                        help="check the chunks on this Dask cluster (default: threads in this process)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")

    _add_cluster_parser(commands)
    return parser


EPILOG_CLUSTER = """\
examples:
  bigdl cluster manifest --workers 3 --gpu-workers 1 --image registry.example.com/bigdl:0.1.0 \\
      | kubectl apply -n data -f -
  bigdl cluster manifest --tls-secret bigdl-tls --storage-class nfs-client > cluster.yaml
  bigdl cluster manifest --no-shared-volume --quickstart-store s3://my-bucket/bigdl/flights.zarr \
      | kubectl apply -n data -f -      # object storage only (Secret: cluster/store-credentials.yaml)
  bigdl cluster constraints > cluster/constraints.txt     # before building cluster/Dockerfile

cluster/README.md and the README ("Running on Kubernetes") walk through the deployment.
"""


def _add_cluster_parser(commands) -> None:
    from bigdl.cluster import _kubernetes as k8s

    cluster = commands.add_parser(
        "cluster", help="Kubernetes: render the DaskCluster manifest, pin the image's packages",
        description="Deployment on the Dask Kubernetes operator (cluster/ holds the helm values, the "
                    "manifest and the Dockerfile).",
        epilog=EPILOG_CLUSTER, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    actions.required = True
    manifest = actions.add_parser(
        "manifest", help="print the YAML of a bigdl DaskCluster (store volume, scheduler, CPU and GPU workers)",
        description="Print the Kubernetes resources of a bigdl cluster for `kubectl apply -f -`: a shared "
                    "ReadWriteMany volume for stores, a DaskCluster (scheduler with its ClusterIP service on "
                    f"{k8s.SCHEDULER_PORT}/{k8s.DASHBOARD_PORT}, CPU workers), a DaskWorkerGroup of GPU workers "
                    "and a client pod.",
        epilog=EPILOG_CLUSTER, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    manifest.add_argument("--name", default="bigdl", help="DaskCluster name; the scheduler is NAME-scheduler")
    manifest.add_argument("--namespace", help="set metadata.namespace and use full service names")
    manifest.add_argument("--workers", type=int, default=2, help="CPU workers (default 2)")
    manifest.add_argument("--gpu-workers", type=int, default=0, help="GPU workers (default 0; scale later)")
    manifest.add_argument("--image", help=f"image of the scheduler, CPU workers and client (default "
                                          f"{k8s.default_image()})")
    manifest.add_argument("--gpu-image", help=f"image of the GPU workers (default {k8s.default_image(gpu=True)})")
    manifest.add_argument("--memory-limit", default="4GiB", help="memory per CPU worker (default 4GiB)")
    manifest.add_argument("--cpu", type=int, default=1, help="cores (and threads) per CPU worker (default 1)")
    manifest.add_argument("--gpu-memory-limit", default="16GiB", help="memory per GPU worker (default 16GiB)")
    manifest.add_argument("--gpu-cpu", type=int, default=4, help="cores per GPU worker (default 4)")
    manifest.add_argument("--gpus-per-worker", type=int, default=1, help="nvidia.com/gpu per GPU worker")
    manifest.add_argument("--gpu-node-selector", action="append", metavar="KEY=VALUE",
                          help="nodeSelector of the GPU workers (repeatable)")
    manifest.add_argument("--scheduler-memory", default="2GiB", help="the scheduler's memory (default 2GiB)")
    manifest.add_argument("--store-claim", help="the ReadWriteMany claim mounted at /data (default NAME-store)")
    manifest.add_argument("--store-size", default="100Gi", help="its size (default 100Gi)")
    manifest.add_argument("--storage-class", help="its storage class (default: the cluster's default)")
    manifest.add_argument("--credentials-secret",
                          help="optional Secret of object-store credentials (default NAME-store-credentials)")
    manifest.add_argument("--tls-secret", help="Secret with ca.crt, tls.crt, tls.key: require TLS everywhere")
    manifest.add_argument("--no-client", action="store_true", help="leave out the client pod")
    manifest.add_argument("--no-shared-volume", action="store_true",
                          help="leave out the ReadWriteMany claim: inputs, stores and checkpoints on object storage")
    manifest.add_argument("--quickstart-store", metavar="URL",
                          help="also a Job running workflows/quickstart.py --store URL, e.g. "
                               "s3://my-bucket/bigdl/flights.zarr")
    actions.add_parser(
        "constraints", help="print pip constraints pinning this environment, for building cluster/Dockerfile",
        description="One name==version line per installed package, after the Python version; the image built "
                    "with them runs the same dask, distributed, torch, ... as this client.",
    )


def _client(args):
    import bigdl

    if args.scheduler:
        return bigdl.cluster.connect(args.scheduler)
    return bigdl.cluster.start_local(n_workers=args.workers, memory_limit=args.memory_limit)


def _ingest(args) -> int:
    import bigdl
    from bigdl.ingest.sources import plan_sources
    from bigdl._validation import check_params
    from bigdl.ingest._tabular import PARAMETERS, resolve_schema
    from bigdl.preprocessing import DEFAULT_DATETIME_PARTS
    from bigdl.store._commit import check_store_path, check_store_writable

    source = args.source if len(args.source) > 1 else args.source[0]
    # Fail on a missing file, a bad header or an unknown column before starting a cluster.
    plan = plan_sources(source, format=args.format, table=args.table, encoding=args.encoding,
                        delimiter=args.delimiter)
    dates = _column_options(args.datetime, "--datetime")
    encodings = _column_options(args.categorical_encoding, "--categorical-encoding", value_required=True)
    parts = _names(args.datetime_parts)
    options = dict(datetime=dates, datetime_parts=parts, categorical_encoding=encodings)
    check_params("bigdl ingest", {"datetime": dates, "datetime_parts": DEFAULT_DATETIME_PARTS if parts is None
                                  else parts, "categorical_encoding": encodings}, PARAMETERS)
    resolve_schema(plan, target=args.target, categorical=_names(args.categorical), numeric=_names(args.numeric),
                   drop=_names(args.drop), key=args.key, task=args.task, impute=args.impute, seed=args.seed,
                   non_finite=args.non_finite, **options)
    check_store_path(args.store, overwrite=args.overwrite, inputs=plan.paths)
    check_store_writable(args.store)
    client = _client(args)
    try:
        ds = bigdl.ingest.tabular(
            source, target=args.target, store=args.store, format=args.format, table=args.table,
            categorical=_names(args.categorical), numeric=_names(args.numeric), drop=_names(args.drop),
            key=args.key, task=args.task, impute=args.impute, non_finite=args.non_finite,
            max_categories=args.max_categories, **options,
            validation=args.validation, test=args.test, seed=args.seed, shuffle=not args.no_shuffle,
            rows_per_chunk=args.rows_per_chunk, blocksize=args.blocksize, compression=args.compression,
            encoding=args.encoding,
            delimiter=args.delimiter, overwrite=args.overwrite, progress=not args.no_progress, client=client,
        )
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and not args.scheduler:
            cluster.close()
    print(ds.info())
    return 0


def _info(args) -> int:
    import bigdl

    ds = bigdl.open(args.store)
    if args.json:
        print(json.dumps(ds.info().to_dict(), indent=2, default=str))
    else:
        print(ds.info())
    if args.rejects:
        rejects = ds.rejects()
        if rejects.empty:
            print("\nno rejected rows")
        else:
            import pandas as pd

            with pd.option_context("display.max_colwidth", 80, "display.width", 200):
                print(f"\nfirst {min(args.rejects, len(rejects))} of {len(rejects)} rejected rows:")
                print(rejects.head(args.rejects).to_string(index=False))
    return 0


def _verify(args) -> int:
    import bigdl

    client = bigdl.cluster.connect(args.scheduler, quiet=True) if args.scheduler else None
    try:
        report = bigdl.store.verify_store(args.store, client=client, progress=not args.no_progress)
    finally:
        if client is not None:
            client.close()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0 if report.ok else 1


def _cluster(args) -> int:
    import re

    from bigdl.cluster import _kubernetes as k8s
    from bigdl.errors import SchemaError

    if args.cluster_command == "constraints":
        print(k8s.client_constraints(), end="")
        return 0
    selector = {}
    for item in args.gpu_node_selector or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SchemaError(f"--gpu-node-selector takes KEY=VALUE, e.g. nvidia.com/gpu.present=true; got {item!r}.")
        selector[key] = value
    options = dict(
        name=args.name, workers=args.workers, gpu_workers=args.gpu_workers, image=args.image, gpu_image=args.gpu_image,
        memory_limit=args.memory_limit, cpu=args.cpu, gpu_memory_limit=args.gpu_memory_limit, gpu_cpu=args.gpu_cpu,
        gpus_per_worker=args.gpus_per_worker, scheduler_memory=args.scheduler_memory, store_claim=args.store_claim,
        store_size=args.store_size, storage_class=args.storage_class, credentials_secret=args.credentials_secret,
        tls_secret=args.tls_secret, namespace=args.namespace, gpu_node_selector=selector or None,
        client=not args.no_client, shared_volume=not args.no_shared_volume, quickstart_store=args.quickstart_store,
    )
    try:
        resources = k8s.render_manifest(**options)
    except SchemaError as error:  # name the option as typed: "--memory-limit", not "'memory_limit' parameter"
        raise type(error)(re.sub(r"The '(\w+)' parameter of render_manifest",
                                 lambda match: "--" + match.group(1).replace("_", "-"), str(error))) from None
    print(k8s.manifest_yaml(resources), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bigdl`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``bigdl``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for a :class:`~bigdl.errors.BigdlError`
        (printed as one line on stderr), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "ingest":
            return _ingest(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "cluster":
            return _cluster(args)
        return _info(args)
    except BigdlError as error:
        print(f"bigdl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno is None:  # not the operating system's answer: a bug, with its traceback
            raise
        # An input that cannot be read, a cluster that cannot start: the system's reason and the path.
        paths = " -> ".join(repr(str(name)) for name in (error.filename, error.filename2) if name)
        print(f"bigdl {args.command}: error: {error.strerror or error}{': ' + paths if paths else ''} "
              f"[errno {error.errno}]", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bigdl {args.command}: interrupted; nothing was written under the store's name.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
