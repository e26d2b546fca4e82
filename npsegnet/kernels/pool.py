"""Max pooling with indices and max unpooling: the Numba twins.

Same functions, signatures and results (bit for bit) as
:mod:`npsegnet.reference.pool`; see there for the conventions (index format,
ties, NaN, ceil mode). These ops do almost no arithmetic, so their speed is the
speed of memory: every kernel makes **one pass** over its arrays, in parallel
over the ``N * C`` planes (a plane of a 360x480 map fits in the L2 cache):
prange loops, or for those a first forward pass needs, serial loops over a
range of planes shared out by :func:`._threads.run_ranges` (they compile in
half the time). A fresh process compiles each kernel on first use, so the
special cases SegNet meets are kernels of their own, and the general ones
are never compiled in a SegNet.

* ``maxpool2d_forward`` finds the maximum and its index in the same loop: a
  fixed 2x2 loop for the full windows of SegNet's 2x2 stride-2 pooling, and
  a general one for any other window (ceil mode's partial ones included).
* ``maxpool2d_backward`` (scatter-add) and ``maxunpool2d_forward`` (scatter)
  share their kernels. When the pooled grid is half the input, a first one
  tries *block writes*: each 2x2 block gets its value at the index and zeros
  elsewhere, with no zero-filling pass. That is valid only if every index lies
  in its own block, which the loop checks as it goes; a plane where one does
  not (overlapping windows, or indices from elsewhere) is redone the general
  way by a second kernel: zero the plane, then scatter in raster order.
* ``maxunpool2d_backward`` is a gather.

Indices are range-checked inside the loops (a bad one is reported, never
written through), so the check costs no extra pass over memory.
"""

from __future__ import annotations

import numba
import numpy as np

from .._checks import (
    _check_backward_args,
    _check_pool_args,
    _check_unpool_args,
    _raise_index_error,
    check_float_array,
    check_int_array,
)
from ..config import njit
from ._threads import run_ranges
from ._workspace import output_array

__all__ = [
    "maxpool2d_forward",
    "maxpool2d_backward",
    "maxunpool2d_forward",
    "maxunpool2d_backward",
]


# -- forward -----------------------------------------------------------------------
@njit(inline=True)
def _window_max(xp, h0, h1, w0, w1):
    """Max and flat index of ``xp[h0:h1, w0:w1]`` with PyTorch's tie/NaN rule."""
    W = xp.shape[1]
    best = xp[h0, w0]
    arg = h0 * W + w0
    for h in range(h0, h1):
        for w in range(w0, w1):
            v = xp[h, w]
            # '>' keeps the first of tied maxima; 'v != v' (NaN) always takes over
            if v > best or v != v:
                best = v
                arg = h * W + w
    return best, arg


@njit
def _maxpool2x2_fwd(x, H_full, W_full, out, indices, p0, p1):
    """The full 2x2 stride-2 windows (rows ``< H_full``, columns ``< W_full``).

    Planes ``p0:p1`` of the ``N * C`` (see :func:`run_ranges`). Branch-free
    (selects), so random data costs no mispredictions.
    """
    C, W = x.shape[1], x.shape[3]
    for p in range(p0, p1):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        op = out[n, c]
        ip = indices[n, c]
        for i in range(H_full):
            h0 = 2 * i
            r0 = xp[h0]
            r1 = xp[h0 + 1]
            base0 = h0 * W
            for j in range(W_full):
                w = 2 * j
                best = r0[w]
                arg = base0 + w
                v = r0[w + 1]
                take = (v > best) | (v != v)
                best = v if take else best
                arg = base0 + w + 1 if take else arg
                v = r1[w]
                take = (v > best) | (v != v)
                best = v if take else best
                arg = base0 + W + w if take else arg
                v = r1[w + 1]
                take = (v > best) | (v != v)
                best = v if take else best
                arg = base0 + W + w + 1 if take else arg
                op[i, j] = best
                ip[i, j] = arg


@njit
def _maxpool2d_fwd(x, KH, KW, SH, SW, h_done, w_done, out, indices, p0, p1):
    """Any window, except those of rows ``< h_done`` and columns ``< w_done``.

    Those are the full 2x2 windows :func:`_maxpool2x2_fwd` has written
    (``h_done = w_done = 0`` for every window). Planes ``p0:p1``.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    H_out, W_out = out.shape[2], out.shape[3]
    for p in range(p0, p1):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        op = out[n, c]
        ip = indices[n, c]
        for i in range(H_out):
            h0 = i * SH
            h1 = min(h0 + KH, H)
            for j in range(w_done if i < h_done else 0, W_out):
                w0 = j * SW
                best, arg = _window_max(xp, h0, h1, w0, min(w0 + KW, W))
                op[i, j] = best
                ip[i, j] = arg


def maxpool2d_forward(x, kernel_size, stride, ceil_mode=False, out=None, indices=None):
    """Max pooling with indices (Numba); see the reference for the rules.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        float32 or float64.
    kernel_size : int or (int, int)
        Window ``(KH, KW)``.
    stride : int or (int, int)
        Step ``(SH, SW)``.
    ceil_mode : bool
        Round the output size up instead of down.
    out, indices : ndarray, optional
        Where to write the two results (their shapes and dtypes,
        C-contiguous, not overlapping ``x``); new arrays by default.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)
    indices : ndarray of int64, shape (N, C, H_out, W_out)
        Flat ``h * W + w`` per plane.

    Shape
    -----
    ``H_out = floor((H - KH) / SH) + 1`` (``ceil`` in ceil mode, less one if
    the last window would start outside the input); likewise ``W_out``.
    """
    x, (KH, KW), (SH, SW), (H_out, W_out) = _check_pool_args(
        x, kernel_size, stride, ceil_mode
    )
    N, C = x.shape[:2]
    shape = (N, C, H_out, W_out)
    out = output_array(out, shape, x.dtype, inputs=(x,))
    indices = output_array(indices, shape, np.int64, "indices", inputs=(x, out))
    # Two kernels, each compiled on first use only: SegNet's 2x2 windows need
    # just the first (with ceil mode's partial windows, the second too).
    P = N * C
    nbytes = x.nbytes + 2 * out.nbytes
    h_done = w_done = 0
    if (KH, KW, SH, SW) == (2, 2, 2, 2):
        h_done = min(H_out, (x.shape[2] - 2) // 2 + 1)
        w_done = min(W_out, (x.shape[3] - 2) // 2 + 1)
        run_ranges(_maxpool2x2_fwd, P, (x, h_done, w_done, out, indices), nbytes)
    if h_done < H_out or w_done < W_out:
        args = (x, KH, KW, SH, SW, h_done, w_done, out, indices)
        run_ranges(_maxpool2d_fwd, P, args, nbytes)
    return out, indices


# -- scatter (pool backward, unpool forward) ---------------------------------------
@njit(inline=True)
def _scatter_plane(sp, ip, op, accumulate, zero):
    """Zero ``op``, then scatter ``sp`` at ``ip`` in raster order.

    Returns -1 on success, else the position (flat into ``ip``) of the first
    out-of-range index.
    """
    flat = op.reshape(-1)  # flat indexing: no division per element
    flat[:] = zero
    size = flat.size
    w = sp.shape[1]
    for i in range(sp.shape[0]):
        srow = sp[i]
        irow = ip[i]
        for j in range(w):
            k = irow[j]
            if k < 0 or k >= size:
                return i * w + j
            if accumulate:
                flat[k] += srow[j]
            else:
                flat[k] = srow[j]
    return -1


@njit(inline=True)
def _scatter_blocks(sp, ip, op, accumulate, zero):
    """Scatter two rows at a time; False if an index leaves its 2x2 block.

    Block ``(i, j)`` covers rows ``2i, 2i+1`` and columns ``2j, 2j+1`` of
    ``op``. Row ``i`` of ``ip`` is first checked to point into its own blocks
    only; then the two rows it covers are zeroed (a short memset that stays
    in the L1 cache) and its values written. The rest of ``op`` (an odd last
    row, and the cells of ceil mode's partial windows) is zeroed and receives
    the remaining values in raster order, which must point there too. Under
    these conditions the result equals :func:`_scatter_plane`'s exactly (and
    each cell of a full block receives at most one value).
    """
    h, w = sp.shape
    H, W = op.shape
    hf = min(h, H // 2)
    wf = min(w, W // 2)
    flat = op.reshape(-1)
    for i in range(hf):
        srow = sp[i]
        irow = ip[i]
        base = 2 * i * W
        outside = 0
        for j in range(wf):
            d = irow[j] - (base + 2 * j)
            outside += (d != 0) & (d != 1) & (d != W) & (d != W + 1)
        if outside:
            return False
        flat[base : base + 2 * W] = zero
        for j in range(wf):
            # zero + v: pool backward is zero-fill then add (0 + -0.0 is +0.0)
            flat[irow[j]] = srow[j] + zero if accumulate else srow[j]
    flat[2 * hf * W :] = zero
    size = H * W
    for i in range(h):
        irow = ip[i]
        for j in range(wf if i < hf else 0, w):
            k = irow[j]
            if k < 0 or k >= size:
                return False
            if k < 2 * hf * W and k - (k // W) * W < 2 * wf:
                return False  # would land in a full block: leave it to the general path
            if accumulate:
                flat[k] += sp[i, j]
            else:
                flat[k] = sp[i, j]
    return True


@njit
def _scatter_block_planes(src, indices, out, accumulate, zero, done, p0, p1):
    """:func:`_scatter_blocks` on planes ``p0:p1``; ``done[p]``: it succeeded."""
    C = src.shape[1]
    for p in range(p0, p1):
        n = p // C
        c = p - n * C
        done[p] = _scatter_blocks(src[n, c], indices[n, c], out[n, c], accumulate, zero)


@njit
def _scatter_planes(src, indices, out, accumulate, zero, planes, bad, k0, k1):
    """:func:`_scatter_plane` on planes ``planes[k0:k1]``; ``bad[p]``: its result."""
    C = src.shape[1]
    for k in range(k0, k1):
        p = planes[k]
        n = p // C
        c = p - n * C
        bad[p] = _scatter_plane(src[n, c], indices[n, c], out[n, c], accumulate, zero)


def _scatter(src, indices, out, accumulate):
    """out[n, c].flat[indices[n, c, i, j]] (+)= src[n, c, i, j] for every plane.

    Block writes first where the pooled grid is half the map; the general
    scatter then (re)does the planes they could not. Each of the two kernels
    is compiled on first use only, so a SegNet, whose indices always stay in
    their blocks, never compiles the second. Returns ``bad`` (see
    :func:`_report_bad`).
    """
    N, C, h, w = src.shape
    H, W = out.shape[2], out.shape[3]
    P = N * C
    zero = src.dtype.type(0)
    nbytes = src.nbytes + indices.nbytes + out.nbytes
    bad = np.full(P, -1, dtype=np.int64)
    if 2 * h - 1 <= H <= 2 * h + 1 and 2 * w - 1 <= W <= 2 * w + 1:
        done = np.zeros(P, dtype=np.bool_)
        args = (src, indices, out, accumulate, zero, done)
        run_ranges(_scatter_block_planes, P, args, nbytes)
        planes = np.flatnonzero(~done)
    else:
        planes = np.arange(P)
    if planes.size:
        args = (src, indices, out, accumulate, zero, planes, bad)
        run_ranges(_scatter_planes, planes.size, args, nbytes)
    return bad


def _report_bad(bad, indices, H, W, what):
    """Raise for the first plane whose scatter/gather met an out-of-range index."""
    planes = np.flatnonzero(bad >= 0)
    if planes.size:
        p = planes[0]
        value = indices.reshape(bad.size, -1)[p, bad[p]]
        _raise_index_error(int(value), H, W, what)


def maxpool2d_backward(dout, indices, input_shape, dx=None):
    """Scatter-add ``dout`` to the indices (Numba). See the reference.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
        Upstream gradient.
    indices : ndarray of int, shape (N, C, H_out, W_out)
        From :func:`maxpool2d_forward`.
    input_shape : tuple (N, C, H, W)
        Shape of the pooled input.
    dx : ndarray of shape ``input_shape``, optional
        Where to write the result (dtype of ``dout``, C-contiguous, not
        overlapping the inputs); a new array by default.

    Returns
    -------
    dx : ndarray of shape ``input_shape``
        dtype of ``dout``; overlapping windows add up.
    """
    dout, indices, (N, C, H, W) = _check_backward_args(dout, indices, input_shape)
    dx = output_array(dx, (N, C, H, W), dout.dtype, "dx", inputs=(dout, indices))
    bad = _scatter(dout, indices, dx, True)
    _report_bad(bad, indices, H, W, "input")
    return dx


def maxunpool2d_forward(x, indices, output_size, out=None):
    """Place each value at its index in zeros (Numba). See the reference.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The values to place.
    indices : ndarray of int, shape (N, C, H, W)
        Flat ``h * W_out + w`` per plane.
    output_size : (H_out, W_out) or (N, C, H_out, W_out)
        Size of the map to restore.
    out : ndarray of shape (N, C, H_out, W_out), optional
        Where to write the result (dtype of ``x``, C-contiguous, not
        overlapping the inputs); a new array by default.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)
        A repeated index keeps the value written last in raster order.

    Shape
    -----
    ``(N, C, H_out, W_out)`` as given by ``output_size``.
    """
    x, indices, (H_out, W_out) = _check_unpool_args(x, indices, output_size)
    N, C = x.shape[:2]
    shape = (N, C, H_out, W_out)
    out = output_array(out, shape, x.dtype, inputs=(x, indices))
    bad = _scatter(x, indices, out, False)
    _report_bad(bad, indices, H_out, W_out, "output")
    return out


# -- gather (unpool backward) ------------------------------------------------------
@njit(parallel=True)
def _gather(dout, indices, dx, bad):
    """dx[p, k] = dout[p, indices[p, k]] over planes ``p``; flags bad indices."""
    P, K = indices.shape
    size = dout.shape[1]
    for p in numba.prange(P):
        dp = dout[p]
        ip = indices[p]
        xp = dx[p]
        for k in range(K):
            m = ip[k]
            if m < 0 or m >= size:
                bad[p] = k
                break
            xp[k] = dp[m]


def maxunpool2d_backward(dout, indices, dx=None):
    """Gather ``dout`` at the indices (Numba). See the reference.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
        Upstream gradient of the unpooled map.
    indices : ndarray of int, shape (N, C, H, W)
        The indices given to :func:`maxunpool2d_forward`.
    dx : ndarray of shape (N, C, H, W), optional
        Where to write the result (dtype of ``dout``, C-contiguous, not
        overlapping the inputs); a new array by default.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
        dtype of ``dout``.
    """
    dout = check_float_array(dout, "dout", ndim=4)
    indices = check_int_array(indices, "indices", ndim=4)
    if indices.shape[:2] != dout.shape[:2]:
        raise ValueError(
            f"indices {indices.shape} and dout {dout.shape} disagree on (N, C)"
        )
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    N, C, H_out, W_out = dout.shape
    dx = output_array(dx, indices.shape, dout.dtype, "dx", inputs=(dout, indices))
    bad = np.full(N * C, -1, dtype=np.int64)
    K = indices.shape[2] * indices.shape[3]
    _gather(
        dout.reshape(N * C, H_out * W_out),
        indices.reshape(N * C, K),
        dx.reshape(N * C, K),
        bad,
    )
    _report_bad(bad, indices, H_out, W_out, "output")
    return dx
