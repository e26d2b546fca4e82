"""SegNet-Basic and SegNet: shapes, parameters, gradients, wiring, weight files."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest
from tolerances import assert_close, network_reduction

from npsegnet.gradcheck import check_layer
from npsegnet.layers import (
    Conv2D,
    Dropout,
    MaxPool2D,
    ReLU,
    SoftmaxCrossEntropy,
    Upsample,
)
from npsegnet.models import (
    DecoderStage,
    EncoderDecoder,
    EncoderStage,
    FeatureMaps,
    PoolIndices,
    SegNet,
    SegNetBasic,
    build_model,
    load_model,
    load_weights,
    read_weights,
)
from npsegnet.models.blocks import PoolRecord  # the old home, still importable
from npsegnet.models.stages import conv_bn
from npsegnet.optim import SGD

# The paper's figures (SegNet Table 1 and Table 6 / the facts sheet).
PAPER_BASIC_PARAMS = 1.425e6
PAPER_SEGNET_PARAMS = 29.4e6


def small_basic(**kw):
    kw = {"in_channels": 2, "num_classes": 3, "channels": 3, "kernel_size": 3, **kw}
    return SegNetBasic(**kw)


def tiny_segnet(**kw):
    kw = {"in_channels": 2, "num_classes": 3, "channels": (2, 2, 3, 3, 3), **kw}
    return SegNet(**kw)


def conv_count(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def images(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture(autouse=True)
def one_numba_thread():
    """Run the kernels on one thread: the maps here are tiny, and parallel
    kernels on tiny maps spend their time waiting for each other (badly so on
    a busy 2-core machine: 20x slower gradient checks)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


# -- shapes --------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape", [(2, 2, 17, 23), (1, 2, 16, 16), (1, 2, 31, 16), (3, 2, 20, 35)]
)
def test_basic_output_has_input_size(rng, shape):
    model = small_basic()
    out = model.forward(images(rng, shape))
    assert out.shape == (shape[0], 3, shape[2], shape[3])
    assert out.dtype == np.float32


def test_basic_pool_records_hold_pre_pool_sizes(rng):
    model = small_basic()
    features, records = model.encode(images(rng, (1, 2, 17, 23)))
    assert [r.size for r in records] == [(17, 23), (8, 11), (4, 5), (2, 2)]
    assert features.shape == (1, 3, 1, 1)
    assert [r.indices.shape[2:] for r in records] == [(8, 11), (4, 5), (2, 2), (1, 1)]


def test_segnet_camvid_size_logic(rng):
    # 360x480 pools to 22x30 at stage 5's input (floor mode) and must come back
    # to 45x60 and 360x480; one channel per stage keeps the full size cheap.
    model = SegNet(num_classes=2, channels=(1, 1, 1, 1, 1))
    x = images(rng, (1, 3, 360, 480))
    features, records = model.encode(x)
    assert [r.size for r in records] == [
        (360, 480),
        (180, 240),
        (90, 120),
        (45, 60),
        (22, 30),
    ]
    assert features.shape == (1, 1, 11, 15)
    assert model.decode(features, records).shape == (1, 2, 360, 480)


@pytest.mark.parametrize("shape", [(1, 2, 33, 45), (2, 2, 32, 32), (1, 2, 47, 63)])
def test_segnet_output_has_input_size(rng, shape):
    out = tiny_segnet().forward(images(rng, shape))
    assert out.shape == (shape[0], 3, shape[2], shape[3])


@pytest.mark.parametrize(("factory", "minimum"), [(small_basic, 16), (tiny_segnet, 32)])
def test_too_small_input_names_the_minimum(rng, factory, minimum):
    model = factory()
    assert model.min_size == minimum
    model.forward(images(rng, (1, 2, minimum, minimum)))
    with pytest.raises(ValueError, match=f">= {minimum}"):
        model.forward(images(rng, (1, 2, minimum - 1, minimum + 5)))
    with pytest.raises(ValueError, match=f">= {minimum}"):
        model.forward(images(rng, (1, 2, minimum, minimum - 1)))


# -- parameters ----------------------------------------------------------------
def test_basic_parameter_count_matches_paper():
    model = SegNetBasic()
    expected = (
        conv_count(3, 64, 7)  # enc1
        + 7 * conv_count(64, 64, 7)  # enc2..4, dec4..1
        + 8 * 2 * 64  # batch-norm scale and shift
        + conv_count(64, 11, 1)  # classifier
    )
    assert model.num_params() == expected == 1_416_587
    assert abs(expected / PAPER_BASIC_PARAMS - 1) < 0.01


def test_segnet_parameter_count_matches_paper():
    model = SegNet()
    enc = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
    enc += [(256, 256)] * 2 + [(256, 512)] + [(512, 512)] * 5
    dec = [(512, 512)] * 5 + [(512, 256), (256, 256), (256, 256), (256, 128)]
    dec += [(128, 128), (128, 64), (64, 64)]
    expected = sum(conv_count(a, b, 3) + 2 * b for a, b in enc + dec)
    expected += conv_count(64, 11, 3)  # the last conv: no batch-norm
    assert model.num_params() == expected == 29_449_355
    assert abs(expected / PAPER_SEGNET_PARAMS - 1) < 0.01
    convs = [k for k in model.params if k.endswith("conv1.weight")]
    assert len(convs) == 10
    assert model.params["enc5.conv3.weight"].shape == (512, 512, 3, 3)
    assert model.params["dec3.conv1.weight"].shape == (128, 256, 3, 3)
    assert model.params["dec1.conv1.weight"].shape == (11, 64, 3, 3)
    assert "dec1.bn1.weight" not in model.params
    assert "dec1.bn2.running_var" in model.buffers


def test_basic_parameter_names():
    model = small_basic()
    stages = [f"enc{k}" for k in range(1, 5)] + [f"dec{k}" for k in range(4, 0, -1)]
    expected = []
    for s in stages:
        expected += [f"{s}.conv.weight", f"{s}.conv.bias", f"{s}.bn.weight"]
        expected += [f"{s}.bn.bias"]
    expected += ["classifier.weight", "classifier.bias"]
    assert list(model.params) == expected
    assert list(model.grads) == expected
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert sorted(model.buffers) == sorted(
        f"{s}.bn.{b}" for s in stages for b in buffers
    )
    # The dicts hold the layers' own arrays: an in-place update reaches them.
    model.params["enc2.conv.weight"][...] = 0.5
    assert np.all(model.enc2.conv.params["weight"] == 0.5)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = small_basic(seed=3), small_basic(seed=3), small_basic(seed=4)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(
        a.params["enc1.conv.weight"], c.params["enc1.conv.weight"]
    )
    # Layers get different seeds from the model's seed.
    w = a.params["enc2.conv.weight"], a.params["enc3.conv.weight"]
    assert not np.array_equal(*w)


# -- gradients -----------------------------------------------------------------
def no_tie_input(rng, shape):
    return rng.uniform(-2.0, 2.0, shape)


def move_to_generic_point(model, rng):
    """Random biases, BN scales and running statistics, as a trained model has.

    At initialisation every bias and BN shift is 0, so a conv whose whole
    receptive field is 0 (unpooled zeros, or a channel ReLU switched off
    everywhere, common with 2-3 channels) outputs exactly 0, and the ReLU
    after its batch-norm sits exactly on its kink: centred differences there
    are off by O(1). A gradient check needs a point away from kinks.
    """
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


def assert_gradients_ok(model, report, last_bias):
    """Every relative error < 1e-7, except where the true gradient is exactly 0.

    In training mode a convolution's bias feeds a batch-norm that subtracts
    the batch mean of each channel, so the bias cannot change the output: its
    gradient is exactly zero, and the analytic and numerical values are both
    rounding noise, whose relative error means nothing. Check instead that
    the analytic value is that noise. Only ``last_bias`` (no batch-norm after
    it) keeps a real gradient.
    """
    shadowed = set()
    if model.training:
        shadowed = {k for k in model.params if ".conv" in k and k.endswith(".bias")}
        shadowed.discard(last_bias)
        assert shadowed and all(k in model.params for k in shadowed | {last_bias})
        for key in shadowed:
            assert np.abs(model.grads[key]).max() < 1e-9, key
    rows = [r for r in report.rows if r.name not in shadowed]
    assert max(r.rel_error for r in rows) < 1e-7, str(report)
    assert report[last_bias] < 1e-7


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_basic_gradient_check(rng, mode):
    model = small_basic(seed=1).astype(np.float64)
    model.needs_input_grad = True
    move_to_generic_point(model, rng)
    model.train(mode == "train")
    x = no_tie_input(rng, (1, 2, 17, 19))
    # h = 1e-5, not 1e-6: the checked scalar sums ~1,000 outputs, and its
    # rounding error divided by h (~1e-8 at h = 1e-6) is what limits the
    # input-gradient row; the O(h^2) truncation error is far smaller.
    report = check_layer(model, x, h=1e-5, max_entries=12, seed=2)
    assert len(report.rows) == 1 + len(model.params)
    assert_gradients_ok(model, report, "classifier.bias")


def test_tiny_segnet_gradient_check(rng):
    model = tiny_segnet(seed=2).astype(np.float64)
    model.needs_input_grad = True
    move_to_generic_point(model, rng)
    x = no_tie_input(rng, (2, 2, 32, 34))
    report = check_layer(model, x, max_entries=6, seed=3)
    assert len(report.rows) == 1 + len(model.params)
    assert_gradients_ok(model, report, "dec1.conv1.bias")


def test_gradient_check_catches_a_broken_model(rng):
    model = small_basic(seed=1).astype(np.float64)
    model.needs_input_grad = True
    move_to_generic_point(model, rng)
    x = no_tie_input(rng, (1, 2, 16, 16))
    broken = model.dec2.conv.backward
    model.dec2.conv.backward = lambda d: 1.5 * broken(d)
    report = check_layer(model, x, max_entries=10)
    assert not report.passed
    assert report["x"] > 1e-3
    assert report["classifier.weight"] < 1e-7  # downstream of the bug: still right


def test_backward_accumulates_and_needs_input_grad_switch(rng):
    model = small_basic()
    x = images(rng, (1, 2, 16, 16))
    dout = images(rng, (1, 3, 16, 16))
    model.forward(x)
    assert model.needs_input_grad is False
    assert model.backward(dout, retain_cache=True) is None  # no image gradient
    once = {k: g.copy() for k, g in model.grads.items()}
    model.backward(dout)
    with pytest.raises(RuntimeError, match="retain_cache=True"):
        model.backward(dout)  # the second backward freed the saved maps
    # the second backward accumulates into the first (GEMM with beta = 1 sums
    # in another order): rounding of the network's sums, over 16 x 16 pixels
    reduction = network_reduction(model, 16 * 16)
    for k, g in model.grads.items():
        assert_close(g, 2 * once[k], reduction=reduction, err_msg=k)
    model.zero_grad()
    model.needs_input_grad = True
    model.forward(x)
    dx = model.backward(dout)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert np.abs(dx).sum() > 0


# -- wiring: each decoder unpools with its mirrored encoder's indices ----------
def test_each_decoder_receives_its_mirrored_encoders_indices(rng, monkeypatch):
    model = small_basic()
    pooled, unpooled = {}, {}
    for k in range(1, 5):
        enc_pool, dec_unpool = getattr(model, f"enc{k}").pool, getattr(model, f"dec{k}")
        dec_unpool = dec_unpool.unpool

        def pool(x, _f=enc_pool.forward, _k=k):
            y, idx = _f(x)
            pooled[_k] = (idx, x.shape[2:])
            return y, idx

        def unpool(x, indices, output_size=None, _f=dec_unpool.forward, _k=k):
            unpooled[_k] = (indices, tuple(output_size))
            return _f(x, indices, output_size=output_size)

        monkeypatch.setattr(enc_pool, "forward", pool)
        monkeypatch.setattr(dec_unpool, "forward", unpool)
    model.forward(images(rng, (1, 2, 19, 37)))
    for k in range(1, 5):
        assert unpooled[k][0] is pooled[k][0]
        assert unpooled[k][1] == tuple(pooled[k][1])


def other_in_window(record: PoolRecord) -> PoolRecord:
    """Move every index to its horizontal neighbour inside the same 2x2 window."""
    width = record.size[1]
    h, w = np.divmod(record.indices, width)
    return PoolRecord(h * width + (w ^ 1), record.size)


@pytest.mark.parametrize("factory", [small_basic, tiny_segnet])
def test_changing_any_stages_indices_changes_the_output(rng, factory):
    model = factory().eval()
    x = images(rng, (1, 2, 35, 33))
    features, records = model.encode(x)
    np.testing.assert_array_equal(model.decode(features, records), model.forward(x))
    for k in range(model.num_stages):
        moved = list(records)
        moved[k] = other_in_window(records[k])
        assert not np.allclose(model.decode(features, moved), model.forward(x))


def test_unpooled_maps_are_nonzero_only_at_the_recorded_maxima(rng):
    model = small_basic().eval()
    x = images(rng, (1, 2, 18, 21))
    features, records = model.encode(x)
    stage = model.dec4
    up = stage.unpool.forward(features, records[3].indices, output_size=records[3].size)
    plane = up.reshape(1, 3, -1)
    mask = np.zeros_like(plane, dtype=bool)
    np.put_along_axis(mask, records[3].indices.reshape(1, 3, -1), True, axis=2)
    assert np.all(plane[~mask] == 0)


# -- modes ---------------------------------------------------------------------
def test_train_and_eval_modes(rng):
    model = small_basic()
    x = images(rng, (2, 2, 16, 20))
    assert model.training and model.enc1.bn.training
    train_out = model.forward(x)
    # Training mode updated the running statistics from the batch.
    assert not np.allclose(model.buffers["enc1.bn.running_mean"], 0)
    model.eval()
    assert not model.training and not model.dec1.bn.training
    eval_out = model.forward(x)
    assert not np.allclose(train_out, eval_out)
    running = {k: v.copy() for k, v in model.buffers.items()}
    np.testing.assert_array_equal(model.forward(x), eval_out)
    for k, v in model.buffers.items():  # eval mode leaves them alone
        np.testing.assert_array_equal(v, running[k])
    # In eval mode one image's output does not depend on the rest of the batch.
    # (GEMMs of another width block the sums differently)
    assert_close(model.forward(x[:1]), eval_out[:1], reduction=network_reduction(model))
    assert model.train() is model and model.classifier.training


# -- bad input -----------------------------------------------------------------
def test_bad_input_is_refused_clearly(rng):
    model = small_basic()
    with pytest.raises(TypeError, match="x .*float64"):
        model.forward(images(rng, (1, 2, 16, 16), np.float64))
    with pytest.raises(TypeError, match="x must be a NumPy array"):
        model.forward([[1.0]])
    with pytest.raises(ValueError, match="4-d"):
        model.forward(images(rng, (2, 16, 16)))
    with pytest.raises(ValueError, match="in_channels=2"):
        model.forward(images(rng, (1, 3, 16, 16)))
    with pytest.raises(RuntimeError, match="before forward"):
        small_basic().backward(images(rng, (1, 3, 16, 16)))
    model.forward(images(rng, (1, 2, 16, 16)))
    with pytest.raises(ValueError, match="dlogits"):
        model.backward(images(rng, (1, 3, 16, 17)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SegNetBasic(kernel_size=4)
    with pytest.raises(ValueError, match="num_classes"):
        SegNetBasic(num_classes=0)
    with pytest.raises(TypeError, match="channels"):
        SegNetBasic(channels=2.5)
    with pytest.raises(ValueError, match="5 ints"):
        SegNet(channels=(64, 128))
    with pytest.raises(TypeError, match="dtype"):
        SegNetBasic(dtype=np.int32)
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        build_model("unet")


def test_build_model_by_name():
    assert isinstance(
        build_model("segnet-basic", channels=2, kernel_size=3), SegNetBasic
    )
    assert isinstance(build_model("SegNet_Basic", channels=2), SegNetBasic)
    model = build_model("segnet", channels=(1, 1, 1, 1, 1), num_classes=4)
    assert isinstance(model, SegNet) and model.num_classes == 4


# -- weights files ---------------------------------------------------------------
def trained_a_little(model, rng):
    """Change every parameter and buffer away from its initial value."""
    for v in model.params.values():
        v += rng.normal(0, 0.1, v.shape).astype(v.dtype)
    model.forward(images(rng, (2, model.in_channels, 40, 36), model.dtype))
    return model


@pytest.mark.parametrize("factory", [small_basic, tiny_segnet])
def test_save_load_round_trip_is_bitwise(tmp_path, rng, factory):
    model = trained_a_little(factory(seed=5), rng).eval()
    x = images(rng, (1, 2, 33, 40))
    expected = model.forward(x)
    path = model.save(tmp_path / "w.npz")
    assert path == tmp_path / "w.npz"
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]  # no temporary file left
    assert model.config["seed"] == 5

    fresh = factory(seed=9).eval()
    assert not np.array_equal(fresh.forward(x), expected)
    fresh.load(path)
    np.testing.assert_array_equal(fresh.forward(x), expected)

    rebuilt = load_model(path).eval()
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    np.testing.assert_array_equal(rebuilt.forward(x), expected)
    assert type(model).from_file(path).num_params() == model.num_params()

    assert model.config["dtype"] == "float32"
    doubled = factory(seed=5).astype(np.float64)
    assert doubled.config["dtype"] == "float64"
    assert load_model(doubled.save(tmp_path / "d.npz")).dtype == np.float64

    wide = load_model(path, dtype=np.float64).eval()
    # float64 against float32 arithmetic: the float32 rounding bounds the gap
    assert_close(
        wide.forward(x.astype(np.float64)),
        expected,
        dtype=np.float32,
        reduction=network_reduction(wide),
    )


def test_saved_file_is_plain_npz_with_config(tmp_path):
    model = small_basic(num_classes=5)
    norm = {"kind": "meanstd", "mean": [0.4, 0.4]}
    path = model.save(tmp_path / "basic.weights", metadata={"normalization": norm})
    with np.load(path, allow_pickle=False) as npz:
        assert npz["__config__"].shape == () and npz["__config__"].dtype.kind == "U"
        assert "enc1.bn.running_var" in npz.files
    meta, state = read_weights(path)
    assert meta["model"] == "segnet-basic"
    assert meta["config"]["num_classes"] == 5 and meta["config"]["kernel_size"] == 3
    assert meta["metadata"] == {"normalization": norm}
    assert state.keys() == model.state_dict().keys()
    with pytest.raises(TypeError, match="JSON"):
        model.save(tmp_path / "x.npz", metadata={"a": np.zeros(2)})
    assert not (tmp_path / "x.npz").exists()


def test_save_replaces_existing_file_and_cleans_up_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    small_basic(seed=1).save(path)
    small_basic(seed=2).save(path)
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]
    np.testing.assert_array_equal(
        read_weights(path)[1]["enc1.conv.weight"],
        small_basic(seed=2).params["enc1.conv.weight"],
    )

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        small_basic(seed=3).save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]  # old file intact, no temp
    np.testing.assert_array_equal(
        read_weights(path)[1]["enc1.conv.weight"],
        small_basic(seed=2).params["enc1.conv.weight"],
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        small_basic().save(tmp_path / "missing" / "w.npz")


def test_load_errors_are_clear(tmp_path):
    path = small_basic().save(tmp_path / "basic.npz")
    with pytest.raises(ValueError, match="'segnet-basic' model.*not of a 'segnet'"):
        tiny_segnet().load(path)
    with pytest.raises(ValueError, match="not a 'segnet' model"):
        SegNet.from_file(path)
    with pytest.raises(ValueError, match=r"classifier.weight: \(3, 3, 1, 1\)"):
        small_basic(num_classes=4).load(path)
    with pytest.raises(ValueError, match="enc1.conv.weight"):
        small_basic(kernel_size=5).load(path)
    with pytest.raises(TypeError, match="npsegnet model"):
        load_weights(object(), path)

    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an npsegnet weights file"):
        load_model(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy"):
        load_model(tmp_path / "single.npy")
    np.savez(tmp_path / "pickled.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="not an npsegnet weights file"):
        load_model(tmp_path / "pickled.npz")


def test_backward_frees_the_saved_maps_unless_retained(rng):
    model = small_basic()
    x = images(rng, (1, 2, 16, 16))
    dout = images(rng, (1, 3, 16, 16))

    def saved():
        return [m for m in model.modules() if m.cache is not None]

    model.forward(x)
    assert len(saved()) > 10  # every conv, bn, pool and unpool
    model.backward(dout, retain_cache=True)
    assert len(saved()) > 10
    model.backward(dout)
    assert saved() == []
    model.clear_cache()  # idempotent
    assert saved() == []


@pytest.mark.parametrize("model_fn", ["basic", "vgg"])
def test_inference_forward_keeps_no_saved_maps(rng, model_fn):
    model = small_basic() if model_fn == "basic" else tiny_segnet()
    model.eval()
    x = images(rng, (2, model.in_channels, 33, 35))
    kept = model.forward(x)
    freed = model.forward(x, keep_cache=False)
    np.testing.assert_array_equal(freed, kept)
    assert not any(m.cache is not None for m in model.modules())
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(freed))


# -- stages built from parts ---------------------------------------------------------
def bilinear_basic(dtype=np.float32, c=3):
    """SegNet-Basic's stages with bilinear up-samplers: a one-line variant."""
    enc = [EncoderStage(layers=conv_bn("", a, c, 3, relu=True, dtype=dtype, seed=k))
           for k, a in enumerate((2, c))]  # fmt: skip
    dec = [DecoderStage(up=Upsample(2), up_name="up", layers=conv_bn(
        "", c, c, 3, relu=False, dtype=dtype, seed=k)) for k in (2, 3)]  # fmt: skip
    return EncoderDecoder(
        in_channels=2,
        dtype=dtype,
        encoders=enc,
        decoders=dec,
        head=Conv2D(c, 3, 1, dtype=dtype),
    )


def test_a_decoder_variant_is_a_one_line_model_and_trains(rng):
    model = bilinear_basic()
    assert (
        isinstance(model.dec1.up_sampler, Upsample)
        and model.dec1.up is model.dec1.up_sampler
    )
    assert list(model.params)[:2] == ["enc1.conv.weight", "enc1.conv.bias"]
    x = images(rng, (2, 2, 13, 18))
    y = rng.integers(0, 3, (2, 13, 18))
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(model.params, model.grads, lr=0.1)
    optimizer.zero_grad()
    before = loss_fn.forward(model.forward(x), y)
    model.backward(loss_fn.backward())
    assert all(np.abs(g).sum() > 0 for g in model.grads.values())
    optimizer.step()
    assert loss_fn.forward(model.forward(x), y) < before


def test_variant_gradient_check(rng):
    model = bilinear_basic(np.float64)
    model.needs_input_grad = True
    move_to_generic_point(model, rng)
    report = check_layer(model, no_tie_input(rng, (1, 2, 9, 11)), max_entries=8)
    assert_gradients_ok(model, report, "classifier.bias")


def test_records_are_typed_and_checked(rng):
    model = small_basic().eval()
    _, records = model.encode(images(rng, (1, 2, 17, 16)))
    assert all(isinstance(r, PoolIndices) and r.kind == "indices" for r in records)
    assert PoolRecord is PoolIndices
    maps = FeatureMaps(np.zeros((1, 3, 2, 2), np.float32), (2, 2))
    with pytest.raises(TypeError, match="MaxUnpool2D up-samples with a PoolIndices"):
        model.dec4.forward(np.zeros((1, 3, 1, 1), np.float32), maps)
    with pytest.raises(TypeError, match="PoolIndices"):
        model.dec4.forward(np.zeros((1, 3, 1, 1), np.float32), records[3].indices)
    with pytest.raises(TypeError, match="not an up-sampler"):
        DecoderStage(up=Conv2D(3, 3, 3))
    with pytest.raises(TypeError, match="down must be"):
        EncoderStage(down=Upsample(2))
    with pytest.raises(ValueError, match="already has an attribute 'order'"):
        EncoderStage(layers=[("order", Dropout())])


def test_encoder_keeps_maps_and_dropout_goes_between_pool_and_unpool(rng):
    stage = EncoderStage(layers=[("relu", ReLU())], after=[("drop", Dropout(0.5))],
                         keep="maps")  # fmt: skip
    assert [(n, role) for n, _, role in stage.parts()] == [
        ("relu", "layer"), ("pool", "down"), ("drop", "layer")]  # fmt: skip
    x = images(rng, (1, 2, 5, 7))
    y, record = stage.forward(x)
    assert isinstance(record, FeatureMaps) and record.size == (5, 7)
    np.testing.assert_array_equal(record.maps, np.maximum(x, 0))
    assert (y == 0).sum() > (MaxPool2D(2, 2)(np.maximum(x, 0))[0] == 0).sum()
    up = DecoderStage(before=[("drop", Dropout(0.5, seed=1))], up=Upsample(2),
                      up_name="up")  # fmt: skip
    assert [n for n, _, _ in up.parts()] == ["drop", "up"]
    assert up.forward(y, record).shape == x.shape
    assert stage.backward(up.backward(np.ones_like(x))).shape == x.shape
