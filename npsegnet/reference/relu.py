"""The rectified linear unit, in plain NumPy.

Nair & Hinton, "Rectified Linear Units Improve Restricted Boltzmann Machines",
ICML 2010. Fast twins of the same names and signatures live in
:mod:`npsegnet.kernels.relu`.

Convention (``docs/conventions.md``): ReLU'(0) = 0, as PyTorch and micrograd;
a NaN input gives a NaN output (as ``torch.relu``) and a zero gradient.
"""

from __future__ import annotations

import numpy as np


def relu_forward(x):
    """``out = max(x, 0)`` elementwise.

    Parameters
    ----------
    x : ndarray of any shape
        float32 or float64.

    Returns
    -------
    out : ndarray of the shape and dtype of ``x``
        ``x`` where ``x > 0``, else 0 (``-0.0`` becomes ``+0.0``; NaN stays NaN).
    """
    # x <= 0 is False for NaN, so NaN passes through as in torch.relu
    return np.where(x <= 0, np.zeros((), x.dtype), x)


def relu_backward(dout, out):
    """Gradient of ReLU, given the forward **output**.

    Parameters
    ----------
    dout : ndarray
        Upstream gradient, the shape of ``out``.
    out : ndarray
        The output of :func:`relu_forward` (``out > 0`` exactly where ``x > 0``,
        so the output is all the backward pass needs, and the next layer keeps
        it alive anyway).

    Returns
    -------
    dx : ndarray of the shape and dtype of ``dout``
        ``dout`` where ``out > 0``, else 0: ReLU'(0) = 0.
    """
    return np.where(out > 0, dout, np.zeros((), dout.dtype))
