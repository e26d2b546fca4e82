"""Tests of npsegnet.metrics: confusion matrix, G / C / mIoU, boundary F1."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from npsegnet.metrics import (
    SegmentationMetrics,
    boundary_f1,
    boundary_f1_per_class,
    class_average_accuracy,
    class_boundaries,
    confusion_matrix,
    global_accuracy,
    mean_iou,
    per_class_accuracy,
    per_class_iou,
)

# --- helpers ----------------------------------------------------------------


def naive_confusion(pred, target, num_classes, ignore_index=None):
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for p, t in zip(pred.ravel(), target.ravel(), strict=True):
        if t != ignore_index:
            cm[t, p] += 1
    return cm


def naive_boundary_f1(pred, target, num_classes, ignore_index, tolerance):
    """BF by brute force: explicit boundary test and all pairwise distances."""
    height, width = target.shape
    valid = target != ignore_index
    radius = tolerance * math.hypot(height, width)

    def edges(labels, c):
        pts = []
        for i in range(height):
            for j in range(width):
                if not valid[i, j] or labels[i, j] != c:
                    continue
                for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    a, b = i + di, j + dj
                    if 0 <= a < height and 0 <= b < width:
                        if not valid[a, b] or labels[a, b] != c:
                            pts.append((i, j))
                            break
        return np.array(pts, dtype=float).reshape(-1, 2)

    def fraction_matched(src, dst):
        if len(dst) == 0:
            return 0.0
        d2 = ((src[:, None, :] - dst[None, :, :]) ** 2).sum(-1)
        return float((d2.min(axis=1) <= radius * radius).mean())

    scores = []
    for c in range(num_classes):
        if not np.any(target[valid] == c):
            continue
        e_pred, e_true = edges(pred, c), edges(target, c)
        if len(e_pred) == 0 and len(e_true) == 0:
            scores.append(1.0)
            continue
        p = fraction_matched(e_pred, e_true) if len(e_pred) else 0.0
        r = fraction_matched(e_true, e_pred) if len(e_true) else 0.0
        scores.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return float(np.mean(scores))


def blobs(rng, shape, num_classes, ignore_index=None):
    """A label map of a few rectangles (so boundaries are realistic), some ignored."""
    labels = np.zeros(shape, dtype=np.int64)
    for _ in range(5):
        c = rng.integers(0, num_classes)
        i0, j0 = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        i1, j1 = i0 + rng.integers(2, shape[0] // 2 + 3), j0 + rng.integers(2, 9)
        labels[i0:i1, j0:j1] = c
    if ignore_index is not None:
        labels[rng.random(shape) < 0.03] = ignore_index
    return labels


# --- the 3-class example worked by hand --------------------------------------
#
# true \ pred   0  1  2
#      0        2  1  1      4 pixels of class 0, 2 right
#      1        1  2  0      3 pixels of class 1, 2 right
#      2        0  1  2      3 pixels of class 2, 2 right
# plus 3 ignored pixels (label 3), whose predictions (even an impossible 7)
# must not count.
TARGET = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
PRED = np.array([0, 0, 1, 2, 0, 1, 1, 1, 2, 2, 0, 2, 7])
CM = np.array([[2, 1, 1], [1, 2, 0], [0, 1, 2]])


def test_confusion_matrix_hand_example():
    cm = confusion_matrix(PRED, TARGET, 3, ignore_index=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)


def test_scores_hand_example():
    # G = 6 right of 10 labelled pixels.
    assert global_accuracy(CM) == pytest.approx(float(Fraction(6, 10)))
    # recalls 2/4, 2/3, 2/3 -> C = 11/18
    np.testing.assert_allclose(per_class_accuracy(CM), [1 / 2, 2 / 3, 2 / 3])
    assert class_average_accuracy(CM) == pytest.approx(float(Fraction(11, 18)))
    # IoU: class 0: 2 / (4 + 3 - 2) = 2/5; class 1: 2 / (3 + 4 - 2) = 2/5;
    # class 2: 2 / (3 + 3 - 2) = 1/2 -> mIoU = 13/30
    np.testing.assert_allclose(per_class_iou(CM), [2 / 5, 2 / 5, 1 / 2])
    assert mean_iou(CM) == pytest.approx(float(Fraction(13, 30)))


def test_ignore_index_none_counts_everything():
    pred, target = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    np.testing.assert_array_equal(confusion_matrix(pred, target, 2), [[2, 1], [0, 1]])


def test_absent_class_left_out_of_means():
    # Class 2 never appears in the truth but is predicted once.
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])
    cm = confusion_matrix(pred, target, 3)
    acc, iou = per_class_accuracy(cm), per_class_iou(cm)
    assert math.isnan(acc[2]) and math.isnan(iou[2])
    assert class_average_accuracy(cm) == pytest.approx((1 / 2 + 1) / 2)
    # The false positive of class 2 is a false negative of class 0.
    assert mean_iou(cm) == pytest.approx((1 / 2 + 1) / 2)
    assert global_accuracy(cm) == pytest.approx(3 / 4)


def test_empty_confusion_gives_nan():
    cm = np.zeros((3, 3), dtype=np.int64)
    assert math.isnan(global_accuracy(cm))
    assert math.isnan(class_average_accuracy(cm))
    assert math.isnan(mean_iou(cm))


@pytest.mark.parametrize("ignore_index", [None, 4, 255])
def test_confusion_matrix_matches_naive(rng, ignore_index):
    target = rng.integers(0, 4, size=(3, 7, 5))
    if ignore_index is not None:
        target[rng.random(target.shape) < 0.2] = ignore_index
    pred = rng.integers(0, 4, size=target.shape).astype(np.uint8)
    np.testing.assert_array_equal(
        confusion_matrix(pred, target, 4, ignore_index),
        naive_confusion(pred, target, 4, ignore_index),
    )


def test_perfect_prediction_scores_one(rng):
    target = np.stack([blobs(rng, (20, 24), 5, ignore_index=5) for _ in range(3)])
    m = SegmentationMetrics(5, ignore_index=5)
    m.update(target.copy(), target)
    r = m.compute()
    for key in ("global_accuracy", "class_average_accuracy", "mean_iou", "boundary_f1"):
        assert r[key] == 1.0, key
    present = np.bincount(target[target != 5], minlength=5) > 0
    for key in ("per_class_accuracy", "per_class_iou"):
        assert [v == 1.0 for v in r[key] if v is not None] == [True] * present.sum()


@pytest.mark.parametrize(
    "pred, target, err, match",
    [
        (np.zeros((2, 3), int), np.zeros((3, 2), int), ValueError, "same shape"),
        (np.zeros(4), np.zeros(4, int), TypeError, "argmax"),
        (np.zeros(4, int), [0, 0, 0, 0], TypeError, "target must be a NumPy"),
        (
            np.zeros(4, int),
            np.array([0, 1, 5, 0]),
            ValueError,
            "target holds the label 5",
        ),
        (
            np.array([0, 3, 0, 0]),
            np.zeros(4, int),
            ValueError,
            "pred holds the label 3",
        ),
        (
            np.array([0, -1, 0, 0]),
            np.zeros(4, int),
            ValueError,
            "pred holds the label -1",
        ),
    ],
)
def test_confusion_matrix_bad_input(pred, target, err, match):
    with pytest.raises(err, match=match):
        confusion_matrix(pred, target, 3, ignore_index=4)


def test_bad_confusion_matrix_rejected():
    with pytest.raises(ValueError, match="square"):
        global_accuracy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        mean_iou(np.array([[1, -1], [0, 1]]))


# --- boundary F1 ---------------------------------------------------------------


def halves(shift_top: int = 0, shift_all: int = 0):
    """10x10: class 0 on the left of column 5 (+ shifts), class 1 on the right."""
    labels = np.ones((10, 10), dtype=np.int64)
    labels[:, : 5 + shift_all] = 0
    labels[:5, : 5 + shift_all + shift_top] = 0
    return labels


def test_class_boundaries_definition():
    labels = halves()
    valid = np.ones_like(labels, dtype=bool)
    edges = class_boundaries(labels, valid)
    expected = np.full((10, 10), -1)
    expected[:, 4], expected[:, 5] = 0, 1  # both sides of the edge; no frame
    np.testing.assert_array_equal(edges, expected)
    # An ignored column: edges run along it, on the labelled pixels only.
    valid[:, 5] = False
    expected[:, 5], expected[:, 6] = -1, 1
    np.testing.assert_array_equal(class_boundaries(labels, valid), expected)
    # An ignored corner pixel: its neighbours become edges, the frame does not.
    valid[:] = True
    valid[0, 0] = False
    edges = class_boundaries(labels, valid)
    assert edges[0, 0] == -1 and edges[0, 1] == 0 and edges[1, 0] == 0
    assert edges[1, 1] == -1


def test_boundary_f1_one_pixel_shift():
    # Diagonal of 10x10 is 14.14 px: tolerance 0.12 -> 1.70 px covers a shift of
    # one pixel; 0.05 -> 0.71 px does not, and no boundary pixel matches.
    target, pred = halves(), halves(shift_all=1)
    assert boundary_f1(pred, target, 2, tolerance=0.12) == 1.0
    assert boundary_f1(pred, target, 2, tolerance=0.05) == 0.0
    assert boundary_f1(target, target, 2, tolerance=0.0) == 1.0


def test_boundary_f1_partial_hand_example():
    # Prediction: the top five rows shifted right by two pixels.  Tolerance 0.12
    # (1.70 px) reaches the 8 neighbours but not 2 pixels away.
    # Class 0: predicted edge = (r, 6) for r < 5, (4, 5), (r, 4) for r >= 5: 11 px,
    #   matched: (4, 5) and the 5 bottom ones -> P = 6/11; true edge (r, 4):
    #   rows 3..9 have a predicted edge within reach -> R = 7/10; F1 = 84/137.
    # Class 1: predicted edge = (r, 7) for r < 5, (5, 6), (r, 5) for r >= 5: 11 px,
    #   matched: (5, 6) and the bottom 5 -> P = 6/11; true edge (r, 5): rows 4..9
    #   -> R = 6/10; F1 = 4/7.
    target, pred = halves(), halves(shift_top=2)
    per_class = boundary_f1_per_class(pred, target, 2, tolerance=0.12)
    np.testing.assert_allclose(per_class, [84 / 137, 4 / 7])
    assert boundary_f1(pred, target, 2, tolerance=0.12) == pytest.approx(
        (84 / 137 + 4 / 7) / 2
    )


def test_boundary_f1_classes_and_ignore():
    target = halves()
    # A class present only in the prediction is not averaged in...
    pred = target.copy()
    pred[0:2, 0:2] = 2
    scores = boundary_f1_per_class(pred, target, 3, tolerance=0.12)
    assert math.isnan(scores[2])
    # ...but the edge it cuts into class 0 lowers class 0's precision.
    assert scores[0] < 1.0 and scores[1] == 1.0
    # A class filling the whole labelled area has no edge: 1 if none is drawn.
    flat = np.zeros((6, 6), dtype=np.int64)
    assert boundary_f1(flat, flat, 2) == 1.0
    assert boundary_f1(halves()[:6, :6], flat, 2, tolerance=0.3) == 0.0
    # Ignored pixels: the prediction there does not matter.
    target = halves()
    target[:, 5] = 9
    pred = target.copy()
    pred[:, 5] = 0
    assert boundary_f1(pred, target, 2, ignore_index=9) == 1.0
    # A thin ignored border keeps the edges on both sides of it, and a
    # prediction right on every labelled pixel scores 1 whatever it says inside.
    pred = halves(shift_all=1)
    assert boundary_f1(pred, target, 2, ignore_index=9, tolerance=0.0) == 1.0
    assert (class_boundaries(target, target != 9) >= 0).sum() == 20
    # No labelled pixel at all: nan, skipped by SegmentationMetrics.
    assert math.isnan(boundary_f1(pred, np.full((10, 10), 9), 2, ignore_index=9))


@pytest.mark.parametrize("tolerance", [0.0, 0.03, 0.0075 * 4, 0.15])
def test_boundary_f1_matches_brute_force(rng, tolerance):
    for _ in range(3):
        target = blobs(rng, (17, 23), 4, ignore_index=4)
        pred = blobs(rng, (17, 23), 4)
        keep = rng.random(pred.shape) < 0.5
        pred[keep] = target[keep]
        pred[pred == 4] = 0
        assert boundary_f1(pred, target, 4, 4, tolerance) == pytest.approx(
            naive_boundary_f1(pred, target, 4, 4, tolerance), abs=1e-12
        )


def test_boundary_f1_bad_input():
    a = np.zeros((4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="2-d label maps"):
        boundary_f1(a[None], a[None], 2)
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(a, a, 2, tolerance=-0.1)
    with pytest.raises(TypeError, match="tolerance"):
        boundary_f1(a, a, 2, tolerance="0.1")


# --- the accumulator ---------------------------------------------------------------


def test_segmentation_metrics_accumulates(rng):
    target = np.stack([blobs(rng, (12, 15), 4, ignore_index=4) for _ in range(5)])
    pred = rng.integers(0, 4, size=target.shape)
    keep = rng.random(pred.shape) < 0.6
    pred[keep] = np.where(target == 4, 0, target)[keep]
    m = SegmentationMetrics(4, ignore_index=4, tolerance=0.1)
    m.update(pred[:2], target[:2])
    m.update(pred[2:4], target[2:4])
    m.update(pred[4], target[4])  # a single (H, W) image is accepted
    r = m.compute()
    cm = naive_confusion(pred, target, 4, 4)
    assert r["confusion_matrix"] == cm.tolist()
    assert r["global_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert r["mean_iou"] == pytest.approx(mean_iou(cm))
    assert r["class_average_accuracy"] == pytest.approx(class_average_accuracy(cm))
    bf = [boundary_f1(p, t, 4, 4, 0.1) for p, t in zip(pred, target, strict=True)]
    assert r["boundary_f1"] == pytest.approx(np.mean(bf))
    assert r["num_images"] == 5
    assert 0.0 < r["global_accuracy"] < 1.0
    json.dumps(r, allow_nan=False)  # JSON-serialisable, no NaN


def test_segmentation_metrics_absent_class_is_none_and_reset():
    m = SegmentationMetrics(3, ignore_index=None, boundary=False)
    with pytest.raises(ValueError, match="update"):
        m.compute()
    m.update(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int))
    r = m.compute()
    assert r["boundary_f1"] is None
    assert r["per_class_iou"] == [1.0, None, None]
    json.dumps(r, allow_nan=False)
    m.reset()
    assert m.num_images == 0 and m.confusion.sum() == 0


def test_segmentation_metrics_bad_input():
    m = SegmentationMetrics(3, ignore_index=3)
    with pytest.raises(ValueError, match="3-d"):
        m.update(np.zeros((1, 1, 2, 2), int), np.zeros((1, 1, 2, 2), int))
    with pytest.raises(TypeError, match="argmax"):
        m.update(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), int))
    with pytest.raises(ValueError, match="tolerance"):
        SegmentationMetrics(3, tolerance=-1.0)
    assert m.confusion.sum() == 0  # nothing half-added
