"""Numerical gradient checks: how to trust a hand-written backward pass.

A backward pass is right when it agrees with centred differences,

    df/dx_i  ~  (f(x + h e_i) - f(x - h e_i)) / (2 h),

whose error is O(h^2). In float64 with ``h = 1e-6`` the agreement of a correct
backward pass is typically 1e-9 to 1e-11 in relative error; a wrong one is off by
1e-2 or more. Kinks break the comparison: ReLU at 0 and a max-pool window with
two tied maxima are not differentiable there, so checks use inputs away from
them (see ``docs/conventions.md``).

The three building blocks

* :func:`numerical_gradient` of a scalar function,
* :func:`numerical_gradient_array` of an array function dotted with an upstream
  gradient ``dout``,
* :func:`rel_error`,

and :func:`check_layer`, which runs a layer's (or a whole model's) forward and
backward and compares the input gradient and every parameter gradient with
their numerical counterparts, returning a :class:`GradCheckReport`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def rel_error(analytic, numeric) -> float:
    """Relative error ``||a - n|| / (||a|| + ||n||)`` (0 when both are 0).

    A norm-wise ratio rather than the element-wise maximum: entries of a
    gradient that are nearly zero would otherwise dominate with noise.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shapes differ: analytic {a.shape}, numeric {n.shape}")
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    if denom == 0.0:
        return 0.0
    return float(np.linalg.norm(a - n) / denom)


def _entries(x: np.ndarray, max_entries: int | None, rng) -> np.ndarray:
    """Flat indices of the entries of ``x`` to perturb (all, or a sample)."""
    if max_entries is None or x.size <= max_entries:
        return np.arange(x.size)
    return np.sort(rng.choice(x.size, size=max_entries, replace=False))


def numerical_gradient(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    h: float = 1e-6,
    entries: np.ndarray | None = None,
) -> np.ndarray:
    """Centred-difference gradient of a scalar function.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``. It is called with ``x`` perturbed in place.
    x : ndarray
        The point; restored exactly on return.
    h : float
        Step.
    entries : ndarray of int, optional
        Flat indices to perturb; the others are left 0 in the result.

    Returns
    -------
    ndarray of the shape of ``x``
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: x must be contiguous
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    for i in range(x.size) if entries is None else entries:
        old = flat[i]
        flat[i] = old + h
        plus = float(f(x))
        flat[i] = old - h
        minus = float(f(x))
        flat[i] = old
        grad.reshape(-1)[i] = (plus - minus) / (2.0 * h)
    return grad


def numerical_gradient_array(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    dout: np.ndarray,
    h: float = 1e-6,
    entries: np.ndarray | None = None,
) -> np.ndarray:
    """Centred-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    This is what a backward pass computes given the upstream gradient ``dout``.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of the shape of ``dout``.
    x : ndarray
        The point; perturbed in place and restored.
    dout : ndarray
        Upstream gradient.
    h : float
        Step.
    entries : ndarray of int, optional
        Flat indices to perturb; the others are left 0 in the result.

    Returns
    -------
    ndarray of the shape of ``x``
    """
    dout = np.asarray(dout, dtype=np.float64)
    return numerical_gradient(
        lambda z: float(np.sum(np.asarray(f(z), dtype=np.float64) * dout)),
        x,
        h=h,
        entries=entries,
    )


@dataclass
class GradCheckRow:
    """One compared gradient: ``name`` is ``"x"`` or a parameter key."""

    name: str
    shape: tuple
    rel_error: float
    checked: int  # how many entries were perturbed


@dataclass
class GradCheckReport:
    """The relative error of each gradient a layer computes."""

    layer: str
    rows: list[GradCheckRow] = field(default_factory=list)
    tol: float = 1e-7

    @property
    def max_error(self) -> float:
        """The largest relative error (nan if any is nan)."""
        errors = [r.rel_error for r in self.rows]
        if any(np.isnan(e) for e in errors):
            return float("nan")
        return max(errors, default=0.0)

    @property
    def passed(self) -> bool:
        """Every error below ``tol``; a nan error (a nan gradient) fails."""
        return bool(self.rows) and all(r.rel_error < self.tol for r in self.rows)

    def __getitem__(self, name: str) -> float:
        for row in self.rows:
            if row.name == name:
                return row.rel_error
        raise KeyError(name)

    def __str__(self) -> str:
        lines = [f"gradient check of {self.layer} (pass: rel. error < {self.tol:g})"]
        lines.append(f"  {'gradient':<28}{'shape':<20}{'checked':>8}  rel. error")
        for r in self.rows:
            mark = "ok" if r.rel_error < self.tol else "FAIL"
            lines.append(
                f"  {r.name:<28}{str(r.shape):<20}{r.checked:>8}  "
                f"{r.rel_error:.2e}  {mark}"
            )
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{r.name}</td><td>{r.shape}</td><td>{r.checked}</td>"
            f"<td>{r.rel_error:.2e}</td>"
            f"<td>{'ok' if r.rel_error < self.tol else 'FAIL'}</td></tr>"
            for r in self.rows
        )
        return (
            f"<p>gradient check of <b>{self.layer}</b> "
            f"(pass: relative error &lt; {self.tol:g})</p>"
            "<table><tr><th>gradient</th><th>shape</th><th>checked</th>"
            f"<th>rel. error</th><th></th></tr>{body}</table>"
        )

    def assert_ok(self) -> GradCheckReport:
        """Raise ``AssertionError`` with the table if any error is >= ``tol``."""
        if not self.passed:
            raise AssertionError(str(self))
        return self


def _differentiable_output(out):
    """The array a backward pass receives the gradient of.

    Pooling returns ``(y, indices)``: only ``y`` is differentiable. A loss
    returns a float.
    """
    if isinstance(out, tuple):
        out = out[0]
    return np.asarray(out, dtype=np.float64)


def check_layer(
    layer,
    x: np.ndarray,
    *args,
    h: float = 1e-6,
    tol: float = 1e-7,
    max_entries: int | None = None,
    params: bool = True,
    seed: int = 0,
    **kwargs,
) -> GradCheckReport:
    """Compare a layer's backward pass with centred differences.

    Runs ``out = layer.forward(x, *args, **kwargs)``, draws a random upstream
    gradient ``dout`` of the shape of ``out`` (for a loss, which returns a
    float, ``dout = 1``), calls ``layer.backward(dout)``, and compares the
    returned input gradient and every ``layer.grads[k]`` with the numerical
    gradient of ``sum(forward(...) * dout)``. Works for any module with this
    contract, a whole model included.

    Parameters
    ----------
    layer : Module
        In float64 (``layer.astype(np.float64)``), in the mode to check.
    x : ndarray
        The differentiated input, float64. Further positional and keyword
        arguments (pooling indices, loss targets) are passed to ``forward``
        unchanged.
    h : float
        Finite-difference step.
    tol : float
        Relative error below which the check passes.
    max_entries : int, optional
        Perturb at most this many entries of each array (a random sample),
        for large models; ``None`` checks every entry.
    params : bool
        Also check parameter gradients.
    seed : int
        Seed of ``dout`` and of the entry sample.

    Returns
    -------
    GradCheckReport
        One row for ``"x"`` and one for each parameter; ``report.assert_ok()``
        raises when any relative error reaches ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> from npsegnet.layers import ReLU
    >>> x = np.array([[[[-1.0, 0.5], [2.0, -0.3]]]])
    >>> check_layer(ReLU(), x).passed
    True
    """
    rng = np.random.default_rng(seed)
    if x.dtype != np.float64:
        raise TypeError(
            f"gradient checks need float64 input, got {x.dtype} "
            "(use x.astype(np.float64) and layer.astype(np.float64))"
        )
    x = np.ascontiguousarray(x)

    def run(z):
        return layer.forward(z, *args, **kwargs)

    out = run(x)
    is_loss = not isinstance(out, tuple) and np.ndim(out) == 0
    if is_loss:
        dout = 1.0
    else:
        y = _differentiable_output(out)
        dout = rng.standard_normal(y.shape).astype(x.dtype)

    def scalar(z):
        return float(np.sum(_differentiable_output(run(z)) * dout))

    for g in layer.grads.values():
        g.fill(0)
    dx = layer.backward(dout)
    analytic = {"x": np.array(dx, dtype=np.float64)}
    if params:
        analytic.update({k: g.astype(np.float64) for k, g in layer.grads.items()})

    report = GradCheckReport(layer=type(layer).__name__, tol=tol)
    targets = {"x": x, **(layer.params if params else {})}
    for name, target in targets.items():
        entries = _entries(target, max_entries, rng)
        # a parameter is perturbed in place; the forward pass still takes x
        f = scalar if name == "x" else (lambda _, x=x: scalar(x))
        numeric = numerical_gradient(f, target, h=h, entries=entries)
        a = analytic[name].reshape(-1)[entries]
        n = numeric.reshape(-1)[entries]
        report.rows.append(
            GradCheckRow(name, tuple(target.shape), rel_error(a, n), len(entries))
        )
    return report
