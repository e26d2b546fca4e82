"""Class weights of the loss by median frequency balancing (paper §3.2)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .._checks import check_positive_int

__all__ = ["median_frequency_weights"]


def _label_iter(source) -> Iterable[np.ndarray]:
    """Labels of a data set (via its cheap ``label(i)``) or of an iterable."""
    if hasattr(source, "label") and hasattr(source, "__len__"):
        return (source.label(i) for i in range(len(source)))
    return (item[-1] if isinstance(item, tuple) else item for item in source)


def median_frequency_weights(
    source, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Class weights by median frequency balancing (SegNet paper §3.2).

    .. math::

        w_c = \\frac{\\operatorname{median}_{c'} f_{c'}}{f_c}, \\qquad
        f_c = \\frac{\\text{pixels of class } c}
                    {\\text{pixels of the images in which } c \\text{ is present}}

    (Eigen & Fergus 2015). An image's pixel count includes its ignored
    pixels, as the definition says "total pixels". The median runs over the
    classes present somewhere; a class never present gets weight 0 (it has no
    frequency, and a zero weight leaves the loss unchanged should it appear).

    Parameters
    ----------
    source : data set or iterable
        A data set with ``label(i)`` and ``len`` (:class:`CamVid`,
        :class:`SyntheticShapes`), or an iterable of label arrays or of
        ``(image, label)`` tuples.
    num_classes : int
        ``K``; labels must be in ``0 .. K-1`` or equal ``ignore_index``.
    ignore_index : int, optional
        Label of pixels to skip.

    Returns
    -------
    ndarray of shape (K,), float32
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    counts = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    seen = 0
    for label in _label_iter(source):
        label = np.asarray(label)
        if label.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer arrays, got dtype {label.dtype}")
        flat = label.ravel().astype(np.int64, copy=False)
        if ignore_index is not None:
            hist = np.bincount(
                flat[(flat != ignore_index) & (flat >= 0)], minlength=num_classes
            )
            bad = (flat < 0) & (flat != ignore_index)
        else:
            hist = np.bincount(flat[flat >= 0], minlength=num_classes)
            bad = flat < 0
        if bad.any() or hist.size > num_classes:
            wrong = flat[(flat < 0) | (flat >= num_classes)]
            wrong = wrong[wrong != ignore_index] if ignore_index is not None else wrong
            raise ValueError(
                f"label {seen} holds the value {int(wrong[0])}; expected 0.."
                f"{num_classes - 1}"
                + ("" if ignore_index is None else f" or {ignore_index}")
            )
        counts += hist
        image_pixels[hist > 0] += flat.size
        seen += 1
    if seen == 0:
        raise ValueError("no labels given")
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    if present.any():
        freq = counts[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights.astype(np.float32)
