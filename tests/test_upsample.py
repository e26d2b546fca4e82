"""Upsample: kernels vs reference, gradient checks, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import upsample as K
from npsegnet.layers import MaxPool2D, Upsample
from npsegnet.layers import upsample as layer_module
from npsegnet.reference import upsample as R

MODES = ["bilinear", "nearest"]

# (H, W, output_size, scale_factor): what the layer passes to the kernels
CASES = [
    (5, 7, (10, 14), 2.0),  # odd sizes, x2
    (4, 3, (12, 9), 3.0),
    (3, 5, (4, 7), 1.5),  # non-integer factor: ratio 1 / 1.5, not 3 / 4
    (4, 4, (8, 12), (2.0, 3.0)),  # one factor per axis
    (22, 30, (45, 61), None),  # an odd encoder size restored
    (5, 7, (11, 15), None),
    (6, 4, (3, 2), None),  # down-sampling works too
    (1, 1, (3, 2), None),  # one pixel
    (4, 5, (4, 5), None),  # identity
]


def sums(mode):
    """The longest sum behind one forward output (2 x 2 bilinear taps)."""
    return 4 if mode == "bilinear" else 1


def backward_sums(H, W, size):
    """Upper bound of the terms one input pixel collects in backward."""
    return (2 * (-(-size[0] // H)) + 2) * (2 * (-(-size[1] // W)) + 2)


# --------------------------------------------------------------------------
# the reference itself
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_interpolation_matrix_rows_sum_to_one(mode):
    for n_in, n_out, s in [(5, 10, 2.0), (22, 45, None), (7, 3, None), (3, 4, 1.5)]:
        A = R.interpolation_matrix(n_in, n_out, mode, s)
        assert A.shape == (n_out, n_in)
        np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=0, atol=1e-15)
        assert ((A > 0).sum(axis=1) <= (2 if mode == "bilinear" else 1)).all()


def test_bilinear_by_two_weights():
    # align_corners=False, x2: interior rows mix 1/4 and 3/4; edges copy
    A = R.interpolation_matrix(3, 6, "bilinear", 2.0)
    expected = [
        [1, 0, 0],
        [0.75, 0.25, 0],
        [0.25, 0.75, 0],
        [0, 0.75, 0.25],
        [0, 0.25, 0.75],
        [0, 0, 1],
    ]
    np.testing.assert_array_equal(A, expected)


# --------------------------------------------------------------------------
# kernels vs reference
# --------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(rng, case, mode, dtype):
    H, W, size, scale = case
    for N, C in [(1, 1), (2, 3)]:  # batch 1 included
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        out = K.upsample2d_forward(x, size, mode, scale)
        ref = R.upsample2d_forward(x, size, mode, scale)
        assert out.dtype == dtype and out.shape == (N, C) + size
        # the weights sum to 1: max|x| bounds the sum of |terms|
        assert_close(out, ref, reduction=sums(mode), scale=np.abs(x).max())
        dout = rng.standard_normal(out.shape).astype(dtype)
        dx = K.upsample2d_backward(dout, (H, W), mode, scale)
        rdx = R.upsample2d_backward(dout, (H, W), mode, scale)
        assert dx.dtype == dtype and dx.shape == x.shape
        n = backward_sums(H, W, size)
        assert_close(dx, rdx, reduction=n, scale=np.abs(dout).max() * n)


def test_nearest_copies_values_exactly(rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    out = K.upsample2d_forward(x, (10, 14), "nearest", 2.0)
    np.testing.assert_array_equal(out, x.repeat(2, axis=2).repeat(2, axis=3))


def test_nan_stays_local(rng):
    x = rng.standard_normal((1, 1, 6, 6))
    x[0, 0, 2, 3] = np.nan
    out = K.upsample2d_forward(x, (12, 12), "bilinear", 2.0)
    # rows 3..6 and columns 5..8 of the output touch input (2, 3)
    assert np.isnan(out[0, 0, 3:7, 5:9]).all() and np.isnan(out).sum() == 16


# --------------------------------------------------------------------------
# the layer: gradient checks and contract
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "scale, shape, output_size",
    [
        (2, (2, 3, 3, 5), None),
        (3, (1, 2, 2, 3), None),
        (1.5, (1, 2, 3, 4), None),
        ((2, 3), (1, 1, 3, 2), None),
        (2, (2, 2, 3, 4), (7, 9)),  # odd size restored
        (2, (1, 2, 5, 4), (1, 2, 3, 9)),  # full shape; down in H, up in W
    ],
)
def test_gradcheck(rng, mode, scale, shape, output_size):
    layer = Upsample(scale, mode, dtype=np.float64)
    report = check_layer(layer, rng.standard_normal(shape), output_size=output_size)
    report.assert_ok()
    assert [r.name for r in report.rows] == ["x"]


def test_gradcheck_catches_a_wrong_gradient(rng, monkeypatch):
    def wrong(dout, input_size, mode, scale_factor):
        # the gradient of nearest handed to a bilinear layer
        return K.upsample2d_backward(dout, input_size, "nearest", scale_factor)

    monkeypatch.setattr(layer_module, "upsample2d_backward", wrong)
    report = check_layer(
        Upsample(2, dtype=np.float64), rng.standard_normal((1, 1, 3, 4))
    )
    assert not report.passed and report["x"] > 1e-3


def test_pool_then_upsample_restores_odd_sizes(rng):
    x = rng.standard_normal((1, 2, 45, 61)).astype(np.float32)
    y, _ = MaxPool2D(2, 2)(x)
    assert y.shape[2:] == (22, 30)
    up = Upsample(2)
    assert up(y).shape[2:] == (44, 60)
    assert up(y, output_size=x.shape).shape == x.shape


def test_constant_and_linear_maps(rng):
    # bilinear reproduces constants everywhere, and linear ramps inside
    const = np.full((1, 1, 5, 7), 3.0)
    assert_close(Upsample(2)(const), np.full((1, 1, 10, 14), 3.0), reduction=4)
    ramp = np.broadcast_to(np.arange(7.0), (1, 1, 5, 7)).copy()
    out = Upsample(2)(ramp)[0, 0, 0]
    # output column j samples (j + 0.5) / 2 - 0.5
    np.testing.assert_allclose(out[1:-1], (np.arange(1, 13) + 0.5) / 2 - 0.5)


def test_layer_contract(rng):
    up = Upsample(2, "nearest")
    assert up.params == {} and up.grads == {} and up.num_params() == 0
    assert repr(up) == "Upsample(scale_factor=2, mode='nearest')"
    assert repr(Upsample((2, 3))) == "Upsample(scale_factor=(2, 3), mode='bilinear')"
    assert up.default_output_size((5, 7)) == (10, 14)
    assert Upsample(1.5).default_output_size((5, 7)) == (7, 10)
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    out = up(x)
    assert out.dtype == np.float32
    assert up.backward(np.ones_like(out)).dtype == np.float32
    up.clear_cache()
    with pytest.raises(RuntimeError, match="before forward"):
        up.backward(np.ones_like(out))


# --------------------------------------------------------------------------
# PyTorch parity
# --------------------------------------------------------------------------
PARITY = [
    # N, C, H, W, scale_factor, output_size
    (1, 3, 5, 7, 2, None),
    (2, 4, 4, 3, 3, None),
    (2, 2, 5, 6, 1.5, None),
    (1, 2, 4, 4, (2, 3), None),
    (2, 3, 22, 30, 2, (45, 61)),  # SegNet's odd encoder size at 360x480 / 8
    (1, 2, 11, 15, 2, (23, 31)),
    (1, 2, 9, 8, 2, (5, 12)),
]


def torch_twin(torch, scale, mode, output_size):
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    if output_size is None:
        scale = tuple(float(s) for s in scale) if isinstance(scale, tuple) else scale
        module = torch.nn.Upsample(scale_factor=scale, mode=mode, **kwargs)
        return module
    return lambda x: torch.nn.functional.interpolate(
        x, size=output_size, mode=mode, **kwargs
    )


@pytest.mark.parametrize("case", PARITY, ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity(torch, rng, case, mode, dtype):
    N, C, H, W, scale, output_size = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    up = Upsample(scale, mode)
    out = up(x, output_size=output_size)
    xt = torch.from_numpy(x).requires_grad_()
    t_out = torch_twin(torch, scale, mode, output_size)(xt)
    assert out.shape == tuple(t_out.shape)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = up.backward(dout)
    t_out.backward(torch.from_numpy(dout))
    # PyTorch computes the sample position in the input's precision: its
    # rounding is eps * (H + W) in position, times the jump |x1 - x0| <= 2 max|x|
    coords = sums(mode) + H + W
    assert_close(
        out, t_out.detach().numpy(), reduction=coords, scale=2 * np.abs(x).max()
    )
    n = backward_sums(H, W, out.shape[2:])
    assert_close(
        dx, xt.grad.numpy(), reduction=n + coords, scale=np.abs(dout).max() * n
    )


def test_nearest_indices_are_pytorchs_for_every_size(torch):
    # float32 ratios as PyTorch's kernel: the index of every output sample
    x = np.arange(13, dtype=np.float32).reshape(1, 1, 1, 13).repeat(2, axis=2)
    for w_out in range(1, 60):
        ours = Upsample(2, "nearest")(x, output_size=(2, w_out))[0, 0, 0]
        theirs = torch.nn.functional.interpolate(
            torch.from_numpy(x), size=(2, w_out), mode="nearest"
        )[0, 0, 0]
        np.testing.assert_array_equal(ours, theirs.numpy(), err_msg=f"W_out={w_out}")


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
def test_layer_rejects_bad_arguments():
    with pytest.raises(
        ValueError, match=r"mode must be one of \('nearest', 'bilinear'\)"
    ):
        Upsample(2, "bicubic")
    with pytest.raises(ValueError, match="scale_factor must be positive"):
        Upsample(0)
    with pytest.raises(TypeError, match="scale_factor must be a number"):
        Upsample("2")
    with pytest.raises(ValueError, match="scale_factor must be a number or a pair"):
        Upsample((2, 2, 2))


def test_layer_rejects_bad_input():
    up = Upsample(2)
    x = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"x must be a 4-d array \(N, C, H, W\)"):
        up(x[0])
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        up(x.astype(np.int32))
    with pytest.raises(ValueError, match=r"output_size must be \(H, W\)"):
        up(x, output_size=7)
    with pytest.raises(TypeError, match="output_size must hold ints"):
        up(x, output_size=(7.0, 7))
    with pytest.raises(ValueError, match="output_size must be positive"):
        up(x, output_size=(0, 7))
    with pytest.raises(ValueError, match="the output must be at least 1x1"):
        Upsample(0.2)(x)


def test_layer_rejects_bad_backward():
    up = Upsample(2)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        up.backward(np.zeros((1, 2, 6, 6), np.float32))
    up(np.zeros((1, 2, 3, 3), np.float32), output_size=(7, 6))
    with pytest.raises(ValueError, match=r"dout must have the shape .* \(1, 2, 7, 6\)"):
        up.backward(np.zeros((1, 2, 6, 6), np.float32))
    with pytest.raises(TypeError, match="dout has dtype float64 but the forward"):
        up.backward(np.zeros((1, 2, 7, 6)))


def test_kernels_reject_bad_input():
    x = np.zeros((1, 2, 3, 3))
    with pytest.raises(ValueError, match="mode must be one of"):
        K.upsample2d_forward(x, (6, 6), "area")
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        K.upsample2d_forward(x, (0, 6))
    with pytest.raises(ValueError, match="input_size must be >= 1"):
        K.upsample2d_backward(x, (0, 6))
    with pytest.raises(ValueError, match="scale_factor must be positive"):
        K.upsample2d_forward(x, (6, 6), "bilinear", -2.0)
    with pytest.raises(ValueError, match="dout must be a 4-d array"):
        K.upsample2d_backward(x[0], (2, 2))
