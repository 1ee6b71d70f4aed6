"""Benchmarks of bigdl against the baselines of ``BENCHMARKS.md``, measured in the same run.

Run ``python -m benchmarks --help`` from the repository root.  Each public
module (``ingest``, ``loader``, ...) is one subcommand, found automatically
through its ``add_parser(subparsers)`` function; the shared machinery
(alternating timed runs, peak RSS of client, scheduler and workers, CPU used
by other processes, median and spread, tables, JSON results in
``benchmarks/results/``) is in :mod:`benchmarks._harness`.
"""
