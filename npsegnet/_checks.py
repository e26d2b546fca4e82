"""Argument checks shared by kernels, layers and models.

Every public entry point validates its inputs here before any Numba kernel runs,
so that bad input ends in a ``TypeError`` or ``ValueError`` that names the
argument and what was expected, never in a Numba traceback or a silent wrong
answer.
"""

from __future__ import annotations

import numpy as np

from .config import FLOAT_DTYPES


def check_float_array(x, name: str, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Check that ``x`` is a float32/float64 ndarray of rank ``ndim``.

    Parameters
    ----------
    x : object
        The value to check.
    name : str
        The argument's name, used in the error message.
    ndim : int, optional
        Required number of dimensions (4 for NCHW).
    dtype : dtype, optional
        Required dtype (for example the dtype of a layer's parameters).

    Returns
    -------
    ndarray
        ``x`` itself, made C-contiguous if it was not.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype.name not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        layout = {4: " (N, C, H, W)", 3: " (N, H, W)"}.get(ndim, "")
        raise ValueError(
            f"{name} must be a {ndim}-d array{layout}, got shape {tuple(x.shape)}"
        )
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} has dtype {x.dtype} but {np.dtype(dtype)} was expected "
            f"(the layer's parameters are {np.dtype(dtype)}; call .astype() on the "
            "layer or convert the input)"
        )
    return np.ascontiguousarray(x)


def check_int_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """Check that ``x`` is an integer ndarray of rank ``ndim``; return it."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {tuple(x.shape)}")
    return np.ascontiguousarray(x)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an int >= ``minimum``; return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """Accept an int or a pair of ints (as PyTorch does); return a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (
            check_positive_int(value[0], name, minimum),
            check_positive_int(value[1], name, minimum),
        )
    v = check_positive_int(value, name, minimum)
    return (v, v)


def check_choice(value, name: str, choices) -> str:
    """Check that ``value`` is one of ``choices`` (strings); return it."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_scale_pair(value, name: str) -> tuple[float, float]:
    """Accept a positive number or a pair of them; return a pair of floats."""
    from numbers import Real  # NumPy's float and int scalars register as Real

    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a number or a pair of numbers, got {value!r}")
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError(f"{name} must be a number or a pair, got {value!r}")
        if not v > 0 or not np.isfinite(v):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return (float(pair[0]), float(pair[1]))
