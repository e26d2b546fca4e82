"""Writing figures to files."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["save_figure"]


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
