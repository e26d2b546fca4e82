"""2-D convolution (stride 1, zero padding) in the frequency domain, by tiles.

The FFT twin of :mod:`npsegnet.kernels.conv`, for large kernels (SegNet-Basic's
7x7). A direct convolution spends ``KH * KW`` multiply-adds per output pixel
and channel pair; here a channel pair costs one complex multiply-add per
frequency of a tile, about ``4 * T * (T / 2 + 1) / (T - KH + 1)**2`` real ones
per output pixel (3.3 for 7x7 on 32x32 tiles, against 49).

How it is laid out (overlap-save)
---------------------------------
The output is cut into tiles of ``To_h x To_w`` pixels with ``To = T - K + 1``;
output tile ``(ti, tj)`` needs the ``T x T`` window of the padded input that
starts at ``(ti * To_h, tj * To_w)``. For a chunk of ``P`` tiles (flattened
over images and tile rows and columns):

1. a Numba loop copies the windows into ``tiles[p, c]`` (zeros outside the
   image), and ``scipy.fft.rfft2`` takes each to ``T x (T / 2 + 1)``
   frequencies;
2. the spectra are regrouped by frequency, ``X[q, p, c]``, and the channel sum
   is one batched complex GEMM per frequency,
   ``Y[q] = X[q] @ Wc[q]`` with ``Wc[q, c, f] = conj(rfft2(w[f, c]))[q]`` (a
   cross-correlation is a product with the conjugate spectrum);
3. ``irfft2`` takes ``Y`` back, and a Numba loop keeps the ``To x To`` pixels
   of each tile that the circular wrap did not reach, adding the bias.

The input gradient is a convolution too: ``dx`` is the correlation of
``dout`` padded by ``K - 1 - pad`` with the filters transposed and flipped,
which runs through the same three steps (its own tiles; no overlap-add, so no
two parts write one pixel). The weight gradient is a correlation of the input
windows with the output tiles: ``dw[f, c] = sum_p irfft2(X_p[c] *
conj(DY_p[f]))`` cropped to ``KH x KW``, where ``DY_p`` is output tile ``p``
of ``dout`` zero-padded to ``T x T`` (``To + K - 1 = T``: nothing wraps). The
sum over tiles stays in the frequency domain (one GEMM per frequency and
chunk, ``X[q].T @ conj(DY[q])``), and one inverse transform ends it.

Each call transforms the filters once for the whole batch
(:func:`weight_spectrum`). Nothing is kept from the forward pass for the
backward one: the forward pass uses ``conj(rfft2(w))`` and the input gradient
the spectrum of the flipped filters, a different array, which would cost
``C * F * T * (T / 2 + 1)`` complex numbers per layer (17.8 MB for 7x7
64 -> 64 at T = 32) held through the step to save one transform of the
filters, about 1 % of a 360x480 layer's backward pass.

Parts and threads: the chunks of tiles are the parts of
:func:`~npsegnet.kernels._threads.run_parts`, each transformed with one FFT
worker and multiplied with one BLAS thread; a part writes only its tiles'
output pixels, and the weight gradient's shares are added in chunk order, so
a run gives the same bits whatever the threads' timing.

Why scipy.fft: pocketfft (C++, in SciPy) transforms float32 as float32 (NumPy's
``numpy.fft`` computes in float64 and returns complex128, doubling the traffic
and the GEMM's cost), releases the GIL, and needs no plans; SciPy is already
a dependency of every scientific Python install. pyFFTW can be faster but
brings FFTW (GPL) and plan management.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.fft

from ..config import njit
from ._threads import result_slots, run_parts
from ._workspace import output_array, workspace
from .conv import _check_bias, _check_conv_args, _check_dout

__all__ = [
    "conv2d_fft_backward",
    "conv2d_fft_forward",
    "fft_tile_size",
    "weight_spectrum",
]

# Tiles per part: big enough that each per-frequency GEMM has some rows, small
# enough that a chunk's spectra stay in the core's cache (about 2-4 MB for 64
# channels of 32x32 tiles).
TARGET_CHUNK_BYTES = 4 << 20
# Outputs with both sides at least this use 32x32 tiles, smaller ones 16x16
# (see fft_tile_size for the measurements).
LARGE_TILE_MIN_SIDE = 64


def fft_tile_size(KH, KW, H_out, W_out) -> int:
    """The FFT size ``T`` (square tiles) of the measured rule.

    Parameters
    ----------
    KH, KW : int
        Kernel size.
    H_out, W_out : int
        Output size of the convolution.

    Returns
    -------
    T : int
        32 when both output sides are at least :data:`LARGE_TILE_MIN_SIDE`,
        else 16; in either case at least the next power of two above twice
        the kernel.

    Notes
    -----
    Measured on a 2-core AMD EPYC (Zen 3, AVX2) for 7x7 64 -> 64, batch 4,
    forward + backward time against T in {16, 24, 32, 48, 64}: at 360x480
    T = 32 was fastest (2.8x / 2.7x the GEMM path; 48 2.6x / 2.2x, 64 2.0x /
    1.5x, 16 1.7x / 1.9x), likewise at 90x120; at 45x60 16x16 tiles took
    0.056 s against 0.068 s for 32x32 (the weight gradient's fixed cost, one
    spectrum of ``C x F x T x T/2`` per part, outweighs the tiles' overlap).
    """
    side = 32 if min(H_out, W_out) >= LARGE_TILE_MIN_SIDE else 16
    return max(side, int(2 ** np.ceil(np.log2(2 * max(KH, KW)))))


def weight_spectrum(weight, T):
    """``conj(rfft2(weight[f, c]))`` on ``T x T``, grouped by frequency.

    Parameters
    ----------
    weight : ndarray of shape (C_out, C_in, KH, KW)
        float32 or float64 (any strides).
    T : int
        FFT size of the tiles.

    Returns
    -------
    spectrum : ndarray of shape (T * (T // 2 + 1), C_in, C_out)
        complex64 for float32, complex128 for float64; ``spectrum[q]`` is
        the right-hand matrix of frequency ``q``'s channel sum.
    """
    F, C = weight.shape[:2]
    spec = scipy.fft.rfft2(weight, s=(T, T), workers=numba.get_num_threads())
    spec = np.conj(spec, out=spec)
    return np.ascontiguousarray(spec.reshape(F, C, -1).transpose(2, 1, 0))


# --------------------------------------------------------------------------
# Numba loops
# --------------------------------------------------------------------------
@njit(inline=True)
def _tile_origin(p, th, tw, Toh, Tow):
    """Image ``n`` and the first output row and column of tile ``p``, which is
    ``(n, ti, tj)`` flattened over ``th x tw`` tiles of ``Toh x Tow`` pixels."""
    return p // (th * tw), ((p // tw) % th) * Toh, (p % tw) * Tow


@njit
def _pack_windows(x, pad, T, Toh, Tow, th, tw, p0, p1, tiles):
    """tiles[p - p0, c] = the T x T window of padded ``x`` under output tile p.

    Tile ``p`` is ``(n, ti, tj)`` flattened; its window starts at input row
    ``ti * Toh - pad`` and column ``tj * Tow - pad``; zeros outside ``x``.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for p in range(p0, p1):
        n, r0, c0 = _tile_origin(p, th, tw, Toh, Tow)
        r0 -= pad
        c0 -= pad
        lo = min(T, max(0, -c0))
        hi = max(lo, min(T, W - c0))
        for c in range(C):
            dst = tiles[p - p0, c]
            for a in range(T):
                hh = r0 + a
                if hh < 0 or hh >= H:
                    dst[a, :] = 0.0
                else:
                    dst[a, :lo] = 0.0
                    dst[a, lo:hi] = x[n, c, hh, c0 + lo : c0 + hi]
                    dst[a, hi:] = 0.0


@njit
def _pack_out_tiles(dout, T, Toh, Tow, th, tw, p0, p1, tiles):
    """tiles[p - p0, f] = output tile p of ``dout`` in the top-left of T x T zeros."""
    F, H_out, W_out = dout.shape[1], dout.shape[2], dout.shape[3]
    for p in range(p0, p1):
        n, r0, c0 = _tile_origin(p, th, tw, Toh, Tow)
        rows = min(Toh, H_out - r0)
        cols = min(Tow, W_out - c0)
        for f in range(F):
            dst = tiles[p - p0, f]
            dst[:, :] = 0.0
            for a in range(rows):
                dst[a, :cols] = dout[n, f, r0 + a, c0 : c0 + cols]


@njit
def _unpack_tiles(y, out, bias, Toh, Tow, th, tw, p0, p1):
    """out[n, f, tile p's pixels] = the unwrapped part of y[p - p0, f], plus bias.

    After the circular correlation, pixel ``(a, b)`` of a tile's window holds
    output ``(r0 + a, c0 + b)`` for ``a < To_h`` and ``b < To_w``; the rest
    wrapped around.
    """
    F, H_out, W_out = out.shape[1], out.shape[2], out.shape[3]
    for p in range(p0, p1):
        n, r0, c0 = _tile_origin(p, th, tw, Toh, Tow)
        rows = min(Toh, H_out - r0)
        cols = min(Tow, W_out - c0)
        for f in range(F):
            b = bias[f]
            for a in range(rows):
                out[n, f, r0 + a, c0 : c0 + cols] = y[p - p0, f, a, :cols] + b


# --------------------------------------------------------------------------
# the three steps on a chunk of tiles
# --------------------------------------------------------------------------
def _by_frequency(spec, name):
    """``(P, C, T, T2)`` spectra regrouped as ``(T * T2, P, C)`` in a workspace."""
    P, C, T, T2 = spec.shape
    grouped = workspace(name, (T * T2, P, C), spec.dtype)
    np.copyto(grouped.reshape(T, T2, P, C), spec.transpose(2, 3, 0, 1))
    return grouped


def _correlate_chunk(x, pad, spectrum, T, Toh, Tow, th, tw, p0, p1, bias, out):
    """Output tiles ``p0:p1`` of the correlation of ``x`` with the filters."""
    C = x.shape[1]
    F = spectrum.shape[2]
    P = p1 - p0
    real = x.dtype
    tiles = workspace("fft_tiles", (P, C, T, T), real)
    _pack_windows(x, pad, T, Toh, Tow, th, tw, p0, p1, tiles)
    X = _by_frequency(scipy.fft.rfft2(tiles, workers=1), "fft_X")
    Y = workspace("fft_Y", (T * (T // 2 + 1), P, F), X.dtype)
    np.matmul(X, spectrum, out=Y)
    Yt = workspace("fft_Yt", (P, F, T, T // 2 + 1), X.dtype)
    np.copyto(Yt, Y.reshape(T, T // 2 + 1, P, F).transpose(2, 3, 0, 1))
    y = scipy.fft.irfft2(Yt, s=(T, T), workers=1)
    _unpack_tiles(y, out, bias, Toh, Tow, th, tw, p0, p1)


def _chunks(total, C, F, T):
    """Tile ranges ``(p0, p1)`` of about :data:`TARGET_CHUNK_BYTES` of spectra,
    at least one per thread when there are enough tiles."""
    per_tile = max(C, F) * T * (T // 2 + 1) * 8
    size = max(1, TARGET_CHUNK_BYTES // per_tile)
    threads = numba.get_num_threads()
    size = max(1, min(size, -(-total // threads)))
    return [(p0, min(total, p0 + size)) for p0 in range(0, total, size)]


def _correlate(x, pad, spectrum, T, bias, out):
    """``out = correlate(pad(x), w) + bias`` with ``w``'s spectrum given."""
    N = x.shape[0]
    C, F = spectrum.shape[1], spectrum.shape[2]
    _, _, H_out, W_out = out.shape
    Toh = T - (x.shape[2] + 2 * pad - H_out)
    Tow = T - (x.shape[3] + 2 * pad - W_out)
    th, tw = -(-H_out // Toh), -(-W_out // Tow)
    parts = [
        (x, pad, spectrum, T, Toh, Tow, th, tw, p0, p1, bias, out)
        for p0, p1 in _chunks(N * th * tw, C, F, T)
    ]
    run_parts(_correlate_chunk, parts)
    return out


def _tile_for(weight, out_shape, T):
    F, C, KH, KW = weight.shape
    if T is None:
        return fft_tile_size(KH, KW, out_shape[2], out_shape[3])
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
        raise TypeError(f"tile must be an int, got {type(T).__name__}")
    if T <= max(KH, KW):
        raise ValueError(f"tile ({T}) must be larger than the kernel ({KH}x{KW})")
    return int(T)


def conv2d_fft_forward(x, weight, bias, padding, out=None, tile=None):
    """:func:`~npsegnet.kernels.conv.conv2d_forward` by FFT tiles (groups = 1).

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
        float32 or float64.
    weight : ndarray of shape (C_out, C_in, KH, KW)
    bias : ndarray of shape (C_out,) or None
    padding : int
    out : ndarray of shape (N, C_out, H_out, W_out), optional
        Where to write the result.
    tile : int, optional
        FFT size ``T``; by default :func:`fft_tile_size` picks it.

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)

    Shape
    -----
    ``H_out = H + 2 * padding - KH + 1``, likewise ``W_out``.
    """
    x, weight, padding, out_shape = _check_conv_args(x, weight, padding)
    bias = _check_bias(bias, weight.shape[0], x.dtype)
    out = output_array(out, out_shape, x.dtype, inputs=(x, weight))
    T = _tile_for(weight, out_shape, tile)
    return _correlate(x, padding, weight_spectrum(weight, T), T, bias, out)


def _dweight_chunk(x, dout, pad, T, Toh, Tow, th, tw, p0, p1, slot, shares):
    """Chunk ``p0:p1``'s share of the weight gradient's spectrum, in shares[slot]."""
    C, F = x.shape[1], dout.shape[1]
    P = p1 - p0
    tiles = workspace("fft_tiles", (P, max(C, F), T, T), x.dtype)
    xt = tiles[:, :C]
    _pack_windows(x, pad, T, Toh, Tow, th, tw, p0, p1, xt)
    X = _by_frequency(scipy.fft.rfft2(xt, workers=1), "fft_X")
    dt = tiles[:, :F]
    _pack_out_tiles(dout, T, Toh, Tow, th, tw, p0, p1, dt)
    DY = _by_frequency(scipy.fft.rfft2(dt, workers=1), "fft_Y")
    np.conj(DY, out=DY)
    np.matmul(X.transpose(0, 2, 1), DY, out=shares[slot])
    return slot


def conv2d_fft_backward(
    dout, x, weight, padding, need_dx=True, dx=None, dweight=None, tile=None
):
    """:func:`~npsegnet.kernels.conv.conv2d_backward` by FFT tiles (groups = 1).

    Parameters
    ----------
    dout : ndarray of shape (N, C_out, H_out, W_out)
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_out, C_in, KH, KW)
    padding : int
    need_dx : bool
        Compute ``dx``.
    dx, dweight : ndarray, optional
        Where to write those results.
    tile : int, optional
        FFT size of the tiles of both gradients; :func:`fft_tile_size` (of
        the forward output's size) by default.

    Returns
    -------
    dx : ndarray of shape (N, C_in, H, W) or None
    dweight : ndarray of shape (C_out, C_in, KH, KW)
    dbias : ndarray of shape (C_out,)
    """
    x, weight, padding, out_shape = _check_conv_args(x, weight, padding)
    dout = np.ascontiguousarray(_check_dout(dout, out_shape, x.dtype))
    inputs = (dout, x, weight)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    _, _, H_out, W_out = out_shape
    T = _tile_for(weight, out_shape, tile)
    if need_dx:
        dx = output_array(dx, x.shape, x.dtype, "dx", inputs)
        # dx = correlate(pad(dout, K - 1 - pad), flip(w).T); a padding larger
        # than K - 1 crops dout instead, which no layer here uses
        back = KH - 1 - padding
        if back < 0 or KW - 1 - padding != back:
            raise ValueError(
                "the FFT path needs padding <= kernel_size - 1 and a square kernel "
                f"for dx, got padding {padding} with a {KH}x{KW} kernel"
            )
        flipped = weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        _correlate(dout, back, weight_spectrum(flipped, T), T, np.zeros(C, x.dtype), dx)
    else:
        dx = None
    dweight = output_array(dweight, weight.shape, x.dtype, "dweight", inputs)
    Toh, Tow = T - KH + 1, T - KW + 1
    th, tw = -(-H_out // Toh), -(-W_out // Tow)
    chunks = _chunks(N * th * tw, C, F, T)
    q = T * (T // 2 + 1)
    cdtype = np.result_type(x.dtype, np.complex64)
    slots = min(result_slots(), len(chunks))
    shares = workspace("fft_dw_shares", (slots, q, C, F), cdtype)
    total = np.zeros((q, C, F), cdtype)

    def add_share(slot):
        np.add(total, shares[slot], out=total)

    parts = [
        (x, dout, padding, T, Toh, Tow, th, tw, p0, p1, i % slots, shares)
        for i, (p0, p1) in enumerate(chunks)
    ]
    run_parts(_dweight_chunk, parts, add_share)
    # total[q, c, f] = spectrum of dw[f, c] (correlation lags 0..K-1)
    spec = total.transpose(2, 1, 0).reshape(F, C, T, T // 2 + 1)
    full = scipy.fft.irfft2(spec, s=(T, T), workers=numba.get_num_threads())
    np.copyto(dweight, full[:, :, :KH, :KW])
    return dx, dweight, dout.sum(axis=(0, 2, 3))
