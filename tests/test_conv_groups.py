"""Conv2D(groups=): kernels vs reference, gradient checks, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import conv as K
from npsegnet.layers import Conv2D
from npsegnet.reference import conv as R


def make(rng, N, C, F, H, W, k, groups, dtype):
    """Random input, grouped weight (F, C / groups, k, k) and bias."""
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    Cg = C // groups
    w = (rng.standard_normal((F, Cg, k, k)) / np.sqrt(Cg * k * k)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b


def block_diagonal(w, groups):
    """The dense (F, C, k, k) weight that a grouped weight stands for."""
    F, Cg, k, _ = w.shape
    Fg = F // groups
    dense = np.zeros((F, Cg * groups, k, k), dtype=w.dtype)
    for g in range(groups):
        dense[g * Fg : (g + 1) * Fg, g * Cg : (g + 1) * Cg] = w[g * Fg : (g + 1) * Fg]
    return dense


def check_against_reference(rng, N, C, F, H, W, k, pad, groups, dtype):
    x, w, b = make(rng, N, C, F, H, W, k, groups, dtype)
    out = K.conv2d_forward(x, w, b, pad, groups)
    ref = R.conv2d_forward(x, w, b, pad, groups)
    assert out.dtype == dtype and out.shape == ref.shape
    ax, aw, ab = np.abs(x), np.abs(w), np.abs(b)
    Cg, Fg = C // groups, F // groups
    scale = R.conv2d_forward(ax, aw, ab, pad, groups).max()
    assert_close(out, ref, reduction=Cg * k * k + 1, scale=scale)
    dout = rng.standard_normal(out.shape).astype(dtype)
    rdx, rdw, rdb = R.conv2d_backward(dout, x, w, pad, groups=groups)
    adx, adw, adb = R.conv2d_backward(np.abs(dout), ax, aw, pad, groups=groups)
    for need_dx in (True, False):
        dx, dw, db = K.conv2d_backward(dout, x, w, pad, need_dx=need_dx, groups=groups)
        assert dw.shape == w.shape and dw.dtype == dtype
        assert_close(dw, rdw, reduction=N * H * W, scale=adw.max())
        assert_close(db, rdb, reduction=dout[:, 0].size, scale=adb.max())
        if need_dx:
            assert dx.shape == x.shape and dx.dtype == dtype
            assert_close(dx, rdx, reduction=Fg * k * k, scale=adx.max())
        else:
            assert dx is None


# --------------------------------------------------------------------------
# the reference: a grouped convolution is a block-diagonal dense one
# --------------------------------------------------------------------------
@pytest.mark.parametrize("groups, C, F", [(2, 4, 6), (3, 3, 3), (3, 3, 6), (4, 8, 4)])
def test_reference_is_block_diagonal_dense_conv(rng, groups, C, F):
    x, w, b = make(rng, 2, C, F, 5, 7, 3, groups, np.float64)
    dense = block_diagonal(w, groups)
    out = R.conv2d_forward(x, w, b, 1, groups)
    assert_close(out, R.conv2d_forward(x, dense, b, 1), reduction=C * 9 + 1)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = R.conv2d_backward(dout, x, w, 1, groups=groups)
    ddx, ddw, ddb = R.conv2d_backward(dout, x, dense, 1)
    assert_close(dx, ddx, reduction=F * 9, scale=np.abs(ddx).max() * 3)
    # the dense gradient also has entries off the blocks, which groups never use
    on_blocks = block_diagonal(np.ones_like(w), groups) != 0
    assert_close(block_diagonal(dw, groups)[on_blocks], ddw[on_blocks], reduction=70)
    assert_close(db, ddb, reduction=2 * 35)


# --------------------------------------------------------------------------
# kernels vs reference
# --------------------------------------------------------------------------
SHAPES = [
    # N, C_in, C_out, H, W, k, padding, groups
    (1, 4, 6, 7, 9, 3, 1, 2),  # batch 1, odd sizes
    (2, 6, 6, 7, 5, 7, 3, 6),  # depthwise 7x7 (SegNet-Basic's size): own loops
    (2, 3, 6, 5, 7, 5, 2, 3),  # depthwise with a channel multiplier of 2
    (1, 6, 3, 6, 5, 3, 0, 3),  # valid convolution, one filter per group
    (2, 4, 4, 5, 6, 1, 0, 2),  # 1x1: the per-image GEMM path
    (1, 4, 8, 4, 5, 3, 4, 4),  # padding > kernel
    (2, 40, 4, 5, 6, 3, 1, 2),  # C / groups * k * k = 180: the row path
    (2, 3, 3, 6, 7, 5, 0, 3),  # depthwise, valid
    (1, 4, 4, 5, 3, 1, 0, 4),  # depthwise 1x1: a per-channel scale
    (2, 2, 2, 3, 4, 7, 3, 2),  # depthwise, kernel larger than the map
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(rng, shape, dtype):
    check_against_reference(rng, *shape, dtype)


def test_kernels_across_row_bands(rng, monkeypatch):
    monkeypatch.setattr(K, "BAND_BYTES", 500)
    check_against_reference(rng, 2, 4, 4, 9, 6, 5, 2, 4, np.float64)
    check_against_reference(rng, 1, 6, 4, 7, 5, 3, 1, 2, np.float32)


def test_groups_one_is_the_dense_path(rng):
    # explicit groups=1 is bit-for-bit the old call
    x, w, b = make(rng, 2, 3, 4, 6, 7, 3, 1, np.float32)
    np.testing.assert_array_equal(
        K.conv2d_forward(x, w, b, 1, groups=1), K.conv2d_forward(x, w, b, 1)
    )
    dout = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    for a, e in zip(
        K.conv2d_backward(dout, x, w, 1, groups=1),
        K.conv2d_backward(dout, x, w, 1),
        strict=True,
    ):
        np.testing.assert_array_equal(a, e)


# --------------------------------------------------------------------------
# the layer
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "C, F, k, groups, bias, shape",
    [
        (4, 4, 3, 4, True, (2, 4, 5, 6)),  # depthwise
        (4, 6, 3, 2, False, (1, 4, 5, 5)),
        (3, 6, 5, 3, True, (1, 3, 5, 4)),  # depthwise, multiplier 2
        (2, 2, 7, 2, True, (1, 2, 6, 7)),  # SegNet-Basic's single-channel 7x7
    ],
)
def test_gradcheck(rng, C, F, k, groups, bias, shape):
    layer = Conv2D(C, F, k, bias=bias, seed=1, groups=groups).astype(np.float64)
    if bias:
        layer.params["bias"][...] = rng.standard_normal(F)
    report = check_layer(layer, rng.standard_normal(shape)).assert_ok()
    assert report.max_error < 1e-7


def test_depthwise_layer_shapes_init_and_repr(rng):
    layer = Conv2D(64, 64, 7, groups=64, seed=0)
    w = layer.params["weight"]
    assert w.shape == (64, 1, 7, 7)
    # He et al. with the fan-in of one filter: 1 * 7 * 7
    assert abs(w.std() / np.sqrt(2 / 49) - 1) < 0.05
    assert layer.num_params() == 64 * 49 + 64
    assert repr(layer) == (
        "Conv2D(64, 64, kernel_size=7, padding=3, bias=True, dtype=float32, groups=64)"
    )
    assert "groups" not in repr(Conv2D(3, 4, 3))
    # channel c of the output depends on channel c of the input only
    x = np.zeros((1, 64, 9, 9), np.float32)
    x[0, 5, 4, 4] = 1.0
    out = layer(x) - layer.params["bias"][None, :, None, None]
    assert np.flatnonzero(np.abs(out).sum(axis=(0, 2, 3))).tolist() == [5]


def test_needs_input_grad_false_with_groups(rng):
    layer = Conv2D(4, 4, 3, groups=2, seed=0)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    dout = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    layer(x)
    layer.backward(dout)
    full = layer.grads["weight"].copy()
    layer.zero_grad()
    layer.needs_input_grad = False
    layer(x)
    assert layer.backward(dout) is None
    np.testing.assert_array_equal(layer.grads["weight"], full)


@pytest.mark.parametrize(
    "N, C, F, H, W, k, groups",
    [(1, 4, 6, 7, 9, 3, 2), (2, 6, 6, 9, 7, 7, 6), (2, 3, 6, 8, 5, 5, 3)],
    ids=str,
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity(torch, rng, N, C, F, H, W, k, groups, dtype):
    layer = Conv2D(C, F, k, seed=3, dtype=dtype, groups=groups)
    layer.params["bias"][...] = rng.standard_normal(F)
    twin = torch.nn.Conv2d(C, F, k, padding=k // 2, groups=groups)
    twin = twin.to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(layer.weight))
        twin.bias.copy_(torch.from_numpy(layer.bias))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    dout = rng.standard_normal((N, F, H, W)).astype(dtype)
    out = layer(x)
    dx = layer.backward(dout)
    xt = torch.from_numpy(x).requires_grad_()
    t_out = twin(xt)
    t_out.backward(torch.from_numpy(dout))
    p = k // 2
    ax, aw = np.abs(x), np.abs(layer.weight)
    a_out = R.conv2d_forward(ax, aw, np.abs(layer.bias), p, groups)
    adx, adw, adb = R.conv2d_backward(np.abs(dout), ax, aw, p, groups=groups)
    Cg, Fg = C // groups, F // groups
    assert_close(
        out, t_out.detach().numpy(), reduction=Cg * k * k + 1, scale=a_out.max()
    )
    assert_close(dx, xt.grad.numpy(), reduction=Fg * k * k, scale=adx.max())
    assert_close(
        layer.grads["weight"],
        twin.weight.grad.numpy(),
        reduction=N * H * W,
        scale=adw.max(),
    )
    assert_close(
        layer.grads["bias"],
        twin.bias.grad.numpy(),
        reduction=N * H * W,
        scale=adb.max(),
    )


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
def test_layer_rejects_bad_groups():
    with pytest.raises(
        ValueError, match=r"in_channels \(6\) must be divisible by groups \(4\)"
    ):
        Conv2D(6, 8, 3, groups=4)
    with pytest.raises(
        ValueError, match=r"out_channels \(6\) must be divisible by groups \(4\)"
    ):
        Conv2D(8, 6, 3, groups=4)
    with pytest.raises(ValueError, match="groups must be >= 1"):
        Conv2D(4, 4, 3, groups=0)
    with pytest.raises(TypeError, match="groups must be an int"):
        Conv2D(4, 4, 3, groups=2.0)
    layer = Conv2D(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"x has C = 2 .* in_channels = 4"):
        layer(np.zeros((1, 2, 5, 5), np.float32))


def test_kernels_reject_bad_groups(rng):
    x, w, b = make(rng, 1, 4, 6, 5, 5, 3, 2, np.float32)  # w: (6, 2, 3, 3)
    with pytest.raises(ValueError, match=r"groups=3 needs C = 6, but x has C = 4"):
        K.conv2d_forward(x, w, b, 1, groups=3)
    with pytest.raises(ValueError, match=r"weight has 2 input channels \(shape"):
        K.conv2d_forward(x, w, b, 1)  # groups forgotten: the old message
    with pytest.raises(ValueError, match="6 filters .* not a multiple of groups=4"):
        K.conv2d_forward(
            rng.standard_normal((1, 8, 5, 5)).astype(np.float32), w, b, 1, groups=4
        )
    with pytest.raises(ValueError, match="groups must be >= 1"):
        K.conv2d_backward(np.zeros((1, 6, 5, 5), np.float32), x, w, 1, groups=0)
