"""ReLU: kernels vs reference, the kink convention, gradient check, PyTorch parity."""

from __future__ import annotations

import numpy as np
import pytest

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import relu as K
from npsegnet.layers import ReLU
from npsegnet.reference import relu as R


@pytest.mark.parametrize(
    "shape", [(1, 3, 5, 7), (3, 2, 4, 9), (7,), (2, 3), (2, 32768)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[::5] = 0.0
    dout = rng.standard_normal(shape).astype(dtype)
    out = K.relu_forward(x)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(out, R.relu_forward(x))
    np.testing.assert_array_equal(
        K.relu_backward(dout, out), R.relu_backward(dout, out)
    )


@pytest.mark.parametrize("impl", [K, R])
def test_kink_and_special_values(impl):
    x = np.array([-1.0, -0.0, 0.0, 1e-30, 2.0, np.nan], np.float32)
    out = impl.relu_forward(x)
    np.testing.assert_array_equal(out[:5], x[:5] * (x[:5] > 0))
    assert not np.signbit(out[1])  # -0.0 -> +0.0
    assert np.isnan(out[5])  # NaN propagates, as torch.relu
    dx = impl.relu_backward(np.ones_like(x), out)
    # ReLU'(0) = 0 (docs/conventions.md), and no gradient through NaN
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0, 1.0, 1.0, 0.0])


def test_layer_zero_gradient_at_zero():
    layer = ReLU()
    x = np.zeros((1, 1, 2, 2), np.float32)
    x[0, 0, 0, 0] = 3.0
    layer(x)
    dx = layer.backward(np.full_like(x, 5.0))
    np.testing.assert_array_equal(dx[0, 0], [[5.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 3, 7)])
def test_gradcheck(rng, shape):
    # inputs kept away from the kink: |x| >= 0.1, so a +-1e-6 step never crosses 0
    x = rng.standard_normal(shape)
    x = np.sign(x) * (np.abs(x) + 0.1)
    report = check_layer(ReLU(), x).assert_ok()
    assert report["x"] < 1e-7


def test_layer_takes_both_dtypes(rng):
    layer = ReLU()
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((1, 2, 3, 3)).astype(dtype)
        assert layer(x).dtype == dtype
        assert layer.backward(np.ones_like(x)).dtype == dtype


def test_torch_parity(torch, rng):
    x = rng.standard_normal((2, 8, 45, 60)).astype(np.float32)
    x[0, 0, 0, :5] = 0.0
    dout = rng.standard_normal(x.shape).astype(np.float32)
    layer = ReLU()
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.relu(xt)
    yt.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(layer(x), yt.detach().numpy())
    np.testing.assert_array_equal(layer.backward(dout), xt.grad.numpy())


def test_bad_input():
    layer = ReLU()
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        layer(np.zeros((1, 1, 2, 2), np.int64))
    with pytest.raises(TypeError, match="x must be a NumPy array"):
        layer([[1.0, 2.0]])
    with pytest.raises(RuntimeError, match="before forward"):
        ReLU().backward(np.zeros(3))
    layer(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(TypeError, match="dout has dtype float64 but float32"):
        layer.backward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="shape of the forward output"):
        layer.backward(np.zeros((1, 1, 2, 3), np.float32))
