"""BatchNorm2D: kernels vs reference, gradient checks, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import batchnorm as K
from npsegnet.layers import BatchNorm2D, ReLU
from npsegnet.layers.batchnorm import BNEvalCache, BNTrainCache
from npsegnet.reference import batchnorm as R

SHAPES = [(1, 3, 5, 7), (3, 4, 6, 9), (3, 2, 1, 1), (2, 5, 17, 33)]


def make_input(rng, shape, dtype, case):
    """Random data with a per-channel offset; 'const' makes channel 1 constant."""
    x = rng.standard_normal(shape) * 2.0 + rng.standard_normal((1, shape[1], 1, 1))
    if case == "const":
        x[:, min(1, shape[1] - 1)] = 0.7
    elif case == "zeros":
        x[...] = 0.0
    return x.astype(dtype)


def assert_all_close(got, want, dtype, reduction):
    """Compare tuples of arrays up to rounding of ``reduction``-term sums.

    Batch-norm's statistics and gradient sums run over N * H * W values.
    """
    for g, e in zip(got, want, strict=True):
        assert g.dtype == dtype and g.shape == e.shape
        assert np.all(np.isfinite(g))
        # the per-channel results (dweight, dbias) are the sums themselves; the
        # per-pixel ones (out, dx) are built from them with O(1) arithmetic
        assert_close(g, e, dtype=dtype, reduction=reduction, scale=max(1.0, _mag(e)))


def _mag(a):
    return float(np.max(np.abs(a), initial=0.0))


def affine(rng, C, dtype):
    return (
        (1 + 0.5 * rng.standard_normal(C)).astype(dtype),
        rng.standard_normal(C).astype(dtype),
    )


# -- kernels vs reference -----------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["random", "const", "zeros"])
@pytest.mark.parametrize("relu", [False, True])
def test_kernels_match_reference(rng, shape, dtype, case, relu):
    x = make_input(rng, shape, dtype, case)
    w, b = affine(rng, shape[1], dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    got = K.batchnorm2d_forward_train(x, w, b, 1e-5, relu)
    want = R.batchnorm2d_forward_train(x, w, b, 1e-5, relu)
    pixels = shape[0] * shape[2] * shape[3]
    assert_all_close(got, want, dtype, pixels)
    out, mean, _, inv_std = want
    mask = out if relu else None
    assert_all_close(
        K.batchnorm2d_backward(dout, x, mean, inv_std, w, mask),
        R.batchnorm2d_backward(dout, x, mean, inv_std, w, mask),
        dtype,
        pixels,
    )
    rm = rng.standard_normal(shape[1]).astype(dtype)
    rv = (rng.random(shape[1]) + 0.5).astype(dtype)
    y_k = K.batchnorm2d_forward_eval(x, w, b, rm, rv, 1e-5, relu)
    y_r = R.batchnorm2d_forward_eval(x, w, b, rm, rv, 1e-5, relu)
    assert_all_close((y_k,), (y_r,), dtype, 1)
    mask = y_r if relu else None
    assert_all_close(
        K.batchnorm2d_backward_eval(dout, x, rm, rv, w, 1e-5, mask),
        R.batchnorm2d_backward_eval(dout, x, rm, rv, w, 1e-5, mask),
        dtype,
        pixels,
    )


@pytest.mark.parametrize(
    "fn", [K.batchnorm2d_forward_train, R.batchnorm2d_forward_train]
)
def test_statistics_of_a_channel_far_from_zero(rng, fn):
    # mean 1e3, std 1e-2: a naive E[x^2] - E[x]^2 in float32 loses the variance
    x = (1e3 + 1e-2 * rng.standard_normal((2, 2, 31, 29))).astype(np.float32)
    _, mean, var, _ = fn(x, np.ones(2, np.float32), np.zeros(2, np.float32), 1e-5)
    x64 = x.astype(np.float64)
    # the mean: float64 sums, one float32 rounding of the result; the variance
    # of x - pivot: float32 rounding of the differences, relative to the
    # spread (1e-2), not to the mean (1e3)
    assert_close(mean, x64.mean(axis=(0, 2, 3)), dtype=np.float32)
    assert_close(
        var,
        x64.var(axis=(0, 2, 3)),
        dtype=np.float32,
        reduction=31 * 29 * 2,
        scale=1e-4,
    )


def test_constant_channel_is_finite_and_zero():
    x = np.full((2, 1, 3, 3), 5.0, np.float32)
    layer = BatchNorm2D(1)
    out = layer(x)
    np.testing.assert_array_equal(out, 0.0)  # x_hat = 0, bias 0
    dx = layer.backward(np.ones_like(x))
    assert np.all(np.isfinite(dx))
    assert np.all(np.isfinite(layer.buffers["running_var"]))


# -- gradient checks (float64) -----------------------------------------------
def _bn64(rng, C, **kw):
    layer = BatchNorm2D(C, **kw).astype(np.float64)
    layer.params["weight"][:] = 1 + 0.5 * rng.standard_normal(C)
    layer.params["bias"][:] = rng.standard_normal(C)
    return layer


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 7)])
def test_gradcheck_train(rng, shape):
    layer = _bn64(rng, shape[1])
    x = rng.standard_normal(shape) * 3 + 1
    report = check_layer(layer, x).assert_ok()
    assert {r.name for r in report.rows} == {"x", "weight", "bias"}


def test_gradcheck_eval(rng):
    layer = _bn64(rng, 3)
    layer.buffers["running_mean"][:] = rng.standard_normal(3)
    layer.buffers["running_var"][:] = rng.random(3) + 0.5
    layer.eval()
    check_layer(layer, rng.standard_normal((2, 3, 4, 5))).assert_ok()


def test_gradcheck_fused_relu(rng):
    # bias 0.5 and x away from the kink: no output within 1e-3 of 0
    layer = _bn64(rng, 2, relu=True)
    x = rng.standard_normal((2, 2, 3, 4))
    y = layer(x)
    assert np.min(np.abs(y[y != 0])) > 1e-3 and (y == 0).any()
    check_layer(layer, x).assert_ok()
    layer.eval()
    check_layer(layer, x).assert_ok()


def test_fused_relu_equals_bn_then_relu(rng):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    plain, fused = BatchNorm2D(3), BatchNorm2D(3, relu=True)
    for layer in (plain, fused):
        layer.params["bias"][:] = [0.3, -0.2, 0.0]
    y = plain(x)
    np.testing.assert_array_equal(fused(x), np.maximum(y, 0))
    dout = rng.standard_normal(x.shape).astype(np.float32)
    assert_close(
        fused.backward(dout),
        plain.backward(np.where(y > 0, dout, 0)),
        reduction=2 * 5 * 6,
    )


def test_backward_accumulates(rng):
    layer = _bn64(rng, 2)
    x = rng.standard_normal((2, 2, 3, 3))
    layer(x)
    dout = rng.standard_normal(x.shape)
    layer.backward(dout)
    first = {k: g.copy() for k, g in layer.grads.items()}
    layer.backward(dout)
    for k, g in layer.grads.items():
        np.testing.assert_allclose(g, 2 * first[k])


# -- running statistics and buffers ------------------------------------------
def test_buffers_updated_in_place(rng):
    layer = BatchNorm2D(3)
    held = dict(layer.buffers)
    layer(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    for key, arr in held.items():
        assert layer.buffers[key] is arr
    assert not np.allclose(held["running_mean"], 0)
    assert layer.num_batches_tracked == 1
    layer.reset_running_stats()
    np.testing.assert_array_equal(held["running_mean"], 0)
    np.testing.assert_array_equal(held["running_var"], 1)
    assert layer.num_batches_tracked == 0


def test_astype_keeps_counter_and_state_dict(rng):
    layer = BatchNorm2D(2)
    layer(rng.standard_normal((2, 2, 3, 3)).astype(np.float32))
    layer.astype(np.float64)
    assert layer.buffers["running_var"].dtype == np.float64
    assert layer.buffers["num_batches_tracked"].dtype == np.int64
    assert layer.buffers["num_batches_tracked"].shape == ()
    state = layer.state_dict()
    assert set(state) == {
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
    other = BatchNorm2D(2, dtype=np.float64)
    other.load_state_dict(state)
    assert other.num_batches_tracked == 1


# -- PyTorch parity -----------------------------------------------------------
def _torch_bn(torch, C, momentum, w, b):
    bn = torch.nn.BatchNorm2d(C, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(w))
        bn.bias.copy_(torch.from_numpy(b))
    return bn


@pytest.mark.parametrize("momentum", [0.1, None])
def test_torch_parity_training_steps(torch, rng, momentum):
    C = 4
    layer = BatchNorm2D(C, momentum=momentum, dtype=np.float64)
    w, b = affine(rng, C, np.float64)
    layer.params["weight"][:] = w
    layer.params["bias"][:] = b
    bn = _torch_bn(torch, C, momentum, w, b)
    for step in range(4):
        x = rng.standard_normal((3, C, 5, 6)) * (step + 1) + step
        dout = rng.standard_normal(x.shape)
        layer.zero_grad()
        out = layer(x)
        dx = layer.backward(dout)
        xt = torch.from_numpy(x).requires_grad_(True)
        bn.weight.grad = bn.bias.grad = None
        yt = bn(xt)
        yt.backward(torch.from_numpy(dout))
        np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(
            layer.grads["weight"], bn.weight.grad.numpy(), rtol=1e-9
        )
        np.testing.assert_allclose(layer.grads["bias"], bn.bias.grad.numpy(), rtol=1e-9)
        np.testing.assert_allclose(
            layer.buffers["running_mean"], bn.running_mean.numpy(), rtol=1e-12
        )
        np.testing.assert_allclose(
            layer.buffers["running_var"], bn.running_var.numpy(), rtol=1e-12
        )
        assert layer.num_batches_tracked == int(bn.num_batches_tracked)
    layer.eval()
    bn.eval()
    x = rng.standard_normal((2, C, 3, 7))
    with torch.no_grad():
        np.testing.assert_allclose(
            layer(x), bn(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-12
        )


def test_cumulative_average_is_mean_of_batch_statistics(rng):
    """momentum=None: running stats = plain average of the unbiased batch stats."""
    layer = BatchNorm2D(2, momentum=None, dtype=np.float64)
    batches = [rng.standard_normal((2, 2, 3, 4)) + i for i in range(5)]
    for x in batches:
        layer(x)
    means = [x.mean(axis=(0, 2, 3)) for x in batches]
    vars_ = [x.var(axis=(0, 2, 3), ddof=1) for x in batches]
    np.testing.assert_allclose(layer.buffers["running_mean"], np.mean(means, 0))
    np.testing.assert_allclose(layer.buffers["running_var"], np.mean(vars_, 0))


def test_torch_parity_float32_realistic(torch, rng):
    x = rng.standard_normal((2, 16, 45, 60)).astype(np.float32) * 3 + 2
    dout = rng.standard_normal(x.shape).astype(np.float32)
    layer = BatchNorm2D(16)
    bn = torch.nn.BatchNorm2d(16)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = bn(xt)
    yt.backward(torch.from_numpy(dout))
    pixels = 2 * 45 * 60  # every statistic and gradient sum runs over them
    f32 = np.float32
    assert_close(layer(x), yt.detach().numpy(), dtype=f32, reduction=pixels)
    assert_close(layer.backward(dout), xt.grad.numpy(), dtype=f32, reduction=pixels)
    for key, want in (("weight", bn.weight.grad), ("bias", bn.bias.grad)):
        assert_close(layer.grads[key], want.numpy(), dtype=f32, reduction=pixels)
    assert_close(
        layer.buffers["running_var"],
        bn.running_var.numpy(),
        dtype=f32,
        reduction=pixels,
    )


# -- bad input ---------------------------------------------------------------
def test_bad_input_layer(rng):
    layer = BatchNorm2D(3)
    with pytest.raises(ValueError, match="3 channels.*num_features=3|num_features=3"):
        layer(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(TypeError, match="float64 but float32"):
        layer(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="4-d array"):
        layer(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="dtype float32 or float64"):
        layer(np.zeros((1, 3, 4, 4), np.int32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        BatchNorm2D(3).backward(np.zeros((1, 3, 2, 2), np.float32))
    layer(np.zeros((2, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="shape of x"):
        layer.backward(np.zeros((2, 3, 2, 3), np.float32))


@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        ({"num_features": 0}, ValueError, "num_features must be >= 1"),
        ({"num_features": 2.0}, TypeError, "num_features must be an int"),
        ({"num_features": 2, "eps": 0}, ValueError, "eps must be > 0"),
        (
            {"num_features": 2, "momentum": 1.5},
            ValueError,
            r"momentum must be in \[0, 1\]",
        ),
        ({"num_features": 2, "momentum": "a"}, TypeError, "momentum must be a float"),
        ({"num_features": 2, "dtype": np.int64}, TypeError, "dtype must be float32"),
    ],
)
def test_bad_constructor(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        BatchNorm2D(**kwargs)


def test_bad_input_kernels():
    x = np.zeros((2, 3, 4, 4), np.float32)
    ones = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        K.batchnorm2d_forward_train(x, np.ones(4, np.float32), ones, 1e-5)
    with pytest.raises(TypeError, match="bias has dtype float64"):
        K.batchnorm2d_forward_train(x, ones, np.ones(3), 1e-5)
    with pytest.raises(ValueError, match="eps must be > 0"):
        K.batchnorm2d_forward_eval(x, ones, ones, ones, ones, -1.0)
    with pytest.raises(ValueError, match="must not be empty"):
        K.batchnorm2d_forward_train(x[:0], ones, ones, 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_mask_rebuilt_from_x_equals_the_kept_output(rng, dtype):
    # BatchNorm2D(relu=True) keeps the bias, not its output map, and the
    # backward rebuilds the ReLU mask from x: it must be the forward's mask bit
    # for bit, in the kernels (same arithmetic) and the reference alike.
    x = rng.standard_normal((2, 5, 7, 9)).astype(dtype)
    w, b = affine(rng, 5, dtype)
    b[0] = 0.0  # a channel whose mask boundary is the mean itself
    dout = rng.standard_normal(x.shape).astype(dtype)
    for M in (K, R):
        out, mean, _, inv_std = M.batchnorm2d_forward_train(x, w, b, 1e-5, True)
        kept = M.batchnorm2d_backward(dout, x, mean, inv_std, w, out)
        rebuilt = M.batchnorm2d_backward(dout, x, mean, inv_std, w, relu_bias=b)
        for a, e in zip(rebuilt, kept, strict=True):
            np.testing.assert_array_equal(a, e)
    with pytest.raises(ValueError, match="not both"):
        K.batchnorm2d_backward(dout, x, mean, inv_std, w, out, relu_bias=b)


def test_fused_layer_does_not_keep_its_output(rng):
    layer = BatchNorm2D(3, relu=True)
    out = layer(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    assert isinstance(layer.cache, BNTrainCache)
    assert layer.cache.relu_bias is not None
    assert not np.shares_memory(layer.cache.relu_bias, layer.params["bias"])
    assert out.min() >= 0
    layer.eval()
    out = layer(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    assert isinstance(layer.cache, BNEvalCache) and layer.cache.out is out


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fused_relu_keeps_nan_like_bn_then_relu(rng, mode):
    # one NaN pixel must not vanish in the fused ReLU (NaN > 0 is False): a
    # NaN that became 0 would let training go on with NaN weights
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    x[1, 2, 3, 4] = np.nan
    plain, fused, relu = BatchNorm2D(3), BatchNorm2D(3, relu=True), ReLU()
    for layer in (plain, fused):
        getattr(layer, mode)()
    want = relu(plain(x))
    got = fused(x)
    assert np.isnan(got).any()
    np.testing.assert_array_equal(got, want)  # NaN where BN + ReLU gives NaN
    got_k = K.batchnorm2d_forward_train(x, *affine(rng, 3, np.float32), 1e-5, True)[0]
    np.testing.assert_array_equal(
        np.isnan(got_k),
        np.isnan(
            R.batchnorm2d_forward_train(
                x, np.ones(3, np.float32), np.zeros(3, np.float32), 1e-5, True
            )[0]
        ),
    )
