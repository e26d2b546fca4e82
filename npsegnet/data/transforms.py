"""Input normalisation: Caffe's LRN (SegNet's "LCN"), spatial LCN, mean/std.

:func:`make_transform` turns the ``normalization`` entry a run stores in its
config into the function that prepares the network's input, so training,
evaluation and prediction normalise alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._checks import check_float_array, check_positive_int

__all__ = [
    "LRN_PARAMS",
    "compute_mean_std",
    "local_contrast_normalize",
    "local_contrast_normalize_spatial",
    "make_transform",
    "normalize",
]

#: Caffe's LRN of the SegNet-Tutorial models, on pixel values in 0..255.
LRN_PARAMS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "input_scale": 255.0}


def local_contrast_normalize(
    x: np.ndarray,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
) -> np.ndarray:
    """Caffe's local response normalisation across channels (SegNet's "LCN").

    .. math::

        y_c = x_c \\Big/ \\Big(k + \\frac{\\alpha}{n}
              \\sum_{c'=c-h}^{c+h} x_{c'}^2\\Big)^{\\beta}

    with ``n = size``, ``h = (n - 1) / 2`` and channels outside ``0 .. C-1``
    counting as zero.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W) or (C, H, W)
        float32 or float64.
    size : int
        Odd number of channels in the window (Caffe refuses even sizes).
    alpha, beta, k : float
        Caffe's ``lrn_param`` (``k`` defaults to 1 there too).

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.

    Notes
    -----
    The SegNet paper (§3.1) says the input goes through *local contrast
    normalisation*; what the reference models of SegNet-Tutorial
    (``segnet_basic_train.prototxt``) actually apply to the input is this
    layer: Caffe's ``LRN`` with ``local_size 5, alpha 1e-4, beta 0.75`` in its
    default ACROSS_CHANNELS mode. Over 3 channels the window (5) spans all of
    them, so every pixel is divided by ``(1 + 2e-5 * |rgb|^2) ** 0.75``.

    Caffe feeds the layer raw pixel values in 0..255 (the tutorial's data layer
    does not rescale), where this divides bright pixels by up to about 3.3. On
    images in ``[0, 1]`` the same formula is nearly the identity (the divisor
    is at most 1.00005): to reproduce the reference model, apply it to
    ``255 * x``. A true spatial LCN is :func:`local_contrast_normalize_spatial`.
    """
    x = check_float_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    size = check_positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd (as Caffe's LRN requires), got {size}")
    half = size // 2
    axis = x.ndim - 3
    sq = np.square(x)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half + 1, half)  # one extra leading zero turns cumsum into window sums
    csum = np.cumsum(np.pad(sq, pad), axis=axis, dtype=x.dtype)
    channels = x.shape[axis]
    upper = np.take(csum, np.arange(size, size + channels), axis=axis)
    lower = np.take(csum, np.arange(0, channels), axis=axis)
    scale = x.dtype.type(k) + x.dtype.type(alpha / size) * (upper - lower)
    return (x * scale ** x.dtype.type(-beta)).astype(x.dtype, copy=False)


def _box_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``a`` over a ``size`` x ``size`` window on the last two axes.

    Windows are cut at the image edges and averaged over the pixels inside.
    """
    half = size // 2
    height, width = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(1, 0), (1, 0)]
    integral = np.pad(np.cumsum(np.cumsum(a, axis=-1), axis=-2), pad)
    r0 = np.clip(np.arange(height) - half, 0, height)
    r1 = np.clip(np.arange(height) + half + 1, 0, height)
    c0 = np.clip(np.arange(width) - half, 0, width)
    c1 = np.clip(np.arange(width) + half + 1, 0, width)
    total = (
        integral[..., r1[:, None], c1[None, :]]
        - integral[..., r0[:, None], c1[None, :]]
        - integral[..., r1[:, None], c0[None, :]]
        + integral[..., r0[:, None], c0[None, :]]
    )
    count = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    return total / count


def local_contrast_normalize_spatial(
    x: np.ndarray, size: int = 9, eps: float = 1e-4
) -> np.ndarray:
    """Spatial local contrast normalisation (Jarrett et al. 2009, box window).

    Subtract the local mean over a ``size`` x ``size`` window and all channels,
    then divide by the local standard deviation over the same window, floored
    at its mean over the image (so flat regions are not blown up) and at
    ``eps``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W) or (C, H, W)
        float32 or float64.
    size : int
        Odd window side in pixels (cut at the image edges).
    eps : float
        Lower bound of the divisor.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.

    Notes
    -----
    Jarrett et al. weight the window with a Gaussian; a box keeps this a few
    cumulative sums. This is *not* what the SegNet reference model runs (see
    :func:`local_contrast_normalize`); it is here to compare the two.
    """
    x = check_float_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    size = check_positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd, got {size}")
    x64 = x.astype(np.float64)
    centred = x64 - _box_mean(x64.mean(axis=-3, keepdims=True), size)
    sigma = np.sqrt(_box_mean(np.square(centred).mean(axis=-3, keepdims=True), size))
    floor = np.maximum(sigma.mean(axis=(-2, -1), keepdims=True), eps)
    return (centred / np.maximum(sigma, floor)).astype(x.dtype)


def compute_mean_std(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over every pixel of ``dataset``.

    Parameters
    ----------
    dataset : sequence of (image, label)
        ``image`` of shape (C, H, W).

    Returns
    -------
    mean, std : ndarray of shape (C,), float32
        Population statistics (divided by the number of pixels), accumulated in
        float64 around the first image's mean to avoid cancellation.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty")
    shift = total = total_sq = None
    count = 0
    for i in range(n):
        image = np.asarray(dataset[i][0], dtype=np.float64)
        if image.ndim != 3:
            raise ValueError(f"image {i} must be (C, H, W), got shape {image.shape}")
        flat = image.reshape(image.shape[0], -1)
        if shift is None:
            shift = flat.mean(axis=1, keepdims=True)
            total = np.zeros(flat.shape[0])
            total_sq = np.zeros(flat.shape[0])
        d = flat - shift
        total += d.sum(axis=1)
        total_sq += np.square(d).sum(axis=1)
        count += flat.shape[1]
    mean_d = total / count
    var = np.maximum(total_sq / count - mean_d**2, 0.0)
    return (mean_d + shift[:, 0]).astype(np.float32), np.sqrt(var).astype(np.float32)


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
    """``(x - mean) / std`` per channel.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W) or (C, H, W)
        float32 or float64.
    mean, std : array_like of shape (C,)
        From :func:`compute_mean_std`; ``std`` must be positive.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.
    """
    x = check_float_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    channels = x.shape[-3]
    mean = np.asarray(mean, dtype=x.dtype)
    std = np.asarray(std, dtype=x.dtype)
    for name, v in (("mean", mean), ("std", std)):
        if v.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), got {v.shape}")
    if np.any(std <= 0):
        raise ValueError(f"std must be positive, got {std}")
    return (x - mean[:, None, None]) / std[:, None, None]


def make_transform(spec: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The input normalisation a run was trained with, as a function.

    Parameters
    ----------
    spec : dict
        ``{"kind": "meanstd", "mean": [3 floats], "std": [3 floats]}``,
        ``{"kind": "lrn", "size": 5, "alpha": 1e-4, "beta": 0.75,
        "input_scale": 255.0}`` or ``{"kind": "none"}``, as stored in the
        ``normalization`` entry of a training config.

    Returns
    -------
    callable
        Maps a float32 batch ``(N, 3, H, W)`` in ``[0, 1]`` to the network's
        input, float32, same shape.
    """
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "none":
        return lambda x: x
    if kind == "meanstd":
        mean = np.asarray(spec["mean"], dtype=np.float32)
        std = np.asarray(spec["std"], dtype=np.float32)
        return lambda x: normalize(x, mean, std)
    if kind == "lrn":
        scale = np.float32(spec.get("input_scale", 255.0))
        size, alpha, beta = spec["size"], spec["alpha"], spec["beta"]
        return lambda x: local_contrast_normalize(
            x * scale, size=size, alpha=alpha, beta=beta
        )
    raise ValueError(f"unknown input normalisation {spec!r}")
