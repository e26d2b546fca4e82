"""Batch normalisation over the channels of an NCHW batch, in plain NumPy.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift", ICML 2015 (arXiv 1502.03167), Algorithm 1
and §3 (the convolutional case: one mean and variance per channel, taken over
the batch and all pixels).

Each function has a fast twin of the same name and signature in
:mod:`npsegnet.kernels.batchnorm`.

Notation: ``M = N * H * W`` values per channel,

    mean_c = sum(x) / M,   var_c = sum((x - mean_c)**2) / M   (biased),
    inv_std_c = 1 / sqrt(var_c + eps),   x_hat = (x - mean_c) * inv_std_c,
    out = weight_c * x_hat + bias_c        (then max(out, 0) with ``relu``).
"""

from __future__ import annotations

import numpy as np


def _channel(v: np.ndarray) -> np.ndarray:
    """View a per-channel vector of shape (C,) as (1, C, 1, 1) for broadcasting."""
    return v.reshape(1, -1, 1, 1)


def batchnorm2d_forward_train(x, weight, bias, eps, relu=False):
    """Normalise with the statistics of the batch (training mode).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        Input, float32 or float64.
    weight, bias : ndarray of shape (C,)
        Scale (gamma) and shift (beta), same dtype as ``x``.
    eps : float
        Added to the variance before the square root; also keeps a constant
        channel (variance 0) finite.
    relu : bool
        Apply ``max(., 0)`` to the output (the fused BN + ReLU of the encoder).

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    mean : ndarray of shape (C,)
        Batch mean per channel.
    var : ndarray of shape (C,)
        Biased batch variance per channel (divide by ``M``); the caller turns it
        into the unbiased one (``* M / (M - 1)``) for the running statistics.
    inv_std : ndarray of shape (C,)
        ``1 / sqrt(var + eps)``.

    Shape
    -----
    ``out`` has the shape of ``x``; the statistics have shape ``(C,)``.
    Statistics are accumulated in float64 and returned in the dtype of ``x``.
    """
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    var = ((x64 - _channel(mean)) ** 2).mean(axis=(0, 2, 3))
    inv_std = 1.0 / np.sqrt(var + eps)
    mean, var, inv_std = (a.astype(x.dtype) for a in (mean, var, inv_std))
    x_hat = (x - _channel(mean)) * _channel(inv_std)
    out = _channel(weight) * x_hat + _channel(bias)
    if relu:
        out = np.maximum(out, 0)
    return out.astype(x.dtype, copy=False), mean, var, inv_std


def batchnorm2d_forward_eval(
    x, weight, bias, running_mean, running_var, eps, relu=False
):
    """Normalise with stored statistics (evaluation mode): an affine map per channel.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    weight, bias, running_mean, running_var : ndarray of shape (C,)
    eps : float
    relu : bool
        Apply ``max(., 0)`` to the output.

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
        ``weight * (x - running_mean) / sqrt(running_var + eps) + bias``.
    """
    inv_std = (1.0 / np.sqrt(running_var.astype(np.float64) + eps)).astype(x.dtype)
    out = _channel(weight) * ((x - _channel(running_mean)) * _channel(inv_std))
    out = out + _channel(bias)
    if relu:
        out = np.maximum(out, 0)
    return out.astype(x.dtype, copy=False)


def batchnorm2d_backward(dout, x, mean, inv_std, weight, out=None, relu_bias=None):
    """Gradients of the training-mode forward pass.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H, W)
        Upstream gradient.
    x : ndarray of shape (N, C, H, W)
        The forward input.
    mean, inv_std : ndarray of shape (C,)
        As returned by :func:`batchnorm2d_forward_train`.
    weight : ndarray of shape (C,)
    out : ndarray of shape (N, C, H, W), optional
        The forward output of a fused BN + ReLU; ``dout`` is then zeroed where
        ``out <= 0`` first (ReLU'(0) = 0).
    relu_bias : ndarray of shape (C,), optional
        Instead of ``out``: the forward's ``bias``; the ReLU mask is rebuilt
        from ``x`` (``weight * x_hat + bias > 0``).

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dweight, dbias : ndarray of shape (C,)

    Notes
    -----
    With ``g = dout`` (masked), ``M = N * H * W`` and sums over a channel,

        dbias = sum(g),   dweight = sum(g * x_hat),
        dx = weight * inv_std / M * (M * g - dbias - x_hat * dweight).

    The last two terms are there because the batch mean and variance depend on
    every ``x`` of the channel (Ioffe & Szegedy 2015, §3, the chain rule below
    Algorithm 1).
    """
    if out is None and relu_bias is not None:
        x_hat = (x - _channel(mean)) * _channel(inv_std)
        out = _channel(weight) * x_hat + _channel(relu_bias)
    g = dout if out is None else np.where(out > 0, dout, 0).astype(dout.dtype)
    M = x.shape[0] * x.shape[2] * x.shape[3]
    g64 = g.astype(np.float64)
    x_hat = (x.astype(np.float64) - _channel(mean)) * _channel(inv_std)
    dbias = g64.sum(axis=(0, 2, 3))
    dweight = (g64 * x_hat).sum(axis=(0, 2, 3))
    scale = _channel(weight.astype(np.float64) * inv_std / M)
    dx = scale * (M * g64 - _channel(dbias) - x_hat * _channel(dweight))
    dt = x.dtype
    return dx.astype(dt), dweight.astype(dt), dbias.astype(dt)


def batchnorm2d_backward_eval(
    dout, x, running_mean, running_var, weight, eps, out=None
):
    """Gradients of the evaluation-mode forward pass (fixed statistics).

    Parameters
    ----------
    dout, x : ndarray of shape (N, C, H, W)
    running_mean, running_var, weight : ndarray of shape (C,)
    eps : float
    out : ndarray of shape (N, C, H, W), optional
        The forward output of a fused BN + ReLU (masks ``dout`` where ``out <= 0``).

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
        ``dout * weight * inv_std``: the statistics are constants here.
    dweight, dbias : ndarray of shape (C,)
    """
    g = dout if out is None else np.where(out > 0, dout, 0).astype(dout.dtype)
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    g64 = g.astype(np.float64)
    x_hat = (x.astype(np.float64) - _channel(running_mean)) * _channel(inv_std)
    dbias = g64.sum(axis=(0, 2, 3))
    dweight = (g64 * x_hat).sum(axis=(0, 2, 3))
    dx = g64 * _channel(weight.astype(np.float64) * inv_std)
    dt = x.dtype
    return dx.astype(dt), dweight.astype(dt), dbias.astype(dt)
