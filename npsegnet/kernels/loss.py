"""Softmax cross-entropy kernels: the Numba twins of :mod:`npsegnet.reference.loss`.

Two passes, both in parallel over the ``N * H`` rows of pixels:

1. over the (small, integer) targets: check every value is in [0, K) or
   ``ignore_index`` and add up the weights of the non-ignored pixels;
2. over the logits, row by row and class by class (contiguous runs of W
   values): the per-pixel maximum, ``exp(z - max)`` and its sum, the loss and,
   in the fused version, the gradient, written while the row is in cache.

Row sums of the loss are float64 and added in row order afterwards, so the
result does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._checks import bad_target_message, check_loss_inputs
from ..config import njit


@njit(parallel=True)
def _ce_totals(targets, weight, use_ignore, ignore, row_weight, row_bad):
    """Per row (n, h): the weight of its non-ignored pixels, and its first bad
    target (row_bad[r, 0] = 1 and row_bad[r, 1] = the value) if any."""
    N, H, W = targets.shape
    K = weight.shape[0]
    for r in prange(N * H):
        n = r // H
        h = r % H
        tr = targets[n, h]
        acc = 0.0
        for i in range(W):
            t = np.int64(tr[i])
            if use_ignore and t == ignore:
                continue
            if t < 0 or t >= K:
                if row_bad[r, 0] == 0:
                    row_bad[r, 0] = 1
                    row_bad[r, 1] = t
                continue
            acc += weight[t]
        row_weight[r] = acc


@njit(parallel=True)
def _ce_rows(
    logits,
    targets,
    weight,
    use_ignore,
    ignore,
    coef,
    want_loss,
    grad,
    want_grad,
    row_loss,
):
    """Loss of each row into row_loss (float64, unnormalised) and, if want_grad,
    grad = coef * w[t] * (softmax - onehot), 0 at ignored pixels."""
    N, K, H, W = logits.shape
    dt = logits.dtype.type
    zero = dt(0)
    for r in prange(N * H):
        n = r // H
        h = r % H
        tr = targets[n, h]
        m = np.empty(W, logits.dtype)  # max over classes, per pixel of the row
        s = np.zeros(W, logits.dtype)  # sum of exp(z - m)
        for i in range(W):
            m[i] = logits[n, 0, h, i]
        for k in range(1, K):
            zr = logits[n, k, h]
            for i in range(W):
                v = zr[i]
                m[i] = v if v > m[i] else m[i]
        if want_grad:
            for k in range(K):
                zr = logits[n, k, h]
                gr = grad[n, k, h]
                for i in range(W):
                    e = np.exp(zr[i] - m[i])
                    gr[i] = e
                    s[i] += e
        else:
            for k in range(K):
                zr = logits[n, k, h]
                for i in range(W):
                    s[i] += np.exp(zr[i] - m[i])
        acc = 0.0
        c = np.empty(W, logits.dtype)  # coef * w[t], 0 where ignored
        for i in range(W):
            t = tr[i]
            if use_ignore and t == ignore:
                c[i] = zero
                continue
            c[i] = dt(coef * weight[t])
            if want_loss:
                lse = m[i] + np.log(s[i])
                acc += weight[t] * np.float64(lse - logits[n, t, h, i])
        row_loss[r] = acc
        if want_grad:
            # grad[k] = c * e_k / s - c * [k == t], class by class along the row
            for i in range(W):
                s[i] = c[i] / s[i]
            for k in range(K):
                gr = grad[n, k, h]
                for i in range(W):
                    gr[i] *= s[i]
            for i in range(W):
                if c[i] != zero:
                    grad[n, tr[i], h, i] -= c[i]


def _run(logits, targets, weight, ignore_index, want_loss, want_grad, dout):
    logits, targets, weight, ignore_index = check_loss_inputs(
        logits, targets, weight, ignore_index
    )
    N, K, H, W = logits.shape
    # one integer type for the kernels (fewer compilations); a no-op for int64
    targets = targets.astype(np.int64, copy=False)
    w64 = np.ones(K) if weight is None else weight
    use_ignore = ignore_index is not None
    ignore = 0 if ignore_index is None else ignore_index
    row_weight = np.empty(N * H)
    row_bad = np.zeros((N * H, 2), np.int64)
    _ce_totals(targets, w64, use_ignore, ignore, row_weight, row_bad)
    bad_rows = np.flatnonzero(row_bad[:, 0])
    if bad_rows.size:
        raise ValueError(bad_target_message(row_bad[bad_rows[0], 1], K, ignore_index))
    total = float(row_weight.sum())
    if total == 0.0:
        return 0.0, (np.zeros_like(logits) if want_grad else None)
    grad = np.empty_like(logits) if want_grad else np.empty((1, 1, 1, 1), logits.dtype)
    row_loss = np.empty(N * H)
    coef = float(dout) / total
    _ce_rows(
        logits,
        targets,
        w64,
        use_ignore,
        ignore,
        coef,
        want_loss,
        grad,
        want_grad,
        row_loss,
    )
    loss = float(row_loss.sum() / total) if want_loss else 0.0
    return loss, (grad if want_grad else None)


def _check_dout(dout):
    if (
        isinstance(dout, bool)
        or not isinstance(dout, (int, float, np.integer, np.floating))
        and not (isinstance(dout, np.ndarray) and dout.ndim == 0)
    ):
        raise TypeError(f"dout must be a real scalar, got {type(dout).__name__}")
    return float(dout)


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
        Target value whose pixels are left out of the loss and its denominator.

    Returns
    -------
    loss : float
        0.0 when the total weight of the non-ignored pixels is 0 (PyTorch: nan).
    """
    return _run(logits, targets, weight, ignore_index, True, False, 1.0)[0]


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
    dout = _check_dout(dout)
    return _run(logits, targets, weight, ignore_index, False, True, dout)[1]


def softmax_cross_entropy_fused(logits, targets, weight=None, ignore_index=None):
    """Loss and its gradient (``dout = 1``) in one pass over the logits.

    Parameters
    ----------
    logits, targets, weight, ignore_index
        As for :func:`softmax_cross_entropy_forward`.

    Returns
    -------
    loss : float
    dlogits : ndarray of the shape and dtype of ``logits``
    """
    return _run(logits, targets, weight, ignore_index, True, True, 1.0)
