"""Max pooling with indices and max unpooling: Numba kernels against the NumPy
reference, the kernels' fast paths against their general path, and bad input.

Equality here is exact (``assert_array_equal``, NaN == NaN): both twins add
overlapping contributions in the same raster order, so they agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from npsegnet.kernels import pool as kern
from npsegnet.reference import pool as ref

IMPLS = [ref, kern]

# (kernel_size, stride, ceil_mode): SegNet's 2x2/2, overlapping 3x3/2 and 3x3/1,
# a non-square window, gaps between windows (stride > kernel), both rounding modes
CONFIGS = [
    (2, 2, False),
    (2, 2, True),
    (3, 2, False),
    (3, 2, True),
    (3, 1, False),
    ((2, 3), (1, 2), False),
    ((2, 3), (1, 2), True),
    (2, 3, True),
]
SHAPES = [(1, 1, 7, 9), (3, 2, 7, 9), (3, 2, 8, 10)]


def make_input(kind, shape, dtype, rng):
    """Inputs with the corner cases: distinct values, ties, constant planes, NaN."""
    if kind == "distinct":
        x = rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0
    elif kind == "ties":  # small integers: most windows hold tied maxima
        x = rng.integers(0, 3, shape).astype(float)
    elif kind == "constant":  # every window is one big tie
        x = np.full(shape, 2.5)
    elif kind == "nan":  # NaN propagates; several NaN in one window: the last wins
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.25] = np.nan
    elif kind == "inf":  # all -inf windows point at their first cell
        x = rng.choice([-np.inf, np.inf, 0.0, -1.0], size=shape, p=[0.7, 0.1, 0.1, 0.1])
    else:  # pragma: no cover - test bug
        raise ValueError(kind)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["distinct", "ties", "constant", "nan", "inf"])
@pytest.mark.parametrize("kernel_size, stride, ceil_mode", CONFIGS)
def test_kernels_match_reference(kernel_size, stride, ceil_mode, kind, dtype, rng):
    for shape in SHAPES:
        x = make_input(kind, shape, dtype, rng)
        y_ref, i_ref = ref.maxpool2d_forward(x, kernel_size, stride, ceil_mode)
        y, i = kern.maxpool2d_forward(x, kernel_size, stride, ceil_mode)
        assert y.dtype == x.dtype and i.dtype == np.int64
        np.testing.assert_array_equal(i, i_ref)
        np.testing.assert_array_equal(y, y_ref)

        dout = rng.standard_normal(y.shape).astype(dtype)
        dx = kern.maxpool2d_backward(dout, i, x.shape)
        assert dx.dtype == x.dtype
        np.testing.assert_array_equal(dx, ref.maxpool2d_backward(dout, i, x.shape))

        # unpool the decoder's own values (not y), so a slip in placement shows
        z = rng.standard_normal(y.shape).astype(dtype)
        u = kern.maxunpool2d_forward(z, i, x.shape[2:])
        assert u.dtype == x.dtype
        np.testing.assert_array_equal(u, ref.maxunpool2d_forward(z, i, x.shape[2:]))

        du = rng.standard_normal(x.shape).astype(dtype)
        np.testing.assert_array_equal(
            kern.maxunpool2d_backward(du, i), ref.maxunpool2d_backward(du, i)
        )


@pytest.mark.parametrize("kind", ["distinct", "ties", "nan"])
@pytest.mark.parametrize("kernel_size, stride, ceil_mode", CONFIGS[:4])
def test_kernels_match_reference_45x60(kernel_size, stride, ceil_mode, kind, rng):
    """SegNet's 45x60 stage: 22x30 (floor) or 23x30 (ceil) with 2x2 windows."""
    x = make_input(kind, (1, 2, 45, 60), np.float32, rng)
    y_ref, i_ref = ref.maxpool2d_forward(x, kernel_size, stride, ceil_mode)
    y, i = kern.maxpool2d_forward(x, kernel_size, stride, ceil_mode)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(y, y_ref)
    dout = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(
        kern.maxpool2d_backward(dout, i, x.shape),
        ref.maxpool2d_backward(dout, i, x.shape),
    )
    np.testing.assert_array_equal(
        kern.maxunpool2d_forward(dout, i, x.shape[2:]),
        ref.maxunpool2d_forward(dout, i, x.shape[2:]),
    )


def test_output_sizes():
    """floor((H - k) / s) + 1, or ceil(...) + 1 with the last window starting inside."""
    x = np.zeros((1, 1, 45, 60))
    assert ref.maxpool2d_forward(x, 2, 2)[0].shape[2:] == (22, 30)
    assert ref.maxpool2d_forward(x, 2, 2, True)[0].shape[2:] == (23, 30)
    # ceil((6 - 2) / 4) + 1 = 2 windows, the second starting at 4 < 6: kept
    assert ref.pool_output_size(6, 2, 4, True) == 2
    # ceil((5 - 2) / 3) + 1 = 3, but the third would start at 6 >= 5: dropped
    assert ref.pool_output_size(5, 2, 3, True) == 2
    assert ref.pool_output_size(5, 2, 3, False) == 2
    # ceil mode lets a window larger than the input start at 0 (as PyTorch)
    assert ref.pool_output_size(2, 3, 2, True) == 1
    assert ref.pool_output_size(2, 3, 2, False) == 0


def test_tie_and_nan_rules_by_hand():
    """First maximum in raster order; a NaN wins, the last NaN of its window."""
    nan = np.nan
    x = np.array([[[[1, 5, 5, 0], [5, 2, nan, nan]]]])
    for impl in IMPLS:
        y, i = impl.maxpool2d_forward(x, 2, 2)
        np.testing.assert_array_equal(y, [[[[5, nan]]]])
        np.testing.assert_array_equal(i, [[[[1, 7]]]])
    x = np.array([[[[-np.inf, -np.inf], [-np.inf, -np.inf]]]])
    for impl in IMPLS:
        y, i = impl.maxpool2d_forward(x, 2, 2)
        assert y[0, 0, 0, 0] == -np.inf and i[0, 0, 0, 0] == 0


def test_unpool_repeated_index_keeps_last_value_and_gathers_to_all():
    x = np.array([[[[1.0, 2.0, 3.0]]]])
    indices = np.zeros((1, 1, 1, 3), dtype=np.int64)
    for impl in IMPLS:
        out = impl.maxunpool2d_forward(x, indices, (1, 3))
        np.testing.assert_array_equal(out, [[[[3.0, 0.0, 0.0]]]])
        dx = impl.maxunpool2d_backward(np.array([[[[5.0, 6.0, 7.0]]]]), indices)
        np.testing.assert_array_equal(dx, [[[[5.0, 5.0, 5.0]]]])


def test_pool_backward_adds_where_windows_overlap():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the centre wins all four 2x2 stride-1 windows
    for impl in IMPLS:
        y, i = impl.maxpool2d_forward(x, 2, 1)
        assert (i == 4).all()
        dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), i, x.shape)
        assert dx[0, 0, 1, 1] == 10.0 and dx.sum() == 10.0


# -- the scatter's 2x2 block path must equal the general path on any indices -----
def _random_indices(shape, H, W, rng):
    return rng.integers(0, H * W, size=shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_hw", [(8, 10), (9, 11), (7, 9)])
def test_scatter_block_path_falls_back_exactly(out_hw, dtype, rng):
    """Indices that leave their 2x2 block (random, or one bad row late in a
    plane, or an edge window pointing into a full block) take the general path,
    plane by plane, with the same result as the reference."""
    H, W = out_hw
    h, w = 4, 5  # H, W within one of 2h, 2w: the block path is tried
    x = rng.permutation(H * W * 6).reshape(2, 3, H, W).astype(dtype)
    _, good = kern.maxpool2d_forward(x, 2, 2, ceil_mode=True)
    good = good[:, :, :h, :w].copy()
    cases = {"good": good, "random": _random_indices(good.shape, H, W, rng)}
    late = good.copy()
    late[1, 2, h - 2, 0] = late[1, 2, 0, 0]  # last full-block row of one plane
    cases["late"] = late
    edge = good.copy()
    edge[0, 1, h - 1, w - 1] = 0  # a (possibly partial) edge window into block (0, 0)
    cases["edge"] = edge
    dup = good.copy()
    dup[0, 0, 0, 0] = dup[0, 0, 0, 1]  # a repeated index: last write wins in unpool
    cases["dup"] = dup
    for name, idx in cases.items():
        src = rng.standard_normal(idx.shape).astype(dtype)
        np.testing.assert_array_equal(
            kern.maxpool2d_backward(src, idx, (2, 3, H, W)),
            ref.maxpool2d_backward(src, idx, (2, 3, H, W)),
            err_msg=name,
        )
        np.testing.assert_array_equal(
            kern.maxunpool2d_forward(src, idx, (H, W)),
            ref.maxunpool2d_forward(src, idx, (H, W)),
            err_msg=name,
        )


def test_pool_backward_of_negative_zero_is_positive_zero():
    """As PyTorch (zero-fill, then add): 0 + (-0.0) is +0.0, on every path."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    for k, s in [(2, 2), (3, 1)]:
        _, i = kern.maxpool2d_forward(x, k, s)
        dout = np.full(i.shape, -0.0)
        for impl in IMPLS:
            dx = impl.maxpool2d_backward(dout, i, x.shape)
            assert not np.signbit(dx).any()


def test_non_contiguous_and_int32_indices_accepted(rng):
    x = rng.standard_normal((2, 3, 9, 8))[:, :, :, ::-1]  # a strided view
    y, i = kern.maxpool2d_forward(x, 2, 2)
    y_ref, i_ref = ref.maxpool2d_forward(np.ascontiguousarray(x), 2, 2)
    np.testing.assert_array_equal(i, i_ref)
    i32 = i.astype(np.int32)
    dout = rng.standard_normal(y.shape)
    for impl in IMPLS:
        np.testing.assert_array_equal(
            impl.maxpool2d_backward(dout, i32, x.shape),
            ref.maxpool2d_backward(dout, i, x.shape),
        )
        np.testing.assert_array_equal(
            impl.maxunpool2d_forward(y, i32, (9, 8)),
            ref.maxunpool2d_forward(y, i, (9, 8)),
        )
        np.testing.assert_array_equal(
            impl.maxunpool2d_backward(x.copy(), i32),
            ref.maxunpool2d_backward(x.copy(), i),
        )


def test_empty_batch():
    x = np.zeros((0, 3, 4, 4), dtype=np.float32)
    for impl in IMPLS:
        y, i = impl.maxpool2d_forward(x, 2, 2)
        assert y.shape == (0, 3, 2, 2)
        assert impl.maxpool2d_backward(y, i, x.shape).shape == x.shape
        assert impl.maxunpool2d_forward(y, i, (4, 4)).shape == x.shape
        assert impl.maxunpool2d_backward(x, i).shape == y.shape


# -- bad input: the same clear errors from both twins ----------------------------
X = np.zeros((1, 2, 5, 6))
Y, IDX = ref.maxpool2d_forward(X, 2, 2)  # (1, 2, 2, 3)


@pytest.mark.parametrize("impl", IMPLS, ids=["reference", "kernels"])
@pytest.mark.parametrize(
    "args, exc, match",
    [
        (([1.0], 2, 2), TypeError, "x must be a NumPy array"),
        ((np.zeros((1, 1, 4, 4), dtype=int), 2, 2), TypeError, "x must have dtype"),
        ((np.zeros((4, 4)), 2, 2), ValueError, r"x must be a 4-d array \(N, C, H, W\)"),
        ((X, 0, 2), ValueError, "kernel_size must be >= 1"),
        ((X, 2.5, 2), TypeError, "kernel_size must be an int"),
        ((X, (2, 2, 2), 2), ValueError, "kernel_size must be an int or a pair"),
        ((X, 2, 0), ValueError, "stride must be >= 1"),
        ((X, 2, (1, -1)), ValueError, "stride must be >= 1"),
        ((X, 6, 1), ValueError, r"kernel_size \(6, 6\) is larger than the input x"),
        ((X, (2, 7), 1), ValueError, "is larger than the input x"),
        ((X, 2, 2, "yes"), TypeError, "ceil_mode must be a bool"),
    ],
)
def test_maxpool2d_forward_rejects(impl, args, exc, match):
    with pytest.raises(exc, match=match):
        impl.maxpool2d_forward(*args)


@pytest.mark.parametrize("impl", IMPLS, ids=["reference", "kernels"])
@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((Y, IDX.astype(float), X.shape), TypeError, "indices must have an integer"),
        ((Y, IDX[:, :1], X.shape), ValueError, "indices must have the shape of dout"),
        ((Y[0], IDX, X.shape), ValueError, "dout must be a 4-d array"),
        ((Y.astype(int), IDX, X.shape), TypeError, "dout must have dtype"),
        ((Y, IDX, (1, 2, 5)), ValueError, r"input_shape must be a 4-tuple"),
        ((Y, IDX, (1, 2, 0, 6)), ValueError, "input_shape must hold ints N, C >= 0"),
        ((Y, IDX, (1, 3, 5, 6)), ValueError, r"disagree on \(N, C\)"),
        ((Y, IDX - 100, X.shape), ValueError, "indices out of range: found -"),
        ((Y, IDX, (1, 2, 2, 2)), ValueError, r"indices out of range: found .*2x2 = 4"),
    ],
)
def test_maxpool2d_backward_rejects(impl, args, exc, match):
    with pytest.raises(exc, match=match):
        impl.maxpool2d_backward(*args)


@pytest.mark.parametrize("impl", IMPLS, ids=["reference", "kernels"])
@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((Y, IDX.astype(np.float32), (5, 6)), TypeError, "indices must have an int"),
        ((Y, IDX[..., :2], (5, 6)), ValueError, "indices must have the shape of x"),
        ((Y.astype(np.int64), IDX, (5, 6)), TypeError, "x must have dtype"),
        ((Y, IDX, (5,)), ValueError, r"output_size must be \(H, W\)"),
        ((Y, IDX, 5), ValueError, r"output_size must be \(H, W\)"),
        ((Y, IDX, (5, 0)), ValueError, "output_size must hold positive ints"),
        ((Y, IDX, (2, 2, 5, 6)), ValueError, r"disagree on \(N, C\)"),
        ((Y, IDX, (2, 3)), ValueError, r"indices out of range: .*2x3 = 6 cells"),
        ((Y, -IDX - 1, (5, 6)), ValueError, "indices out of range: found -"),
    ],
)
def test_maxunpool2d_forward_rejects(impl, args, exc, match):
    with pytest.raises(exc, match=match):
        impl.maxunpool2d_forward(*args)


@pytest.mark.parametrize("impl", IMPLS, ids=["reference", "kernels"])
def test_maxunpool2d_backward_rejects(impl):
    with pytest.raises(ValueError, match=r"indices out of range: found 30"):
        impl.maxunpool2d_backward(X, np.full(IDX.shape, 30))
    with pytest.raises(ValueError, match=r"disagree on \(N, C\)"):
        impl.maxunpool2d_backward(X, IDX[:, :1])
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        impl.maxunpool2d_backward(X, IDX.astype(float))
    with pytest.raises(TypeError, match="dout must be a NumPy array"):
        impl.maxunpool2d_backward(X.tolist(), IDX)


def test_unpool_accepts_full_shape_as_output_size():
    for impl in IMPLS:
        out = impl.maxunpool2d_forward(Y, IDX, X.shape)
        np.testing.assert_array_equal(out, impl.maxunpool2d_forward(Y, IDX, (5, 6)))
