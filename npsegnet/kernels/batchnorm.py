"""Batch normalisation kernels: the Numba twins of :mod:`npsegnet.reference.batchnorm`.

Same function names, signatures and results as the reference (up to rounding).
The work is memory-bound, so each function makes as few passes over the
``(N, C, H, W)`` arrays as the maths allows, in parallel over channels:

* forward (train): one reading pass for the statistics, one pass that writes
  ``out``;
* backward: one reading pass for the two sums per channel, one pass that writes
  ``dx`` as ``a * g + b * (x - mean) + c`` with per-channel constants.

The per-channel sums end in float64 accumulators (only the accumulators: the
data stay in their dtype); see ``BLOCK`` below for how they are formed. The
variance is taken of ``x - pivot`` with the channel's first value as the pivot
(the "shifted data" algorithm), so a channel far from zero (mean 1e3, std 1e-3)
keeps its variance and a constant channel gets exactly 0.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._checks import check_float_array
from ..config import njit
from ._threads import run_ranges
from ._workspace import output_array

# -- private loops over preallocated arrays -----------------------------------
# Sums run in blocks of BLOCK values: inside a block, partial sums in the dtype
# of the data (no float32 -> float64 conversion per value), which LLVM may keep
# as many independent chains in vector registers (``njit(reduction=True)``
# lets it reassociate); each block's total is then added to a float64
# accumulator, so the rounding error grows with the BLOCK terms of one block at
# most, not with the N * H * W values of a channel.
BLOCK = 256
# The loops inside a block count with an unsigned index. A signed one may be
# negative as far as Numba knows, and an array index that might count from the
# end ("wraparound") kept LLVM from vectorising the sums: 7-8 GB/s on one core
# with the data in cache, against 80 GB/s unsigned (2-core AMD EPYC, float32).
_U0 = np.uint64(0)


@njit(reduction=True)
def _shifted_sums(row, pivot):
    """sum(row - pivot) and sum((row - pivot)**2) of a 1-d array, in float64."""
    L = row.shape[0]
    zero = row.dtype.type(0)
    s = 0.0
    q = 0.0
    for b0 in range(0, L, BLOCK):
        block = row[b0 : min(b0 + BLOCK, L)]
        sb = zero
        qb = zero
        for i in range(_U0, np.uint64(block.shape[0])):
            d = block[i] - pivot
            sb += d
            qb += d * d
        s += np.float64(sb)
        q += np.float64(qb)
    return s, q


@njit(reduction=True)
def _dot_sums(g, x, m):
    """sum(g) and sum(g * (x - m)) of two 1-d arrays, in float64."""
    L = g.shape[0]
    zero = g.dtype.type(0)
    s = 0.0
    t = 0.0
    for b0 in range(0, L, BLOCK):
        b1 = min(b0 + BLOCK, L)
        gb = g[b0:b1]
        xb = x[b0:b1]
        sb = zero
        tb = zero
        for i in range(_U0, np.uint64(gb.shape[0])):
            sb += gb[i]
            tb += gb[i] * (xb[i] - m)
        s += np.float64(sb)
        t += np.float64(tb)
    return s, t


@njit(parallel=True)
def _bn_stats(x, mean, var):
    """Per-channel mean and biased variance of x (N, C, L) into float64 (C,)."""
    N, C, L = x.shape
    for c in prange(C):
        # shifting by a value of the channel keeps the sum of squares small when
        # |mean| >> std, and makes a constant channel's variance exactly 0
        pivot = x[0, c, 0]
        s = 0.0
        q = 0.0
        for n in range(N):
            sn, qn = _shifted_sums(x[n, c], pivot)
            s += sn
            q += qn
        count = np.float64(N * L)
        shift = s / count
        mean[c] = np.float64(pivot) + shift
        var[c] = max(q / count - shift * shift, 0.0)  # rounding may go below 0


@njit
def _bn_affine(x, mean, scale, bias, relu, out, c0, c1):
    """out = (x - mean) * scale + bias per channel, then ReLU if relu.

    The ReLU is written as in :mod:`npsegnet.kernels.relu` (``y <= 0`` is False
    for NaN), so a NaN stays NaN exactly as BN followed by ReLU (and
    ``torch.relu``) gives it; ``y if y > 0 else 0`` would turn it into 0.
    Channels ``c0:c1`` (see :func:`run_ranges`).
    """
    N, C, L = x.shape
    zero = out.dtype.type(0)
    for c in range(c0, c1):
        m = mean[c]
        s = scale[c]
        b = bias[c]
        for n in range(N):
            xr = x[n, c]
            orow = out[n, c]
            if relu:
                for i in range(L):
                    y = (xr[i] - m) * s + b
                    orow[i] = zero if y <= zero else y
            else:
                for i in range(L):
                    orow[i] = (xr[i] - m) * s + b


# How the backward passes find the ReLU mask of a fused BN + ReLU forward.
_NO_MASK, _MASK_FROM_OUT, _MASK_FROM_X = 0, 1, 2


@njit
def _masked_row(gr, xr, orow, m, s, b, mode, g):
    """g[i] = gr[i] where the forward's ReLU passed element i, else 0.

    ``mode`` says where the mask comes from (see ``_MASK_*``).
    """
    zero = gr.dtype.type(0)
    if mode == _MASK_FROM_OUT:
        for i in range(gr.shape[0]):
            g[i] = gr[i] if orow[i] > zero else zero
    else:
        # the forward's own arithmetic (_bn_affine), so the mask is exact
        for i in range(gr.shape[0]):
            g[i] = gr[i] if (xr[i] - m) * s + b > zero else zero


@njit
def _mask_row(out, n, c, mode):
    """Row ``out[n, c]`` when the mask comes from it, else a placeholder row.

    Without that mask ``out`` is a ``(1, 1, 1)`` dummy: indexing it with
    ``(n, c)`` would read out of bounds (an ``IndexError`` under
    ``NUMBA_DISABLE_JIT=1``).
    """
    return out[n, c] if mode == _MASK_FROM_OUT else out[0, 0]


@njit(parallel=True)
def _bn_bwd_sums(dout, x, mean, out, scale, shift, mode, sum_g, sum_gx):
    """sum(g) and sum(g * (x - mean)) per channel in float64, g = dout masked."""
    N, C, L = x.shape
    for c in prange(C):
        m = mean[c]
        s = 0.0
        t = 0.0
        # the masked gradient of one row, so that the sums run through the
        # same blocked, eight-chain loop as the unmasked ones
        g = np.empty(L if mode != _NO_MASK else 0, x.dtype)
        for n in range(N):
            if mode != _NO_MASK:
                _masked_row(
                    dout[n, c],
                    x[n, c],
                    _mask_row(out, n, c, mode),
                    m,
                    scale[c],
                    shift[c],
                    mode,
                    g,
                )
                sn, tn = _dot_sums(g, x[n, c], m)
            else:
                sn, tn = _dot_sums(dout[n, c], x[n, c], m)
            s += sn
            t += tn
        sum_g[c] = s
        sum_gx[c] = t


@njit(parallel=True)
def _bn_bwd_write(dout, x, mean, a, b, c0, out, scale, shift, mode, dx):
    """dx = a * g + b * (x - mean) + c0 per channel, g = dout masked."""
    N, C, L = x.shape
    for c in prange(C):
        m = mean[c]
        ac = a[c]
        bc = b[c]
        cc = c0[c]
        g = np.empty(L if mode != _NO_MASK else 0, x.dtype)
        for n in range(N):
            gr = dout[n, c]
            xr = x[n, c]
            if mode != _NO_MASK:
                orow = _mask_row(out, n, c, mode)
                _masked_row(gr, xr, orow, m, scale[c], shift[c], mode, g)
                gr = g
            dr = dx[n, c]
            for i in range(L):
                dr[i] = ac * gr[i] + bc * (xr[i] - m) + cc


# -- checks -------------------------------------------------------------------
def _check_vector(v, name, C, dtype):
    """A per-channel vector of shape (C,) in the dtype of the data."""
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(v).__name__}")
    if v.shape != (C,):
        raise ValueError(
            f"{name} must have shape ({C},) (one per channel), got {v.shape}"
        )
    return check_float_array(v, name, ndim=1, dtype=dtype)


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
        raise TypeError(f"eps must be a float, got {type(eps).__name__}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return float(eps)


def _check_like(a, name, x):
    a = check_float_array(a, name, ndim=4, dtype=x.dtype)
    if a.shape != x.shape:
        raise ValueError(f"{name} must have the shape of x {x.shape}, got {a.shape}")
    return a


def _flat(a):
    """(N, C, H, W) -> (N, C, H * W) view."""
    N, C, H, W = a.shape
    return a.reshape(N, C, H * W)


# -- public twins of the reference --------------------------------------------
def batchnorm2d_forward_train(x, weight, bias, eps, relu=False, out=None):
    """Normalise with the statistics of the batch (training mode).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        Input, float32 or float64.
    weight, bias : ndarray of shape (C,)
        Scale (gamma) and shift (beta), same dtype as ``x``.
    eps : float
        Added to the variance before the square root.
    relu : bool
        Apply ``max(., 0)`` to the output (fused BN + ReLU).
    out : ndarray of shape (N, C, H, W), optional
        Where to write the output (dtype of ``x``, C-contiguous, not
        overlapping ``x``); a new array by default.

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    mean, var, inv_std : ndarray of shape (C,)
        Batch mean, biased batch variance and ``1 / sqrt(var + eps)``, in the
        dtype of ``x`` (accumulated in float64).

    Shape
    -----
    ``out`` has the shape of ``x``.
    """
    x = check_float_array(x, "x", ndim=4)
    C = x.shape[1]
    weight = _check_vector(weight, "weight", C, x.dtype)
    bias = _check_vector(bias, "bias", C, x.dtype)
    eps = _check_eps(eps)
    if x.size == 0:
        raise ValueError(f"x must not be empty, got shape {x.shape}")
    mean64 = np.empty(C, np.float64)
    var64 = np.empty(C, np.float64)
    _bn_stats(_flat(x), mean64, var64)
    inv_std64 = 1.0 / np.sqrt(var64 + eps)
    dt = x.dtype
    mean, var, inv_std = mean64.astype(dt), var64.astype(dt), inv_std64.astype(dt)
    scale = _affine_scale(weight, inv_std)
    out = output_array(out, x.shape, x.dtype, inputs=(x,))
    _affine(x, mean, scale, bias, relu, out)
    return out, mean, var, inv_std


def batchnorm2d_forward_eval(
    x, weight, bias, running_mean, running_var, eps, relu=False, out=None
):
    """Normalise with stored statistics (evaluation mode).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    weight, bias, running_mean, running_var : ndarray of shape (C,)
    eps : float
    relu : bool
        Apply ``max(., 0)`` to the output.
    out : ndarray of shape (N, C, H, W), optional
        Where to write the output (as in :func:`batchnorm2d_forward_train`).

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
        ``weight * (x - running_mean) / sqrt(running_var + eps) + bias``.
    """
    x = check_float_array(x, "x", ndim=4)
    C = x.shape[1]
    weight = _check_vector(weight, "weight", C, x.dtype)
    bias = _check_vector(bias, "bias", C, x.dtype)
    running_mean = _check_vector(running_mean, "running_mean", C, x.dtype)
    running_var = _check_vector(running_var, "running_var", C, x.dtype)
    eps = _check_eps(eps)
    inv_std64 = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    scale = (weight.astype(np.float64) * inv_std64).astype(x.dtype)
    out = output_array(out, x.shape, x.dtype, inputs=(x,))
    _affine(x, running_mean, scale, bias, relu, out)
    return out


def _affine(x, mean, scale, bias, relu, out):
    """``_bn_affine`` over the channels, shared among the library's threads."""
    run_ranges(
        _bn_affine,
        x.shape[1],
        (_flat(x), mean, scale, bias, bool(relu), _flat(out)),
        nbytes=x.nbytes + out.nbytes,
    )


def _affine_scale(weight, inv_std):
    """weight * inv_std per channel, as the training-mode forward applies it.

    Computed from ``inv_std`` in the data's dtype (the value the forward
    returns), so that a backward pass can rebuild the forward's ReLU mask
    bit for bit from ``x`` (``relu_bias``).
    """
    return (weight.astype(np.float64) * inv_std.astype(np.float64)).astype(
        inv_std.dtype
    )


def _backward(dout, x, mean, inv_std64, weight, out, batch_stats, relu=None, dx=None):
    """Shared body of the train- and eval-mode backward passes.

    The ReLU mask comes from ``out > 0`` when ``out`` is given, else from
    ``(x - mean) * scale + shift > 0`` when ``relu = (scale, shift)``.
    """
    C = x.shape[1]
    dummy_map = np.zeros((1, 1, 1), x.dtype)
    scale = shift = np.zeros(C, x.dtype)
    if out is not None:
        mode, mask_src = _MASK_FROM_OUT, _flat(out)
    elif relu is not None:
        mode, mask_src = _MASK_FROM_X, dummy_map
        scale, shift = relu
    else:
        mode, mask_src = _NO_MASK, dummy_map
    M = x.shape[0] * x.shape[2] * x.shape[3]
    sum_g = np.empty(C, np.float64)
    sum_gx = np.empty(C, np.float64)
    args = (mask_src, scale, shift, mode)
    _bn_bwd_sums(_flat(dout), _flat(x), mean, *args, sum_g, sum_gx)
    dbias = sum_g
    dweight = sum_gx * inv_std64
    a = weight.astype(np.float64) * inv_std64
    if batch_stats:
        b = -a * inv_std64 * dweight / M
        c0 = -a * dbias / M
    else:
        b = np.zeros(C)
        c0 = np.zeros(C)
    dt = x.dtype
    dx = output_array(dx, x.shape, dt, "dx", inputs=(dout, x, out))
    _bn_bwd_write(
        _flat(dout),
        _flat(x),
        mean,
        a.astype(dt),
        b.astype(dt),
        c0.astype(dt),
        *args,
        _flat(dx),
    )
    return dx, dweight.astype(dt), dbias.astype(dt)


def batchnorm2d_backward(
    dout, x, mean, inv_std, weight, out=None, relu_bias=None, dx=None
):
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
        The output of a fused BN + ReLU forward; ``dout`` is zeroed where
        ``out <= 0`` (ReLU'(0) = 0).
    relu_bias : ndarray of shape (C,), optional
        Instead of ``out``: the ``bias`` of a fused BN + ReLU forward. The
        mask is then rebuilt from ``x`` with the forward's arithmetic, so a
        layer need not keep its output alive until the backward pass.
    dx : ndarray of shape (N, C, H, W), optional
        Where to write ``dx`` (C-contiguous, overlapping none of the inputs);
        a new array by default.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dweight, dbias : ndarray of shape (C,)
    """
    x = check_float_array(x, "x", ndim=4)
    dout = _check_like(dout, "dout", x)
    C = x.shape[1]
    mean = _check_vector(mean, "mean", C, x.dtype)
    inv_std = _check_vector(inv_std, "inv_std", C, x.dtype)
    weight = _check_vector(weight, "weight", C, x.dtype)
    relu = None
    if out is not None:
        if relu_bias is not None:
            raise ValueError("give out or relu_bias for the ReLU mask, not both")
        out = _check_like(out, "out", x)
    elif relu_bias is not None:
        relu_bias = _check_vector(relu_bias, "relu_bias", C, x.dtype)
        relu = (_affine_scale(weight, inv_std), relu_bias)
    inv_std64 = inv_std.astype(np.float64)
    return _backward(dout, x, mean, inv_std64, weight, out, True, relu, dx)


def batchnorm2d_backward_eval(
    dout, x, running_mean, running_var, weight, eps, out=None, dx=None
):
    """Gradients of the evaluation-mode forward pass (fixed statistics).

    Parameters
    ----------
    dout, x : ndarray of shape (N, C, H, W)
    running_mean, running_var, weight : ndarray of shape (C,)
    eps : float
    out : ndarray of shape (N, C, H, W), optional
        The output of a fused BN + ReLU forward (masks ``dout`` where ``out <= 0``).
    dx : ndarray of shape (N, C, H, W), optional
        Where to write ``dx`` (as in :func:`batchnorm2d_backward`).

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dweight, dbias : ndarray of shape (C,)
    """
    x = check_float_array(x, "x", ndim=4)
    dout = _check_like(dout, "dout", x)
    C = x.shape[1]
    running_mean = _check_vector(running_mean, "running_mean", C, x.dtype)
    running_var = _check_vector(running_var, "running_var", C, x.dtype)
    weight = _check_vector(weight, "weight", C, x.dtype)
    eps = _check_eps(eps)
    if out is not None:
        out = _check_like(out, "out", x)
    inv_std64 = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    return _backward(dout, x, running_mean, inv_std64, weight, out, False, dx=dx)
