"""Every public name of bigdl has a numpydoc docstring: a Parameters section where it takes parameters.

"Public" is what the packages export in ``__all__``: functions, classes and
their public methods.  A class may document its fields under Attributes
(dataclasses, reports) instead of Parameters.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["bigdl", "bigdl.store", "bigdl.ingest", "bigdl.loaders", "bigdl.loaders.torch", "bigdl.train",
            "bigdl.estimators", "bigdl.explain", "bigdl.cluster", "bigdl.models", "bigdl.datasets",
            "bigdl.preprocessing", "bigdl.runtime", "bigdl.errors"]


def _public_callables():
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", []):
            value = getattr(module, name)
            if inspect.isclass(value):
                if issubclass(value, BaseException):
                    continue
                yield f"{package}.{name}", value, True
                for method, function in vars(value).items():
                    if not method.startswith("_") and callable(function):
                        yield f"{package}.{name}.{method}", function, False
            elif callable(value):
                yield f"{package}.{name}", value, False


def _problem(value, is_class: bool) -> str | None:
    doc = inspect.getdoc(value) or ""
    if not doc.strip():
        return "no docstring"
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return None
    names = [name for name in signature.parameters if name not in ("self", "cls") and not name.startswith("_")]
    sections = ("Parameters", "Attributes") if is_class else ("Parameters",)
    if names and not any(f"{section}\n---" in doc for section in sections):
        return f"no Parameters section for {names}"
    return None


def test_every_public_name_has_a_numpydoc_docstring():
    problems = sorted({f"{name}: {problem}" for name, value, is_class in _public_callables()
                       if (problem := _problem(value, is_class)) is not None})
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_missing_section():
    def undocumented(x):
        """One line only."""

    assert _problem(undocumented, False) == "no Parameters section for ['x']"
    assert _problem(lambda: None, False) == "no docstring"
