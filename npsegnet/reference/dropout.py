"""Inverted dropout, in plain NumPy.

Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting", JMLR 2014. Bayesian SegNet (Kendall et al., arXiv 1511.02680)
keeps it on at test time and averages the softmax of several samples.

*Inverted* dropout scales the kept units by ``1 / (1 - p)`` during training, so
that the expectation of every unit is unchanged and evaluation is the identity.
The random mask is drawn by the caller (the layer owns the generator), which
keeps these functions deterministic: the same mask gives the same output. Fast
twins live in :mod:`npsegnet.kernels.dropout`.
"""

from __future__ import annotations

import numpy as np


def dropout_mask(shape, p, rng):
    """Draw a keep-mask: each entry is True with probability ``1 - p``.

    Parameters
    ----------
    shape : tuple of int
    p : float
        Drop probability in [0, 1).
    rng : numpy.random.Generator

    Returns
    -------
    mask : ndarray of bool of shape ``shape``
    """
    # float32 uniforms on the grid k / 2**24: P(u >= p) = 1 - p up to 6e-8
    return rng.random(shape, dtype=np.float32) >= np.float32(p)


def dropout_forward(x, mask, p):
    """``out = x * mask / (1 - p)``.

    Parameters
    ----------
    x : ndarray of any shape
        float32 or float64.
    mask : ndarray of bool of the shape of ``x``
        True where the unit is kept.
    p : float
        The drop probability the mask was drawn with, in [0, 1).

    Returns
    -------
    out : ndarray of the shape and dtype of ``x``
    """
    scale = x.dtype.type(1.0 / (1.0 - p))
    return np.where(mask, x * scale, np.zeros((), x.dtype))


def dropout_backward(dout, mask, p):
    """Gradient of :func:`dropout_forward`: the same mask and scale.

    Parameters
    ----------
    dout : ndarray
        Upstream gradient, the shape of ``mask``.
    mask : ndarray of bool
    p : float

    Returns
    -------
    dx : ndarray of the shape and dtype of ``dout``
        ``dout * mask / (1 - p)``.
    """
    scale = dout.dtype.type(1.0 / (1.0 - p))
    return np.where(mask, dout * scale, np.zeros((), dout.dtype))
