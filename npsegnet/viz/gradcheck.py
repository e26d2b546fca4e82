"""Relative errors of gradient checks as bars against their tolerance."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_gradcheck"]


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
    from ..gradcheck import GradCheckReport

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
