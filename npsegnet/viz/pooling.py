"""Pooling indices and unpooling: what SegNet's decoder gets from its encoder.

The up-sampled panels are computed by the package's own textbook functions
(:func:`npsegnet.reference.pool.maxunpool2d_forward`,
:func:`npsegnet.reference.upsample.upsample2d_forward`), so the figure shows
exactly what the layers compute.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .._checks import check_positive_int
from ..reference.pool import maxunpool2d_forward
from ..reference.upsample import upsample2d_forward
from .colors import _check_labels

__all__ = ["plot_pooling_indices", "plot_unpooled_and_convolved"]


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

    plane = pooled.astype(np.float64)[None, None]
    unpooled = maxunpool2d_forward(plane, indices.astype(np.int64)[None, None], (h, w))
    nearest = upsample2d_forward(plane, (h, w), mode="nearest")
    bilinear = upsample2d_forward(plane, (h, w), mode="bilinear")
    unpooled, nearest, bilinear = unpooled[0, 0], nearest[0, 0], bilinear[0, 0]

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
