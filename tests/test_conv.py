"""Conv2D: kernels vs reference, gradient checks, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import assert_close as shared_assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import conv as K
from npsegnet.layers import Conv2D
from npsegnet.layers import conv as conv_layer_module
from npsegnet.reference import conv as R


def make(rng, N, C, F, H, W, k, dtype, kw=None):
    """Random input, weight (He-scaled, so outputs are O(1)), bias and dout."""
    kw = k if kw is None else kw
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = (rng.standard_normal((F, C, k, kw)) * np.sqrt(2 / (C * k * kw))).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b


def assert_close(actual, desired, dtype, reduction=1, scale=None):
    """Equal up to rounding of sums of ``reduction`` terms (see tolerances.py)."""
    shared_assert_close(actual, desired, dtype=dtype, reduction=reduction, scale=scale)


def check_against_reference(rng, N, C, F, H, W, k, pad, dtype, kw=None):
    x, w, b = make(rng, N, C, F, H, W, k, dtype, kw)
    out = K.conv2d_forward(x, w, b, pad)
    ref = R.conv2d_forward(x, w, b, pad)
    assert out.dtype == dtype and out.shape == ref.shape
    kk = w.shape[2] * w.shape[3]
    # the rounding bound scales with the sum of |terms|, which exceeds |out|
    # where terms cancel (a 5x5 map under a 5x5 kernel sums to one small value)
    ax, aw = np.abs(x), np.abs(w)
    scale = R.conv2d_forward(ax, aw, np.abs(b), pad).max()
    assert_close(out, ref, dtype, C * kk, scale)
    assert_close(
        K.conv2d_forward(x, w, None, pad),
        R.conv2d_forward(x, w, None, pad),
        dtype,
        C * kk,
        scale,
    )
    dout = rng.standard_normal(out.shape).astype(dtype)
    rdx, rdw, rdb = R.conv2d_backward(dout, x, w, pad)
    adx, adw, adb = R.conv2d_backward(np.abs(dout), ax, aw, pad)
    # dweight and dbias sum over N * H * W products, dx over F * KH * KW
    pixels = N * H * W
    for need_dx in (True, False):
        dx, dw, db = K.conv2d_backward(dout, x, w, pad, need_dx=need_dx)
        assert dw.dtype == dtype and db.dtype == dtype
        assert_close(dw, rdw, dtype, pixels, adw.max())
        assert_close(db, rdb, dtype, pixels, adb.max())
        if need_dx:
            assert dx.dtype == dtype and dx.shape == x.shape
            assert_close(dx, rdx, dtype, F * kk, adx.max())
        else:
            assert dx is None


# --------------------------------------------------------------------------
# kernels vs reference
# --------------------------------------------------------------------------
SHAPES = [
    # N, C_in, C_out, H, W, k, padding
    (1, 3, 5, 7, 9, 3, 1),  # batch 1, odd sizes, full im2col (small C)
    (3, 4, 6, 7, 9, 5, 2),
    (3, 2, 3, 7, 9, 7, 3),  # C * k * k = 98: full im2col; dx: row path
    (2, 8, 3, 7, 9, 7, 3),  # C * k * k = 392: row path
    (1, 40, 6, 5, 6, 3, 1),  # C * k * k = 360: row path
    (2, 5, 4, 7, 9, 1, 0),  # 1x1: one GEMM per image
    (2, 5, 4, 7, 9, 1, 1),  # 1x1 with padding: border is the bias only
    (2, 3, 4, 7, 9, 3, 0),  # valid convolution
    (1, 2, 3, 4, 5, 3, 4),  # padding > kernel: some rows see only zeros
    (2, 6, 2, 9, 7, 5, 0),
    (1, 3, 2, 6, 6, 7, 3),  # kernel as large as the padded input allows
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(rng, shape, dtype):
    check_against_reference(rng, *shape, dtype)


@pytest.mark.parametrize("band_bytes", [1, 3000, 20000])
@pytest.mark.parametrize("C", [2, 20])
def test_kernels_across_row_bands(rng, monkeypatch, band_bytes, C):
    # With tiny bands an output row collects its pieces over several bands
    # (the ring buffer of the forward pass) and the last band is short.
    monkeypatch.setattr(K, "BAND_BYTES", band_bytes)
    check_against_reference(rng, 2, C, 3, 11, 6, 5, 2, np.float64)
    check_against_reference(rng, 1, C, 4, 9, 5, 3, 1, np.float32)


def test_kernels_even_and_rectangular_kernels(rng):
    # The kernel functions take any (KH, KW); the layer only builds square ones.
    check_against_reference(rng, 2, 3, 4, 7, 9, 4, 1, np.float64)
    check_against_reference(rng, 1, 9, 2, 6, 8, 3, 1, np.float64, kw=5)
    check_against_reference(rng, 1, 9, 2, 6, 8, 5, 2, np.float64, kw=1)


@settings(max_examples=25, deadline=None)
@given(
    N=st.integers(1, 3),
    C=st.integers(1, 12),
    F=st.integers(1, 6),
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    k=st.sampled_from([1, 3, 5, 7]),
    pad=st.integers(0, 4),
)
def test_kernels_match_reference_random_shapes(N, C, F, H, W, k, pad):
    if H + 2 * pad < k or W + 2 * pad < k:
        return
    check_against_reference(np.random.default_rng(0), N, C, F, H, W, k, pad, np.float64)


def test_outputs_do_not_alias_workspaces(rng):
    # The kernels reuse scratch buffers between calls; results must not live there.
    x1, w, b = make(rng, 1, 8, 4, 6, 7, 3, np.float32)
    x2 = rng.standard_normal(x1.shape).astype(np.float32)
    out1 = K.conv2d_forward(x1, w, b, 1)
    expected = out1.copy()
    K.conv2d_forward(x2, w, b, 1)
    K.conv2d_backward(out1 * 0 + 1, x2, w, 1)
    np.testing.assert_array_equal(out1, expected)


def test_nan_in_input_propagates(rng):
    x, w, b = make(rng, 1, 2, 2, 5, 5, 3, np.float64)
    x[0, 1, 2, 2] = np.nan
    out = K.conv2d_forward(x, w, b, 1)
    # exactly the 3x3 neighbourhood of the NaN is NaN
    assert np.isnan(out[0, :, 1:4, 1:4]).all()
    assert np.isnan(out).sum() == 2 * 9


# --------------------------------------------------------------------------
# the layer: gradient checks and contract
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "C, F, k, padding, bias, shape",
    [
        (3, 4, 3, None, True, (2, 3, 5, 7)),
        (2, 3, 5, None, True, (1, 2, 6, 5)),
        (4, 2, 1, None, True, (3, 4, 3, 5)),
        (20, 2, 3, None, False, (1, 20, 4, 3)),  # row path, no bias
        (2, 3, 7, 1, True, (2, 2, 6, 7)),  # explicit padding < k // 2
        (2, 2, 4, 2, True, (1, 2, 5, 4)),  # even kernel, explicit padding
    ],
)
def test_gradcheck(rng, C, F, k, padding, bias, shape):
    layer = Conv2D(C, F, k, padding=padding, bias=bias, seed=1).astype(np.float64)
    # non-zero bias, so that the check sees the bias in the output
    if bias:
        layer.params["bias"][...] = rng.standard_normal(F)
    x = rng.standard_normal(shape)
    report = check_layer(layer, x).assert_ok()
    assert set(r.name for r in report.rows) == {"x", "weight"} | (
        {"bias"} if bias else set()
    )
    assert report.max_error < 1e-7


def test_gradcheck_catches_a_wrong_weight_gradient(rng, monkeypatch):
    # check the checker: a backward whose dweight is 1% off must fail
    def wrong(*args, **kwargs):
        dx, dw, db = K.conv2d_backward(*args, **kwargs)
        return dx, dw * 1.01, db

    monkeypatch.setattr(conv_layer_module, "conv2d_backward", wrong)
    layer = Conv2D(3, 4, 3, seed=1).astype(np.float64)
    report = check_layer(layer, rng.standard_normal((2, 3, 5, 6)))
    assert not report.passed
    assert report["weight"] > 1e-3
    assert report["x"] < 1e-7 and report["bias"] < 1e-7
    with pytest.raises(AssertionError, match="weight"):
        report.assert_ok()


def test_gradcheck_catches_a_wrong_input_gradient(rng, monkeypatch):
    def wrong(dout, x, weight, padding, need_dx=True):
        # the gradient of a convolution with the kernel flipped: a classic slip
        return K.conv2d_backward(dout, x, weight[:, :, ::-1, ::-1], padding, need_dx)

    monkeypatch.setattr(conv_layer_module, "conv2d_backward", wrong)
    layer = Conv2D(2, 3, 3, seed=1).astype(np.float64)
    report = check_layer(layer, rng.standard_normal((1, 2, 5, 5)))
    assert report["x"] > 1e-3 and not report.passed


def test_init_is_msra_and_zero_bias():
    layer = Conv2D(64, 128, 3, seed=0)
    w = layer.params["weight"]
    assert w.shape == (128, 64, 3, 3) and w.dtype == np.float32
    # He et al.: std sqrt(2 / fan_in), fan_in = C_in * k * k = 576
    assert abs(w.std() / np.sqrt(2 / 576) - 1) < 0.02
    assert abs(w.mean()) < 3 * np.sqrt(2 / 576) / np.sqrt(w.size)
    np.testing.assert_array_equal(layer.params["bias"], np.zeros(128, np.float32))
    assert layer.padding == 1
    assert Conv2D(3, 5, 7).padding == 3 and Conv2D(3, 5, 1).padding == 0


def test_seed_and_generator():
    a = Conv2D(3, 4, 3, seed=7).params["weight"]
    b = Conv2D(3, 4, 3, seed=7).params["weight"]
    c = Conv2D(3, 4, 3, seed=np.random.default_rng(7)).params["weight"]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, Conv2D(3, 4, 3, seed=8).params["weight"])


def test_no_bias_key_without_bias(rng):
    layer = Conv2D(2, 3, 3, bias=False, seed=0)
    assert set(layer.params) == set(layer.grads) == {"weight"}
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    assert_close(
        layer(x),
        R.conv2d_forward(x, layer.params["weight"], None, 1),
        np.float32,
        2 * 9,
    )
    layer.backward(np.ones((1, 3, 4, 4), np.float32))
    assert "bias" not in layer.grads


def test_backward_accumulates_and_matches_kernels(rng):
    layer = Conv2D(3, 4, 3, seed=0)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    dout = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    layer(x)
    dx = layer.backward(dout)
    edx, edw, edb = K.conv2d_backward(dout, x, layer.params["weight"], 1)
    np.testing.assert_array_equal(dx, edx)
    np.testing.assert_array_equal(layer.grads["weight"], edw)
    layer.backward(dout)
    # edw + edw is exact in binary floating point: the accumulation must be too
    np.testing.assert_array_equal(layer.grads["weight"], 2 * edw)
    np.testing.assert_array_equal(layer.grads["bias"], 2 * edb)
    layer.zero_grad()
    assert not layer.grads["weight"].any()


def test_needs_input_grad_false_skips_input_gradient(rng):
    layer = Conv2D(3, 4, 7, seed=0)
    assert layer.needs_input_grad
    x = rng.standard_normal((1, 3, 9, 8)).astype(np.float32)
    dout = rng.standard_normal((1, 4, 9, 8)).astype(np.float32)
    layer(x)
    layer.backward(dout)
    full = {k: g.copy() for k, g in layer.grads.items()}
    layer.zero_grad()
    layer.needs_input_grad = False
    with pytest.deprecated_call():  # the old name, kept for one release
        assert layer.need_dx is False
    with pytest.deprecated_call():
        layer.need_dx = True
    assert layer.needs_input_grad is True
    layer.needs_input_grad = False
    layer(x)
    assert layer.backward(dout) is None
    # the same sums along another GEMM path (OpenBLAS blocks them differently)
    for key in full:
        assert_close(layer.grads[key], full[key], np.float32, 9 * 8)


def test_astype_float64(rng):
    layer = Conv2D(2, 3, 3, seed=0)
    w32 = layer.params["weight"].copy()
    layer.astype(np.float64)
    x = rng.standard_normal((1, 2, 5, 5))
    out = layer(x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(
        out, R.conv2d_forward(x, w32.astype(np.float64), None, 1)
    )
    assert layer.backward(np.ones_like(out)).dtype == np.float64


def test_repr():
    assert repr(Conv2D(3, 64, 7)) == (
        "Conv2D(3, 64, kernel_size=7, padding=3, bias=True, dtype=float32)"
    )


# --------------------------------------------------------------------------
# PyTorch parity
# --------------------------------------------------------------------------
PARITY = [
    # N, C_in, C_out, H, W, k
    (1, 3, 4, 7, 9, 3),
    (3, 5, 2, 9, 7, 7),
    (3, 4, 6, 8, 11, 1),
    (1, 16, 8, 13, 10, 7),
    (2, 12, 20, 11, 9, 3),
]


def torch_reference(torch, x, w, b, padding, dout):
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    out = torch.nn.functional.conv2d(xt, wt, bt, padding=padding)
    out.backward(torch.from_numpy(dout))
    return [t.detach().numpy() for t in (out, xt.grad, wt.grad, bt.grad)]


@pytest.mark.parametrize("shape", PARITY, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity(torch, rng, shape, dtype):
    N, C, F, H, W, k = shape
    layer = Conv2D(C, F, k, seed=3, dtype=dtype)
    layer.params["bias"][...] = rng.standard_normal(F)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    dout = rng.standard_normal((N, F, H, W)).astype(dtype)
    out = layer(x)
    dx = layer.backward(dout)
    t_out, t_dx, t_dw, t_db = torch_reference(
        torch, x, layer.params["weight"], layer.params["bias"], k // 2, dout
    )
    pixels = N * H * W
    assert_close(out, t_out, dtype, C * k * k)
    assert_close(dx, t_dx, dtype, F * k * k)
    assert_close(layer.grads["weight"], t_dw, dtype, pixels)
    assert_close(layer.grads["bias"], t_db, dtype, pixels)


def test_torch_parity_segnet_basic_layer(torch, rng):
    # one realistic SegNet-Basic layer (7x7, 64 -> 64) on a 45 x 60 map, float32
    layer = Conv2D(64, 64, 7, seed=0)
    x = rng.standard_normal((1, 64, 45, 60)).astype(np.float32)
    dout = rng.standard_normal((1, 64, 45, 60)).astype(np.float32)
    out = layer(x)
    dx = layer.backward(dout)
    t_out, t_dx, t_dw, t_db = torch_reference(
        torch, x, layer.params["weight"], layer.params["bias"], 3, dout
    )
    f32 = np.float32
    assert_close(out, t_out, f32, 64 * 49)
    assert_close(dx, t_dx, f32, 64 * 49)
    assert_close(layer.grads["weight"], t_dw, f32, 45 * 60)
    assert_close(layer.grads["bias"], t_db, f32, 45 * 60)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
def test_layer_rejects_bad_input():
    layer = Conv2D(3, 4, 3)
    with pytest.raises(ValueError, match=r"x must be a 4-d array \(N, C, H, W\)"):
        layer(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"x has C = 2 .* in_channels = 3"):
        layer(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        layer(np.zeros((1, 3, 5, 5), np.int64))
    with pytest.raises(TypeError, match="x has dtype float64 but float32"):
        layer(np.zeros((1, 3, 5, 5), np.float64))
    with pytest.raises(TypeError, match="x must be a NumPy array"):
        layer([[[[1.0]]]])
    with pytest.raises(ValueError, match="larger than the padded input"):
        Conv2D(3, 4, 7, padding=0)(np.zeros((1, 3, 5, 5), np.float32))


def test_layer_rejects_bad_backward():
    layer = Conv2D(3, 4, 3)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((1, 4, 5, 5), np.float32))
    layer(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"dout has shape \(1, 4, 5, 6\)"):
        layer.backward(np.zeros((1, 4, 5, 6), np.float32))
    with pytest.raises(TypeError, match="dout has dtype float64"):
        layer.backward(np.zeros((1, 4, 5, 5), np.float64))
    with pytest.raises(ValueError, match="dout must be a 4-d array"):
        layer.backward(np.zeros((4, 5, 5), np.float32))


def test_layer_rejects_bad_arguments():
    with pytest.raises(
        ValueError, match="kernel_size must be odd .* got kernel_size=4"
    ):
        Conv2D(3, 4, 4)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        Conv2D(3, 4, 0)
    with pytest.raises(TypeError, match="in_channels must be an int"):
        Conv2D(3.0, 4, 3)
    with pytest.raises(ValueError, match="out_channels must be >= 1"):
        Conv2D(3, 0, 3)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        Conv2D(3, 4, 3, padding=-1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        Conv2D(3, 4, 3, dtype=np.int32)


def test_kernels_reject_bad_input(rng):
    x, w, b = make(rng, 1, 3, 4, 5, 5, 3, np.float32)
    with pytest.raises(ValueError, match=r"weight has 3 input channels .* C = 2"):
        K.conv2d_forward(x[:, :2], w, b, 1)
    with pytest.raises(TypeError, match="weight has dtype float64"):
        K.conv2d_forward(x, w.astype(np.float64), b, 1)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        K.conv2d_forward(x, w, b[:3], 1)
    with pytest.raises(TypeError, match="bias has dtype float64"):
        K.conv2d_forward(x, w, b.astype(np.float64), 1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        K.conv2d_forward(x, w, b, -1)
    with pytest.raises(TypeError, match="padding must be an int"):
        K.conv2d_forward(x, w, b, 1.0)
    with pytest.raises(ValueError, match="weight must be a 4-d array"):
        K.conv2d_forward(x, w[0], b, 1)
    with pytest.raises(ValueError, match=r"dout must have the shape .* \(1, 4, 5, 5\)"):
        K.conv2d_backward(np.zeros((1, 4, 3, 3), np.float32), x, w, 1)
    with pytest.raises(TypeError, match="dout has dtype float64"):
        K.conv2d_backward(np.zeros((1, 4, 5, 5)), x, w, 1)
