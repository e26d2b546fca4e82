"""Max pooling with 2-bit indices, and unpooling from them: the textbook version.

SegNet's decoder needs to know only *which of the four cells* of each 2x2
window held the maximum: 2 bits, where PyTorch's flat int64 index spends 64
(paper §3 stores "2 bits for each window"). These four functions are the ops of
:mod:`npsegnet.reference.pool` for 2x2 windows with stride 2, with the indices
kept as a :class:`CompactIndices` store: the code ``dy * 2 + dx`` of each
window's winner, packed four to a byte. Their fast twins live in
:mod:`npsegnet.kernels.compact_pool`.

Because 2x2 stride-2 windows tile the input without overlapping, everything is
a loop over the four *offsets* ``(dy, dx)``, each one a strided view
``x[:, :, dy::2, dx::2]`` of the (edge-padded) input, never over the windows.

The rules are those of the int64 path, and the results are bit for bit the
same (``store.to_flat()`` equals the int64 indices):

* **ties**: the first maximum in raster order within the window wins;
* **NaN**: a window holding a NaN outputs NaN and points at its last NaN;
* **ceil mode**: cells past the edge count as -inf and never win;
* the pool's backward is zero-fill-then-add (``0 + (-0.0)`` is ``+0.0``).
"""

from __future__ import annotations

import numpy as np

from .._checks import (  # the store and the checks are shared with the kernels
    CompactIndices,
    _check_compact_backward_args,
    _check_compact_gather_args,
    _check_compact_pool_args,
    _check_compact_unpool_args,
    pack_codes,
)

__all__ = [
    "CompactIndices",
    "maxpool2d_forward_compact",
    "maxpool2d_backward_compact",
    "maxunpool2d_forward_compact",
    "maxunpool2d_backward_compact",
]

# the four cells of a window in raster order, and their codes dy * 2 + dx
OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _padded(x, H_out, W_out, fill):
    """``x`` grown to ``(2 * H_out, 2 * W_out)`` with ``fill`` (ceil mode's edge).

    In floor mode an odd last row or column belongs to no window: it is cut off.
    """
    N, C, H, W = x.shape
    out = np.full((N, C, 2 * H_out, 2 * W_out), fill, dtype=x.dtype)
    h, w = min(H, 2 * H_out), min(W, 2 * W_out)
    out[:, :, :h, :w] = x[:, :, :h, :w]
    return out


def maxpool2d_forward_compact(x, ceil_mode=False):
    """2x2 stride-2 max pooling that records the winner of each window in 2 bits.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        float32 or float64.
    ceil_mode : bool
        Round the output size up (Caffe's SegNet) instead of down.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)
        The maximum of each window, dtype of ``x``.
    store : CompactIndices
        The window-local position ``dy * 2 + dx`` of each maximum, packed.

    Shape
    -----
    ``H_out = floor(H / 2)`` (``ceil`` in ceil mode); likewise ``W_out``.

    Examples
    --------
    >>> x = np.array([[[[1, 9, 2, 0, 5],
    ...                 [3, 4, 8, 7, 6],
    ...                 [0, 2, 1, 6, 3]]]], dtype=np.float32)
    >>> out, store = maxpool2d_forward_compact(x)
    >>> print(out)
    [[[[9. 8.]]]]
    >>> print(store.codes())  # 9 is top right (0, 1), 8 bottom left (1, 0)
    [[[[1 2]]]]
    >>> print(maxunpool2d_forward_compact(out, store))
    [[[[0. 9. 0. 0. 0.]
       [0. 0. 8. 0. 0.]
       [0. 0. 0. 0. 0.]]]]
    """
    x, (H_out, W_out) = _check_compact_pool_args(x, ceil_mode)
    xp = _padded(x, H_out, W_out, -np.inf)
    # Walk the four cells in raster order; a cell takes over when it is larger
    # than the best so far (so the first of tied maxima stays) or is NaN.
    out = xp[:, :, 0::2, 0::2].copy()
    codes = np.zeros(out.shape, dtype=np.uint8)
    for code, (dy, dx) in enumerate(OFFSETS[1:], start=1):
        v = xp[:, :, dy::2, dx::2]
        take = (v > out) | np.isnan(v)
        out = np.where(take, v, out)
        codes[take] = code
    store = CompactIndices(pack_codes(codes), out.shape, x.shape[2:])
    return out, store


def maxpool2d_backward_compact(dout, store):
    """Gradient of 2x2 stride-2 max pooling: each value back to its window's winner.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H_out, W_out)
        Upstream gradient.
    store : CompactIndices
        From :func:`maxpool2d_forward_compact`.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
        dtype of ``dout``; zero except at the winners. The windows do not
        overlap, so this is a scatter (added to zeros, as the int64 path).
    """
    dout, store = _check_compact_backward_args(dout, store)
    N, C, H_out, W_out = store.shape
    H, W = store.input_size
    codes = store.codes()
    dx = np.zeros((N, C, 2 * H_out, 2 * W_out), dtype=dout.dtype)
    for code, (dy, dxo) in enumerate(OFFSETS):
        dx[:, :, dy::2, dxo::2] += np.where(codes == code, dout, 0)
    return _cropped(dx, H, W)


def maxunpool2d_forward_compact(x, store, output_size=None):
    """Max unpooling from a compact store: each value back to its window's winner.

    Parameters
    ----------
    x : ndarray of shape (N, C, H_out, W_out)
        The values to place (in SegNet, the decoder's feature map).
    store : CompactIndices
        From :func:`maxpool2d_forward_compact`, of the shape of ``x``.
    output_size : (H, W) or (N, C, H, W), optional
        Must be the pooled input's size, which the store already knows
        (accepted for symmetry with the int64 function).

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
        Zero except at the winners; dtype of ``x``.
    """
    x, store = _check_compact_unpool_args(x, store, output_size)
    N, C, H_out, W_out = store.shape
    H, W = store.input_size
    codes = store.codes()
    out = np.zeros((N, C, 2 * H_out, 2 * W_out), dtype=x.dtype)
    for code, (dy, dx) in enumerate(OFFSETS):
        out[:, :, dy::2, dx::2] = np.where(codes == code, x, 0)
    return _cropped(out, H, W)


def maxunpool2d_backward_compact(dout, store):
    """Gradient of max unpooling: read ``dout`` at each window's winner (a gather).

    Parameters
    ----------
    dout : ndarray of shape (N, C, H, W)
        Upstream gradient of the unpooled map.
    store : CompactIndices
        The store given to :func:`maxunpool2d_forward_compact`.

    Returns
    -------
    dx : ndarray of shape (N, C, H_out, W_out)
        ``dout`` at the winner of each window; dtype of ``dout``.
    """
    dout, store = _check_compact_gather_args(dout, store)
    H_out, W_out = store.shape[2:]
    dp = _padded(dout, H_out, W_out, 0)  # the winners never lie in the padding
    views = [dp[:, :, dy::2, dx::2] for dy, dx in OFFSETS]
    return np.choose(store.codes(), views)


def _cropped(x, H, W):
    """The top-left ``(H, W)`` of ``x``; an odd floor-mode edge is padded with 0."""
    N, C, h, w = x.shape
    if (h, w) == (H, W):
        return x
    out = np.zeros((N, C, H, W), dtype=x.dtype)
    out[:, :, : min(h, H), : min(w, W)] = x[:, :, :H, :W]
    return out
