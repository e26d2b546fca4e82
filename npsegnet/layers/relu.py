"""The rectified linear unit as a layer."""

from __future__ import annotations

import numpy as np

from .._checks import check_float_array
from ..config import DEFAULT_DTYPE
from ..kernels.relu import relu_backward, relu_forward
from .base import Module


class ReLU(Module):
    """``out = max(x, 0)``; ReLU'(0) = 0 (``docs/conventions.md``).

    It has no parameters, so it takes float32 and float64 input whatever its
    ``dtype``. It keeps the forward **output** for the backward pass (where
    ``out > 0`` is where ``x > 0``); the input is not kept.

    Shape
    -----
    Any shape in, the same shape out.
    """

    def __init__(self, dtype=DEFAULT_DTYPE):
        super().__init__(dtype=dtype)
        self._out: np.ndarray | None = None

    def forward(self, x):
        """``max(x, 0)``.

        Parameters
        ----------
        x : ndarray of any shape (N, C, H, W) usually

        Returns
        -------
        out : ndarray of the shape and dtype of ``x``
        """
        x = check_float_array(x, "x")
        self._out = relu_forward(x)
        return self._out

    def backward(self, dout):
        """``dout`` where the forward output was > 0, else 0.

        Parameters
        ----------
        dout : ndarray of the shape of the forward output

        Returns
        -------
        dx : ndarray
        """
        if self._out is None:
            raise RuntimeError("ReLU.backward called before forward")
        dout = check_float_array(dout, "dout", dtype=self._out.dtype)
        return relu_backward(dout, self._out)
