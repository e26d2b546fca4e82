"""2-D transposed convolution ("deconvolution"), forward and backward, in plain NumPy.

The textbook version of :mod:`npsegnet.kernels.conv_transpose`. Where a
convolution gathers a window of the input into one output value, a transposed
convolution *scatters*: every input value, times a ``KH x KW`` filter, is added
into the output at ``stride`` times its position. Windows overlap when the
kernel is larger than the stride, and their contributions add up. Finally
``padding`` rows and columns are cropped from each border. This is exactly the
input gradient of a strided convolution, which is why FCN (Long et al. 2015,
§3.3) calls it "backwards convolution" and learns it as an up-sampler.

As for the convolution, the loop runs over the ``KH * KW`` offsets of the
window: for a fixed offset ``(kh, kw)`` every input pixel lands on one cell of
a strided grid of the output, and the layer is the sum over offsets of a
channel-mixing product written onto that grid.
"""

from __future__ import annotations

import numpy as np


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding=0):
    """Transposed convolution of ``x`` with ``weight``, plus ``bias``.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_in, C_out, KH, KW)
        PyTorch's layout for ``ConvTranspose2d`` (input channels first).
    bias : ndarray of shape (C_out,) or None
    stride : int
        Step between the places where neighbouring inputs land.
    padding : int
        Rows and columns cropped from each border of the full output.
    output_padding : int or (int, int)
        Rows (and columns) added at the bottom (and right), each ``< stride``;
        they select one of the ``stride`` output sizes that a convolution
        with this ``stride`` maps to the same input size.

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)

    Shape
    -----
    ``H_out = (H - 1) * stride - 2 * padding + KH + output_padding[0]``,
    ``W_out = (W - 1) * stride - 2 * padding + KW + output_padding[1]``.

    Notes
    -----
    With ``full`` the uncropped output,

    .. math:: full[n, f, i s + kh, j s + kw] \\mathrel{+}= \\sum_c x[n, c, i, j]\\,
              w[c, f, kh, kw],

    and ``out = full[:, :, padding : padding + H_out, padding : padding + W_out]``.
    """
    N, C, H, W = x.shape
    _, F, KH, KW = weight.shape
    oph, opw = _pair(output_padding)
    H_full = (H - 1) * stride + KH
    W_full = (W - 1) * stride + KW
    H_out = H_full - 2 * padding + oph
    W_out = W_full - 2 * padding + opw
    # output_padding extends the bottom and right with cells no input reaches
    full = np.zeros((N, F, H_full + oph, W_full + opw), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            rows = slice(kh, kh + (H - 1) * stride + 1, stride)
            cols = slice(kw, kw + (W - 1) * stride + 1, stride)
            full[:, :, rows, cols] += np.einsum(
                "nchw,cf->nfhw", x, weight[:, :, kh, kw]
            )
    out = full[:, :, padding : padding + H_out, padding : padding + W_out].copy()
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv_transpose2d_backward(dout, x, weight, stride, padding, output_padding=0):
    """Gradients of :func:`conv_transpose2d_forward` given the upstream gradient.

    Parameters
    ----------
    dout : ndarray of shape (N, C_out, H_out, W_out)
    x : ndarray of shape (N, C_in, H, W)
        The forward input.
    weight : ndarray of shape (C_in, C_out, KH, KW)
    stride, padding : int
    output_padding : int or (int, int)

    Returns
    -------
    dx : ndarray of shape (N, C_in, H, W)
    dweight : ndarray of shape (C_in, C_out, KH, KW)
    dbias : ndarray of shape (C_out,)

    Shape
    -----
    As the forward input, weight and bias.

    Notes
    -----
    Put ``dout`` back into the uncropped frame (zeros where the forward pass
    cropped). Each offset ``(kh, kw)`` added ``x`` times ``weight[:, :, kh, kw]``
    onto one strided grid of that frame, so its gradient *reads* the grid:
    ``dx`` gathers it through ``weight[:, :, kh, kw]`` (a strided convolution
    of ``dout``) and ``dweight[:, :, kh, kw]`` contracts it with ``x``.
    """
    N, C, H, W = x.shape
    _, F, KH, KW = weight.shape
    oph, opw = _pair(output_padding)
    H_full = (H - 1) * stride + KH
    W_full = (W - 1) * stride + KW
    H_out, W_out = dout.shape[2], dout.shape[3]
    dfull = np.zeros((N, F, H_full + oph, W_full + opw), dtype=dout.dtype)
    dfull[:, :, padding : padding + H_out, padding : padding + W_out] = dout
    dx = np.zeros_like(x)
    dweight = np.zeros_like(weight)
    for kh in range(KH):
        for kw in range(KW):
            rows = slice(kh, kh + (H - 1) * stride + 1, stride)
            cols = slice(kw, kw + (W - 1) * stride + 1, stride)
            grid = dfull[:, :, rows, cols]
            dx += np.einsum("nfhw,cf->nchw", grid, weight[:, :, kh, kw])
            dweight[:, :, kh, kw] = np.einsum("nchw,nfhw->cf", x, grid)
    dbias = dout.sum(axis=(0, 2, 3))
    return dx, dweight, dbias
