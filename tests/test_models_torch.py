"""PyTorch as the oracle of the whole models, and the weight bridges to it.

Skipped cleanly when PyTorch is absent (the ``torch`` fixture). torchvision is
not needed: the VGG16 state dicts are built here from torchvision's layout.
"""

from __future__ import annotations

import numba
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
    Upsample,
)
from npsegnet.models import (
    DecoderStage,
    EncoderDecoder,
    EncoderStage,
    SegNet,
    SegNetBasic,
    export_torch,
    load_torch_state_dict,
    load_vgg16_into,
    to_torch_state_dict,
    torch_module,
)
from npsegnet.models.io import torch_forward, vgg16_key_map  # the deprecated home


@pytest.fixture(autouse=True)
def one_numba_thread():
    """Run the kernels on one thread: the maps here are tiny, and parallel
    kernels on tiny maps spend their time waiting for each other (badly so on
    a busy 2-core machine: 20x slower gradient checks)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


# torchvision's configuration "D" (VGG16): channels, "M" for a max-pool.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]
VGG16_CFG += [512, 512, 512, "M", 512, 512, 512, "M"]


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def vgg16_features(torch, batch_norm: bool):
    """torchvision's ``vgg16(_bn)().features``, rebuilt layer by layer."""
    nn = torch.nn
    layers, c_in = [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(c_in, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        c_in = v
    features = nn.Sequential(*layers)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in features.modules():
            if isinstance(m, nn.BatchNorm2d):  # statistics of a trained net
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
                m.running_mean.normal_(0.0, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return features.eval()


def vgg16_state_dict(torch, features):
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    # The fully connected head is ignored by the loader (kept small here).
    state["classifier.0.weight"] = torch.zeros(8, 4)
    state["classifier.0.bias"] = torch.zeros(8)
    return state


def set_running_stats(model, rng):
    for key, b in model.buffers.items():
        if key.endswith("running_var"):
            b[...] = rng.uniform(0.5, 1.5, b.shape)
        elif key.endswith("running_mean"):
            b[...] = rng.normal(0, 0.2, b.shape)


# -- whole-model parity ------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_basic_forward_matches_torch(torch, rng, mode, dtype):
    model = SegNetBasic(in_channels=3, num_classes=5, channels=8, dtype=dtype, seed=1)
    set_running_stats(model, rng)
    model.train(mode == "train")
    net = torch_module(model)
    assert net.training == (mode == "train")
    assert set(net.state_dict()) == set(model.state_dict())
    x = rng.standard_normal((2, 3, 19, 22)).astype(dtype)
    ours = model.forward(x)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    assert theirs.dtype == dtype
    assert rel(ours, theirs) < (1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (lambda: SegNetBasic(3, 4, channels=6, kernel_size=5, dtype=np.float64), 17),
        (lambda: SegNet(2, 4, channels=(3, 4, 4, 5, 5), dtype=np.float64), 35),
    ],
    ids=["segnet-basic", "segnet"],
)
def test_training_step_matches_torch(torch, rng, factory, shape):
    model = factory().train()
    model.needs_input_grad = True
    net = torch_module(model)
    x = rng.standard_normal((2, model.in_channels, shape, shape + 4))
    g = rng.standard_normal((2, model.num_classes, shape, shape + 4))

    ours = model.forward(x)
    dx = model.backward(g)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = net(xt)
    (out * torch.from_numpy(g)).sum().backward()

    assert rel(ours, out.detach().numpy()) < 1e-12
    assert rel(dx, xt.grad.numpy()) < 1e-10
    torch_params = dict(net.named_parameters())
    assert torch_params.keys() == model.grads.keys()
    for key, grad in model.grads.items():
        # Conv biases before a train-mode BN have a true gradient of 0 (the
        # batch mean removes them): both sides are ~1e-14 of rounding noise.
        theirs = torch_params[key].grad.numpy()
        gap = np.linalg.norm(grad - theirs)
        assert gap <= 1e-10 * np.linalg.norm(theirs) + 1e-12, key
    # Both updated the running statistics the same way (momentum, unbiased var).
    torch_state = net.state_dict()
    for key, b in model.buffers.items():
        np.testing.assert_allclose(b, torch_state[key].numpy(), rtol=1e-12, atol=1e-14)


# -- VGG16 into SegNet's encoder -----------------------------------------------------
def test_vgg16_bn_weights_give_torchvisions_features(torch, rng, tmp_path):
    features = vgg16_features(torch, batch_norm=True)
    path = tmp_path / "vgg16_bn.pth"
    torch.save(vgg16_state_dict(torch, features), path)

    model = SegNet(num_classes=11).eval()
    decoder_before = model.params["dec3.conv2.weight"].copy()
    loaded = load_vgg16_into(model, path)
    assert len(loaded) == 13 * 2 + 13 * 4
    np.testing.assert_array_equal(
        model.params["enc4.conv2.weight"], features[27].weight.detach().numpy()
    )
    np.testing.assert_array_equal(
        model.buffers["enc4.bn2.running_var"], features[28].running_var.numpy()
    )
    np.testing.assert_array_equal(model.params["dec3.conv2.weight"], decoder_before)

    x = rng.standard_normal((1, 3, 32, 48)).astype(np.float32)
    ours, records = model.encode(x)
    with torch.no_grad():
        theirs = features(torch.from_numpy(x)).numpy()
    assert ours.shape == theirs.shape == (1, 512, 1, 1)
    assert rel(ours, theirs) < 1e-5
    assert len(records) == 5


def test_vgg16_without_bn_loads_convolutions_only(torch):
    features = vgg16_features(torch, batch_norm=False)
    state = vgg16_state_dict(torch, features)
    model = SegNet(num_classes=3)
    loaded = load_vgg16_into(model, state)  # a dict of tensors: no file needed
    assert len(loaded) == 26 and all(".conv" in k for k in loaded)
    mapping = vgg16_key_map(batch_norm=False)
    assert mapping["enc1.conv2.weight"] == "features.2.weight"
    assert mapping["enc5.conv3.bias"] == "features.28.bias"
    np.testing.assert_array_equal(
        model.params["enc5.conv3.weight"], features[28].weight.detach().numpy()
    )
    np.testing.assert_array_equal(model.params["enc3.bn1.weight"], 1.0)
    np.testing.assert_array_equal(model.buffers["enc3.bn1.running_var"], 1.0)


def test_vgg16_key_map_follows_torchvision_layout():
    mapping = vgg16_key_map(batch_norm=True)
    assert mapping["enc1.conv1.weight"] == "features.0.weight"
    assert mapping["enc1.bn1.running_mean"] == "features.1.running_mean"
    assert mapping["enc2.conv1.weight"] == "features.7.weight"
    assert mapping["enc5.conv3.bias"] == "features.40.bias"
    assert mapping["enc5.bn3.running_var"] == "features.41.running_var"


def test_vgg16_loader_errors(torch):
    state = vgg16_state_dict(torch, vgg16_features(torch, batch_norm=True))
    with pytest.raises(TypeError, match="SegNet"):
        load_vgg16_into(SegNetBasic(), state)
    with pytest.raises(ValueError, match="do not fit.*in_channels=3"):
        load_vgg16_into(SegNet(channels=(8, 8, 8, 8, 8)), state)
    del state["features.40.weight"]
    with pytest.raises(ValueError, match=r"not a torchvision vgg16_bn.*features\.40"):
        load_vgg16_into(SegNet(), state)


# -- export and round trips ----------------------------------------------------------
def test_export_and_import_round_trip(torch, rng, tmp_path):
    model = SegNetBasic(in_channels=3, num_classes=4, channels=6, kernel_size=3, seed=2)
    set_running_stats(model, rng)
    model.eval()
    path = export_torch(model, tmp_path / "basic.pt")
    state = torch.load(path, weights_only=True)
    assert state["enc1.bn.num_batches_tracked"].item() == 0
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    net = torch_module(SegNetBasic(3, 4, channels=6, kernel_size=3, seed=7)).eval()
    net.load_state_dict(state)
    x = rng.standard_normal((1, 3, 21, 16)).astype(np.float32)
    with torch.no_grad():
        assert rel(net(torch.from_numpy(x)).numpy(), model.forward(x)) < 1e-5

    # Train a step in PyTorch ("on the GPU"), bring the weights back.
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.from_numpy(x)).square().mean().backward()
    opt.step()
    back = load_torch_state_dict(SegNetBasic(3, 4, channels=6, kernel_size=3), path)
    np.testing.assert_array_equal(
        back.params["enc2.conv.weight"], model.params["enc2.conv.weight"]
    )
    load_torch_state_dict(back, net.state_dict())
    back.eval()
    net.eval()
    with torch.no_grad():
        assert rel(back.forward(x), net(torch.from_numpy(x)).numpy()) < 1e-5
    np.testing.assert_array_equal(
        back.params["classifier.bias"], net.classifier.bias.detach().numpy()
    )


def test_to_torch_state_dict_copies(torch):
    model = SegNetBasic(channels=2, kernel_size=3)
    state = to_torch_state_dict(model)
    state["enc1.conv.weight"].fill_(7.0)
    assert not np.any(model.params["enc1.conv.weight"] == 7.0)
    with pytest.raises(ValueError, match="does not fit"):
        load_torch_state_dict(SegNetBasic(channels=3, kernel_size=3), state)


def test_torch_forward_helper(torch, rng):
    model = SegNet(num_classes=2, channels=(1, 2, 2, 2, 2)).eval()
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert rel(torch_forward(model, x), model.forward(x)) < 1e-5


# -- new parts export with no bridge change --------------------------------------
def new_parts_model(p: float):
    """Stages built from the new parts: grouped conv, ReLU, dropout after the
    pool and before an up-sampler, a transposed convolution and bilinear
    up-sampling, one encoder keeping its maps instead of indices."""
    f64 = np.float64
    enc1 = EncoderStage(
        layers=[("conv", Conv2D(2, 4, 3, dtype=f64, seed=1)), ("relu", ReLU(f64))],
        after=[("drop", Dropout(p, seed=0))],
    )
    enc2 = EncoderStage(
        layers=[("dw", Conv2D(4, 4, 5, groups=4, dtype=f64, seed=2)),
                ("bn", BatchNorm2D(4, relu=True, dtype=f64))],
        keep="maps",
    )  # fmt: skip
    dec2 = DecoderStage(
        before=[("drop", Dropout(p, seed=1))],
        up=ConvTranspose2D(4, 4, 4, stride=2, padding=1, dtype=f64, seed=3),
        up_name="up",
        layers=[("bn", BatchNorm2D(4, dtype=f64))],
    )
    dec1 = DecoderStage(up=Upsample(2, "bilinear"), up_name="up")
    model = EncoderDecoder(
        in_channels=2, dtype=f64, encoders=[enc1, enc2], decoders=[dec2, dec1],
        head=Conv2D(4, 3, 1, dtype=f64, seed=4),
    )  # fmt: skip
    model.needs_input_grad = True
    return model


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_stage_of_new_parts_matches_torch(torch, rng, p):
    model = new_parts_model(p)
    net = torch_module(model)
    assert set(net.state_dict()) == set(model.state_dict())
    assert "dec2.up.weight" in model.params and "enc2.bn_relu1" in dict(
        net.named_modules()
    )
    x = rng.standard_normal((2, 2, 11, 14))
    model.eval()
    net.eval()
    with torch.no_grad():
        assert rel(model.forward(x), net(torch.from_numpy(x)).numpy()) < 1e-12
    if p > 0:
        return  # training mode draws different dropout masks on each side
    model.train()
    net.train()
    g = rng.standard_normal((2, 3, 11, 14))
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


def test_layer_without_a_twin_is_named(torch):
    class Odd(ReLU):
        pass

    from npsegnet.models.torch_bridge import TORCH_TWINS, torch_twins

    assert torch_twins(Odd())[0].__class__ is torch.nn.ReLU  # a subclass inherits
    assert set(TORCH_TWINS) >= {Conv2D, ConvTranspose2D, Upsample, BatchNorm2D,
                                ReLU, MaxPool2D, MaxUnpool2D, Dropout}  # fmt: skip
    with pytest.raises(TypeError, match="no PyTorch twin for Module"):
        torch_twins(Module())
