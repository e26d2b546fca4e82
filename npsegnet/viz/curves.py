"""Training curves: loss, validation metrics and learning rate over training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_training_curves"]


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
