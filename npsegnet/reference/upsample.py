"""Bilinear and nearest up-sampling (PyTorch's ``align_corners=False``), in plain NumPy.

The textbook version of :mod:`npsegnet.kernels.upsample`. Interpolating an
image is linear and *separable*: along each axis, every output sample is a
weighted sum of at most two input samples. So one ``(H_out, H)`` matrix ``A_h``
and one ``(W_out, W)`` matrix ``A_w`` describe the whole operation,

    out = A_h @ x @ A_w.T          (for every image and channel),

and the backward pass is the transposed product ``dx = A_h.T @ dout @ A_w``.
The kernels compute the same sums without building the matrices.

Where an output sample looks ("align_corners=False", the half-pixel rule)
------------------------------------------------------------------------
Pixels are unit squares and sample their centres: output pixel ``i`` has its
centre at ``i + 0.5`` in output units, which is ``(i + 0.5) * ratio`` in input
units, and input pixel ``h`` has its centre at ``h + 0.5``. Hence

    src = (i + 0.5) * ratio - 0.5,   clamped below at 0,

with ``ratio = in / out``, or ``1 / scale_factor`` when a scale factor sets
the size (PyTorch's rule: ``Upsample(scale_factor=s)`` uses ``1 / s`` even
where ``out = floor(in * s)`` makes ``in / out`` differ). **Bilinear** mixes
``h0 = floor(src)`` and ``h0 + 1`` (clamped to the last row) with weights
``1 - (src - h0)`` and ``src - h0``; **nearest** takes ``floor(i * ratio)``,
computed in float32 as PyTorch's CPU kernel does.
"""

from __future__ import annotations

import numpy as np

MODES = ("nearest", "bilinear")


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def interpolation_matrix(in_size, out_size, mode, scale_factor=None):
    """The ``(out_size, in_size)`` matrix of up-sampling along one axis.

    Parameters
    ----------
    in_size, out_size : int
    mode : {"nearest", "bilinear"}
    scale_factor : float, optional
        When given, the coordinate ratio is ``1 / scale_factor``; otherwise
        ``in_size / out_size``.

    Returns
    -------
    A : ndarray of shape (out_size, in_size), float64
        Each row sums to 1.
    """
    i = np.arange(out_size)
    A = np.zeros((out_size, in_size))
    if mode == "nearest":
        if scale_factor is not None:
            ratio = np.float32(1.0 / scale_factor)
        else:
            ratio = np.float32(in_size) / np.float32(out_size)
        src = np.floor(i.astype(np.float32) * ratio).astype(np.int64)
        A[i, np.minimum(src, in_size - 1)] = 1.0
        return A
    ratio = 1.0 / scale_factor if scale_factor is not None else in_size / out_size
    src = np.maximum((i + 0.5) * ratio - 0.5, 0.0)
    h0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    h1 = np.minimum(h0 + 1, in_size - 1)
    lam = np.clip(src - h0, 0.0, 1.0)
    np.add.at(A, (i, h0), 1.0 - lam)  # add: h0 == h1 on the last row
    np.add.at(A, (i, h1), lam)
    return A


def _matrices(input_size, output_size, mode, scale_factor):
    sh, sw = _pair(scale_factor)
    A_h = interpolation_matrix(input_size[0], output_size[0], mode, sh)
    A_w = interpolation_matrix(input_size[1], output_size[1], mode, sw)
    return A_h, A_w


def upsample2d_forward(x, output_size, mode="bilinear", scale_factor=None):
    """Resize ``x`` to ``output_size`` by interpolation.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    output_size : (int, int)
        ``(H_out, W_out)``.
    mode : {"bilinear", "nearest"}
    scale_factor : float or (float, float), optional
        Sets the coordinate ratio ``1 / scale_factor`` (see the module notes);
        ``None`` uses ``H / H_out`` and ``W / W_out``.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)

    Shape
    -----
    ``(H_out, W_out) = output_size``; a layer with a scale factor ``s`` asks
    for ``H_out = floor(H * s)``, ``W_out = floor(W * s)``.

    Notes
    -----
    ``out[n, c] = A_h @ x[n, c] @ A_w.T`` with the matrices of
    :func:`interpolation_matrix`.
    """
    A_h, A_w = _matrices(x.shape[2:], output_size, mode, scale_factor)
    return (A_h @ x @ A_w.T).astype(x.dtype)


def upsample2d_backward(dout, input_size, mode="bilinear", scale_factor=None):
    """Gradient of :func:`upsample2d_forward` with respect to its input.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
    input_size : (int, int)
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

    Notes
    -----
    ``dx[n, c] = A_h.T @ dout[n, c] @ A_w``: each input pixel collects the
    gradient of every output pixel it was mixed into, with the same weight.
    """
    A_h, A_w = _matrices(input_size, dout.shape[2:], mode, scale_factor)
    return (A_h.T @ dout @ A_w).astype(dout.dtype)
