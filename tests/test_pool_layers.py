"""MaxPool2D and MaxUnpool2D: gradient checks, a check of the checker, the layer
contract and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from npsegnet.gradcheck import check_layer
from npsegnet.kernels.pool import maxpool2d_forward, maxunpool2d_forward
from npsegnet.layers import MaxPool2D, MaxUnpool2D, Module


def distinct(shape, rng):
    """float64 input without ties: a permutation of distinct values 0.1 apart.

    A tie is a kink of max pooling (the derivative is not defined there) and a
    centred difference with step 1e-6 would straddle it; values 0.1 apart stay
    far from any tie.
    """
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 3.0


def indices_without_repeats(shape, kernel_size, stride, ceil_mode, rng):
    """Pooling indices of a random map, each repeat moved to an unused cell."""
    _, indices = maxpool2d_forward(distinct(shape, rng), kernel_size, stride, ceil_mode)
    flat = indices.reshape(indices.shape[0] * indices.shape[1], -1)
    H, W = shape[2:]
    for row in flat:
        free = iter(np.setdiff1d(np.arange(H * W), row))
        _, first = np.unique(row, return_index=True)
        repeat = np.setdiff1d(np.arange(row.size), first)
        row[repeat] = [next(free) for _ in repeat]
        assert len(np.unique(row)) == row.size
    return indices


POOL_CASES = [
    ((2, 3, 7, 9), 2, 2, False),
    ((2, 3, 7, 9), 2, 2, True),  # partial windows at the edge
    ((1, 2, 9, 11), 3, 2, False),  # overlapping windows: gradients add up
    ((1, 2, 8, 9), 3, 2, True),
    ((1, 2, 6, 7), 3, 1, False),  # heavy overlap
    ((2, 2, 7, 9), (2, 3), (1, 2), True),
]


@pytest.mark.parametrize("shape, kernel_size, stride, ceil_mode", POOL_CASES)
def test_maxpool2d_gradient(shape, kernel_size, stride, ceil_mode, rng):
    layer = MaxPool2D(kernel_size, stride, ceil_mode).astype(np.float64)
    report = check_layer(layer, distinct(shape, rng))
    assert report["x"] < 1e-7, report
    report.assert_ok()


@pytest.mark.parametrize("shape, kernel_size, stride, ceil_mode", POOL_CASES)
def test_maxunpool2d_gradient(shape, kernel_size, stride, ceil_mode, rng):
    """Unpooling is linear in x; the indices come from pooling another map.

    With overlapping windows one cell can win two windows; unpooling then
    writes it twice and keeps the last value, so the earlier copy has no
    influence, while the gather (PyTorch's backward) hands it the gradient
    anyway. Such inputs are tested separately below; here each plane's
    indices are distinct (checked).
    """
    indices = indices_without_repeats(shape, kernel_size, stride, ceil_mode, rng)
    x = rng.standard_normal(indices.shape)
    layer = MaxUnpool2D(kernel_size, stride).astype(np.float64)
    report = check_layer(layer, x, indices, output_size=shape[2:])
    assert report["x"] < 1e-7, report


def test_unpool_gradient_with_repeated_indices_follows_pytorch_not_calculus(rng):
    """Repeated indices (overlapping windows): the gather gives each copy the
    gradient, although only the last write shows in the output. This is
    PyTorch's convention; the numerical gradient disagrees, as it should."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0
    _, indices = maxpool2d_forward(x, 2, 1)  # all four windows pick the centre
    layer = MaxUnpool2D(2, 1).astype(np.float64)
    report = check_layer(layer, rng.standard_normal(indices.shape), indices)
    assert not report.passed


class NoAccumulatePool(MaxPool2D):
    """A plausible bug: backward *assigns* instead of adding (unpool semantics)."""

    def backward(self, dout):
        return maxunpool2d_forward(dout, self.cache.indices, self.cache.input_shape)


class OffByOneUnpool(MaxUnpool2D):
    """A plausible bug: the gather reads the neighbouring cell."""

    def backward(self, dout):
        N, C = dout.shape[:2]
        flat = dout.reshape(N, C, -1)
        idx = self.cache.indices.reshape(N, C, -1)
        shifted = np.minimum(idx + 1, flat.shape[2] - 1)
        return np.take_along_axis(flat, shifted, 2).reshape(self.cache.indices.shape)


def test_check_the_checker(rng):
    """The gradient check must fail a wrong backward pass."""
    x = distinct((1, 2, 9, 11), rng)
    _, indices = maxpool2d_forward(x, 3, 2)
    flat = indices.reshape(2, -1)
    assert any(len(np.unique(r)) < r.size for r in flat), "need a cell winning twice"
    report = check_layer(NoAccumulatePool(3, 2).astype(np.float64), x)
    assert not report.passed and report["x"] > 1e-3
    # and the same input passes with the real layer
    check_layer(MaxPool2D(3, 2).astype(np.float64), x).assert_ok()

    _, indices = maxpool2d_forward(x, 2, 2)
    z = rng.standard_normal(indices.shape)
    report = check_layer(OffByOneUnpool(2, 2).astype(np.float64), z, indices, (9, 11))
    assert not report.passed and report["x"] > 1e-3
    with pytest.raises(AssertionError, match="FAIL"):
        report.assert_ok()


# -- the layer contract ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_round_trip_and_contract(dtype, rng):
    x = rng.standard_normal((2, 3, 45, 61)).astype(dtype)
    pool, unpool = MaxPool2D(), MaxUnpool2D()
    assert isinstance(pool, Module) and isinstance(unpool, Module)
    assert pool.params == {} and pool.grads == {} and unpool.params == {}
    assert pool.num_params() == 0 and unpool.state_dict() == {}
    y, indices = pool(x)
    assert y.shape == (2, 3, 22, 30) and y.dtype == dtype and indices.dtype == np.int64
    assert pool.cache.indices is indices and pool.cache.input_shape == x.shape
    u = unpool.forward(y, indices, output_size=x.shape[2:])
    assert u.shape == x.shape and u.dtype == dtype
    # every kept value sits where it came from; the rest is zero
    kept = u != 0
    np.testing.assert_array_equal(u[kept], x[kept])
    assert kept.sum() == y.size
    du = unpool.backward(rng.standard_normal(u.shape).astype(dtype))
    assert du.shape == y.shape and du.dtype == dtype
    dx = pool.backward(du)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_array_equal(dx != 0, kept & (dx != 0))
    # default output size (H - 1) * stride + kernel
    assert MaxUnpool2D(3, 2)(y, np.zeros_like(indices)).shape[2:] == (45, 61)
    assert MaxUnpool2D((2, 3), (1, 2))(y, np.zeros_like(indices)).shape[2:] == (
        23,
        61,
    )
    # a full shape is accepted, like PyTorch's output_size=x.size()
    np.testing.assert_array_equal(unpool(y, indices, output_size=x.shape), u)


def test_backward_can_be_repeated_and_follows_last_forward(rng):
    pool = MaxPool2D(3, 2, ceil_mode=True)
    x1 = rng.standard_normal((1, 1, 7, 7))
    x2 = rng.standard_normal((1, 1, 9, 9))
    y1, _ = pool(x1)
    y2, _ = pool(x2)
    d = np.ones_like(y2)
    np.testing.assert_array_equal(pool.backward(d), pool.backward(d))
    assert pool.backward(d).shape == x2.shape


def test_unpool_output_size_rule_matches_pytorch():
    """Allowed: default - stride < size < default + stride, each dimension."""
    y = np.zeros((1, 1, 3, 4))
    idx = np.zeros((1, 1, 3, 4), dtype=np.int64)
    unpool = MaxUnpool2D(2, 2)  # default (6, 8)
    for h in (5, 6, 7):
        assert unpool(y, idx, output_size=(h, 8)).shape[2:] == (h, 8)
    for h in (4, 8):
        with pytest.raises(ValueError, match=r"dim 0 must be between 5 and 7"):
            unpool(y, idx, output_size=(h, 8))
    with pytest.raises(ValueError, match=r"dim 1 must be between 7 and 9"):
        unpool(y, idx, output_size=(6, 10))


# -- bad input -----------------------------------------------------------------------
def test_layer_constructors_reject_bad_arguments():
    with pytest.raises(ValueError, match="stride must be >= 1"):
        MaxPool2D(2, 0)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        MaxPool2D("2")
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        MaxPool2D(2, 2, ceil_mode=1)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        MaxUnpool2D(0)
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        MaxUnpool2D(2, (1, 2, 3))


def test_maxpool2d_layer_rejects_bad_input(rng):
    pool = MaxPool2D()
    with pytest.raises(RuntimeError, match="MaxPool2D.backward called before forward"):
        pool.backward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        pool(np.zeros((1, 1, 4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="x must be a 4-d array"):
        pool(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="kernel_size .* is larger than the input x"):
        MaxPool2D(5, 1)(np.zeros((1, 1, 4, 8)))
    y, _ = pool(rng.standard_normal((1, 2, 4, 6)))
    with pytest.raises(ValueError, match=r"dout must have the shape .*\(1, 2, 2, 3\)"):
        pool.backward(np.zeros((1, 2, 3, 2)))
    with pytest.raises(TypeError, match="dout has dtype float32 but the forward input"):
        pool.backward(np.zeros(y.shape, dtype=np.float32))
    with pytest.raises(TypeError, match="dout must be a NumPy array"):
        pool.backward(y.tolist())


def test_maxunpool2d_layer_rejects_bad_input(rng):
    unpool = MaxUnpool2D()
    x = rng.standard_normal((1, 2, 3, 4))
    _, idx = maxpool2d_forward(rng.standard_normal((1, 2, 7, 8)), 2, 2)
    with pytest.raises(RuntimeError, match="MaxUnpool2D.backward called before"):
        unpool.backward(np.zeros((1, 2, 7, 8)))
    with pytest.raises(ValueError, match=r"indices must have the shape of x"):
        unpool(x, idx[:, :, :2])
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        unpool(x, idx.astype(np.float64))
    with pytest.raises(TypeError, match="indices must be a NumPy array"):
        unpool(x, idx.tolist())
    with pytest.raises(TypeError, match="x must have dtype"):
        unpool(x.astype(np.int64), idx)
    # the indices address rows of 8: the default (6, 8) cannot hold index 6*8 + ...
    with pytest.raises(ValueError, match=r"indices out of range: found \d+"):
        unpool(x, idx, output_size=(5, 8))
    with pytest.raises(ValueError, match=r"dim 0 must be between 5 and 7"):
        unpool(x, idx, output_size=(3, 8))
    with pytest.raises(ValueError, match=r"output_size must be \(H, W\)"):
        unpool(x, idx, output_size=(7,))
    with pytest.raises(ValueError, match=r"disagree on \(N, C\)"):
        unpool(x, idx, output_size=(1, 3, 7, 8))
    u = unpool(x, idx, output_size=(7, 8))
    with pytest.raises(ValueError, match=r"dout must have the shape .*\(1, 2, 7, 8\)"):
        unpool.backward(np.zeros((1, 2, 6, 8)))
    with pytest.raises(TypeError, match="dout has dtype float32"):
        unpool.backward(u.astype(np.float32))
