"""The eight models of the SegNet paper's Table 1: parameters, shapes, gradients,
PyTorch, and what each decoder keeps from its encoder (measured)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.layers import ConvTranspose2D, SoftmaxCrossEntropy
from npsegnet.models import (
    MODELS,
    DecoderStage,
    EncoderStage,
    FeatureMaps,
    IndicesAndMaps,
    PoolIndices,
    PoolSize,
    SegNetBasic,
    build_model,
    load_model,
    torch_module,
)
from npsegnet.models.registry import model_options
from npsegnet.models.variants import TABLE1, fcn_deconvolution
from npsegnet.optim import SGD

VARIANTS = sorted(TABLE1)
NEW = [name for name in VARIANTS if name != "segnet-basic"]


@pytest.fixture(autouse=True)
def one_numba_thread():
    """Tiny maps: one thread is faster than two waiting for each other."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


def tiny(name, **kw):
    kw = {"in_channels": 2, "num_classes": 3, "channels": 4, "kernel_size": 3, **kw}
    return build_model(name, **kw)


def generic_point(model, rng):
    """Random biases, BN scales and statistics: away from ReLU kinks."""
    for key, p in model.params.items():
        if key.endswith(".bias"):
            p[...] = rng.normal(0.0, 0.3, p.shape)
        elif ".bn" in key:
            p[...] = rng.uniform(0.5, 1.5, p.shape)
    for key, b in model.buffers.items():
        if key.endswith("running_var"):
            b[...] = rng.uniform(0.5, 1.5, b.shape)
        elif key.endswith("running_mean"):
            b[...] = rng.normal(0, 0.1, b.shape)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# -- Table 1: parameters ---------------------------------------------------------
# Counted by hand: the shared encoder (3->64 and 3 x 64->64 7x7 convs with bias,
# 4 BN) is 612,288; a 7x7 64->64 decoder conv + BN 200,896; a single-channel
# one 3,328; a 1x1 64->11 conv 715; an 8x8 deconvolution 11->11 7,744 and
# 64->64 262,144 (no bias).
EXPECTED = {
    "bilinear-interpolation": 612_288 + 4 * 3_328 + 715,
    "segnet-basic": 612_288 + 4 * 200_896 + 715,
    "segnet-basic-encoder-addition": 612_288 + 4 * 200_896 + 715,
    "segnet-basic-single-channel-decoder": 612_288 + 4 * 3_328 + 715,
    "fcn-basic": 612_288 + 5 * 715 + 4 * 7_744,
    "fcn-basic-no-addition": 612_288 + 715 + 4 * 7_744,
    "fcn-basic-no-dim-reduction": 612_288 + 4 * 262_144 + 715,
    "fcn-basic-no-addition-no-dim-reduction": 612_288 + 4 * 262_144 + 715,
}


def test_all_eight_are_registered():
    assert set(TABLE1) <= set(MODELS)
    assert len(TABLE1) == 8
    for name in NEW:
        assert model_options(name) == model_options("segnet-basic"), name
    assert "dropout" in model_options("Bayesian_SegNet-Basic")
    with pytest.raises(ValueError, match="unknown model 'fcn'; choose one of"):
        model_options("fcn")


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_count_matches_table1(name):
    model = build_model(name)
    assert model.num_params() == EXPECTED[name]
    paper, _ = TABLE1[name]
    assert abs(model.num_params() - paper) / paper < 0.03, model.num_params()


@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_encoder_as_segnet_basic(name):
    model, basic = tiny(name, seed=3), SegNetBasic(2, 3, 4, 3, seed=3)
    for key, value in basic.params.items():
        if key.startswith("enc"):
            np.testing.assert_array_equal(model.params[key], value, err_msg=key)


# -- shapes -------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("shape", [(2, 2, 17, 23), (1, 2, 16, 31)])
def test_output_has_input_size(rng, name, shape):
    model = tiny(name)
    x = rng.standard_normal(shape).astype(np.float32)
    out = model.forward(x)
    assert out.shape == (shape[0], 3, *shape[2:]) and out.dtype == np.float32
    model.eval()
    np.testing.assert_array_equal(model.forward(x, keep_cache=False), model.forward(x))
    with pytest.raises(ValueError, match=">= 16"):
        model.forward(x[:, :, :15])


def test_layer_plans():
    fcn = build_model("fcn-basic")
    assert [n for n, _, _ in fcn.enc1.parts()] == ["conv", "bn", "reduce", "pool"]
    assert [n for n, _, _ in fcn.dec4.parts()] == ["reduce", "deconv"]
    assert fcn.dec4.merge == "add" and fcn.head is None
    assert fcn.enc1.reduce.out_channels == 11
    plain = build_model("fcn-basic-no-addition-no-dim-reduction")
    assert plain.enc1.keep == "size" and plain.dec1.merge is None
    assert plain.dec1.deconv.in_channels == 64 and plain.head.out_channels == 11
    thin = build_model("segnet-basic-single-channel-decoder")
    assert thin.dec3.conv.groups == 64 and thin.dec3.conv.weight.shape == (64, 1, 7, 7)
    bil = build_model("bilinear-interpolation")
    assert bil.dec2.up.mode == "bilinear" and bil.dec2.conv.groups == 64
    add = build_model("segnet-basic-encoder-addition")
    assert add.enc2.keep == "indices+maps" and add.dec2.merge == "add"


def test_fcn_deconvolution_starts_as_bilinear_upsampling(rng):
    x = rng.standard_normal((2, 3, 5, 6))
    ours = fcn_deconvolution(3, np.float64)
    fcn = ConvTranspose2D.bilinear(3, dtype=np.float64)
    for size in [(10, 12), (11, 13)]:
        assert_close(ours(x, output_size=size), fcn(x, output_size=size), reduction=16)


# -- what crosses from encoder to decoder ----------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bilinear-interpolation", PoolSize),
        ("segnet-basic", PoolIndices),
        ("segnet-basic-encoder-addition", IndicesAndMaps),
        ("fcn-basic", FeatureMaps),
        ("fcn-basic-no-addition", PoolSize),
    ],
)
def test_records_are_of_the_kind_the_decoder_reads(rng, name, kind):
    model = tiny(name)
    _, records = model.encode(rng.standard_normal((1, 2, 17, 16)).astype(np.float32))
    assert all(type(r) is kind for r in records)
    assert [r.size for r in records] == [(17, 16), (8, 8), (4, 4), (2, 2)]


def test_encoder_addition_adds_the_pre_pool_maps(rng):
    model = tiny("segnet-basic-encoder-addition").eval()
    x = rng.standard_normal((1, 2, 16, 18)).astype(np.float32)
    features, records = model.encode(x)
    np.testing.assert_array_equal(records[0].maps, model.enc1.bn(model.enc1.conv(x)))
    without = model.dec4.unpool(features, records[3].indices, output_size=(2, 2))
    without = model.dec4.bn(model.dec4.conv(without))
    assert_close(model.dec4.forward(features, records[3]), without + records[3].maps)


def test_fcn_keeps_reduced_maps_and_merge_checks_its_record(rng):
    model = tiny("fcn-basic")
    _, records = model.encode(rng.standard_normal((1, 2, 16, 20)).astype(np.float32))
    assert records[0].maps.shape == (1, 3, 16, 20)  # K = 3 channels, pre-pool size
    with pytest.raises(TypeError, match="merge='add' adds the mirrored encoder"):
        model.dec1.forward(np.zeros((1, 3, 8, 10), np.float32), PoolSize((16, 20)))
    with pytest.raises(ValueError, match="skip layers"):
        EncoderStage(skip=[("reduce", ConvTranspose2D(2, 2, 1))])
    with pytest.raises(ValueError, match="merge must be one of"):
        DecoderStage(merge="concat")


# -- gradients and a training step --------------------------------------------------
@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradient_check(rng, name, mode):
    model = tiny(name, seed=1).astype(np.float64)
    model.needs_input_grad = True
    generic_point(model, rng)
    model.train(mode == "train")
    # Two images: with one, a train-mode BN after a single-channel filter of
    # a constant (bilinearly up-sampled 1x1) map cancels the map's scale, and
    # the encoder's true gradient is exactly 0. Where decoders add the
    # encoder's maps, the gradient of every pre-pool pixel flows back, ReLU
    # kinks included, so the step must stay below the distance to the
    # nearest kink (h = 1e-6); elsewhere h = 1e-5 keeps rounding noise down.
    merges = any(getattr(d, "merge", None) for d in model.decoders)
    x = rng.uniform(-2.0, 2.0, (2, 2, 17, 19))
    report = check_layer(model, x, h=1e-6 if merges else 1e-5, max_entries=6, seed=2)
    assert len(report.rows) == 1 + len(model.params)
    # In training mode a conv bias before a batch-norm has a true gradient of
    # exactly 0 (the batch mean removes it): both sides are rounding noise.
    shadowed = {k for k in model.params if mode == "train" and k.endswith("conv.bias")}
    for key in shadowed:
        assert np.abs(model.grads[key]).max() < 1e-9, key
    rows = [r for r in report.rows if r.name not in shadowed]
    assert max(r.rel_error for r in rows) < 1e-7, str(report)


@pytest.mark.parametrize("name", NEW)
def test_one_training_step_lowers_the_loss(rng, name):
    model = tiny(name)
    x = rng.standard_normal((2, 2, 16, 20)).astype(np.float32)
    y = rng.integers(0, 3, (2, 16, 20))
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(model.params, model.grads, lr=0.05)
    optimizer.zero_grad()
    before = loss_fn.forward(model.forward(x), y)
    model.backward(loss_fn.backward())
    assert all(np.abs(g).sum() > 0 for g in model.grads.values())
    optimizer.step()
    assert loss_fn.forward(model.forward(x), y) < before


@pytest.mark.parametrize("name", NEW)
def test_save_and_load_model_round_trip(tmp_path, rng, name):
    model = tiny(name, seed=5)
    generic_point(model, rng)
    path = model.save(tmp_path / "m.npz")
    back = load_model(path)
    assert type(back) is type(model) and back.config == model.config
    x = rng.standard_normal((1, 2, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(back.eval().forward(x), model.eval().forward(x))


# -- PyTorch --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW)
def test_torch_twin_matches_forward_and_backward(torch, rng, name):
    model = tiny(name, seed=2).astype(np.float64).train()
    generic_point(model, rng)
    model.needs_input_grad = True
    net = torch_module(model)
    assert set(net.state_dict()) == set(model.state_dict())
    x = rng.standard_normal((2, 2, 17, 22))
    g = rng.standard_normal((2, 3, 17, 22))
    ours = model.forward(x)
    dx = model.backward(g)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = net(xt)
    (out * torch.from_numpy(g)).sum().backward()
    assert rel(ours, out.detach().numpy()) < 1e-12
    assert rel(dx, xt.grad.numpy()) < 1e-10
    for key, param in net.named_parameters():
        theirs = param.grad.numpy()
        gap = np.linalg.norm(model.grads[key] - theirs)
        assert gap <= 1e-10 * np.linalg.norm(theirs) + 1e-12, key
    model.eval()
    net.eval()
    with torch.no_grad():
        assert rel(model.forward(x), net(torch.from_numpy(x)).numpy()) < 1e-12


@pytest.mark.parametrize("name", NEW)
def test_torch_round_trip(torch, rng, tmp_path, name):
    from npsegnet.models import export_torch, load_torch_state_dict

    model = tiny(name, seed=2).eval()
    generic_point(model, rng)
    path = export_torch(model, tmp_path / "m.pt")
    back = load_torch_state_dict(tiny(name, seed=9), path).eval()
    x = rng.standard_normal((1, 2, 19, 16)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    net = torch_module(tiny(name, seed=9)).eval()
    net.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        assert rel(net(torch.from_numpy(x)).numpy(), model.forward(x)) < 1e-5


# -- what the decoder keeps, measured --------------------------------------------
def test_decoder_storage_reproduces_the_papers_figures():
    """Paper §3.1 at 180x240, float32: FCN-Basic's 64 first-layer maps 11 MB,
    1.9 MB reduced to 11; SegNet's indices 0.17 MB at 2 bits a window."""
    mb = 1e6
    fcn64 = build_model("fcn-basic-no-dim-reduction").decoder_storage((180, 240))
    fcn11 = build_model("fcn-basic").decoder_storage((180, 240))
    segnet = build_model("segnet-basic").decoder_storage((180, 240))
    assert round(fcn64["dec1"] / mb) == 11  # 64 x 180 x 240 x 4 bytes
    assert round(fcn11["dec1"] / mb, 1) == 1.9  # 11 x 180 x 240 x 4
    assert round(segnet["dec1"] / mb, 2) == 0.17  # 64 x 90 x 120 x 2 bits
    assert segnet["dec1"] == 64 * 90 * 120 // 4
    wide = build_model("segnet-basic").decoder_storage((180, 240), compact=False)
    assert wide["dec1"] == 64 * 90 * 120 * 8  # int64: 32 times more
    assert segnet["total"] == sum(segnet[f"dec{k}"] for k in range(1, 5))


@pytest.mark.parametrize("name", VARIANTS)
def test_storage_multiplier_matches_table1(name):
    basic = build_model("segnet-basic").decoder_storage((64, 96))["total"]
    storage = build_model(name).decoder_storage((64, 96))
    _, multiplier = TABLE1[name]
    # EncoderAddition keeps the indices too: 64 + 1 (the paper rounds to 64)
    extra = 1 if name == "segnet-basic-encoder-addition" else 0
    assert storage["total"] == (multiplier + extra) * basic


@pytest.mark.parametrize(
    "module",
    [
        "npsegnet.models.variants",
        "npsegnet.models.bayesian",
        "npsegnet.models.registry",
    ],
)
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
