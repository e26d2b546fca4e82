"""Segmentation metrics of the SegNet paper (§4): G, C, mIoU and BF.

Everything starts from a confusion matrix accumulated over the whole data set
(rows: true class, columns: predicted class), except the boundary F1 score,
which is computed per image and then averaged over images.

* **Global accuracy** (G): correctly classified pixels / labelled pixels.
* **Class-average accuracy** (C): the mean over classes of per-class recall.
* **Mean intersection over union** (mIoU): the mean over classes of
  TP / (TP + FP + FN), with the counts summed over the whole data set (not
  averaged per image), as the paper does.
* **Boundary F1** (BF): per image and class, precision and recall of the
  predicted class boundary against the true one, with a tolerance of 0.75 % of
  the image diagonal; F1 averaged over the classes present in the image, then
  over images (Csurka et al. 2013, as used in the SegNet paper).

Conventions
-----------
* All scores are fractions in ``[0, 1]``; the command line prints percent.
* Pixels whose target equals ``ignore_index`` are left out of everything;
  the prediction at those pixels is never looked at.
* A class **absent from the ground truth** (no labelled pixel of it) has no
  recall and no defined IoU in the sense of the paper: it is left out of the
  means C and mIoU and reported as ``nan`` per class (``None`` in
  :meth:`SegmentationMetrics.compute`). Its false positives still count, as
  false negatives of the true classes of those pixels. This is the reading
  "mean over the classes present", and with all 11 CamVid classes present in
  the test set it coincides with the plain mean.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_positive_int
from .config import njit

__all__ = [
    "SegmentationMetrics",
    "boundary_f1",
    "boundary_f1_per_class",
    "class_average_accuracy",
    "class_boundaries",
    "confusion_matrix",
    "global_accuracy",
    "mean_iou",
    "per_class_accuracy",
    "per_class_iou",
    "score_label_files",
]


def _check_labels(pred, target, num_classes: int, ignore_index, ndim=None):
    """Validate a prediction/target pair; return int64 copies and the valid mask."""
    for name, a in (("pred", pred), ("target", target)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
        if a.dtype.kind not in "iu":
            hint = " (take the argmax over classes first)" if name == "pred" else ""
            raise TypeError(
                f"{name} must hold integer class labels, got dtype {a.dtype}{hint}"
            )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {pred.shape} and "
            f"{target.shape}"
        )
    if ndim is not None and target.ndim != ndim:
        raise ValueError(
            f"pred and target must be {ndim}-d label maps, got shape {target.shape}"
        )
    target = target.astype(np.int64, copy=False)
    pred = pred.astype(np.int64, copy=False)
    valid = (
        np.ones(target.shape, dtype=bool)
        if ignore_index is None
        else target != ignore_index
    )
    t, p = target[valid], pred[valid]
    expected = f"0..{num_classes - 1}"
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        bad = t[(t < 0) | (t >= num_classes)][0]
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"target holds the label {bad}; expected {expected}{extra}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        bad = p[(p < 0) | (p >= num_classes)][0]
        raise ValueError(
            f"pred holds the label {bad} at a labelled pixel; expected {expected}"
        )
    return pred, target, valid


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index=None
) -> np.ndarray:
    """Count (true class, predicted class) pairs over all labelled pixels.

    Parameters
    ----------
    pred : ndarray of int, any shape
        Predicted class per pixel (e.g. ``logits.argmax(axis=1)``).
    target : ndarray of int, same shape as ``pred``
        True class per pixel, ``0 .. K-1`` or ``ignore_index``.
    num_classes : int
        ``K``.
    ignore_index : int, optional
        Target label of pixels to skip (their prediction may be anything).

    Returns
    -------
    ndarray of shape (K, K), int64
        ``cm[t, p]`` = number of pixels of true class ``t`` predicted as ``p``.

    Examples
    --------
    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 2]), 3, ignore_index=2)
    array([[1, 0, 0],
           [0, 1, 0],
           [0, 0, 0]])
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    pred, target, valid = _check_labels(pred, target, num_classes, ignore_index)
    # One bincount over the pair code t*K + p: a single pass, no Python loop.
    code = target[valid] * num_classes + pred[valid]
    counts = np.bincount(code, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def _check_cm(cm) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {cm.shape}")
    if cm.dtype.kind not in "iuf":
        raise TypeError(f"cm must hold counts, got dtype {cm.dtype}")
    if np.any(cm < 0):
        raise ValueError("cm must hold non-negative counts")
    return cm.astype(np.float64)


def global_accuracy(cm) -> float:
    """Correct pixels / labelled pixels: ``trace(cm) / sum(cm)`` (nan if empty)."""
    cm = _check_cm(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else math.nan


def per_class_accuracy(cm) -> np.ndarray:
    """Recall of each class, ``cm[c, c] / sum(cm[c, :])``; nan for absent classes.

    Returns
    -------
    ndarray of shape (K,), float64
    """
    cm = _check_cm(cm)
    support = cm.sum(axis=1)
    out = np.full(cm.shape[0], np.nan)
    present = support > 0
    out[present] = np.diag(cm)[present] / support[present]
    return out


def per_class_iou(cm) -> np.ndarray:
    """``TP / (TP + FP + FN)`` per class; nan for classes absent from the truth.

    Returns
    -------
    ndarray of shape (K,), float64
    """
    cm = _check_cm(cm)
    tp = np.diag(cm)
    union = cm.sum(axis=1) + cm.sum(axis=0) - tp
    out = np.full(cm.shape[0], np.nan)
    present = cm.sum(axis=1) > 0
    out[present] = tp[present] / union[present]
    return out


def _mean_present(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def class_average_accuracy(cm) -> float:
    """Mean per-class recall over the classes present in the ground truth."""
    return _mean_present(per_class_accuracy(cm))


def mean_iou(cm) -> float:
    """Mean IoU over the classes present in the ground truth (see module notes)."""
    return _mean_present(per_class_iou(cm))


# ---------------------------------------------------------------------------
# Boundary F1
# ---------------------------------------------------------------------------


def class_boundaries(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Boundary pixels of every class region of a label map.

    A valid pixel is on the boundary of its class when at least one of its 4
    neighbours inside the image is of another class or is not valid (ignored).
    Invalid pixels are never boundary pixels, and the image frame is not an
    edge. Both sides of an edge between classes ``a`` and ``b`` are boundary
    pixels (of ``a`` and of ``b`` respectively).

    Called with the *target's* ``valid`` mask for both the target and the
    prediction, this treats the ignored area as one more region in both maps:
    the prediction there is masked out, so a prediction that is right on every
    labelled pixel has exactly the target's boundaries (BF = 1), and an object
    outlined by a thin ignored border (as in VOC, or :class:`SyntheticShapes`)
    keeps its edges.

    Parameters
    ----------
    labels : ndarray of shape (H, W), int
    valid : ndarray of shape (H, W), bool

    Returns
    -------
    ndarray of shape (H, W), int64
        The class of each boundary pixel, ``-1`` elsewhere.
    """
    edge = np.zeros(labels.shape, dtype=bool)
    invalid = ~valid
    diff_h = (labels[:, 1:] != labels[:, :-1]) | invalid[:, 1:] | invalid[:, :-1]
    diff_v = (labels[1:, :] != labels[:-1, :]) | invalid[1:, :] | invalid[:-1, :]
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge &= valid
    return np.where(edge, labels.astype(np.int64), np.int64(-1))


def _disc_offsets(radius: float) -> np.ndarray:
    """Integer offsets ``(dy, dx)`` with ``dy^2 + dx^2 <= radius^2``, nearest first."""
    r = int(math.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    dist2 = (dy * dy + dx * dx).ravel()
    keep = dist2 <= radius * radius
    order = np.argsort(dist2[keep], kind="stable")
    return np.stack([dy.ravel()[keep][order], dx.ravel()[keep][order]], axis=1)


@njit
def _match_boundaries(src, dst, offsets, total, matched):
    """For each boundary pixel of ``src``, is one of its class in ``dst`` nearby?

    ``src``/``dst`` hold a class per boundary pixel and -1 elsewhere;
    ``offsets`` (nearest first, so most searches stop at once) is the disc of
    allowed displacements. Adds the counts per class into ``total`` and
    ``matched``.
    """
    height, width = src.shape
    for i in range(height):
        for j in range(width):
            c = src[i, j]
            if c < 0:
                continue
            total[c] += 1
            for k in range(offsets.shape[0]):
                ii = i + offsets[k, 0]
                jj = j + offsets[k, 1]
                if 0 <= ii < height and 0 <= jj < width and dst[ii, jj] == c:
                    matched[c] += 1
                    break


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise TypeError(f"tolerance must be a number, got {type(tolerance).__name__}")
    if not (0 <= tolerance < math.inf):
        raise ValueError(f"tolerance must be >= 0 and finite, got {tolerance}")
    return float(tolerance)


def boundary_f1_per_class(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    ignore_index=None,
    tolerance: float = 0.0075,
) -> np.ndarray:
    """Boundary F1 of each class in one image (nan for classes absent from it).

    See :func:`boundary_f1` for the definition; this returns the per-class
    scores before they are averaged.

    Returns
    -------
    ndarray of shape (K,), float64
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    tolerance = _check_tolerance(tolerance)
    pred, target, valid = _check_labels(pred, target, num_classes, ignore_index, 2)
    height, width = target.shape
    offsets = _disc_offsets(tolerance * math.hypot(height, width)).astype(np.int64)

    true_edges = class_boundaries(target, valid)
    pred_edges = class_boundaries(pred, valid)
    n_pred = np.zeros(num_classes, dtype=np.int64)
    hit_pred = np.zeros(num_classes, dtype=np.int64)
    n_true = np.zeros(num_classes, dtype=np.int64)
    hit_true = np.zeros(num_classes, dtype=np.int64)
    _match_boundaries(pred_edges, true_edges, offsets, n_pred, hit_pred)
    _match_boundaries(true_edges, pred_edges, offsets, n_true, hit_true)

    present = np.bincount(target[valid], minlength=num_classes) > 0
    scores = np.full(num_classes, np.nan)
    for c in np.flatnonzero(present):
        if n_true[c] == 0 and n_pred[c] == 0:
            scores[c] = 1.0  # no edge to find and none drawn: nothing is wrong
            continue
        precision = hit_pred[c] / n_pred[c] if n_pred[c] else 0.0
        recall = hit_true[c] / n_true[c] if n_true[c] else 0.0
        total = precision + recall
        scores[c] = 2 * precision * recall / total if total > 0 else 0.0
    return scores


def boundary_f1(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    ignore_index=None,
    tolerance: float = 0.0075,
) -> float:
    """Boundary F1 score (BF) of one image (SegNet paper §4; Csurka et al. 2013).

    For each class ``c`` present in the (labelled part of the) target:

    1. the boundaries of ``c`` in ``pred`` and in ``target`` are found with
       :func:`class_boundaries`: a labelled pixel of ``c`` with a 4-neighbour
       of another class or an ignored one. Ignored pixels are masked out of
       both maps alike (the prediction there is not looked at) and are never
       boundary pixels;
    2. precision ``P`` = fraction of predicted boundary pixels that lie within
       ``d = tolerance * sqrt(H^2 + W^2)`` (Euclidean, inclusive) of a true
       boundary pixel of ``c``; recall ``R`` = fraction of true boundary pixels
       within ``d`` of a predicted one;
    3. ``F1 = 2PR / (P + R)``, 0 when both are 0. A class with no boundary in
       either map scores 1; when only one map has boundary pixels, the other's
       (undefined) ratio counts as 0, so F1 is 0.

    BF is the mean of F1 over the classes present in the target, as the paper
    averages over "the classes present in the image". A class that appears
    only in the prediction is not averaged in, but the false edges it cuts into
    the regions of the true classes still lower those classes' precision.

    Parameters
    ----------
    pred, target : ndarray of shape (H, W), int
    num_classes : int
    ignore_index : int, optional
    tolerance : float
        Matching distance as a fraction of the image diagonal; 0.0075 (0.75 %)
        as the paper: 4.5 pixels at 360x480, 2.25 at 180x240.

    Returns
    -------
    float
        In ``[0, 1]``; nan when the target has no labelled pixel.

    Notes
    -----
    The distance test visits each boundary pixel and searches the disc of
    offsets nearest-first in a Numba kernel, stopping at the first match, so
    the cost is about (boundary pixels) x (a few offsets), not H x W x disc.
    """
    return _mean_present(
        boundary_f1_per_class(pred, target, num_classes, ignore_index, tolerance)
    )


# ---------------------------------------------------------------------------
# Accumulator
# ---------------------------------------------------------------------------


def _jsonable(values) -> list:
    return [None if math.isnan(v) else float(v) for v in values]


def _scalar(v: float):
    return None if math.isnan(v) else float(v)


class SegmentationMetrics:
    """Accumulate G, C, mIoU and BF over a data set, batch by batch.

    Parameters
    ----------
    num_classes : int
    ignore_index : int, optional
    boundary : bool
        Compute BF too (it costs a pass over each image; turn it off for quick
        validation during training).
    tolerance : float
        BF matching distance as a fraction of the image diagonal.

    Examples
    --------
    >>> m = SegmentationMetrics(num_classes=2, ignore_index=2)
    >>> m.update(np.array([[[0, 1], [1, 1]]]), np.array([[[0, 1], [2, 0]]]))
    >>> r = m.compute()
    >>> r["global_accuracy"], r["class_average_accuracy"]
    (0.6666666666666666, 0.75)
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index=None,
        boundary: bool = True,
        tolerance: float = 0.0075,
    ):
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.ignore_index = ignore_index
        self.boundary = bool(boundary)
        self.tolerance = _check_tolerance(tolerance)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.boundary_scores: list[float] = []
        self.num_images = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add a batch.

        Parameters
        ----------
        pred : ndarray of shape (N, H, W) or (H, W), int
            Predicted labels (``argmax`` of the scores over the class axis).
        target : ndarray of the same shape, int
        """
        if (
            isinstance(pred, np.ndarray)
            and isinstance(target, np.ndarray)
            and (target.ndim == 2)
        ):
            pred, target = pred[None], target[None]
        _check_labels(pred, target, self.num_classes, self.ignore_index, 3)
        self.confusion += confusion_matrix(
            pred, target, self.num_classes, self.ignore_index
        )
        for p, t in zip(pred, target, strict=True):
            if self.boundary:
                self.boundary_scores.append(
                    boundary_f1(
                        p, t, self.num_classes, self.ignore_index, self.tolerance
                    )
                )
            self.num_images += 1

    def compute(self) -> dict:
        """All metrics as a JSON-serialisable dict of fractions in ``[0, 1]``.

        Returns
        -------
        dict
            ``global_accuracy``, ``class_average_accuracy``, ``mean_iou``,
            ``boundary_f1`` (mean over images with a labelled pixel; None when
            ``boundary`` is off), ``per_class_accuracy`` and ``per_class_iou``
            (lists of K, None for classes absent from the truth),
            ``confusion_matrix`` (K lists of K ints; rows true, columns
            predicted) and ``num_images``.
        """
        if self.confusion.sum() == 0:
            raise ValueError(
                "no labelled pixel has been seen: call update() with data first"
            )
        bf = np.array(self.boundary_scores, dtype=np.float64)
        bf = bf[~np.isnan(bf)]
        cm = self.confusion
        return {
            "global_accuracy": global_accuracy(cm),
            "class_average_accuracy": _scalar(class_average_accuracy(cm)),
            "mean_iou": _scalar(mean_iou(cm)),
            "boundary_f1": float(bf.mean()) if bf.size else None,
            "per_class_accuracy": _jsonable(per_class_accuracy(cm)),
            "per_class_iou": _jsonable(per_class_iou(cm)),
            "confusion_matrix": cm.tolist(),
            "num_images": self.num_images,
        }


def score_label_files(
    predictions,
    annotations,
    num_classes: int = 11,
    ignore_index=11,
    suffix: str = "_classes.png",
    boundary: bool = True,
) -> dict:
    """Score a folder of class-index PNGs against a folder of annotations.

    The files ``npsegnet predict`` writes as ``<name>_classes.png`` (one byte
    per pixel, values ``0 .. K-1``: CamVid's ``testannot`` format) are matched
    to ``<annotations>/<name>.png`` and scored as ``npsegnet evaluate`` scores
    a model: G, C, mIoU and BF over all pixels of all images.

    Parameters
    ----------
    predictions, annotations : str or path
        The two folders.
    num_classes : int
        11 for CamVid.
    ignore_index : int, optional
        Annotation value skipped (11, Unlabelled, for CamVid).
    suffix : str
        What follows ``<name>`` in the prediction files.
    boundary : bool
        Compute BF too.

    Returns
    -------
    dict
        As :meth:`SegmentationMetrics.compute`, plus ``num_images``.

    Raises
    ------
    FileNotFoundError
        A folder is missing, holds no prediction, or an annotation is missing.
    ValueError
        A prediction and its annotation differ in size, or a file is not a
        single-channel image.
    """
    from pathlib import Path

    from PIL import Image

    pred_dir, annot_dir = Path(predictions), Path(annotations)
    for folder in (pred_dir, annot_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
    files = sorted(pred_dir.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"no *{suffix} file in {pred_dir}")

    def read(path):
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise ValueError(
                    f"{path} has PIL mode {im.mode!r}; expected class indices, one "
                    "byte per pixel (mode 'L' or 'P')"
                )
            return np.array(im, dtype=np.int64)

    metrics = SegmentationMetrics(num_classes, ignore_index, boundary=boundary)
    for path in files:
        name = path.name[: -len(suffix)]
        target_path = annot_dir / f"{name}.png"
        if not target_path.is_file():
            raise FileNotFoundError(f"annotation {target_path} for {path} not found")
        pred, target = read(path), read(target_path)
        if pred.shape != target.shape:
            raise ValueError(
                f"{path} is {pred.shape[0]}x{pred.shape[1]} but its annotation "
                f"{target_path} is {target.shape[0]}x{target.shape[1]}"
            )
        metrics.update(pred[None], target[None])
    result = metrics.compute()
    result["num_images"] = len(files)
    return result
