"""Grading a student's op: run the cases, compare, report.

Two checks per case:

* **output**: the student's result against the reference's on the same input.
  Floats agree when their relative error ``||a - r|| / (||a|| + ||r||)`` is
  below ``OUTPUT_TOL = 1e-9``. Two correct float64 implementations differ
  only by rounding, about ``n * 2.2e-16`` for sums of ``n`` terms (1e-13 here),
  while a wrong formula is off by 1e-3 or more, so the threshold sits far from
  both on any CPU. Indices must be equal.
* **gradient**, for backward passes where the op is differentiable: the
  student's gradients against centred differences of the reference forward
  pass (:func:`npsegnet.gradcheck.numerical_gradient_array`, float64,
  ``h = 1e-6``), with the tolerance of :func:`npsegnet.gradcheck.check_layer`,
  ``GRAD_TOL = 1e-7`` (a correct backward pass agrees to 1e-9 or better).
"""

from __future__ import annotations

import inspect
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..gradcheck import rel_error
from .cases import Case, Exercise, get, names

OUTPUT_TOL = 1e-9
GRAD_TOL = 1e-7

#: Set to 1 to grade the reference in place of every ``@exercise`` stub (CI).
SOLUTIONS_ENV = "NPSEGNET_EXERCISE_SOLUTIONS"

_NUMPY_DIR = str(Path(np.__file__).parent)
_GRADED: dict[str, GradeResult] = {}  # the latest grade of each exercise


class ExerciseFailed(AssertionError):
    """Raised by :func:`grade` with ``raise_on_fail=True``; its message: the report."""


@dataclass
class CheckResult:
    """One check of one case.

    ``error`` is the largest relative error of the compared arrays (``None``
    when nothing was compared in floating point: indices, or the function
    raised).
    """

    case: str
    check: str  # "output" or "gradient"
    shape: tuple | None
    passed: bool
    error: float | None = None
    message: str = ""
    inputs: dict = field(default_factory=dict, repr=False)
    not_implemented: bool = False
    tol: float = OUTPUT_TOL


@dataclass
class GradeResult:
    """What :func:`grade` found: truthy when every check passed.

    ``str(result)`` (and the notebook display) is the report: one line per
    check, then the first failure with its input.
    """

    name: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every check passed (and there was at least one)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def first_failure(self) -> CheckResult | None:
        """The first check that failed, or ``None``."""
        return next((c for c in self.checks if not c.passed), None)

    @property
    def max_error(self) -> float:
        """The largest relative error over all checks (nan if one is nan)."""
        errors = [c.error for c in self.checks if c.error is not None]
        if any(np.isnan(e) for e in errors):
            return float("nan")
        return max(errors, default=0.0)

    @property
    def not_implemented(self) -> bool:
        """Every case raised ``NotImplementedError``: the stub is not filled in."""
        return bool(self.checks) and all(c.not_implemented for c in self.checks)

    def assert_ok(self) -> GradeResult:
        """Raise :class:`ExerciseFailed` with the report unless every check passed."""
        if not self.passed:
            raise ExerciseFailed(str(self))
        return self

    def __str__(self) -> str:
        if self.not_implemented:
            return (
                f"{self.name}: not implemented yet (it raised NotImplementedError). "
                "Fill in the stub, run its cell, then grade again."
            )
        n_ok = sum(c.passed for c in self.checks)
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{self.name}: {verdict}, {n_ok} of {len(self.checks)} checks passed, "
            f"max. relative error {self.max_error:.1e}"
        ]
        width = max(len(c.case) for c in self.checks)
        for c in self.checks:
            lines.append(
                f"  {'ok' if c.passed else 'FAIL':<5}{c.case:<{width}}  "
                f"{_shape(c.shape):<14}{c.check:<10}{_error_column(c)}"
            )
        first = self.first_failure
        if first is not None:
            lines.append("")
            lines.append(f"First failure: {first.case} ({first.check} check)")
            lines.extend("  " + m for m in first.message.splitlines())
            if first.inputs:
                lines.append("  input:")
                for arg, value in first.inputs.items():
                    shown = _show(arg, value).splitlines()
                    lines.extend(("    " + m).rstrip() for m in shown)
        return "\n".join(lines)

    __repr__ = __str__


def _error_column(c: CheckResult) -> str:
    """The relative error, or why there is none to show."""
    if c.error is not None and (c.passed or not c.error < c.tol):
        return f"{c.error:.1e}"
    if c.passed:
        return "exact"  # only integers were compared
    return "see below"  # it raised, or a shape, dtype or index differs


def _shape(shape) -> str:
    return "" if shape is None else str(tuple(shape))


def _show(arg, value) -> str:
    """``arg = value``, arrays printed in full when small, else by shape."""
    if isinstance(value, np.ndarray):
        head = f"{arg}: {value.dtype} {value.shape}"
        if value.size > 120:
            return head + " (too large to print)"
        with np.printoptions(precision=3, suppress=True, linewidth=88):
            return f"{head} =\n{np.array2string(value, separator=' ')}"
    return f"{arg} = {value!r}"


# -- running the student's function ------------------------------------------------
def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _describe_exception(e: BaseException, name: str) -> str:
    """What the student's function raised, and the line of their code."""
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)[1:]
        if not f.filename.startswith(_NUMPY_DIR)
    ]
    where = ""
    if frames:
        f = frames[-1]
        where = f"\nat line {f.lineno} in {f.name}" + (f": {f.line}" if f.line else "")
    return f"{name} raised {type(e).__name__}: {e}{where}"


def _signature_problem(fn, reference, case: Case) -> str:
    """A message when ``fn`` cannot take the reference's arguments, else ''."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: just call it
        return ""
    try:
        sig.bind(*case.args, **case.kwargs)
    except TypeError as e:
        return (
            f"the function's signature {sig} cannot take the reference's arguments "
            f"({e}); it should be {inspect.signature(reference)}"
        )
    return ""


def _split(result, exercise: Exercise, who: str):
    """The returned values as a tuple, or a message saying what is wrong."""
    n = len(exercise.outputs)
    if n == 1:
        return (result,), ""
    if not isinstance(result, (tuple, list)) or len(result) != n:
        got = (
            f"{len(result)} values"
            if isinstance(result, (tuple, list))
            else f"one {type(result).__name__}"
        )
        return None, (
            f"{who} should return {n} values ({', '.join(exercise.outputs)}), "
            f"it returned {got}"
        )
    return tuple(result), ""


def _compare(name, actual, expected, tol, against):
    """(error, message) comparing one returned value; message '' when it agrees."""
    if expected is None:
        if actual is not None:
            return None, f"{name} should be None, got {type(actual).__name__}"
        return None, ""
    if actual is None:
        return None, f"{name} is None"
    if isinstance(expected, np.ndarray) and expected.dtype.kind in "iu":
        return _compare_indices(name, actual, expected)
    try:
        a = np.asarray(actual)
    except Exception as e:  # noqa: BLE001 - any object a student might return
        return None, f"{name} is not an array ({type(actual).__name__}: {e})"
    e = np.asarray(expected)
    if a.shape != e.shape:
        return None, f"{name} has shape {a.shape}, expected {e.shape}"
    if a.dtype.kind not in "fiub":
        return None, f"{name} has dtype {a.dtype}, expected {e.dtype}"
    if isinstance(expected, np.ndarray) and a.dtype != e.dtype:
        return None, (
            f"{name} has dtype {a.dtype}, expected {e.dtype} (keep the dtype of "
            "the input)"
        )
    a = a.astype(np.float64)
    e = e.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        return float("nan"), f"{name} holds {a[bad]} at {bad} (expected {e[bad]:.6g})"
    err = rel_error(a, e)
    if err < tol:
        return err, ""
    msg = f"{name}: relative error {err:.1e} against {against} (tolerance {tol:g})"
    if a.ndim:
        where = np.unravel_index(np.argmax(np.abs(a - e)), a.shape)
        where = tuple(int(i) for i in where)
        msg += f"\nlargest difference at {where}: got {a[where]:.6g}, expected "
        msg += f"{e[where]:.6g}"
    else:
        msg += f"\ngot {float(a):.10g}, expected {float(e):.10g}"
    return err, msg


def _compare_indices(name, actual, expected):
    a = np.asarray(actual)
    if a.shape != expected.shape:
        return None, f"{name} has shape {a.shape}, expected {expected.shape}"
    if a.dtype.kind not in "iu":
        return None, f"{name} must be integers (int64), got dtype {a.dtype}"
    differ = a != expected
    if not differ.any():
        return None, ""
    first = tuple(int(i) for i in np.argwhere(differ)[0])
    return None, (
        f"{int(differ.sum())} of {a.size} {name} differ from the reference; the "
        f"first at {first}: got {a[first]}, expected {expected[first]}"
    )


def _inputs(reference, case: Case) -> dict:
    """The case's arguments by parameter name, for the report."""
    params = list(inspect.signature(reference).parameters)
    shown = dict(zip(params, case.args, strict=False))
    shown.update(case.kwargs)
    return shown


def _first_shape(case: Case):
    for a in (*case.args, *case.kwargs.values()):
        if isinstance(a, np.ndarray):
            return a.shape
    return None


def _run_case(exercise: Exercise, case: Case, fn) -> list[CheckResult]:
    shape = _first_shape(case)
    inputs = _inputs(exercise.reference, case)

    def fail(check, message, error=None, not_implemented=False):
        return CheckResult(
            case.label, check, shape, False, error, message, inputs, not_implemented
        )

    problem = _signature_problem(fn, exercise.reference, case)
    if problem:
        return [fail("output", problem)]
    expected = exercise.reference(*map(_copy, case.args), **case.kwargs)
    args = tuple(map(_copy, case.args))
    kwargs = {k: _copy(v) for k, v in case.kwargs.items()}
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the student's code may raise anything
        return [
            fail(
                "output",
                _describe_exception(e, exercise.name),
                not_implemented=isinstance(e, NotImplementedError),
            )
        ]
    for arg, before, after in zip(inputs, case.args, args, strict=False):
        if isinstance(before, np.ndarray) and not np.array_equal(
            before, after, equal_nan=True
        ):
            return [
                fail(
                    "output",
                    f"{exercise.name} changed its input {arg} in place; the caller "
                    "still needs it (work on a copy)",
                )
            ]

    got, message = _split(result, exercise, exercise.name)
    if got is None:
        return [fail("output", message)]
    want, _ = _split(expected, exercise, "the reference")
    checks = [
        _check(
            case,
            shape,
            inputs,
            "output",
            exercise.outputs,
            got,
            want,
            OUTPUT_TOL,
            "the reference",
        )
    ]
    if case.numeric is not None:
        numeric = case.numeric()
        keys = [k for k in exercise.outputs if k in numeric]
        mine = [got[exercise.outputs.index(k)] for k in keys]
        checks.append(
            _check(
                case,
                shape,
                inputs,
                "gradient",
                keys,
                mine,
                [numeric[k] for k in keys],
                GRAD_TOL,
                "centred differences",
            )
        )
    return checks


def _check(case, shape, inputs, check, keys, got, want, tol, against):
    errors, messages = [], []
    for key, a, e in zip(keys, got, want, strict=True):
        err, msg = _compare(key, a, e, tol, against)
        if err is not None:
            errors.append(err)
        if msg:
            messages.append(msg)
    error = None
    if errors:
        error = float("nan") if any(np.isnan(errors)) else max(errors)
    return CheckResult(
        case.label,
        check,
        shape,
        not messages,
        error,
        "\n".join(messages),
        inputs,
        tol=tol,
    )


# -- the public entry points ---------------------------------------------------------
def grade(name: str, fn, *, raise_on_fail: bool = False) -> GradeResult:
    """Check a student's implementation of one op of :mod:`npsegnet.reference`.

    Parameters
    ----------
    name : str
        The reference function the student re-implemented, e.g.
        ``"maxpool2d_forward"`` (see :func:`names`).
    fn : callable
        The student's function, with the signature of its reference twin. It
        is called on copies of the inputs; if it raises, the report says what
        and where, and grading carries on.
    raise_on_fail : bool
        Raise :class:`ExerciseFailed` (an ``AssertionError``) with the report
        instead of returning a falsy result.

    Returns
    -------
    GradeResult
        Truthy when every check passed. Its text is the report: each case
        with its input shape, check and relative error, then the first
        failure with its input printed when small.

    Raises
    ------
    ValueError
        If ``name`` is not an exercise; the message lists the valid names.

    Examples
    --------
    >>> import numpy as np
    >>> def relu_forward(x):
    ...     return np.maximum(x, 0)
    >>> bool(grade("relu_forward", relu_forward))
    True
    >>> print(grade("relu_forward", lambda x: x).first_failure.case)
    batch 1, odd size 3x5
    """
    exercise = get(name)
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    result = GradeResult(exercise.name)
    for case in exercise.cases():
        result.checks.extend(_run_case(exercise, case, fn))
    _GRADED[exercise.name] = result
    if raise_on_fail:
        result.assert_ok()
    return result


def solutions_enabled() -> bool:
    """True when ``$NPSEGNET_EXERCISE_SOLUTIONS`` is set (and not ``0``)."""
    return os.environ.get(SOLUTIONS_ENV, "") not in ("", "0")


def exercise(fn):
    """Mark a student's stub by the name of its reference twin.

    Returns ``fn`` unchanged, unless ``$NPSEGNET_EXERCISE_SOLUTIONS`` is set:
    then it returns the reference function instead, which is how CI runs the
    exercise notebook with every solution filled in.

    Raises
    ------
    ValueError
        If ``fn.__name__`` is not an exercise (a misspelt stub name).
    """
    reference = get(fn.__name__).reference
    return reference if solutions_enabled() else fn


@dataclass
class Summary:
    """The latest grade of every exercise graded in this session."""

    results: dict[str, GradeResult]

    @property
    def passed(self) -> bool:
        """Every exercise graded so far passed."""
        return all(self.results.values())

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        done = sum(bool(r) for r in self.results.values())
        lines = [f"{done} of the {len(self.results)} exercises graded so far pass"]
        for name, r in self.results.items():
            status = (
                "not implemented yet"
                if r.not_implemented
                else "pass"
                if r
                else f"FAIL ({r.first_failure.case})"
            )
            lines.append(f"  {name:<32}{status}")
        rest = [n for n in names() if n not in self.results]
        if rest:
            lines.append(f"not graded in this session: {', '.join(rest)}")
        return "\n".join(lines)

    __repr__ = __str__


def summary(strict: bool | None = None) -> Summary:
    """The latest grade of each exercise graded in this session.

    Parameters
    ----------
    strict : bool, optional
        Raise :class:`ExerciseFailed` if any of them failed. By default
        strict exactly when ``$NPSEGNET_EXERCISE_SOLUTIONS`` is set, so that
        CI, which runs the notebook with the references filled in, fails
        there.
    """
    board = Summary(dict(_GRADED))
    if strict is None:
        strict = solutions_enabled()
    if strict and not board:
        raise ExerciseFailed(str(board))
    return board
