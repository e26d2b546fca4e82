"""Input, ground truth and prediction side by side, with a colour legend."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data import CAMVID_CLASS_NAMES
from .colors import (
    CAMVID_PALETTE,
    _check_labels,
    _check_palette,
    _image_to_hwc,
    label_to_color,
    palette,
)

__all__ = ["plot_predictions"]


def _display_image(img: np.ndarray) -> np.ndarray:
    """Min-max rescale an image that is outside [0, 1] (e.g. normalised input)."""
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    if lo >= 0.0 and hi <= 1.0:
        return img
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _default_palette(class_names) -> np.ndarray:
    """CamVid's colours for CamVid (or unnamed) classes, distinct ones otherwise."""
    if class_names is None:
        return CAMVID_PALETTE
    names = [str(n).lower() for n in class_names]
    camvid = [n.lower() for n in _CAMVID_NAMES]
    if names == camvid[: len(names)] and len(names) >= 11:
        return CAMVID_PALETTE
    return palette(len(names))


_CAMVID_NAMES = (*CAMVID_CLASS_NAMES, "Unlabelled")


def plot_predictions(
    images,
    labels,
    preds,
    class_names=None,
    palette=None,
    max_images: int = 4,
    ignore_index=None,
) -> Figure:
    """Input, ground truth and prediction of a few images, with a colour legend.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W)
        Input images, ``C`` 3 (RGB) or 1 (grey). Values outside [0, 1] (a
        normalised input) are min-max rescaled per image for display.
    labels : ndarray of int, shape (N, H, W)
        Ground truth.
    preds : ndarray of int, shape (N, H, W)
        Predicted labels (e.g. ``scores.argmax(axis=1)``).
    class_names : sequence of str, optional
        Names of classes ``0 .. K - 1`` for the legend. Without them the
        legend names the classes present ``"class k"``.
    palette : array_like of shape (K, 3), optional
        Colours. Default: :data:`CAMVID_PALETTE` when ``class_names`` is
        omitted or is CamVid's, else :func:`palette` ``(len(class_names))``.
    max_images : int
        Show at most this many images (the first ones).
    ignore_index : int, optional
        Label of unlabelled pixels, drawn black.

    Returns
    -------
    Figure
        Three rows of axes (input, ground truth, prediction) by
        ``min(N, max_images)`` columns; the legend sits below them.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, C, H, W) with C 3 or 1, got {images.shape}"
        )
    labels = _check_labels(labels, "labels", ndim=3)
    preds = _check_labels(preds, "preds", ndim=3)
    n, _, h, w = images.shape
    if labels.shape != (n, h, w) or preds.shape != (n, h, w):
        raise ValueError(
            f"labels {labels.shape} and preds {preds.shape} must both have shape "
            f"(N, H, W) = {(n, h, w)} to match images {images.shape}"
        )
    if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)):
        raise TypeError("max_images must be an int")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    pal = _check_palette(_default_palette(class_names) if palette is None else palette)
    if class_names is not None and len(class_names) > len(pal):
        raise ValueError(
            f"{len(class_names)} class names but the palette has {len(pal)} colours"
        )
    cols = min(n, int(max_images))

    colour_gt = [label_to_color(labels[i], pal, ignore_index) for i in range(cols)]
    colour_pr = [label_to_color(preds[i], pal, ignore_index) for i in range(cols)]

    fig = Figure(
        figsize=(2.4 * cols * max(w / h, 0.6) + 0.4, 2.2 * 3 + 0.8),
        dpi=100,
        layout="constrained",
    )
    axes = fig.subplots(3, cols, squeeze=False)
    for i in range(cols):
        img = _display_image(_image_to_hwc(images[i], "images[i]"))
        for row, picture in enumerate((img, colour_gt[i], colour_pr[i])):
            ax = axes[row, i]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, i].set_title(f"image {i}", fontsize=9)
    for row, text in enumerate(("input", "ground truth", "prediction")):
        axes[row, 0].set_ylabel(text)

    shown = labels[:cols], preds[:cols]
    if class_names is not None:
        classes = range(len(class_names))
        names = [str(c) for c in class_names]
    else:
        present = np.unique(np.concatenate([a.ravel() for a in shown]))
        classes = [int(c) for c in present if c != ignore_index]
        names = [f"class {c}" for c in classes]
    handles = [
        Patch(facecolor=pal[c] / 255.0, edgecolor="0.3", label=name)
        for c, name in zip(classes, names, strict=True)
    ]
    if ignore_index is not None and any(np.any(a == ignore_index) for a in shown):
        handles.append(Patch(facecolor="black", edgecolor="0.3", label="ignored"))
    ncol = max(1, min(len(handles), 6))
    # matplotlib fills a legend column by column; order it to read row by row.
    handles = [
        handles[j + k * ncol]
        for j in range(ncol)
        for k in range(-(-len(handles) // ncol))
        if j + k * ncol < len(handles)
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=ncol,
        fontsize=8,
        frameon=False,
    )
    return fig
