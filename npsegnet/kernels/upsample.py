"""Bilinear and nearest up-sampling (``align_corners=False``) as Numba loops.

The fast twin of :mod:`npsegnet.reference.upsample`, which writes the
operation as ``A_h @ x @ A_w.T``. Each row of those matrices has at most two
non-zeros, so instead of the matrices the kernels take, per axis, the two
source indices and the two weights of every output sample (``idx`` and
``wgt``, shape ``(2, size)``; nearest has the second weight 0). Forward, for
each output row ``i`` of a plane:

    row = wgt_h[0, i] * x[idx_h[0, i]] + wgt_h[1, i] * x[idx_h[1, i]]   # a whole row
    out[i, j] = wgt_w[0, j] * row[idx_w[0, j]] + wgt_w[1, j] * row[idx_w[1, j]]

Backward runs the same steps transposed: scatter ``dout[i]`` into a row
buffer by the column weights, then add that row into the two input rows.
Planes ``(n, c)`` are independent, which is what the threads split.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._checks import check_choice, check_float_array, check_pair, check_scale_pair
from ..config import njit

MODES = ("nearest", "bilinear")


# --------------------------------------------------------------------------
# Numba loops
# --------------------------------------------------------------------------
@njit(parallel=True)
def _upsample_fwd(x, idx_h, wgt_h, idx_w, wgt_w, out):
    N, C, W = x.shape[0], x.shape[1], x.shape[3]
    H_out, W_out = out.shape[2], out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p % C
        row = np.empty(W, dtype=x.dtype)
        for i in range(H_out):
            row[:] = (
                wgt_h[0, i] * x[n, c, idx_h[0, i]] + wgt_h[1, i] * x[n, c, idx_h[1, i]]
            )
            dst = out[n, c, i]
            for j in range(W_out):
                dst[j] = wgt_w[0, j] * row[idx_w[0, j]] + wgt_w[1, j] * row[idx_w[1, j]]


@njit(parallel=True)
def _upsample_bwd(dout, idx_h, wgt_h, idx_w, wgt_w, dx):
    N, C, W = dx.shape[0], dx.shape[1], dx.shape[3]
    H_out, W_out = dout.shape[2], dout.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p % C
        dx[n, c] = 0.0
        row = np.empty(W, dtype=dx.dtype)
        for i in range(H_out):
            row[:] = 0.0
            src = dout[n, c, i]
            for j in range(W_out):
                row[idx_w[0, j]] += wgt_w[0, j] * src[j]
                row[idx_w[1, j]] += wgt_w[1, j] * src[j]
            dx[n, c, idx_h[0, i]] += wgt_h[0, i] * row
            dx[n, c, idx_h[1, i]] += wgt_h[1, i] * row


# --------------------------------------------------------------------------
# the coordinate map and checks
# --------------------------------------------------------------------------
def _axis(in_size, out_size, mode, scale_factor, dtype):
    """Source indices ``(2, out_size)`` and weights ``(2, out_size)`` of one axis.

    PyTorch's ``align_corners=False`` rule (see the reference module):
    bilinear reads ``src = max((i + 0.5) * ratio - 0.5, 0)``, nearest
    ``floor(i * ratio)`` in float32; ``ratio`` is ``1 / scale_factor`` if one
    is given, else ``in_size / out_size``.
    """
    i = np.arange(out_size)
    idx = np.empty((2, out_size), dtype=np.int64)
    wgt = np.empty((2, out_size))
    if mode == "nearest":
        if scale_factor is not None:
            ratio = np.float32(1.0 / scale_factor)
        else:
            ratio = np.float32(in_size) / np.float32(out_size)
        idx[0] = np.minimum(np.floor(i.astype(np.float32) * ratio), in_size - 1)
        idx[1] = idx[0]
        wgt[0], wgt[1] = 1.0, 0.0
    else:
        ratio = 1.0 / scale_factor if scale_factor is not None else in_size / out_size
        src = np.maximum((i + 0.5) * ratio - 0.5, 0.0)
        idx[0] = np.minimum(np.floor(src), in_size - 1)
        idx[1] = np.minimum(idx[0] + 1, in_size - 1)
        wgt[1] = np.clip(src - idx[0], 0.0, 1.0)
        wgt[0] = 1.0 - wgt[1]
    return idx, wgt.astype(dtype)


def _check_args(output_size, mode, scale_factor, size_name):
    size = check_pair(output_size, size_name)
    mode = check_choice(mode, "mode", MODES)
    scales = (None, None)
    if scale_factor is not None:
        scales = check_scale_pair(scale_factor, "scale_factor")
    return size, mode, scales


def _maps(input_size, output_size, mode, scales, dtype):
    idx_h, wgt_h = _axis(input_size[0], output_size[0], mode, scales[0], dtype)
    idx_w, wgt_w = _axis(input_size[1], output_size[1], mode, scales[1], dtype)
    return idx_h, wgt_h, idx_w, wgt_w


# --------------------------------------------------------------------------
# forward and backward
# --------------------------------------------------------------------------
def upsample2d_forward(x, output_size, mode="bilinear", scale_factor=None):
    """Resize ``x`` to ``output_size`` by interpolation.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        float32 or float64.
    output_size : int or (int, int)
        ``(H_out, W_out)``.
    mode : {"bilinear", "nearest"}
    scale_factor : float or (float, float), optional
        Sets the coordinate ratio ``1 / scale_factor`` (PyTorch's rule when
        the size came from a scale factor); ``None`` uses ``H / H_out`` and
        ``W / W_out``.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)

    Shape
    -----
    ``(H_out, W_out) = output_size``; a layer with a scale factor ``s`` asks
    for ``H_out = floor(H * s)``, ``W_out = floor(W * s)``.
    """
    x = check_float_array(x, "x", ndim=4)
    size, mode, scales = _check_args(output_size, mode, scale_factor, "output_size")
    N, C, H, W = x.shape
    out = np.empty((N, C) + size, dtype=x.dtype)
    _upsample_fwd(x, *_maps((H, W), size, mode, scales, x.dtype), out)
    return out


def upsample2d_backward(dout, input_size, mode="bilinear", scale_factor=None):
    """Gradient of :func:`upsample2d_forward` with respect to its input.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
    input_size : int or (int, int)
        ``(H, W)`` of the forward input.
    mode : {"bilinear", "nearest"}
    scale_factor : float or (float, float), optional
        As in the forward call.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)

    Shape
    -----
    ``(H, W) = input_size``.
    """
    dout = check_float_array(dout, "dout", ndim=4)
    size, mode, scales = _check_args(input_size, mode, scale_factor, "input_size")
    N, C, H_out, W_out = dout.shape
    dx = np.empty((N, C) + size, dtype=dout.dtype)
    _upsample_bwd(dout, *_maps(size, (H_out, W_out), mode, scales, dout.dtype), dx)
    return dx
