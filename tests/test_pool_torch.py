"""Parity with PyTorch's max_pool2d(return_indices=True) and max_unpool2d.

Values and gradients must be allclose and the indices EQUAL, on ties, NaN,
-inf, ceil mode and overlapping windows. Skips cleanly without torch.
"""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.kernels import pool as kern
from npsegnet.layers import MaxPool2D, MaxUnpool2D

CASES = [
    # (shape, kernel_size, stride, ceil_mode)
    ((1, 2, 7, 9), 2, 2, False),
    ((3, 2, 7, 9), 2, 2, True),
    ((1, 3, 45, 60), 2, 2, False),  # 22x30
    ((1, 3, 45, 60), 2, 2, True),  # 23x30, Caffe's size
    ((3, 2, 7, 9), 3, 2, False),
    ((2, 2, 45, 60), 3, 2, True),
    ((1, 2, 7, 9), 3, 1, False),
    ((3, 2, 7, 9), (2, 3), (1, 2), True),
    ((2, 2, 8, 8), 2, 3, True),
    ((1, 1, 2, 2), 3, 2, True),  # a window larger than the input, allowed in ceil mode
]


def make(kind, shape, dtype, rng):
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "ties":
        x = rng.integers(0, 3, shape).astype(float)
    elif kind == "constant":
        x = np.full(shape, -1.5)
    elif kind == "nan":
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.3] = np.nan
    else:  # "inf": windows of -inf only
        x = rng.choice([-np.inf, 1.0, np.inf], size=shape, p=[0.8, 0.1, 0.1])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["normal", "ties", "constant", "nan", "inf"])
@pytest.mark.parametrize("shape, kernel_size, stride, ceil_mode", CASES)
def test_pool_and_unpool_match_torch(
    shape, kernel_size, stride, ceil_mode, kind, dtype, rng, torch
):
    F = torch.nn.functional
    x = make(kind, shape, dtype, rng)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty, ti = F.max_pool2d(
        tx, kernel_size, stride, ceil_mode=ceil_mode, return_indices=True
    )
    pool = MaxPool2D(kernel_size, stride, ceil_mode)
    y, indices = pool(x)
    np.testing.assert_array_equal(indices, ti.numpy())  # EQUAL, not close
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=0)

    dout = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dout))
    # overlapping windows add up to kernel_size**2 gradients at one input
    windows = int(np.prod(np.broadcast_to(kernel_size, 2)))
    assert_close(pool.backward(dout), tx.grad.numpy(), reduction=windows)

    # unpool the decoder's values to the pooled input's size, and back
    z = rng.standard_normal(y.shape).astype(dtype)
    tz = torch.from_numpy(z.copy()).requires_grad_(True)
    tu = F.max_unpool2d(tz, ti, kernel_size, stride, output_size=shape[2:])
    unpool = MaxUnpool2D(kernel_size, stride)
    u = unpool(z, indices, output_size=shape[2:])
    np.testing.assert_array_equal(u, tu.detach().numpy())
    du = rng.standard_normal(u.shape).astype(dtype)
    tu.backward(torch.from_numpy(du))
    np.testing.assert_array_equal(unpool.backward(du), tz.grad.numpy())


def test_realistic_segnet_stage_matches_torch(rng, torch):
    """A SegNet-Basic stage, 64 channels at 90x120 (float32), pool and unpool."""
    F = torch.nn.functional
    x = rng.standard_normal((2, 64, 90, 120), dtype=np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty, ti = F.max_pool2d(tx, 2, 2, return_indices=True)
    y, indices = kern.maxpool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(indices, ti.numpy())
    np.testing.assert_array_equal(y, ty.detach().numpy())
    tu = F.max_unpool2d(ty, ti, 2, 2, output_size=x.shape[2:])
    u = kern.maxunpool2d_forward(y, indices, x.shape[2:])
    np.testing.assert_array_equal(u, tu.detach().numpy())
    du = rng.standard_normal(u.shape, dtype=np.float32)
    tu.backward(torch.from_numpy(du))
    dy = kern.maxunpool2d_backward(du, indices)
    dx = kern.maxpool2d_backward(dy, indices, x.shape)
    np.testing.assert_array_equal(dx, tx.grad.numpy())


def test_unpool_output_size_rule_and_errors_match_torch(torch):
    """Our layer raises exactly where PyTorch does, for sizes around the default."""
    F = torch.nn.functional
    for kernel_size, stride, hw in [(2, 2, (3, 4)), (3, 2, (2, 3)), (2, 1, (3, 3))]:
        y = np.zeros((1, 1, *hw))
        idx = np.zeros((1, 1, *hw), dtype=np.int64)
        unpool = MaxUnpool2D(kernel_size, stride)
        default = unpool.default_output_size(hw)
        for dh in range(-stride - 1, stride + 2):
            size = (default[0] + dh, default[1])
            try:
                F.max_unpool2d(
                    torch.from_numpy(y),
                    torch.from_numpy(idx),
                    kernel_size,
                    stride,
                    output_size=size,
                )
            except (ValueError, RuntimeError):
                with pytest.raises(ValueError):
                    unpool(y, idx, output_size=size)
            else:
                assert unpool(y, idx, output_size=size).shape[2:] == size


def test_pool_size_errors_match_torch(torch):
    """A window too large for the input: rejected in floor mode, and in ceil
    mode only when no window could start inside (PyTorch's rule)."""
    F = torch.nn.functional
    for H in (1, 2, 3):
        for k in (1, 2, 3, 4):
            for s in (1, 2, 3):
                for ceil_mode in (False, True):
                    x = np.zeros((1, 1, H, H))
                    try:
                        t = torch.from_numpy(x)
                        want = F.max_pool2d(t, k, s, ceil_mode=ceil_mode)
                    except RuntimeError:
                        with pytest.raises(ValueError, match="larger than the input"):
                            kern.maxpool2d_forward(x, k, s, ceil_mode)
                    else:
                        got, _ = kern.maxpool2d_forward(x, k, s, ceil_mode)
                        assert got.shape == tuple(want.shape)
