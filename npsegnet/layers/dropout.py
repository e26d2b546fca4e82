"""Inverted dropout as a layer, with Monte-Carlo dropout for Bayesian SegNet."""

from __future__ import annotations

import numpy as np

from .._checks import check_float_array
from ..config import DEFAULT_DTYPE
from ..kernels.dropout import check_p, dropout_backward, dropout_forward, dropout_mask
from .base import Module


class Dropout(Module):
    """Zero each unit with probability ``p`` and scale the kept ones by 1 / (1 - p).

    Parameters
    ----------
    p : float
        Drop probability in [0, 1); 0.5 in Bayesian SegNet.
    seed : int or numpy.random.Generator, optional
        Seeds the layer's own generator (``np.random.default_rng(seed)``);
        ``None`` draws fresh entropy.
    always_on : bool
        Keep dropping in evaluation mode too: Monte-Carlo dropout (Bayesian
        SegNet, arXiv 1511.02680), where the prediction averages the softmax of
        several stochastic forward passes. Also an attribute, settable later.
    dtype : dtype
        Kept for the common layer signature; the layer has no parameters and
        takes float32 and float64 input alike.

    Notes
    -----
    In training mode (or with ``always_on``) each ``forward`` draws a new
    boolean keep-mask (``mask`` attribute, True = kept). In evaluation mode
    without ``always_on`` the layer is the identity and returns its input
    unchanged (the same object, as PyTorch); so is ``p = 0``.

    For a gradient check the mask must not change between the evaluations of
    ``forward``: after one forward, call :meth:`freeze` and every following
    forward reuses :attr:`mask` (the input shape must then match) until
    :meth:`unfreeze`. :meth:`reseed` restarts the generator.

    Shape
    -----
    Any shape in, the same shape out.
    """

    def __init__(self, p=0.5, seed=None, always_on=False, dtype=DEFAULT_DTYPE):
        super().__init__(dtype=dtype)
        self.p = check_p(p)
        self.rng = np.random.default_rng(seed)
        self.always_on = bool(always_on)
        self.mask: np.ndarray | None = None
        self.frozen = False
        self._active = False  # whether the last forward dropped

    def reseed(self, seed) -> None:
        """Restart the generator from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def freeze(self) -> Dropout:
        """Reuse the last mask in every following forward (for gradient checks)."""
        if self.mask is None:
            raise RuntimeError("Dropout.freeze needs a mask: run forward once first")
        self.frozen = True
        return self

    def unfreeze(self) -> Dropout:
        """Draw a new mask in every forward again."""
        self.frozen = False
        return self

    def forward(self, x):
        """Drop and rescale (training / ``always_on``) or pass through.

        Parameters
        ----------
        x : ndarray of any shape
            float32 or float64.

        Returns
        -------
        out : ndarray of the shape and dtype of ``x``
        """
        x = check_float_array(x, "x")
        self._active = (self.training or self.always_on) and self.p > 0.0
        if not self._active:
            return x
        if self.frozen:
            if self.mask.shape != x.shape:
                raise ValueError(
                    f"the frozen mask has shape {self.mask.shape} but x has shape "
                    f"{x.shape}; call unfreeze() to draw a new mask"
                )
        else:
            self.mask = dropout_mask(x.shape, self.p, self.rng)
        return dropout_forward(x, self.mask, self.p)

    def backward(self, dout):
        """The same mask and scale applied to ``dout`` (identity if inactive).

        Parameters
        ----------
        dout : ndarray of the shape of the forward output

        Returns
        -------
        dx : ndarray
        """
        if not self._active:
            return dout
        return dropout_backward(dout, self.mask, self.p)

    def __repr__(self) -> str:
        on = ", always_on=True" if self.always_on else ""
        return f"Dropout(p={self.p:g}{on})"
