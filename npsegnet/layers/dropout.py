"""Inverted dropout as a layer, with Monte-Carlo dropout for Bayesian SegNet."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_float_array
from ..config import DEFAULT_DTYPE
from ..kernels.dropout import check_p, dropout_backward, dropout_forward, dropout_mask
from .base import Module


class DropoutCache(NamedTuple):
    """What :meth:`Dropout.backward` needs from the forward pass."""

    # the keep-mask of the forward (True = kept), or None when the forward
    # passed its input through (evaluation mode without always_on, or p = 0)
    mask: np.ndarray | None


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
    boolean keep-mask (True = kept), which it keeps in ``cache`` for
    ``backward`` and which :attr:`mask` shows. In evaluation mode without
    ``always_on`` the layer is the identity and returns its input unchanged
    (the same object, as PyTorch); so is ``p = 0``.

    For a gradient check the mask must not change between the evaluations of
    ``forward``: after one forward, call :meth:`freeze` and every following
    forward reuses that mask (the input shape must then match) until
    :meth:`unfreeze`; a frozen mask survives :meth:`clear_cache`.
    :meth:`reseed` restarts the generator.

    Shape
    -----
    Any shape in, the same shape out.
    """

    def __init__(self, p=0.5, seed=None, always_on=False, dtype=DEFAULT_DTYPE):
        super().__init__(dtype=dtype)
        self.p = check_p(p)
        self.rng = np.random.default_rng(seed)
        self.always_on = bool(always_on)
        self.cache: DropoutCache | None = None
        self._frozen_mask: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray | None:
        """The keep-mask of the last forward that dropped (or the frozen one).

        ``None`` before any such forward, or once :meth:`clear_cache` freed it.
        """
        if self.cache is not None and self.cache.mask is not None:
            return self.cache.mask
        return self._frozen_mask

    @property
    def frozen(self) -> bool:
        """Whether every forward reuses the frozen mask (see :meth:`freeze`)."""
        return self._frozen_mask is not None

    def reseed(self, seed) -> None:
        """Restart the generator from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def freeze(self) -> Dropout:
        """Reuse the last mask in every following forward (for gradient checks)."""
        if self.mask is None:
            raise RuntimeError("Dropout.freeze needs a mask: run forward once first")
        self._frozen_mask = self.mask
        return self

    def unfreeze(self) -> Dropout:
        """Draw a new mask in every forward again."""
        self._frozen_mask = None
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
        if not ((self.training or self.always_on) and self.p > 0.0):
            self.cache = DropoutCache(None)
            return x
        mask = self._frozen_mask
        if mask is None:
            mask = dropout_mask(
                x.shape, self.p, self.rng, **self._reused(out=(x.shape, np.bool_))
            )
        elif mask.shape != x.shape:
            raise ValueError(
                f"the frozen mask has shape {mask.shape} but x has shape "
                f"{x.shape}; call unfreeze() to draw a new mask"
            )
        self.cache = DropoutCache(mask)
        return dropout_forward(x, mask, self.p, **self._reused(out=(x.shape, x.dtype)))

    def backward(self, dout):
        """The same mask and scale applied to ``dout`` (identity if inactive).

        Parameters
        ----------
        dout : ndarray of the shape of the forward output

        Returns
        -------
        dx : ndarray
        """
        if self.cache is None:
            raise RuntimeError("Dropout.backward called before forward")
        if self.cache.mask is None:
            return dout
        dout = check_float_array(dout, "dout")
        dx = self._reused(dx=(dout.shape, dout.dtype))
        return dropout_backward(dout, self.cache.mask, self.p, **dx)

    def __repr__(self) -> str:
        on = ", always_on=True" if self.always_on else ""
        return f"Dropout(p={self.p:g}{on})"
