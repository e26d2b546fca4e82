"""The rectified linear unit as a layer."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_float_array
from ..config import DEFAULT_DTYPE
from ..kernels.relu import relu_backward, relu_forward
from .base import Module


class ReLUCache(NamedTuple):
    """What :meth:`ReLU.backward` needs from the forward pass."""

    out: np.ndarray  # the forward output: out > 0 exactly where x > 0


class ReLU(Module):
    """``out = max(x, 0)``; ReLU'(0) = 0 (``docs/conventions.md``).

    It has no parameters, so it takes float32 and float64 input whatever its
    ``dtype``. It keeps the forward **output** in ``cache`` for the backward
    pass (where ``out > 0`` is where ``x > 0``); the input is not kept.

    Shape
    -----
    Any shape in, the same shape out.
    """

    def __init__(self, dtype=DEFAULT_DTYPE):
        super().__init__(dtype=dtype)
        self.cache: ReLUCache | None = None

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
        out = relu_forward(x, **self._reused(out=(x.shape, x.dtype)))
        self.cache = ReLUCache(out)
        return out

    def backward(self, dout):
        """``dout`` where the forward output was > 0, else 0.

        Parameters
        ----------
        dout : ndarray of the shape of the forward output

        Returns
        -------
        dx : ndarray
        """
        if self.cache is None:
            raise RuntimeError("ReLU.backward called before forward")
        out = self.cache.out
        dout = check_float_array(dout, "dout", dtype=out.dtype)
        return relu_backward(dout, out, **self._reused(dx=(dout.shape, dout.dtype)))
