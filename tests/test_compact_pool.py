"""Compact 2-bit pooling indices: the store, the twins against each other and
against the int64 path (bit for bit), gradient checks, PyTorch parity through
``to_flat()``, and bad input.

Equality here is exact (``assert_array_equal``, NaN == NaN, and the sign of
zero compared apart): the compact path must reproduce the int64 path, not
approximate it.
"""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet._checks import CompactIndices as StoreBelow
from npsegnet.gradcheck import numerical_gradient_array, rel_error
from npsegnet.kernels import compact_pool as kern
from npsegnet.kernels import pool as flat
from npsegnet.reference import compact_pool as ref

IMPLS = [ref, kern]
IDS = ["reference", "kernels"]
CompactIndices = kern.CompactIndices

# odd and even sides, batch 1, a single row or column (ceil mode only), SegNet's
# 45x60 stage (22x30 floor, 23x30 ceil)
SHAPES = [
    (1, 1, 7, 9),
    (3, 2, 7, 9),
    (2, 3, 8, 10),
    (1, 2, 1, 5),
    (1, 1, 5, 1),
    (1, 1, 2, 2),
    (1, 3, 45, 60),
]


def make_input(kind, shape, dtype, rng):
    """Inputs with the corner cases: distinct values, ties, NaN, -inf, -0.0."""
    if kind == "distinct":
        x = rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0
    elif kind == "ties":  # small integers: most windows hold tied maxima
        x = rng.integers(0, 3, shape).astype(float)
    elif kind == "constant":  # every window is one big tie
        x = np.full(shape, 2.5)
    elif kind == "nan":  # several NaN in one window: the last wins
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.3] = np.nan
    elif kind == "inf":  # all -inf windows point at their first cell
        x = rng.choice([-np.inf, np.inf, 0.0, -1.0], size=shape, p=[0.7, 0.1, 0.1, 0.1])
    elif kind == "zeros":  # +0.0 and -0.0 tie: the first stays, with its sign
        x = rng.choice([0.0, -0.0], size=shape)
    else:  # pragma: no cover - test bug
        raise ValueError(kind)
    return x.astype(dtype)


def assert_same(actual, desired, err_msg=""):
    """Bit for bit: values (NaN == NaN), dtype, and the sign of every zero."""
    assert actual.dtype == desired.dtype and actual.shape == desired.shape, err_msg
    np.testing.assert_array_equal(actual, desired, err_msg=err_msg)
    np.testing.assert_array_equal(np.signbit(actual), np.signbit(desired), err_msg)


def pooled_ok(shape, ceil_mode):
    H, W = shape[2:]
    return ceil_mode or (H >= 2 and W >= 2)


# -- the twins against each other and against the int64 path ----------------------
@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kind", ["distinct", "ties", "constant", "nan", "inf", "zeros"]
)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_compact_path_equals_int64_path(impl, ceil_mode, kind, dtype, rng):
    for shape in SHAPES:
        if not pooled_ok(shape, ceil_mode):
            continue
        msg = f"{shape}, ceil_mode={ceil_mode}"
        x = make_input(kind, shape, dtype, rng)
        y_flat, indices = flat.maxpool2d_forward(x, 2, 2, ceil_mode)
        y, store = impl.maxpool2d_forward_compact(x, ceil_mode)
        assert isinstance(store, CompactIndices)
        assert store.shape == indices.shape and store.input_size == shape[2:]
        assert_same(y, y_flat, msg)
        to_flat = store.to_flat()
        assert to_flat.dtype == np.int64
        np.testing.assert_array_equal(to_flat, indices, err_msg=msg)

        dout = rng.standard_normal(y.shape).astype(dtype)
        dout[rng.random(dout.shape) < 0.2] = -0.0  # 0 + (-0.0) is +0.0 on both
        assert_same(
            impl.maxpool2d_backward_compact(dout, store),
            flat.maxpool2d_backward(dout, indices, x.shape),
            msg,
        )
        # unpool the decoder's own values (not y), so a slip in placement shows
        assert_same(
            impl.maxunpool2d_forward_compact(dout, store),
            flat.maxunpool2d_forward(dout, indices, shape[2:]),
            msg,
        )
        du = make_input("nan", shape, dtype, rng)
        assert_same(
            impl.maxunpool2d_backward_compact(du, store),
            flat.maxunpool2d_backward(du, indices),
            msg,
        )


@pytest.mark.parametrize("kind", ["distinct", "ties", "nan", "inf", "zeros"])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_kernels_equal_reference_bytes_included(ceil_mode, kind, rng):
    for shape in SHAPES + [(2, 5, 13, 11), (1, 4, 3, 3)]:
        if not pooled_ok(shape, ceil_mode):
            continue
        x = make_input(kind, shape, np.float32, rng)
        y_ref, s_ref = ref.maxpool2d_forward_compact(x, ceil_mode)
        y, s = kern.maxpool2d_forward_compact(x, ceil_mode)
        assert_same(y, y_ref)
        # the padding bits of a plane's last byte are 0 in both
        np.testing.assert_array_equal(s.packed, s_ref.packed)
        for impl in IMPLS:  # each twin reads the other's store
            other = s_ref if impl is kern else s
            dout = rng.standard_normal(y.shape).astype(np.float32)
            assert_same(
                impl.maxunpool2d_forward_compact(dout, other),
                ref.maxunpool2d_forward_compact(dout, s_ref),
            )


def test_realistic_segnet_stage_kernels(rng):
    """A SegNet stage at 90x120 with 64 channels (float32), against int64."""
    x = rng.standard_normal((2, 64, 90, 120), dtype=np.float32)
    y_flat, indices = flat.maxpool2d_forward(x, 2, 2)
    y, store = kern.maxpool2d_forward_compact(x)
    assert_same(y, y_flat)
    np.testing.assert_array_equal(store.to_flat(), indices)
    du = rng.standard_normal(x.shape, dtype=np.float32)
    dy = kern.maxunpool2d_backward_compact(du, store)
    assert_same(dy, flat.maxunpool2d_backward(du, indices))
    assert_same(
        kern.maxpool2d_backward_compact(dy, store),
        flat.maxpool2d_backward(dy, indices, x.shape),
    )


def test_tie_and_nan_rules_by_hand():
    """First maximum in raster order; a NaN wins, the last NaN of its window."""
    nan = np.nan
    x = np.array([[[[1, 5, 5, 0], [5, 2, nan, nan]]]])
    for impl in IMPLS:
        y, store = impl.maxpool2d_forward_compact(x)
        np.testing.assert_array_equal(y, [[[[5, nan]]]])
        np.testing.assert_array_equal(store.codes(), [[[[1, 3]]]])
        np.testing.assert_array_equal(store.to_flat(), [[[[1, 7]]]])
    x = np.full((1, 1, 3, 3), -np.inf)  # ceil mode: edge windows of -inf only
    for impl in IMPLS:
        y, store = impl.maxpool2d_forward_compact(x, ceil_mode=True)
        assert (y == -np.inf).all() and (store.codes() == 0).all()


def test_packed_layout_by_hand():
    """Window k of a plane in byte k // 4, bits 2 * (k % 4); rows run on."""
    # a 4x6 input: 2x3 windows, codes (row major) 1 2 3 / 0 3 1
    x = np.zeros((1, 1, 4, 6))
    for (i, j), code in np.ndenumerate([[1, 2, 3], [0, 3, 1]]):
        x[0, 0, 2 * i + code // 2, 2 * j + code % 2] = 1.0
    x = np.concatenate([x, x[:, :, ::-1, ::-1]], axis=1)  # a second plane
    for impl in IMPLS:
        _, store = impl.maxpool2d_forward_compact(x)
        assert store.packed.shape == (1, 2, 2)  # 6 windows: 2 bytes a plane
        b0 = 1 | 2 << 2 | 3 << 4 | 0 << 6
        b1 = 3 | 1 << 2  # the last byte's unused bits are 0
        assert store.packed[0, 0].tolist() == [b0, b1]
        # the flipped plane: codes reversed and mirrored (3 - code)
        np.testing.assert_array_equal(store.codes()[0, 1], [[2, 0, 3], [0, 1, 2]])


# -- the store -----------------------------------------------------------------------
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_to_flat_from_flat_round_trip(ceil_mode, rng):
    for shape in SHAPES + [(2, 5, 13, 11)]:
        if not pooled_ok(shape, ceil_mode):
            continue
        x = make_input("ties", shape, np.float64, rng)
        _, indices = flat.maxpool2d_forward(x, 2, 2, ceil_mode)
        store = CompactIndices.from_flat(indices, shape[2:])
        np.testing.assert_array_equal(store.to_flat(), indices)
        _, made = kern.maxpool2d_forward_compact(x, ceil_mode)
        np.testing.assert_array_equal(store.packed, made.packed)
        again = CompactIndices.from_flat(made.to_flat(), made.input_size)
        np.testing.assert_array_equal(again.packed, made.packed)
        # int32 indices are accepted too
        i32 = CompactIndices.from_flat(indices.astype(np.int32), shape[2:])
        np.testing.assert_array_equal(i32.packed, made.packed)


def test_store_is_one_class_reexported_by_both_twins():
    assert ref.CompactIndices is kern.CompactIndices is StoreBelow


def test_nbytes_is_a_32nd_of_int64_up_to_whole_bytes(rng):
    for shape in SHAPES + [(4, 64, 90, 120), (2, 5, 13, 11)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        _, indices = flat.maxpool2d_forward(x, 2, 2, True)
        _, store = kern.maxpool2d_forward_compact(x, True)
        N, C, H_out, W_out = store.shape
        assert store.nbytes == store.packed.nbytes == N * C * -(-H_out * W_out // 4)
        # 2 bits against 64 a window; each plane rounds up to whole bytes
        assert indices.nbytes / 32 <= store.nbytes < indices.nbytes / 32 + N * C
        if H_out * W_out % 4 == 0:
            assert indices.nbytes == 32 * store.nbytes
    # SegNet's four pooled maps at 360x480 (batch 1, 64 channels), by arithmetic
    for hw in [(180, 240), (90, 120), (45, 60), (23, 30)]:
        store = CompactIndices(
            np.zeros((1, 64, -(-hw[0] * hw[1] // 4)), np.uint8),
            (1, 64) + hw,
            (2 * hw[0] - (hw[0] == 23), 2 * hw[1]),
        )
        int64_bytes = 64 * hw[0] * hw[1] * 8
        assert int64_bytes <= 32 * store.nbytes < int64_bytes + 32 * 64


def test_store_is_read_only_and_reports_itself():
    x = np.arange(20.0).reshape(1, 1, 4, 5)
    _, store = kern.maxpool2d_forward_compact(x)
    with pytest.raises(ValueError, match="read-only"):
        store.packed[0, 0, 0] = 0
    assert (
        repr(store) == "CompactIndices(shape=(1, 1, 2, 2), input_size=(4, 5), nbytes=1)"
    )
    assert store.kernel_size == (2, 2) and store.stride == (2, 2)


def test_empty_batch():
    x = np.zeros((0, 3, 5, 4), dtype=np.float32)
    for impl in IMPLS:
        y, store = impl.maxpool2d_forward_compact(x, ceil_mode=True)
        assert y.shape == (0, 3, 3, 2) and store.nbytes == 0
        assert store.to_flat().shape == y.shape
        assert impl.maxpool2d_backward_compact(y, store).shape == x.shape
        assert impl.maxunpool2d_forward_compact(y, store).shape == x.shape
        assert impl.maxunpool2d_backward_compact(x, store).shape == y.shape


# -- gradients: float64 centred differences ------------------------------------------
def distinct(shape, rng):
    """float64 input without ties (values 0.1 apart): away from max's kinks."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 3.0


GRAD_CASES = [
    ((2, 3, 7, 9), False),
    ((2, 3, 7, 9), True),  # windows hanging over both edges
    ((1, 2, 6, 8), False),
    ((1, 2, 6, 8), True),
    ((1, 1, 5, 1), True),  # one column, every window hangs over
]


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@pytest.mark.parametrize("shape, ceil_mode", GRAD_CASES)
def test_pool_backward_gradient(impl, shape, ceil_mode, rng):
    x = distinct(shape, rng)
    y, store = impl.maxpool2d_forward_compact(x, ceil_mode)
    dout = rng.standard_normal(y.shape)
    dx = impl.maxpool2d_backward_compact(dout, store)
    numeric = numerical_gradient_array(
        lambda z: impl.maxpool2d_forward_compact(z, ceil_mode)[0], x, dout
    )
    assert rel_error(dx, numeric) < 1e-7


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@pytest.mark.parametrize("shape, ceil_mode", GRAD_CASES)
def test_unpool_backward_gradient(impl, shape, ceil_mode, rng):
    """Unpooling is linear in x; the store comes from pooling another map."""
    _, store = impl.maxpool2d_forward_compact(distinct(shape, rng), ceil_mode)
    x = rng.standard_normal(store.shape)
    dout = rng.standard_normal(shape)
    dx = impl.maxunpool2d_backward_compact(dout, store)
    numeric = numerical_gradient_array(
        lambda z: impl.maxunpool2d_forward_compact(z, store), x, dout
    )
    assert rel_error(dx, numeric) < 1e-7


def test_check_the_checker(rng):
    """A backward that reads the wrong cell of each window fails the check."""
    x = distinct((1, 2, 6, 8), rng)
    y, store = kern.maxpool2d_forward_compact(x)
    wrong = CompactIndices(store.packed ^ np.uint8(0b01010101), store.shape, (6, 8))
    dout = rng.standard_normal(y.shape)
    numeric = numerical_gradient_array(
        lambda z: kern.maxpool2d_forward_compact(z)[0], x, dout
    )
    assert rel_error(kern.maxpool2d_backward_compact(dout, store), numeric) < 1e-7
    assert rel_error(kern.maxpool2d_backward_compact(dout, wrong), numeric) > 0.1


# -- PyTorch parity through to_flat() ------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["distinct", "ties", "nan", "inf"])
@pytest.mark.parametrize(
    "shape, ceil_mode",
    [((1, 2, 7, 9), False), ((3, 2, 7, 9), True), ((1, 3, 45, 60), True)],
)
def test_matches_torch_through_to_flat(shape, ceil_mode, kind, dtype, rng, torch):
    F = torch.nn.functional
    x = make_input(kind, shape, dtype, rng)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty, ti = F.max_pool2d(tx, 2, 2, ceil_mode=ceil_mode, return_indices=True)
    y, store = kern.maxpool2d_forward_compact(x, ceil_mode)
    np.testing.assert_array_equal(store.to_flat(), ti.numpy())  # EQUAL
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dout = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dout))
    assert_close(kern.maxpool2d_backward_compact(dout, store), tx.grad.numpy())

    # torch unpools with the converted indices exactly as we do with the store
    z = rng.standard_normal(y.shape).astype(dtype)
    tz = torch.from_numpy(z.copy()).requires_grad_(True)
    tidx = torch.from_numpy(store.to_flat())
    tu = F.max_unpool2d(tz, tidx, 2, 2, output_size=shape[2:])
    u = kern.maxunpool2d_forward_compact(z, store, output_size=shape[2:])
    np.testing.assert_array_equal(u, tu.detach().numpy())
    du = rng.standard_normal(u.shape).astype(dtype)
    tu.backward(torch.from_numpy(du))
    assert_close(kern.maxunpool2d_backward_compact(du, store), tz.grad.numpy())
    # and back: torch's own indices pack to the same store
    np.testing.assert_array_equal(
        CompactIndices.from_flat(ti.numpy(), shape[2:]).packed, store.packed
    )


# -- bad input -------------------------------------------------------------------------
X = np.zeros((1, 2, 5, 6))
Y, STORE = ref.maxpool2d_forward_compact(X)  # (1, 2, 2, 3) of a 5x6 input
_, IDX = flat.maxpool2d_forward(X, 2, 2)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_forward_rejects(impl):
    with pytest.raises(TypeError, match="x must have dtype"):
        impl.maxpool2d_forward_compact(X.astype(int))
    with pytest.raises(ValueError, match=r"x must be a 4-d array \(N, C, H, W\)"):
        impl.maxpool2d_forward_compact(X[0])
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        impl.maxpool2d_forward_compact(X, "yes")
    with pytest.raises(ValueError, match="larger than the input x"):
        impl.maxpool2d_forward_compact(np.zeros((1, 1, 1, 4)))


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@pytest.mark.parametrize(
    "fn, args, exc, match",
    [
        # wrong store kind: a bare int64 array is refused, with the way out
        (
            "unpool",
            (Y, IDX),
            TypeError,
            r"CompactIndices store .* got ndarray .*from_flat",
        ),
        ("pool_bwd", (Y, IDX), TypeError, "indices must be a CompactIndices store"),
        ("unpool_bwd", (X, None), TypeError, "got NoneType"),
        # shape mismatches
        ("unpool", (Y[:, :1], STORE), ValueError, r"pooled shape .*\(1, 2, 2, 3\)"),
        ("unpool", (Y, STORE, (6, 6)), ValueError, r"output_size \(6, 6\) differs"),
        ("unpool", (Y, STORE, (1, 3, 5, 6)), ValueError, r"disagree on \(N, C\)"),
        (
            "pool_bwd",
            (Y[..., :2], STORE),
            ValueError,
            "dout must have the pooled shape",
        ),
        ("pool_bwd", (Y.astype(int), STORE), TypeError, "dout must have dtype"),
        (
            "unpool_bwd",
            (X[..., :5], STORE),
            ValueError,
            r"unpooled shape \(1, 2, 5, 6\)",
        ),
        ("unpool_bwd", (Y, STORE), ValueError, "dout must have the unpooled shape"),
    ],
)
def test_store_consumers_reject(impl, fn, args, exc, match):
    f = {
        "unpool": impl.maxunpool2d_forward_compact,
        "pool_bwd": impl.maxpool2d_backward_compact,
        "unpool_bwd": impl.maxunpool2d_backward_compact,
    }[fn]
    with pytest.raises(exc, match=match):
        f(*args)


def test_output_size_that_matches_is_accepted():
    for impl in IMPLS:
        a = impl.maxunpool2d_forward_compact(Y, STORE, (5, 6))
        b = impl.maxunpool2d_forward_compact(Y, STORE, (1, 2, 5, 6))
        np.testing.assert_array_equal(a, b)


def test_the_int64_functions_refuse_a_store():
    with pytest.raises(TypeError, match="indices must be a NumPy array"):
        flat.maxunpool2d_forward(Y, STORE, (5, 6))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel_size=3, stride=2), r"2x2 windows with stride 2 only .*\(3, 3\)"),
        (dict(kernel_size=2, stride=1), r"2x2 windows with stride 2 only"),
        (dict(kernel_size=(2, 3), stride=2), r"kernel_size=\(2, 3\)"),
    ],
)
def test_from_flat_refuses_other_windows(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CompactIndices.from_flat(IDX, (5, 6), **kwargs)


def test_from_flat_refuses_indices_outside_their_window(rng):
    x = rng.standard_normal((1, 2, 9, 9))
    _, overlapping = flat.maxpool2d_forward(x, 3, 2)  # 4x4, but not 2x2 windows
    with pytest.raises(ValueError, match=r"is not in its 2x2 window"):
        CompactIndices.from_flat(overlapping, (9, 9))
    bad = IDX.copy()
    bad[0, 1, 1, 2] = 0  # window (1, 2) covers rows 2-3, columns 4-5
    with pytest.raises(ValueError, match=r"indices\[0, 1, 1, 2\] = 0 .*rows 2-3"):
        CompactIndices.from_flat(bad, (5, 6))
    with pytest.raises(ValueError, match="is not in its 2x2 window"):
        CompactIndices.from_flat(IDX - 100, (5, 6))
    with pytest.raises(
        ValueError,
        match=r"\(4, 3\) \(floor mode\) or \(5, 3\) \(ceil mode\), got \(2, 3\)",
    ):
        CompactIndices.from_flat(IDX, (9, 6))  # pooled 2x3 cannot come from 9x6
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        CompactIndices.from_flat(IDX.astype(float), (5, 6))
    with pytest.raises(ValueError, match=r"input_size must be a pair"):
        CompactIndices.from_flat(IDX, 5)


def test_constructor_rejects():
    packed = STORE.packed.copy()
    with pytest.raises(TypeError, match="packed must be a uint8 NumPy array"):
        CompactIndices(packed.astype(np.int64), (1, 2, 2, 3), (5, 6))
    with pytest.raises(TypeError, match="packed must be a uint8 NumPy array"):
        CompactIndices(packed.tolist(), (1, 2, 2, 3), (5, 6))
    with pytest.raises(ValueError, match=r"packed must have shape \(1, 2, 2\)"):
        CompactIndices(packed[:, :, :1], (1, 2, 2, 3), (5, 6))
    with pytest.raises(ValueError, match=r"shape must be a 4-tuple"):
        CompactIndices(packed, (2, 2, 3), (5, 6))
    with pytest.raises(ValueError, match=r"\(3, 3\) \(ceil mode\), got \(2, 4\)"):
        CompactIndices(np.zeros((1, 2, 2), np.uint8), (1, 2, 2, 4), (5, 6))
    # a window that hangs over the edge (ceil mode) must point inside
    _, store = kern.maxpool2d_forward_compact(np.zeros((1, 1, 3, 3)), True)
    hacked = store.packed.copy()
    hacked[0, 0, 0] |= 1 << 2  # window (0, 1): the right column is past the edge
    with pytest.raises(ValueError, match=r"window \(n, c, i, j\) = \(0, 0, 0, 1\) "):
        CompactIndices(hacked, store.shape, (3, 3))
    hacked = store.packed.copy()
    hacked[0, 0, 0] |= 2 << 4  # window (1, 0): the bottom row is past the edge
    with pytest.raises(ValueError, match="points past the bottom edge of the 3x3"):
        CompactIndices(hacked, store.shape, (3, 3))


@pytest.mark.parametrize(
    "name", ["npsegnet._checks", "npsegnet.reference.compact_pool"]
)
def test_docstring_examples(name):
    import doctest
    import importlib

    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
