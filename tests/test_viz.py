"""Figures and colours of npsegnet.viz: shapes, known colours, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from npsegnet import viz
from npsegnet.gradcheck import GradCheckReport, GradCheckRow, check_layer
from npsegnet.layers.base import Module
from npsegnet.reference.pool import maxpool2d_forward

CAMVID_NAMES = (
    "Sky Building Pole Road Pavement Tree SignSymbol Fence Car Pedestrian Bicyclist"
).split()


def _batch(rng, n=3, h=12, w=16, k=5, ignore=None):
    images = rng.random((n, 3, h, w)).astype(np.float32)
    labels = rng.integers(0, k, size=(n, h, w))
    if ignore is not None:
        labels[:, 0, :] = ignore
    preds = rng.integers(0, k, size=(n, h, w))
    return images, labels, preds


# -- colours -------------------------------------------------------------------


def test_camvid_palette_is_the_tutorials():
    pal = viz.CAMVID_PALETTE
    assert pal.shape == (12, 3) and pal.dtype == np.uint8
    np.testing.assert_array_equal(pal[0], [128, 128, 128])  # Sky
    np.testing.assert_array_equal(pal[3], [128, 64, 128])  # Road
    np.testing.assert_array_equal(pal[4], [60, 40, 222])  # Pavement (tutorial's)
    np.testing.assert_array_equal(pal[10], [0, 128, 192])  # Bicyclist
    np.testing.assert_array_equal(pal[11], [0, 0, 0])  # Unlabelled
    assert len({tuple(c) for c in pal}) == 12


@pytest.mark.parametrize("n", [1, 5, 11, 20, 21, 40])
def test_palette_distinct_and_never_black(n):
    pal = viz.palette(n)
    assert pal.shape == (n, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal}) == n
    assert np.all(pal.max(axis=1) > 40)


def test_palette_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        viz.palette(0)
    with pytest.raises(TypeError, match="num_classes"):
        viz.palette(2.0)


def test_label_to_color_known_colours_and_ignore():
    labels = np.array([[0, 3, 11], [8, 255, 4]])
    out = viz.label_to_color(labels, ignore_index=255)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [128, 128, 128])
    np.testing.assert_array_equal(out[0, 1], [128, 64, 128])
    np.testing.assert_array_equal(out[0, 2], [0, 0, 0])  # Unlabelled is black
    np.testing.assert_array_equal(out[1, 0], [64, 0, 128])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 0])  # ignored pixel
    np.testing.assert_array_equal(out[1, 2], [60, 40, 222])


def test_label_to_color_ignore_wins_over_a_palette_colour():
    pal = viz.palette(5)
    out = viz.label_to_color(np.array([[2, 4]]), palette=pal, ignore_index=2)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    # 5 is not ignored and has no colour among 5.
    with pytest.raises(ValueError, match="0..4"):
        viz.label_to_color(np.array([[5]]), palette=pal)


def test_label_to_color_float_palette():
    out = viz.label_to_color(np.array([[1, 0]]), palette=[[1.0, 0.0, 0.0], [0, 0, 1.0]])
    np.testing.assert_array_equal(out[0], [[0, 0, 255], [255, 0, 0]])


@pytest.mark.parametrize(
    "labels, kwargs, error, match",
    [
        (np.array([[12]]), {}, ValueError, "0..11"),
        (np.array([[-1, 0]]), {}, ValueError, "found -1"),
        (np.zeros((1, 2, 2), np.int64), {}, ValueError, r"2-d array \(H, W\)"),
        (np.zeros((2, 2)), {}, TypeError, "integer"),
        (np.zeros((2, 2), np.int64), {"palette": np.zeros((4, 4))}, ValueError, "3"),
        (np.zeros((2, 2), np.int64), {"palette": [[300, 0, 0]]}, ValueError, "0..255"),
        (np.zeros((2, 2), np.int64), {"palette": [[1.5, 0, 0]]}, ValueError, "0, 1"),
    ],
)
def test_label_to_color_bad_input(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        viz.label_to_color(labels, **kwargs)


def test_overlay_blends_and_accepts_both_layouts(rng):
    img = rng.random((3, 4, 5))
    labels = rng.integers(0, 11, size=(4, 5))
    labels[0, 0] = 11
    a = viz.overlay(img, labels)
    b = viz.overlay(np.moveaxis(img, 0, 2), labels)
    assert a.shape == (4, 5, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    expected = 0.5 * np.moveaxis(img, 0, 2) + 0.5 * viz.label_to_color(labels) / 255
    np.testing.assert_array_equal(a, np.round(expected * 255).astype(np.uint8))
    np.testing.assert_array_equal(
        viz.overlay(img, labels, alpha=0.0),
        np.round(np.moveaxis(img, 0, 2) * 255).astype(np.uint8),
    )
    np.testing.assert_array_equal(
        viz.overlay(img, labels, alpha=1.0), viz.label_to_color(labels)
    )


def test_overlay_ignored_pixels_show_the_image(rng):
    img = rng.random((3, 3, 3))  # square and 3 channels: layout from the labels
    labels = np.array([[0, 1, 5], [5, 2, 3], [4, 4, 4]])
    out = viz.overlay(img, labels, palette=viz.palette(5), ignore_index=5)
    hwc = np.moveaxis(img, 0, 2)
    np.testing.assert_array_equal(out[0, 2], np.round(hwc[0, 2] * 255))
    assert not np.array_equal(out[0, 0], np.round(hwc[0, 0] * 255))


@pytest.mark.parametrize(
    "image, labels, match",
    [
        (np.full((3, 4, 5), 2.0), np.zeros((4, 5), np.int64), r"\[0, 1\]"),
        (np.zeros((3, 4, 6)), np.zeros((4, 5), np.int64), "4x6 pixels"),
        (np.zeros((2, 4, 5)), np.zeros((4, 5), np.int64), r"\(3, H, W\)"),
        (np.zeros((3, 4, 5)), np.full((4, 5), 40), "0..11"),
    ],
)
def test_overlay_bad_input(image, labels, match):
    with pytest.raises(ValueError, match=match):
        viz.overlay(image, labels)
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(np.zeros((3, 4, 5)), np.zeros((4, 5), np.int64), alpha=1.5)


# -- predictions -----------------------------------------------------------------


def _legend_texts(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_plot_predictions_layout_and_legend(rng):
    images, labels, preds = _batch(rng, n=6, k=5, ignore=5)
    names = ["background", "disc", "rectangle", "triangle", "bar"]
    fig = viz.plot_predictions(
        images, labels, preds, class_names=names, max_images=4, ignore_index=5
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 4
    assert sorted(_legend_texts(fig)) == sorted(names + ["ignored"])
    # The ground-truth row shows label_to_color of the labels (distinct palette).
    shown = fig.axes[4 + 1].images[0].get_array()  # row 1 (ground truth), image 1
    np.testing.assert_array_equal(
        shown, viz.label_to_color(labels[1], viz.palette(5), ignore_index=5)
    )


def test_plot_predictions_defaults_to_camvid(rng):
    images, labels, preds = _batch(rng, n=2, k=11)
    fig = viz.plot_predictions(images, labels, preds)
    assert len(fig.axes) == 3 * 2
    present = np.unique(np.concatenate([labels.ravel(), preds.ravel()]))
    assert sorted(_legend_texts(fig)) == sorted(f"class {c}" for c in present)
    fig = viz.plot_predictions(
        images, labels, preds, class_names=CAMVID_NAMES, ignore_index=11
    )
    # Six entries to a row, read row by row (matplotlib fills columns first).
    fig.draw_without_rendering()
    boxes = {t.get_text(): t.get_window_extent() for t in fig.legends[0].get_texts()}
    first_row = [boxes[n] for n in CAMVID_NAMES[:6]]
    assert len({round(b.y0) for b in first_row}) == 1
    assert [b.x0 for b in first_row] == sorted(b.x0 for b in first_row)
    assert boxes["SignSymbol"].y0 < boxes["Sky"].y0  # second row
    np.testing.assert_array_equal(
        fig.axes[2 + 0].images[0].get_array(), viz.label_to_color(labels[0])
    )


def test_plot_predictions_rescales_normalised_images(rng):
    images, labels, preds = _batch(rng, n=1, k=3)
    fig = viz.plot_predictions(images * 10 - 5, labels, preds, max_images=2)
    shown = fig.axes[0].images[0].get_array()
    assert len(fig.axes) == 3
    assert shown.min() == 0.0 and shown.max() == 1.0


def test_plot_predictions_bad_input(rng):
    images, labels, preds = _batch(rng, n=2, k=5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        viz.plot_predictions(images[0], labels, preds)
    with pytest.raises(ValueError, match="must both have shape"):
        viz.plot_predictions(images, labels[:, :-1], preds)
    with pytest.raises(ValueError, match="0..2"):
        viz.plot_predictions(images, labels, preds, palette=viz.palette(3))
    with pytest.raises(ValueError, match="max_images"):
        viz.plot_predictions(images, labels, preds, max_images=0)


# -- training curves -----------------------------------------------------------


def test_plot_training_curves_panels():
    steps = 120
    history = {
        "loss": list(np.linspace(2.0, 0.5, steps)),
        "step": list(range(1, steps + 1)),
        "epoch": [1, 2, 3],
        "val_loss": [1.5, 1.0, 0.8],
        "val_mean_iou": [0.2, None, 0.4],
        "val_global_accuracy": [0.5, 0.6, 0.7],
        "lr": [0.1] * steps,
    }
    fig = viz.plot_training_curves(history)
    assert len(fig.axes) == 3
    loss_ax, metrics_ax, _ = fig.axes
    assert loss_ax.get_xlabel() == "step"
    val = [ln for ln in loss_ax.lines if ln.get_label() == "val loss"][0]
    # Per-epoch validation loss sits at the end of each (equal) epoch.
    np.testing.assert_allclose(val.get_xdata(), [40, 80, 120])
    iou = [ln for ln in metrics_ax.lines if ln.get_label() == "val mean IoU"][0]
    np.testing.assert_allclose(iou.get_xdata(), [1, 3])  # None skipped


@pytest.mark.parametrize(
    "history, n_axes",
    [
        ({"loss": [3.0, 2.0, 1.0]}, 1),
        ({"val_mean_iou": [0.1, 0.2]}, 1),
        ({"loss": [1.0], "epoch": [1], "val_global_accuracy": [0.5]}, 2),
        ({"loss": [1.0, 0.5], "unrelated": "text"}, 1),
    ],
)
def test_plot_training_curves_tolerates_missing_keys(history, n_axes):
    assert len(viz.plot_training_curves(history).axes) == n_axes


def test_plot_training_curves_bad_input():
    with pytest.raises(ValueError, match="nothing to plot"):
        viz.plot_training_curves({"loss": [], "epoch": [1]})
    with pytest.raises(ValueError, match="list of numbers"):
        viz.plot_training_curves({"loss": ["a", "b"]})
    with pytest.raises(TypeError, match="dict"):
        viz.plot_training_curves([1.0, 2.0])


# -- confusion matrix and IoU ------------------------------------------------------


def test_plot_confusion_matrix_normalises_rows():
    cm = np.array([[8, 2, 0], [1, 1, 2], [0, 0, 0]])
    fig = viz.plot_confusion_matrix(cm, ["a", "b", "c"])
    assert len(fig.axes) == 2  # matrix and colour bar
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, [[0.8, 0.2, 0], [0.25, 0.25, 0.5], [0, 0, 0]])
    raw = viz.plot_confusion_matrix(cm, ["a", "b", "c"], normalize=False)
    np.testing.assert_array_equal(raw.axes[0].images[0].get_array(), cm)


def test_plot_confusion_matrix_bad_input():
    with pytest.raises(ValueError, match="square"):
        viz.plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="3 class names"):
        viz.plot_confusion_matrix(np.zeros((2, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="non-negative"):
        viz.plot_confusion_matrix(-np.ones((2, 2)), ["a", "b"])


def test_plot_per_class_iou_bars_and_reference():
    iou = np.array([0.5, np.nan, 0.25])
    fig = viz.plot_per_class_iou(iou, ["a", "b", "c"], reference={"paper": [1, 0, 0.5]})
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [50, 0, 25, 100, 0, 50])
    means = sorted(ln.get_ydata()[0] for ln in ax.lines)
    np.testing.assert_allclose(means, [37.5, 50.0])
    assert len(viz.plot_per_class_iou([0.1, 0.2], ["a", "b"]).axes[0].patches) == 2


def test_plot_per_class_iou_bad_input():
    with pytest.raises(ValueError, match="fractions"):
        viz.plot_per_class_iou([50.0, 20.0], ["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        viz.plot_per_class_iou([0.5, 0.2], ["a", "b"], reference=[0.1, 0.2, 0.3])


# -- pooling indices ---------------------------------------------------------------


def _pool_plane(x, kernel, stride, ceil_mode=False):
    out, idx = maxpool2d_forward(x[None, None], kernel, stride, ceil_mode)
    return out[0, 0], idx[0, 0]


@pytest.mark.parametrize(
    "shape, kernel, stride, ceil_mode",
    [((4, 6), 2, 2, False), ((5, 7), 3, 2, False), ((5, 5), 2, 2, True)],
)
def test_plot_pooling_indices_panels(rng, shape, kernel, stride, ceil_mode):
    x = rng.standard_normal(shape)
    pooled, idx = _pool_plane(x, kernel, stride, ceil_mode)
    fig = viz.plot_pooling_indices(x, pooled, idx, kernel_size=kernel, stride=stride)
    assert len(fig.axes) == 5
    unpooled = fig.axes[2].images[0].get_array()
    expected = np.zeros(shape)
    expected.flat[idx.ravel()] = pooled.ravel()
    np.testing.assert_array_equal(unpooled, expected)
    # Values are written in the cells of a small input.
    assert len(fig.axes[0].texts) == x.size


def test_plot_pooling_indices_bad_input(rng):
    x = rng.standard_normal((4, 4))
    pooled, idx = _pool_plane(x, 2, 2)
    bad = idx.copy()
    bad[0, 0] = 3  # row 0, column 3: window (0, 1), not (0, 0)
    with pytest.raises(ValueError, match="outside its window"):
        viz.plot_pooling_indices(x, pooled, bad)
    with pytest.raises(ValueError, match="equal x at indices"):
        viz.plot_pooling_indices(x, pooled + 1.0, idx)
    with pytest.raises(ValueError, match="same shape"):
        viz.plot_pooling_indices(x, pooled[:1], idx)
    with pytest.raises(ValueError, match="2-d float"):
        viz.plot_pooling_indices(x[None], pooled, idx)
    with pytest.raises(ValueError, match="stride"):
        viz.plot_pooling_indices(x, pooled, idx, stride=0)


def test_plot_unpooled_and_convolved_rows_and_sparsity(rng):
    from npsegnet.layers import Conv2D, MaxPool2D, MaxUnpool2D

    x = rng.standard_normal((1, 3, 8, 10)).astype(np.float32)
    pooled, idx = MaxPool2D(2, 2)(np.maximum(x, 0))
    unpooled = MaxUnpool2D(2, 2)(pooled, idx, output_size=(8, 10))
    conv = Conv2D(3, 3, 3, seed=0)
    convolved = conv.forward(unpooled)
    fig = viz.plot_unpooled_and_convolved(
        unpooled[0], convolved[0], labels=["a", "b", "c"]
    )
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 6  # 3 rows of (unpooled, convolved), plus colour bars
    sparse = panels[0].images[0].get_array()
    # the zeros of the unpooled map are masked (drawn grey), the rest kept
    assert np.ma.is_masked(sparse)
    np.testing.assert_array_equal(sparse.mask, unpooled[0, 0] == 0)
    np.testing.assert_array_equal(panels[1].images[0].get_array(), convolved[0, 0])
    # titles give the fraction of non-zero cells: at most a quarter when unpooled
    nonzero = np.count_nonzero(unpooled[0, 0]) / unpooled[0, 0].size
    assert f"{nonzero:.0%} non-zero" in panels[0].get_title() and nonzero <= 0.25
    assert "100% non-zero" in panels[1].get_title()
    assert panels[0].get_ylabel() == "a"
    # one 2-d channel gives one row
    one = viz.plot_unpooled_and_convolved(unpooled[0, 0], convolved[0, 0])
    assert len([ax for ax in one.axes if ax.images and ax.get_title()]) == 2


def test_plot_unpooled_and_convolved_bad_input():
    a = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="shape of unpooled"):
        viz.plot_unpooled_and_convolved(a, np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        viz.plot_unpooled_and_convolved(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="labels must have 2"):
        viz.plot_unpooled_and_convolved(a, a, labels=["only one"])


@pytest.mark.parametrize(
    "shape, kernel_size, stride", [((4, 6), 2, 2), ((5, 7), 2, 2), ((9, 3), 3, 3)]
)
def test_pooling_figure_upsamples_as_torch(torch, rng, shape, kernel_size, stride):
    # the nearest and bilinear panels are PyTorch's interpolate of the pooled map
    x = rng.standard_normal(shape)
    t = torch.from_numpy(x)[None, None]
    pooled, idx = torch.nn.functional.max_pool2d(
        t, kernel_size, stride, ceil_mode=True, return_indices=True
    )
    fig = viz.plot_pooling_indices(
        x, pooled[0, 0].numpy(), idx[0, 0].numpy(), kernel_size, stride
    )
    panels = [np.asarray(ax.images[0].get_array()) for ax in fig.axes[:5]]
    F = torch.nn.functional
    nearest = F.interpolate(pooled, size=shape, mode="nearest")[0, 0].numpy()
    bilinear = F.interpolate(pooled, size=shape, mode="bilinear", align_corners=False)
    unpooled = F.max_unpool2d(pooled, idx, kernel_size, stride, output_size=shape)
    np.testing.assert_array_equal(panels[2], unpooled[0, 0].numpy())
    np.testing.assert_array_equal(panels[3], nearest)
    np.testing.assert_allclose(panels[4], bilinear[0, 0].numpy(), 1e-12)


# -- gradient checks ---------------------------------------------------------------


class _Scale(Module):
    """y = w * x, with a deliberately wrong gradient when ``broken``."""

    def __init__(self, broken=False):
        super().__init__()
        self.add_param("w", np.array([1.5]))
        self.broken = broken

    def forward(self, x):
        self.x = x
        return self.params["w"][0] * x

    def backward(self, dout):
        self.grads["w"] += np.sum(dout * self.x) * (2.0 if self.broken else 1.0)
        return self.params["w"][0] * dout


def test_plot_gradcheck_bars_and_colours(rng):
    x = rng.standard_normal((1, 1, 2, 3))
    good = check_layer(_Scale().astype(np.float64), x)
    bad = check_layer(_Scale(broken=True).astype(np.float64), x)
    fig = viz.plot_gradcheck([good, bad])
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    bars = ax.patches
    assert len(bars) == 4
    heights = [b.get_height() for b in bars]
    expected = [max(r.rel_error, 1e-18) for rep in (good, bad) for r in rep.rows]
    np.testing.assert_allclose(heights, expected)
    colours = [b.get_facecolor()[:3] for b in bars]
    assert colours[3] != colours[0]  # the broken weight gradient is red
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["_Scale\nx", "_Scale\nw", "_Scale #2\nx", "_Scale #2\nw"]
    assert ax.get_title() == "gradient checks: 3/4 pass"


def test_plot_gradcheck_mapping_and_bad_input():
    rep = GradCheckReport("Conv2D", [GradCheckRow("x", (2,), 0.0, 2)])
    fig = viz.plot_gradcheck({"enc1 conv": rep})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["enc1 conv\nx"]
    nan = GradCheckReport("BN", [GradCheckRow("x", (2,), 1e-9, 2)])
    nan.rows.append(GradCheckRow("weight", (2,), float("nan"), 2))
    ax = viz.plot_gradcheck(nan).axes[0]
    low, high = (p.get_height() for p in ax.patches)
    assert np.isfinite(high) and high > 1e-7 > low
    assert ax.get_title() == "gradient checks: 1/2 pass"
    assert "nan" in [t.get_text() for t in ax.texts]
    with pytest.raises(TypeError, match="GradCheckReport"):
        viz.plot_gradcheck([0.1])
    with pytest.raises(ValueError, match="no gradient rows"):
        viz.plot_gradcheck(GradCheckReport("ReLU"))


# -- files -------------------------------------------------------------------------


def test_save_figure_creates_the_folder(tmp_path):
    fig = viz.plot_confusion_matrix(np.eye(2), ["a", "b"])
    path = viz.save_figure(fig, tmp_path / "a" / "b" / "cm.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="suffix"):
        viz.save_figure(fig, tmp_path / "noext")
    with pytest.raises(TypeError, match="Figure"):
        viz.save_figure(np.eye(2), tmp_path / "x.png")
