"""SGD: by hand, against torch.optim.SGD, state round trip, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from npsegnet.optim import SGD, caffe_bias_keys


def make_params(rng, dtype=np.float64):
    params = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(dtype),
        "conv.bias": rng.standard_normal(4).astype(dtype),
        "bn.weight": rng.standard_normal(4).astype(dtype),
        "bn.bias": rng.standard_normal(4).astype(dtype),
    }
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    return params, grads


def test_two_steps_by_hand():
    p = {"w": np.array([1.0, -2.0]), "bias": np.array([0.5])}
    g = {"w": np.array([0.5, 1.0]), "bias": np.array([1.0])}
    opt = SGD(p, g, lr=0.1, momentum=0.5, weight_decay=0.2)
    w_ref = np.array([1.0, -2.0])
    b_ref = 0.5
    v_w = np.zeros(2)
    v_b = 0.0
    for _ in range(2):
        # d = g + wd * p (weights only); v = mu v + d; p -= lr * mult * v
        v_w = 0.5 * v_w + (np.array([0.5, 1.0]) + 0.2 * w_ref)
        w_ref = w_ref - 0.1 * v_w
        v_b = 0.5 * v_b + 1.0
        b_ref = b_ref - 0.2 * v_b
        opt.step()
    # First step by hand: w = 1 - 0.1*(0.5 + 0.2) = 0.93, then
    # v = 0.5*0.7 + (0.5 + 0.2*0.93) = 1.036, w = 0.93 - 0.1036 = 0.8264.
    assert p["w"][0] == pytest.approx(0.8264)
    # bias: lr x2, no decay: 0.5 - 0.2*1 = 0.3; v = 1.5; 0.3 - 0.3 = 0.0
    assert p["bias"][0] == pytest.approx(0.0)
    np.testing.assert_allclose(p["w"], w_ref, rtol=1e-14)
    np.testing.assert_allclose(p["bias"], [b_ref], rtol=1e-14, atol=1e-15)
    assert opt.step_count == 2


def test_updates_the_same_arrays_in_place(rng):
    params, grads = make_params(rng, np.float32)
    ids = {k: id(v) for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    opt = SGD(params, grads, lr=0.1)
    for g in grads.values():
        g[...] = 1.0
    opt.step()
    for k, v in params.items():
        assert id(v) == ids[k]
        assert v.dtype == np.float32  # never promoted to float64
        assert not np.array_equal(v, before[k])


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_matches_torch_sgd(torch, rng, momentum):
    """Param groups in torch express Caffe's lr_mult/decay_mult."""
    params, grads = make_params(rng)
    lr, wd = 0.05, 1e-2
    bias_keys = {"conv.bias"}  # the BN shift keeps multipliers (1, 1), as Caffe
    opt = SGD(
        params, grads, lr, momentum=momentum, weight_decay=wd, bias_keys=bias_keys
    )
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    groups = [
        {"params": [tparams[k]], "lr": lr * 2.0, "weight_decay": 0.0}
        if k in bias_keys
        else {"params": [tparams[k]], "lr": lr, "weight_decay": wd}
        for k in params
    ]
    topt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    for _ in range(3):
        for k in params:
            g = rng.standard_normal(params[k].shape)
            grads[k][...] = g
            tparams[k].grad = torch.tensor(g)
        opt.step()
        topt.step()
    for k in params:
        np.testing.assert_allclose(
            params[k], tparams[k].detach().numpy(), rtol=1e-12, atol=1e-14
        )
        if momentum:
            buf = topt.state[tparams[k]]["momentum_buffer"].numpy()
            np.testing.assert_allclose(opt.velocity[k], buf, rtol=1e-12, atol=1e-14)


def test_default_bias_keys_by_name(rng):
    params, grads = make_params(rng)
    opt = SGD(params, grads, lr=0.1, bias_lr_mult=3.0, bias_decay_mult=0.5)
    assert opt.multipliers["conv.bias"] == (3.0, 0.5)
    assert opt.multipliers["bn.bias"] == (3.0, 0.5)
    assert opt.multipliers["conv.weight"] == (1.0, 1.0)


def test_state_dict_round_trip_continues_identically(rng):
    params, grads = make_params(rng, np.float32)
    opt = SGD(params, grads, lr=0.1)
    for g in grads.values():
        g[...] = rng.standard_normal(g.shape)
    opt.step()
    state = opt.state_dict()
    saved_params = {k: v.copy() for k, v in params.items()}
    opt.step()
    expected = {k: v.copy() for k, v in params.items()}

    params2 = {k: v.copy() for k, v in saved_params.items()}
    grads2 = {k: v.copy() for k, v in grads.items()}
    opt2 = SGD(params2, grads2, lr=0.1)
    opt2.load_state_dict(state)
    assert opt2.step_count == 1
    opt2.step()
    for k in params:
        np.testing.assert_array_equal(params2[k], expected[k])
    # state_dict returns copies, not the live buffers
    assert all(state[f"velocity.{k}"] is not v for k, v in opt.velocity.items())


def test_load_state_dict_mismatch(rng):
    params, grads = make_params(rng)
    opt = SGD(params, grads, lr=0.1)
    state = opt.state_dict()
    del state["velocity.conv.bias"]
    with pytest.raises(KeyError, match="missing"):
        opt.load_state_dict(state)
    state = opt.state_dict()
    state["velocity.conv.bias"] = np.zeros(5)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(state)


def test_bad_arguments(rng):
    params, grads = make_params(rng)
    with pytest.raises(ValueError, match="lr"):
        SGD(params, grads, lr=0.0)
    with pytest.raises(TypeError, match="lr"):
        SGD(params, grads, lr="0.1")
    with pytest.raises(ValueError, match="momentum"):
        SGD(params, grads, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        SGD(params, grads, lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="same keys"):
        SGD(params, {"conv.weight": grads["conv.weight"]}, lr=0.1)
    bad = dict(grads, **{"conv.bias": np.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        SGD(params, bad, lr=0.1)
    with pytest.raises(ValueError, match="bias_keys"):
        SGD(params, grads, lr=0.1, bias_keys={"nope"})


def test_caffe_bias_keys_are_the_conv_biases_only():
    from npsegnet.models import SegNetBasic

    model = SegNetBasic(num_classes=3, channels=2, kernel_size=3)
    keys = caffe_bias_keys(model)
    expected = {f"enc{k}.conv.bias" for k in range(1, 5)}
    expected |= {f"dec{k}.conv.bias" for k in range(1, 5)}
    expected |= {"classifier.bias"}
    assert keys == expected
    assert "enc1.bn.bias" in model.params  # batch-norm shifts keep (1, 1)
    opt = SGD(model.params, model.grads, lr=0.1, bias_keys=keys)
    assert opt.multipliers["enc1.bn.bias"] == (1.0, 1.0)
    assert opt.multipliers["enc1.bn.weight"] == (1.0, 1.0)
    assert opt.multipliers["enc1.conv.bias"] == (2.0, 0.0)
