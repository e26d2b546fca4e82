"""2-D convolution (stride 1, zero padding) as BLAS matrix products over row bands.

The fast twin of :mod:`npsegnet.reference.conv`. The arithmetic is done by
NumPy's ``matmul`` (OpenBLAS SGEMM/DGEMM); Numba loops only rearrange data
around it, always along image rows, so that every copy is a unit-stride run
of ``W`` numbers in the NCHW layout the layers use.

How the products are laid out
-----------------------------
Write ``xp`` for the zero-padded input of one image, an *anchor row* ``h`` of
``xp`` and a group size ``G`` (1, or ``KH``). For a band of anchor rows
``b0 .. b0 + r - 1`` the **columns** are

    cols[(g, kw, c), (a, w)] = xp[c, b0 + a + g, w + kw]

one row per ``(g, kw, c)`` (``G * KW * C`` rows), one column per output pixel
of the band (``r * W_out``): each row of ``cols`` is ``r`` input rows shifted
by ``kw``. The weights are regrouped to match,
``wk[(j, f), (g, kw, c)] = weight[f, c, j * G + g, kw]`` for the ``KH / G``
remaining row offsets ``j``, and one GEMM

    P = wk @ cols                      # (KH / G * F, pixels of the band)

gives every contribution of the band's anchor rows at once: ``P[(j, f), (a, w)]``
belongs to row ``b0 + a - j * G`` of output channel ``f``, and is already an
output row in NCHW order. A Numba pass adds the ``KH / G`` pieces of each
output row (and the bias) in place.

* ``G = 1`` (the default) copies each input row ``KW`` times instead of the
  ``KH * KW`` times of a full im2col; a band of rows at a time keeps the
  buffer to ``BAND_BYTES``. The GEMM has ``M = KH * F`` and ``K = KW * C``
  (448 x 448 for a 7x7 64 -> 64 layer), a shape BLAS runs near its peak.
* ``G = KH`` is the full im2col, used when ``KH * KW * C`` is small (the RGB
  input layer: ``K = 147``), where ``K = KW * C`` alone would be too thin.
* Anchor rows that lie in the zero padding contribute nothing and are skipped
  (``G = 1``).

Backward, per band, reuses the same columns: with ``S[(j, f), (a, w)] =
dout[f, b0 + a - j * G, w]`` (the upstream gradient shifted by each row
offset; again whole rows), ``dwk = S @ cols.T`` and, for ``G = 1``,
``dcols = wk.T @ S``, whose rows are folded back (summed over ``kw`` with the
shift undone) into the rows of ``dx``. A 1x1 convolution without padding
skips all of this: it is one GEMM per image.

Grouped convolutions (``groups > 1``) run all of this once per group, on
the group's channel slices. A depthwise one (one input channel per group, the
single-channel decoder filter) has too little work per GEMM; it has its own
loops, ``_depthwise_fwd`` and its two adjoints, that do the multiply-adds on
whole rows directly.

The parts of the work run on the library's threads, each with one BLAS
thread (:mod:`npsegnet.kernels._threads`): the forward pass splits the
output rows (whole images, or ranges of rows of one), each written by one
thread from the anchors it needs; the backward pass hands out bands, whose
rows of ``dx`` no other band touches, and adds their shares of the weight
gradient in band order. Either way a run is reproducible: the same inputs
and thread count give the same bits, whatever the threads' timing. (A
different thread count may round differently, as OpenBLAS's own threads
already did: it changes where the bands start and how BLAS blocks its
sums.) The Numba loops are serial: the threads are the parallelism.

Workspaces (column and product buffers) are kept per thread and reused
across calls, because allocating and first-touching tens of MB each call
costs as much as the packing itself.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._checks import check_float_array, check_positive_int
from ..config import njit
from ._threads import result_slots, run_parts, split_rows
from ._workspace import band, band_rows, output_array, workspace

# Target size of the column (or product) buffer of one band. Larger bands mean
# longer GEMMs and fewer hand-overs between Numba's threads and OpenBLAS's (each
# a barrier, costly when the machine is busy); smaller ones stay in cache.
# Between 2 and 16 MB the timings on the shared 2-core box were within noise.
BAND_BYTES = 8 << 20
# Use the full im2col (G = KH) when its K = KH * KW * C is at most this.
FULL_IM2COL_MAX_K = 256
# Convolutions of fewer FLOPs than this run in the calling thread, with
# OpenBLAS's own threads: handing parts to our threads and back (futures,
# wake-ups, the GIL between the Numba and BLAS calls) did not pay below it.
# SegNet-Basic on the synthetic 64x64 shapes (convolutions of 0.1-2.4 GFLOP)
# trained at 30-33 images/s threaded against 35-48 in the calling thread; the
# bench's 12.7-17 GFLOP rows and everything larger ran faster threaded.
THREADED_MIN_FLOPS = 2**32


# --------------------------------------------------------------------------
# Numba loops
# --------------------------------------------------------------------------
@njit(inline=True)
def _span(W, W_out, shift):
    """Output columns ``lo:hi`` whose input column ``w + shift`` lies in ``0:W``.

    Clamped so that ``0 <= lo <= hi <= W_out`` (an empty span when the shift
    reaches past the row).
    """
    lo = min(W_out, max(0, -shift))
    return lo, max(lo, min(W_out, W - shift))


@njit(inline=True)
def _copy_shifted(src, dst, shift):
    """dst[w] = src[w + shift] where that index exists, else 0 (one padded row)."""
    lo, hi = _span(src.shape[0], dst.shape[0], shift)
    dst[:lo] = 0.0
    dst[lo:hi] = src[lo + shift : hi + shift]
    dst[hi:] = 0.0


@njit
def _pack_cols(x, n, pad, KW, G, b0, r, W_out, cols):
    """cols[(g, kw, c), (a, w)] = xp[c, b0 + a + g, w + kw] for the band's rows.

    One row of ``cols`` per ``(g, kw, c)``; each is ``r`` shifted copies of
    input rows, written with unit stride.
    """
    C, H = x.shape[1], x.shape[2]
    for k in range(G * KW * C):
        g = k // (KW * C)
        kw = (k // C) % KW
        c = k % C
        for a in range(r):
            dst = cols[k, a * W_out : (a + 1) * W_out]
            hh = b0 + a + g - pad
            if hh < 0 or hh >= H:
                dst[:] = 0.0
            else:
                _copy_shifted(x[n, c, hh], dst, kw - pad)


@njit
def _add_rows(P, out, bias, n, G, KHo, h_lo, h_hi, b0, r, o0, o1):
    """Add the band's products into the output rows ``o0:o1`` they belong to.

    ``P[(j, f), (a, w)]`` is the contribution of anchor row ``b0 + a`` to
    output row ``b0 + a - j * G``. The band that holds a row's first anchor
    writes ``bias + pieces``; a later band adds its pieces to what is there.
    Rows outside ``o0:o1`` belong to another part of the work (another
    thread) and are left alone.
    """
    F, W_out = out.shape[1], out.shape[3]
    i_lo = max(o0, b0 - (KHo - 1) * G)
    i_hi = min(o1, b0 + r)
    for t in range((i_hi - i_lo) * F):
        f = t // (i_hi - i_lo)
        i = i_lo + t % (i_hi - i_lo)
        j_first = max(0, -((i - h_lo) // G))
        j_last = min(KHo - 1, (h_hi - 1 - i) // G)
        row = out[n, f, i]
        if b0 <= i + j_first * G < b0 + r:
            row[:] = bias[f]
        for j in range(j_first, j_last + 1):
            a = i + j * G - b0
            if 0 <= a < r:
                row += P[j * F + f, a * W_out : (a + 1) * W_out]


@njit
def _pack_dout(dout, n, G, KHo, b0, r, S):
    """S[(j, f), (a, w)] = dout[n, f, b0 + a - j * G, w] (0 outside the output)."""
    F, H_out, W_out = dout.shape[1], dout.shape[2], dout.shape[3]
    for t in range(KHo * F):
        j = t // F
        f = t % F
        for a in range(r):
            i = b0 + a - j * G
            dst = S[t, a * W_out : (a + 1) * W_out]
            if i < 0 or i >= H_out:
                dst[:] = 0.0
            else:
                dst[:] = dout[n, f, i]


@njit
def _fold_rows(dcols, dx, n, pad, KW, b0, r, W_out):
    """dx[n, c, b0 + a - pad, :] = sum over kw of the shifted rows of ``dcols``.

    The adjoint of :func:`_pack_cols` for ``G = 1``, whose anchor rows are
    real input rows: every row of ``dx`` belongs to exactly one band.
    """
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for t in range(C * r):
        c = t // r
        a = t % r
        hh = b0 + a - pad
        if hh < 0 or hh >= H:
            continue
        row = dx[n, c, hh]
        row[:] = 0.0
        base = a * W_out
        for kw in range(KW):
            # output column w reads input column w + kw - pad; as whole-slice
            # adds the loop vectorises (index by index it ran at half speed)
            shift = kw - pad
            lo, hi = _span(W, W_out, shift)
            row[lo + shift : hi + shift] += dcols[kw * C + c, base + lo : base + hi]


# depthwise convolution (groups = C_in): each filter sees one input channel,
# too little work for a GEMM, so the loops do the arithmetic themselves. Each
# thread copies the rows it reads into a small zero-padded buffer of its own
# and sums into a local row: with no possible aliasing LLVM vectorises the
# multiply-adds (on the arrays directly they ran ten times slower).
@njit(parallel=True)
def _depthwise_fwd(x, weight, bias, pad, out):
    """One filter per output channel, on one input channel.

    ``out[n, f, i, j] = bias[f] + sum_{kh, kw} weight[f, 0, kh, kw] *
    xp[n, c, i + kh, j + kw]`` with ``c = f // (F // C)``.
    """
    N, C, H, W = x.shape
    F, KH, KW = weight.shape[0], weight.shape[2], weight.shape[3]
    H_out, W_out = out.shape[2], out.shape[3]
    for t in prange(N * F):
        n = t // F
        f = t % F
        c = f // (F // C)
        xrow = np.zeros(W + 2 * pad, dtype=x.dtype)  # one padded input row
        acc = np.empty(W_out, dtype=out.dtype)
        for i in range(H_out):
            acc[:] = bias[f]
            for kh in range(KH):
                hh = i + kh - pad
                if 0 <= hh < H:
                    xrow[pad : pad + W] = x[n, c, hh]
                    for kw in range(KW):
                        wv = weight[f, 0, kh, kw]
                        for j in range(W_out):
                            acc[j] += wv * xrow[j + kw]
            out[n, f, i] = acc


@njit(reduction=True)
def _row_dot(a, b):
    s = 0.0
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


@njit(parallel=True)
def _depthwise_dweight(dout, x, pad, dweight):
    """dweight[f, 0, kh, kw] = sum over n, i of dout row . shifted padded input row.

    The rows are ``dout[n, f, i]`` and ``xp[n, c, i + kh, kw : kw + W_out]``.
    """
    N, C, H, W = x.shape
    F, KH, KW = dweight.shape[0], dweight.shape[2], dweight.shape[3]
    H_out, W_out = dout.shape[2], dout.shape[3]
    for f in prange(F):
        c = f // (F // C)
        xrow = np.zeros(W + 2 * pad, dtype=x.dtype)
        total = np.zeros((KH, KW))  # float64: it adds N * H_out row sums
        for n in range(N):
            for i in range(H_out):
                d = dout[n, f, i]
                for kh in range(KH):
                    hh = i + kh - pad
                    if 0 <= hh < H:
                        xrow[pad : pad + W] = x[n, c, hh]
                        for kw in range(KW):
                            total[kh, kw] += _row_dot(d, xrow[kw : kw + W_out])
        for kh in range(KH):
            for kw in range(KW):
                dweight[f, 0, kh, kw] = total[kh, kw]


@njit(parallel=True)
def _depthwise_dx(dout, weight, pad, dx):
    """The adjoint of :func:`_depthwise_fwd`, one input row at a time.

    Row ``h`` of ``dx[n, c]`` collects, over the filters ``f`` of channel
    ``c`` and the taps ``(kh, kw)``, ``weight[f, 0, kh, kw]`` times the row
    of ``dout`` that the tap carried it into, shifted back.
    """
    N, C, H, W = dx.shape
    F, KH, KW = weight.shape[0], weight.shape[2], weight.shape[3]
    H_out, W_out = dout.shape[2], dout.shape[3]
    m = F // C
    P = KW - 1  # drow[P + j] = dout[n, f, i, j]; zeros around it
    for t in prange(N * C):
        n = t // C
        c = t % C
        drow = np.zeros(P + W + pad + W_out, dtype=dout.dtype)
        acc = np.empty(W, dtype=dx.dtype)
        for hh in range(H):
            acc[:] = 0.0
            for f in range(c * m, (c + 1) * m):
                for kh in range(KH):
                    i = hh - kh + pad
                    if 0 <= i < H_out:
                        drow[P : P + W_out] = dout[n, f, i]
                        for kw in range(KW):
                            wv = weight[f, 0, kh, kw]
                            # input column j went to output column j - kw + pad
                            src = drow[P + pad - kw : P + pad - kw + W]
                            for j in range(W):
                                acc[j] += wv * src[j]
            dx[n, c, hh] = acc


# --------------------------------------------------------------------------
# checks and helpers
# --------------------------------------------------------------------------
def _check_padding(padding) -> int:
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)):
        raise TypeError(f"padding must be an int, got {type(padding).__name__}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    return int(padding)


def _check_conv_args(x, weight, padding, xname="x", groups=1):
    x = check_float_array(x, xname, ndim=4)
    weight = check_float_array(weight, "weight", ndim=4, dtype=x.dtype)
    padding = _check_padding(padding)
    groups = check_positive_int(groups, "groups")
    N, C, H, W = x.shape
    F, C_w, KH, KW = weight.shape
    if groups == 1 and C_w != C:
        raise ValueError(
            f"weight has {C_w} input channels (shape {weight.shape}) but {xname} "
            f"has C = {C} (shape {x.shape})"
        )
    if C_w * groups != C:
        raise ValueError(
            f"weight has {C_w} input channels per group (shape {weight.shape}), "
            f"so groups={groups} needs C = {C_w * groups}, but {xname} has C = {C} "
            f"(shape {x.shape})"
        )
    if F % groups:
        raise ValueError(
            f"weight has {F} filters (shape {weight.shape}), not a multiple of "
            f"groups={groups}"
        )
    H_out = H + 2 * padding - KH + 1
    W_out = W + 2 * padding - KW + 1
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"kernel {KH}x{KW} is larger than the padded input "
            f"{H + 2 * padding}x{W + 2 * padding} (padding={padding})"
        )
    return x, weight, padding, (N, F, H_out, W_out)


def _check_bias(bias, F, dtype):
    """``bias`` checked as ``(F,)`` of ``dtype``; zeros for None."""
    if bias is None:
        return np.zeros(F, dtype=dtype)
    bias = check_float_array(bias, "bias", ndim=1, dtype=dtype)
    if bias.shape != (F,):
        raise ValueError(f"bias must have shape ({F},), got {bias.shape}")
    return bias


def _check_dout(dout, out_shape, dtype):
    """``dout`` checked against the forward output's shape and dtype."""
    dout = check_float_array(dout, "dout", ndim=4, dtype=dtype)
    if dout.shape != out_shape:
        raise ValueError(
            f"dout must have the shape of the forward output {out_shape}, "
            f"got {dout.shape}"
        )
    return dout


def _group(C, KH, KW, need_dx):
    """Rows of the kernel packed into the columns (G) and the anchor range."""
    if not need_dx and KH * KW * C <= FULL_IM2COL_MAX_K:
        return KH
    return 1


def _regroup_weight(weight, G):
    """wk[(j, f), (g, kw, c)] = weight[f, c, j * G + g, kw], in a workspace."""
    F, C, KH, KW = weight.shape
    w5 = weight.reshape(F, C, KH // G, G, KW)
    wk = workspace("wk", ((KH // G) * F, G * KW * C), weight.dtype)
    np.copyto(wk.reshape(KH // G, F, G, KW, C), w5.transpose(2, 0, 3, 4, 1))
    return wk


def _ungroup_weight(wk, G, out):
    """The inverse of :func:`_regroup_weight`, written into ``out``."""
    F, C, KH, KW = out.shape
    w5 = wk.reshape(KH // G, F, G, KW, C)
    np.copyto(out.reshape(F, C, KH // G, G, KW), w5.transpose(1, 4, 0, 2, 3))
    return out


def _anchors(G, pad, H, H_out):
    # G = 1: only real input rows matter (padding rows of cols are zero);
    # G = KH: one anchor per output row.
    return (pad, pad + H) if G == 1 else (0, H_out)


# --------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------
def _forward(x, weight, bias, pad, out):
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    _, _, H_out, W_out = out.shape
    dtype = x.dtype
    G = _group(C, KH, KW, need_dx=False)
    KHo = KH // G
    wk = _regroup_weight(weight, G)
    h_lo, h_hi = _anchors(G, pad, H, H_out)
    Nc, K = wk.shape
    # rows whose every window lies in the padding only get the bias
    for i in range(H_out):
        if i + KH - 1 < h_lo or i >= h_hi:
            out[:, :, i, :] = bias[None, :, None]

    def part(n, o0, o1):
        """Output rows ``o0:o1`` of image ``n``, from the anchors they need."""
        a_lo, a_hi = max(h_lo, o0), min(h_hi, o1 + (KHo - 1) * G)
        if a_hi <= a_lo:
            return  # every window of these rows lies in the padding: bias only
        R = band_rows(W_out, max(K, Nc), dtype.itemsize, a_hi - a_lo, BAND_BYTES)
        for b0 in range(a_lo, a_hi, R):
            r = min(R, a_hi - b0)
            m = r * W_out
            cols = band("cols", K, m, dtype)
            prod = band("prod", Nc, m, dtype)
            _pack_cols(x, n, pad, KW, G, b0, r, W_out, cols)
            np.matmul(wk, cols, out=prod)
            _add_rows(prod, out, bias, n, G, KHo, h_lo, h_hi, b0, r, o0, o1)

    # every output row is written by one part (and the parts depend on the
    # thread count only), so the result does not depend on the timing
    threaded = 2 * out.size * K * KHo >= THREADED_MIN_FLOPS
    parts = split_rows(N, 0, H_out, numba.get_num_threads())
    run_parts(part, parts, threaded=threaded)
    return out


def _is_pointwise(weight, pad):
    return weight.shape[2] == 1 and weight.shape[3] == 1 and pad == 0


def _forward_groups(x, weight, bias, padding, groups, out):
    """A grouped convolution is ``groups`` independent ones on channel slices."""
    Cg, Fg = x.shape[1] // groups, weight.shape[0] // groups
    if Cg == 1:
        _depthwise_fwd(x, weight, bias, padding, out)
        return out
    for g in range(groups):
        xs, fs = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
        out[:, fs] = conv2d_forward(x[:, xs], weight[fs], bias[fs], padding)
    return out


def conv2d_forward(x, weight, bias, padding, groups=1, out=None):
    """Convolve ``x`` with ``weight`` (stride 1, zero padding), add ``bias``.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
        float32 or float64.
    weight : ndarray of shape (C_out, C_in / groups, KH, KW)
        Same dtype as ``x`` (PyTorch layout).
    bias : ndarray of shape (C_out,) or None
    padding : int
        Zeros added on each side of both spatial axes.
    groups : int
        Split the input and output channels into ``groups`` blocks, filter
        block ``g`` seeing input block ``g`` only (``C_in`` and ``C_out``
        divisible by it); ``groups = C_in`` is a depthwise convolution. The
        ``groups = 1`` path is untouched by this option.
    out : ndarray of shape (N, C_out, H_out, W_out), optional
        Where to write the result (dtype of ``x``, C-contiguous, not
        overlapping ``x``); a new array by default.

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)

    Shape
    -----
    ``H_out = H + 2 * padding - KH + 1`` and ``W_out = W + 2 * padding - KW + 1``.

    Notes
    -----
    ``out[n, f, i, j] = bias[f] + sum_{c, kh, kw} weight[f, c, kh, kw] *
    xp[n, c, i + kh, j + kw]`` (cross-correlation, as every deep-learning
    library), computed as described in the module docstring. With groups,
    ``c`` runs over the input block of ``f``'s group only.
    """
    x, weight, padding, out_shape = _check_conv_args(x, weight, padding, groups=groups)
    F = weight.shape[0]
    bias = _check_bias(bias, F, x.dtype)
    out = output_array(out, out_shape, x.dtype, inputs=(x, weight))
    if groups > 1:
        return _forward_groups(x, weight, bias, padding, groups, out)
    if _is_pointwise(weight, padding):
        N, C, H, W = x.shape
        np.matmul(
            weight.reshape(F, C), x.reshape(N, C, H * W), out=out.reshape(N, F, H * W)
        )
        out += bias[None, :, None, None]
        return out
    return _forward(x, weight, bias, padding, out)


# --------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------
def _backward_groups(dout, x, weight, padding, groups, need_dx, dx, dweight):
    """The gradients of :func:`_forward_groups`, group by group."""
    Cg, Fg = x.shape[1] // groups, weight.shape[0] // groups
    dx = dx if need_dx else None
    if Cg == 1:
        _depthwise_dweight(dout, x, padding, dweight)
        if need_dx:
            _depthwise_dx(dout, weight, padding, dx)
        return dx, dweight, dout.sum(axis=(0, 2, 3))
    for g in range(groups):
        xs, fs = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
        dx_g, dweight[fs], _ = conv2d_backward(
            dout[:, fs], x[:, xs], weight[fs], padding, need_dx=need_dx
        )
        if need_dx:
            dx[:, xs] = dx_g
    return dx, dweight, dout.sum(axis=(0, 2, 3))


def conv2d_backward(
    dout, x, weight, padding, need_dx=True, groups=1, dx=None, dweight=None
):
    """Gradients of :func:`conv2d_forward` given the upstream gradient.

    Parameters
    ----------
    dout : ndarray of shape (N, C_out, H_out, W_out)
        Gradient of the loss with respect to the output.
    x : ndarray of shape (N, C_in, H, W)
        The forward input.
    weight : ndarray of shape (C_out, C_in / groups, KH, KW)
    padding : int
    need_dx : bool
        Compute ``dx`` (the first layer of a network does not need it).
    groups : int
        As in :func:`conv2d_forward`.
    dx, dweight : ndarray, optional
        Where to write those two results (their shapes, the dtype of ``x``,
        C-contiguous, overlapping none of the inputs); new arrays by default.

    Returns
    -------
    dx : ndarray of shape (N, C_in, H, W) or None
        None when ``need_dx`` is False.
    dweight : ndarray of shape (C_out, C_in / groups, KH, KW)
    dbias : ndarray of shape (C_out,)

    Shape
    -----
    As the forward input, weight and bias.
    """
    x, weight, padding, out_shape = _check_conv_args(x, weight, padding, groups=groups)
    dout = _check_dout(dout, out_shape, x.dtype)
    inputs = (dout, x, weight)
    if need_dx:
        dx = output_array(dx, x.shape, x.dtype, "dx", inputs)
    dweight = output_array(dweight, weight.shape, x.dtype, "dweight", inputs)
    if groups > 1:
        return _backward_groups(dout, x, weight, padding, groups, need_dx, dx, dweight)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    _, _, H_out, W_out = out_shape
    dtype = x.dtype
    dbias = dout.sum(axis=(0, 2, 3))
    dx = dx if need_dx else None

    if _is_pointwise(weight, padding):
        w2 = weight.reshape(F, C)
        d3 = dout.reshape(N, F, H * W)
        x3 = x.reshape(N, C, H * W)
        dw2 = dweight.reshape(F, C)
        dw2.fill(0)
        tmp = workspace("dwtmp", (F, C), dtype)
        for n in range(N):
            np.matmul(d3[n], x3[n].T, out=tmp)
            dw2 += tmp
        if need_dx:
            np.matmul(w2.T, d3, out=dx.reshape(N, C, H * W))
        return dx, dweight, dbias

    G = _group(C, KH, KW, need_dx)
    KHo = KH // G
    wk = _regroup_weight(weight, G)
    Nc, K = wk.shape
    h_lo, h_hi = _anchors(G, padding, H, H_out)
    R = band_rows(W_out, max(K, Nc), dtype.itemsize, h_hi - h_lo, BAND_BYTES)

    # each band's share of the weight gradient goes to one of a few arrays,
    # reused round the ring (no array per band: a steady step allocates nothing)
    bands = [
        (n, b0, min(R, h_hi - b0)) for n in range(N) for b0 in range(h_lo, h_hi, R)
    ]
    slots = min(result_slots(), len(bands))
    shares = workspace("dw_shares", (slots, Nc, K), dtype)

    def band_work(slot, n, b0, r):
        """One band of anchors: its rows of ``dx`` (which no other band
        writes) and its share of the weight gradient, in ``shares[slot]``."""
        m = r * W_out
        cols = band("cols", K, m, dtype)
        S = band("prod", Nc, m, dtype)
        _pack_cols(x, n, padding, KW, G, b0, r, W_out, cols)
        _pack_dout(dout, n, G, KHo, b0, r, S)
        np.matmul(S, cols.T, out=shares[slot])
        if need_dx:
            dcols = cols  # the columns are used up: their buffer takes dcols
            np.matmul(wk.T, S, out=dcols)
            _fold_rows(dcols, dx, n, padding, KW, b0, r, W_out)
        return slot

    dwk = workspace("dwk", (Nc, K), dtype)
    dwk.fill(0)

    def add_share(slot):
        np.add(dwk, shares[slot], out=dwk)

    # the bands' shares are added in band order whatever the threads' timing,
    # so dweight does not depend on it
    threaded = 4 * dout.size * K * KHo >= THREADED_MIN_FLOPS
    parts = [(i % slots, *b) for i, b in enumerate(bands)]
    run_parts(band_work, parts, add_share, threaded=threaded)
    return dx, _ungroup_weight(dwk, G, dweight), dbias
