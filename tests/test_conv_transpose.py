"""ConvTranspose2D: kernels vs reference, gradient checks, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import conv as K_conv
from npsegnet.kernels import conv_transpose as K
from npsegnet.layers import ConvTranspose2D, Upsample
from npsegnet.layers import conv_transpose as layer_module
from npsegnet.layers.conv_transpose import bilinear_kernel
from npsegnet.reference import conv_transpose as R


def make(rng, N, C, F, H, W, k, dtype):
    """Random input, weight (C_in, C_out, k, k), bias."""
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = (rng.standard_normal((C, F, k, k)) / np.sqrt(C)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b


def check_against_reference(rng, N, C, F, H, W, k, stride, pad, op, dtype):
    x, w, b = make(rng, N, C, F, H, W, k, dtype)
    args = (stride, pad, op)
    out = K.conv_transpose2d_forward(x, w, b, *args)
    ref = R.conv_transpose2d_forward(x, w, b, *args)
    assert out.dtype == dtype and out.shape == ref.shape
    # the rounding bound scales with the sum of |terms|: the reference on |.|
    ax, aw, ab = np.abs(x), np.abs(w), np.abs(b)
    terms = C * k * k + 1
    scale = R.conv_transpose2d_forward(ax, aw, ab, *args).max()
    assert_close(out, ref, reduction=terms, scale=scale)
    assert_close(
        K.conv_transpose2d_forward(x, w, None, *args),
        R.conv_transpose2d_forward(x, w, None, *args),
        reduction=terms,
        scale=scale,
    )
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = K.conv_transpose2d_backward(dout, x, w, *args)
    rdx, rdw, rdb = R.conv_transpose2d_backward(dout, x, w, *args)
    adx, adw, adb = R.conv_transpose2d_backward(np.abs(dout), ax, aw, *args)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    assert_close(dx, rdx, reduction=F * k * k, scale=adx.max())
    assert_close(dw, rdw, reduction=N * H * W, scale=adw.max())
    assert_close(db, rdb, reduction=dout[:, 0].size, scale=adb.max())


# --------------------------------------------------------------------------
# kernels vs reference
# --------------------------------------------------------------------------
SHAPES = [
    # N, C_in, C_out, H, W, k, stride, padding, output_padding
    (1, 3, 5, 7, 9, 4, 2, 1, 0),  # batch 1, odd sizes, FCN's x2 layer
    (2, 4, 3, 7, 9, 4, 2, 1, 1),  # output_padding
    (2, 3, 4, 5, 7, 3, 2, 1, (1, 0)),  # different output padding per axis
    (2, 2, 3, 5, 6, 2, 2, 0, 0),  # stride = kernel: windows do not overlap
    (1, 3, 2, 4, 5, 2, 3, 0, 2),  # stride > kernel: gaps of bias only
    (2, 5, 3, 6, 5, 5, 1, 2, 0),  # stride 1: a "same" convolution's adjoint
    (1, 2, 2, 3, 3, 3, 1, 2, 0),  # padding crops to a 1x1 output
    (2, 3, 4, 5, 4, 1, 2, 0, 1),  # 1x1 kernel
    (1, 6, 2, 4, 7, 7, 3, 3, 2),  # large kernel, padding = 3
    (3, 1, 1, 1, 1, 4, 2, 1, 0),  # one pixel
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(rng, shape, dtype):
    check_against_reference(rng, *shape, dtype)


@pytest.mark.parametrize("band_bytes", [1, 2000])
def test_kernels_across_row_bands(rng, monkeypatch, band_bytes):
    # tiny bands: output rows collect the pieces of several bands
    monkeypatch.setattr(K_conv, "BAND_BYTES", band_bytes)
    check_against_reference(rng, 2, 3, 4, 9, 7, 4, 2, 1, 1, np.float64)
    check_against_reference(rng, 1, 2, 3, 7, 6, 5, 3, 2, 2, np.float32)


def test_is_the_input_gradient_of_a_strided_convolution(rng, torch):
    # the defining identity: conv_transpose2d(y, w) = d/dx <conv2d(x, w), y>
    x = torch.from_numpy(rng.standard_normal((2, 3, 9, 8))).requires_grad_()
    w = rng.standard_normal((4, 3, 3, 3))
    y = rng.standard_normal((2, 4, 5, 4))
    out = torch.nn.functional.conv2d(x, torch.from_numpy(w), stride=2, padding=1)
    out.backward(torch.from_numpy(y))
    ours = K.conv_transpose2d_forward(y, w, None, 2, 1, (0, 1))
    assert_close(ours, x.grad.numpy(), reduction=4 * 9, scale=np.abs(ours).max() * 4)


def test_outputs_do_not_alias_workspaces(rng):
    x1, w, b = make(rng, 1, 4, 3, 5, 6, 4, np.float32)
    out1 = K.conv_transpose2d_forward(x1, w, b, 2, 1)
    expected = out1.copy()
    K.conv_transpose2d_forward(x1 + 1, w, b, 2, 1)
    K.conv_transpose2d_backward(out1 * 0 + 1, x1, w, 2, 1)
    np.testing.assert_array_equal(out1, expected)


# --------------------------------------------------------------------------
# the layer: gradient checks and contract
# --------------------------------------------------------------------------
GRADCHECK = [
    # C, F, k, stride, padding, output_padding, bias, x shape, output_size
    (3, 4, 4, 2, 1, 0, True, (2, 3, 3, 4), None),
    (2, 3, 3, 2, 1, 1, True, (1, 2, 3, 3), None),
    (2, 2, 3, 3, 0, 0, False, (2, 2, 3, 2), None),
    (3, 2, 5, 1, 2, 0, True, (1, 3, 4, 5), None),
    (2, 2, 4, 2, 1, 0, True, (1, 2, 3, 4), (7, 8)),  # odd size restored
    (2, 3, 3, 3, 1, 0, True, (2, 2, 3, 2), (9, 4)),  # output_size picks (2, 0)
    (2, 2, 2, 2, 0, 1, True, (1, 2, 2, 3), (1, 2, 4, 6)),  # overrides padding 1
]


@pytest.mark.parametrize("case", GRADCHECK, ids=str)
def test_gradcheck(rng, case):
    C, F, k, stride, padding, op, bias, shape, output_size = case
    layer = ConvTranspose2D(
        C, F, k, stride, padding, op, bias=bias, seed=1, dtype=np.float64
    )
    if bias:
        layer.params["bias"][...] = rng.standard_normal(F)
    x = rng.standard_normal(shape)
    report = check_layer(layer, x, output_size=output_size).assert_ok()
    assert {r.name for r in report.rows} == {"x", "weight"} | (
        {"bias"} if bias else set()
    )
    if output_size is not None:
        assert layer(x, output_size=output_size).shape[2:] == tuple(output_size[-2:])


def test_gradcheck_catches_a_wrong_input_gradient(rng, monkeypatch):
    def wrong(dout, x, weight, stride, padding, output_padding):
        # the classic slip: the kernel flipped
        return K.conv_transpose2d_backward(
            dout, x, weight[:, :, ::-1, ::-1].copy(), stride, padding, output_padding
        )

    monkeypatch.setattr(layer_module, "conv_transpose2d_backward", wrong)
    layer = ConvTranspose2D(2, 3, 3, 2, 1, seed=1, dtype=np.float64)
    report = check_layer(layer, rng.standard_normal((1, 2, 3, 4)))
    assert not report.passed and report["x"] > 1e-3


def test_bilinear_kernel_is_fcns():
    np.testing.assert_array_equal(
        bilinear_kernel(4), np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    )
    np.testing.assert_allclose(bilinear_kernel(3)[1], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(bilinear_kernel(5)[2], [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3])
    assert bilinear_kernel(1).tolist() == [[1.0]]


@pytest.mark.parametrize("f", [2, 3, 4])
def test_bilinear_layer_upsamples_by_f(rng, f):
    layer = ConvTranspose2D.bilinear(3, f, dtype=np.float64)
    assert layer.kernel_size == 2 * f - f % 2 and layer.stride == f
    assert "bias" not in layer.params
    w = layer.params["weight"]
    assert w.shape[:2] == (3, 3)
    assert not w[0, 1].any() and np.array_equal(w[2, 2], bilinear_kernel(2 * f - f % 2))
    x = rng.standard_normal((2, 3, 5, 4))
    out = layer(x)
    assert out.shape == (2, 3, 5 * f, 4 * f)
    # a constant map stays constant away from the border (each output is a
    # convex combination of inputs there)
    const = layer(np.full((1, 3, 5, 4), 2.5))
    assert_close(const[:, :, f:-f, f:-f], np.full_like(const[:, :, f:-f, f:-f], 2.5))


def test_bilinear_layer_equals_bilinear_upsampling_inside(rng):
    x = rng.standard_normal((2, 3, 6, 5))
    deconv = ConvTranspose2D.bilinear(3, dtype=np.float64)(x)
    interp = Upsample(2, "bilinear", dtype=np.float64)(x)
    # equal except in the outermost ring, where deconvolution sees zero padding
    assert_close(deconv[:, :, 1:-1, 1:-1], interp[:, :, 1:-1, 1:-1], reduction=4)
    assert not np.allclose(deconv[:, :, 0], interp[:, :, 0])


def test_init_is_msra_with_caffes_fan_in():
    layer = ConvTranspose2D(32, 64, 4, 2, 1, seed=0)
    w = layer.params["weight"]
    assert w.shape == (32, 64, 4, 4) and w.dtype == np.float32
    assert abs(w.std() / np.sqrt(2 / (64 * 16)) - 1) < 0.03
    assert not layer.params["bias"].any()
    np.testing.assert_array_equal(w, ConvTranspose2D(32, 64, 4, 2, 1, seed=0).weight)


def test_backward_accumulates(rng):
    layer = ConvTranspose2D(3, 2, 4, 2, 1, seed=0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = layer(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = layer.backward(dout)
    edx, edw, edb = K.conv_transpose2d_backward(dout, x, layer.weight, 2, 1)
    np.testing.assert_array_equal(dx, edx)
    layer.backward(dout)
    np.testing.assert_array_equal(layer.grads["weight"], 2 * edw)
    np.testing.assert_array_equal(layer.grads["bias"], 2 * edb)
    layer.zero_grad()
    assert not layer.grads["weight"].any()
    layer.clear_cache()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(dout)


def test_output_size_range_and_repr():
    layer = ConvTranspose2D(2, 2, 3, stride=2, padding=1)
    assert layer.output_size_range((4, 5)) == ((7, 9), (8, 10))
    assert repr(layer) == (
        "ConvTranspose2D(2, 2, kernel_size=3, stride=2, padding=1, "
        "output_padding=0, bias=True, dtype=float32)"
    )


def test_astype_float64(rng):
    layer = ConvTranspose2D(2, 3, 4, 2, 1, seed=0)
    w = layer.weight.astype(np.float64)
    layer.astype(np.float64)
    x = rng.standard_normal((1, 2, 3, 3))
    assert_close(layer(x), R.conv_transpose2d_forward(x, w, None, 2, 1), reduction=33)


# --------------------------------------------------------------------------
# PyTorch parity
# --------------------------------------------------------------------------
PARITY = [
    # N, C_in, C_out, H, W, k, stride, padding, output_padding, output_size
    (1, 3, 4, 7, 9, 4, 2, 1, 0, None),
    (2, 4, 3, 5, 6, 3, 2, 1, 1, None),
    (2, 2, 3, 4, 5, 2, 2, 0, 0, None),
    (1, 3, 2, 5, 4, 5, 3, 2, 2, None),
    (2, 5, 5, 11, 15, 4, 2, 1, 0, (23, 31)),  # 23 x 31 pooled to 11 x 15
    (1, 3, 2, 4, 3, 3, 3, 0, 2, (13, 10)),  # output_size beats output_padding
]


@pytest.mark.parametrize("case", PARITY, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity(torch, rng, case, dtype):
    N, C, F, H, W, k, stride, padding, op, output_size = case
    layer = ConvTranspose2D(C, F, k, stride, padding, op, seed=3, dtype=dtype)
    layer.params["bias"][...] = rng.standard_normal(F)
    twin = torch.nn.ConvTranspose2d(C, F, k, stride, padding, op, bias=True)
    twin = twin.to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(layer.weight))
        twin.bias.copy_(torch.from_numpy(layer.bias))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    out = layer(x, output_size=output_size)
    xt = torch.from_numpy(x).requires_grad_()
    t_out = twin(xt, output_size=output_size)
    assert out.shape == tuple(t_out.shape)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = layer.backward(dout)
    t_out.backward(torch.from_numpy(dout))
    ax, aw = np.abs(x), np.abs(layer.weight)
    a_out = R.conv_transpose2d_forward(ax, aw, np.abs(layer.bias), stride, padding,
                                       layer.cache.output_padding)  # fmt: skip
    assert_close(out, t_out.detach().numpy(), reduction=C * k * k + 1,
                 scale=a_out.max())  # fmt: skip
    adx, adw, adb = R.conv_transpose2d_backward(
        np.abs(dout), ax, aw, stride, padding, layer.cache.output_padding
    )
    assert_close(dx, xt.grad.numpy(), reduction=F * k * k, scale=adx.max())
    assert_close(
        layer.grads["weight"], twin.weight.grad.numpy(), reduction=N * H * W,
        scale=adw.max(),
    )  # fmt: skip
    assert_close(
        layer.grads["bias"], twin.bias.grad.numpy(), reduction=dout[:, 0].size,
        scale=adb.max(),
    )  # fmt: skip


@pytest.mark.parametrize("stride, padding, k", [(2, 1, 4), (3, 1, 3), (2, 0, 2)])
def test_output_size_rule_is_pytorchs(torch, stride, padding, k):
    # every requested size is accepted by both or refused by both
    layer = ConvTranspose2D(1, 1, k, stride, padding, dtype=np.float64)
    twin = torch.nn.ConvTranspose2d(1, 1, k, stride, padding).double()
    x = np.zeros((1, 1, 4, 5))
    for h in range(3, 16):
        try:
            twin(torch.from_numpy(x), output_size=(h, 9))
            accepted = True
        except ValueError:
            accepted = False
        if accepted:
            assert layer(x, output_size=(h, 9)).shape == (1, 1, h, 9)
        else:
            with pytest.raises(ValueError, match="not reachable"):
                layer(x, output_size=(h, 9))


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
def test_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"output_padding must be smaller than stride"):
        ConvTranspose2D(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ConvTranspose2D(2, 2, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        ConvTranspose2D(2, 2, 3, padding=-1)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        ConvTranspose2D(2, 2, 3.0)
    with pytest.raises(ValueError, match="init must be one of"):
        ConvTranspose2D(2, 2, 3, init="xavier")
    with pytest.raises(ValueError, match="in_channels == out_channels, got 2 and 3"):
        ConvTranspose2D(2, 3, 4, 2, 1, init="bilinear")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        ConvTranspose2D(2, 2, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="scale_factor must be >= 1"):
        ConvTranspose2D.bilinear(2, 0)


def test_layer_rejects_bad_input():
    layer = ConvTranspose2D(3, 2, 4, 2, 1)
    x = np.zeros((1, 3, 5, 6), np.float32)
    with pytest.raises(ValueError, match=r"x must be a 4-d array \(N, C, H, W\)"):
        layer(x[0])
    with pytest.raises(ValueError, match=r"x has C = 2 .* in_channels = 3"):
        layer(x[:, :2])
    with pytest.raises(TypeError, match="x has dtype float64 but float32"):
        layer(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"dim 0 must be between 10 and 11"):
        layer(x, output_size=(12, 12))
    with pytest.raises(ValueError, match=r"dim 1 must be between 12 and 13"):
        layer(x, output_size=(10, 11))
    with pytest.raises(ValueError, match=r"output_size must be \(H, W\)"):
        layer(x, output_size=10)
    with pytest.raises(TypeError, match="output_size must hold ints"):
        layer(x, output_size=(10.0, 12))
    with pytest.raises(ValueError, match="crops the whole output"):
        ConvTranspose2D(3, 2, 1, 1, padding=1)(np.zeros((1, 3, 1, 2), np.float32))


def test_layer_rejects_bad_backward():
    layer = ConvTranspose2D(3, 2, 4, 2, 1)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((1, 2, 10, 12), np.float32))
    layer(np.zeros((1, 3, 5, 6), np.float32), output_size=(11, 12))
    with pytest.raises(ValueError, match=r"dout has shape \(1, 2, 10, 12\)"):
        layer.backward(np.zeros((1, 2, 10, 12), np.float32))
    with pytest.raises(TypeError, match="dout has dtype float64"):
        layer.backward(np.zeros((1, 2, 11, 12)))


def test_kernels_reject_bad_input(rng):
    x, w, b = make(rng, 1, 3, 2, 4, 4, 3, np.float32)
    f = K.conv_transpose2d_forward
    with pytest.raises(ValueError, match=r"weight has 3 input channels .* C = 2"):
        f(x[:, :2], w, b, 2, 1)
    with pytest.raises(TypeError, match="weight has dtype float64"):
        f(x, w.astype(np.float64), b, 2, 1)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        f(x, w, b[:1], 2, 1)
    with pytest.raises(ValueError, match="output_padding must be smaller than stride"):
        f(x, w, b, 2, 1, (0, 2))
    with pytest.raises(ValueError, match="output_padding must be >= 0"):
        f(x, w, b, 2, 1, -1)
    with pytest.raises(TypeError, match="stride must be an int"):
        f(x, w, b, 2.0, 1)
    with pytest.raises(ValueError, match=r"dout must have the shape .* \(1, 2, 7, 7\)"):
        K.conv_transpose2d_backward(np.zeros((1, 2, 8, 8), np.float32), x, w, 2, 1)
