"""Pixel-wise softmax cross-entropy with class weights and an ignored label.

SegNet (Badrinarayanan et al., arXiv 1511.00561, §3.2) trains with this loss,
the classes weighted by median frequency balancing and the "unlabelled" class
ignored. Written here in plain NumPy; the fast twins of the same names and
signatures live in :mod:`npsegnet.kernels.loss`.

For logits ``z`` of shape (N, K, H, W), integer targets ``t`` of shape
(N, H, W), class weights ``w`` (all 1 when not given) and the set ``P`` of
pixels whose target is not ``ignore_index``, the loss is PyTorch's weighted
mean (``F.cross_entropy(z, t, weight=w, ignore_index=...)``):

    loss = sum_{p in P} w[t_p] * (lse_p - z[t_p, p]) / sum_{p in P} w[t_p],
    lse_p = m_p + log(sum_k exp(z[k, p] - m_p)),   m_p = max_k z[k, p],

where subtracting the maximum keeps ``exp`` from overflowing (logits of 1e4
are fine). Its gradient is

    dloss/dz[k, p] = w[t_p] / sum_P w * (softmax(z)[k, p] - [k == t_p])

and 0 at ignored pixels. When the denominator is 0 (every pixel ignored, or
only classes of weight 0 present) we return a loss of 0 and a zero gradient;
PyTorch returns nan there.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_loss_inputs, check_target_values


def _prepare(logits, targets, weight, ignore_index):
    """Per-pixel weights (0 where ignored) and the targets with ignored set to 0."""
    K = logits.shape[1]
    w = np.ones(K) if weight is None else np.asarray(weight, dtype=np.float64)
    t = targets.astype(np.int64)
    keep = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    t = np.where(keep, t, 0)
    pixel_w = np.where(keep, w[t], 0.0)
    return t, pixel_w


def _log_softmax(logits):
    """log softmax over axis 1 in float64, with the max subtracted."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_cross_entropy_forward(logits, targets, weight=None, ignore_index=None):
    """The weighted mean cross-entropy of the pixels.

    Parameters
    ----------
    logits : ndarray of shape (N, K, H, W)
        Unnormalised class scores, float32 or float64.
    targets : ndarray of int of shape (N, H, W)
        Class indices in [0, K), or ``ignore_index``.
    weight : ndarray of shape (K,), optional
        Non-negative class weights; all 1 when omitted.
    ignore_index : int, optional
        Target value whose pixels contribute neither to the loss nor to the
        denominator.

    Returns
    -------
    loss : float
        0.0 when the total weight of the non-ignored pixels is 0.
    """
    logits, targets, weight, ignore_index = check_loss_inputs(
        logits, targets, weight, ignore_index
    )
    check_target_values(targets, logits.shape[1], ignore_index)
    t, pixel_w = _prepare(logits, targets, weight, ignore_index)
    total = pixel_w.sum()
    if total == 0:
        return 0.0
    logp = _log_softmax(logits)
    nll = -np.take_along_axis(logp, t[:, None], axis=1)[:, 0]
    return float((pixel_w * nll).sum() / total)


def softmax_cross_entropy_backward(
    logits, targets, weight=None, ignore_index=None, dout=1.0
):
    """Gradient of ``dout * loss`` with respect to the logits.

    Parameters
    ----------
    logits, targets, weight, ignore_index
        As for :func:`softmax_cross_entropy_forward`.
    dout : float
        Upstream gradient of the (scalar) loss.

    Returns
    -------
    dlogits : ndarray of the shape and dtype of ``logits``
        ``dout * w[t] / sum(w) * (softmax - onehot(t))``, 0 at ignored pixels.
    """
    logits, targets, weight, ignore_index = check_loss_inputs(
        logits, targets, weight, ignore_index
    )
    check_target_values(targets, logits.shape[1], ignore_index)
    t, pixel_w = _prepare(logits, targets, weight, ignore_index)
    total = pixel_w.sum()
    if total == 0:
        return np.zeros_like(logits)
    probs = np.exp(_log_softmax(logits))
    onehot = np.arange(logits.shape[1])[None, :, None, None] == t[:, None]
    coef = (dout * pixel_w / total)[:, None]
    return (coef * (probs - onehot)).astype(logits.dtype)


def softmax_cross_entropy_fused(logits, targets, weight=None, ignore_index=None):
    """Loss and its gradient (``dout = 1``) together.

    The kernel twin does both in one pass over the logits, which is what a
    training step needs; here it is just the two functions above.

    Returns
    -------
    loss : float
    dlogits : ndarray of the shape and dtype of ``logits``
    """
    return (
        softmax_cross_entropy_forward(logits, targets, weight, ignore_index),
        softmax_cross_entropy_backward(logits, targets, weight, ignore_index),
    )
