"""Scores of a trained model: the confusion matrix and per-class IoU bars."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_confusion_matrix", "plot_per_class_iou"]


def plot_confusion_matrix(cm, class_names, normalize: bool = True) -> Figure:
    """The confusion matrix as an image, rows the true class.

    Parameters
    ----------
    cm : ndarray of shape (K, K)
        ``cm[i, j]`` = number of pixels of true class ``i`` predicted ``j``.
    class_names : sequence of str, length K
        Names of the classes.
    normalize : bool
        Divide each row by its sum, so the diagonal is each class's recall
        (the per-class accuracy behind the paper's class average C). A row
        with no pixels stays 0.

    Returns
    -------
    Figure
        Two axes: the matrix (cells annotated when K <= 15) and its colour bar.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) array, got shape {cm.shape}")
    if cm.dtype.kind not in "fiu":
        raise TypeError(f"cm must be numeric, got dtype {cm.dtype}")
    k = cm.shape[0]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}x{k} matrix")
    cm = cm.astype(np.float64)
    if not np.all(np.isfinite(cm)) or cm.min() < 0:
        raise ValueError("cm must hold finite, non-negative counts")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)

    size = max(4.0, 0.45 * k + 2.0)
    fig = Figure(figsize=(size + 1.0, size), dpi=100, layout="constrained")
    ax = fig.subplots()
    vmax = 1.0 if normalize else max(cm.max(), 1.0)
    im = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(
        im, ax=ax, shrink=0.8, label="fraction of the row" if normalize else "pixels"
    )
    ticks = np.arange(k)
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=60, ha="right")
    ax.set_yticks(ticks, [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (rows sum to 1)" if normalize else ""))
    if k <= 15:
        for i in range(k):
            for j in range(k):
                v = cm[i, j]
                text = f"{v:.2f}" if normalize else f"{v:.3g}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.6 * vmax else "black",
                )
    return fig


def plot_per_class_iou(iou, class_names, reference=None) -> Figure:
    """Per-class IoU as bars, optionally beside reference values.

    Parameters
    ----------
    iou : array_like of shape (K,)
        IoU of each class as a fraction in [0, 1]; NaN for a class absent
        from both labels and predictions (drawn as no bar).
    class_names : sequence of str, length K
        Names of the classes.
    reference : array_like of shape (K,) or mapping of str to array_like, optional
        Values to compare with, also fractions in [0, 1], for example a
        paper's per-class numbers divided by 100. A mapping names each set in
        the legend; a bare array is called "reference".

    Returns
    -------
    Figure
        One axes: grouped bars per class (percent), and a dashed line per set
        at its mean over the classes (the mIoU).
    """
    iou = np.asarray(iou, dtype=np.float64)
    k = len(class_names)
    sets = {"npsegnet": iou}
    if reference is not None:
        if isinstance(reference, Mapping):
            sets.update(
                {str(n): np.asarray(v, dtype=np.float64) for n, v in reference.items()}
            )
        else:
            sets["reference"] = np.asarray(reference, dtype=np.float64)
    for name, values in sets.items():
        label = "iou" if name == "npsegnet" else f"reference {name!r}"
        if values.shape != (k,):
            raise ValueError(
                f"{label} must have shape ({k},) to match class_names, "
                f"got {values.shape}"
            )
        finite = values[np.isfinite(values)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise ValueError(
                f"{label} must hold fractions in [0, 1] (divide percentages by 100)"
            )

    fig = Figure(figsize=(max(6.0, 0.6 * k + 4.0), 3.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = np.arange(k)
    width = 0.8 / len(sets)
    for s, (name, values) in enumerate(sets.items()):
        offset = (s - (len(sets) - 1) / 2) * width
        bars = ax.bar(x + offset, np.nan_to_num(values) * 100, width, label=name)
        mean = np.nanmean(values) * 100 if np.any(np.isfinite(values)) else np.nan
        if np.isfinite(mean):
            ax.axhline(
                mean,
                ls="--",
                lw=1,
                color=bars.patches[0].get_facecolor(),
                label=f"{name} mean {mean:.1f}",
            )
    ax.set_xticks(x, [str(c) for c in class_names], rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title("per-class IoU")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
