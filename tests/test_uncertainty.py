"""Monte-Carlo dropout and the measures of its uncertainty, on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npsegnet.layers import Dropout, Module
from npsegnet.models import SegNetBasic
from npsegnet.uncertainty import (
    MCResult,
    UncertaintyMetrics,
    accuracy_vs_samples,
    auroc,
    expected_calibration_error,
    mc_dropout,
    predictive_entropy,
    reliability_bins,
    softmax,
)


def test_auroc_hand_worked():
    # pairs (wrong, right): (.9,.8) (.9,.1) (.3,.1) ranked right, (.3,.8) not
    assert auroc([0.9, 0.8, 0.3, 0.1], [True, False, True, False]) == 0.75
    assert auroc([1, 1, 1, 1], [True, False, True, False]) == 0.5  # all ties
    assert auroc([3, 2, 1], [True, False, False]) == 1.0
    assert auroc([1, 2, 3], [True, False, False]) == 0.0
    assert math.isnan(auroc([1, 2], [True, True]))
    with pytest.raises(ValueError, match="differ in size"):
        auroc([1, 2], [True])


def test_calibration_hand_worked():
    # bin [0.8667, 0.9333): two pixels at 0.9, one right -> gap 0.4
    assert expected_calibration_error([0.9, 0.9], [True, False]) == pytest.approx(0.4)
    # a perfectly calibrated pair of bins: 0.25 (1 of 4 right), 0.75 (3 of 4)
    conf = [0.25] * 4 + [0.75] * 4
    right = [True, False, False, False, True, True, True, False]
    assert expected_calibration_error(conf, right, bins=2) == pytest.approx(0.0)
    edges, count, c, a = reliability_bins(conf, right, bins=4)
    np.testing.assert_array_equal(count, [0, 4, 0, 4])
    np.testing.assert_allclose(a[[1, 3]], [0.25, 0.75])
    assert np.isnan(c[0])
    assert expected_calibration_error([1.0], [True]) == 0.0  # 1.0 in the top bin


def test_entropy_and_softmax():
    p = np.full((1, 4, 2, 3), 0.25)
    np.testing.assert_allclose(predictive_entropy(p), np.log(4))
    onehot = np.zeros((1, 3, 1, 1))
    onehot[0, 1] = 1
    assert predictive_entropy(onehot)[0, 0, 0] == 0.0
    s = softmax(np.array([[[[0.0]], [[np.log(3)]]]]))
    np.testing.assert_allclose(s[0, :, 0, 0], [0.25, 0.75])


def _result(mean, variance, target_shape=None):
    mean = np.asarray(mean, dtype=np.float64)
    return MCResult(mean, np.asarray(variance, dtype=np.float64),
                    predictive_entropy(mean), mean.argmax(axis=1), 1)  # fmt: skip


def test_accumulated_metrics_match_the_exact_ones(rng):
    N, K, H, W = 3, 4, 5, 6
    logits = rng.standard_normal((N, K, H, W)) * 2
    mean = softmax(logits)
    variance = rng.random((N, K, H, W)) * 0.05
    target = rng.integers(0, K + 1, size=(N, H, W))  # K = ignored
    res = _result(mean, variance)
    m = UncertaintyMetrics(K, ignore_index=K, bins=10, resolution=1 << 20)
    for n in range(N):  # batch by batch
        m.update(_result(mean[n : n + 1], variance[n : n + 1]), target[n : n + 1])
    got = m.compute()
    valid = target != K
    wrong = (res.labels != target)[valid]
    assert got["auroc_entropy"] == pytest.approx(
        auroc(res.entropy[valid], wrong), abs=1e-6
    )
    assert got["auroc_variance"] == pytest.approx(
        auroc(variance.mean(axis=1)[valid], wrong), abs=1e-6
    )
    conf = mean.max(axis=1)[valid]
    assert got["ece"] == pytest.approx(expected_calibration_error(conf, ~wrong, 10))
    assert sum(got["reliability"]["count"]) == valid.sum()
    with pytest.raises(ValueError, match="differ in shape"):
        m.update(res, target[:2])


class WithDropout(Module):
    """A small SegNet-Basic behind an input dropout (a stand-in Bayesian model)."""

    def __init__(self, p=0.5):
        super().__init__()
        self.drop = Dropout(p)
        self.net = SegNetBasic(in_channels=2, num_classes=3, channels=4, kernel_size=3)

    def forward(self, x, keep_cache=True):
        return self.net.forward(self.drop(x), keep_cache=keep_cache)


def test_mc_dropout_without_dropout_is_the_plain_softmax(rng):
    model = SegNetBasic(in_channels=2, num_classes=3, channels=4, kernel_size=3)
    x = rng.standard_normal((2, 2, 16, 16)).astype(np.float32)
    res = mc_dropout(model, x, samples=5)
    want = softmax(model.eval().forward(x).astype(np.float64))
    np.testing.assert_allclose(res.mean, want, rtol=1e-12)
    assert not res.variance.any()
    assert res.labels.shape == (2, 16, 16) and res.entropy.shape == (2, 16, 16)


def test_mc_dropout_is_seeded_and_batches_do_not_matter(rng):
    model = WithDropout()
    x = rng.standard_normal((1, 2, 16, 16)).astype(np.float32)
    a = mc_dropout(model, x, samples=6, seed=3, batch=6)
    b = mc_dropout(model, x, samples=6, seed=3, batch=6)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.variance.max() > 0
    c = mc_dropout(model, x, samples=6, seed=4, batch=6)
    assert not np.array_equal(a.mean, c.mean)
    assert model.drop.always_on is False  # restored
    one = mc_dropout(model, x, samples=1)
    assert not one.variance.any()
    np.testing.assert_allclose(one.mean.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        mc_dropout(model, x, samples=0)


def test_accuracy_vs_samples(rng):
    x = rng.standard_normal((2, 2, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, size=(2, 16, 16))
    plain = SegNetBasic(in_channels=2, num_classes=3, channels=4, kernel_size=3)
    curve = accuracy_vs_samples(plain, [(x, y)], 3, samples=(1, 3))
    # no dropout: every T is the plain prediction
    for key, values in curve["mc"].items():
        assert values == [curve["weight_averaging"][key]] * 2
    curve = accuracy_vs_samples(WithDropout(), [(x, y)], 3, samples=(1, 2, 4))
    assert curve["samples"] == [1, 2, 4]
    assert all(0 <= v <= 1 for v in curve["mc"]["global_accuracy"])
    with pytest.raises(ValueError, match="positive ints"):
        accuracy_vs_samples(plain, [(x, y)], 3, samples=(0,))


def test_uncertainty_figures(rng):
    from npsegnet import viz

    x = rng.standard_normal((2, 2, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, size=(2, 16, 16))
    model = WithDropout()
    res = mc_dropout(model, x, samples=3)
    m = UncertaintyMetrics(3, bins=10)
    m.update(res, y)
    rel = m.compute()["reliability"]
    fig = viz.plot_reliability(rel)
    assert len(fig.axes) == 2
    image = rng.random((3, 16, 16))
    fig = viz.plot_uncertainty(image, res.labels[0], res.entropy[0], target=y[0])
    assert len(fig.axes) == 5  # four panels and a colour bar
    curve = accuracy_vs_samples(model, [(x, y)], 3, samples=(1, 2))
    fig = viz.plot_accuracy_vs_samples(curve)
    assert len(fig.axes[0].lines) == 6
    with pytest.raises(ValueError, match="labels must have shape"):
        viz.plot_uncertainty(image, res.labels[0][:4], res.entropy[0])


def test_uncertainty_maps_figure(rng):
    from npsegnet import viz

    images = rng.random((2, 3, 8, 10))
    targets = rng.integers(0, 3, size=(2, 8, 10))
    targets[0, 0, :5] = 3  # unlabelled
    labels = targets.copy()
    labels[0, 1, :4] = (targets[0, 1, :4] + 1) % 3  # 4 wrong pixels of 75 labelled
    labels[0, 0, :5] = 0  # a prediction on unlabelled pixels is never wrong
    entropy, variance = rng.random((2, 2, 8, 10))
    fig = viz.plot_uncertainty_maps(
        images, targets, labels, entropy, variance, ignore_index=3,
        row_titles=["a", "b"],
    )  # fmt: skip
    assert len(fig.axes) == 2 * 6 + 2  # six panels a row and two colour bars
    first = fig.axes[:6]
    assert [ax.get_title() for ax in first[:5]] == [
        "image", "ground truth", "MC prediction", "entropy (nats)", "variance"
    ]  # fmt: skip
    assert first[5].get_title() == "wrong pixels: 5.3 %"
    assert fig.axes[6 + 5].get_title() == "wrong: 0.0 %"
    errors = first[5].images[0].get_array()
    assert errors[0, 0] == 0.5 and errors[1, 0] == 1.0 and errors[2, 0] == 0.0
    # entropy and variance: one colour scale per column, shared by the rows
    for j, a in ((3, entropy), (4, variance)):
        assert fig.axes[j].images[0].get_clim() == (0, a.max())
        assert fig.axes[6 + j].images[0].get_clim() == (0, a.max())
    assert first[0].get_ylabel() == "a"
    with pytest.raises(ValueError, match="variance must have shape"):
        viz.plot_uncertainty_maps(images, targets, labels, entropy, variance[:, :4])
    with pytest.raises(ValueError, match="row_titles"):
        viz.plot_uncertainty_maps(
            images, targets, labels, entropy, variance, row_titles=["a"]
        )


def test_uncertainty_by_class_figure():
    from npsegnet import viz

    inside = np.array([0.1, np.nan, 0.3])
    edge = np.array([0.5, np.nan, np.nan])
    fig = viz.plot_uncertainty_by_class(["a", "b", "c"], inside, edge)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.1, 0.0, 0.3, 0.5, 0.0, 0.0])
    assert [t.get_text() for t in ax.texts] == ["absent"]  # class b only
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="one value per class"):
        viz.plot_uncertainty_by_class(["a", "b"], inside, edge)


def test_mc_samples_figure(rng):
    from npsegnet import viz

    image = rng.random((3, 6, 8))
    labels = rng.integers(0, 3, size=(6, 8))
    samples = np.stack([labels] * 5)
    samples[1, :3] = (labels[:3] + 1) % 3  # sample 2 differs on half the pixels
    entropy = rng.random((6, 8))
    fig = viz.plot_mc_samples(image, samples, labels, entropy, max_samples=3)
    assert len(fig.axes) == 1 + 3 + 2 + 1  # image, 3 samples, MC, entropy, bar
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles[1:3] == ["sample 1: 0 % differ", "sample 2: 50 % differ"]
    assert titles[4:] == ["MC prediction, T = 5", "entropy (nats)"]
    with pytest.raises(ValueError, match="entropy must have maps of shape"):
        viz.plot_mc_samples(image, samples, labels, entropy[:3])
    with pytest.raises(ValueError, match="max_samples"):
        viz.plot_mc_samples(image, samples, labels, entropy, max_samples=0)
