"""Argument checks shared by kernels, layers and models.

Every public entry point validates its inputs here before any Numba kernel runs,
so that bad input ends in a ``TypeError`` or ``ValueError`` that names the
argument and what was expected, never in a Numba traceback or a silent wrong
answer.
"""

from __future__ import annotations

import math

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


# -- pooling and unpooling (npsegnet.reference.pool, npsegnet.kernels.pool) ------
def pool_output_size(size: int, kernel: int, stride: int, ceil_mode: bool) -> int:
    """Length of the pooled axis: PyTorch's rule without padding.

    ``floor((size - kernel) / stride) + 1``, or with ``ceil_mode``
    ``ceil((size - kernel) / stride) + 1`` less one if the last window would
    start outside the input (it may hang over the edge, never start past it).
    May be < 1, which the callers reject.
    """
    if ceil_mode:
        out = math.ceil((size - kernel) / stride) + 1
        if (out - 1) * stride >= size:
            out -= 1
        return out
    return (size - kernel) // stride + 1


def _check_pool_args(x, kernel_size, stride, ceil_mode):
    """Check maxpool2d_forward's arguments.

    Returns x, (KH, KW), (SH, SW) and the pooled size (H_out, W_out).
    """
    x = check_float_array(x, "x", ndim=4)
    kernel = check_pair(kernel_size, "kernel_size")
    step = check_pair(stride, "stride")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    H, W = x.shape[2:]
    out = tuple(
        pool_output_size(n, k, s, bool(ceil_mode))
        for n, k, s in zip((H, W), kernel, step, strict=True)
    )
    if min(out) < 1:
        raise ValueError(
            f"kernel_size {kernel} is larger than the input x of spatial size "
            f"{(H, W)} (stride {step}, ceil_mode={bool(ceil_mode)}): "
            f"the pooled size would be {out}"
        )
    return x, kernel, step, out


def _check_shape4(shape, name):
    """A 4-tuple of positive ints (an array shape), e.g. ``input_shape``."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"{name} must be a 4-tuple (N, C, H, W), got {shape!r}")
    for d, v in enumerate(shape):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (d >= 2):
            raise ValueError(
                f"{name} must hold ints N, C >= 0 and H, W >= 1, got {shape!r}"
            )
    return tuple(int(v) for v in shape)


def _check_indices(indices, like, like_name):
    """Integer indices of the shape of ``like``, returned as C-contiguous int64."""
    indices = check_int_array(indices, "indices", ndim=4)
    if indices.shape != like.shape:
        raise ValueError(
            f"indices must have the shape of {like_name} {like.shape}, "
            f"got {indices.shape}"
        )
    return np.ascontiguousarray(indices, dtype=np.int64)


def _check_index_range(indices, H, W, what):
    """Every index must address a cell of an (H, W) plane."""
    if indices.size == 0:
        return
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= H * W:
        bad = lo if lo < 0 else hi
        _raise_index_error(bad, H, W, what)


def _raise_index_error(bad, H, W, what):
    raise ValueError(
        f"indices out of range: found {bad}, but each (n, c) plane of the {what} "
        f"has {H}x{W} = {H * W} cells (valid indices 0..{H * W - 1})"
    )


def _check_backward_args(dout, indices, input_shape):
    dout = check_float_array(dout, "dout", ndim=4)
    indices = _check_indices(indices, dout, "dout")
    input_shape = _check_shape4(input_shape, "input_shape")
    if input_shape[:2] != dout.shape[:2]:
        raise ValueError(
            f"input_shape {input_shape} and dout {dout.shape} disagree on (N, C)"
        )
    return dout, indices, input_shape


def _output_hw(output_size, x):
    """``output_size`` as (H, W) or a full (N, C, H, W) shape; return (H, W)."""
    if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
        raise ValueError(
            "output_size must be (H, W) or a full shape (N, C, H, W), "
            f"got {output_size!r}"
        )
    for v in output_size:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(
                f"output_size must hold positive ints, got {output_size!r}"
            )
    if len(output_size) == 4 and tuple(output_size[:2]) != x.shape[:2]:
        # PyTorch ignores the leading two entries; a mismatch here is a bug upstream.
        raise ValueError(
            f"output_size {tuple(output_size)} and x {x.shape} disagree on (N, C)"
        )
    return int(output_size[-2]), int(output_size[-1])


def _check_unpool_args(x, indices, output_size):
    x = check_float_array(x, "x", ndim=4)
    indices = _check_indices(indices, x, "x")
    H_out, W_out = _output_hw(output_size, x)
    return x, indices, (H_out, W_out)


# -- the loss (npsegnet.reference.loss, npsegnet.kernels.loss, the layer) -------
def check_loss_inputs(logits, targets, weight=None, ignore_index=None):
    """Validate the arguments of the loss functions (twins and layer share it).

    Checks types and shapes; the range of the target values is checked by
    :func:`check_target_values` (or, in the kernels, during their first pass).

    Returns
    -------
    logits : ndarray of shape (N, K, H, W), C-contiguous
    targets : ndarray of int of shape (N, H, W), C-contiguous
    weight : ndarray of shape (K,) float64, or None
    ignore_index : int or None
    """
    if not isinstance(logits, np.ndarray):
        raise TypeError(f"logits must be a NumPy array, got {type(logits).__name__}")
    if logits.dtype.name not in ("float32", "float64"):
        raise TypeError(
            f"logits must have dtype float32 or float64, got {logits.dtype}"
        )
    if logits.ndim != 4:
        raise ValueError(
            f"logits must be a 4-d array (N, K, H, W), got shape {logits.shape}"
        )
    if not isinstance(targets, np.ndarray):
        raise TypeError(f"targets must be a NumPy array, got {type(targets).__name__}")
    if targets.dtype.kind not in "iu":
        raise TypeError(
            f"targets must have an integer dtype (class indices), got {targets.dtype}"
        )
    N, K, H, W = logits.shape
    if targets.shape != (N, H, W):
        raise ValueError(
            f"targets must have shape (N, H, W) = {(N, H, W)} to match logits "
            f"{logits.shape}, got {targets.shape}"
        )
    if weight is not None:
        w = np.asarray(weight)
        if w.dtype.kind not in "iuf":
            raise TypeError(f"weight must be a real array, got dtype {w.dtype}")
        w = w.astype(np.float64)
        if w.shape != (K,):
            raise ValueError(
                f"weight must have shape ({K},) (one per class), got {w.shape}"
            )
        if not np.all(np.isfinite(w)):
            raise ValueError("weight must be finite")
        if np.any(w < 0):
            raise ValueError(
                f"weight must be >= 0, got {w.min()} for class {w.argmin()}"
            )
        weight = w
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(
            ignore_index, (int, np.integer)
        ):
            kind = type(ignore_index).__name__
            raise TypeError(f"ignore_index must be an int or None, got {kind}")
        ignore_index = int(ignore_index)
    return (
        np.ascontiguousarray(logits),
        np.ascontiguousarray(targets),
        weight,
        ignore_index,
    )


def bad_target_message(value, K, ignore_index):
    """The error message for a target value outside [0, K)."""
    extra = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
    return f"targets contain the value {value}, outside [0, {K}){extra}"


def check_target_values(targets, K, ignore_index):
    """Raise ``ValueError`` naming the first target outside [0, K) (not ignored)."""
    t = targets.astype(np.int64)
    bad = (t < 0) | (t >= K)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bad.any():
        raise ValueError(
            bad_target_message(t.reshape(-1)[bad.argmax()], K, ignore_index)
        )
