"""Figures of Monte-Carlo dropout: uncertainty maps, reliability, accuracy vs T."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .colors import _check_labels, _image_to_hwc, label_to_color

__all__ = [
    "plot_accuracy_vs_samples",
    "plot_mc_samples",
    "plot_reliability",
    "plot_uncertainty",
    "plot_uncertainty_by_class",
    "plot_uncertainty_maps",
]


def plot_uncertainty(
    image: np.ndarray,
    labels: np.ndarray,
    uncertainty: np.ndarray,
    palette=None,
    target: np.ndarray | None = None,
    ignore_index=None,
    title: str = "predictive entropy",
) -> Figure:
    """An image, its predicted labels and a map of the model's uncertainty.

    Parameters
    ----------
    image : ndarray of shape (3, H, W), float in [0, 1]
    labels : ndarray of shape (H, W), int
        The MC prediction (argmax of the mean softmax).
    uncertainty : ndarray of shape (H, W)
        Entropy (nats) or variance per pixel; drawn with a colour bar.
    palette : ndarray of shape (K, 3), uint8, optional
    target : ndarray of shape (H, W), optional
        Ground truth: adds a panel with the wrong pixels in white, to set the
        uncertainty against the errors it should flag.
    ignore_index : int, optional
    title : str
        Title of the uncertainty panel.

    Returns
    -------
    Figure
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {image.shape}")
    shape = image.shape[1:]
    for name, a in (("labels", labels), ("uncertainty", uncertainty)):
        if np.shape(a) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {np.shape(a)}")
    panels = 4 if target is not None else 3
    fig = Figure(figsize=(3.2 * panels, 3.0), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels)
    axes[0].imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
    axes[0].set_title("image")
    axes[1].imshow(label_to_color(labels, palette))
    axes[1].set_title("MC prediction")
    im = axes[2].imshow(uncertainty, cmap="inferno")
    axes[2].set_title(title)
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    if target is not None:
        wrong = np.asarray(labels) != np.asarray(target)
        if ignore_index is not None:
            wrong &= np.asarray(target) != ignore_index
        axes[3].imshow(wrong, cmap="gray", vmin=0, vmax=1)
        axes[3].set_title(f"wrong pixels ({100 * wrong.mean():.1f} %)")
    for ax in axes:
        ax.set_axis_off()
    return fig


def plot_mc_samples(
    image: np.ndarray,
    samples: np.ndarray,
    labels: np.ndarray,
    entropy: np.ndarray,
    palette=None,
    max_samples: int = 4,
) -> Figure:
    """The image, a few Monte-Carlo samples, their mean's prediction and entropy.

    Parameters
    ----------
    image : ndarray of shape (3, H, W), float in [0, 1]
    samples : ndarray of shape (T, H, W), int
        The labels of each sample alone (the argmax of its softmax).
    labels : ndarray of shape (H, W), int
        The MC prediction: the argmax of the mean softmax of all ``T``.
    entropy : ndarray of shape (H, W)
        Predictive entropy of the mean softmax, in nats.
    palette : ndarray of shape (K, 3), uint8, optional
    max_samples : int
        Show at most this many samples (the first ones).

    Returns
    -------
    Figure
        One row: the image, ``min(T, max_samples)`` samples (titled with the
        share of pixels where the sample differs from the MC prediction), the
        MC prediction and the entropy, with a colour bar.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {image.shape}")
    shape = image.shape[1:]
    samples = _check_labels(samples, "samples", ndim=3)
    labels = _check_labels(labels, "labels", ndim=2)
    entropy = np.asarray(entropy)
    for name, a in (("samples", samples[0]), ("labels", labels), ("entropy", entropy)):
        if a.shape != shape:
            raise ValueError(f"{name} must have maps of shape {shape}, got {a.shape}")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    shown = samples[: int(max_samples)]
    panels = len(shown) + 3
    h, w = shape
    width = panels * 1.9 * max(w / h, 0.6)
    fig = Figure(figsize=(width, 2.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels)
    axes[0].imshow(np.clip(_image_to_hwc(image, "image"), 0, 1))
    axes[0].set_title("image", fontsize=8)
    for t, (ax, sample) in enumerate(zip(axes[1:], shown, strict=False)):
        ax.imshow(label_to_color(sample, palette), interpolation="nearest")
        differ = 100 * np.mean(sample != labels)
        ax.set_title(f"sample {t + 1}: {differ:.0f} % differ", fontsize=8)
    axes[-2].imshow(label_to_color(labels, palette), interpolation="nearest")
    axes[-2].set_title(f"MC prediction, T = {len(samples)}", fontsize=8)
    im = axes[-1].imshow(entropy, cmap="inferno", vmin=0)
    axes[-1].set_title("entropy (nats)", fontsize=8)
    fig.colorbar(im, ax=axes[-1], shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    return fig


def plot_uncertainty_maps(
    images: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray,
    entropy: np.ndarray,
    variance: np.ndarray,
    palette=None,
    ignore_index=None,
    row_titles: Sequence[str] | None = None,
) -> Figure:
    """One row per image: image, truth, MC prediction, entropy, variance, errors.

    Parameters
    ----------
    images : ndarray of shape (N, 3, H, W), float in [0, 1]
    targets : ndarray of shape (N, H, W), int
        Ground truth.
    labels : ndarray of shape (N, H, W), int
        The MC prediction (argmax of the mean softmax).
    entropy : ndarray of shape (N, H, W)
        Predictive entropy of the mean softmax, in nats.
    variance : ndarray of shape (N, H, W)
        A variance map per image, e.g. the per-class variance of the samples
        averaged over the classes.
    palette : ndarray of shape (K, 3), uint8, optional
    ignore_index : int, optional
        Unlabelled pixels: black in the truth, grey in the error map.
    row_titles : sequence of str, optional
        A label per row (e.g. ``"val 45"``).

    Returns
    -------
    Figure
        ``N`` rows of six panels. Entropy and variance share one colour scale
        per column (from 0 to the largest value shown), with a colour bar
        each; the error map draws wrong pixels white and right ones black.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got shape {images.shape}")
    n, _, h, w = images.shape
    targets = _check_labels(targets, "targets", ndim=3)
    labels = _check_labels(labels, "labels", ndim=3)
    maps = {"entropy": np.asarray(entropy), "variance": np.asarray(variance)}
    for name, a in (("targets", targets), ("labels", labels), *maps.items()):
        if a.shape != (n, h, w):
            raise ValueError(f"{name} must have shape {(n, h, w)}, got {a.shape}")
    if row_titles is not None and len(row_titles) != n:
        raise ValueError(f"row_titles must have {n} entries, got {len(row_titles)}")
    valid = (
        np.ones(targets.shape, bool)
        if ignore_index is None
        else targets != ignore_index
    )
    wrong = (labels != targets) & valid
    top = {k: float(np.nanmax(a)) if a.size else 1.0 for k, a in maps.items()}
    width = 6 * 1.9 * max(w / h, 0.6)
    fig = Figure(figsize=(width, 1.9 * n + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(n, 6, squeeze=False)
    shown = {}
    for i in range(n):
        error_map = np.where(valid[i], wrong[i].astype(float), 0.5)
        row = axes[i]
        row[0].imshow(np.clip(_image_to_hwc(images[i], "images[i]"), 0, 1))
        row[1].imshow(label_to_color(targets[i], palette, ignore_index))
        row[2].imshow(label_to_color(labels[i], palette, ignore_index))
        for j, key in ((3, "entropy"), (4, "variance")):
            shown[key] = row[j].imshow(
                maps[key][i], cmap="inferno", vmin=0, vmax=top[key] or 1.0
            )
        row[5].imshow(error_map, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        share = 100 * wrong[i].sum() / max(valid[i].sum(), 1)
        row[5].set_title(
            f"{'wrong pixels' if i == 0 else 'wrong'}: {share:.1f} %", fontsize=8
        )
        if row_titles is not None:
            row[0].set_ylabel(row_titles[i], fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    titles = ("image", "ground truth", "MC prediction", "entropy (nats)", "variance")
    for ax, title in zip(axes[0], titles, strict=False):
        ax.set_title(title, fontsize=8)
    for j, key in ((3, "entropy"), (4, "variance")):
        bar = fig.colorbar(
            shown[key], ax=axes[:, j], location="bottom", shrink=0.8, aspect=15
        )
        bar.ax.tick_params(labelsize=7)
    return fig


def plot_uncertainty_by_class(
    class_names: Sequence[str],
    interior: np.ndarray,
    boundary: np.ndarray,
    quantity: str = "mean entropy (nats)",
    title: str = "uncertainty inside regions and on their boundaries",
) -> Figure:
    """Per class, a pair of bars: the mean uncertainty inside and on the boundary.

    Parameters
    ----------
    class_names : sequence of str
        ``K`` names.
    interior, boundary : ndarray of shape (K,)
        The mean uncertainty of the class's interior and boundary pixels
        (``nan`` where a class has no such pixel: no bar).
    quantity : str
        What the bars measure (the y label).
    title : str

    Returns
    -------
    Figure
    """
    names = [str(c) for c in class_names]
    inside = np.asarray(interior, dtype=np.float64)
    edge = np.asarray(boundary, dtype=np.float64)
    if inside.shape != (len(names),) or edge.shape != (len(names),):
        raise ValueError(
            f"interior {inside.shape} and boundary {edge.shape} must both have "
            f"shape ({len(names)},), one value per class"
        )
    width = max(4.0, 0.55 * len(names) + 1.5)
    fig = Figure(figsize=(width, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    at = np.arange(len(names))
    ax.bar(at - 0.2, np.nan_to_num(inside), 0.4, color="tab:blue", label="interior")
    ax.bar(at + 0.2, np.nan_to_num(edge), 0.4, color="tab:orange", label="boundary")
    for k in np.flatnonzero(np.isnan(inside) & np.isnan(edge)):
        ax.text(k, 0, "absent", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(at, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(quantity)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def plot_reliability(reliability: Mapping, title: str = "reliability") -> Figure:
    """Reliability diagram: accuracy against confidence per bin, and the counts.

    Parameters
    ----------
    reliability : mapping
        ``edges``, ``count``, ``confidence`` and ``accuracy`` per bin, as in
        :meth:`npsegnet.uncertainty.UncertaintyMetrics.compute` (its
        ``"reliability"`` entry). A perfectly calibrated model lies on the
        diagonal; bars below it are over-confident.
    title : str

    Returns
    -------
    Figure
        Two axes: the diagram (gap to the diagonal shaded) and a histogram of
        the pixels per confidence bin.
    """
    edges = np.asarray(reliability["edges"], dtype=np.float64)
    count = np.asarray(reliability["count"], dtype=np.float64)
    acc = np.array([np.nan if v is None else v for v in reliability["accuracy"]])
    conf = np.array([np.nan if v is None else v for v in reliability["confidence"]])
    if not (len(edges) == len(count) + 1 == len(acc) + 1 == len(conf) + 1):
        raise ValueError(
            "edges must have one entry more than count/accuracy/confidence"
        )
    centres = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    used = count > 0
    fig = Figure(figsize=(4.8, 5.6), dpi=100, layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.bar(centres[used], acc[used], width=width[used], color="tab:blue",
           edgecolor="white", label="accuracy")  # fmt: skip
    ax.bar(centres[used], (conf - acc)[used], bottom=acc[used], width=width[used],
           color="tab:red", alpha=0.3, label="gap to confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(centres, count / max(count.sum(), 1), width=width, color="gray")
    hist.set_xlabel("confidence (largest mean softmax)")
    hist.set_ylabel("pixels")
    return fig


METRICS = ("global_accuracy", "class_average_accuracy", "mean_iou")


def plot_accuracy_vs_samples(
    curve: Mapping, metrics: Sequence[str] = METRICS
) -> Figure:
    """Accuracy of Monte-Carlo dropout against the number of samples ``T``.

    Parameters
    ----------
    curve : mapping
        As :func:`npsegnet.uncertainty.accuracy_vs_samples` returns it:
        ``samples``, ``mc`` (a list per metric) and ``weight_averaging``
        (one value per metric, drawn as a dashed line).
    metrics : sequence of str

    Returns
    -------
    Figure
    """
    Ts = list(curve["samples"])
    short = {"global_accuracy": "G", "class_average_accuracy": "C", "mean_iou": "mIoU"}
    fig = Figure(figsize=(5.2, 3.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    for i, key in enumerate(metrics):
        colour = f"C{i}"
        values = 100 * np.asarray(curve["mc"][key], dtype=np.float64)
        ax.plot(Ts, values, "o-", color=colour, label=f"{short.get(key, key)}, MC")
        ax.axhline(100 * curve["weight_averaging"][key], color=colour, ls="--", lw=1,
                   label=f"{short.get(key, key)}, weight averaging")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("samples T")
    ax.set_ylabel("%")
    ax.set_title("Monte-Carlo dropout against weight averaging")
    ax.legend(fontsize=7, ncol=2)
    return fig
