"""Softmax cross-entropy: kernels vs reference, PyTorch parity, stability, checks."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet.gradcheck import check_layer
from npsegnet.kernels import loss as K
from npsegnet.layers import SoftmaxCrossEntropy
from npsegnet.reference import loss as R

# SegNet-Tutorial's median-frequency weights for CamVid (classes 0..10)
CAMVID_WEIGHTS = np.array(
    [
        0.2595,
        0.1826,
        4.5640,
        0.1417,
        0.9051,
        0.3826,
        9.6446,
        1.8418,
        0.6823,
        6.2478,
        7.3614,
    ]
)


def make_batch(rng, shape, dtype, ignore=None, scale=3.0):
    N, C, H, W = shape
    logits = (scale * rng.standard_normal(shape)).astype(dtype)
    high = C if ignore is None else C + 1
    targets = rng.integers(0, high, (N, H, W))
    if ignore is not None:
        targets[targets == C] = ignore
    return logits, targets


CASES = [
    {},
    {"weight": "random"},
    {"weight": "random", "ignore_index": 255},
    {"ignore_index": 0},
]


def resolve(case, rng, C):
    kw = dict(case)
    if kw.get("weight") == "random":
        kw["weight"] = rng.random(C) + 0.1
    return kw


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (3, 4, 6, 9), (2, 11, 1, 13)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_kernels_match_reference(rng, shape, dtype, case):
    kw = resolve(case, rng, shape[1])
    logits, targets = make_batch(rng, shape, dtype, kw.get("ignore_index"))
    # the loss sums N * H * W pixels; each gradient entry is a softmax (a sum
    # over C classes) divided by the weight total (a sum over the pixels)
    pixels = shape[0] * shape[2] * shape[3]
    t = {"dtype": dtype, "reduction": pixels + shape[1]}
    loss_k, g_k = K.softmax_cross_entropy_fused(logits, targets, **kw)
    loss_r, g_r = R.softmax_cross_entropy_fused(logits, targets, **kw)
    assert g_k.dtype == dtype and g_k.shape == logits.shape
    assert_close(loss_k, loss_r, **t)
    assert_close(g_k, g_r, **t)
    assert K.softmax_cross_entropy_forward(logits, targets, **kw) == pytest.approx(
        loss_k, rel=1e-12
    )
    assert_close(
        K.softmax_cross_entropy_backward(logits, targets, dout=-2.5, **kw),
        -2.5 * g_k,
        **t,
    )
    assert_close(
        R.softmax_cross_entropy_backward(logits, targets, dout=-2.5, **kw),
        -2.5 * g_r,
        **t,
    )


def torch_ce(torch, logits, targets, weight=None, ignore_index=None):
    zt = torch.from_numpy(logits).requires_grad_(True)
    kw = {}
    if weight is not None:
        kw["weight"] = torch.from_numpy(np.asarray(weight, dtype=logits.dtype))
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    loss = torch.nn.functional.cross_entropy(zt, torch.from_numpy(targets), **kw)
    loss.backward()
    return loss.item(), zt.grad.numpy()


@pytest.mark.parametrize("case", CASES)
def test_torch_parity(torch, rng, case):
    kw = resolve(case, rng, 5)
    logits, targets = make_batch(rng, (2, 5, 7, 9), np.float64, kw.get("ignore_index"))
    layer = SoftmaxCrossEntropy(**kw)
    loss = layer(logits, targets)
    want_loss, want_grad = torch_ce(torch, logits, targets, **kw)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(layer.backward(), want_grad, rtol=1e-10, atol=1e-15)


def test_torch_parity_camvid_realistic(torch, rng):
    logits, targets = make_batch(rng, (2, 11, 45, 60), np.float32, ignore=11)
    layer = SoftmaxCrossEntropy(CAMVID_WEIGHTS, ignore_index=11)
    loss = layer(logits, targets)
    want_loss, want_grad = torch_ce(torch, logits, targets, CAMVID_WEIGHTS, 11)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert_close(layer.backward(), want_grad, reduction=2 * 45 * 60 + 11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_huge_logits(torch, rng, dtype):
    logits, targets = make_batch(rng, (2, 4, 3, 5), dtype, scale=1e4)
    logits[0, :, 0, 0] = 1e4  # a tie at the top
    loss, grad = K.softmax_cross_entropy_fused(logits, targets)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    want_loss, want_grad = torch_ce(torch, logits, targets)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert_close(grad, want_grad, dtype=dtype, reduction=2 * 3 * 5 + 4)
    assert R.softmax_cross_entropy_forward(logits, targets) == pytest.approx(
        want_loss, rel=1e-5
    )


def test_all_ignored_gives_zero(torch):
    logits = np.ones((1, 3, 2, 2))
    targets = np.full((1, 2, 2), 7)
    for impl in (K, R):
        loss, grad = impl.softmax_cross_entropy_fused(logits, targets, ignore_index=7)
        assert loss == 0.0
        np.testing.assert_array_equal(grad, 0)
    want, _ = torch_ce(torch, logits, targets, ignore_index=7)
    assert np.isnan(want)  # documented difference: PyTorch gives nan


def test_known_value():
    # uniform logits: loss = log K whatever the weights
    logits = np.zeros((1, 4, 2, 3), np.float32)
    targets = np.array([[[0, 1, 2], [3, 3, 255]]])
    layer = SoftmaxCrossEntropy(weight=[1, 2, 3, 4], ignore_index=255)
    assert layer(logits, targets) == pytest.approx(np.log(4), rel=1e-6)
    g = layer.backward()
    np.testing.assert_array_equal(g[0, :, 1, 2], 0)  # ignored pixel
    # pixel (0, 0), class 0, weight 1 of total 1+2+3+4+4 = 14
    assert_close(
        g[0, :, 0, 0], np.array([0.25 - 1, 0.25, 0.25, 0.25]) / 14, reduction=6 + 4
    )


@pytest.mark.parametrize(
    "kw",
    [{}, {"weight": CAMVID_WEIGHTS[:5] / 3, "ignore_index": 5}],
    ids=["plain", "weighted-ignore"],
)
def test_gradcheck(rng, kw):
    logits, targets = make_batch(rng, (2, 5, 3, 4), np.float64, kw.get("ignore_index"))
    if "ignore_index" in kw:
        assert (targets == 5).any()
    report = check_layer(SoftmaxCrossEntropy(**kw), logits, targets).assert_ok()
    assert report["x"] < 1e-7


def test_modes_and_backward_calls(rng):
    logits, targets = make_batch(rng, (2, 3, 4, 5), np.float32)
    layer = SoftmaxCrossEntropy()
    loss_train = layer(logits, targets)
    g1 = layer.backward()
    g2 = layer.backward()  # recomputed, not the handed-over array
    assert g1 is not g2
    np.testing.assert_array_equal(g1, g2)  # the same arithmetic twice
    layer.eval()
    assert layer(logits, targets) == pytest.approx(loss_train, rel=1e-7)
    assert_close(layer.backward(3.0), 3 * g2, reduction=2 * 4 * 5 + 3)
    layer.train()
    layer(logits, targets)
    assert_close(layer.backward(np.float64(0.5)), 0.5 * g2, reduction=2 * 4 * 5 + 3)


@pytest.mark.parametrize("tdtype", [np.uint8, np.int32, np.int64])
def test_target_dtypes(rng, tdtype):
    logits, targets = make_batch(rng, (1, 3, 4, 5), np.float32)
    want = K.softmax_cross_entropy_forward(logits, targets)
    assert K.softmax_cross_entropy_forward(logits, targets.astype(tdtype)) == want


def test_bad_input(rng):
    logits, targets = make_batch(rng, (2, 3, 4, 5), np.float32)
    layer = SoftmaxCrossEntropy()
    with pytest.raises(TypeError, match="targets must have an integer dtype"):
        layer(logits, targets.astype(np.float32))
    with pytest.raises(
        ValueError, match=r"targets must have shape \(N, H, W\) = \(2, 4, 5\)"
    ):
        layer(logits, targets[:, :3])
    with pytest.raises(TypeError, match="logits must have dtype float32 or float64"):
        layer(logits.astype(np.int64), targets)
    with pytest.raises(ValueError, match="logits must be a 4-d array"):
        layer(logits[0], targets)
    bad = targets.copy()
    bad[1, 2, 3] = 3
    with pytest.raises(ValueError, match=r"the value 3, outside \[0, 3\)"):
        layer(logits, bad)
    bad[1, 2, 3] = -1
    for impl in (K, R):
        with pytest.raises(
            ValueError,
            match=r"the value -1, outside \[0, 3\) and is not ignore_index=7",
        ):
            impl.softmax_cross_entropy_forward(logits, bad, ignore_index=7)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        K.softmax_cross_entropy_forward(logits, targets, weight=np.ones(4))
    with pytest.raises(ValueError, match="weight must be >= 0"):
        SoftmaxCrossEntropy(weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="weight must be finite"):
        SoftmaxCrossEntropy(weight=[1.0, np.nan])
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        SoftmaxCrossEntropy(weight=[1.0, 2.0])(logits, targets)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        SoftmaxCrossEntropy(ignore_index=1.5)
    with pytest.raises(RuntimeError, match="before forward"):
        SoftmaxCrossEntropy().backward()
    layer(logits, targets)
    with pytest.raises(TypeError, match="dout must be a real scalar"):
        layer.backward("1")
    with pytest.raises(TypeError, match="dout must be a real scalar"):
        K.softmax_cross_entropy_backward(logits, targets, dout=[1.0])
