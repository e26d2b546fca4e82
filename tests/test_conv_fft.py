"""The FFT convolution: kernel vs direct path, float32 error bound, gradients,
the textbook twin, the layer's algorithm choice and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import conv as direct
from npsegnet.kernels import conv_fft
from npsegnet.layers import Conv2D, set_conv_algorithm
from npsegnet.reference import conv as ref_direct
from npsegnet.reference import conv_fft as ref_fft

# The acceptance bound of the fast-convolutions issue (max |delta| / max |ref|
# against a float64 direct convolution). Float32 FFT errors grow with the
# transform's L2 norm, not with each pixel's summands, so the per-element rule
# of tolerances.py does not apply; about 170 float32 epsilons leaves room for
# the log2(T^2) rounding stages of three transforms and a 64-term channel sum
# (measured: 1.5e-7 to 3e-7).
FLOAT32_BOUND = 2e-5
# Float64 with the same argument: eps64 * 170 ~ 4e-14; 1e-12 is far above.
FLOAT64_BOUND = 1e-12

SHAPES = [  # N, C, F, H, W, k, padding
    (2, 3, 4, 9, 11, 5, 2),
    (1, 5, 4, 23, 30, 7, 3),
    (2, 4, 6, 10, 7, 7, 0),  # valid convolution
    (1, 2, 3, 13, 17, 5, 4),  # padding k - 1 (the largest the FFT path takes)
    (3, 4, 4, 45, 60, 7, 3),  # several tile rows and columns, odd sizes
]


def relative_error(actual, desired):
    return float(np.abs(actual - desired).max() / np.abs(desired).max())


def _case(shape, dtype, rng):
    N, C, F, H, W, k, p = shape
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, k, k)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    H_out, W_out = H + 2 * p - k + 1, W + 2 * p - k + 1
    d = rng.standard_normal((N, F, H_out, W_out)).astype(dtype)
    return x, w, b, d, p


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tile", [None, 16, 24])
def test_fft_matches_direct_float64(shape, tile, rng):
    x, w, b, d, p = _case(shape, np.float64, rng)
    if tile is not None and tile <= w.shape[-1]:
        pytest.skip("tile must exceed the kernel")
    want = direct.conv2d_forward(x, w, b, p)
    got = conv_fft.conv2d_fft_forward(x, w, b, p, tile=tile)
    assert relative_error(got, want) < FLOAT64_BOUND
    wdx, wdw, wdb = direct.conv2d_backward(d, x, w, p)
    gdx, gdw, gdb = conv_fft.conv2d_fft_backward(d, x, w, p, tile=tile)
    assert relative_error(gdx, wdx) < FLOAT64_BOUND
    assert relative_error(gdw, wdw) < FLOAT64_BOUND
    assert_close(gdb, wdb, reduction=d.size // d.shape[1])


@pytest.mark.parametrize(
    "shape",
    [
        (1, 64, 64, 23, 30, 7, 3),  # SegNet-Basic's deepest stage
        (1, 64, 64, 45, 60, 7, 3),
        (1, 3, 64, 23, 30, 7, 3),  # the RGB layer
    ],
)
def test_fft_float32_error_against_float64(shape, rng):
    x, w, b, d, p = _case(shape, np.float64, rng)
    w *= np.sqrt(2.0 / (w.shape[1] * w.shape[2] * w.shape[3]))
    want = direct.conv2d_forward(x, w, b, p)
    wdx, wdw, _ = direct.conv2d_backward(d, x, w, p)
    f32 = [a.astype(np.float32) for a in (x, w, b, d)]
    got = conv_fft.conv2d_fft_forward(f32[0], f32[1], f32[2], p)
    gdx, gdw, _ = conv_fft.conv2d_fft_backward(f32[3], f32[0], f32[1], p)
    assert got.dtype == gdx.dtype == gdw.dtype == np.float32
    for name, a, r in (("out", got, want), ("dx", gdx, wdx), ("dw", gdw, wdw)):
        assert relative_error(a, r) < FLOAT32_BOUND, name


def test_fft_error_bound_can_fail(rng):
    """The bound catches a wrong result: a flipped kernel (convolution instead
    of correlation) is far outside it."""
    x, w, b, d, p = _case((1, 4, 4, 12, 12, 5, 2), np.float32, rng)
    want = direct.conv2d_forward(x, w, b, p)
    wrong = conv_fft.conv2d_fft_forward(
        x, np.ascontiguousarray(w[:, :, ::-1, ::-1]), b, p
    )
    assert relative_error(wrong, want) > 100 * FLOAT32_BOUND


def test_fft_is_reproducible(rng):
    x, w, b, d, p = _case((4, 8, 8, 40, 44, 7, 3), np.float32, rng)
    a = conv_fft.conv2d_fft_backward(d, x, w, p)
    c = conv_fft.conv2d_fft_backward(d, x, w, p)
    for u, v in zip(a, c, strict=True):
        np.testing.assert_array_equal(u, v)


def test_default_tile_is_the_rule(rng):
    x, w, b, d, p = _case((2, 4, 5, 20, 20, 7, 3), np.float32, rng)
    T = conv_fft.fft_tile_size(7, 7, 20, 20)
    np.testing.assert_array_equal(
        conv_fft.conv2d_fft_forward(x, w, b, p),
        conv_fft.conv2d_fft_forward(x, w, b, p, tile=T),
    )
    for got, want in zip(
        conv_fft.conv2d_fft_backward(d, x, w, p),
        conv_fft.conv2d_fft_backward(d, x, w, p, tile=T),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_textbook_fft_matches_textbook_direct(shape, rng):
    x, w, b, d, p = _case(shape, np.float64, rng)
    assert (
        relative_error(
            ref_fft.conv2d_fft_forward(x, w, b, p),
            ref_direct.conv2d_forward(x, w, b, p),
        )
        < FLOAT64_BOUND
    )
    for got, want in zip(
        ref_fft.conv2d_fft_backward(d, x, w, p),
        ref_direct.conv2d_backward(d, x, w, p),
        strict=True,
    ):
        assert relative_error(got, want) < FLOAT64_BOUND


@pytest.mark.parametrize("padding", [0, 2, 4])
def test_fft_layer_gradient_check(padding, rng):
    layer = Conv2D(3, 4, 5, padding=padding, seed=0, algorithm="fft").astype(np.float64)
    x = rng.standard_normal((2, 3, 9, 11))
    check_layer(layer, x).assert_ok()
    assert layer.cache.fft


def test_fft_layer_matches_torch(rng):
    torch = pytest.importorskip("torch")
    layer = Conv2D(8, 6, 7, seed=1, algorithm="fft")
    x = rng.standard_normal((2, 8, 37, 41)).astype(np.float32)
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x),
        torch.from_numpy(layer.weight),
        torch.from_numpy(layer.bias),
        padding=3,
    ).numpy()
    assert relative_error(layer(x), want) < FLOAT32_BOUND


def test_auto_rule():
    big = (4, 64, 90, 120)
    assert Conv2D(64, 64, 7).algorithm_for(big) == "fft"
    assert Conv2D(64, 64, 3).algorithm_for(big) == "gemm"  # small kernel
    assert Conv2D(3, 64, 7).algorithm_for((4, 3, 90, 120)) == "gemm"  # RGB layer
    assert Conv2D(64, 64, 7, groups=64).algorithm_for(big) == "gemm"
    assert Conv2D(64, 64, 7).algorithm_for((4, 64, 20, 30)) == "gemm"  # small map
    assert Conv2D(64, 64, 7, algorithm="gemm").algorithm_for(big) == "gemm"
    assert Conv2D(4, 4, 3, algorithm="fft").algorithm_for((1, 4, 5, 5)) == "fft"


def test_set_conv_algorithm_on_a_model():
    from npsegnet.models import build_model

    model = build_model(
        "segnet-basic-single-channel-decoder", num_classes=5, channels=16
    )
    convs = [m for m in model.modules() if isinstance(m, Conv2D)]
    count = set_conv_algorithm(model, "fft")
    assert 0 < count < len(convs)  # the depthwise filters keep theirs
    assert all(m.algorithm == "fft" for m in convs if m.groups == 1)
    assert set_conv_algorithm(model, "gemm") == len(convs)


def test_train_config_sets_the_algorithm():
    from npsegnet.train.config import TrainConfig
    from npsegnet.train.prepare import run_model

    model, _ = run_model(TrainConfig(conv_algorithm="gemm", channels=8), None, 5)
    assert {m.algorithm for m in model.modules() if isinstance(m, Conv2D)} == {"gemm"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"algorithm": "winograd"}, "algorithm must be one of auto, gemm, fft"),
        ({"algorithm": "fft", "groups": 4}, "needs groups = 1"),
        ({"algorithm": "fft", "padding": 5}, "padding < kernel_size"),
    ],
)
def test_bad_algorithm(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2D(4, 4, 5, **kwargs)


def test_bad_tile(rng):
    x, w, b, d, p = _case((1, 2, 2, 8, 8, 5, 2), np.float32, rng)
    with pytest.raises(ValueError, match="larger than the kernel"):
        conv_fft.conv2d_fft_forward(x, w, b, p, tile=5)
    with pytest.raises(TypeError, match="tile must be an int"):
        conv_fft.conv2d_fft_forward(x, w, b, p, tile=16.0)
