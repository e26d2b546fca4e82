"""Compact 2-bit indices in the layers and models: MaxPool2D(compact=True),
MaxUnpool2D and MaxPool2D.backward reading the store, and inference using it
by default, with the same logits bit for bit and 32 times less kept."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from npsegnet.gradcheck import check_layer
from npsegnet.kernels.compact_pool import CompactIndices
from npsegnet.layers import Conv2D, MaxPool2D, MaxUnpool2D
from npsegnet.models import (
    DecoderStage,
    EncoderDecoder,
    EncoderStage,
    PoolIndices,
    SegNet,
    SegNetBasic,
)
from npsegnet.models.stages import conv_bn


@pytest.fixture(autouse=True)
def one_numba_thread():
    """Tiny maps: parallel kernels would only wait for each other."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


def distinct(shape, rng):
    """float64 without ties (values 0.1 apart): away from max's kinks."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 3.0


def assert_same(actual, desired):
    assert actual.dtype == desired.dtype and actual.shape == desired.shape
    np.testing.assert_array_equal(actual, desired)
    np.testing.assert_array_equal(np.signbit(actual), np.signbit(desired))


# -- the layers ------------------------------------------------------------------------
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 8, 10), (1, 1, 5, 2)])
def test_layers_with_a_store_equal_the_int64_layers(shape, ceil_mode, rng):
    x = rng.integers(0, 3, shape).astype(np.float32)  # ties in most windows
    flat_pool, pool = (
        MaxPool2D(2, 2, ceil_mode),
        MaxPool2D(2, 2, ceil_mode, compact=True),
    )
    y_flat, indices = flat_pool(x)
    y, store = pool(x)
    assert isinstance(store, CompactIndices) and pool.cache.indices is store
    assert_same(y, y_flat)
    np.testing.assert_array_equal(store.to_flat(), indices)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert_same(pool.backward(dy), flat_pool.backward(dy))

    flat_unpool, unpool = MaxUnpool2D(2, 2), MaxUnpool2D(2, 2)
    u_flat = flat_unpool(dy, indices, output_size=shape[2:])
    assert_same(unpool(dy, store, output_size=shape[2:]), u_flat)
    assert_same(unpool(dy, store), u_flat)  # the store knows the size to restore
    du = rng.standard_normal(shape).astype(np.float32)
    assert_same(unpool.backward(du), flat_unpool.backward(du))


def test_forward_argument_overrides_the_layer_setting(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    pool = MaxPool2D(2, 2)
    assert isinstance(pool(x, compact=True)[1], CompactIndices)
    assert isinstance(pool(x)[1], np.ndarray)
    pool = MaxPool2D(2, 2, compact=True)
    assert isinstance(pool(x, compact=False)[1], np.ndarray)
    assert repr(pool) == (
        "MaxPool2D(kernel_size=(2, 2), stride=(2, 2), ceil_mode=False, compact=True)"
    )
    assert MaxPool2D(2, 2).supports_compact and not MaxPool2D(3, 2).supports_compact


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_compact_layer_gradients(ceil_mode, rng):
    shape = (2, 2, 7, 9)
    pool = MaxPool2D(2, 2, ceil_mode, compact=True).astype(np.float64)
    check_layer(pool, distinct(shape, rng)).assert_ok()
    _, store = MaxPool2D(2, 2, ceil_mode, compact=True)(distinct(shape, rng))
    unpool = MaxUnpool2D(2, 2).astype(np.float64)
    report = check_layer(unpool, rng.standard_normal(store.shape), store)
    report.assert_ok()


def test_layers_refuse_what_the_store_cannot_hold(rng):
    with pytest.raises(ValueError, match=r"2x2 windows with stride 2 only .*\(3, 3\)"):
        MaxPool2D(3, 2, compact=True)
    with pytest.raises(ValueError, match=r"2x2 windows with stride 2 only"):
        MaxPool2D(2, 1).forward(np.zeros((1, 1, 4, 4)), compact=True)
    with pytest.raises(TypeError, match="compact must be a bool"):
        MaxPool2D(2, 2, compact="yes")
    x = rng.standard_normal((1, 2, 5, 6))
    y, store = MaxPool2D(2, 2, compact=True)(x)
    with pytest.raises(ValueError, match=r"2x2 windows with stride 2 only .*\(3, 3\)"):
        MaxUnpool2D(3, 2)(y, store)
    with pytest.raises(ValueError, match=r"output_size \(4, 6\) differs"):
        MaxUnpool2D(2, 2)(y, store, output_size=(4, 6))  # fits the rule, not 5x6
    with pytest.raises(ValueError, match="does not fit an input"):
        MaxUnpool2D(2, 2)(y, store, output_size=(9, 6))  # the layer's own rule first
    with pytest.raises(ValueError, match="x must have the pooled shape"):
        MaxUnpool2D(2, 2)(y[:, :1], store)
    with pytest.raises(TypeError, match="NumPy array of integers or a CompactIndices"):
        MaxUnpool2D(2, 2)(y, store.to_flat().tolist())
    pool = MaxPool2D(2, 2, compact=True)
    pool(x)
    with pytest.raises(ValueError, match="dout must have the shape of the forward"):
        pool.backward(np.zeros((1, 2, 2, 2)))


# -- the models ------------------------------------------------------------------------
def small_basic():
    return SegNetBasic(in_channels=2, num_classes=3, channels=3, kernel_size=3)


def tiny_segnet():
    return SegNet(in_channels=2, num_classes=3, channels=(2, 2, 3, 3, 3))


def ceil_and_overlap_model(dtype=np.float32):
    """Ceil-mode 2x2 pools, and one 3x3 stride-2 pool no store can hold."""
    downs = [MaxPool2D(2, 2, ceil_mode=True), MaxPool2D(3, 2), MaxPool2D(2, 2, True)]
    ups = [MaxUnpool2D(2, 2), MaxUnpool2D(3, 2), MaxUnpool2D(2, 2)]
    pairs = zip((2, 3, 3), downs, strict=True)
    enc = [EncoderStage(layers=conv_bn("", a, 3, 3, relu=True, dtype=dtype, seed=k),
                        down=d) for k, (a, d) in enumerate(pairs)]  # fmt: skip
    dec = [DecoderStage(up=u, layers=conv_bn("", 3, 3, 3, relu=False, dtype=dtype,
                        seed=k + 5)) for k, u in enumerate(reversed(ups))]  # fmt: skip
    return EncoderDecoder(
        in_channels=2, dtype=dtype, encoders=enc, decoders=dec, head=Conv2D(3, 3, 1)
    )


MODELS = {"basic": small_basic, "segnet": tiny_segnet, "ceil": ceil_and_overlap_model}


@pytest.mark.parametrize("hw", [(32, 48), (33, 35)])
@pytest.mark.parametrize("name", list(MODELS))
def test_inference_logits_are_the_same_bit_for_bit(name, hw, rng):
    model = MODELS[name]()
    model.eval()
    x = rng.standard_normal((2, 2) + hw).astype(np.float32)
    default = model.forward(x, keep_cache=False)  # compact indices
    int64 = model.forward(x, keep_cache=False, compact=False)
    kept = model.forward(x)  # training's path: int64, caches kept
    assert_same(default, int64)
    assert_same(default, kept)


@pytest.mark.parametrize("name", ["basic", "segnet"])
def test_what_the_decoder_keeps_is_32_times_smaller(name, rng):
    model = MODELS[name]()
    model.eval()
    # every pooled plane's windows a multiple of 4: no byte half used
    x = rng.standard_normal((1, 2, 128, 192)).astype(np.float32)
    _, compact = model.encode(x, keep_cache=False)
    _, int64 = model.encode(x, keep_cache=False, compact=False)
    assert all(isinstance(r.indices, CompactIndices) for r in compact)
    assert all(isinstance(r.indices, np.ndarray) for r in int64)
    for a, b in zip(compact, int64, strict=True):
        assert isinstance(a, PoolIndices) and a.size == b.size
        np.testing.assert_array_equal(a.indices.to_flat(), b.indices)
    assert sum(r.nbytes for r in int64) == 32 * sum(r.nbytes for r in compact)
    # training keeps int64 unless asked
    _, records = model.encode(x)
    assert all(isinstance(r.indices, np.ndarray) for r in records)


def test_inference_default_skips_pools_no_store_can_hold(rng):
    model = ceil_and_overlap_model()
    model.eval()
    _, records = model.encode(rng.standard_normal((1, 2, 33, 35)).astype(np.float32),
                              keep_cache=False)  # fmt: skip
    kinds = [type(r.indices) for r in records]
    assert kinds == [CompactIndices, np.ndarray, CompactIndices]
    with pytest.raises(ValueError, match="2x2 windows with stride 2 only"):
        model.forward(np.zeros((1, 2, 33, 35), np.float32), compact=True)


def test_training_with_compact_indices_gives_the_same_gradients(rng):
    """Backward reads the stores too: the same gradients, bit for bit."""
    x = rng.standard_normal((2, 2, 33, 35)).astype(np.float32)
    dlogits = rng.standard_normal((2, 3, 33, 35)).astype(np.float32)
    runs = []
    for compact in (False, True):
        model = small_basic()
        logits = model.forward(x, compact=compact)
        model.backward(dlogits)
        runs.append((logits, {k: g.copy() for k, g in model.grads.items()}))
    (l0, g0), (l1, g1) = runs
    assert_same(l1, l0)
    assert g0.keys() == g1.keys()
    for k in g0:
        assert_same(g1[k], g0[k])
