"""2-D transposed convolution as one BLAS product and a scatter per row band.

The fast twin of :mod:`npsegnet.reference.conv_transpose`. A transposed
convolution is the input gradient of a strided convolution, and it is computed
the way :func:`npsegnet.kernels.conv.conv2d_backward` computes that gradient
("col2im", as Caffe's ``Deconvolution`` layer does):

1. For a band of input rows ``b0 .. b0 + r - 1`` of one image, one GEMM

       cols = wt @ x_band     # (C_out * KH * KW, r * W)

   with ``wt[(f, kh, kw), c] = weight[c, f, kh, kw]`` gives every product of
   an input pixel with one filter tap: ``cols[(f, kh, kw), (a, j)]`` belongs
   to output pixel ``((b0 + a) * stride + kh - padding, j * stride + kw -
   padding)`` of channel ``f``. ``x_band`` is a view (the rows of a band are
   contiguous within each channel), so nothing is packed before the GEMM.
2. A Numba pass adds each row of ``cols`` into its output row with step
   ``stride`` (dropping what the padding crops). Each output channel is
   written by one thread, so the overlapping windows need no locking.

Backward reverses the two steps: a Numba pass *gathers* the strided grid of
``dout`` into ``dcols`` (an im2col with stride), then ``dx_band = wm @ dcols``
and ``dweight += x_band @ dcols.T`` (``wm`` is the weight as a
``(C_in, C_out * KH * KW)`` matrix, a view). The bands and the per-thread
workspaces are the convolution's: :mod:`npsegnet.kernels._workspace`, with
bands of ``npsegnet.kernels.conv.BAND_BYTES``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._checks import check_float_array, check_pair, check_positive_int
from ..config import njit
from . import conv as _conv
from ._workspace import band, band_rows, output_array, workspace


# --------------------------------------------------------------------------
# Numba loops
# --------------------------------------------------------------------------
@njit
def _strided_span(W, W_out, stride, shift):
    """Input columns ``lo:hi`` whose output column ``j * stride + shift`` is in range.

    In range means ``0 <= j * stride + shift < W_out``; clamped so that
    ``0 <= lo <= hi <= W``.
    """
    lo = min(W, max(0, -(shift // stride)))
    hi = min(W, (W_out - 1 - shift) // stride + 1)
    return lo, max(lo, hi)


@njit(parallel=True)
def _scatter_band(cols, out, n, stride, pad, KH, KW, b0, r):
    """Add ``cols[(f, kh, kw), (a, j)]`` into its output cell.

    That is ``out[n, f, (b0 + a) * s + kh - pad, j * s + kw - pad]``; cells
    that the padding crops are skipped.
    """
    F, H_out, W_out = out.shape[1], out.shape[2], out.shape[3]
    W = cols.shape[1] // r
    for f in prange(F):
        for kh in range(KH):
            for a in range(r):
                oh = (b0 + a) * stride + kh - pad
                if oh < 0 or oh >= H_out:
                    continue
                row = out[n, f, oh]
                for kw in range(KW):
                    shift = kw - pad
                    lo, hi = _strided_span(W, W_out, stride, shift)
                    if lo < hi:
                        src = cols[(f * KH + kh) * KW + kw, a * W + lo : a * W + hi]
                        start = lo * stride + shift
                        row[start : (hi - 1) * stride + shift + 1 : stride] += src


@njit(parallel=True)
def _gather_band(dout, n, stride, pad, KH, KW, b0, r, dcols):
    """``dcols[(f, kh, kw), (a, j)] = dout[n, f, oh, ow]``, the adjoint of the scatter.

    ``oh = (b0 + a) * s + kh - pad`` and ``ow = j * s + kw - pad``, as in
    :func:`_scatter_band`; 0 where that cell was cropped.
    """
    F, H_out, W_out = dout.shape[1], dout.shape[2], dout.shape[3]
    W = dcols.shape[1] // r
    for t in prange(F * KH * KW):
        f = t // (KH * KW)
        kh = (t // KW) % KH
        shift = t % KW - pad
        lo, hi = _strided_span(W, W_out, stride, shift)
        for a in range(r):
            dst = dcols[t, a * W : (a + 1) * W]
            oh = (b0 + a) * stride + kh - pad
            if oh < 0 or oh >= H_out:
                dst[:] = 0.0
                continue
            dst[:lo] = 0.0
            dst[hi:] = 0.0
            if lo < hi:
                start = lo * stride + shift
                dst[lo:hi] = dout[
                    n, f, oh, start : (hi - 1) * stride + shift + 1 : stride
                ]


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------
def _output_shape(input_shape, weight_shape, stride, padding, output_padding):
    """``(N, C_out, H_out, W_out)`` of a transposed convolution (no checks)."""
    N, _, H, W = input_shape
    _, F, KH, KW = weight_shape
    oph, opw = output_padding
    return (
        N,
        F,
        (H - 1) * stride - 2 * padding + KH + oph,
        (W - 1) * stride - 2 * padding + KW + opw,
    )


def _check_args(x, weight, stride, padding, output_padding):
    x = check_float_array(x, "x", ndim=4)
    weight = check_float_array(weight, "weight", ndim=4, dtype=x.dtype)
    stride = check_positive_int(stride, "stride")
    padding = check_positive_int(padding, "padding", minimum=0)
    output_padding = check_pair(output_padding, "output_padding", minimum=0)
    if max(output_padding) >= stride:
        raise ValueError(
            f"output_padding must be smaller than stride ({stride}), "
            f"got {output_padding}"
        )
    C = x.shape[1]
    if weight.shape[0] != C:
        raise ValueError(
            f"weight has {weight.shape[0]} input channels (shape {weight.shape}, "
            f"layout (C_in, C_out, KH, KW)) but x has C = {C} (shape {x.shape})"
        )
    shape = _output_shape(x.shape, weight.shape, stride, padding, output_padding)
    if shape[2] < 1 or shape[3] < 1:
        raise ValueError(
            f"padding={padding} crops the whole output: an input of "
            f"{x.shape[2]}x{x.shape[3]} with kernel {weight.shape[2]}x"
            f"{weight.shape[3]} and stride {stride} gives {shape[2]}x{shape[3]}"
        )
    return x, weight, stride, padding, output_padding, shape


# --------------------------------------------------------------------------
# forward and backward
# --------------------------------------------------------------------------
def conv_transpose2d_forward(
    x, weight, bias, stride, padding, output_padding=0, out=None
):
    """Transposed convolution of ``x`` with ``weight``, plus ``bias``.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
        float32 or float64.
    weight : ndarray of shape (C_in, C_out, KH, KW)
        Same dtype as ``x``; PyTorch's ``ConvTranspose2d`` layout.
    bias : ndarray of shape (C_out,) or None
    stride : int
    padding : int
        Rows and columns cropped from each border of the full output.
    output_padding : int or (int, int)
        Rows (and columns) added at the bottom (and right); each ``< stride``.
    out : ndarray of shape (N, C_out, H_out, W_out), optional
        Where to write the result (dtype of ``x``, C-contiguous, not
        overlapping ``x``); a new array by default.

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)

    Shape
    -----
    ``H_out = (H - 1) * stride - 2 * padding + KH + output_padding[0]``,
    likewise ``W_out`` with ``KW`` and ``output_padding[1]``.
    """
    x, weight, stride, padding, output_padding, out_shape = _check_args(
        x, weight, stride, padding, output_padding
    )
    N, C, H, W = x.shape
    _, F, KH, KW = weight.shape
    dtype = x.dtype
    out = output_array(out, out_shape, dtype, inputs=(x, weight))
    if bias is None:
        out.fill(0.0)
    else:
        bias = check_float_array(bias, "bias", ndim=1, dtype=dtype)
        if bias.shape != (F,):
            raise ValueError(f"bias must have shape ({F},), got {bias.shape}")
        out[...] = bias[None, :, None, None]
    M = F * KH * KW
    wt = workspace("wk", (M, C), dtype)
    np.copyto(wt, weight.reshape(C, M).T)
    R = band_rows(W, M, dtype.itemsize, H, _conv.BAND_BYTES)
    for n in range(N):
        for b0 in range(0, H, R):
            r = min(R, H - b0)
            cols = band("cols", M, r * W, dtype)
            np.matmul(wt, x[n, :, b0 : b0 + r, :].reshape(C, r * W), out=cols)
            _scatter_band(cols, out, n, stride, padding, KH, KW, b0, r)
    return out


def conv_transpose2d_backward(
    dout, x, weight, stride, padding, output_padding=0, dx=None, dweight=None
):
    """Gradients of :func:`conv_transpose2d_forward` given the upstream gradient.

    Parameters
    ----------
    dout : ndarray of shape (N, C_out, H_out, W_out)
        Gradient of the loss with respect to the output.
    x : ndarray of shape (N, C_in, H, W)
        The forward input.
    weight : ndarray of shape (C_in, C_out, KH, KW)
    stride, padding : int
    output_padding : int or (int, int)
    dx, dweight : ndarray, optional
        Where to write those two results (their shapes, the dtype of ``x``,
        C-contiguous, overlapping none of the inputs); new arrays by default.

    Returns
    -------
    dx : ndarray of shape (N, C_in, H, W)
    dweight : ndarray of shape (C_in, C_out, KH, KW)
    dbias : ndarray of shape (C_out,)

    Shape
    -----
    As the forward input, weight and bias.
    """
    x, weight, stride, padding, output_padding, out_shape = _check_args(
        x, weight, stride, padding, output_padding
    )
    dout = check_float_array(dout, "dout", ndim=4, dtype=x.dtype)
    if dout.shape != out_shape:
        raise ValueError(
            f"dout must have the shape of the forward output {out_shape}, "
            f"got {dout.shape}"
        )
    N, C, H, W = x.shape
    _, F, KH, KW = weight.shape
    dtype = x.dtype
    M = F * KH * KW
    wm = weight.reshape(C, M)
    inputs = (dout, x, weight)
    dx = output_array(dx, x.shape, dtype, "dx", inputs)
    dweight = output_array(dweight, weight.shape, dtype, "dweight", inputs)
    dwm = dweight.reshape(C, M)
    dwm.fill(0)
    tmp = workspace("dwtmp", (C, M), dtype)
    R = band_rows(W, M, dtype.itemsize, H, _conv.BAND_BYTES)
    for n in range(N):
        for b0 in range(0, H, R):
            r = min(R, H - b0)
            dcols = band("cols", M, r * W, dtype)
            _gather_band(dout, n, stride, padding, KH, KW, b0, r, dcols)
            x_band = x[n, :, b0 : b0 + r, :].reshape(C, r * W)
            np.matmul(x_band, dcols.T, out=tmp)
            dwm += tmp
            prod = band("prod", C, r * W, dtype)
            np.matmul(wm, dcols, out=prod)
            dx[n, :, b0 : b0 + r, :] = prod.reshape(C, r, W)
    return dx, dweight, dout.sum(axis=(0, 2, 3))
