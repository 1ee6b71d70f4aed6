"""Command line: ``python -m benchmarks <benchmark> [options]``.

Every public module of this package (``ingest.py``, ``loader.py``, ...) that
defines ``add_parser(subparsers)`` is a subcommand: ``add_parser`` registers
it and sets ``func``, which is called with the parsed options and returns an
exit status.  Adding a benchmark is adding such a module; nothing here
changes.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def benchmark_modules() -> list[str]:
    """Names of this package's public modules (those not starting with ``_``), sorted."""
    folder = Path(__file__).resolve().parent
    return sorted(info.name for info in pkgutil.iter_modules([str(folder)]) if not info.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subcommand per benchmark module.

    A module that fails to import is reported on stderr and left out, so one
    broken benchmark does not stop the others.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="bigdl benchmarks; every ratio is against a baseline measured in the same run.",
    )
    subparsers = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name in benchmark_modules():
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except Exception as error:  # noqa: BLE001 - reported, the other benchmarks still run
            print(f"benchmarks.{name} left out: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        if hasattr(module, "add_parser"):
            module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen benchmark.

    Parameters
    ----------
    argv : list of str, optional
        Default: ``sys.argv[1:]``.

    Returns
    -------
    int
        The benchmark's exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
