"""ReLU kernels: the Numba twins of :mod:`npsegnet.reference.relu`.

One pass each way, in parallel over the ``N * C`` planes (over chunks of a flat
array for other shapes); the layer keeps the output, which its backward pass
reads instead of the input.
"""

from __future__ import annotations

from numba import prange

from .._checks import check_float_array
from ..config import njit
from ._layout import _rows
from ._workspace import output_array


@njit(parallel=True)
def _relu_fwd(x, out):
    """out = max(x, 0) over the rows of a 2-d view; NaN passes through."""
    R, L = x.shape
    zero = x.dtype.type(0)
    for r in prange(R):
        xr = x[r]
        orow = out[r]
        for i in range(L):
            v = xr[i]
            orow[i] = zero if v <= zero else v


@njit(parallel=True)
def _relu_bwd(dout, out, dx):
    """dx = dout where out > 0, else 0, over the rows of a 2-d view."""
    R, L = dout.shape
    zero = dout.dtype.type(0)
    for r in prange(R):
        gr = dout[r]
        orow = out[r]
        dr = dx[r]
        for i in range(L):
            dr[i] = gr[i] if orow[i] > zero else zero


def relu_forward(x, out=None):
    """``out = max(x, 0)`` elementwise.

    Parameters
    ----------
    x : ndarray of any shape
        float32 or float64.
    out : ndarray, optional
        Where to write the result (shape and dtype of ``x``, C-contiguous, not
        overlapping ``x``); a new array by default.

    Returns
    -------
    out : ndarray of the shape and dtype of ``x``
        ``x`` where ``x > 0``, else 0 (``-0.0`` becomes ``+0.0``; NaN stays NaN).
    """
    x = check_float_array(x, "x")
    out = output_array(out, x.shape, x.dtype, inputs=(x,))
    _relu_fwd(_rows(x), _rows(out))
    return out


def relu_backward(dout, out, dx=None):
    """Gradient of ReLU, given the forward **output**.

    Parameters
    ----------
    dout : ndarray
        Upstream gradient, the shape and dtype of ``out``.
    out : ndarray
        The output of :func:`relu_forward`.
    dx : ndarray, optional
        Where to write the result (as ``out=`` of :func:`relu_forward`).

    Returns
    -------
    dx : ndarray of the shape and dtype of ``dout``
        ``dout`` where ``out > 0``, else 0: ReLU'(0) = 0.
    """
    dout = check_float_array(dout, "dout")
    out = check_float_array(out, "out", dtype=dout.dtype)
    if out.shape != dout.shape:
        raise ValueError(
            f"dout must have the shape of the forward output {out.shape}, "
            f"got {dout.shape}"
        )
    dx = output_array(dx, dout.shape, dout.dtype, "dx", inputs=(dout, out))
    _relu_bwd(_rows(dout), _rows(out), _rows(dx))
    return dx
