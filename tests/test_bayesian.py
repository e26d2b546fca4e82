"""Bayesian SegNet(-Basic): where the dropout sits, base weights, PyTorch, and
Monte-Carlo dropout through the shared deterministic prefix."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.layers import Dropout, SoftmaxCrossEntropy
from npsegnet.models import (
    BayesianSegNet,
    BayesianSegNetBasic,
    SegNet,
    SegNetBasic,
    build_model,
    load_model,
    torch_module,
)
from npsegnet.optim import SGD
from npsegnet.uncertainty import mc_dropout


@pytest.fixture(autouse=True)
def one_numba_thread():
    """Tiny maps: one thread is faster than two waiting for each other."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


def tiny_basic(**kw):
    kw = {"in_channels": 2, "num_classes": 3, "channels": 4, "kernel_size": 3, **kw}
    return BayesianSegNetBasic(**kw)


def tiny_segnet(**kw):
    kw = {"in_channels": 2, "num_classes": 3, "channels": (2, 2, 3, 3, 3), **kw}
    return BayesianSegNet(**kw)


def dropout_sites(model):
    """``"enc3.drop"``-style names of the dropout layers, in data-flow order."""
    stages = [(f"enc{k}", s) for k, s in enumerate(model.encoders, 1)]
    ks = range(model.num_stages, 0, -1)
    stages += [(f"dec{k}", s) for k, s in zip(ks, model.decoders, strict=True)]
    return [
        f"{name}.{n}"
        for name, stage in stages
        for n, m, _ in stage.parts()
        if isinstance(m, Dropout)
    ]


# -- where the dropout sits -----------------------------------------------------------
def test_bayesian_segnet_basic_drops_at_the_central_units():
    model = build_model("bayesian-segnet-basic")
    assert dropout_sites(model) == ["enc3.drop", "enc4.drop", "dec4.drop", "dec3.drop"]
    # after the pool in the encoder, after the conv-BN in the decoder
    assert [n for n, _, _ in model.enc3.parts()] == ["conv", "bn", "pool", "drop"]
    assert [n for n, _, _ in model.dec4.parts()] == ["unpool", "conv", "bn", "drop"]
    assert [n for n, _, _ in model.dec2.parts()] == ["unpool", "conv", "bn"]
    assert all(m.p == 0.5 for m in model.modules() if isinstance(m, Dropout))
    assert model.num_params() == SegNetBasic().num_params()


def test_bayesian_segnet_drops_after_pools_3_4_5_and_decoders_5_4_3():
    model = tiny_segnet(dropout=0.3)
    assert dropout_sites(model) == [
        "enc3.drop", "enc4.drop", "enc5.drop", "dec5.drop", "dec4.drop", "dec3.drop"
    ]  # fmt: skip
    assert [n for n, _, _ in model.enc5.parts()][-2:] == ["pool", "drop"]
    assert [n for n, _, _ in model.dec3.parts()][-2:] == ["bn1", "drop"]
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, Dropout))
    assert BayesianSegNet().num_params() == SegNet().num_params()


def test_constructor_options_and_weights_file(tmp_path, rng):
    model = tiny_basic(dropout=0.25, seed=4)
    assert model.config["dropout"] == 0.25 and model.config["kernel_size"] == 3
    back = load_model(model.save(tmp_path / "b.npz"))
    assert type(back) is BayesianSegNetBasic and back.dropout == 0.25
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        tiny_basic(dropout=1.0)
    seg = tiny_segnet(dropout=0.1)
    assert load_model(seg.save(tmp_path / "s.npz")).config == seg.config


@pytest.mark.parametrize(
    ("bayes", "base"),
    [
        (tiny_basic, lambda: SegNetBasic(2, 3, 4, 3, seed=7)),
        (tiny_segnet, lambda: SegNet(2, 3, (2, 2, 3, 3, 3), seed=7)),
    ],
    ids=["basic", "segnet"],
)
def test_base_weights_load_and_dropout_off_is_the_base_model(rng, bayes, base):
    base_model, model = base().eval(), bayes().eval()
    assert list(model.state_dict()) == list(base_model.state_dict())
    model.load_state_dict(base_model.state_dict())
    x = rng.standard_normal((1, 2, 32, 35)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x), base_model.forward(x))


def test_training_step_and_dropout_in_training_mode(rng):
    model = tiny_basic()
    x = rng.standard_normal((2, 2, 16, 20)).astype(np.float32)
    y = rng.integers(0, 3, (2, 16, 20))
    assert not np.array_equal(model.forward(x), model.forward(x))  # masks differ
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(model.params, model.grads, lr=0.05)
    for drop in (m for m in model.modules() if isinstance(m, Dropout)):
        drop.reseed(0)
    before = loss_fn.forward(model.forward(x), y)
    model.backward(loss_fn.backward())
    optimizer.step()
    for drop in (m for m in model.modules() if isinstance(m, Dropout)):
        drop.reseed(0)  # the same masks again: the step must have helped
    assert loss_fn.forward(model.forward(x), y) < before


@pytest.mark.parametrize("factory", [tiny_basic, tiny_segnet], ids=["basic", "segnet"])
def test_exports_to_torch(torch, rng, factory):
    model = factory().eval()
    net = torch_module(model)
    assert set(net.state_dict()) == set(model.state_dict())
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == len(
        dropout_sites(model)
    )
    x = rng.standard_normal((1, 2, 32, 33)).astype(np.float32)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    ours = model.forward(x)
    assert np.linalg.norm(ours - theirs) < 1e-5 * np.linalg.norm(theirs)


# -- the shared deterministic prefix -------------------------------------------------
def test_prefix_stops_before_the_first_dropout(rng):
    model = tiny_basic().eval()
    x = rng.standard_normal((2, 2, 17, 20)).astype(np.float32)
    state = model.forward_prefix(x)
    assert state.step == ("enc", 3, "after")  # enc1..enc3 ran, up to pool 3
    assert state.x.shape == (2, 4, 2, 2) and len(state.records) == 3
    # dropout off: the suffix of k copies is the forward of k copies
    logits = model.forward_suffix(state, repeat=3)
    full = model.forward(np.concatenate([x] * 3), keep_cache=False)
    assert_close(logits, full, reduction=200)
    plain = SegNetBasic(2, 3, 4, 3).eval()
    s = plain.forward_prefix(x)  # no dropout: the whole network is the prefix
    assert s.step is None
    twice = plain.forward(np.concatenate([x] * 2))
    assert_close(plain.forward_suffix(s, repeat=2), twice, reduction=200)


@pytest.mark.parametrize("factory", [tiny_basic, tiny_segnet], ids=["basic", "segnet"])
@pytest.mark.parametrize("batch", [4, 3])
def test_mc_dropout_with_shared_prefix_equals_the_full_network(rng, factory, batch):
    model = factory()
    x = rng.standard_normal((2, 2, 33, 35)).astype(np.float32)
    shared = mc_dropout(model, x, samples=7, seed=5, batch=batch)
    full = mc_dropout(model, x, samples=7, seed=5, batch=batch, shared_prefix=False)
    assert shared.variance.max() > 0
    # the same masks, and each image's prefix computed the same way
    assert_close(shared.mean, full.mean, dtype=np.float32, reduction=100)
    assert_close(shared.variance, full.variance, dtype=np.float32, reduction=100,
                 scale=1.0)  # fmt: skip
    np.testing.assert_array_equal(shared.labels, full.labels)
