"""Dropout kernels: the Numba twins of :mod:`npsegnet.reference.dropout`.

Forward and backward are the same one-pass masked scaling; the mask comes from
the caller (:func:`dropout_mask`, which the layer calls with its generator).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._checks import check_float_array
from ..config import njit
from ._layout import _rows
from ._workspace import output_array, workspace


@njit(parallel=True)
def _masked_scale(x, mask, scale, out):
    """out = x * scale where mask, else 0, over the rows of 2-d views."""
    R, L = x.shape
    zero = x.dtype.type(0)
    for r in prange(R):
        xr = x[r]
        mr = mask[r]
        orow = out[r]
        for i in range(L):
            orow[i] = xr[i] * scale if mr[i] else zero


def check_p(p) -> float:
    """A drop probability: a real number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"p must be a float in [0, 1), got {type(p).__name__}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1) (the probability of dropping), got {p}")
    return float(p)


def _apply(x, mask, p, name, out=None):
    x = check_float_array(x, name)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"mask must be a boolean NumPy array, got {got}")
    if mask.shape != x.shape:
        raise ValueError(
            f"mask must have the shape of {name} {x.shape}, got {mask.shape}"
        )
    p = check_p(p)
    mask = np.ascontiguousarray(mask)
    out = output_array(out, x.shape, x.dtype, "dx" if name == "dout" else "out", (x,))
    _masked_scale(_rows(x), _rows(mask), x.dtype.type(1.0 / (1.0 - p)), _rows(out))
    return out


def dropout_forward(x, mask, p, out=None):
    """``out = x * mask / (1 - p)``.

    Parameters
    ----------
    x : ndarray of any shape
        float32 or float64.
    mask : ndarray of bool of the shape of ``x``
        True where the unit is kept.
    p : float
        The drop probability the mask was drawn with, in [0, 1).
    out : ndarray, optional
        Where to write the result (shape and dtype of ``x``, C-contiguous, not
        overlapping ``x``); a new array by default.

    Returns
    -------
    out : ndarray of the shape and dtype of ``x``
    """
    return _apply(x, mask, p, "x", out)


def dropout_backward(dout, mask, p, dx=None):
    """Gradient of :func:`dropout_forward`: ``dout * mask / (1 - p)``.

    Parameters
    ----------
    dout : ndarray
        Upstream gradient, the shape of ``mask``.
    mask : ndarray of bool
    p : float
    dx : ndarray, optional
        Where to write the result (as ``out=`` of :func:`dropout_forward`).

    Returns
    -------
    dx : ndarray of the shape and dtype of ``dout``
    """
    return _apply(dout, mask, p, "dout", dx)


def dropout_mask(shape, p, rng, out=None):
    """Draw a keep-mask: each entry is True with probability ``1 - p``.

    The same draws as :func:`npsegnet.reference.dropout.dropout_mask` (the
    generator decides; there is no loop to compile).

    Parameters
    ----------
    shape : tuple of int
    p : float
        Drop probability in [0, 1).
    rng : numpy.random.Generator
    out : ndarray of bool of shape ``shape``, optional
        Where to write the mask (C-contiguous); a new array by default. The
        draws are the same either way.

    Returns
    -------
    mask : ndarray of bool of shape ``shape``
    """
    # float32 uniforms on the grid k / 2**24: P(u >= p) = 1 - p up to 6e-8
    p = np.float32(check_p(p))
    if out is None:
        return rng.random(shape, dtype=np.float32) >= p
    out = output_array(out, shape, np.bool_)
    uniforms = workspace("dropout_uniforms", out.shape, np.float32)
    rng.random(out.shape, dtype=np.float32, out=uniforms)
    return np.greater_equal(uniforms, p, out=out)
