"""The contract every layer shares: one ``cache``, one way to free it, one switch.

Each layer keeps what ``backward`` needs in ``layer.cache`` (``None`` before
the first forward), ``clear_cache()`` frees it in every layer (ReLU and
Dropout included), and ``backward`` without it raises ``RuntimeError``.
"""

from __future__ import annotations

import numpy as np
import pytest

from npsegnet.layers import (
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dropout,
    MaxPool2D,
    MaxUnpool2D,
    Module,
    ReLU,
    SoftmaxCrossEntropy,
    Upsample,
)


def _x(rng, shape=(2, 4, 6, 6)):
    return rng.standard_normal(shape).astype(np.float32)


def _unpool_args(rng):
    y, indices = MaxPool2D(2, 2)(_x(rng))
    return (y, indices), {"output_size": (6, 6)}


# name -> (layer factory, function of rng giving (args, kwargs) for forward)
LAYERS = {
    "Conv2D": (lambda: Conv2D(4, 3, 3, seed=0), lambda r: ((_x(r),), {})),
    "Conv2D groups": (
        lambda: Conv2D(4, 4, 3, groups=4, seed=0),
        lambda r: ((_x(r),), {}),
    ),
    "ConvTranspose2D": (
        lambda: ConvTranspose2D(4, 2, 4, stride=2, padding=1, seed=0),
        lambda r: ((_x(r),), {}),
    ),
    "Upsample": (lambda: Upsample(2), lambda r: ((_x(r),), {})),
    "BatchNorm2D": (lambda: BatchNorm2D(4), lambda r: ((_x(r),), {})),
    "BatchNorm2D relu": (lambda: BatchNorm2D(4, relu=True), lambda r: ((_x(r),), {})),
    "ReLU": (lambda: ReLU(), lambda r: ((_x(r),), {})),
    "Dropout": (lambda: Dropout(0.5, seed=0), lambda r: ((_x(r),), {})),
    "MaxPool2D": (lambda: MaxPool2D(2, 2), lambda r: ((_x(r),), {})),
    "MaxUnpool2D": (lambda: MaxUnpool2D(2, 2), _unpool_args),
    "SoftmaxCrossEntropy": (
        lambda: SoftmaxCrossEntropy(),
        lambda r: ((_x(r, (2, 3, 4, 4)), r.integers(0, 3, (2, 4, 4))), {}),
    ),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_one_cache_freed_one_way(rng, name, mode):
    make, inputs = LAYERS[name]
    layer = make().train(mode == "train")
    assert layer.cache is None
    args, kwargs = inputs(rng)
    out = layer(*args, **kwargs)
    if isinstance(out, tuple):  # MaxPool2D: (y, indices)
        out = out[0]
    assert layer.cache is not None
    dout = 1.0 if np.isscalar(out) else np.ones_like(out)
    layer.backward(dout)  # works while the cache is there
    layer.clear_cache()
    assert layer.cache is None
    assert not any(attr in vars(layer) for attr in ("_cache", "_out", "_active")), (
        "layer state must live in `cache` alone"
    )
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(dout)


def test_clear_cache_reaches_every_layer_below(rng):
    class Chain(Module):
        def __init__(self):
            super().__init__()
            self.relu, self.drop = ReLU(), Dropout(0.5, seed=1)

    chain = Chain()
    chain.drop(chain.relu(_x(rng)))
    assert chain.relu.cache is not None and chain.drop.mask is not None
    chain.clear_cache()
    assert chain.relu.cache is None and chain.drop.cache is None
    assert chain.drop.mask is None


def test_dropout_frozen_mask_survives_clear_cache(rng):
    x = _x(rng)
    layer = Dropout(0.5, seed=3)
    first = layer(x)
    mask = layer.mask
    layer.freeze()
    assert layer.frozen
    layer.clear_cache()
    assert layer.mask is mask  # the frozen mask is state, not cache
    np.testing.assert_array_equal(layer(x), first)
    layer.unfreeze()
    assert not layer.frozen


def test_needs_input_grad_is_one_name_everywhere():
    for make, _ in LAYERS.values():
        assert make().needs_input_grad is True
    conv = Conv2D(2, 2, 3)
    conv.needs_input_grad = False
    with pytest.deprecated_call():
        assert conv.need_dx is False
