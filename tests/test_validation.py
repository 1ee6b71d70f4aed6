"""The parameter checker: scikit-learn's message form, bools refused as numbers, the error's classes."""

from __future__ import annotations

import doctest
import numbers
import re

import numpy as np
import pytest

import bigdl._validation as validation
from bigdl._validation import (HasMethods, Hidden, Interval, Options, Predicate, check_estimator_params,
                               check_params, make_constraint, parameter_error)
from bigdl.errors import BigdlError, ParameterError, SchemaError


def _message(value, constraints, name="x", owner="Owner") -> str:
    with pytest.raises(ParameterError) as caught:
        check_params(owner, {name: value}, {name: constraints})
    return str(caught.value)


# ---------------------------------------------------------------- the error
def test_parameter_error_is_value_type_and_schema_error():
    error = parameter_error("Owner", "x", 1, "None")
    assert isinstance(error, SchemaError) and isinstance(error, BigdlError)
    assert isinstance(error, ValueError) and isinstance(error, TypeError)
    for kind in (SchemaError, ValueError, TypeError, BigdlError):
        with pytest.raises(kind):
            check_params("Owner", {"x": 0}, {"x": [Interval(int, 1, None)]})


def test_parameter_error_is_exported_from_bigdl_errors():
    import bigdl.errors

    assert "ParameterError" in bigdl.errors.__all__
    assert ParameterError.__mro__.index(SchemaError) < ParameterError.__mro__.index(ValueError)


# ---------------------------------------------------------------- message form
def test_the_message_is_scikit_learns():
    assert _message(0, [Interval(int, 1, None)], "batch_size", "ChunkLoader") == (
        "The 'batch_size' parameter of ChunkLoader must be an int in the range [1, inf). Got 0 instead.")


def test_the_message_matches_scikit_learn_word_for_word():
    from sklearn.utils._param_validation import Interval as SkInterval
    from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

    ours = _message(-1, [Interval(float, 0, 1, closed="left"), None], "test", "tabular")
    with pytest.raises(InvalidParameterError) as caught:
        validate_parameter_constraints({"test": [SkInterval(numbers.Real, 0, 1, closed="left"), None]},
                                       {"test": -1}, "tabular")
    assert ours == str(caught.value)


@pytest.mark.parametrize("constraints, words", [
    ([Interval(int, 1, None), None], "an int in the range [1, inf) or None"),
    ([Interval(int, 0, 10)], "an int in the range [0, 10]"),
    ([Interval(float, 0, 1, closed="left")], "a float in the range [0.0, 1.0)"),
    ([Interval(float, 0, None, closed="neither")], "a float in the range (0.0, inf)"),
    ([Interval(float, None, 0)], "a float in the range (-inf, 0.0]"),
    ([Options(["mean", "median"])], "a str among {'mean', 'median'}"),
    ([Options({"zstd", "lz4", "none"})], "a str among {'lz4', 'none', 'zstd'}"),
    ([Options((1, 2))], "an int among {1, 2}"),
    ([Options(["old", "new"], deprecated={"old"})], "a str among {'old' (deprecated), 'new'}"),
    ([Options({"a": 1, "b": 2})], "a str among {'a', 'b'}"),
    ([Options(["a", 1])], "a value among {'a', 1}"),
    ([callable, None], "a callable or None"),
    ([int, str, None], "an instance of 'int', an instance of 'str' or None"),
    ([np.ndarray], "an instance of 'numpy.ndarray'"),
    (["boolean"], "an instance of 'bool' or an instance of 'numpy.bool'"),
    ([HasMethods(["fit", "predict"])], "an object implementing 'fit' and 'predict'"),
    ([HasMethods("fit")], "an object implementing 'fit'"),
    ([Predicate(lambda value: False, "a Kubernetes name")], "a Kubernetes name"),
    ([Interval(int, 1, None), Hidden(Options(["legacy"]))], "an int in the range [1, inf)"),
])
def test_each_constraint_describes_itself(constraints, words):
    value = object()
    assert _message(value, constraints) == f"The 'x' parameter of Owner must be {words}. Got {value!r} instead."


def test_the_value_is_shown_with_repr():
    assert _message("7", [Interval(int, 0, None)]).endswith("Got '7' instead.")


# ---------------------------------------------------------------- what is accepted
@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
@pytest.mark.parametrize("constraint", [Interval(int, 0, None), Interval(float, 0, None), int, float,
                                        numbers.Integral, numbers.Real, Options([0, 1])])
def test_bools_are_not_numbers(value, constraint):
    assert not make_constraint(constraint).is_satisfied_by(value)
    with pytest.raises(ParameterError, match=re.escape(f"Got {value!r} instead.")):
        check_params("Owner", {"x": value}, {"x": [constraint]})


@pytest.mark.parametrize("value", [True, False, np.bool_(False)])
def test_bools_pass_where_bools_are_declared(value):
    check_params("Owner", {"x": value}, {"x": ["boolean"]})
    if isinstance(value, bool):
        check_params("Owner", {"x": value}, {"x": [bool]})
        check_params("Owner", {"x": value}, {"x": [Options([True, False])]})


def test_a_bool_option_takes_no_number():
    assert not Options([True, False]).is_satisfied_by(1)
    assert not Options([True, False]).is_satisfied_by(0)


def test_none_passes_only_where_declared():
    check_params("Owner", {"x": None}, {"x": [Interval(int, 1, None), None]})
    with pytest.raises(ParameterError, match=r"must be an int in the range \[1, inf\)\. Got None instead"):
        check_params("Owner", {"x": None}, {"x": [Interval(int, 1, None)]})


@pytest.mark.parametrize("value", [1, np.int64(3), np.int32(1), 10**20])
def test_python_and_numpy_ints_are_ints(value):
    check_params("Owner", {"x": value}, {"x": [Interval(int, 1, None)]})


@pytest.mark.parametrize("value", [0.5, 0, np.float32(0.25), np.float64(0.0)])
def test_floats_take_ints_and_numpy_floats(value):
    check_params("Owner", {"x": value}, {"x": [Interval(float, 0, 1, closed="left")]})


@pytest.mark.parametrize("value", [1.0, 2.5, np.float64(3.0), "3"])
def test_ints_take_no_floats_or_strings(value):
    with pytest.raises(ParameterError):
        check_params("Owner", {"x": value}, {"x": [Interval(int, 1, None)]})


@pytest.mark.parametrize("value", [1.0, float("nan"), -0.001, float("inf")])
def test_the_bounds_and_nan(value):
    assert not Interval(float, 0, 1, closed="left").is_satisfied_by(value)


def test_options_take_numpy_strings_and_refuse_arrays():
    options = Options(["a", "b"])
    assert options.is_satisfied_by(np.str_("a"))
    assert not options.is_satisfied_by(np.array(["a"]))
    assert not options.is_satisfied_by(["a"])


def test_predicate_exceptions_count_as_not_satisfied():
    assert not Predicate(lambda value: value > 0, "positive").is_satisfied_by("text")


def test_hidden_values_are_accepted():
    check_params("Owner", {"x": False}, {"x": [None, Interval(int, 1, None), Hidden(Options([False]))]})


def test_every_parameter_is_checked_in_order_and_unlisted_ones_are_not():
    constraints = {"a": [Interval(int, 1, None)], "b": [Interval(int, 1, None)]}
    with pytest.raises(ParameterError, match="'a' parameter"):
        check_params("Owner", {"a": 0, "b": 0, "c": "anything"}, constraints)
    check_params("Owner", {"a": 1, "b": 1, "c": object()}, constraints)


def test_a_bad_table_is_a_programming_error():
    with pytest.raises(TypeError, match="internal error"):
        check_params("Owner", {"x": 1}, {"x": ["an int please"]})
    with pytest.raises(ValueError):
        Interval(str, 0, 1)
    with pytest.raises(ValueError):
        Interval(int, 2, 1)
    with pytest.raises(ValueError):
        Options(["a"], deprecated={"b"})


def test_estimators_are_checked_by_their_class_table():
    class Model:
        _constraints = {"depth": [Interval(int, 1, None), None]}

        def __init__(self, depth=None):
            self.depth = depth

        def get_params(self, deep=True):
            return {"depth": self.depth}

    check_estimator_params(Model())
    with pytest.raises(ParameterError, match=r"^The 'depth' parameter of Model must be an int in the range "
                                             r"\[1, inf\) or None\. Got 0 instead\.$"):
        check_estimator_params(Model(depth=0))


def test_the_examples_in_the_docstrings_run():
    result = doctest.testmod(validation, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
