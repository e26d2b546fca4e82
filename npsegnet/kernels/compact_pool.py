"""Max pooling with 2-bit indices, and unpooling from them: the Numba twins.

Same functions, signatures and results (bit for bit) as
:mod:`npsegnet.reference.compact_pool`, and through ``store.to_flat()`` the
same as the int64 path of :mod:`npsegnet.kernels.pool`; see there for the
rules (ties, NaN, ceil mode). Every kernel makes one pass over its arrays, in
parallel over the ``N * C`` planes, like the int64 kernels:

* ``maxpool2d_forward_compact`` finds each window's maximum and its code
  ``dy * 2 + dx`` in the int64 kernel's branch-free loop, then packs the row's
  codes into their bytes before moving on (no int64 intermediate): it writes
  a quarter of a byte per window where the int64 kernel writes eight.
* ``maxpool2d_backward_compact`` and ``maxunpool2d_forward_compact`` share one
  scatter. 2x2 stride-2 windows tile the input, so row pair ``2i, 2i+1`` is
  zeroed and then each of its windows writes one value, at the flat offset
  ``(0, 1, W, W + 1)[code]`` of its block (the int64 kernel's block path,
  without its check that every index stays in its block: a code cannot leave
  it).
* ``maxunpool2d_backward_compact`` is a gather at the same offsets.

Codes are read a byte (four windows) at a time. A store's codes are checked
when it is made (a window that hangs over the edge must point inside), and its
bytes are read-only, so the loops here need no range checks.
"""

from __future__ import annotations

import numba
import numpy as np

from .._checks import (  # the store and the checks are shared with the reference
    CompactIndices,
    _check_compact_backward_args,
    _check_compact_gather_args,
    _check_compact_pool_args,
    _check_compact_unpool_args,
    compact_plane_bytes,
)
from ..config import njit

__all__ = [
    "CompactIndices",
    "maxpool2d_forward_compact",
    "maxpool2d_backward_compact",
    "maxunpool2d_forward_compact",
    "maxunpool2d_backward_compact",
]


# -- forward -----------------------------------------------------------------------
@njit
def _edge_window(xp, h0, w0):
    """Max and code of a window that hangs over the edge (cells past it skipped)."""
    H, W = xp.shape
    best = xp[h0, w0]
    code = 0
    for dy in range(2):
        for dx in range(2):
            if h0 + dy < H and w0 + dx < W:
                v = xp[h0 + dy, w0 + dx]
                if v > best or v != v:  # first of tied maxima stays; NaN takes over
                    best = v
                    code = dy * 2 + dx
    return best, code


@njit(parallel=True)
def _maxpool2d_fwd_compact(x, out, packed):
    N, C, H, W = x.shape
    H_out, W_out = out.shape[2], out.shape[3]
    H_full = min(H_out, H // 2)  # windows wholly inside (ceil mode may add one)
    W_full = min(W_out, W // 2)
    for p in numba.prange(N * C):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        op = out[n, c]
        bp = packed[n, c]
        codes = np.empty(W_out, dtype=np.uint8)  # one row's codes, in L1
        byte = 0
        k = 0  # window number in the plane: byte k >> 2, bits 2 * (k & 3)
        for i in range(H_out):
            start = 0
            if i < H_full:
                r0 = xp[2 * i]
                r1 = xp[2 * i + 1]
                for j in range(W_full):
                    # branch-free (selects), as the int64 kernel
                    w = 2 * j
                    best = r0[w]
                    code = 0
                    v = r0[w + 1]
                    take = (v > best) | (v != v)
                    best = v if take else best
                    code = 1 if take else code
                    v = r1[w]
                    take = (v > best) | (v != v)
                    best = v if take else best
                    code = 2 if take else code
                    v = r1[w + 1]
                    take = (v > best) | (v != v)
                    best = v if take else best
                    code = 3 if take else code
                    op[i, j] = best
                    codes[j] = code
                start = W_full
            for j in range(start, W_out):
                best, code = _edge_window(xp, 2 * i, 2 * j)
                op[i, j] = best
                codes[j] = code
            # pack apart from the max loop, which then stays as tight as int64's
            for j in range(W_out):
                byte |= np.int64(codes[j]) << (2 * (k & 3))
                if k & 3 == 3:
                    bp[k >> 2] = byte
                    byte = 0
                k += 1
        if k & 3:
            bp[k >> 2] = byte


def maxpool2d_forward_compact(x, ceil_mode=False):
    """2x2 stride-2 max pooling with 2-bit indices (Numba). See the reference.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        float32 or float64.
    ceil_mode : bool
        Round the output size up instead of down.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)
    store : CompactIndices
        ``store.to_flat()`` equals the int64 indices of
        ``npsegnet.kernels.pool.maxpool2d_forward(x, 2, 2, ceil_mode)``.

    Shape
    -----
    ``H_out = floor(H / 2)`` (``ceil`` in ceil mode); likewise ``W_out``.
    """
    x, (H_out, W_out) = _check_compact_pool_args(x, ceil_mode)
    N, C = x.shape[:2]
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    packed = np.empty((N, C, compact_plane_bytes(H_out, W_out)), dtype=np.uint8)
    _maxpool2d_fwd_compact(x, out, packed)
    return out, CompactIndices(packed, out.shape, x.shape[2:])


# -- scatter (pool backward, unpool forward) ---------------------------------------
@njit(parallel=True)
def _scatter_compact(src, packed, out, accumulate, zero):
    """Each window writes its value at its code into a zeroed pair of rows.

    Row pair ``2i, 2i+1`` of a plane is zeroed (a short memset that stays in
    the L1 cache), then window ``(i, j)`` writes at flat ``2i * W + 2j`` plus
    the offset of its code, ``(0, 1, W, W + 1)[code]``. The codes of windows
    that hang over the edge point inside (checked when the store was made),
    so the same loop serves ceil mode; floor mode's odd last row is zeroed at
    the end. ``accumulate`` (pool backward) writes ``zero + v``, as
    zero-fill-then-add would (``0 + (-0.0)`` is ``+0.0``).
    """
    N, C, h, w = src.shape
    W = out.shape[3]
    offset = np.array([0, 1, W, W + 1])
    for p in numba.prange(N * C):
        n = p // C
        c = p - n * C
        sp = src[n, c].reshape(-1)
        bp = packed[n, c]
        flat = out[n, c].reshape(-1)
        byte = 0
        for i in range(h):
            base = 2 * i * W
            flat[base : base + 2 * W] = zero
            for j in range(w):
                k = i * w + j
                if k & 3 == 0:  # a new byte: four windows' codes
                    byte = np.int64(bp[k >> 2])
                elif j == 0:  # a row that starts inside a byte
                    byte = np.int64(bp[k >> 2]) >> (2 * (k & 3))
                v = sp[k] + zero if accumulate else sp[k]
                flat[base + 2 * j + offset[byte & 3]] = v
                byte >>= 2
        flat[2 * h * W :] = zero  # floor mode: an odd last row no window covers


def maxpool2d_backward_compact(dout, store):
    """Send each upstream value to its window's winner (Numba). See the reference.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
        Upstream gradient.
    store : CompactIndices
        From :func:`maxpool2d_forward_compact`.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
        dtype of ``dout``; zero except at the winners.
    """
    dout, store = _check_compact_backward_args(dout, store)
    dx = np.empty(store.shape[:2] + store.input_size, dtype=dout.dtype)
    _scatter_compact(dout, store.packed, dx, True, dout.dtype.type(0))
    return dx


def maxunpool2d_forward_compact(x, store, output_size=None):
    """Put each value at its window's winner, zeros elsewhere (Numba).

    Parameters
    ----------
    x : ndarray of shape (N, C, H_out, W_out)
        The values to place.
    store : CompactIndices
        From :func:`maxpool2d_forward_compact`, of the shape of ``x``.
    output_size : (H, W) or (N, C, H, W), optional
        Must be the pooled input's size, which the store already knows.

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
        dtype of ``x``.
    """
    x, store = _check_compact_unpool_args(x, store, output_size)
    out = np.empty(store.shape[:2] + store.input_size, dtype=x.dtype)
    _scatter_compact(x, store.packed, out, False, x.dtype.type(0))
    return out


# -- gather (unpool backward) ------------------------------------------------------
@njit(parallel=True)
def _gather_compact(dout, packed, dx):
    """dx at window (i, j) = dout at flat ``2i * W + 2j + (0, 1, W, W + 1)[code]``."""
    N, C, h, w = dx.shape
    W = dout.shape[3]
    offset = np.array([0, 1, W, W + 1])
    for p in numba.prange(N * C):
        n = p // C
        c = p - n * C
        dp = dout[n, c].reshape(-1)
        bp = packed[n, c]
        xp = dx[n, c].reshape(-1)
        byte = 0
        for i in range(h):
            base = 2 * i * W
            for j in range(w):
                k = i * w + j
                if k & 3 == 0:
                    byte = np.int64(bp[k >> 2])
                elif j == 0:
                    byte = np.int64(bp[k >> 2]) >> (2 * (k & 3))
                xp[k] = dp[base + 2 * j + offset[byte & 3]]
                byte >>= 2


def maxunpool2d_backward_compact(dout, store):
    """Read ``dout`` at each window's winner (Numba). See the reference.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H, W)
        Upstream gradient of the unpooled map.
    store : CompactIndices
        The store given to :func:`maxunpool2d_forward_compact`.

    Returns
    -------
    dx : ndarray of shape (N, C, H_out, W_out)
        dtype of ``dout``.
    """
    dout, store = _check_compact_gather_args(dout, store)
    dx = np.empty(store.shape, dtype=dout.dtype)
    _gather_compact(dout, store.packed, dx)
    return dx
