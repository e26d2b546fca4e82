"""Figures of Monte-Carlo dropout: uncertainty maps, reliability, accuracy vs T."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .colors import label_to_color

__all__ = ["plot_accuracy_vs_samples", "plot_reliability", "plot_uncertainty"]


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
