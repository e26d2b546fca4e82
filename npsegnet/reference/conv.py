"""2-D convolution (stride 1, zero padding), forward and backward, in plain NumPy.

The textbook version of :mod:`npsegnet.kernels.conv`. A convolution layer slides
a ``KH x KW`` window over the zero-padded input; every output value is a dot
product of the window with one filter. Instead of looping over output pixels,
loop over the ``KH * KW`` *offsets* of the window: for a fixed offset
``(kh, kw)`` the input values that meet ``weight[:, :, kh, kw]`` form one
shifted slice of the padded input, and the layer is the sum over offsets of a
channel-mixing product with that slice.
"""

from __future__ import annotations

import numpy as np


def _pad(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def _group_slices(x, weight, groups):
    """Channel slices ``(inputs, filters)`` of each group."""
    Cg, Fg = x.shape[1] // groups, weight.shape[0] // groups
    return [
        (slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg))
        for g in range(groups)
    ]


def conv2d_forward(x, weight, bias, padding, groups=1):
    """Convolve ``x`` with ``weight`` (stride 1, zero padding), add ``bias``.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_out, C_in / groups, KH, KW)
    bias : ndarray of shape (C_out,) or None
    padding : int
        Zeros added on each side of both spatial axes.
    groups : int
        Split the channels into ``groups`` blocks: filter block ``g`` sees
        input block ``g`` only (``C_in`` and ``C_out`` divisible by
        ``groups``); ``groups = C_in`` filters each channel on its own
        (depthwise).

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)

    Shape
    -----
    ``H_out = H + 2 * padding - KH + 1`` and ``W_out = W + 2 * padding - KW + 1``.

    Notes
    -----
    With ``xp`` the padded input,

    .. math:: out[n, f, i, j] = b[f] + \\sum_{c, kh, kw} w[f, c, kh, kw]\\,
              xp[n, c, i + kh, j + kw],

    a cross-correlation (the kernel is not flipped), as in Caffe and PyTorch.
    With groups, ``c`` runs over the input channels of ``f``'s group only:
    the layer is ``groups`` independent convolutions side by side.
    """
    if groups > 1:
        out = np.concatenate(
            [
                conv2d_forward(x[:, xs], weight[fs], None, padding)
                for xs, fs in _group_slices(x, weight, groups)
            ],
            axis=1,
        )
        return out if bias is None else out + bias[None, :, None, None]
    F, _, KH, KW = weight.shape
    xp = _pad(x, padding)
    H_out = xp.shape[2] - KH + 1
    W_out = xp.shape[3] - KW + 1
    out = np.zeros((x.shape[0], F, H_out, W_out), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            window = xp[:, :, kh : kh + H_out, kw : kw + W_out]
            out += np.einsum("nchw,fc->nfhw", window, weight[:, :, kh, kw])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward(dout, x, weight, padding, need_dx=True, groups=1):
    """Gradients of :func:`conv2d_forward` given the upstream gradient ``dout``.

    Parameters
    ----------
    dout : ndarray of shape (N, C_out, H_out, W_out)
    x : ndarray of shape (N, C_in, H, W)
        The forward input.
    weight : ndarray of shape (C_out, C_in / groups, KH, KW)
    padding : int
    need_dx : bool
        Compute ``dx``; the first layer of a network needs none.
    groups : int
        As in :func:`conv2d_forward`.

    Returns
    -------
    dx : ndarray of shape (N, C_in, H, W) or None
    dweight : ndarray of shape (C_out, C_in / groups, KH, KW)
    dbias : ndarray of shape (C_out,)

    Shape
    -----
    As the forward input, weight and bias.

    Notes
    -----
    Each offset ``(kh, kw)`` of the forward pass is a product with one shifted
    window of ``xp``, so its gradient is the transposed product:
    ``dweight[:, :, kh, kw]`` contracts ``dout`` with that window over
    ``n, i, j``, and ``dout`` times ``weight[:, :, kh, kw]`` is added back into
    the window's place in ``dxp``. ``dx`` is ``dxp`` without its padding.
    ``dbias`` sums ``dout`` over ``n, i, j``. With groups, each group's
    gradients are those of its own convolution.
    """
    if groups > 1:
        parts = [
            conv2d_backward(dout[:, fs], x[:, xs], weight[fs], padding, need_dx)
            for xs, fs in _group_slices(x, weight, groups)
        ]
        dx = np.concatenate([p[0] for p in parts], axis=1) if need_dx else None
        dweight = np.concatenate([p[1] for p in parts], axis=0)
        return dx, dweight, dout.sum(axis=(0, 2, 3))
    F, _, KH, KW = weight.shape
    H, W = x.shape[2], x.shape[3]
    H_out, W_out = dout.shape[2], dout.shape[3]
    xp = _pad(x, padding)
    dxp = np.zeros_like(xp) if need_dx else None
    dweight = np.zeros_like(weight)
    for kh in range(KH):
        for kw in range(KW):
            window = xp[:, :, kh : kh + H_out, kw : kw + W_out]
            dweight[:, :, kh, kw] = np.einsum("nfhw,nchw->fc", dout, window)
            if need_dx:
                dxp[:, :, kh : kh + H_out, kw : kw + W_out] += np.einsum(
                    "nfhw,fc->nchw", dout, weight[:, :, kh, kw]
                )
    dbias = dout.sum(axis=(0, 2, 3))
    dx = dxp[:, :, padding : padding + H, padding : padding + W] if need_dx else None
    return dx, dweight, dbias
