"""Max pooling with indices, and max unpooling: the textbook version.

SegNet's encoder max-pools each feature map and remembers *where* every
maximum came from; the mirrored decoder stage puts each value back at that
place in a map of zeros (paper §3). These four functions are that idea in
plain NumPy, one loop over the windows of the pooled grid, vectorised over the
batch and the channels. Their fast twins live in :mod:`npsegnet.kernels.pool`.

Conventions (as PyTorch's ``max_pool2d(..., return_indices=True)`` and
``max_unpool2d``):

* **indices** are int64, one flat index ``h * W_in + w`` into each ``(n, c)``
  plane of the pooled input;
* **ties**: the first maximum in raster order (row by row, left to right) wins;
* **NaN** propagates: a window holding a NaN outputs NaN, and its index points
  at the *last* NaN of the window in raster order (PyTorch's rule: a cell
  replaces the running maximum when it is larger or is NaN);
* cells of a window outside the input (ceil mode) count as -inf: they never
  win, and a window whose cells are all -inf points at its first cell;
* unpooling writes into zeros; when an index repeats (possible only with
  overlapping windows), the value written last in raster order stays.
"""

from __future__ import annotations

import numpy as np

from .._checks import (  # the checks are shared with the kernels
    _check_backward_args,
    _check_index_range,
    _check_pool_args,
    _check_unpool_args,
    check_float_array,
    check_int_array,
    pool_output_size,
)

__all__ = [
    "pool_output_size",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "maxunpool2d_forward",
    "maxunpool2d_backward",
]


# -- the four ops ------------------------------------------------------------------
def maxpool2d_forward(x, kernel_size, stride, ceil_mode=False):
    """Max pooling that also returns where each maximum was.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        float32 or float64.
    kernel_size : int or (int, int)
        Window height and width ``(KH, KW)``.
    stride : int or (int, int)
        Step between windows ``(SH, SW)``.
    ceil_mode : bool
        Round the output size up (Caffe's SegNet) instead of down.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)
        The maximum of each window, dtype of ``x``.
    indices : ndarray of int64, shape (N, C, H_out, W_out)
        Flat index ``h * W + w`` of each maximum in its ``(n, c)`` plane.

    Shape
    -----
    ``H_out = floor((H - KH) / SH) + 1`` (``ceil`` in ceil mode, less one if
    the last window would start outside the input); likewise ``W_out``.
    """
    x, (KH, KW), (SH, SW), (H_out, W_out) = _check_pool_args(
        x, kernel_size, stride, ceil_mode
    )
    N, C, H, W = x.shape
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    indices = np.empty((N, C, H_out, W_out), dtype=np.int64)
    for i in range(H_out):
        h0, h1 = i * SH, min(i * SH + KH, H)  # cells past the edge are -inf: drop them
        for j in range(W_out):
            w0, w1 = j * SW, min(j * SW + KW, W)
            window = x[:, :, h0:h1, w0:w1].reshape(N, C, (h1 - h0) * (w1 - w0))
            first_max = np.argmax(window, axis=2)
            isnan = np.isnan(window)
            last_nan = window.shape[2] - 1 - np.argmax(isnan[:, :, ::-1], axis=2)
            pos = np.where(isnan.any(axis=2), last_nan, first_max)
            out[:, :, i, j] = np.take_along_axis(window, pos[..., None], 2)[..., 0]
            rows, cols = np.divmod(pos, w1 - w0)
            indices[:, :, i, j] = (h0 + rows) * W + (w0 + cols)
    return out, indices


def maxpool2d_backward(dout, indices, input_shape):
    """Gradient of max pooling: each upstream value goes back to its maximum.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
        Upstream gradient.
    indices : ndarray of int, shape (N, C, H_out, W_out)
        As returned by :func:`maxpool2d_forward`.
    input_shape : tuple (N, C, H, W)
        Shape of the pooled input.

    Returns
    -------
    dx : ndarray of shape ``input_shape``
        dtype of ``dout``. Where windows overlap (e.g. 3x3 stride 2) one cell
        can be the maximum of several windows, so contributions are **added**.
    """
    dout, indices, (N, C, H, W) = _check_backward_args(dout, indices, input_shape)
    _check_index_range(indices, H, W, "input")
    dx = np.zeros((N, C, H * W), dtype=dout.dtype)
    n, c = np.indices((N, C), sparse=True)
    # One window at a time, in raster order: within one window each (n, c)
    # plane gets one index, so the fancy-indexed += cannot collide.
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[n, c, indices[:, :, i, j]] += dout[:, :, i, j]
    return dx.reshape(N, C, H, W)


def maxunpool2d_forward(x, indices, output_size):
    """Max unpooling: put each value at its index in a map of zeros.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The values to place (in SegNet, the decoder's feature map).
    indices : ndarray of int, shape (N, C, H, W)
        Flat indices ``h * W_out + w`` from :func:`maxpool2d_forward`.
    output_size : (H_out, W_out) or (N, C, H_out, W_out)
        Size of the map to restore, normally the pooled input's size.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)
        Zero except at the indices; dtype of ``x``. A repeated index keeps
        the value written last in raster order (PyTorch's behaviour).

    Shape
    -----
    ``(N, C, H_out, W_out)`` as given by ``output_size``.
    """
    x, indices, (H_out, W_out) = _check_unpool_args(x, indices, output_size)
    _check_index_range(indices, H_out, W_out, "output")
    N, C = x.shape[:2]
    out = np.zeros((N, C, H_out * W_out), dtype=x.dtype)
    n, c = np.indices((N, C), sparse=True)
    for i in range(x.shape[2]):  # raster order, so the last write wins
        for j in range(x.shape[3]):
            out[n, c, indices[:, :, i, j]] = x[:, :, i, j]
    return out.reshape(N, C, H_out, W_out)


def maxunpool2d_backward(dout, indices):
    """Gradient of max unpooling: read ``dout`` back at the indices (a gather).

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
        Upstream gradient of the unpooled map.
    indices : ndarray of int, shape (N, C, H, W)
        The indices given to :func:`maxunpool2d_forward`.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
        ``dx[n, c, i, j] = dout[n, c].flat[indices[n, c, i, j]]``. As in
        PyTorch, a repeated index hands the gradient to every copy.
    """
    dout = check_float_array(dout, "dout", ndim=4)
    indices = check_int_array(indices, "indices", ndim=4)
    if indices.shape[:2] != dout.shape[:2]:
        raise ValueError(
            f"indices {indices.shape} and dout {dout.shape} disagree on (N, C)"
        )
    N, C, H_out, W_out = dout.shape
    _check_index_range(indices, H_out, W_out, "output")
    flat = np.take_along_axis(
        dout.reshape(N, C, H_out * W_out),
        indices.reshape(N, C, -1 if N * C else 0).astype(np.int64),
        axis=2,
    )
    return flat.reshape(indices.shape)
