"""2-D convolution by the FFT, whole images at once, in plain NumPy.

The textbook version of :mod:`npsegnet.kernels.conv_fft`, to read next to
:mod:`npsegnet.reference.conv`. The convolution theorem turns a (circular)
correlation into a product of spectra: if ``X = rfft2(x)`` and ``K =
rfft2(k)`` on the same ``S x S`` grid, then ``irfft2(X * conj(K))[i, j] =
sum_{a, b} x[(i + a) % S, (j + b) % S] * k[a, b]``. Pad the image and the
kernel with enough zeros that nothing wraps around, and the first ``H_out x
W_out`` values are the layer's output. The sum over input channels is then a
sum of products per frequency: one small matrix product per frequency, which
is what the fast twin hands to BLAS.

The fast twin cuts the image into tiles (overlap-save) so that the spectra are
small and the transforms short; the arithmetic is the same.
"""

from __future__ import annotations

import numpy as np


def conv2d_fft_forward(x, weight, bias, padding):
    """:func:`~npsegnet.reference.conv.conv2d_forward` by whole-image FFTs.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_out, C_in, KH, KW)
    bias : ndarray of shape (C_out,) or None
    padding : int

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)

    Shape
    -----
    ``H_out = H + 2 * padding - KH + 1``, likewise ``W_out``.

    Notes
    -----
    ``out[n, f] = b[f] + irfft2(sum_c rfft2(xp[n, c]) * conj(rfft2(w[f, c])))``
    cropped to ``H_out x W_out``, with ``xp`` the padded input and every
    transform on the padded input's grid (no wrap-around reaches the kept
    values, because a kept window lies inside the grid).
    """
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    grid = xp.shape[2:]
    H_out, W_out = grid[0] - KH + 1, grid[1] - KW + 1
    X = np.fft.rfft2(xp)  # (N, C, S_h, S_w // 2 + 1)
    K = np.conj(np.fft.rfft2(weight, s=grid))  # (F, C, S_h, S_w // 2 + 1)
    Y = np.einsum("ncuv,fcuv->nfuv", X, K)  # the channel sum, per frequency
    out = np.fft.irfft2(Y, s=grid)[:, :, :H_out, :W_out]
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out.astype(x.dtype)


def conv2d_fft_backward(dout, x, weight, padding):
    """The gradients of :func:`conv2d_fft_forward`, also by whole-image FFTs.

    Parameters
    ----------
    dout : ndarray of shape (N, C_out, H_out, W_out)
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_out, C_in, KH, KW)
    padding : int

    Returns
    -------
    dx : ndarray of shape (N, C_in, H, W)
    dweight : ndarray of shape (C_out, C_in, KH, KW)
    dbias : ndarray of shape (C_out,)

    Notes
    -----
    Both gradients are correlations too. ``dweight[f, c]`` correlates the
    padded input with ``dout`` (lags ``0 .. K - 1``): ``irfft2(sum_n X[n, c]
    * conj(DY[n, f]))``. ``dx`` is the product ``DY * K'`` with ``K' =
    rfft2(w)`` (no conjugate: the transpose of a correlation is a
    convolution), on the padded grid, with the padding cut off again.
    """
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    grid = xp.shape[2:]
    X = np.fft.rfft2(xp)
    DY = np.fft.rfft2(dout, s=grid)  # dout in the top-left corner of the grid
    dweight = np.fft.irfft2(np.einsum("ncuv,nfuv->fcuv", X, np.conj(DY)), s=grid)
    dxp = np.fft.irfft2(
        np.einsum("nfuv,fcuv->ncuv", DY, np.fft.rfft2(weight, s=grid)), s=grid
    )
    dx = dxp[:, :, padding : padding + H, padding : padding + W]
    return (
        dx.astype(x.dtype),
        dweight[:, :, :KH, :KW].astype(x.dtype),
        dout.sum(axis=(0, 2, 3)),
    )
