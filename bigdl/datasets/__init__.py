"""Deterministic synthetic data sets for examples, tests and benchmarks.

Nothing here downloads anything: every file is generated from a seed, so the
same call writes byte-identical files on every machine.
"""

from bigdl.datasets._synthetic import make_regression, make_series_panel, make_tabular, write_tabular_csv

__all__ = ["make_regression", "make_series_panel", "make_tabular", "write_tabular_csv"]
