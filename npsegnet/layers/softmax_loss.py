"""Pixel-wise softmax cross-entropy as a layer (the loss of SegNet)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_loss_inputs
from ..config import DEFAULT_DTYPE
from ..kernels.loss import (
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
    softmax_cross_entropy_fused,
)
from .base import Module


class LossCache(NamedTuple):
    """What :meth:`SoftmaxCrossEntropy.backward` needs from the forward pass."""

    logits: np.ndarray  # (N, K, H, W)
    targets: np.ndarray  # (N, H, W)
    dlogits: np.ndarray | None  # gradient of the loss (dout = 1) from the fused pass


class SoftmaxCrossEntropy(Module):
    """Weighted mean softmax cross-entropy over pixels, as ``F.cross_entropy``.

    Parameters
    ----------
    weight : array_like of shape (K,), optional
        Non-negative class weights (SegNet: median frequency balancing); all 1
        when omitted. Stored as float64 in the attribute ``weight`` (a constant,
        not a parameter or buffer).
    ignore_index : int, optional
        Target value whose pixels count neither in the loss nor in its
        denominator (CamVid's "unlabelled" class, 11).
    dtype : dtype
        Kept for the common layer signature; the loss takes float32 and float64
        logits alike and returns the gradient in the dtype of the logits.

    Notes
    -----
    ``forward(logits, targets)`` returns

        sum_p w[t_p] * (-log softmax(logits)[t_p, p]) / sum_p w[t_p]

    over the non-ignored pixels ``p``. If that denominator is 0 (every pixel
    ignored) the loss is 0.0 and the gradient zero; PyTorch returns nan.

    In training mode ``forward`` also computes the gradient in the same pass
    over the logits (the backward pass is then nearly free); in evaluation mode
    it computes only the loss, and a later ``backward`` recomputes the gradient
    from the kept logits. ``backward(1.0)`` hands over the array it computed in
    forward (no copy); a second ``backward`` recomputes.

    Shape
    -----
    logits (N, K, H, W), targets (N, H, W) -> float; ``backward`` -> (N, K, H, W).
    """

    def __init__(self, weight=None, ignore_index=None, dtype=DEFAULT_DTYPE):
        super().__init__(dtype=dtype)
        if weight is not None:
            w = np.asarray(weight)
            if w.ndim != 1:
                raise ValueError(
                    f"weight must be a 1-d array of shape (K,), got shape {w.shape}"
                )
            # checks shape against K, sign and finiteness on a dummy batch
            check_loss_inputs(
                np.zeros((1, w.shape[0], 1, 1)), np.zeros((1, 1, 1), np.int64), w
            )
            weight = w.astype(np.float64)
        if ignore_index is not None:
            if isinstance(ignore_index, bool) or not isinstance(
                ignore_index, (int, np.integer)
            ):
                raise TypeError(
                    "ignore_index must be an int or None, "
                    f"got {type(ignore_index).__name__}"
                )
            ignore_index = int(ignore_index)
        self.weight = weight
        self.ignore_index = ignore_index
        self.cache: LossCache | None = None

    def forward(self, logits, targets):
        """The loss.

        Parameters
        ----------
        logits : ndarray of shape (N, K, H, W)
            float32 or float64.
        targets : ndarray of int of shape (N, H, W)
            Values in [0, K) or ``ignore_index``.

        Returns
        -------
        loss : float
        """
        self.cache = None  # the last step's logits may go before this one's gradient
        if self.training:
            loss, dlogits = softmax_cross_entropy_fused(
                logits, targets, self.weight, self.ignore_index
            )
        else:
            loss = softmax_cross_entropy_forward(
                logits, targets, self.weight, self.ignore_index
            )
            dlogits = None
        self.cache = LossCache(logits, targets, dlogits)
        return loss

    def backward(self, dout=1.0):
        """Gradient of ``dout * loss`` with respect to the logits.

        Parameters
        ----------
        dout : float
            Upstream gradient of the loss (1 for the loss itself).

        Returns
        -------
        dlogits : ndarray of shape (N, K, H, W), the dtype of the logits
        """
        cache = self.cache
        if cache is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        if cache.dlogits is None or isinstance(dout, np.ndarray):
            return softmax_cross_entropy_backward(
                cache.logits, cache.targets, self.weight, self.ignore_index, dout
            )
        if isinstance(dout, bool) or not isinstance(
            dout, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"dout must be a real scalar, got {type(dout).__name__}")
        g = cache.dlogits
        self.cache = cache._replace(dlogits=None)  # handed over: not reused
        if float(dout) != 1.0:
            g *= g.dtype.type(dout)
        return g

    def __repr__(self) -> str:
        return (
            f"SoftmaxCrossEntropy(weight={'None' if self.weight is None else 'array'}, "
            f"ignore_index={self.ignore_index})"
        )
