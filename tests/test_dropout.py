"""Dropout: kernels vs reference, statistics, modes, masks, gradient check."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import dropout as K
from npsegnet.layers import Dropout
from npsegnet.reference import dropout as R


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (3, 2, 4, 9), (11,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.9])
def test_kernels_match_reference(rng, shape, dtype, p):
    x = rng.standard_normal(shape).astype(dtype)
    mask = R.dropout_mask(shape, p, rng)
    out = K.dropout_forward(x, mask, p)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, R.dropout_forward(x, mask, p))
    np.testing.assert_array_equal(
        K.dropout_backward(x, mask, p), R.dropout_backward(x, mask, p)
    )
    np.testing.assert_array_equal(out[~mask], 0)
    assert_close(out[mask], x[mask] / dtype(1 - p), dtype=dtype)  # one rounding


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_statistics(p):
    x = np.ones((4, 8, 64, 64), np.float32)
    layer = Dropout(p, seed=0)
    out = layer(x)
    n = x.size
    dropped = np.mean(out == 0)
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n)
    # inverted dropout keeps the expectation: mean(out) ~ 1
    assert abs(out.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    np.testing.assert_array_equal(out != 0, layer.mask)


def test_eval_is_identity_and_always_on_is_not(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    layer = Dropout(0.5, seed=1).eval()
    assert layer(x) is x
    assert layer.backward(x) is x
    mc = Dropout(0.5, seed=1, always_on=True).eval()
    a, b = mc(x), mc(x)
    assert (a == 0).any() and not np.array_equal(a, b)  # a new mask per pass
    layer.always_on = True
    assert (layer(x) == 0).any()
    zero = Dropout(0.0)
    assert zero(x) is x


def test_seed_reproducible_and_freeze(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    a, b = Dropout(0.5, seed=7), Dropout(0.5, seed=7)
    np.testing.assert_array_equal(a(x), b(x))
    first = a(x)
    a.freeze()
    np.testing.assert_array_equal(a(x), first)
    np.testing.assert_array_equal(a(2 * x), 2 * first)
    with pytest.raises(ValueError, match="frozen mask has shape"):
        a(x[:1])
    a.unfreeze()
    assert not np.array_equal(a(x), first)
    a.reseed(3)
    b.reseed(3)
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(RuntimeError, match="run forward once"):
        Dropout(0.5).freeze()


def test_gradcheck_fixed_mask(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = Dropout(0.4, seed=2)
    layer(x)
    layer.freeze()
    report = check_layer(layer, x).assert_ok()
    assert report["x"] < 1e-7
    dout = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dout), dout * layer.mask / 0.6)


def test_torch_eval_and_scale_agree(torch, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    layer = Dropout(0.3, seed=0)
    out = layer(x)
    # same mask in torch: the kept values must be x / 0.7 in float32 as torch's
    mask = torch.from_numpy(layer.mask.astype(np.float32))
    want = torch.from_numpy(x) * mask * (1.0 / 0.7)
    assert_close(out, want.numpy(), dtype=np.float32)  # x * scale: one rounding
    drop = torch.nn.Dropout(0.3).eval()
    np.testing.assert_array_equal(
        Dropout(0.3).eval()(x), drop(torch.from_numpy(x)).numpy()
    )


@pytest.mark.parametrize(
    "p, err, msg",
    [
        (1.0, ValueError, r"p must be in \[0, 1\)"),
        (-0.1, ValueError, r"p must be in \[0, 1\)"),
        ("0.5", TypeError, "p must be a float"),
        (True, TypeError, "p must be a float"),
    ],
)
def test_bad_p(p, err, msg):
    with pytest.raises(err, match=msg):
        Dropout(p)


def test_bad_input():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        Dropout(0.5)(np.ones((2, 2), np.int32))
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        K.dropout_forward(x, np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match="mask must have the shape of x"):
        K.dropout_forward(x, np.ones((3, 2), bool), 0.5)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        K.dropout_backward(x, np.ones((2, 3), bool), 1.0)


def test_mask_twins_draw_the_same_mask():
    a = R.dropout_mask((2, 3, 5, 7), 0.3, np.random.default_rng(4))
    b = K.dropout_mask((2, 3, 5, 7), 0.3, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="p must be in"):
        K.dropout_mask((2, 2), 1.0, np.random.default_rng(0))
