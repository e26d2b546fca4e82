"""Properties of max pooling and unpooling on small random arrays (hypothesis).

Inputs are small integers, so ties are common; every property is checked
against a direct definition computed here, window by window.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from npsegnet.kernels import pool as kern
from npsegnet.reference.pool import pool_output_size

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def pooling_problems(draw, non_overlapping=False):
    N = draw(st.integers(1, 2))
    C = draw(st.integers(1, 2))
    H = draw(st.integers(1, 9))
    W = draw(st.integers(1, 9))
    if draw(st.booleans()):  # SegNet's 2x2 stride 2 (the kernels' fast paths)
        KH = KW = SH = SW = 2
    else:
        KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        lo = (KH, KW) if non_overlapping else (1, 1)
        SH, SW = draw(st.integers(lo[0], 4)), draw(st.integers(lo[1], 4))
    ceil_mode = draw(st.booleans())
    assume(pool_output_size(H, KH, SH, ceil_mode) >= 1)
    assume(pool_output_size(W, KW, SW, ceil_mode) >= 1)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = draw(arrays(dtype, (N, C, H, W), elements=st.integers(-3, 3).map(float)))
    return x, (KH, KW), (SH, SW), ceil_mode


def windows(x_shape, out_shape, kernel, stride):
    """Yield (i, j, h0, h1, w0, w1) of every window, clipped to the input."""
    H, W = x_shape[2:]
    for i in range(out_shape[2]):
        for j in range(out_shape[3]):
            h0, w0 = i * stride[0], j * stride[1]
            yield i, j, h0, min(h0 + kernel[0], H), w0, min(w0 + kernel[1], W)


@SETTINGS
@given(pooling_problems())
def test_every_index_is_the_first_maximum_of_its_own_window(problem):
    x, kernel, stride, ceil_mode = problem
    y, indices = kern.maxpool2d_forward(x, kernel, stride, ceil_mode)
    W = x.shape[3]
    for i, j, h0, h1, w0, w1 in windows(x.shape, y.shape, kernel, stride):
        r, c = np.divmod(indices[:, :, i, j], W)
        assert ((h0 <= r) & (r < h1) & (w0 <= c) & (c < w1)).all()
        window = x[:, :, h0:h1, w0:w1]
        m = window.max(axis=(2, 3))
        np.testing.assert_array_equal(y[:, :, i, j], m)
        # the first cell in raster order that holds the maximum
        first = np.argmax(window.reshape(*window.shape[:2], -1) == m[..., None], axis=2)
        fr, fc = np.divmod(first, w1 - w0)
        np.testing.assert_array_equal(indices[:, :, i, j], (h0 + fr) * W + w0 + fc)


@SETTINGS
@given(pooling_problems(non_overlapping=True))
def test_unpool_of_pool_keeps_window_maxima_in_place(problem):
    """Non-overlapping windows: each maximum back where it was, zeros elsewhere."""
    x, kernel, stride, ceil_mode = problem
    y, indices = kern.maxpool2d_forward(x, kernel, stride, ceil_mode)
    u = kern.maxunpool2d_forward(y, indices, x.shape[2:])
    expected = np.zeros_like(x)
    for _, _, h0, h1, w0, w1 in windows(x.shape, y.shape, kernel, stride):
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                window = x[n, c, h0:h1, w0:w1]
                r, col = np.unravel_index(np.argmax(window), window.shape)
                expected[n, c, h0 + r, w0 + col] = window[r, col]
    np.testing.assert_array_equal(u, expected)


@SETTINGS
@given(pooling_problems())
def test_pool_backward_of_ones_counts_the_windows_each_cell_won(problem):
    x, kernel, stride, ceil_mode = problem
    y, indices = kern.maxpool2d_forward(x, kernel, stride, ceil_mode)
    counts = np.zeros(x.shape, dtype=np.int64)
    W = x.shape[3]
    for i, j, *_ in windows(x.shape, y.shape, kernel, stride):
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                r, col = divmod(int(indices[n, c, i, j]), W)
                counts[n, c, r, col] += 1
    dx = kern.maxpool2d_backward(np.ones_like(y), indices, x.shape)
    np.testing.assert_array_equal(dx, counts)
    # and unpool backward (a gather) of pool backward returns each window's count
    np.testing.assert_array_equal(
        kern.maxunpool2d_backward(dx, indices),
        np.take_along_axis(
            counts.reshape(*x.shape[:2], -1), indices.reshape(*x.shape[:2], -1), 2
        ).reshape(y.shape),
    )
