"""Declarative checks of public parameters, with scikit-learn's error messages.

Every public function and class of bigdl checks its parameters one way: a
table maps each parameter name to the list of what it accepts, and
:func:`check_params` raises :class:`~bigdl.errors.ParameterError` naming the
parameter, its owner, what is allowed and what was received, in the words of
scikit-learn's ``validate_parameter_constraints``::

    The 'batch_size' parameter of ChunkLoader must be an int in the range [1, inf). Got 0 instead.

The vocabulary is scikit-learn's (:class:`Interval`, :class:`Options`,
:class:`HasMethods`, :class:`Hidden`, ``None``, ``callable``, types,
``"boolean"``), plus :class:`Predicate` for a rule that has no name there
(a Kubernetes name, a memory size).  It is written here rather than imported
from ``sklearn.utils._param_validation`` because that module is private,
importing it costs about a second (ingest, the store and the CLI never load
scikit-learn), and bigdl refuses ``True`` and ``False`` wherever a number is
asked for, where scikit-learn's ``Interval`` takes ``True`` for the int 1.
Estimators declare their table as a ``_constraints`` class attribute and call
:func:`check_estimator_params` in ``fit`` (``__init__`` only stores).
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Callable

import numpy as np

from bigdl.errors import ParameterError

__all__ = ["Constraint", "Interval", "Options", "HasMethods", "Predicate", "Hidden", "check_params",
           "check_estimator_params", "parameter_error", "make_constraint", "QUANTILES"]

_BOOLS = (bool, np.bool_)


def _is_bool(value) -> bool:
    return isinstance(value, _BOOLS)


def _type_name(kind) -> str:
    """A type as scikit-learn's messages write it: ``int``, ``float``, ``numpy.bool``, ``module.Class``.

    A class defined in a private module is named where its package exports
    it: ``bigdl.loaders.Augment``, not ``bigdl.loaders._augment.Augment``.
    """
    if kind is numbers.Integral:
        return "int"
    if kind is numbers.Real:
        return "float"
    if kind.__module__ == "builtins":
        return kind.__qualname__
    module = kind.__module__
    while "." in module and module.rpartition(".")[2].startswith("_"):
        parent = module.rpartition(".")[0]
        if getattr(sys.modules.get(parent), kind.__qualname__, None) is not kind:
            break
        module = parent
    return f"{module}.{kind.__qualname__}"


class Constraint:
    """What one parameter may be: :meth:`is_satisfied_by` a value, and ``str()`` the words after "must be".

    Subclass it for a rule the other constraints cannot say.  ``hidden``
    constraints are accepted but left out of the message (internal or
    deprecated values).
    """

    hidden = False

    def is_satisfied_by(self, value) -> bool:
        """Whether ``value`` is allowed.

        Parameters
        ----------
        value : object
            The value given.

        Returns
        -------
        bool
        """
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError


class _InstancesOf(Constraint):
    def __init__(self, kind: type):
        self.kind = kind
        # bool is an int subclass: a number type takes no True/False unless it is a bool type itself.
        self._refuses_bools = issubclass(kind, numbers.Number) and not issubclass(kind, _BOOLS)

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.kind) and not (self._refuses_bools and _is_bool(value))

    def __str__(self) -> str:
        return f"an instance of {_type_name(self.kind)!r}"


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class _Callables(Constraint):
    def is_satisfied_by(self, value) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return "a callable"


class _Booleans(Constraint):
    """``True`` or ``False``, as a Python or a NumPy bool (scikit-learn's ``"boolean"``)."""

    def is_satisfied_by(self, value) -> bool:
        return _is_bool(value)

    def __str__(self) -> str:
        return "an instance of 'bool' or an instance of 'numpy.bool'"


class Interval(Constraint):
    """Numbers of one kind between two bounds.

    Parameters
    ----------
    type : {int, float, numbers.Integral, numbers.Real}
        ``int`` accepts Python and NumPy integers; ``float`` accepts any real
        number, integers included.  Neither accepts ``True`` or ``False``.
    left, right : int or float or None
        The bounds; None is minus or plus infinity.
    closed : {"left", "right", "both", "neither"}, optional
        Which bounds belong to the interval.  Default: each finite bound does,
        so ``Interval(int, 1, None)`` is ``[1, inf)`` and
        ``Interval(float, 0, 1, closed="left")`` is ``[0.0, 1.0)``.

    Raises
    ------
    ValueError
        An unknown type or ``closed``, or ``right <= left``.

    Examples
    --------
    >>> str(Interval(int, 1, None))
    'an int in the range [1, inf)'
    >>> Interval(int, 1, None).is_satisfied_by(True)
    False
    """

    def __init__(self, type, left, right, *, closed: str | None = None):
        kinds = {int: numbers.Integral, numbers.Integral: numbers.Integral, float: numbers.Real,
                 numbers.Real: numbers.Real}
        if type not in kinds:
            raise ValueError(f"Interval type must be int or float; got {type!r}.")
        if closed is None:
            closed = {(True, True): "both", (True, False): "left", (False, True): "right",
                      (False, False): "neither"}[(left is not None, right is not None)]
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be 'left', 'right', 'both' or 'neither'; got {closed!r}.")
        if left is not None and right is not None and right <= left:
            raise ValueError(f"right must be greater than left; got left={left} and right={right}.")
        self.type, self.left, self.right, self.closed = kinds[type], left, right, closed

    def __contains__(self, value) -> bool:
        if not isinstance(value, numbers.Integral) and math.isnan(value):
            return False
        left = -math.inf if self.left is None else self.left
        right = math.inf if self.right is None else self.right
        above = value >= left if self.closed in ("left", "both") else value > left
        below = value <= right if self.closed in ("right", "both") else value < right
        return bool(above and below)

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.type) and not _is_bool(value) and value in self

    def __str__(self) -> str:
        integral = self.type is numbers.Integral
        left = "-inf" if self.left is None else (self.left if integral else float(self.left))
        right = "inf" if self.right is None else (self.right if integral else float(self.right))
        opening = "[" if self.closed in ("left", "both") else "("
        closing = "]" if self.closed in ("right", "both") else ")"
        return f"{'an int' if integral else 'a float'} in the range {opening}{left}, {right}{closing}"


class Options(Constraint):
    """One of a finite set of values.

    Parameters
    ----------
    options : iterable
        The values allowed.  A list, tuple or dict (its keys) keeps its order
        in the message; a set is listed sorted.
    type : type, optional
        What the values are (``str``, ``int``...), named in the message.
        Default: their common type, if they have one.
    deprecated : iterable, optional
        Options still accepted but marked "(deprecated)" in the message.

    Raises
    ------
    ValueError
        A deprecated option that is not among ``options``.

    Examples
    --------
    >>> str(Options({"median", "mean"}))
    "a str among {'mean', 'median'}"
    """

    def __init__(self, options, *, type=None, deprecated=()):
        if isinstance(options, (set, frozenset)):
            try:
                options = sorted(options)
            except TypeError:
                options = sorted(options, key=repr)
        self.options = tuple(options)
        self.deprecated = set(deprecated)
        if not self.deprecated <= set(self.options):
            raise ValueError(f"The deprecated options {sorted(self.deprecated - set(self.options))} are not options.")
        kinds = {_option_type(option) for option in self.options}
        self.type = type if type is not None else (kinds.pop() if len(kinds) == 1 else None)

    def is_satisfied_by(self, value) -> bool:
        if self.type is not None and not isinstance(value, self.type):
            return False
        try:
            hash(value)  # arrays and lists are never an option (and their == is elementwise)
        except TypeError:
            return False
        # True == 1: a bool matches only a bool option, a number only a number.
        return any(_is_bool(option) == _is_bool(value) and option == value for option in self.options)

    def __str__(self) -> str:
        listed = ", ".join(f"{option!r}{' (deprecated)' if option in self.deprecated else ''}"
                           for option in self.options)
        if self.type is None:
            return f"a value among {{{listed}}}"
        name = _type_name(self.type)
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name} among {{{listed}}}"


def _option_type(value) -> type:
    """The type an option is listed as: NumPy strings are ``str``, NumPy integers ``int``."""
    if isinstance(value, str):
        return str
    if _is_bool(value):
        return bool
    if isinstance(value, numbers.Integral):
        return numbers.Integral
    return type(value)


class HasMethods(Constraint):
    """Objects with all the named methods (a protocol, not a class).

    Parameters
    ----------
    methods : str or list of str

    Examples
    --------
    >>> str(HasMethods(["partial_fit", "get_params"]))
    "an object implementing 'partial_fit' and 'get_params'"
    """

    def __init__(self, methods):
        self.methods = [methods] if isinstance(methods, str) else list(methods)

    def is_satisfied_by(self, value) -> bool:
        return all(callable(getattr(value, method, None)) for method in self.methods)

    def __str__(self) -> str:
        names = [repr(method) for method in self.methods]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        return f"an object implementing {listed}"


class Predicate(Constraint):
    """A rule given as a function, for what the other constraints cannot say.

    Parameters
    ----------
    test : callable
        ``test(value) -> bool``; an exception it raises counts as False.
    description : str
        The words after "must be", e.g. ``"a memory size of at least 256MiB such as '4GiB'"``.

    Examples
    --------
    >>> even = Predicate(lambda value: value % 2 == 0, "an even number")
    >>> even.is_satisfied_by(4), str(even)
    (True, 'an even number')
    """

    def __init__(self, test: Callable[[object], bool], description: str):
        self.test, self.description = test, description

    def is_satisfied_by(self, value) -> bool:
        try:
            return bool(self.test(value))
        except Exception:  # a rule that cannot even look at the value is not satisfied by it
            return False

    def __str__(self) -> str:
        return self.description


class Hidden:
    """A constraint accepted but not named in the message (an internal or a legacy value).

    Parameters
    ----------
    constraint : object
        Anything :func:`make_constraint` takes.
    """

    def __init__(self, constraint):
        self.constraint = constraint


def make_constraint(spec) -> Constraint:
    """The :class:`Constraint` a table entry stands for.

    Parameters
    ----------
    spec : Constraint, Hidden, type, None, callable or "boolean"
        ``None`` allows None; the builtin ``callable`` allows callables; a type
        allows its instances (``int`` refuses bools); ``"boolean"`` allows
        Python and NumPy bools.

    Returns
    -------
    Constraint

    Raises
    ------
    TypeError
        ``spec`` is none of these (a mistake in the table, not in the user's value).
    """
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, Hidden):
        return _HiddenConstraint(make_constraint(spec.constraint))
    if spec is None:
        return _NoneConstraint()
    if spec is callable:
        return _Callables()
    if isinstance(spec, str) and spec == "boolean":
        return _Booleans()
    if isinstance(spec, type):
        return _InstancesOf(spec)
    raise TypeError(f"bigdl internal error: unknown parameter constraint {spec!r}.")


class _HiddenConstraint(Constraint):
    hidden = True

    def __init__(self, constraint: Constraint):
        self.constraint = constraint

    def is_satisfied_by(self, value) -> bool:
        return self.constraint.is_satisfied_by(value)

    def __str__(self) -> str:
        return str(self.constraint)


def parameter_error(owner: str, name: str, value, allowed: str) -> ParameterError:
    """The error for a refused parameter value, in scikit-learn's words.

    For a check :func:`check_params` cannot express; the message reads
    "The '<name>' parameter of <owner> must be <allowed>. Got <value!r> instead."

    Parameters
    ----------
    owner : str
        The function or class the parameter belongs to (``"ChunkLoader"``).
    name : str
        The parameter.
    value : object
        What was given.
    allowed : str
        What is allowed, the words after "must be".

    Returns
    -------
    ParameterError
        To raise.
    """
    return ParameterError(f"The {name!r} parameter of {owner} must be {allowed}. Got {value!r} instead.")


def check_params(owner: str, values: dict, constraints: dict) -> None:
    """Refuse the first value that none of its parameter's constraints allows.

    Parameters
    ----------
    owner : str
        The function or class the parameters belong to, named in the message.
    values : dict
        ``{name: value}`` as given (``locals()`` subsets, ``get_params()``).
        Names without an entry in ``constraints`` are not checked.
    constraints : dict
        ``{name: [spec, ...]}``: a value is valid if it satisfies any spec of
        its list.  Specs are :class:`Interval`, :class:`Options`,
        :class:`HasMethods`, :class:`Predicate`, :class:`Hidden`, ``None``,
        ``callable``, a type or ``"boolean"`` (see :func:`make_constraint`).

    Raises
    ------
    ParameterError
        Naming the parameter, ``owner``, the allowed values (joined with
        ", " and " or ") and the value received.

    Examples
    --------
    >>> check_params("ChunkLoader", {"batch_size": 0}, {"batch_size": [Interval(int, 1, None)]})
    Traceback (most recent call last):
    ...
    bigdl.errors.ParameterError: The 'batch_size' parameter of ChunkLoader must be an int in the range [1, inf). Got 0 instead.
    """
    for name, value in values.items():
        if name not in constraints:
            continue
        specs = constraints[name]
        specs = specs if isinstance(specs, (list, tuple)) else [specs]
        checks = [make_constraint(spec) for spec in specs]
        if any(check.is_satisfied_by(value) for check in checks):
            continue
        shown = [str(check) for check in checks if not check.hidden]
        allowed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
        raise parameter_error(owner, name, value, allowed)


def check_estimator_params(estimator, constraints: dict | None = None) -> None:
    """:func:`check_params` over an estimator's ``get_params(deep=False)``, named by its class.

    Parameters
    ----------
    estimator : scikit-learn-style estimator
        Its ``fit`` calls this first (``__init__`` only stores the parameters).
    constraints : dict, optional
        Default: the estimator class's ``_constraints`` table.

    Raises
    ------
    ParameterError
        As :func:`check_params`, with the class name as the owner.
    """
    table = type(estimator)._constraints if constraints is None else constraints
    check_params(type(estimator).__name__, estimator.get_params(deep=False), table)


def _is_quantile_list(value) -> bool:
    if not isinstance(value, (list, tuple)) or not value:
        return False
    try:
        numbers = [float(item) for item in value]
    except (TypeError, ValueError):
        return False
    return all(0 < item < 1 for item in numbers) and all(a < b for a, b in zip(numbers, numbers[1:]))


#: What a ``quantiles=`` parameter accepts (``QuantileLoss``, ``StackedLSTM``).
QUANTILES = [Predicate(_is_quantile_list, "a non-empty increasing list of floats in (0, 1)")]
